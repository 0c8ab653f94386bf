//! The SSH console against an independent client (libssh2, through the `ssh2` crate): the
//! real service on loopback, logins against its accounts, what is refused, one session at
//! a time, the bounds before login, and the service switched off and on live.

mod common;

use common::{start_with, wait_for, Card, Setup, PATIENCE};
use modbus_card::accounts::Mac;
use modbus_card::live::Who;
use modbus_card::service::Options;
use ssh2::Session;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const MAC: &str = "00:1a:2b:3c:4d:5e";
/// The default admin password of that MAC.
const DEFAULT: &str = "3C4D5E";
const TITLE: &str = "Modbus Interface Configuration Utility";

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

/// A client connection with the key exchange done, not logged in.
fn connect(addr: SocketAddr) -> Session {
    let tcp = TcpStream::connect(addr).unwrap();
    let mut s = Session::new().unwrap();
    s.set_timeout(PATIENCE.as_millis() as u32);
    s.set_tcp_stream(tcp);
    s.handshake().unwrap();
    s
}

fn logged_in(addr: SocketAddr, user: &str, password: &str) -> Session {
    let s = connect(addr);
    s.userauth_password(user, password).unwrap();
    assert!(s.authenticated());
    s
}

/// A shell channel with a pty: the menu.
fn shell(s: &Session) -> ssh2::Channel {
    let mut ch = s.channel_session().unwrap();
    ch.request_pty("xterm", None, Some((80, 24, 0, 0))).unwrap();
    ch.shell().unwrap();
    ch
}

/// Reads the channel until `text` shows, or fails the test; returns all read so far.
fn read_until(ch: &mut ssh2::Channel, text: &str) -> String {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(text) {
        assert!(
            start.elapsed() < PATIENCE,
            "no {text:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        match ch.read(&mut buf) {
            Ok(0) => panic!(
                "channel closed before {text:?}: {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn count(card: &Card, kind: &str) -> usize {
    card.events().iter().filter(|e| e.kind == kind).count()
}

#[test]
fn the_right_password_gives_the_menu_and_none_never_logs_in() {
    let card = card();
    let addr = ssh_addr(&card);
    let s = connect(addr);
    // libssh2 asks with the `none` method: refused, with the methods on offer.
    let methods = s.auth_methods("admin").unwrap();
    assert!(!s.authenticated());
    assert_eq!(methods, "password,keyboard-interactive");
    s.userauth_password("admin", DEFAULT).unwrap();
    assert!(s.authenticated());
    let mut ch = shell(&s);
    let seen = read_until(&mut ch, TITLE);
    assert!(seen.contains("admin"), "{seen}");
    let row = card.wait_event("admin_login");
    assert!(row.message.contains("127.0.0.1"), "{}", row.message);
    assert!(row.message.contains("console"), "{}", row.message);
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
    let mut ch = shell(&s);
    read_until(&mut ch, TITLE);
    wait_for("the failed login in the log", || {
        count(&card, "login_failed") == 1
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
        count(&card, "login_failed") == 6
    });
    let failed = card.wait_event("login_failed");
    assert!(failed.message.contains("127.0.0.1"), "{}", failed.message);

    // Past the free tries each failure doubles the wait (the sixth: 4 s). The right
    // password then waits its turn, and gets in: slowed, not locked out.
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
    let mut said = String::new();
    let _ = ch.stderr().read_to_string(&mut said);
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

    // After all that, the menu is still there for whoever asks properly.
    let s = logged_in(addr, "admin", DEFAULT);
    let mut ch = shell(&s);
    read_until(&mut ch, TITLE);
}

#[test]
fn a_second_login_ends_the_first_and_is_told_so() {
    let card = card();
    let addr = ssh_addr(&card);
    let first = logged_in(addr, "admin", DEFAULT);
    let second = logged_in(addr, "admin", DEFAULT);
    let mut ch = shell(&second);
    let seen = read_until(&mut ch, TITLE);
    assert!(
        seen.contains(
            "The console session of admin from 127.0.0.1 has been ended: one console session at a time."
        ),
        "{seen}"
    );
    card.wait_event("session_taken_over");
    // The first connection was closed: it cannot open the console any more.
    let start = Instant::now();
    assert!(first.channel_session().is_err());
    assert!(start.elapsed() < PATIENCE);
}

#[test]
fn ssh_switched_off_stops_accepting_and_on_again_serves_the_same_port() {
    let card = card();
    let addr = ssh_addr(&card);
    let idle = logged_in(addr, "admin", DEFAULT);
    let who = Who {
        user: "admin".into(),
        via: "test".into(),
    };
    let live = &card.service().live;
    live.change(&[("ssh_enabled", "false")], &who, false)
        .unwrap();
    assert_eq!(card.service().ssh_addr(), None);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens once SSH is off"
    );
    // Connections already there end too: no SSH console means none.
    assert!(idle.channel_session().is_err());
    let row = card.wait_event("setting_changed");
    assert!(row.message.contains("SSH"), "{}", row.message);

    live.change(&[("ssh_enabled", "true")], &who, false)
        .unwrap();
    assert_eq!(card.service().ssh_addr(), Some(addr));
    let s = logged_in(addr, "admin", DEFAULT);
    let mut ch = shell(&s);
    read_until(&mut ch, TITLE);
}

#[test]
fn ssh_off_from_the_start_listens_nowhere() {
    let card = card_with(Setup::default().set("ssh_enabled", "false"));
    assert_eq!(card.service().ssh_addr(), None);
}

/// A TCP connection from `from` (any 127/8 address) to `to`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(from[0], from[1], from[2], from[3], 0),
    )
    .unwrap();
    let SocketAddr::V4(to) = to else {
        unreachable!()
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).unwrap();
    TcpStream::from(fd)
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
    let s = logged_in(addr, "admin", DEFAULT);
    let mut ch = shell(&s);
    read_until(&mut ch, TITLE);
    // And one from the flood's own address too: the newest pushes out the flood's oldest.
    let tcp = connect_from([127, 0, 0, 2], addr);
    let mut s = Session::new().unwrap();
    s.set_timeout(PATIENCE.as_millis() as u32);
    s.set_tcp_stream(tcp);
    s.handshake().unwrap();
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
    let mut ch = shell(&user);
    read_until(&mut ch, TITLE);
}
