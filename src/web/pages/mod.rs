//! The pages, one module each, rendered from the templates in `www/` (askama: compiled into
//! the binary, HTML escaped by default). What every page shares is here: the frame around
//! it ([`Layout`]), the stylesheet and script, and the pages that refuse.

pub mod config;
pub mod control;
pub mod date_time;
pub mod debug;
pub mod event_log;
pub mod fields;
pub mod firmware;
pub mod history;
pub mod home;
pub mod login;
pub mod mbtls;
pub mod modbus;
pub mod password;
pub mod ups_view;
pub mod users;

use super::routes::Ctx;
use askama::Template;
use rouille::Response;

/// The stylesheet and the pages' scripts, compiled in.
pub const STYLE: &str = include_str!("../../../www/style.css");
pub const HOME_JS: &str = include_str!("../../../www/home.js");
pub const DEBUG_JS: &str = include_str!("../../../www/debug.js");

/// The firmware version the pages show: this build's stamp, which an upgrade changes.
pub fn version() -> &'static str {
    crate::firmware::version::current()
}

/// What the frame around a page needs: title, menu, who is logged in, the logout form.
pub struct Layout {
    pub title: &'static str,
    /// Which menu entry is this page.
    pub active: &'static str,
    /// `None` on the pages before login.
    pub user: Option<String>,
    pub role: &'static str,
    pub csrf: String,
    pub admin: bool,
    /// Read-only users are told so on every page.
    pub read_only: bool,
    /// The MODBUS debug page is in the menu while Modbus debug is on.
    pub debug: bool,
    /// The menu is hidden while the password must be changed.
    pub menu: bool,
    pub version: &'static str,
}

impl Layout {
    pub fn of(ctx: &Ctx<'_>, title: &'static str, active: &'static str) -> Layout {
        Layout {
            title,
            active,
            user: Some(ctx.session.user.clone()),
            role: ctx.session.role.label(),
            csrf: ctx.session.csrf.clone(),
            admin: ctx.is_admin(),
            read_only: !ctx.may_change(),
            debug: ctx.app.card.live.current().debug_enabled,
            menu: ctx.session.change.is_none(),
            version: version(),
        }
    }

    /// The frame of a page shown before login.
    pub fn public(title: &'static str) -> Layout {
        Layout {
            title,
            active: "",
            user: None,
            role: "",
            csrf: String::new(),
            admin: false,
            read_only: false,
            debug: false,
            menu: false,
            version: version(),
        }
    }
}

/// A rendered template as an HTML answer with `status`.
pub fn html(page: &impl Template, status: u16) -> Response {
    match page.render() {
        Ok(body) => Response::html(body).with_status_code(status),
        Err(e) => {
            log::error!("web: a page failed to render: {e}");
            Response::text("The page could not be made; see the service log.\n")
                .with_status_code(500)
        }
    }
}

pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    Response::from_data(format!("{content_type}; charset=utf-8"), body)
}

/// A page with one message, for refusals and errors.
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub layout: Layout,
    pub heading: &'static str,
    pub text: String,
}

pub fn message(
    layout: Layout,
    status: u16,
    heading: &'static str,
    text: impl Into<String>,
) -> Response {
    html(
        &Message {
            layout,
            heading,
            text: text.into(),
        },
        status,
    )
}

pub fn not_found(ctx: &Ctx<'_>) -> Response {
    message(
        Layout::of(ctx, "Not found", ""),
        404,
        "Not found",
        "There is no page at this address.",
    )
}

pub fn refused_origin() -> Response {
    message(
        Layout::public("Refused"),
        403,
        "Refused",
        "This form was not sent from a page of this card. Open the card's page and try again.",
    )
}

pub fn refused_csrf() -> Response {
    message(
        Layout::public("Refused"),
        403,
        "Refused",
        "This form has expired or was not made by this card. Reload the page and try again.",
    )
}

/// The answer to a change a Read-only user asked for.
pub fn read_only(ctx: &Ctx<'_>) -> Response {
    message(
        Layout::of(ctx, "Not allowed", ""),
        403,
        "Not allowed",
        "Your account is Read-only: it can look at every page but change nothing.",
    )
}

/// The answer to what only admin may do, `text` saying what.
pub fn only_admin(ctx: &Ctx<'_>, text: &str) -> Response {
    message(Layout::of(ctx, "Not allowed", ""), 403, "Not allowed", text)
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a time.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let secs = crate::clock::unix_s(t);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}
