//! docs/accounts.md through the web, over real sockets with ureq (rustls, TLS 1.3): the forced
//! change of the default password, each rule of the policy, expiry, one session at a time,
//! the inactivity timeout, logout, roles, CSRF and Origin checks, throttling, and every
//! page redirecting to /login without a session.

use crate::common;

use common::web::{start_web, Browser, DEFAULT_PASSWORD, GOOD, GOOD_2};
use common::{wait_for, Card, Setup};
use std::time::{Duration, Instant};

fn kinds(card: &Card, kind: &str) -> usize {
    card.events().iter().filter(|e| e.kind == kind).count()
}

#[test]
fn the_default_password_works_once_and_must_be_changed_at_once() {
    let card = start_web(Setup::default());
    let mut b = card.browser();
    let p = b.login("admin", DEFAULT_PASSWORD);
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/password");
    // Until the change, every page leads back to the password page.
    for path in [
        "/",
        "/api/status",
        "/config",
        "/users",
        "/config/root-ca.pem",
    ] {
        let p = b.get(path);
        assert_eq!((p.status, p.location()), (303, "/password"), "{path}");
    }
    let p = b.get("/password");
    assert!(
        p.body.contains("valid for this first login only"),
        "{}",
        p.body
    );
    // The new password must differ from the default and follow the policy.
    let p = b.post(
        "/password",
        &[
            ("current", DEFAULT_PASSWORD),
            ("new", "short"),
            ("repeat", "short"),
        ],
    );
    assert_eq!(p.status, 400);
    assert!(p.body.contains("At least 12 characters"), "{}", p.body);
    let p = b.post(
        "/password",
        &[("current", "WRONG1"), ("new", GOOD), ("repeat", GOOD)],
    );
    assert!(p.body.contains("current password is wrong"), "{}", p.body);
    let p = b.post(
        "/password",
        &[
            ("current", DEFAULT_PASSWORD),
            ("new", GOOD),
            ("repeat", GOOD_2),
        ],
    );
    assert!(p.body.contains("two new passwords differ"), "{}", p.body);
    let p = b.change_password(DEFAULT_PASSWORD, GOOD);
    assert_eq!(p.location(), "/login");
    b.get("/login")
        .shows(&["Your password has been changed: log in with the new one."]);
    assert!(!b.cookies.contains_key("session"), "the cookie is deleted");
    // Then log in again: the default password is no longer valid.
    assert_eq!(b.login("admin", DEFAULT_PASSWORD).status, 401);
    let p = b.login("admin", GOOD);
    assert_eq!(p.location(), "/");
    let home = b.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("UPS link"));
    card.wait_event("password_changed");
    assert!(card
        .events()
        .iter()
        .any(|e| e.kind == "admin_login" && e.message.starts_with("Admin login success")));
}

#[test]
fn each_broken_rule_of_the_policy_is_named_and_nothing_changes() {
    let card = start_web(Setup::default());
    let mut b = card.admin();
    let cases = [
        ("Ab1!Ab1!", "At least 12 characters"),
        ("abcdefgh123!", "upper-case letter"),
        ("ABCDEFGH123!", "lower-case letter"),
        ("Abcdefghijk!", "a digit"),
        ("Abcdefgh1234", "special characters ! % # @ ^ *"),
        ("Abcdefgh 123!", "not space"),
        ("Abcdefgh123!$", "not &#39;$&#39;"),
    ];
    for (bad, rule) in cases {
        b.get("/password");
        let p = b.post(
            "/password",
            &[("current", GOOD), ("new", bad), ("repeat", bad)],
        );
        assert_eq!(p.status, 400, "{bad}");
        assert!(p.body.contains(rule), "{bad}: no '{rule}' in {}", p.body);
        assert!(p.body.contains("The password was not changed"));
    }
    // All rules at once: each sentence is there.
    let p = b.post(
        "/password",
        &[("current", GOOD), ("new", "é"), ("repeat", "é")],
    );
    for rule in [
        "At least 12",
        "upper-case",
        "lower-case",
        "digit",
        "special",
        "not &#39;é&#39;",
    ] {
        assert!(p.body.contains(rule), "{rule}");
    }
    // Still logged in with the old password, which still works.
    assert_eq!(b.get("/").status, 200);
    assert_eq!(card.browser().login("admin", GOOD).location(), "/");
    assert_eq!(kinds(&card, "password_changed"), 1, "only the first change");
}

