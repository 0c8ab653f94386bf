//! `/config`: Configuration. The network (DHCP or the static address, and what the card
//! made of it), the UPS link, logins, the user's own password, the configuration file
//! (download; upload shown as a preview of what would change, applied only once
//! confirmed), the HTTPS certificate (the card's root to download and what it signs for, a
//! new root on an administrator's confirmation, an upload checked whole before it replaces
//! anything, the way back to the card's own) and the board's devices (admin; read at the
//! next start).

use super::fields::{self, Field, Outcome, State};
use super::{html, only_admin, read_only, timestamp, version, Layout};
use crate::board::network::NetStatus;
use crate::config_file::{self, LineError};
use crate::event::Event;
use crate::live::{Refused, Who};
use crate::settings::{def_of, Diff, Key, Section, DEFS};
use crate::web::certs::{Info, Made, RootInfo, Source};
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

const NETWORK: [Key; 5] = [
    Key::DhcpEnabled,
    Key::IpAddress,
    Key::Netmask,
    Key::Gateway,
    Key::Dns,
];
const UPS: [Key; 3] = [Key::UpsBaud, Key::SerialTimeoutMs, Key::PollRateS];
const LOGINS: [Key; 2] = [Key::LoginTimeoutS, Key::PasswordDays];
const SYSLOG: [Key; 4] = [
    Key::SyslogEnabled,
    Key::SyslogServer,
    Key::SyslogPort,
    Key::SyslogTransport,
];

fn board_keys() -> Vec<Key> {
    DEFS.iter()
        .filter(|d| d.section == Section::Board)
        .map(|d| d.key)
        .collect()
}

#[derive(Template)]
#[template(path = "config.html")]
pub struct ConfigPage {
    pub layout: Layout,
    pub outcome: Option<Outcome>,
    pub network: Vec<Field>,
    pub ups: Vec<Field>,
    pub logins: Vec<Field>,
    pub board: Vec<Field>,
    pub syslog: Vec<Field>,
    /// An administrator's CA checks the log server over TLS (else the system's).
    pub syslog_ca: bool,
    /// What the network script did; `None` when the network is left to the system.
    pub net: Option<NetStatus>,
    pub net_applied: String,
    pub cert: Info,
    pub root: RootInfo,
    pub uploaded: bool,
    pub may_change: bool,
}

pub fn page(ctx: &Ctx<'_>, state: State) -> Response {
    let cert = ctx.app.certs.info();
    let net = ctx.app.card.network.as_ref().map(|watch| watch());
    let net_applied = match net.as_ref().and_then(|n| n.applied.clone()) {
        Some((at, true, _)) => format!("applied {}", timestamp(at)),
        Some((at, false, line)) => format!("failed {}: {line}", timestamp(at)),
        None => "not yet".into(),
    };
    let page = ConfigPage {
        layout: Layout::of(ctx, "Configuration", "config"),
        network: fields::fields(ctx, &NETWORK, &state),
        ups: fields::fields(ctx, &UPS, &state),
        logins: fields::fields(ctx, &LOGINS, &state),
        board: fields::fields(ctx, &board_keys(), &state),
        syslog: fields::fields(ctx, &SYSLOG, &state),
        syslog_ca: ctx.app.syslog.ca_uploaded(),
        net,
        net_applied,
        uploaded: cert.source == Source::Uploaded,
        cert,
        root: ctx.app.certs.root_info(),
        may_change: ctx.may_change(),
        outcome: state.outcome.clone(),
    };
    html(&page, state.status())
}

/// A settings form of this page posted.
pub fn submit(ctx: &Ctx<'_>) -> Response {
    let all: Vec<Key> = [&NETWORK[..], &UPS, &LOGINS, &board_keys(), &SYSLOG].concat();
    match fields::submit(ctx, &all) {
        Ok(state) => page(ctx, state),
        Err(answer) => answer,
    }
}

pub fn root_ca(ctx: &Ctx<'_>) -> Response {
    match ctx.app.certs.root_pem() {
        Ok(pem) => Response::from_data("application/x-pem-file", pem).with_unique_header(
            "Content-Disposition",
            "attachment; filename=\"modbus-card-root-ca.pem\"",
        ),
        Err(e) => page(ctx, State::with(Outcome::refused(vec![e.to_string()]))),
    }
}

pub fn upload(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    let f = &ctx.form;
    match ctx.app.certs.install(
        f.bytes("certificate"),
        f.bytes("key"),
        f.bytes("ca"),
        &ctx.app.certs.names(),
    ) {
        Ok(info) => {
            ctx.app.card.events.emit(Event::CertificateInstalled {
                subject: info.subject.clone(),
                by: ctx.session.user.clone(),
            });
            let text = format!(
                "The uploaded certificate is now in use, for {}.",
                info.names.join(", ")
            );
            page(ctx, State::with(Outcome::ok(text, vec![])))
        }
        Err(errors) => page(ctx, State::with(Outcome::refused(errors))),
    }
}

