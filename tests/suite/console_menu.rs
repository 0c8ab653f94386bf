//! The console's menu (docs/console.md) on the real service, over its console socket as the serial
//! relay connects: the login, the forced change of the default password, each menu item
//! and what it leaves in the store and the event log, Read-only users, and bad input of
//! every kind (wrong addresses, Ctrl-C, long lines, control characters, a terminal closed
//! in the middle, inactivity), none of which ends the service or half-makes a change.

use crate::common;

use common::console::{card, Screen, PROMPT};
use common::web::{DEFAULT_PASSWORD, GOOD, GOOD_2};
use common::{wait_for, Card, Setup};
use modbus_card::accounts::{Channel, Peer, Role};
use modbus_card::settings::Settings;
use modbus_card::store::Store;
use std::time::Duration;

fn stored(card: &Card) -> Settings {
    Store::open(&card.data)
        .unwrap()
        .load_settings_over(Settings::default())
        .unwrap()
}

/// A card whose admin has set its password on the console; the screen at the menu.
fn admin_at_menu(setup: Setup) -> (Card, Screen) {
    let card = card(setup);
    let mut t = Screen::console(&card);
    t.first_admin_login();
    (card, t)
}

#[test]
fn the_default_password_must_be_changed_before_the_menu() {
    let card = card(Setup::default());
    let mut t = Screen::console(&card);
    t.login("admin", DEFAULT_PASSWORD);
    t.expect("valid for this first login only");
    // Each refusal says why, with the web's words; the password is never echoed.
    for (current, new, repeat, why) in [
        (
            DEFAULT_PASSWORD,
            "short",
            "short",
            "At least 12 characters are needed",
        ),
        (
            DEFAULT_PASSWORD,
            "nodigits!abcdE",
            "nodigits!abcdE",
            "It needs a digit",
        ),
        (
            DEFAULT_PASSWORD,
            GOOD,
            GOOD_2,
            "The two new passwords differ.",
        ),
        ("WRONG1", GOOD, GOOD, "The current password is wrong."),
    ] {
        t.answer("Current password: ", current);
        t.answer("New password: ", new);
        t.answer("New password again: ", repeat);
        t.expect("The password was not changed:");
        t.expect(why);
    }
    assert!(!t.transcript.contains("short") && !t.transcript.contains(GOOD));
    t.change_password(DEFAULT_PASSWORD, GOOD);
    let menu = t.expect(PROMPT);
    for line in [
        "Date: ",
        "Time: ",
        &format!(
            "Modbus Interface Configuration Utility  [{}]",
            modbus_card::firmware::version::current()
        ),
    ] {
        assert!(menu.contains(line), "{line}: {menu}");
    }
    for line in common::console::ITEMS {
        assert!(menu.contains(line), "{line}: {menu}");
    }
    card.wait_event("password_changed");
    t.send("0\r");
    t.expect("Goodbye.");
    t.expect_closed(common::PATIENCE);
    card.wait_event("logout");

    // The default password is gone; a wrong one is refused and logged.
    let mut t = Screen::console(&card);
    t.login("admin", DEFAULT_PASSWORD);
    t.expect("Wrong user name or password.");
    let failed = card.wait_event("login_failed");
    assert!(
        failed.message.contains("console, from the serial console"),
        "{}",
        failed.message
    );
    t.login("admin", GOOD);
    t.expect(PROMPT);
    assert!(
        card.events()
            .iter()
            .any(|e| e.kind == "admin_login"
                && e.message.contains("console, from the serial console"))
    );
}

#[test]
fn three_wrong_logins_end_the_terminal_and_the_service_goes_on() {
    let card = card(Setup::default());
    let mut t = Screen::console(&card);
    for _ in 0..3 {
        t.login("admin", "nope");
        t.expect("Wrong user name or password.");
    }
    t.expect("Too many failed logins");
    t.expect_closed(common::PATIENCE);
    wait_for("three failures logged", || card.count("login_failed") == 3);
    // Past the free tries, each failure makes the next try wait, as on the web.
    let mut t = Screen::console(&card);
    t.login("admin", "nope");
    t.expect("Too many failed logins from your address: the next");
    t.expect("possible in 1 s.");
    t.expect("Please Enter User Name :");
}