#[test]
fn an_expired_password_must_be_changed_at_login() {
    let card = start_web(Setup::default().set("password_days", 30));
    drop(card.admin());
    // The password was set 31 days ago.
    let db = rusqlite::Connection::open(card.data.join("card.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE users SET changed_at_ms = changed_at_ms - 31 * 86400000 WHERE name = 'admin'",
        [],
    )
    .unwrap();
    let mut b = card.browser();
    assert_eq!(b.login("admin", GOOD).location(), "/password");
    assert_eq!(b.get("/").location(), "/password");
    assert!(b
        .get("/password")
        .body
        .contains("Your password has expired"));
    let p = b.change_password(GOOD, GOOD_2);
    assert_eq!(p.location(), "/login");
    assert_eq!(b.login("admin", GOOD_2).location(), "/");
    let e = card.wait_event("password_expired");
    assert!(e.message.contains("older than 30 days"), "{}", e.message);
}

#[test]
fn a_new_login_ends_the_old_session_and_the_old_browser_is_told() {
    let card = start_web(Setup::default());
    let mut first = card.admin();
    assert_eq!(first.get("/").status, 200);
    let mut second = card.browser();
    assert_eq!(second.login("admin", GOOD).location(), "/");
    let p = first.get("/");
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/login");
    let told = first.get(p.location());
    assert!(
        told.body
            .contains("someone logged in from 127.0.0.1 on the web interface")
            && told.body.contains("one session at a time"),
        "{}",
        told.body
    );
    // The old session stays ended; the new one goes on.
    assert_eq!(first.get("/").location(), "/login");
    assert_eq!(second.get("/").status, 200);
    let e = card.wait_event("session_taken_over");
    assert!(
        e.message.contains("new login from 127.0.0.1"),
        "{}",
        e.message
    );
}

#[test]
fn a_session_ends_after_the_login_timeout_without_activity() {
    let card = start_web(Setup::default().set("login_timeout_s", 30));
    let mut b = card.admin();
    let started = Instant::now();
    // The Home page's refreshes do not count as activity.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(9));
        let p = b.get_with("/api/status", &[("X-Refresh", "1")]);
        assert_eq!(p.status, 200, "{}", p.body);
    }
    // A real request does count, but only from when it is made.
    let left = Duration::from_secs(31).saturating_sub(started.elapsed());
    std::thread::sleep(left);
    let p = b.get("/");
    assert_eq!(p.location(), "/login", "{}", p.body);
    assert!(b
        .get(p.location())
        .body
        .contains("after a period without activity"));
    let e = card.wait_event("session_timeout");
    assert!(e.message.contains("after 30 s"), "{}", e.message);
}

#[test]
fn logout_ends_the_session() {
    let card = start_web(Setup::default());
    let mut b = card.admin();
    let p = b.post("/logout", &[]);
    assert_eq!(p.location(), "/login");
    assert!(b.get(p.location()).body.contains("You have logged out"));
    assert!(!b.cookies.contains_key("session"));
    // Even with the old cookie put back, the session is gone.
    let mut b = card.browser();
    assert_eq!(b.login("admin", GOOD).location(), "/");
    b.get("/");
    let token = b.cookies["session"].clone();
    b.post("/logout", &[]);
    b.cookies.insert("session".into(), token);
    assert_eq!(b.get("/").location(), "/login");
    assert!(b.get("/login").body.contains("You have logged out"));
    assert_eq!(b.get("/").location(), "/login");
    assert!(
        !b.get("/login").body.contains("You have logged out"),
        "told once"
    );
    card.wait_event("logout");
}

