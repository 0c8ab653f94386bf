//! One session at a time across the web and the console (docs/accounts.md): the newest login,
//! on either, takes over, and the older one is told by whom, from the card's own record of
//! how it ended; a login page address that claims a take-over tells nothing (issue 16,
//! item 7). Over HTTPS with a browser-like client, SSH with libssh2 and the console socket
//! the serial relay uses.

use crate::common;

use common::console::{Screen, PROMPT};
use common::web::{admin_in, GOOD, MAC};
use common::{start_with, Card, Setup, PATIENCE};
use modbus_card::accounts::Mac;
use modbus_card::service::Options;

/// A card serving HTTPS, the SSH console and the console socket.
fn card() -> Card {
    start_with(
        Setup::default(),
        Options {
            https: Some("127.0.0.1:0".parse().unwrap()),
            ssh: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        },
    )
}

const TOLD: &str = "someone logged in";

#[test]
fn the_login_page_believes_no_address_only_the_cards_record() {
    let card = card();
    let mut b = card.browser();
    for forged in [
        "/login?ended=taken-over&by=6.6.6.6",
        "/login?ended=logout",
        "/login?ended=account-changed",
    ] {
        let p = b.get(forged);
        assert_eq!(p.status, 200);
        assert!(
            !p.body.contains(TOLD)
                && !p.body.contains("6.6.6.6")
                && !p.body.contains("logged out")
                && !p.body.contains("changed your account"),
            "{forged}: {}",
            p.body
        );
    }
    // A real take-over is told to the browser whose session it ended, once.
    let mut first = admin_in(card.browser());
    let mut second = card.browser();
    assert_eq!(second.login("admin", GOOD).location(), "/");
    let p = first.get("/");
    assert_eq!((p.status, p.location()), (303, "/login"));
    // The Home page's script follows the redirect itself, then opens the page: its
    // request leaves the notice for the page.
    let p = first.get_with("/login", &[("X-Refresh", "1")]);
    assert!(!p.body.contains(TOLD), "{}", p.body);
    first.get("/login").shows(&[
        "Your session ended because someone logged in from 127.0.0.1 on the web interface",
        "one session at a time",
    ]);
    assert!(
        !first.cookies.contains_key("session"),
        "the old cookie goes"
    );
    assert!(!first.get("/login").body.contains(TOLD), "told once");
    assert_eq!(first.get("/").location(), "/login");
    assert_eq!(second.get("/").status, 200, "the new session goes on");
}

#[test]
fn an_ssh_login_ends_the_web_session_and_the_browser_is_told() {
    let card = card();
    let ssh = card.service().ssh_addr().unwrap();
    let mut web = admin_in(card.browser());
    let mut menu = common::ssh::terminal(ssh, GOOD);
    let seen = menu.expect(PROMPT);
    assert!(
        seen.contains(
            "The web session of admin from 127.0.0.1 has been ended: one session at a time."
        ),
        "{seen}"
    );
    let p = web.get("/");
    assert_eq!((p.status, p.location()), (303, "/login"), "{}", p.body);
    web.get("/login")
        .shows(&["someone logged in from 127.0.0.1 on the SSH console"]);
    let e = card.wait_event("session_taken_over");
    assert!(e.message.contains("admin (web)"), "{}", e.message);
    assert!(e.message.contains("127.0.0.1 (console)"), "{}", e.message);
    menu.send("1\r");
    menu.expect("Change them? (y/n)");
}

#[test]
fn a_web_login_ends_the_console_sessions_which_say_by_whom() {
    let card = card();
    let ssh = card.service().ssh_addr().unwrap();
    drop(admin_in(card.browser()));
    // Over SSH: the menu says why, and the connection closes.
    let mut menu = common::ssh::terminal(ssh, GOOD);
    menu.expect(PROMPT);
    let mut web = card.browser();
    assert_eq!(web.login("admin", GOOD).location(), "/");
    // (The terminal wraps the line at 79 columns.)
    menu.expect("Your session ended because someone logged in from 127.0.0.1 on the web");
    menu.expect("one session at a time.");
    menu.expect_closed(PATIENCE);
    // On the serial port likewise, and the terminal starts over.
    let mut serial = Screen::console(&card);
    serial.login("admin", GOOD);
    serial.expect("The web session of admin from 127.0.0.1 has been ended: one session at a time.");
    serial.expect(PROMPT);
    let p = web.get("/");
    assert_eq!(p.location(), "/login");
    web.get("/login")
        .shows(&["someone logged in on the serial console"]);
    assert_eq!(web.login("admin", GOOD).location(), "/");
    serial.expect("Your session ended because someone logged in from 127.0.0.1 on the web");
    assert_eq!(web.get("/").status, 200);
}
