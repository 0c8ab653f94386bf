//! `/mbtls`: Modbus/TCP Security (admin only). Whether port 802 is on and where; the
//! trusted client CAs, the revocation lists and the serials revoked here, each with a
//! warning near its end; uploads of CAs and lists (checked whole before anything is
//! replaced), revocation by serial number; a master's certificate request signed by the
//! card's client CA with a role; and the table of what each role may do. Every change is
//! logged with the user, and applies from the next handshake.

use super::fields::Outcome;
use super::{html, only_admin, Layout};
use crate::event::Event;
use crate::tcp::mbtls::pki;
use crate::tcp::mbtls::role::{self, Grant};
use crate::tcp::mbtls::trust::{self, Ca, Crl};
use crate::web::routes::Ctx;
use crate::web::App;
use askama::Template;
use rouille::Response;

#[derive(Template)]
#[template(path = "mbtls.html")]
pub struct MbtlsPage {
    pub layout: Layout,
    pub outcome: Option<Outcome>,
    /// Whether port 802 is on, and where.
    pub state: String,
    pub on: bool,
    pub cas: Vec<Ca>,
    pub crls: Vec<Crl>,
    pub revoked: Vec<String>,
    pub roles: Vec<(String, &'static str)>,
    pub max_role: usize,
    /// What a refused form had, shown again.
    pub typed: Typed,
}

/// The text fields of a refused form, so nothing typed is lost.
#[derive(Default)]
pub struct Typed {
    pub serial: String,
    pub role: String,
    pub rights: String,
    pub csr: String,
    pub csr_role: String,
}

const ONLY_ADMIN: &str = "Only admin manages Modbus/TCP Security.";

fn show(ctx: &Ctx<'_>, outcome: Option<Outcome>, typed: Typed) -> Response {
    let data = &ctx.app.data;
    let enabled = ctx.app.card.live.current().mbtls_enabled;
    let at = ctx.app.mbtls.as_ref().and_then(|m| m.addr());
    let state = match (&ctx.app.mbtls, at) {
        (None, _) => "Not served by this card (it was started without --mbtls).".to_string(),
        (Some(_), Some(addr)) => format!("On, listening on {addr}."),
        (Some(m), None) if enabled => format!("On, but not listening on {}.", m.place),
        (Some(m), None) => format!(
            "Off: turn it on on the Control page (it listens on {}).",
            m.place
        ),
    };
    let status = match &outcome {
        Some(o) if !o.ok => 400,
        _ => 200,
    };
    let page = MbtlsPage {
        layout: Layout::of(ctx, "Modbus/TCP Security", "control"),
        outcome,
        state,
        on: at.is_some(),
        cas: trust::cas(data),
        crls: trust::crls(data),
        revoked: trust::revoked(data),
        roles: role::table(data)
            .into_iter()
            .map(|(name, g)| (name, g.name()))
            .collect(),
        max_role: role::MAX_ROLE,
        typed,
    };
    html(&page, status)
}

pub fn page(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    show(ctx, None, Typed::default())
}

/// The page after a change: `Ok` with what was done (logged with the user), or every
/// reason nothing was, with what was typed.
fn after(ctx: &Ctx<'_>, done: Result<String, Vec<String>>, typed: Typed) -> Response {
    match done {
        Ok(what) => {
            ctx.app.card.events.emit(Event::MbtlsChanged {
                what: what.clone(),
                by: ctx.session.user.clone(),
            });
            warn_expiring(ctx.app);
            let mut text = what;
            if let Some(first) = text.get(..1) {
                text.replace_range(..1, &first.to_uppercase());
            }
            let text = format!("{text}. In force from the next connection.");
            show(ctx, Some(Outcome::ok(text, vec![])), Typed::default())
        }
        Err(errors) => show(ctx, Some(Outcome::refused(errors)), typed),
    }
}

/// `POST /mbtls/ca`: CA certificates (PEM) to trust, beside the others or in their place.
pub fn upload_ca(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    let replace = ctx.form.text("mode") == "replace";
    let done = trust::add_cas(&ctx.app.data, ctx.form.bytes("ca"), replace).map(|subjects| {
        let how = if replace {
            ", in place of all others"
        } else {
            ""
        };
        format!("client CA trusted{how}: {}", subjects.join("; "))
    });
    after(ctx, done, Typed::default())
}

/// `POST /mbtls/ca/remove`: a CA no longer trusted.
pub fn remove_ca(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    let done = trust::remove_ca(&ctx.app.data, ctx.form.text("id"))
        .map(|subject| format!("client CA no longer trusted: {subject}"))
        .map_err(|e| vec![e]);
    after(ctx, done, Typed::default())
}

/// `POST /mbtls/crl`: revocation lists (PEM), each in place of the list of its issuer.
pub fn upload_crl(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    let done = trust::install_crl(&ctx.app.data, ctx.form.bytes("crl"))
        .map(|issuers| format!("revocation list installed: {}", issuers.join("; ")));
    after(ctx, done, Typed::default())
}

/// `POST /mbtls/revoke` and `/mbtls/unrevoke`: a certificate refused by its serial number,
/// or no longer.
pub fn revoke(ctx: &Ctx<'_>, on: bool) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    let typed = ctx.form.text("serial");
    let done = trust::set_revoked(&ctx.app.data, typed, on)
        .map(|s| match on {
            true => format!("certificate with serial {s} revoked"),
            false => format!("certificate with serial {s} no longer revoked"),
        })
        .map_err(|e| vec![e]);
    let typed = Typed {
        serial: typed.to_string(),
        ..Typed::default()
    };
    after(ctx, done, typed)
}

/// `POST /mbtls/role`: what a role may do.
pub fn set_role(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    let (name, rights) = (ctx.form.text("name"), ctx.form.text("rights"));
    let done = match Grant::parse(rights) {
        None => Err("Choose the rights: read, operate or none.".to_string()),
        Some(g) => role::set(&ctx.app.data, name, g).map(|()| match g {
            Grant::None => format!("role '{name}' has no rights"),
            g => format!("role '{name}' given the rights {}", g.name()),
        }),
    }
    .map_err(|e| vec![e]);
    let typed = Typed {
        role: name.to_string(),
        rights: rights.to_string(),
        ..Typed::default()
    };
    after(ctx, done, typed)
}

/// `POST /mbtls/sign`: a master's certificate request (a file, or pasted) signed with a
/// role by the card's client CA; the certificate comes back as a download.
pub fn sign(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, ONLY_ADMIN);
    }
    let file = ctx.form.bytes("csr");
    let pasted = ctx.form.text("csr_text");
    let csr = if file.iter().all(u8::is_ascii_whitespace) {
        pasted.to_string()
    } else {
        String::from_utf8_lossy(file).into_owned()
    };
    let role_name = ctx.form.text("role");
    let typed = Typed {
        csr: pasted.to_string(),
        csr_role: role_name.to_string(),
        ..Typed::default()
    };
    let signed =
        role::check_name(role_name).and_then(|()| pki::sign_csr(&ctx.app.data, &csr, role_name));
    let (pem, serial) = match signed {
        Ok(done) => done,
        Err(e) => return show(ctx, Some(Outcome::refused(vec![e])), typed),
    };
    let subject = x509_subject(&pem);
    let mut what =
        format!("certificate signed for {subject} with role '{role_name}' (serial {serial})");
    if role::grant(&ctx.app.data, role_name) == Grant::None {
        what += ", a role without rights in the table";
    }
    ctx.app.card.events.emit(Event::MbtlsChanged {
        what,
        by: ctx.session.user.clone(),
    });
    Response::from_data("application/x-pem-file", pem).with_unique_header(
        "Content-Disposition",
        format!("attachment; filename=\"modbus-master-{serial}.pem\""),
    )
}

fn x509_subject(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .and_then(|der| {
            x509_parser::parse_x509_certificate(&der)
                .ok()
                .map(|(_, c)| c.subject().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// Logs once each trusted CA and revocation list that has come within 30 days of its end
/// (at the start, daily, and after each change on the page).
pub fn warn_expiring(app: &App) {
    let now = trust::expiring(&app.data);
    let mut warned = app.mbtls_warned.lock();
    for (key, what) in &now {
        if warned.insert(key.clone()) {
            app.card
                .events
                .emit(Event::MbtlsExpiring { what: what.clone() });
        }
    }
    // An item renewed and later near its end again is told again.
    warned.retain(|k| now.iter().any(|(key, _)| key == k));
}
