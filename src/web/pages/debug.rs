//! `/debug` (MODBUS debug, only while `debug_enabled`): the frames on the UPS link and the
//! RS485 port, newest first, each with its time to the millisecond, whose request it was,
//! its direction, its bytes, what it says (decoded) and what became of it; with the link's
//! counters. `/debug.json` gives the same for scripts and for the page's own refresh
//! (`www/debug.js`, which can also pause); without script the page is whole and a link
//! reloads it. `?source=` keeps one source's frames.

use super::home::{counters, COUNTERS};
use super::{html, message, Layout};
use crate::calendar;
use crate::link::framelog::{Direction, Entry, Note};
use crate::link::Source;
use crate::modbus::describe;
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;
use serde::Serialize;
use std::collections::BTreeMap;

/// Frames shown on the page (the log keeps more; the JSON has them all).
const SHOWN: usize = 100;

/// The filters: the value in `?source=`, and what the page calls it.
pub const SOURCES: [(&str, &str); 9] = [
    ("", "All"),
    ("tcp1", "TCP 1"),
    ("tcp2", "TCP 2"),
    ("tcp3", "TCP 3"),
    ("tls1", "TLS 1"),
    ("tls2", "TLS 2"),
    ("tls3", "TLS 3"),
    ("rs485", "RS485"),
    ("card", "The card (polls)"),
];

fn source_key(s: Source) -> String {
    match s {
        Source::Tcp(n) => format!("tcp{n}"),
        Source::Mbtls(n) => format!("tls{n}"),
        Source::Rs485 => "rs485".into(),
        Source::Control => "card".into(),
    }
}

/// One frame as the page and the JSON show it.
#[derive(Serialize, Clone)]
pub struct Frame {
    /// `HH:MM:SS.mmm` UTC.
    pub time: String,
    pub at_ms: i64,
    /// `tcp1`..`tcp3`, `rs485`, `card`.
    pub source: String,
    pub source_text: String,
    /// `to_ups`, `from_ups`, `from_rs485`, `to_rs485`.
    pub direction: &'static str,
    pub direction_text: &'static str,
    /// Hex, a space between bytes.
    pub bytes: String,
    pub decoded: String,
    /// What became of it: `request`, `answer`, `exception`, `bad_answer`, `timeout`, …
    pub fate: &'static str,
    pub fate_text: String,
    /// `ok`, `warn` or `bad`, for the colour.
    pub tone: &'static str,
}

impl Frame {
    fn of(e: &Entry) -> Frame {
        let at_ms = crate::clock::unix_ms(e.at);
        let bytes = e.bytes();
        let (direction, direction_text, is_request) = match e.direction {
            Direction::ToUps => ("to_ups", "to the UPS", true),
            Direction::FromUps => ("from_ups", "from the UPS", false),
            Direction::FromRs485 => ("from_rs485", "from the RS485 master", true),
            Direction::ToRs485 => ("to_rs485", "to the RS485 master", false),
        };
        let (fate, fate_text, tone) = match e.note {
            Note::Request => ("request", "request".to_string(), "ok"),
            Note::Broadcast => ("broadcast", "broadcast: no answer".into(), "ok"),
            Note::Answer => ("answer", "answer".into(), "ok"),
            Note::Exception => ("exception", "exception".into(), "warn"),
            Note::Invalid(err) => ("bad_answer", format!("refused: {err}"), "bad"),
            Note::Timeout => ("timeout", "no answer in time".into(), "bad"),
            Note::Stale => ("stale", "stale bytes, thrown away".into(), "warn"),
            Note::Late => ("late", "late answer, thrown away".into(), "warn"),
            Note::Superseded => (
                "superseded",
                "answer not sent: the master asked again".into(),
                "warn",
            ),
            Note::TooLate => (
                "too_late",
                "answer not sent: after the master's time".into(),
                "warn",
            ),
        };
        let decoded = match e.note {
            Note::Timeout if bytes.is_empty() => "nothing came".into(),
            Note::Timeout => format!("{} bytes, then silence", bytes.len()),
            Note::Stale => format!("{} bytes that belong to no request", bytes.len()),
            _ => describe::frame(bytes, is_request),
        };
        Frame {
            time: calendar::clock_ms(at_ms),
            at_ms,
            source: source_key(e.source),
            source_text: match e.source {
                Source::Tcp(n) => format!("TCP {n}"),
                Source::Mbtls(n) => format!("TLS {n}"),
                Source::Rs485 => "RS485".into(),
                Source::Control => "the card".into(),
            },
            direction,
            direction_text,
            bytes: bytes
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(" "),
            decoded,
            fate,
            fate_text,
            tone,
        }
    }
}

/// What the page and the JSON show.
#[derive(Serialize)]
pub struct Debug {
    /// `HH:MM:SS` UTC when made.
    pub time: String,
    pub source: String,
    pub counters: BTreeMap<&'static str, u64>,
    pub frames: Vec<Frame>,
}

impl Debug {
    fn of(ctx: &Ctx<'_>, max: usize) -> Debug {
        let source = ctx
            .req
            .get_param("source")
            .filter(|s| SOURCES.iter().any(|(k, _)| k == s))
            .unwrap_or_default();
        let frames = ctx
            .app
            .frames
            .newest(usize::MAX)
            .iter()
            .filter(|e| source.is_empty() || source_key(e.source) == source)
            .take(max)
            .map(Frame::of)
            .collect();
        let c = ctx.app.card.link.counters();
        let now_ms = crate::clock::unix_ms(ctx.app.card.clock.now());
        Debug {
            time: calendar::clock_ms(now_ms)[..8].to_string(),
            source,
            counters: counters(&c),
            frames,
        }
    }
}

#[derive(Template)]
#[template(path = "debug.html")]
pub struct DebugPage {
    pub layout: Layout,
    pub d: Debug,
    pub counters: Vec<(&'static str, &'static str, u64)>,
    pub sources: [(&'static str, &'static str); 9],
    pub query: String,
}

fn off(ctx: &Ctx<'_>) -> Response {
    message(
        Layout::of(ctx, "MODBUS debug", "debug"),
        404,
        "MODBUS debug is off",
        "Turn Modbus debug on on the Control page to see the frames here.",
    )
}

pub fn page(ctx: &Ctx<'_>) -> Response {
    if !ctx.app.card.live.current().debug_enabled {
        return off(ctx);
    }
    let d = Debug::of(ctx, SHOWN);
    let mut counters: Vec<(&str, &str, u64)> = COUNTERS
        .iter()
        .map(|&(k, l)| (k, l, d.counters.get(k).copied().unwrap_or(0)))
        .collect();
    counters.push(("stale_bytes", "Stale bytes", d.counters["stale_bytes"]));
    let query = if d.source.is_empty() {
        String::new()
    } else {
        format!("?source={}", d.source)
    };
    html(
        &DebugPage {
            layout: Layout::of(ctx, "MODBUS debug", "debug"),
            d,
            counters,
            sources: SOURCES,
            query,
        },
        200,
    )
}

pub fn json(ctx: &Ctx<'_>) -> Response {
    if !ctx.app.card.live.current().debug_enabled {
        return Response::json(&serde_json::json!({
            "error": "Modbus debug is off: turn it on on the Control page"
        }))
        .with_status_code(404);
    }
    Response::json(&Debug::of(ctx, usize::MAX))
}
