//! `/firmware`: the version running, and the upload of a new image, offered only to admin
//! and only while Network upgrade is on.
//!
//! The upload itself is the firmware module's: an image is larger than the front's 1 MiB
//! form cap and streams on a path of its own. [`upload`] is where that function is
//! called from; until the card has it, the path says the upload is not available.

use super::{html, message, Layout, VERSION};
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

#[derive(Template)]
#[template(path = "firmware.html")]
pub struct FirmwarePage {
    pub layout: Layout,
    pub version: &'static str,
    pub upgrade_enabled: bool,
}

pub fn page(ctx: &Ctx<'_>) -> Response {
    let page = FirmwarePage {
        layout: Layout::of(ctx, "Firmware", "firmware"),
        version: VERSION,
        upgrade_enabled: ctx.app.live.current().upgrade_enabled,
    };
    html(&page, 200)
}

/// `POST /firmware/upload`: the firmware module's streamed upload goes here.
pub fn upload(ctx: &Ctx<'_>) -> Response {
    let refuse = |status, text: &str| {
        message(
            Layout::of(ctx, "Firmware", "firmware"),
            status,
            "Firmware upgrade",
            text,
        )
    };
    if !ctx.is_admin() {
        return refuse(403, "Only admin upgrades the firmware.");
    }
    if !ctx.app.live.current().upgrade_enabled {
        return refuse(
            403,
            "Network upgrade is off: turn it on on the Control page first.",
        );
    }
    refuse(
        501,
        "This firmware cannot take an upgrade over the network yet: nothing was changed.",
    )
}
