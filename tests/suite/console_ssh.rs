//! The SSH console against an independent client (libssh2, through the `ssh2` crate): the
//! real service on loopback, logins against its accounts, the forced change of the default
//! password, each menu item and what it leaves in the store and the event log, what is
//! refused, one session at a time, the bounds before login, and the service switched off
//! and on live.

use crate::common;

use common::console::{Screen, PROMPT};
use common::ssh::{connect, logged_in, on, screen, terminal};
use common::web::{DEFAULT_PASSWORD as DEFAULT, GOOD, MAC};
use common::{connect_from, start_with, wait_for, Card, Setup, PATIENCE};
use modbus_card::accounts::Mac;
use modbus_card::service::Options;
use modbus_card::settings::Settings;
use modbus_card::store::Store;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TITLE: &str = "Modbus Interface Configuration Utility";
const FIRST_LOGIN: &str = "valid for this first login only";

fn card() -> Card {
    card_with(Setup::default())
}

fn card_with(setup: Setup) -> Card {
    start_with(
        setup,
        Options {
            ssh: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        },
    )
}

fn ssh_addr(card: &Card) -> SocketAddr {
    card.service().ssh_addr().expect("the SSH console listens")
}

fn stored(card: &Card) -> Settings {
    Store::open(&card.data)
        .unwrap()
        .load_settings_over(Settings::default())
        .unwrap()
}

/// The first login: the default password changed to [`GOOD`]; returns at the menu.
fn first_login(addr: SocketAddr) -> Screen {
    let mut t = terminal(addr, DEFAULT);
    t.expect(FIRST_LOGIN);
    t.change_password(DEFAULT, GOOD);
    t.expect(PROMPT);
    t
}

#[test]
fn the_default_password_is_changed_first_then_the_menu() {
    let card = card();
    let addr = ssh_addr(&card);
    let s = connect(addr);
    // libssh2 asks with the `none` method: refused, with the methods on offer.
    let methods = s.auth_methods("admin").unwrap();
    assert!(!s.authenticated());
    assert_eq!(methods, "password,keyboard-interactive");
    s.userauth_password("admin", DEFAULT).unwrap();
    assert!(s.authenticated());
    let mut t = screen(s);
    t.expect(FIRST_LOGIN);
    let row = card.wait_event("admin_login");
    assert!(
        row.message.contains("console, from 127.0.0.1"),
        "{}",
        row.message
    );
    t.change_password(DEFAULT, GOOD);
    let menu = t.expect(PROMPT);
    let title = format!("{TITLE}  [{}]", modbus_card::firmware::version::current());
    assert!(menu.contains(&title), "{title}: {menu}");
    for line in common::console::ITEMS {
        assert!(menu.contains(line), "{line}: {menu}");
    }
    card.wait_event("password_changed");
    t.send("0\r");
    t.expect("Goodbye.");
    t.expect_closed(PATIENCE);
    card.wait_event("logout");

    // The default password is gone; the new one gives the menu at once.
    assert!(connect(addr).userauth_password("admin", DEFAULT).is_err());
    let mut t = terminal(addr, GOOD);
    t.expect(PROMPT);
}