#[test]
fn admin_manages_users_and_read_only_users_change_nothing() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    admin.get("/users");
    let p = admin.post(
        "/users",
        &[
            ("action", "add"),
            ("name", "viewer"),
            ("role", "read-only"),
            ("password", "Firstpass12!X"),
        ],
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("User viewer added"));
    let p = admin.post(
        "/users",
        &[
            ("action", "add"),
            ("name", "op"),
            ("role", "read-write"),
            ("password", "weak"),
        ],
    );
    assert_eq!(p.status, 400);
    assert!(p.body.contains("At least 12 characters"));
    admin.post(
        "/users",
        &[
            ("action", "add"),
            ("name", "op"),
            ("role", "read-write"),
            ("password", "Firstpass12!X"),
        ],
    );
    let list = admin.get("/users");
    assert!(list.body.contains("viewer") && list.body.contains("Read-only"));
    assert!(list.body.contains("op") && list.body.contains("Read/Write"));
    card.wait_event("user_added");

    // The web allows one session at a time: the viewer's login ends admin's.
    let mut viewer = card.browser();
    assert_eq!(
        viewer.login("viewer", "Firstpass12!X").location(),
        "/password"
    );
    viewer.change_password("Firstpass12!X", GOOD_2);
    assert_eq!(viewer.login("viewer", GOOD_2).location(), "/");
    let home = viewer.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("viewer") && !home.body.contains("href=\"/users\""));
    // Every change is refused by the server, whatever the page shows.
    let config = viewer.get("/config");
    assert!(
        config.body.contains("<fieldset disabled>"),
        "the upload form is disabled"
    );
    let p = viewer.post_files(
        "/config/certificate",
        &[("certificate", b"x"), ("key", b"y")],
    );
    assert_eq!(p.status, 403);
    assert!(p.body.contains("Read-only"));
    let p = viewer.post("/config/certificate/revert", &[]);
    assert_eq!(p.status, 403);
    assert_eq!(viewer.get("/users").status, 403);
    let p = viewer.post(
        "/users",
        &[
            ("action", "add"),
            ("name", "x"),
            ("role", "read-write"),
            ("password", "Firstpass12!X"),
        ],
    );
    assert_eq!(p.status, 403);
    assert!(p.body.contains("Only admin manages accounts"));
    // A Read/Write user may change settings but not manage accounts.
    let mut op = card.browser();
    op.login("op", "Firstpass12!X");
    op.change_password("Firstpass12!X", GOOD_2);
    assert_eq!(op.login("op", GOOD_2).location(), "/");
    assert!(op.get("/config").body.contains("<fieldset>"));
    assert_eq!(op.get("/users").status, 403);

    // Admin removes the viewer: its password no longer logs in.
    let mut admin = card.browser();
    admin.login("admin", GOOD);
    admin.get("/users");
    let p = admin.post("/users", &[("action", "remove"), ("name", "viewer")]);
    assert!(p.body.contains("User viewer removed"), "{}", p.body);
    assert_eq!(card.browser().login("viewer", GOOD_2).status, 401);
    let p = admin.post("/users", &[("action", "remove"), ("name", "admin")]);
    assert_eq!(p.status, 400, "admin cannot be removed");
}

#[test]
fn state_changes_need_the_csrf_token_and_the_card_as_origin() {
    let card = start_web(Setup::default());
    let mut b = card.admin();
    b.get("/password");
    let change = [("current", GOOD), ("new", GOOD_2), ("repeat", GOOD_2)];
    let mut forged: Vec<(&str, &str)> = change.to_vec();
    forged.push(("csrf", "0000"));
    let p = b.post("/password", &forged);
    assert_eq!(p.status, 403);
    assert!(p.body.contains("expired or was not made by this card"));
    // The right token from another site, or from nowhere, is refused too.
    b.origin = Some("https://evil.example".into());
    assert_eq!(b.post("/password", &change).status, 403);
    b.origin = None;
    let p = b.post("/password", &change);
    assert_eq!(p.status, 403);
    assert!(p.body.contains("not sent from a page of this card"));
    b.origin = Some(b.base.clone());
    assert_eq!(b.post("/logout", &[("csrf", "")]).status, 403);
    // Nothing changed: the password is the same, the session lives.
    assert_eq!(b.get("/").status, 200);
    assert_eq!(card.browser().login("admin", GOOD).location(), "/");

    // The login form has its own token, in a cookie and the form.
    let mut c = card.browser();
    c.get("/login");
    c.cookies.remove("login_csrf");
    let p = c.post("/login", &[("user", "admin"), ("password", GOOD)]);
    assert_eq!(p.status, 403);
    assert!(p.body.contains("login form had expired"));
    c.origin = Some("https://evil.example".into());
    c.get("/login");
    assert_eq!(
        c.post("/login", &[("user", "admin"), ("password", GOOD)])
            .status,
        403
    );
}

#[test]
fn failed_logins_slow_the_address_down_and_the_wait_ends() {
    let card = start_web(Setup::default());
    drop(card.admin());
    let mut b = card.browser();
    // Each user name has its free tries.
    assert_eq!(b.login("nobody", "Wrongpass12!X").status, 401);
    for _ in 0..3 {
        let p = b.login("admin", "Wrongpass12!X");
        assert_eq!(p.status, 401);
        assert!(
            p.body.contains("Wrong user name or password."),
            "{}",
            p.body
        );
    }
    let p = b.login("admin", "Wrongpass12!X");
    assert_eq!(p.status, 401);
    assert!(p.body.contains("next try is possible in 1 s"), "{}", p.body);
    // Within the wait even the right password is refused, without being checked.
    let p = b.login("admin", GOOD);
    assert_eq!(p.status, 429);
    assert!(p.body.contains("Too many failed logins from your address"));
    // The wait ends by itself.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(b.login("admin", GOOD).location(), "/");
    wait_for("five failures logged", || kinds(&card, "login_failed") == 5);
    let names: Vec<String> = card
        .events()
        .into_iter()
        .filter(|e| e.kind == "login_failed")
        .map(|e| e.message)
        .collect();
    assert!(
        names
            .iter()
            .any(|m| m == "Login failed for 'nobody' (web, from 127.0.0.1)"),
        "{names:?}"
    );
}

