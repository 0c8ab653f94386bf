//! The way of every request through the web interface, in order:
//!
//! 1. Plain HTTP while HTTPS is on: redirected to HTTPS, nothing else.
//! 2. The stylesheet, the script, `/login` (and a 404 for the icon browsers ask for) need
//!    no session.
//! 3. Every other path needs a live session (cookie `session`); without one it answers a
//!    redirect to `/login`, where the page says why the old session ended if it did.
//! 4. A state-changing request (POST) must come from the card's own pages: its `Origin`
//!    (or `Referer`) is this card, and its form carries the session's CSRF token.
//! 5. A session whose password must change reaches only `/password` and `/logout`.
//! 6. `router!` sends the request to its page.
//!
//! Every answer then gets the security headers ([`secure_headers`]).
//!
//! Steps 1, 3 and 4 are taken first at the request's head, by the front, before any of
//! its body is read ([`at_head`]): a body comes only with a live session, or to `/login`.

use super::form::Form;
use super::http;
use super::pages;
use super::pages::fields::State;
use super::upload::Upload;
use super::App;
use crate::accounts::{Ended, Role, Session};
use crate::health::Heartbeat;
use rouille::{router, Request, Response};
use std::net::SocketAddr;

/// The session cookie.
pub const COOKIE: &str = "session";
/// The login form's own CSRF cookie (there is no session yet to hold a token).
pub const LOGIN_COOKIE: &str = "login_csrf";
/// The header the Home page's script sends with its refreshes: they show the page is open,
/// not that someone is there, so they do not keep the session alive.
pub const REFRESH_HEADER: &str = "X-Refresh";

/// What a page handler gets: the request, the session, and the posted form if any; for
/// the streamed upload, its body, and the handler thread's heartbeat to show progress on.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub req: &'a Request,
    pub session: Session,
    pub form: Form,
    pub upload: std::cell::RefCell<Option<Upload>>,
    pub beat: &'a Heartbeat,
}

impl Ctx<'_> {
    /// Admin and Read/Write users; a page refuses a change to anyone else.
    pub fn may_change(&self) -> bool {
        self.session.role.may_change()
    }

    pub fn is_admin(&self) -> bool {
        self.session.role == Role::Admin
    }
}

/// `local`: the card's address the request came in on (for the redirect to HTTPS).
pub fn handle(
    app: &App,
    req: &Request,
    local: Option<SocketAddr>,
    upload: Option<Upload>,
    beat: &Heartbeat,
) -> Response {
    let response = route(app, req, local, upload, beat);
    secure_headers(response, req)
}

