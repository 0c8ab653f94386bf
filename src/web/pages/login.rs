//! `/login` and `/logout`.

use super::{html, Layout};
use crate::accounts::{hex, random_bytes, Channel, Ended, LoginError, Peer};
use crate::web::form::Form;
use crate::web::routes::{self, Ctx, COOKIE, LOGIN_COOKIE};
use crate::web::App;
use askama::Template;
use rouille::{Request, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub csrf: String,
    /// The user name typed, kept after a failure.
    pub user: String,
    pub error: Option<String>,
    /// Why the user is here (the previous session ended).
    pub notice: Option<String>,
}

/// The login form, with a fresh CSRF token in a cookie and in the form.
pub fn form(app: &App, req: &Request, failed: Option<(String, String, u16)>) -> Response {
    // Why the last session ended, from the card's own record of it, found by the ended
    // session's cookie and told once; the cookie is then forgotten. A page's script that
    // followed the redirect (it says X-Refresh) leaves both for the page it opens next.
    let refresh = req.header(routes::REFRESH_HEADER).is_some();
    let notice = match routes::cookie(req, COOKIE).filter(|_| !refresh) {
        Some(token) => match app.card.accounts.ended(&token) {
            Ended::Unknown => None,
            e => Some(e.message()),
        },
        None => None,
    };
    let (user, error, status) = match failed {
        Some((user, error, status)) => (user, Some(error), status),
        None => (String::new(), None, 200),
    };
    // The token already given to this browser stays valid, so a second tab, or a request
    // the browser makes by itself (an icon), does not spoil the form shown first.
    let csrf = routes::cookie(req, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| hex(&random_bytes::<32>()));
    let page = LoginPage {
        layout: Layout::public("Log in"),
        csrf: csrf.clone(),
        user,
        error,
        notice: notice.clone(),
    };
    let answer = html(&page, status).with_additional_header(
        "Set-Cookie",
        routes::set_cookie(req, LOGIN_COOKIE, Some(&csrf)),
    );
    match notice {
        Some(_) => {
            answer.with_additional_header("Set-Cookie", routes::set_cookie(req, COOKIE, None))
        }
        None => answer,
    }
}

pub fn submit(app: &App, req: &Request) -> Response {
    let form = Form::of(req);
    let user = form.text("user").trim().to_owned();
    let expected = routes::cookie(req, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::accounts::same_secret(form.text("csrf"), &expected) {
        let why = "The login form had expired. Please log in again.".to_string();
        return self::form(app, req, Some((user, why, 403)));
    }
    let peer = Peer::Net(req.remote_addr().ip());
    match app
        .card
        .accounts
        .login(&user, form.text("password"), peer, Channel::Web)
    {
        Ok(session) => {
            let next = if session.change.is_some() {
                "/password"
            } else {
                "/"
            };
            Response::redirect_303(next)
                .with_additional_header(
                    "Set-Cookie",
                    routes::set_cookie(req, COOKIE, Some(&session.token)),
                )
                .with_additional_header("Set-Cookie", routes::set_cookie(req, LOGIN_COOKIE, None))
        }
        Err(e) => {
            let status = match e {
                LoginError::Throttled { .. } => 429,
                LoginError::Refused { .. } => 401,
                LoginError::Store(_) => 500,
            };
            self::form(app, req, Some((user, e.to_string(), status)))
        }
    }
}

pub fn logout(ctx: &Ctx<'_>) -> Response {
    ctx.app.card.accounts.logout(&ctx.session.token);
    // The cookie stays for the login page, which says "You have logged out" by it.
    Response::redirect_303("/login")
}
