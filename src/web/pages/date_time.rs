//! `/time`: the card's clock, which stamps the event log (never the UPS's clock). Set by
//! hand, or followed from an NTP server (`ntp_server`, through the settings' one door);
//! the page says which, and when NTP last set it.

use super::fields::{self, Field, Outcome, State};
use super::{html, read_only, timestamp, Layout};
use crate::calendar;
use crate::settings::Key;
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

#[derive(Template)]
#[template(path = "time.html")]
pub struct TimePage {
    pub layout: Layout,
    pub outcome: Option<Outcome>,
    pub now: String,
    /// The date-time field's value: what was typed, or the card's time now.
    pub typed: String,
    pub time_error: Option<String>,
    pub source: String,
    pub last_sync: String,
    pub last_error: Option<String>,
    pub ntp: Vec<Field>,
}

fn render(ctx: &Ctx<'_>, state: State, typed: Option<(String, String)>) -> Response {
    let now = ctx.app.card.clock.now();
    let status = ctx.app.card.clock.status();
    let server = ctx.app.card.live.current().ntp_server.clone();
    let unix_ms = crate::clock::unix_ms(now);
    let (typed, time_error) = match typed {
        Some((text, error)) => (text, Some(error)),
        None => (calendar::input_value(unix_ms), None),
    };
    let code = if time_error.is_some() {
        400
    } else {
        state.status()
    };
    let page = TimePage {
        layout: Layout::of(ctx, "Date and time", "time"),
        now: timestamp(now),
        typed,
        time_error,
        source: if server.is_empty() {
            "Set by hand (no NTP server)".into()
        } else {
            format!("NTP server {server}")
        },
        last_sync: match (server.is_empty(), status.last_sync) {
            (true, _) => "–".into(),
            (false, Some(t)) => timestamp(t),
            (false, None) => "not yet".into(),
        },
        last_error: status.last_error.filter(|_| !server.is_empty()),
        ntp: fields::fields(ctx, &[Key::NtpServer], &state),
        outcome: state.outcome.clone(),
    };
    html(&page, code)
}

pub fn page(ctx: &Ctx<'_>) -> Response {
    render(ctx, State::default(), None)
}

/// Either form: the time set by hand, or the NTP server.
pub fn submit(ctx: &Ctx<'_>) -> Response {
    let Some(typed) = ctx.form.field("time") else {
        return match fields::submit(ctx, &[Key::NtpServer]) {
            Ok(state) => render(ctx, state, None),
            Err(answer) => answer,
        };
    };
    if !ctx.may_change() {
        return read_only(ctx);
    }
    let set = calendar::parse_utc(typed).and_then(|ms| {
        let to = crate::clock::from_unix_ms(ms.max(0));
        ctx.app
            .card
            .clock
            .set_by_user(to, &fields::who(ctx).to_string(), &ctx.app.card.events)
    });
    match set {
        Ok(()) => {
            let mut lines = vec![format!(
                "The card's clock now reads {}.",
                timestamp(ctx.app.card.clock.now())
            )];
            if !ctx.app.card.live.current().ntp_server.is_empty() {
                lines.push(
                    "An NTP server is set: it will correct the clock at its next answer.".into(),
                );
            }
            render(ctx, State::with(Outcome::ok("Time set.", lines)), None)
        }
        Err(e) => render(
            ctx,
            State::with(Outcome::refused(vec![e.clone()])),
            Some((typed.to_string(), e)),
        ),
    }
}
