//! Forms of settings, made from the settings table ([`DEFS`]): each field's label and help
//! come from there, so a page never repeats them, and every posted form goes through the
//! settings' one door ([`Live::change`]).
//!
//! A page names the keys it shows; [`submit`] takes only those from a posted form, and
//! answers with what changed, with each refused value next to its field (the form shown
//! again with what was typed), or with a confirmation page when the change would cut
//! someone off.

use super::{html, only_admin, read_only, Layout};
use crate::live::{Refused, Who};
use crate::settings::{
    self, def_of, label, min_serial_timeout, rule, Diff, Refusal, Settings, RS485_BAUDS, UPS_BAUDS,
};
use crate::web::listen::Kind;
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

/// What a page says after a post: a summary of what changed, or why nothing did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    pub title: String,
    pub lines: Vec<String>,
}

impl Outcome {
    pub fn ok(title: impl Into<String>, lines: Vec<String>) -> Outcome {
        Outcome {
            ok: true,
            title: title.into(),
            lines,
        }
    }

    pub fn refused(lines: Vec<String>) -> Outcome {
        Outcome {
            ok: false,
            title: "Nothing was changed:".into(),
            lines,
        }
    }
}

/// A form after a post: the outcome, and what was typed and refused (shown again).
#[derive(Debug, Default)]
pub struct State {
    pub outcome: Option<Outcome>,
    posted: Vec<(String, String)>,
    errors: Vec<Refusal>,
}

impl State {
    pub fn with(outcome: Outcome) -> State {
        State {
            outcome: Some(outcome),
            ..State::default()
        }
    }

    /// The HTTP status of the page showing this state.
    pub fn status(&self) -> u16 {
        match &self.outcome {
            Some(o) if !o.ok => 400,
            _ => 200,
        }
    }
}

/// How a field is typed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Number,
    Text,
    /// (value, what a person reads)
    Choice(Vec<(String, String)>),
}

/// One setting in a form.
#[derive(Debug, Clone)]
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    pub help: String,
    pub value: String,
    pub input: Input,
    /// Why the value typed was refused.
    pub error: Option<String>,
    /// Only admin may change it, and this user is not admin.
    pub locked: bool,
}

impl Field {
    pub fn is_number(&self) -> bool {
        self.input == Input::Number
    }

    pub fn choices(&self) -> &[(String, String)] {
        match &self.input {
            Input::Choice(c) => c,
            _ => &[],
        }
    }
}

/// The fields of `keys`, with the values in force, or those just typed and refused.
pub fn fields(ctx: &Ctx<'_>, keys: &[&'static str], state: &State) -> Vec<Field> {
    let settings = ctx.app.live.current();
    let stored = ctx.app.live.stored();
    keys.iter()
        .filter_map(|&key| {
            let def = def_of(key)?;
            let posted = state.posted.iter().find(|(k, _)| k == key);
            let error = state
                .errors
                .iter()
                .find(|r| r.key == key)
                .map(|r| rule(key, &r.message));
            Some(Field {
                key,
                label: def.label,
                help: match (settings.get(key), stored.get(key)) {
                    // A command-line override (`--set`) holds for this run only.
                    (Some(now), Some(kept)) if now != kept => format!(
                        "{} In force for this run: {} (given on the command line); the \
                         stored setting is {}.",
                        help(key, def.help, &settings),
                        shown(key, &now),
                        shown(key, &kept)
                    ),
                    _ => help(key, def.help, &settings),
                },
                value: posted
                    .map(|(_, v)| v.clone())
                    .or_else(|| settings.get(key))
                    .unwrap_or_default(),
                input: input_of(key),
                error,
                locked: def.admin_only && !ctx.is_admin(),
            })
        })
        .collect()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The table's help, as a person reads it beside the field: where the field offers the
/// choices the help spells out, what to know in their place; beside the serial timeout,
/// its lowest sane value at each rate the link may run.
fn help(key: &str, help: &str, s: &Settings) -> String {
    match key {
        "ups_baud" => "Detected when the card starts, or fixed.".into(),
        "routing" => "To the UPS only: unit ids 0, 255 and the UPS slave number reach the \
                      UPS, others get exception 0A at once. Transparent: every unit id is an \
                      RTU address on the link."
            .into(),
        "rs485_baud" => "The RS485 master's rate (NUT's socomec_jbus driver speaks 9600).".into(),
        "modbus_write" => "A write from any other master gets exception 01 (illegal function) \
                           and never reaches the UPS."
            .into(),
        "dhcp_enabled" => "Without an answer from a DHCP server the card uses 192.168.7.18/24 \
                           until one answers."
            .into(),
        "serial_timeout_ms" => {
            let floors: Vec<String> = UPS_BAUDS
                .iter()
                .map(|&b| format!("{} ms at {b} baud", min_serial_timeout(b).as_millis()))
                .collect();
            format!(
                "How long the UPS has to answer. Lowest sane value now: {} ms{} ({}).",
                s.min_serial_timeout_ms(),
                if s.ups_baud == 0 {
                    ", as detection may find 9600 baud"
                } else {
                    ""
                },
                floors.join(", ")
            )
        }
        _ => capitalise(help),
    }
}

/// How `key` is typed in: a choice where the values are few, a number where the default
/// is one, text otherwise.
pub fn input_of(key: &str) -> Input {
    let pairs = |list: &[(&str, &str)]| {
        Input::Choice(
            list.iter()
                .map(|(v, l)| (v.to_string(), l.to_string()))
                .collect(),
        )
    };
    fn bauds(rates: &[u32]) -> impl Iterator<Item = (String, String)> + '_ {
        rates.iter().map(|b| (b.to_string(), format!("{b} baud")))
    }
    match key {
        "ups_baud" => Input::Choice(
            std::iter::once(("0".into(), "Detect (57600, 19200 or 9600)".into()))
                .chain(bauds(&UPS_BAUDS))
                .collect(),
        ),
        "rs485_baud" => Input::Choice(bauds(&RS485_BAUDS).collect()),
        "routing" => pairs(&[
            ("ups", "To the UPS only"),
            ("transparent", "Transparent (unit id = RTU address)"),
        ]),
        "modbus_write" => pairs(&[
            ("everyone", "Every master"),
            ("listed", "Only the masters listed below"),
            ("nobody", "No master: read only"),
        ]),
        "dhcp_enabled" => pairs(&[("true", "DHCP (BootP)"), ("false", "Static address")]),
        "syslog_transport" => pairs(&[
            ("udp", "UDP"),
            ("tcp", "TCP (octet counting)"),
            ("tls", "TLS 1.3"),
        ]),
        _ => match Settings::default().get(key).as_deref() {
            Some("true" | "false") => pairs(&[("true", "On"), ("false", "Off")]),
            Some(v) if v.parse::<u64>().is_ok() => Input::Number,
            _ => Input::Text,
        },
    }
}