#[test]
fn card_settings_are_changed_field_by_field_and_applied_after_a_summary() {
    let (card, mut t) = admin_at_menu(Setup::default());
    t.send("1\r");
    let shown = t.expect("Change them? (y/n)");
    for line in [
        "BootP/DHCP:   DHCP (BootP)",
        "IP address:   192.168.7.18",
        "Subnet mask:  255.255.255.0",
        "Gateway:      none",
        "DNS server:   none",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
    t.send("y\r");
    t.answer("Use DHCP (BootP) for the address? (y/n) [y]: ", "maybe");
    t.expect("Please answer y or n.");
    t.answer("Use DHCP (BootP) for the address? (y/n) [y]: ", "n");
    // A bad address is refused at once with the web's message, and asked again.
    t.answer("IP address [192.168.7.18]: ", "300.1.1.1");
    let said = t.expect("IP address [192.168.7.18]: ");
    assert!(
        said.contains("IP address: '300.1.1.1' is not an IPv4 address such as 192.168.1.20"),
        "{said}"
    );
    t.send("127.0.0.1\r");
    t.expect("IP address: 127.0.0.1 cannot be a host's address");
    t.answer("IP address [192.168.7.18]: ", "10.1.2.3");
    t.answer("Subnet mask [255.255.255.0]: ", "255.0.255.0");
    t.expect("Subnet mask: 255.0.255.0 is not a subnet mask");
    t.answer("Subnet mask [255.255.255.0]: ", "255.255.0.0");
    t.answer("Gateway [none]: ", "10.1.0.1");
    t.answer("DNS server [none]: ", "10.1.0.2");
    let summary = t.expect("Apply these settings? (y/n)");
    for line in [
        "BootP/DHCP: DHCP (BootP) → Static address",
        "IP address: 192.168.7.18 → 10.1.2.3",
        "Subnet mask: 255.255.255.0 → 255.255.0.0",
        "Gateway: none → 10.1.0.1",
        "DNS server: none → 10.1.0.2",
        "The card will use the static address 10.1.2.3",
    ] {
        assert!(summary.contains(line), "{line}: {summary}");
    }
    // Nothing is made before the "y".
    assert!(stored(&card).dhcp_enabled);
    assert_eq!(card.count("setting_changed"), 0);
    t.send("y\r");
    t.expect("Saved and in force:");
    t.expect(PROMPT);

    let s = stored(&card);
    assert!(!s.dhcp_enabled);
    assert_eq!(s.ip_address.to_string(), "10.1.2.3");
    assert_eq!(s.netmask.to_string(), "255.255.0.0");
    assert_eq!(
        s.gateway.map(|g| g.to_string()).as_deref(),
        Some("10.1.0.1")
    );
    assert_eq!(s.dns.map(|g| g.to_string()).as_deref(), Some("10.1.0.2"));
    assert_eq!(*card.service().settings(), s);
    wait_for("five changes logged", || card.count("setting_changed") == 5);
    let events = card.events();
    assert!(events.iter().any(|e| e.kind == "setting_changed"
        && e.message
            == "IP address changed from 192.168.7.18 to 10.1.2.3 (admin, serial console)"));

    // Enter keeps each value; "none" clears the gateway.
    t.send("1\r");
    t.answer("Change them? (y/n)", "y");
    t.answer("Use DHCP (BootP) for the address? (y/n) [n]: ", "");
    t.answer("IP address [10.1.2.3]: ", "");
    t.answer("Subnet mask [255.255.0.0]: ", "");
    t.answer("Gateway [10.1.0.1]: ", "none");
    t.answer("DNS server [10.1.0.2]: ", "");
    let summary = t.expect("Apply these settings? (y/n)");
    assert!(summary.contains("Gateway: 10.1.0.1 → none"), "{summary}");
    assert!(!summary.contains("IP address:"), "{summary}");
    t.send("n\r");
    t.expect("Nothing was changed.");
    t.expect(PROMPT);
    assert_eq!(
        stored(&card).gateway.map(|g| g.to_string()).as_deref(),
        Some("10.1.0.1")
    );
    assert_eq!(card.count("setting_changed"), 5);
}

#[test]
fn settings_that_do_not_go_together_change_nothing() {
    let (card, mut t) = admin_at_menu(Setup::default());
    t.send("1\r");
    t.answer("Change them? (y/n)", "y");
    t.answer("(y/n) [y]: ", "n");
    t.answer("IP address [192.168.7.18]: ", "10.1.0.0");
    t.answer("Subnet mask [255.255.255.0]: ", "255.255.0.0");
    t.answer("Gateway [none]: ", "192.168.7.1");
    t.answer("DNS server [none]: ", "");
    let said = t.expect("Correct them? (y/n)");
    assert!(
        said.contains("IP address: 10.1.0.0 is the network's own or broadcast address"),
        "{said}"
    );
    assert!(
        said.contains("Gateway: 192.168.7.1 is not another address of the network 10.1.0.0/16"),
        "{said}"
    );
    // Corrected: the fields are asked again with what was typed.
    t.send("y\r");
    t.answer("(y/n) [n]: ", "");
    t.answer("IP address [10.1.0.0]: ", "10.1.0.5");
    t.answer("Subnet mask [255.255.0.0]: ", "");
    t.answer("Gateway [192.168.7.1]: ", "none");
    t.answer("DNS server [none]: ", "");
    t.answer("Apply these settings? (y/n)", "y");
    t.expect("Saved and in force:");
    t.expect(PROMPT);
    assert_eq!(stored(&card).ip_address.to_string(), "10.1.0.5");
    assert_eq!(stored(&card).gateway, None);
}

#[test]
fn ctrl_c_or_a_closed_terminal_in_the_middle_changes_nothing() {
    let (card, mut t) = admin_at_menu(Setup::default());
    let before = stored(&card);
    // Ctrl-C at a bad address.
    t.send("1\r");
    t.answer("Change them? (y/n)", "y");
    t.answer("(y/n) [y]: ", "n");
    t.answer("IP address [192.168.7.18]: ", "300.1.1.1");
    t.expect("is not an IPv4 address");
    t.expect("IP address [192.168.7.18]: ");
    t.send("10.9.9.9\x03");
    t.expect("Cancelled: nothing was changed.");
    t.expect(PROMPT);
    // Ctrl-C at the last question.
    t.send("1\r");
    t.answer("Change them? (y/n)", "y");
    t.answer("(y/n) [y]: ", "n");
    t.answer("IP address [192.168.7.18]: ", "10.9.9.9");
    for prompt in ["Subnet mask", "Gateway", "DNS server"] {
        t.answer(prompt, "");
    }
    t.expect("Apply these settings? (y/n)");
    t.send("\x03");
    t.expect("Nothing was changed.");
    // Ctrl-C at the menu's prompt is nothing at all.
    t.expect(PROMPT);
    t.send("\x03");
    t.expect(PROMPT);
    // The terminal closes while the summary waits for its answer.
    t.send("1\r");
    t.answer("Change them? (y/n)", "y");
    t.answer("(y/n) [y]: ", "n");
    t.answer("IP address [192.168.7.18]: ", "10.9.9.9");
    for prompt in ["Subnet mask", "Gateway", "DNS server"] {
        t.answer(prompt, "");
    }
    t.expect("Apply these settings? (y/n)");
    drop(t);
    card.wait_event("logout");
    assert_eq!(stored(&card), before);
    assert_eq!(*card.service().settings(), before);
    assert_eq!(card.count("setting_changed"), 0);
    // The console is there for the next user.
    let mut t = Screen::console(&card);
    t.login("admin", GOOD);
    t.expect(PROMPT);
}

#[test]
fn reset_accounts_brings_back_the_default_admin_password() {
    let (card, mut first) = admin_at_menu(Setup::default());
    let admin = card
        .service()
        .accounts
        .login(
            "admin",
            GOOD,
            Peer::Net([127, 0, 0, 1].into()),
            Channel::Web,
        )
        .unwrap();
    card.service()
        .accounts
        .add_user(&admin, "bob", Role::ReadWrite, "Firstpass12!X")
        .unwrap();
    // One session at a time: that login ended the console's; log in there again.
    first.expect_closed(common::PATIENCE);
    let mut t = Screen::console(&card);
    t.login("admin", GOOD);
    t.expect(PROMPT);
    t.send("2\r");
    t.answer("Reset accounts and passwords to default? (y/n)", "n");
    t.expect("Nothing was changed.");
    assert_eq!(card.service().accounts.users().unwrap().len(), 2);
    t.answer(PROMPT, "2");
    t.answer("Reset accounts and passwords to default? (y/n)", "y");
    t.expect("Accounts and passwords are back to their defaults");
    t.expect_closed(common::PATIENCE);
    let reset = card.wait_event("accounts_reset");
    assert!(
        reset.message.contains("(admin, serial console)"),
        "{}",
        reset.message
    );
    let users = card.service().accounts.users().unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].must_change);
    // The web session ended too; admin's default password works again, once.
    assert!(card
        .service()
        .accounts
        .session(&admin.token, false)
        .is_err());
    let mut t = Screen::console(&card);
    t.login("admin", GOOD);
    t.expect("Wrong user name or password.");
    t.login("admin", DEFAULT_PASSWORD);
    t.expect("valid for this first login only");
}