#[test]
fn keyboard_interactive_logs_in_too() {
    struct Typist(&'static str);
    impl ssh2::KeyboardInteractivePrompt for Typist {
        fn prompt(
            &mut self,
            _user: &str,
            _instructions: &str,
            prompts: &[ssh2::Prompt],
        ) -> Vec<String> {
            assert_eq!(prompts.len(), 1);
            assert!(prompts[0].text.contains("Password"));
            assert!(!prompts[0].echo);
            vec![self.0.to_string()]
        }
    }
    let card = card();
    let addr = ssh_addr(&card);
    let s = connect(addr);
    assert!(s
        .userauth_keyboard_interactive("admin", &mut Typist("wrong"))
        .is_err());
    s.userauth_keyboard_interactive("admin", &mut Typist(DEFAULT))
        .unwrap();
    assert!(s.authenticated());
    screen(s).expect(FIRST_LOGIN);
    wait_for("the failed login in the log", || {
        card.count("login_failed") == 1
    });
}

#[test]
fn wrong_passwords_are_refused_and_slowed_never_locked_out() {
    let card = card();
    let addr = ssh_addr(&card);
    let s = connect(addr);
    // Every refusal takes a second at least, an unknown user as long as a wrong password.
    for (user, password) in [
        ("admin", "wrong1"),
        ("nobody", DEFAULT),
        ("admin", "wrong3"),
        ("admin", "wrong4"),
        ("admin", "wrong5"),
        ("admin", "wrong6"),
    ] {
        let start = Instant::now();
        assert!(s.userauth_password(user, password).is_err());
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{user}/{password} refused after {:?}",
            start.elapsed()
        );
        assert!(!s.authenticated());
    }
    // Six tries on a connection: the seventh is not even heard.
    assert!(s.userauth_password("admin", DEFAULT).is_err());
    wait_for("6 failed logins in the log", || {
        card.count("login_failed") == 6
    });
    let failed = card.wait_event("login_failed");
    assert!(
        failed.message.contains("console, from 127.0.0.1"),
        "{}",
        failed.message
    );

    // Past an account's free tries from an address each failure doubles the wait (admin's
    // fifth: 2 s). The right password then waits its turn, and gets in: slowed, not
    // locked out.
    let s = connect(addr);
    let start = Instant::now();
    s.userauth_password("admin", DEFAULT).unwrap();
    let took = start.elapsed();
    assert!(s.authenticated());
    assert!(took >= Duration::from_secs(1), "logged in after {took:?}");
    card.wait_event("admin_login");
}

#[test]
fn only_the_menu_exec_sftp_forwarding_and_agent_are_refused() {
    let card = card();
    let addr = ssh_addr(&card);
    let s = logged_in(addr, "admin", DEFAULT);
    let mut ch = s.channel_session().unwrap();
    assert!(ch.exec("id").is_err(), "exec refused");
    drop(ch);

    // One session channel per connection: the refused one above was it.
    let s = logged_in(addr, "admin", DEFAULT);
    assert!(s.sftp().is_err(), "sftp refused");
    let s = logged_in(addr, "admin", DEFAULT);
    let mut ch = s.channel_session().unwrap();
    assert!(ch.subsystem("sftp").is_err());
    drop(ch);

    let s = logged_in(addr, "admin", DEFAULT);
    let modbus = card.addr();
    assert!(
        s.channel_direct_tcpip("127.0.0.1", modbus.port(), None)
            .is_err(),
        "local forwarding refused"
    );
    assert!(
        s.channel_forward_listen(0, Some("127.0.0.1"), None)
            .is_err(),
        "remote forwarding refused"
    );
    let mut ch = s.channel_session().unwrap();
    assert!(ch.request_auth_agent_forwarding().is_err());
    // A shell without a terminal is refused too: the menu needs one.
    assert!(ch.shell().is_err(), "shell without a pty refused");
    drop(ch);

    // After all that, the menu is there for whoever asks properly.
    first_login(addr);
    assert!(card.service().health.check().is_ok());
}

