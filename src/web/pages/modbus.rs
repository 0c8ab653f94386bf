//! `/modbus`: MODBUS configuration. Modbus TCP, the UPS serial link, the RS485 port, and
//! access control (which masters may connect, which may write), with what access control
//! turned away so far. Every field comes from the settings table and goes through the one
//! door: a new port listens, a new timeout holds, at once.

use super::fields::{self, Field, Outcome, State};
use super::{html, Layout};
use crate::settings::Key;
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;
use std::sync::atomic::Ordering::Relaxed;

const TCP: [Key; 4] = [
    Key::ModbusPort,
    Key::ModbusTimeoutS,
    Key::ModbusEvictIdleS,
    Key::Routing,
];
const UPS: [Key; 5] = [
    Key::UpsBaud,
    Key::SerialTimeoutMs,
    Key::PollRateS,
    Key::UpsSlave,
    Key::FrameGapUs,
];
const RS485: [Key; 3] = [Key::Rs485Slave, Key::Rs485Baud, Key::Rs485TimeoutS];
const ACCESS: [Key; 3] = [Key::ModbusAllow, Key::ModbusWrite, Key::ModbusWriters];

#[derive(Template)]
#[template(path = "modbus.html")]
pub struct ModbusPage {
    pub layout: Layout,
    pub outcome: Option<Outcome>,
    pub tcp: Vec<Field>,
    pub ups: Vec<Field>,
    pub rs485: Vec<Field>,
    /// The RS485 port as it is now.
    pub rs485_state: String,
    pub access: Vec<Field>,
    pub listening: String,
    pub sessions: usize,
    pub baud: String,
    pub refused_connections: u64,
    pub refused_writes: u64,
}

pub fn page(ctx: &Ctx<'_>, state: State) -> Response {
    let app = ctx.app;
    let baud = match app.card.link.baud() {
        0 => "not found yet".to_string(),
        b => format!("{b} baud"),
    };
    let page = ModbusPage {
        layout: Layout::of(ctx, "MODBUS configuration", "modbus"),
        tcp: fields::fields(ctx, &TCP, &state),
        ups: fields::fields(ctx, &UPS, &state),
        rs485: fields::fields(ctx, &RS485, &state),
        access: fields::fields(ctx, &ACCESS, &state),
        listening: in_force(&app.modbus, app.card.live.stored().modbus_port),
        sessions: app.sessions.open(),
        baud,
        rs485_state: match &app.rs485 {
            Some(s) if s.communicating.load(Relaxed) => {
                "A master is talking to the card on this port.".into()
            }
            Some(_) => "No master heard on this port lately.".into(),
            None => "Not in use on this card: the settings are kept for when it is.".into(),
        },
        refused_connections: app.refused.connections.load(Relaxed),
        refused_writes: app.refused.writes.load(Relaxed),
        outcome: state.outcome.clone(),
    };
    html(&page, state.status())
}

/// The port Modbus TCP listens on, and the stored one beside it when the command line
/// (`--modbus`) put it elsewhere for this run.
pub fn in_force(tcp: &crate::tcp::Tcp, stored: u16) -> String {
    let port = tcp.addr().port();
    if !tcp.listening() {
        "no port: plain Modbus TCP is turned off (Control page)".into()
    } else if port == stored {
        format!("port {port}")
    } else {
        format!(
            "port {port} (given on the command line for this run; the stored setting is {stored})"
        )
    }
}

pub fn submit(ctx: &Ctx<'_>) -> Response {
    let all: Vec<Key> = [&TCP[..], &UPS, &RS485, &ACCESS].concat();
    match fields::submit(ctx, &all) {
        Ok(state) => page(ctx, state),
        Err(answer) => answer,
    }
}