#[test]
fn reset_configuration_goes_back_to_factory_settings_and_restarts() {
    let (card, mut t) = admin_at_menu(Setup::default());
    let who = crate::common::admin_who();
    card.service()
        .live
        .change(
            &[("ping_enabled", "false"), ("modbus_timeout_s", "5")],
            &who,
            true,
        )
        .unwrap();
    assert!(!stored(&card).ping_enabled);
    t.send("3\r");
    let said = t.expect("Reset the configuration to factory settings? (y/n)");
    assert!(
        said.contains("Every setting goes back to its factory value"),
        "{said}"
    );
    t.send("n\r");
    t.expect("Nothing was changed.");
    assert!(card.service().restarts().try_recv().is_err());
    t.answer(PROMPT, "3");
    t.answer("(y/n)", "y");
    t.expect("Back to factory settings; the card is restarting.");
    t.expect_closed(common::PATIENCE);
    let restart = card
        .service()
        .restarts()
        .recv_timeout(common::PATIENCE)
        .unwrap();
    assert_eq!(restart.by, "admin, serial console");
    let s = stored(&card);
    assert!(s.ping_enabled);
    assert_eq!(s.modbus_timeout_s, 60);
    assert!(card.service().accounts.users().unwrap()[0].must_change);
    let reset = card.wait_event("factory_reset");
    assert!(
        reset.message.contains("(admin, serial console)"),
        "{}",
        reset.message
    );
    card.wait_event("restart");
}