#[test]
fn each_menu_item_does_what_it_says_over_ssh() {
    let card = card();
    let addr = ssh_addr(&card);
    let mut t = first_login(addr);
    let before = stored(&card);

    // 1. Card Settings: a bad address is refused with nothing changed, then a good one.
    t.send("1\r");
    t.answer("Change them? (y/n)", "y");
    t.answer("Use DHCP (BootP) for the address? (y/n) [y]: ", "n");
    t.answer("IP address [192.168.7.18]: ", "300.1.1.1");
    let said = t.expect("IP address [192.168.7.18]: ");
    assert!(
        said.contains("'300.1.1.1' is not an IPv4 address"),
        "{said}"
    );
    t.send("10.1.2.3\r");
    t.answer("Subnet mask [255.255.255.0]: ", "255.0.255.0");
    t.expect("Subnet mask: 255.0.255.0 is not a subnet mask");
    assert_eq!(stored(&card), before);
    assert_eq!(card.count("setting_changed"), 0);
    t.answer("Subnet mask [255.255.255.0]: ", "255.255.0.0");
    t.answer("Gateway [none]: ", "10.1.0.1");
    t.answer("DNS server [none]: ", "");
    t.answer("Apply these settings? (y/n)", "y");
    t.expect("Saved and in force:");
    t.expect(PROMPT);
    let s = stored(&card);
    assert!(!s.dhcp_enabled);
    assert_eq!(s.ip_address.to_string(), "10.1.2.3");
    assert_eq!(s.netmask.to_string(), "255.255.0.0");
    assert_eq!(*card.service().settings(), s);
    wait_for("four changes logged", || card.count("setting_changed") == 4);
    assert!(card.events().iter().any(|e| e.kind == "setting_changed"
        && e.message == "IP address changed from 192.168.7.18 to 10.1.2.3 (admin, ssh 127.0.0.1)"));

    // 4. Restart Card and 3. Reset Configuration: "n" changes nothing.
    t.send("4\r");
    t.answer("Restart the card? (y/n)", "n");
    t.expect("Nothing was changed.");
    t.answer(PROMPT, "3");
    t.answer("Reset the configuration to factory settings? (y/n)", "n");
    t.expect("Nothing was changed.");
    assert!(card.service().restarts().try_recv().is_err());

    // 2. Reset Accounts/Passwords: the default password is back, and this session ends.
    t.answer(PROMPT, "2");
    t.answer("Reset accounts and passwords to default? (y/n)", "y");
    t.expect("Accounts and passwords are back to their defaults");
    t.expect_closed(PATIENCE);
    let reset = card.wait_event("accounts_reset");
    assert!(
        reset.message.contains("(admin, ssh 127.0.0.1)"),
        "{}",
        reset.message
    );
    assert!(connect(addr).userauth_password("admin", GOOD).is_err());

    // 4. Restart Card, confirmed.
    let mut t = first_login(addr);
    t.send("4\r");
    t.answer("Restart the card? (y/n)", "y");
    t.expect("The card is restarting");
    t.expect_closed(PATIENCE);
    let restart = card.service().restarts().recv_timeout(PATIENCE).unwrap();
    assert_eq!(restart.by, "admin, ssh 127.0.0.1");
    let event = card.wait_event("restart");
    assert_eq!(event.message, "Restart (admin, ssh 127.0.0.1)");

    // 3. Reset Configuration, confirmed: factory settings, and a restart.
    let mut t = terminal(addr, GOOD);
    t.answer(PROMPT, "3");
    t.answer("Reset the configuration to factory settings? (y/n)", "y");
    t.expect("Back to factory settings; the card is restarting.");
    t.expect_closed(PATIENCE);
    assert!(stored(&card).dhcp_enabled);
    let reset = card.wait_event("factory_reset");
    assert!(
        reset.message.contains("(admin, ssh 127.0.0.1)"),
        "{}",
        reset.message
    );
    assert!(card.service().restarts().recv_timeout(PATIENCE).is_ok());
}

#[test]
fn a_second_login_ends_the_first_and_is_told_so() {
    let card = card();
    let addr = ssh_addr(&card);
    let mut first = first_login(addr);
    let mut second = terminal(addr, GOOD);
    let seen = second.expect(PROMPT);
    assert!(
        seen.contains(
            "The console session of admin from 127.0.0.1 has been ended: one session at a time."
        ),
        "{seen}"
    );
    first.expect("Your session ended because someone logged in from 127.0.0.1");
    first.expect_closed(PATIENCE);
    card.wait_event("session_taken_over");
    second.send("1\r");
    second.expect("Change them? (y/n)");

    // A connection logged in without opening the console is closed as well.
    let idle = logged_in(addr, "admin", GOOD);
    let _third = logged_in(addr, "admin", GOOD);
    let start = Instant::now();
    assert!(idle.channel_session().is_err());
    assert!(start.elapsed() < PATIENCE);
}