#[test]
fn every_page_redirects_to_login_without_a_session() {
    let card = start_web(Setup::default());
    let mut b = card.browser();
    let paths = [
        "/",
        "/password",
        "/config",
        "/config/export",
        "/config/root-ca.pem",
        "/control",
        "/modbus",
        "/time",
        "/firmware",
        "/debug",
        "/log",
        "/log.csv",
        "/users",
        "/api/status",
        "/no-such-page",
    ];
    for path in paths {
        let p = b.get(path);
        assert_eq!((p.status, p.location()), (303, "/login"), "{path}");
        assert!(p.body.is_empty(), "{path} gave data: {}", p.body);
        b.get("/login");
        let p = b.post(path, &[]);
        assert_eq!((p.status, p.location()), (303, "/login"), "POST {path}");
    }
    // A made-up cookie is no session either.
    b.cookies.insert("session".into(), "0".repeat(64));
    assert_eq!(b.get("/api/status").location(), "/login");
}

#[test]
fn cookies_and_headers_keep_the_pages_to_themselves() {
    let card = start_web(Setup::default());
    let mut b = card.browser();
    b.get("/login");
    let p = b.post(
        "/login",
        &[("user", "admin"), ("password", DEFAULT_PASSWORD)],
    );
    let cookie = p
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    drop(b);
    let mut b = card.admin();
    for path in ["/", "/login", "/api/status", "/config", "/no-such-page"] {
        let p = b.get(path);
        let csp = p.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(p.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            p.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(p.header("cache-control"), Some("no-store"), "{path}");
    }
    // No inline script or style anywhere.
    for path in ["/", "/login", "/config", "/password", "/users"] {
        let body = b.get(path).body;
        assert!(
            !body.contains("<script>") && !body.contains(" style=") && !body.contains("<style"),
            "{path}"
        );
    }
    // Plain HTTP is sent to HTTPS while HTTPS is on, for every path.
    let mut plain = Browser::new(&format!("http://{}", card.http()), None);
    let p = plain.get("/config?x=1");
    assert_eq!(p.status, 301);
    assert_eq!(
        p.location(),
        format!("https://127.0.0.1:{}/config?x=1", card.https().port())
    );
    let p = plain.post("/login", &[("user", "admin"), ("password", GOOD)]);
    assert_eq!(
        p.status, 308,
        "a form is re-sent to HTTPS, not turned into a GET"
    );
}

#[test]
fn plain_http_serves_the_pages_while_https_is_off() {
    let card = start_web(Setup::default().set("https_enabled", false));
    assert!(card.service().https_addr().is_none(), "HTTPS not listening");
    let mut b = Browser::new(&format!("http://{}", card.http()), None);
    b.get("/login");
    let p = b.post(
        "/login",
        &[("user", "admin"), ("password", DEFAULT_PASSWORD)],
    );
    assert_eq!(p.location(), "/password");
    let cookie = p
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("Secure"),
        "no Secure flag on plain HTTP: {cookie}"
    );
}

#[test]
fn resetting_the_accounts_brings_back_the_default_password() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    admin.get("/users");
    admin.post(
        "/users",
        &[
            ("action", "add"),
            ("name", "op"),
            ("role", "read-write"),
            ("password", "Firstpass12!X"),
        ],
    );
    let who = crate::common::admin_who();
    card.service().control.reset_accounts(&who).unwrap();
    // Every session ended, the users are gone, and admin has the default password again,
    // to be changed at once.
    assert_eq!(admin.get("/").location(), "/login");
    admin
        .get("/login")
        .shows(&["an administrator changed your account"]);
    assert_eq!(card.browser().login("op", "Firstpass12!X").status, 401);
    assert_eq!(card.browser().login("admin", GOOD).status, 401);
    assert_eq!(
        card.browser().login("admin", DEFAULT_PASSWORD).location(),
        "/password"
    );
    card.wait_event("accounts_reset");
}
