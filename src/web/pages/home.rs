//! Home (`/`) and its figures as JSON (`/api/status`): the UPS link, the Modbus TCP
//! sessions, the RS485 port, the card itself and who is logged in. The page is whole
//! without script; `www/home.js` refreshes its figures from the JSON every few seconds.

use super::ups_view::UpsView;
use super::{html, timestamp, version, Layout};
use crate::accounts::Channel;
use crate::link::LinkState;
use crate::web::routes::Ctx;
use crate::web::App;
use askama::Template;
use rouille::Response;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

#[derive(Serialize)]
pub struct Status {
    pub firmware: &'static str,
    pub mac: String,
    pub ip: String,
    pub time: String,
    pub uptime: String,
    pub ups: Ups,
    /// Where Modbus TCP listens in this run, and the stored port (they differ when the
    /// command line put it elsewhere).
    pub modbus: Modbus,
    pub tcp: Vec<TcpSession>,
    /// Modbus/TCP Security's sessions; empty when it is not served.
    pub tls: Vec<TcpSession>,
    pub rs485: Rs485,
    pub login: Login,
}

#[derive(Serialize)]
pub struct Modbus {
    pub port: u16,
    pub stored_port: u16,
    pub text: String,
}

#[derive(Serialize)]
pub struct Ups {
    /// `detecting`, `up`, `lost` or `stopped`.
    pub state: &'static str,
    pub state_text: &'static str,
    /// 0 while none was found.
    pub baud: u32,
    pub baud_text: String,
    /// The link's counters by name (see [`COUNTERS`]).
    pub counters: BTreeMap<&'static str, u64>,
    /// The UPS itself: its state, figures and alarms, beside the link's fields.
    #[serde(flatten)]
    pub unit: UpsView,
}

/// The link's counters: name in the JSON, and what the page calls it.
pub const COUNTERS: [(&str, &str); 7] = [
    ("requests", "Requests"),
    ("answers", "Answers"),
    ("exceptions", "Exceptions"),
    ("timeouts", "No answer (timeouts)"),
    ("bad_answers", "Bad answers"),
    ("late_answers", "Late answers"),
    ("polls", "Control polls"),
];

/// The link's counters by their names in the JSON (Home's, and the debug page's with
/// `stale_bytes`).
pub fn counters(c: &crate::link::Counters) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("requests", c.requests),
        ("answers", c.answers),
        ("exceptions", c.exceptions),
        ("timeouts", c.timeouts),
        ("bad_answers", c.bad_answers),
        ("late_answers", c.late_answers),
        ("stale_bytes", c.stale_bytes),
        ("polls", c.polls),
    ])
}

/// Each session slot, open or free, as Home shows it: the master's address, and the
/// subject of its certificate on Modbus/TCP Security.
fn slots(sessions: &crate::tcp::Sessions) -> Vec<TcpSession> {
    let open = sessions.list();
    (1..=crate::tcp::MAX_SESSIONS)
        .map(|n| match open.iter().find(|s| usize::from(s.number) == n) {
            Some(s) => TcpSession {
                session: n,
                peer: Some(s.peer.to_string()),
                subject: s.subject.clone(),
                since: Some(timestamp(s.opened)),
                idle_s: Some(s.idle.as_secs()),
                text: match &s.subject {
                    Some(subject) => format!("{} ({subject})", s.peer),
                    None => s.peer.to_string(),
                },
                since_text: format!("since {}", timestamp(s.opened)),
            },
            None => TcpSession {
                session: n,
                peer: None,
                subject: None,
                since: None,
                idle_s: None,
                text: "free".into(),
                since_text: String::new(),
            },
        })
        .collect()
}