#[test]
fn ssh_switched_off_stops_accepting_and_on_again_serves_the_same_port() {
    let card = card();
    let addr = ssh_addr(&card);
    let mut t = first_login(addr);
    let idle = logged_in(addr, "admin", GOOD);
    let who = crate::common::admin_who();
    let live = &card.service().live;
    live.change(&[("ssh_enabled", "false")], &who, false)
        .unwrap();
    assert_eq!(card.service().ssh_addr(), None);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens once SSH is off"
    );
    // The connections there end too: no SSH console means none.
    t.expect("The SSH console has been turned off.");
    t.expect_closed(PATIENCE);
    assert!(idle.channel_session().is_err());
    let row = card.wait_event("setting_changed");
    assert!(row.message.contains("SSH"), "{}", row.message);

    live.change(&[("ssh_enabled", "true")], &who, false)
        .unwrap();
    assert_eq!(card.service().ssh_addr(), Some(addr));
    terminal(addr, GOOD).expect(PROMPT);
}

#[test]
fn ssh_off_from_the_start_listens_nowhere() {
    let card = card_with(Setup::default().set("ssh_enabled", "false"));
    assert_eq!(card.service().ssh_addr(), None);
}

/// Whether the server has closed `tcp` (it reads end of file or a reset).
fn closed(tcp: &mut TcpStream) -> bool {
    tcp.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let gone = loop {
        match tcp.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    tcp.set_nonblocking(false).unwrap();
    gone
}

#[test]
fn connections_that_never_log_in_cannot_lock_out_a_user() {
    use modbus_card::console::ssh::MAX_WAITING;
    let card = card();
    let addr = ssh_addr(&card);
    // A flood from one address: more connections than may wait, each sending the SSH
    // banner and nothing more.
    let flood: Vec<TcpStream> = (0..MAX_WAITING + 16)
        .map(|_| {
            let mut t = connect_from([127, 0, 0, 2], addr);
            t.write_all(b"SSH-2.0-flood\r\n").unwrap();
            t
        })
        .collect();
    let mut flood = flood;
    // The oldest of the flood went to make room; the newest still wait.
    wait_for("the flood's oldest connections closed", || {
        flood[..16].iter_mut().all(closed)
    });
    let waiting = flood
        .iter_mut()
        .map(|t| usize::from(!closed(t)))
        .sum::<usize>();
    assert!(waiting <= MAX_WAITING, "{waiting} connections waiting");
    // A user from another address logs in at once, the flood still there.
    terminal(addr, DEFAULT).expect(FIRST_LOGIN);
    // And one from the flood's own address too: the newest pushes out the flood's oldest.
    let s = on(connect_from([127, 0, 0, 2], addr));
    s.userauth_password("admin", DEFAULT).unwrap();
    assert!(s.authenticated());
}

#[test]
fn a_connection_that_does_not_log_in_is_closed_after_the_grace_time() {
    use modbus_card::console::ssh::LOGIN_GRACE;
    let card = card();
    let addr = ssh_addr(&card);
    let start = Instant::now();
    let user = logged_in(addr, "admin", DEFAULT);
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"SSH-2.0-slow\r\n").unwrap();
    tcp.set_read_timeout(Some(LOGIN_GRACE + PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {:?}: {e}", start.elapsed()),
        }
    }
    let took = start.elapsed();
    assert!(took >= LOGIN_GRACE - Duration::from_secs(1), "{took:?}");
    // The grace time is for logging in: a user logged in meanwhile stays.
    screen(user).expect(FIRST_LOGIN);
}

#[test]
fn the_control_page_shows_the_ssh_port_and_switches_it() {
    let card = start_with(
        Setup::default(),
        Options {
            https: Some("127.0.0.1:0".parse().unwrap()),
            ssh: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        },
    );
    let addr = ssh_addr(&card);
    let mut admin = card.admin();
    let page = admin.get("/control");
    assert!(
        page.body.contains(&format!("TCP {}", addr.port())),
        "{}",
        page.body
    );
    admin
        .post("/control", &[("ssh_enabled", "false")])
        .shows(&["SSH: On → Off"]);
    assert_eq!(card.service().ssh_addr(), None);
    assert!(TcpStream::connect(addr).is_err());
    // Off, the page still says where it would listen.
    let page = admin.get("/control");
    assert!(page.body.contains(&format!("TCP {}", addr.port())));
    admin
        .post("/control", &[("ssh_enabled", "true")])
        .shows(&["SSH: Off → On"]);
    connect(addr).userauth_password("admin", GOOD).unwrap();
}
