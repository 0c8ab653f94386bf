//! `/firmware`: the version running, and the upload of a new image, offered only to admin
//! and only while Network upgrade is on.
//!
//! The upload streams ([`crate::web::upload`]): the browser's form goes to
//! `/firmware/upload` (its CSRF token in the address, since the body is not read before
//! the page answers), and the image inside it goes to the firmware module's upgrade as it
//! arrives, to disk, never whole in memory. The page then says what was installed (the
//! card restarts into it a moment later) or why nothing was.

use super::control::Restarting;
use super::fields::{Outcome, State};
use super::{html, only_admin, version, Layout};
use crate::firmware::Refusal;
use crate::web::routes::Ctx;
use crate::web::upload::FilePart;
use askama::Template;
use rouille::Response;
use std::io::Read;

#[derive(Template)]
#[template(path = "firmware.html")]
pub struct FirmwarePage {
    pub layout: Layout,
    pub outcome: Option<Outcome>,
    pub version: &'static str,
    pub upgrade_enabled: bool,
    /// The card runs from an A/B install.
    pub upgradable: bool,
    /// Where the form posts: the upload path with the session's CSRF token.
    pub action: String,
}

pub fn page(ctx: &Ctx<'_>, state: State) -> Response {
    let page = FirmwarePage {
        layout: Layout::of(ctx, "Firmware", "firmware"),
        version: version(),
        upgrade_enabled: ctx.app.card.live.current().upgrade_enabled,
        upgradable: ctx.app.upgradable,
        action: format!("{}?csrf={}", crate::web::http::STREAMED, ctx.session.csrf),
        outcome: state.outcome.clone(),
    };
    html(&page, state.status())
}

/// `POST /firmware/upload`: the image, streamed to the firmware module's upgrade.
pub fn upload(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return only_admin(ctx, "Only admin upgrades the firmware.");
    }
    let Some(mut body) = ctx.upload.borrow_mut().take() else {
        return page(
            ctx,
            State::with(Outcome::refused(vec!["No image was sent.".into()])),
        );
    };
    let ctype = ctx.req.header("Content-Type").unwrap_or("");
    let length = body.length();
    let beat = ctx.beat;
    let mut progress = |_| beat.busy();
    let who = super::fields::who(ctx);
    // A browser's form holds the image in a part of its own; a script may send it bare.
    let result = if ctype.starts_with("multipart/form-data") {
        match FilePart::new(&mut body, ctype, "image") {
            Ok(mut file) => {
                (ctx.app.upgrade)(&mut file as &mut dyn Read, None, &who, &mut progress)
            }
            Err(e) => Err(Refusal::Incomplete(e.to_string())),
        }
    } else {
        (ctx.app.upgrade)(&mut body, Some(length), &who, &mut progress)
    };
    match result {
        Ok(installed) => html(
            &Restarting {
                layout: Layout::of(ctx, "Firmware", "firmware"),
                heading: format!("Firmware {} installed", installed.version),
                lines: vec![
                    format!(
                        "The card restarts into it in a moment. It runs on trial: once healthy \
                         it is kept; if not, the card goes back to {}.",
                        installed.previous
                    ),
                    "Log in again once it is back; the event log says how the trial went.".into(),
                ],
            },
            200,
        )
        .with_unique_header("Connection", "close"),
        Err(refusal) => {
            // What is left of the upload, the front reads and drops while this goes out.
            let mut outcome = Outcome::refused(vec![capitalised(&refusal.to_string())]);
            outcome.title = "The firmware was not changed:".into();
            page(ctx, State::with(outcome))
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