/// Who makes a change from a page, for the event log.
pub fn who(ctx: &Ctx<'_>) -> Who {
    Who {
        user: ctx.session.user.clone(),
        via: format!("web {}", ctx.req.remote_addr().ip()),
        role: ctx.session.role,
    }
}

/// A value as the page shows it: the choice's words where the field offers choices.
fn shown(key: &str, value: &str) -> String {
    if value.is_empty() {
        return "(none)".into();
    }
    match input_of(key) {
        Input::Choice(choices) => choices
            .into_iter()
            .find(|(v, _)| v == value)
            .map_or_else(|| value.to_string(), |(_, words)| words),
        _ => value.to_string(),
    }
}

/// "Label: old → new" for each change.
pub fn summary(diffs: &[Diff]) -> Vec<String> {
    diffs
        .iter()
        .map(|d| {
            format!(
                "{}: {} → {}",
                label(d.key),
                shown(d.key, &d.old),
                shown(d.key, &d.new)
            )
        })
        .collect()
}

/// Takes the keys of `allowed` from the posted form through the settings' one door. The
/// page then shows the state; a refusal to this user, or a confirmation to ask for, is a
/// whole answer of its own.
pub fn submit(ctx: &Ctx<'_>, allowed: &[&'static str]) -> Result<State, Response> {
    if !ctx.may_change() {
        return Err(read_only(ctx));
    }
    let posted: Vec<(String, String)> = allowed
        .iter()
        .filter_map(|&k| ctx.form.field(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    if !ctx.is_admin() {
        // A locked field posted unchanged is no change; the door refuses a changed one
        // too, this only says it as a page of its own.
        let current = ctx.app.live.current();
        let locked = posted.iter().find_map(|(k, v)| {
            let def = def_of(k).filter(|d| d.admin_only)?;
            (current.get(k).as_deref() != Some(v.as_str())).then_some(def)
        });
        if let Some(def) = locked {
            let reason = rule(def.key, settings::admin_reason(def));
            return Err(only_admin(ctx, &format!("{reason} ({}).", def.label)));
        }
    }
    let pairs: Vec<(&str, &str)> = posted
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let confirmed = ctx.form.text("confirm") == "yes";
    if !confirmed {
        if let Ok((diffs, mut warnings)) = ctx.app.live.preview(&pairs) {
            warnings.extend(this_page_goes(ctx, &diffs));
            if !warnings.is_empty() {
                return Err(confirm(ctx, &posted, &diffs, warnings));
            }
        }
    }
    let state = |outcome| State {
        outcome: Some(outcome),
        posted: posted.clone(),
        errors: vec![],
    };
    match ctx.app.live.change(&pairs, &who(ctx), confirmed) {
        Ok(applied) if applied.diffs.is_empty() => Ok(State::with(Outcome::ok(
            "Nothing to change: the values were already so.",
            vec![],
        ))),
        Ok(applied) => {
            let mut lines = summary(&applied.diffs);
            if !applied.next_start.is_empty() {
                let labels: Vec<&str> = applied.next_start.iter().map(|k| label(k)).collect();
                let verb = if labels.len() == 1 { "takes" } else { "take" };
                lines.push(format!(
                    "{} {verb} effect at the next start.",
                    labels.join(", ")
                ));
            }
            lines.extend(where_the_pages_are(ctx, &applied.diffs));
            Ok(State::with(Outcome::ok("Saved and in force:", lines)))
        }
        Err(Refused::Invalid(errors)) => {
            let lines = errors
                .iter()
                .map(|r| format!("{}: {}", label(&r.key), rule(&r.key, &r.message)))
                .collect();
            Ok(State {
                errors,
                ..state(Outcome::refused(lines))
            })
        }
        Err(Refused::Confirm(warnings)) => Err(confirm(ctx, &posted, &[], warnings)),
        Err(Refused::Failed(e)) => Ok(state(Outcome::refused(vec![e]))),
    }
}

/// The address of the other web service, as this browser reaches the card.
fn url_of(ctx: &Ctx<'_>, kind: Kind) -> Option<String> {
    let port = ctx.app.listeners.home(kind)?.port();
    let host = ctx.req.header("Host").unwrap_or("");
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let scheme = if kind.secure() { "https" } else { "http" };
    Some(format!("{scheme}://{name}:{port}/"))
}

/// The service this page came over, if `diffs` turn it off while the other stays on.
fn leaving(ctx: &Ctx<'_>, diffs: &[Diff]) -> Option<Kind> {
    let (this, other) = if ctx.req.is_secure() {
        (Kind::Https, Kind::Http)
    } else {
        (Kind::Http, Kind::Https)
    };
    let key = |k: Kind| {
        if k.secure() {
            "https_enabled"
        } else {
            "http_enabled"
        }
    };
    let off = diffs.iter().any(|d| d.key == key(this) && d.new == "false");
    let settings = ctx.app.live.current();
    let other_on = diffs
        .iter()
        .find(|d| d.key == key(other))
        .map_or(settings.get(key(other)).as_deref() == Some("true"), |d| {
            d.new == "true"
        });
    (off && other_on).then_some(other)
}

/// A warning when the change turns off the service this page came over.
fn this_page_goes(ctx: &Ctx<'_>, diffs: &[Diff]) -> Option<String> {
    let other = leaving(ctx, diffs)?;
    let this = if other.secure() { "HTTP" } else { "HTTPS" };
    Some(match url_of(ctx, other) {
        Some(url) => {
            format!("This page came over {this}, which stops: open {url} and log in again there.")
        }
        None => format!("This page came over {this}, which stops."),
    })
}

/// After the service this page came over was turned off: where the pages are now.
fn where_the_pages_are(ctx: &Ctx<'_>, diffs: &[Diff]) -> Option<String> {
    let other = leaving(ctx, diffs)?;
    Some(match url_of(ctx, other) {
        Some(url) => format!("The pages are now at {url} (log in again there)."),
        None => "This connection closes now.".into(),
    })
}

/// A page that says what a change will do and asks to go on.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub heading: String,
    pub warnings: Vec<String>,
    pub changes: Vec<String>,
    /// Where the form goes, and what it carries back.
    pub action: String,
    pub hidden: Vec<(String, String)>,
    pub button: String,
    /// Where "Cancel" leads.
    pub back: String,
    pub danger: bool,
}

fn confirm(
    ctx: &Ctx<'_>,
    posted: &[(String, String)],
    diffs: &[Diff],
    warnings: Vec<String>,
) -> Response {
    let path = ctx.req.url();
    html(
        &ConfirmPage {
            layout: Layout::of(ctx, "Confirm", ""),
            heading: "Confirm the change".into(),
            warnings,
            changes: summary(diffs),
            action: path.clone(),
            hidden: posted.to_vec(),
            button: "Yes, make the change".into(),
            back: path,
            danger: false,
        },
        200,
    )
}

/// Asks before an action (a reboot, a reset, clearing the log): `warnings` say what will
/// happen; the form posts `hidden` back to this page with `confirm=yes`.
pub fn ask(
    ctx: &Ctx<'_>,
    heading: &str,
    warnings: Vec<String>,
    hidden: &[(&str, &str)],
    button: &str,
    back: &str,
) -> Response {
    html(
        &ConfirmPage {
            layout: Layout::of(ctx, "Confirm", ""),
            heading: heading.into(),
            warnings,
            changes: vec![],
            action: ctx.req.url(),
            hidden: hidden
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            button: button.into(),
            back: back.into(),
            danger: true,
        },
        200,
    )
}