#[test]
fn restart_card_is_confirmed_first() {
    let (card, mut t) = admin_at_menu(Setup::default());
    t.send("4\r");
    t.answer("Restart the card? (y/n)", "no");
    t.expect("Nothing was changed.");
    assert!(card.service().restarts().try_recv().is_err());
    t.answer(PROMPT, "4");
    t.answer("Restart the card? (y/n)", "y");
    t.expect("The card is restarting");
    t.expect_closed(common::PATIENCE);
    let restart = card
        .service()
        .restarts()
        .recv_timeout(common::PATIENCE)
        .unwrap();
    assert_eq!(restart.by, "admin, serial console");
    let event = card.wait_event("restart");
    assert_eq!(event.message, "Restart (admin, serial console)");
}

#[test]
fn a_read_only_user_sees_the_settings_and_changes_nothing() {
    let (card, mut t) = admin_at_menu(Setup::default());
    t.send("0\r");
    t.expect_closed(common::PATIENCE);
    let accounts = &card.service().accounts;
    let admin = accounts
        .login(
            "admin",
            GOOD,
            Peer::Net([127, 0, 0, 1].into()),
            Channel::Web,
        )
        .unwrap();
    accounts
        .add_user(&admin, "viewer", Role::ReadOnly, "Firstpass12!X")
        .unwrap();
    let mut t = Screen::console(&card);
    t.login("viewer", "Firstpass12!X");
    t.change_password("Firstpass12!X", GOOD_2);
    t.answer(PROMPT, "1");
    let said = t.expect(PROMPT);
    assert!(said.contains("IP address:   192.168.7.18"), "{said}");
    assert!(said.contains("Your account is Read-only"), "{said}");
    assert!(!said.contains("Change them?"), "{said}");
    t.send("2\r");
    t.expect("Only admin resets the accounts and passwords.");
    t.answer(PROMPT, "3");
    t.expect("Only admin resets the card to its factory settings.");
    t.answer(PROMPT, "4");
    t.expect("Your account is Read-only: it cannot restart the card.");
    t.expect(PROMPT);
    assert!(card.service().restarts().try_recv().is_err());
    assert_eq!(accounts.users().unwrap().len(), 2);
    for kind in [
        "setting_changed",
        "accounts_reset",
        "factory_reset",
        "restart",
    ] {
        assert_eq!(card.count(kind), 0, "{kind}");
    }
}

