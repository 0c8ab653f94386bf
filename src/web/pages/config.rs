//! `/config`: the HTTPS certificate part of the Configuration page: the card's root to
//! download, the certificate in use, an upload checked whole before it replaces anything,
//! and the way back to the card's own.

use super::{html, read_only, Layout};
use crate::event::Event;
use crate::web::certs::{Info, Source};
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

#[derive(Template)]
#[template(path = "config.html")]
pub struct ConfigPage {
    pub layout: Layout,
    pub cert: Info,
    pub uploaded: bool,
    pub may_change: bool,
    /// The outcome of the last action: (ok, sentences).
    pub outcome: Option<(bool, Vec<String>)>,
}

pub fn page(ctx: &Ctx<'_>, outcome: Option<(bool, Vec<String>)>) -> Response {
    let status = match &outcome {
        Some((false, _)) => 400,
        _ => 200,
    };
    let cert = ctx.app.certs.info();
    let page = ConfigPage {
        layout: Layout::of(ctx, "Configuration", "config"),
        uploaded: cert.source == Source::Uploaded,
        cert,
        may_change: ctx.may_change(),
        outcome,
    };
    html(&page, status)
}

pub fn root_ca(ctx: &Ctx<'_>) -> Response {
    match ctx.app.certs.root_pem() {
        Ok(pem) => Response::from_data("application/x-pem-file", pem).with_unique_header(
            "Content-Disposition",
            "attachment; filename=\"modbus-card-root-ca.pem\"",
        ),
        Err(e) => page(ctx, Some((false, vec![e.to_string()]))),
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
        &ctx.app.names,
    ) {
        Ok(info) => {
            ctx.app.events.emit(Event::CertificateInstalled {
                subject: info.subject.clone(),
                by: ctx.session.user.clone(),
            });
            page(
                ctx,
                Some((
                    true,
                    vec![format!(
                        "The uploaded certificate is now in use, for {}.",
                        info.names.join(", ")
                    )],
                )),
            )
        }
        Err(errors) => page(ctx, Some((false, errors))),
    }
}

pub fn revert(ctx: &Ctx<'_>) -> Response {
    if !ctx.may_change() {
        return read_only(ctx);
    }
    match ctx.app.certs.revert() {
        Ok(()) => {
            ctx.app.events.emit(Event::CertificateReverted {
                by: ctx.session.user.clone(),
            });
            page(
                ctx,
                Some((
                    true,
                    vec!["The card's own certificate is in use again.".into()],
                )),
            )
        }
        Err(e) => page(ctx, Some((false, vec![e.to_string()]))),
    }
}