pub fn revert(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    match ctx.app.certs.revert() {
        Ok(()) => {
            ctx.app.card.events.emit(Event::CertificateReverted {
                by: ctx.session.user.clone(),
            });
            let text = "The card's own certificate is in use again.";
            page(ctx, State::with(Outcome::ok(text, vec![])))
        }
        Err(e) => page(ctx, State::with(Outcome::refused(vec![e.to_string()]))),
    }
}

/// `POST /config/certificate/root`: a new root that signs only for the card, once an
/// administrator has confirmed that clients must trust it in place of the old one, whose
/// key is then gone.
pub fn new_root(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, "Only admin makes a new root certificate.");
    }
    let names = ctx.app.card_names();
    let scope = names.root_scope();
    if ctx.form.text("confirm") != "yes" {
        return fields::ask(
            ctx,
            "Make a new root certificate?",
            vec![
                "Browsers, systems and scripts that trust the card's current root no longer \
                 trust the card: download the new root and trust it in their place (and remove \
                 the old one)."
                    .into(),
                "The current root's key is deleted: it can sign nothing more.".into(),
                format!("The new root signs only for {}.", scope.join(", ")),
            ],
            &[],
            "Yes, make a new root",
            "/config",
        );
    }
    match ctx.app.certs.new_root(&names) {
        Ok(made) => {
            ctx.app.card.events.emit(Event::RootMade {
                scope: scope.join(", "),
                by: ctx.session.user.clone(),
            });
            if let Made::Server(names) = made {
                ctx.app.card.events.emit(Event::CertificateMade { names });
            }
            let text = "The card has a new root, and a certificate from it. Download the new \
                        root and trust it in browsers and scripts in place of the old one.";
            page(ctx, State::with(Outcome::ok(text, vec![])))
        }
        Err(e) => page(ctx, State::with(Outcome::refused(vec![e.to_string()]))),
    }
}

/// `/config/export`: every setting as stored, as the configuration file.
pub fn export(ctx: &Ctx<'_>) -> Response {
    let origin = format!(
        "modbus-card {}, exported {} by {}",
        version(),
        timestamp(ctx.app.card.clock.now()),
        ctx.session.user
    );
    // The stored values: a command-line override holds for one run, not in a backup.
    let file = config_file::export(&ctx.app.card.live.stored(), &origin);
    Response::from_data("application/toml; charset=utf-8", file).with_unique_header(
        "Content-Disposition",
        "attachment; filename=\"modbus-card.toml\"",
    )
}

/// A row of the preview: what a file would change.
pub struct Change {
    pub label: &'static str,
    pub key: crate::settings::Key,
    pub old: String,
    pub new: String,
}

#[derive(Template)]
#[template(path = "config_preview.html")]
pub struct PreviewPage {
    pub layout: Layout,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
    /// Carried back with the confirmation: the file, and what it was shown to change.
    pub file: String,
    pub expect: String,
    pub note: Option<String>,
}

/// A file checked: its entries, what they would change, and the warnings to confirm.
struct Checked {
    entries: Vec<config_file::Entry>,
    diffs: Vec<Diff>,
    warnings: Vec<String>,
}

/// What a file would change in the card as it is, checked whole as the door checks it;
/// every problem at its line.
fn check_file(ctx: &Ctx<'_>, bytes: &[u8]) -> Result<Checked, Vec<LineError>> {
    let entries = config_file::parse(bytes)?;
    let pairs: Vec<(Key, &str)> = entries.iter().map(|e| (e.key, e.value.as_str())).collect();
    let line_of = |key: &str| entries.iter().find(|e| e.key == *key).map_or(0, |e| e.line);
    let (diffs, warnings) = ctx.app.card.live.preview(&pairs).map_err(|refused| {
        refused
            .into_iter()
            .map(|r| LineError {
                line: line_of(&r.key),
                message: r.message,
            })
            .collect::<Vec<_>>()
    })?;
    if !ctx.is_admin() {
        let locked: Vec<LineError> = diffs
            .iter()
            .filter(|d| def_of(d.key).admin_only)
            .map(|d| LineError {
                line: line_of(d.key.name()),
                message: format!(
                    "{}: {}",
                    d.key,
                    crate::settings::admin_reason(def_of(d.key))
                ),
            })
            .collect();
        if !locked.is_empty() {
            return Err(locked);
        }
    }
    Ok(Checked {
        entries,
        diffs,
        warnings,
    })
}