#[test]
fn bad_input_never_ends_the_console_or_the_service() {
    let (card, mut t) = admin_at_menu(Setup::default());
    t.send("9\r");
    t.expect("'9' is not a choice");
    // A 10 KB line without an end, then its end: refused whole.
    t.send(&"7".repeat(10 * 1024));
    t.send("\r");
    t.expect("That line is too long (at most 128 characters): nothing was taken.");
    // Control characters, escape sequences (arrow keys) and invalid UTF-8 are dropped.
    t.send_bytes(b"\x01\x02\x1b[A\x1b[B\x00\t\xff\xfe\x1bOP");
    t.send("\r");
    t.expect(PROMPT);
    t.send_bytes(b"\x1b[D1\x7f\x7f4\x08\x1b[C1\r");
    t.expect("Change them? (y/n)");
    t.send("n\r");
    t.expect(PROMPT);
    // CR LF counts once; the session and the service are still there.
    t.send("0\r\n");
    t.expect("Goodbye.");
    t.expect_closed(common::PATIENCE);
    assert!(card.service().health.check().is_ok());
    let mut t = Screen::console(&card);
    t.login("admin", GOOD);
    t.expect(PROMPT);
    // Garbage at the login prompts is a wrong login, nothing more.
    drop(t);
    let mut t = Screen::console(&card);
    t.expect("Please Enter User Name :");
    t.send_bytes(&[0xff; 5000]);
    t.send_bytes(b"\x1b[2J\r");
    t.expect("Please Enter User Name :");
    t.send(&"u".repeat(3000));
    t.send("\r");
    t.expect("That name is too long.");
    t.login("admin", GOOD);
    t.expect(PROMPT);
}

#[test]
fn a_second_console_login_ends_the_first() {
    let (card, mut first) = admin_at_menu(Setup::default());
    let mut second = Screen::console(&card);
    second.login("admin", GOOD);
    second.expect(PROMPT);
    first.expect("Your session ended because someone logged in on the serial console");
    first.expect_closed(common::PATIENCE);
    card.wait_event("session_taken_over");
    second.send("1\r");
    second.expect("Change them? (y/n)");
}

#[test]
fn an_idle_console_is_logged_out() {
    // 30 s is the shortest login timeout the settings allow.
    assert!(Settings::default().set("login_timeout_s", "29").is_err());
    let (card, mut t) = admin_at_menu(Setup::default().set("login_timeout_s", 30));
    // A terminal left at the login prompt starts over, too.
    let mut at_login = Screen::console(&card);
    at_login.expect("Please Enter User Name :");
    // Keys keep it alive: a question half-answered is activity.
    std::thread::sleep(Duration::from_secs(20));
    t.send("1\r");
    t.expect("Change them? (y/n)");
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(card.count("session_timeout"), 0);
    let said = t.expect_within(
        "Your session ended after a period without activity.",
        Duration::from_secs(40),
    );
    assert!(!said.contains("Saved"), "{said}");
    t.expect_closed(common::PATIENCE);
    let event = card.wait_event("session_timeout");
    assert!(
        event
            .message
            .contains("admin (console) timed out after 30 s"),
        "{}",
        event.message
    );
    assert_eq!(card.count("setting_changed"), 0);
    at_login.expect("No login for a while: the console starts over.");
    at_login.expect_closed(common::PATIENCE);
}

#[test]
fn a_flood_of_terminals_is_turned_away() {
    let card = card(Setup::default());
    let mut open: Vec<Screen> = (0..4).map(|_| Screen::console(&card)).collect();
    for t in &mut open {
        t.expect("Please Enter User Name :");
    }
    let mut fifth = Screen::console(&card);
    fifth.expect("The console is busy: try again later.");
    fifth.expect_closed(common::PATIENCE);
    // One gone, one more is served.
    drop(open.pop());
    common::wait_for("a place for a terminal", || {
        let mut t = Screen::console(&card);
        t.expect("\r\n");
        let said = t.collect(Duration::from_millis(300));
        said.contains("Please Enter User Name :")
    });
}

/// Card Settings shows the values in force, with the stored one beside a value this run's
/// command line changed.
#[test]
fn card_settings_show_a_command_line_override_beside_the_stored_value() {
    let (_card, mut t) = admin_at_menu(Setup::default().set("dns", "10.0.0.53"));
    t.send("1\r");
    let shown = t.expect("Change them? (y/n)");
    assert!(
        shown.contains("DNS server:   10.0.0.53 (this run, from the command line; stored: none)"),
        "{shown}"
    );
    assert!(
        shown.contains("Gateway:      none\r\n") || shown.contains("Gateway:      none\n"),
        "{shown}"
    );
    t.send("n\r");
}