fn route(
    app: &App,
    req: &Request,
    local: Option<SocketAddr>,
    upload: Option<Upload>,
    beat: &Heartbeat,
) -> Response {
    if !req.is_secure() {
        if let Some(https) = app.listeners.addr(super::listen::Kind::Https) {
            return to_https(app, req, https, local);
        }
    }
    let path = req.raw_url().split('?').next().unwrap_or("");
    match (req.method(), path) {
        ("GET", "/static/style.css") => return pages::asset("text/css", pages::STYLE),
        ("GET", "/static/home.js") => return pages::asset("text/javascript", pages::HOME_JS),
        ("GET", "/static/debug.js") => return pages::asset("text/javascript", pages::DEBUG_JS),
        ("GET", "/favicon.ico") => return Response::empty_404(),
        ("GET", "/login") => return pages::login::form(app, req, None),
        ("POST", "/login") if !same_origin(req) => return pages::refused_origin(),
        ("POST", "/login") => return pages::login::submit(app, req),
        _ => {}
    }

    // Home itself too: its script takes the new charts from it once a minute.
    let refresh = matches!(path, "/" | "/api/status" | "/debug.json");
    let touch = !(refresh && req.header(REFRESH_HEADER).is_some());
    let session = match cookie(req, COOKIE).map(|t| app.card.accounts.session(&t, touch)) {
        Some(Ok(s)) => s,
        Some(Err(ended)) => return to_login(Some(ended)),
        None => return to_login(None),
    };
    let form = if req.method() == "POST" {
        if !same_origin(req) {
            return pages::refused_origin();
        }
        // A streamed upload's body is not a form to read first: its token is in the
        // address the page's form posts to.
        let (form, token) = if path == http::STREAMED {
            (Form::default(), req.get_param("csrf").unwrap_or_default())
        } else {
            let form = Form::of(req);
            let token = form.text("csrf").to_owned();
            (form, token)
        };
        if !crate::accounts::same_secret(&token, &session.csrf) {
            return pages::refused_csrf();
        }
        form
    } else {
        Form::default()
    };
    if session.change.is_some() && path != "/password" && path != "/logout" {
        return Response::redirect_303("/password");
    }
    let ctx = Ctx {
        app,
        req,
        session,
        form,
        upload: std::cell::RefCell::new(upload),
        beat,
    };
    router!(req,
        (GET) ["/"] => pages::home::page(&ctx),
        (GET) ["/api/status"] => pages::home::api(&ctx),
        (GET) ["/password"] => pages::password::form(&ctx, &[]),
        (POST) ["/password"] => pages::password::submit(&ctx),
        (POST) ["/logout"] => pages::login::logout(&ctx),
        (GET) ["/config"] => pages::config::page(&ctx, State::default()),
        (POST) ["/config"] => pages::config::submit(&ctx),
        (GET) ["/config/root-ca.pem"] => pages::config::root_ca(&ctx),
        (GET) ["/config/export"] => pages::config::export(&ctx),
        (POST) ["/config/file"] => pages::config::upload_file(&ctx),
        (POST) ["/config/file/apply"] => pages::config::apply_file(&ctx),
        (POST) ["/config/certificate"] => pages::config::upload(&ctx),
        (POST) ["/config/certificate/revert"] => pages::config::revert(&ctx),
        (POST) ["/config/certificate/root"] => pages::config::new_root(&ctx),
        (POST) ["/config/syslog/test"] => pages::config::syslog_test(&ctx),
        (POST) ["/config/syslog/ca"] => pages::config::syslog_ca(&ctx),
        (GET) ["/modbus"] => pages::modbus::page(&ctx, State::default()),
        (POST) ["/modbus"] => pages::modbus::submit(&ctx),
        (GET) ["/control"] => pages::control::page(&ctx, State::default()),
        (POST) ["/control"] => pages::control::switch(&ctx),
        (POST) ["/control/reboot"] => pages::control::reboot(&ctx),
        (POST) ["/control/factory-reset"] => pages::control::factory_reset(&ctx),
        (GET) ["/mbtls"] => pages::mbtls::page(&ctx),
        (POST) ["/mbtls/ca"] => pages::mbtls::upload_ca(&ctx),
        (POST) ["/mbtls/ca/remove"] => pages::mbtls::remove_ca(&ctx),
        (POST) ["/mbtls/crl"] => pages::mbtls::upload_crl(&ctx),
        (POST) ["/mbtls/revoke"] => pages::mbtls::revoke(&ctx, true),
        (POST) ["/mbtls/unrevoke"] => pages::mbtls::revoke(&ctx, false),
        (POST) ["/mbtls/role"] => pages::mbtls::set_role(&ctx),
        (POST) ["/mbtls/sign"] => pages::mbtls::sign(&ctx),
        (GET) ["/time"] => pages::date_time::page(&ctx),
        (POST) ["/time"] => pages::date_time::submit(&ctx),
        (GET) ["/firmware"] => pages::firmware::page(&ctx, State::default()),
        (POST) ["/firmware/upload"] => pages::firmware::upload(&ctx),
        (GET) ["/debug"] => pages::debug::page(&ctx),
        (GET) ["/debug.json"] => pages::debug::json(&ctx),
        (GET) ["/log"] => pages::event_log::page(&ctx, None),
        (GET) ["/log.csv"] => pages::event_log::csv(&ctx),
        (GET) ["/history.csv"] => pages::history::csv(&ctx),
        (POST) ["/log/clear"] => pages::event_log::clear(&ctx),
        (GET) ["/users"] => pages::users::page(&ctx, None),
        (POST) ["/users"] => pages::users::submit(&ctx),
        _ => pages::not_found(&ctx)
    )
}

/// Largest login form: a user name, a password and a token.
pub const LOGIN_BODY: usize = 4 * 1024;

/// Paths anyone may ask for, without a session (the first ones [`route`] serves).
fn public(method: &str, path: &str) -> bool {
    matches!(
        (method, path),
        (
            "GET",
            "/static/style.css" | "/static/home.js" | "/static/debug.js"
        ) | ("GET", "/favicon.ico" | "/login")
            | ("POST", "/login")
    )
}

