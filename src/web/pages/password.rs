//! `/password`: a user changes their own password; the first login and an expired password
//! land here and can go nowhere else until it is done.

use super::{html, Layout};
use crate::accounts::password::{MIN_LENGTH, SPECIALS};
use crate::accounts::{AccountError, Change};
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub layout: Layout,
    pub user: String,
    /// Why the change is required, if it is.
    pub reason: Option<&'static str>,
    pub errors: Vec<String>,
    pub min_length: usize,
    pub specials: String,
}

pub fn form(ctx: &Ctx<'_>, errors: &[String]) -> Response {
    let reason = ctx.session.change.map(|c| match c {
        Change::FirstLogin => {
            "This password is valid for this first login only: choose your own password now."
        }
        Change::Expired => "Your password has expired: choose a new one to go on.",
    });
    let page = PasswordPage {
        layout: Layout::of(ctx, "Password", "password"),
        user: ctx.session.user.clone(),
        reason,
        errors: errors.to_vec(),
        min_length: MIN_LENGTH,
        specials: SPECIALS
            .chars()
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" "),
    };
    html(&page, if errors.is_empty() { 200 } else { 400 })
}

pub fn submit(ctx: &Ctx<'_>) -> Response {
    let (current, new, repeat) = (
        ctx.form.text("current"),
        ctx.form.text("new"),
        ctx.form.text("repeat"),
    );
    if new != repeat {
        return form(ctx, &["The two new passwords differ.".to_string()]);
    }
    match ctx
        .app
        .card
        .accounts
        .change_password(&ctx.session.token, current, new)
    {
        // The cookie stays for the login page, which tells why the session ended by it.
        Ok(()) => Response::redirect_303("/login"),
        Err(AccountError::Policy(rules)) => form(ctx, &rules),
        Err(e) => form(ctx, &[e.to_string()]),
    }
}
