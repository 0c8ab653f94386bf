//! `/users` (admin): the accounts, and adding, removing, changing the role of or resetting
//! the password of a user. The rules themselves are in [`crate::accounts`].

use super::{html, message, timestamp, Layout};
use crate::accounts::{Role, User};
use crate::web::routes::Ctx;
use askama::Template;
use rouille::Response;

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub layout: Layout,
    pub users: Vec<(User, String)>,
    pub outcome: Option<(bool, Vec<String>)>,
}

pub fn page(ctx: &Ctx<'_>, outcome: Option<(bool, Vec<String>)>) -> Response {
    if !ctx.is_admin() {
        return message(
            Layout::of(ctx, "Users", "users"),
            403,
            "Not allowed",
            "Only admin manages accounts.",
        );
    }
    let users = match ctx.app.card.accounts.users() {
        Ok(u) => u,
        Err(e) => {
            return message(
                Layout::of(ctx, "Users", "users"),
                500,
                "Error",
                e.to_string(),
            )
        }
    };
    let status = match &outcome {
        Some((false, _)) => 400,
        _ => 200,
    };
    let page = UsersPage {
        layout: Layout::of(ctx, "Users", "users"),
        users: users
            .into_iter()
            .map(|u| {
                let changed = timestamp(u.changed_at);
                (u, changed)
            })
            .collect(),
        outcome,
    };
    html(&page, status)
}

pub fn submit(ctx: &Ctx<'_>) -> Response {
    if !ctx.is_admin() {
        return page(ctx, None);
    }
    let f = &ctx.form;
    let accounts = &ctx.app.card.accounts;
    let name = f.text("name").trim();
    let role = || f.text("role").parse::<Role>();
    let done = match f.text("action") {
        "add" => role()
            .map_err(|e| e.to_string())
            .and_then(|r| {
                accounts
                    .add_user(&ctx.session, name, r, f.text("password"))
                    .map_err(|e| e.to_string())
            })
            .map(|()| {
                format!("User {name} added; the password must be changed at the first login.")
            }),
        "remove" => accounts
            .remove_user(&ctx.session, name)
            .map(|()| format!("User {name} removed."))
            .map_err(|e| e.to_string()),
        "role" => role().map_err(|e| e.to_string()).and_then(|r| {
            accounts
                .set_role(&ctx.session, name, r)
                .map(|()| format!("{name} is now {}.", r.label()))
                .map_err(|e| e.to_string())
        }),
        "reset" => accounts
            .reset_password(&ctx.session, name, f.text("password"))
            .map(|()| {
                format!("The password of {name} was reset; it must be changed at the next login.")
            })
            .map_err(|e| e.to_string()),
        _ => Err("Unknown action.".to_string()),
    };
    match done {
        Ok(text) => page(ctx, Some((true, vec![text]))),
        Err(text) => page(ctx, Some((false, vec![text]))),
    }
}
