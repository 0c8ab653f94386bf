//! `/control`: the card's services, each switched on or off at once through the settings'
//! one door, and the actions Reboot and Reset to factory settings, each asked for again
//! with what it will do before it is done.

use super::fields::{self, Outcome, State};
use super::{html, only_admin, read_only, Layout};
use crate::settings::{def_of, Key};
use crate::web::listen::Kind;
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

/// The services of docs/web.md, in the vendor's order: key, port, what "off" means.
const SERVICES: [(Key, Option<Kind>, &str, &str); 10] = [
    (Key::DhcpEnabled, None, "", "static IP address"),
    (Key::PingEnabled, None, "", "ping not answered"),
    (
        Key::UpgradeEnabled,
        None,
        "",
        "no firmware upgrade over the network",
    ),
    (
        Key::HttpsEnabled,
        Some(Kind::Https),
        "TCP 443",
        "no secure web access",
    ),
    (
        Key::HttpEnabled,
        Some(Kind::Http),
        "TCP 80",
        "no plain web access",
    ),
    (Key::SshEnabled, None, "TCP 22", "no SSH console"),
    (
        Key::ModbusEnabled,
        None,
        "TCP 502",
        "no plain Modbus TCP: only Modbus/TCP Security",
    ),
    (
        Key::MbtlsEnabled,
        None,
        "TCP 802",
        "no Modbus over TLS with client certificates",
    ),
    (Key::DebugEnabled, None, "", "no frame log page"),
    (
        Key::MdnsEnabled,
        None,
        "UDP 5353",
        "the card is not announced on the network",
    ),
];

/// One row of the services table.
pub struct Service {
    pub key: Key,
    pub name: &'static str,
    pub port: String,
    pub off_means: &'static str,
    pub on: bool,
    /// Only admin may switch it (who can reach the card).
    pub locked: bool,
}

#[derive(Template)]
#[template(path = "control.html")]
pub struct ControlPage {
    pub layout: Layout,
    pub outcome: Option<Outcome>,
    pub services: Vec<Service>,
}

pub fn page(ctx: &Ctx<'_>, state: State) -> Response {
    let settings = ctx.app.card.live.current();
    let services = SERVICES
        .iter()
        .map(|&(key, kind, port, off_means)| {
            let def = def_of(key);
            let home = match (key, &ctx.app.ssh) {
                (Key::SshEnabled, Some(ssh)) => Some(ssh()),
                _ => kind.and_then(|k| ctx.app.listeners.home(k)),
            };
            let port = match home {
                Some(addr) => format!("TCP {}", addr.port()),
                None if key == Key::ModbusEnabled => format!("TCP {}", settings.modbus_port),
                None => port.to_string(),
            };
            Service {
                key,
                name: def.label,
                port,
                off_means,
                on: settings.get(key) == "true",
                locked: def.admin_only && !ctx.is_admin(),
            }
        })
        .collect();
    let page = ControlPage {
        layout: Layout::of(ctx, "Control", "control"),
        outcome: state.outcome.clone(),
        services,
    };
    html(&page, state.status())
}

/// A service switched: the form posts its key with the new value.
pub fn switch(ctx: &Ctx<'_>) -> Response {
    let keys: Vec<Key> = SERVICES.iter().map(|s| s.0).collect();
    match fields::submit(ctx, &keys) {
        Ok(state) => page(ctx, state),
        Err(answer) => answer,
    }
}

/// The page a restarting card answers with; it reloads Home after a while, which asks
/// for a new login.
#[derive(Template)]
#[template(path = "restarting.html")]
pub struct Restarting {
    pub layout: Layout,
    pub heading: String,
    pub lines: Vec<String>,
}

/// The page that answers a restart, on a connection that then ends (the service stops
/// right after it is sent).
pub fn restarting(ctx: &Ctx<'_>, heading: &str, lines: Vec<String>) -> Response {
    html(
        &Restarting {
            layout: Layout::of(ctx, "Restarting", "control"),
            heading: heading.into(),
            lines,
        },
        200,
    )
    .with_unique_header("Connection", "close")
}

pub fn reboot(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    if ctx.form.text("confirm") != "yes" {
        return fields::ask(
            ctx,
            "Reboot the card?",
            vec![
                "The card restarts: its Modbus TCP sessions close, and its pages are gone \
                 for a few seconds; masters connect again once it is back."
                    .into(),
                "Everyone logged in has to log in again.".into(),
            ],
            &[],
            "Yes, reboot",
            "/control",
        );
    }
    ctx.app.card.control.restart(&fields::who(ctx));
    restarting(
        ctx,
        "The card is restarting",
        vec![
            "It is back in about 10 seconds: this page then goes to the login by itself. \
             Modbus masters reconnect on their own."
                .into(),
        ],
    )
}

pub fn factory_reset(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, "Only admin resets the card to its factory settings.");
    }
    if ctx.form.text("confirm") != "yes" {
        return fields::ask(
            ctx,
            "Reset to factory settings?",
            vec![
                "Every setting goes back to its factory value (the board's devices apart): \
                 Modbus ports and timeouts, access control, the services, the network \
                 (DHCP), the NTP server."
                    .into(),
                "Every user is removed, and admin's password is again the last 6 characters of \
                 the card's MAC address, to be changed at the first login."
                    .into(),
                "The card makes new HTTPS certificates: download its new root and trust it \
                 again."
                    .into(),
                "Then the card restarts. The event log is kept.".into(),
            ],
            &[],
            "Yes, reset everything",
            "/control",
        );
    }
    match ctx.app.card.control.factory_reset(&fields::who(ctx)) {
        Ok(()) => restarting(
            ctx,
            "Back to factory settings; the card is restarting",
            vec![
                "It is back in about 10 seconds, with DHCP on: its address may change. Find \
                 it in the DHCP server's leases (by its MAC address), or, with no DHCP \
                 server answering, at 192.168.7.18."
                    .into(),
                "Log in as admin with the last 6 characters of the card's MAC address as the \
                 password, and choose a new one."
                    .into(),
                "The card has a new root certificate: download it from the Configuration \
                 page and trust it in place of the old one."
                    .into(),
            ],
        ),
        Err(e) => page(ctx, State::with(Outcome::refused(vec![e]))),
    }
}