fn refused_file(ctx: &Ctx<'_>, errors: Vec<LineError>) -> Response {
    let mut outcome = Outcome::refused(errors.iter().map(|e| e.to_string()).collect());
    outcome.title = "The configuration file was refused; nothing was changed:".into();
    page(ctx, State::with(outcome))
}

/// What the preview was (a digest of its lines): compared at the confirmation, so what
/// is applied is what was shown.
fn expectation(diffs: &[Diff]) -> String {
    let lines = crate::settings::summary(diffs).join("\n");
    crate::accounts::hex(ring::digest::digest(&ring::digest::SHA256, lines.as_bytes()).as_ref())
}

fn preview(
    ctx: &Ctx<'_>,
    text: &str,
    diffs: &[Diff],
    warnings: Vec<String>,
    note: Option<String>,
) -> Response {
    let changes = diffs
        .iter()
        .map(|d| Change {
            label: crate::settings::label(d.key),
            key: d.key,
            old: d.old.clone(),
            new: d.new.clone(),
        })
        .collect();
    html(
        &PreviewPage {
            layout: Layout::of(ctx, "Configuration file", "config"),
            changes,
            warnings,
            file: text.to_string(),
            expect: expectation(diffs),
            note,
        },
        200,
    )
}

/// `POST /config/file`: an uploaded configuration file, checked whole; shows what it would
/// change, and changes nothing yet.
pub fn upload_file(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    let bytes = ctx.form.bytes("file");
    if bytes.is_empty() {
        return refused_file(
            ctx,
            vec![LineError {
                line: 0,
                message: "no file was sent: choose one first".into(),
            }],
        );
    }
    match check_file(ctx, bytes) {
        Err(errors) => refused_file(ctx, errors),
        Ok(c) if c.diffs.is_empty() => page(
            ctx,
            State::with(Outcome::ok(
                "The file matches the settings in force: nothing to change.",
                vec![],
            )),
        ),
        Ok(c) => {
            // parse() took it as UTF-8 text.
            let text = String::from_utf8_lossy(bytes);
            preview(ctx, &text, &c.diffs, c.warnings, None)
        }
    }
}

/// `POST /config/file/apply`: the file confirmed after its preview, made through the
/// settings' one door, if it still changes what the preview showed.
pub fn apply_file(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    let text = ctx.form.text("file");
    let Checked {
        entries,
        diffs,
        warnings,
    } = match check_file(ctx, text.as_bytes()) {
        Ok(checked) => checked,
        Err(errors) => return refused_file(ctx, errors),
    };
    if expectation(&diffs) != ctx.form.text("expect") {
        return preview(
            ctx,
            text,
            &diffs,
            warnings,
            Some("The settings changed since the file was checked: here is what it would change now.".into()),
        );
    }
    let pairs: Vec<(Key, &str)> = entries.iter().map(|e| (e.key, e.value.as_str())).collect();
    let who = Who {
        user: ctx.session.user.clone(),
        via: format!("web {}, configuration file", ctx.req.remote_addr().ip()),
        role: ctx.session.role,
    };
    match ctx.app.card.live.change(&pairs, &who, true) {
        Ok(applied) => {
            ctx.app.card.events.emit(Event::ConfigurationLoaded {
                changed: applied.diffs.len(),
                by: who.to_string(),
            });
            let title = format!(
                "Configuration file loaded: {} settings changed, in force now:",
                applied.diffs.len()
            );
            page(
                ctx,
                State::with(Outcome::ok(title, crate::settings::summary(&applied.diffs))),
            )
        }
        Err(Refused::Invalid(r)) => refused_file(
            ctx,
            r.into_iter()
                .map(|r| LineError {
                    line: 0,
                    message: r.message,
                })
                .collect(),
        ),
        Err(e) => page(ctx, State::with(Outcome::refused(vec![e.to_string()]))),
    }
}

/// `POST /config/syslog/test`: a test message to the log server now, and how it went.
pub fn syslog_test(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    let outcome = match ctx.app.syslog.test() {
        Ok(text) => Outcome::ok(text, vec![]),
        Err(e) => Outcome::refused(vec![format!("No test message sent: {e}")]),
    };
    page(ctx, State::with(outcome))
}

/// `POST /config/syslog/ca`: the CA that signs the log server's certificate (TLS).
pub fn syslog_ca(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, "Only admin decides which log server the card trusts.");
    }
    match ctx.app.syslog.install_ca(ctx.form.bytes("ca")) {
        Ok(n) => {
            let text = format!(
                "The log server's certificate is now checked against the {n} CA \
                 certificate(s) uploaded."
            );
            page(ctx, State::with(Outcome::ok(text, vec![])))
        }
        Err(e) => page(ctx, State::with(Outcome::refused(vec![e]))),
    }
}