/// The way of a request as far as its head shows it, before any of its body is read:
/// `Err` with the answer when it goes no further (and whether it showed a live session);
/// else whether it showed a live session (false for a page anyone may see). The session is only looked at, not counted as
/// activity: the handler does that. Every other page needs a live session; a request with
/// a body then
/// must come from the card's own pages (the upload's CSRF token is in its address; the
/// other forms' is in their body, checked by [`route`]); the login form alone comes
/// without one, [`LOGIN_BODY`] at most.
pub fn at_head(app: &App, req: &Request, length: usize) -> Result<bool, (Response, bool)> {
    let path = req.raw_url().split('?').next().unwrap_or("");
    if !req.is_secure() {
        if let Some(https) = app.listeners.addr(super::listen::Kind::Https) {
            // Redirected by the handler, whatever it asks; a body is not waited for (the
            // address it came in on is not known here: a Host not the card's own gets
            // the HTTPS address, or is refused when HTTPS listens on every address).
            return if length > 0 {
                Err((to_https(app, req, https, None), false))
            } else {
                Ok(false)
            };
        }
    }
    if public(req.method(), path) {
        return match (req.method(), path) {
            ("POST", "/login") if length > LOGIN_BODY => Err((
                Response::text("Login form too large (4 KiB at most).\n").with_status_code(413),
                false,
            )),
            ("POST", "/login") => Ok(false),
            _ if length > 0 => Err((
                Response::text("A request body needs a session: log in first.\n")
                    .with_status_code(413),
                false,
            )),
            _ => Ok(false),
        };
    }
    let session = match cookie(req, COOKIE).map(|t| app.card.accounts.session(&t, false)) {
        Some(Ok(s)) => s,
        Some(Err(ended)) => return Err((to_login(Some(ended)), false)),
        None => return Err((to_login(None), false)),
    };
    if length > 0 || req.method() == "POST" {
        if !same_origin(req) {
            return Err((pages::refused_origin(), true));
        }
        let token = req.get_param("csrf").unwrap_or_default();
        if path == http::STREAMED && !crate::accounts::same_secret(&token, &session.csrf) {
            return Err((pages::refused_csrf(), true));
        }
    }
    Ok(true)
}

/// The value of cookie `name`.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    rouille::input::cookies(req)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure under HTTPS; `None` deletes it.
pub fn set_cookie(req: &Request, name: &str, value: Option<&str>) -> String {
    let secure = if req.is_secure() { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    }
}

/// To the login page. When the session ended for a reason the card recorded, the cookie
/// stays, so that the login page can look the reason up by it and tell it (once); nothing
/// in the address says why, so nobody can make the page say what did not happen.
pub fn to_login(ended: Option<Ended>) -> Response {
    let to = Response::redirect_303("/login");
    match ended {
        Some(Ended::Unknown) | None => to.with_additional_header(
            "Set-Cookie",
            format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
        ),
        Some(_) => to,
    }
}

/// Whether the request says it comes from a page of this card: `Origin`, or `Referer`
/// when a client sends no `Origin`, names the scheme and host the request was sent to. A
/// request that names neither is refused too.
pub fn same_origin(req: &Request) -> bool {
    let Some(host) = req.header("Host") else {
        return false;
    };
    let scheme = if req.is_secure() { "https" } else { "http" };
    let own = format!("{scheme}://{host}");
    match (req.header("Origin"), req.header("Referer")) {
        (Some(origin), _) => origin.eq_ignore_ascii_case(&own),
        (None, Some(referer)) => {
            referer.eq_ignore_ascii_case(&own)
                || referer
                    .get(..own.len() + 1)
                    .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{own}/")))
        }
        (None, None) => false,
    }
}

/// Plain HTTP while HTTPS is on: the same path on HTTPS, at the name the client used if it
/// is one of the card's own (its names, its addresses, the address HTTPS listens on or the
/// connection came in on), else at an address of the card: a forged `Host` never sends a
/// browser to another site.
fn to_https(app: &App, req: &Request, https: SocketAddr, local: Option<SocketAddr>) -> Response {
    let host = req.header("Host").unwrap_or("");
    // The host without its port; IPv6 literals keep their brackets.
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let addrs = [Some(https.ip()), local.map(|l| l.ip())];
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    let own = app.certs.names().is_own(name)
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| !ip.is_unspecified() && addrs.contains(&Some(ip)));
    let name = if own {
        name.to_owned()
    } else {
        // HTTPS on one address answers there only; on every address, where this came in.
        let ip = Some(https.ip())
            .filter(|ip| !ip.is_unspecified())
            .or(local.map(|l| l.ip()));
        match ip {
            Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(ip) => ip.to_string(),
            None => return Response::text("Use HTTPS.\n").with_status_code(400),
        }
    };
    let port = https.port();
    let authority = if port == 443 {
        name
    } else {
        format!("{name}:{port}")
    };
    let target = format!("https://{authority}{}", req.raw_url());
    if matches!(req.method(), "GET" | "HEAD") {
        Response::redirect_301(target)
    } else {
        Response::redirect_308(target)
    }
}

/// The headers every answer carries: no script but the card's own files, no framing, no
/// type sniffing, no referrer, and no caching of anything but the two static files.
pub fn secure_headers(response: Response, req: &Request) -> Response {
    let cacheable = req.raw_url().starts_with("/static/") && response.status_code == 200;
    let response = response
        .with_unique_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .with_unique_header("X-Frame-Options", "DENY")
        .with_unique_header("X-Content-Type-Options", "nosniff")
        .with_unique_header("Referrer-Policy", "same-origin");
    if cacheable {
        response.with_unique_header("Cache-Control", "max-age=3600")
    } else {
        response
            .with_unique_header("Cache-Control", "no-store")
            .with_unique_header("Pragma", "no-cache")
    }
}