impl Ups {
    /// Counter `name`, for the page.
    pub fn count(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

#[derive(Serialize)]
pub struct TcpSession {
    pub session: usize,
    /// The master's address, or null when the slot is free.
    pub peer: Option<String>,
    /// The subject of its client certificate (Modbus/TCP Security); null otherwise.
    pub subject: Option<String>,
    /// When the session opened; null when free.
    pub since: Option<String>,
    /// Seconds since its last request or answer; null when free.
    pub idle_s: Option<u64>,
    /// What the page shows.
    pub text: String,
    pub since_text: String,
}

#[derive(Serialize)]
pub struct Rs485 {
    pub wired: bool,
    /// `communicating`, `silent` or `absent`.
    pub state: &'static str,
    pub state_text: &'static str,
    pub frames: u64,
    pub bad_frames: u64,
    pub other_slave: u64,
    pub broadcasts: u64,
}

#[derive(Serialize)]
pub struct Login {
    pub user: String,
    pub role: &'static str,
    pub from: String,
    pub since: String,
}

impl Status {
    pub fn of(app: &App) -> Status {
        let link = &app.card.link;
        let c = link.counters();
        let (state, state_text) = match link.state() {
            LinkState::Detecting if link.not_found() => (
                "detecting",
                "UPS not found: check that its COM-slot port is enabled (57600, 19200 or \
                 9600 baud, slave 1); still looking",
            ),
            LinkState::Detecting => ("detecting", "Detecting the baud rate"),
            LinkState::Up => ("up", "Communicating"),
            LinkState::Lost => ("lost", "Communication lost"),
            LinkState::Stopped => ("stopped", "Stopped"),
        };
        let baud = link.baud();
        let tcp = slots(&app.sessions);
        let tls = app.mbtls_sessions.as_deref().map(slots).unwrap_or_default();
        let rs485 = match &app.rs485 {
            Some(s) => {
                let on = s.communicating.load(Relaxed);
                Rs485 {
                    wired: true,
                    state: if on { "communicating" } else { "silent" },
                    state_text: if on {
                        "Communicating"
                    } else {
                        "No master heard"
                    },
                    frames: s.frames.load(Relaxed),
                    bad_frames: s.bad_frames.load(Relaxed),
                    other_slave: s.other_slave.load(Relaxed),
                    broadcasts: s.broadcasts.load(Relaxed),
                }
            }
            None => Rs485 {
                wired: false,
                state: "absent",
                state_text: "Not in use",
                frames: 0,
                bad_frames: 0,
                other_slave: 0,
                broadcasts: 0,
            },
        };
        let login = match app.card.accounts.logged_in(Channel::Web) {
            Some(s) => Login {
                user: s.user,
                role: s.role.label(),
                from: s.peer.to_string(),
                since: timestamp(s.since),
            },
            None => Login {
                user: String::new(),
                role: "",
                from: String::new(),
                since: String::new(),
            },
        };
        let ips: Vec<String> = crate::web::certs::interface_addresses()
            .into_iter()
            .filter(|a| !a.is_loopback())
            .map(|a| a.to_string())
            .collect();
        let up = app.started.elapsed().as_secs();
        let (port, stored_port) = (app.modbus.addr().port(), app.card.live.stored().modbus_port);
        let modbus = Modbus {
            port,
            stored_port,
            text: super::modbus::in_force(&app.modbus, stored_port),
        };
        Status {
            firmware: version(),
            mac: app.card.accounts.mac().to_string(),
            ip: if ips.is_empty() {
                "none".into()
            } else {
                ips.join(", ")
            },
            time: timestamp(SystemTime::now()),
            uptime: format!(
                "{}d {:02}:{:02}:{:02}",
                up / 86_400,
                up / 3600 % 24,
                up / 60 % 60,
                up % 60
            ),
            modbus,
            ups: Ups {
                state,
                state_text,
                baud,
                baud_text: if baud == 0 {
                    "not found yet".into()
                } else {
                    format!("{baud} baud")
                },
                counters: counters(&c),
                unit: UpsView::of(&link.ups.lock().clone(), link.state()),
            },
            tcp,
            tls,
            rs485,
            login,
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub s: Status,
    pub counters: [(&'static str, &'static str); 7],
    /// Any host that reaches the card may write to the UPS (the factory setting): said
    /// on Home until someone who may change it decides.
    pub open_writes: bool,
    /// The history's charts (SVG drawn here), and the period they cover.
    pub charts: Vec<String>,
    pub week: bool,
}

pub fn page(ctx: &Ctx<'_>) -> Response {
    let page = HomePage {
        layout: Layout::of(ctx, "Home", "home"),
        s: Status::of(ctx.app),
        counters: COUNTERS,
        open_writes: {
            let s = ctx.app.card.live.current();
            s.modbus_write == crate::access::Writers::Everyone && s.modbus_allow.is_empty()
        },
        charts: super::history::svgs(ctx, super::history::Span::of(ctx)),
        week: super::history::Span::of(ctx) == super::history::Span::Week,
    };
    html(&page, 200)
}

pub fn api(ctx: &Ctx<'_>) -> Response {
    Response::json(&Status::of(ctx.app))
}
