//! `/log`: the event log, newest first, a page at a time, kept to one group of events if
//! asked (UPS, RTU, Modbus TCP, logins and accounts, settings, system); cleared by admin
//! (the clearing is then its first event); `/log.csv` downloads all of it.

use super::fields;
use super::{html, message, only_admin, timestamp, Layout};
use crate::event::{Event, Stamped};
use crate::store::EventRow;
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

/// Events on a page.
pub const PAGE: usize = 50;

/// The groups a person filters by: `?group=` value, name, and the kinds of events in it
/// ([`Event::kind`]).
pub const GROUPS: [(&str, &str, &[&str]); 6] = [
    (
        "ups",
        "UPS",
        &[
            "ups_detected",
            "ups_not_found",
            "ups_lost",
            "ups_restored",
            "ups_on_battery",
            "ups_on_line",
            "ups_on_bypass",
            "ups_eco",
            "ups_off",
            "ups_battery_low",
            "ups_alarm_raised",
            "ups_alarm_cleared",
        ],
    ),
    ("rtu", "RTU (RS485)", &["rtu_lost", "rtu_restored"]),
    (
        "tcp",
        "Modbus TCP",
        &[
            "tcp_opened",
            "tcp_closed",
            "tcp_refused",
            "tcp_not_allowed",
            "write_refused",
            "tcp_events_skipped",
            "mbtls_opened",
            "mbtls_closed",
            "mbtls_refused",
            "mbtls_no_rights",
            "mbtls_expiring",
        ],
    ),
    (
        "logins",
        "Logins and accounts",
        &[
            "admin_login",
            "user_login",
            "login_failed",
            "logout",
            "session_taken_over",
            "session_timeout",
            "password_changed",
            "password_expired",
            "password_reset",
            "user_added",
            "user_removed",
            "user_role_changed",
            "accounts_reset",
        ],
    ),
    (
        "settings",
        "Settings",
        &[
            "setting_changed",
            "configuration_loaded",
            "factory_reset",
            "certificate_made",
            "certificate_installed",
            "certificate_reverted",
            "root_made",
            "mbtls_changed",
        ],
    ),
    (
        "system",
        "System",
        &[
            "cold_boot",
            "warm_boot",
            "restart",
            "stopped",
            "watchdog_reset",
            "network",
            "time_changed_by_server",
            "time_changed_by_user",
            "log_cleared",
            "firmware_started",
            "firmware_refused",
            "firmware_installed",
            "firmware_confirmed",
            "firmware_rolled_back",
        ],
    ),
];

/// The group a kind of event is in, by name.
pub fn group_of(kind: &str) -> &'static str {
    GROUPS
        .iter()
        .find(|(_, _, kinds)| kinds.contains(&kind))
        .map_or("Other", |(_, name, _)| name)
}

pub struct Row {
    pub time: String,
    pub group: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "log.html")]
pub struct LogPage {
    pub layout: Layout,
    pub outcome: Option<fields::Outcome>,
    pub rows: Vec<Row>,
    pub groups: Vec<(&'static str, &'static str)>,
    pub group: String,
    /// The link to the next (older) page, if there is one.
    pub older: Option<String>,
    /// This is not the newest page.
    pub paged: bool,
}

pub fn page(ctx: &Ctx<'_>, outcome: Option<fields::Outcome>) -> Response {
    let group = ctx
        .req
        .get_param("group")
        .filter(|g| GROUPS.iter().any(|(k, _, _)| k == g))
        .unwrap_or_default();
    let kinds: &[&str] = GROUPS
        .iter()
        .find(|(k, _, _)| *k == group)
        .map_or(&[], |(_, _, kinds)| kinds);
    let before = ctx
        .req
        .get_param("before")
        .and_then(|b| b.parse::<i64>().ok());
    // One more than a page: whether there is an older page.
    let rows = ctx.app.store.lock().events_page(before, PAGE + 1, kinds);
    let mut rows: Vec<EventRow> = match rows {
        Ok(rows) => rows,
        Err(e) => {
            return message(
                Layout::of(ctx, "Log", "log"),
                500,
                "The event log cannot be read",
                e.to_string(),
            )
        }
    };
    let older = (rows.len() > PAGE).then(|| {
        rows.truncate(PAGE);
        let last = rows.last().map_or(0, |r| r.id);
        if group.is_empty() {
            format!("/log?before={last}")
        } else {
            format!("/log?group={group}&before={last}")
        }
    });
    let status = match &outcome {
        Some(o) if !o.ok => 400,
        _ => 200,
    };
    let page = LogPage {
        layout: Layout::of(ctx, "Log", "log"),
        outcome,
        rows: rows
            .iter()
            .map(|r| Row {
                time: timestamp(r.at()).trim_end_matches(" UTC").to_string(),
                group: group_of(&r.kind),
                message: r.message.clone(),
            })
            .collect(),
        groups: GROUPS.iter().map(|(k, n, _)| (*k, *n)).collect(),
        group,
        older,
        paged: before.is_some(),
    };
    html(&page, status)
}

/// `/log.csv`: every event, oldest first (RFC 4180, UTF-8).
pub fn csv(ctx: &Ctx<'_>) -> Response {
    let mut out = Vec::new();
    match ctx.app.store.lock().write_events_csv(&mut out) {
        Ok(()) => Response::from_data("text/csv; charset=utf-8", out).with_unique_header(
            "Content-Disposition",
            "attachment; filename=\"modbus-card-events.csv\"",
        ),
        Err(e) => page(ctx, Some(fields::Outcome::refused(vec![e.to_string()]))),
    }
}

pub fn clear(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, "Only admin clears the event log.");
    }
    if ctx.form.text("confirm") != "yes" {
        return fields::ask(
            ctx,
            "Clear the event log?",
            vec![
                "Every event is deleted; the log then starts with one saying who cleared it."
                    .into(),
                "Save it as CSV first if it may be needed.".into(),
            ],
            &[],
            "Yes, clear the log",
            "/log",
        );
    }
    let by = fields::who(ctx).to_string();
    let cleared = Stamped {
        at: ctx.app.card.clock.now(),
        event: Event::LogCleared { by },
    };
    log::info!("event: {}", cleared.event.message());
    match ctx.app.store.lock().clear_events_with(&cleared) {
        Ok(()) => Response::redirect_303("/log"),
        Err(e) => page(ctx, Some(fields::Outcome::refused(vec![e.to_string()]))),
    }
}
