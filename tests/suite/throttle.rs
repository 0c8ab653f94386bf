//! Failed logins slow down their address for that account and the account from
//! everywhere, never locking anyone out (issue 16, item 1): over real sockets, each login
//! posted from its own loopback address (127.0.0.0/8) as browsers on different machines
//! would, and password checks counted by the failures in the event log.

use crate::common;

use common::web::{admin_in, new_user, DEFAULT_PASSWORD, GOOD, GOOD_2, MAC};
use common::{connect_from, start_with, wait_for, Card, Setup};
use modbus_card::accounts::Mac;
use modbus_card::service::Options;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const WRONG: &str = "Wrongpass12!X";
const LOCAL: [u8; 4] = [127, 0, 0, 1];
/// The card's cap on the wait that failures against one account impose (README).
const ACCOUNT_CAP_S: u64 = 10;
/// Failures against one account, from anywhere, that impose no wait yet (README).
const ACCOUNT_FREE: usize = 10;

/// A card serving plain HTTP (HTTPS off: the logins here are about the accounts, not TLS)
/// and the SSH console.
fn card() -> Card {
    start_with(
        Setup::default().set("https_enabled", false),
        Options {
            http: Some("127.0.0.1:0".parse().unwrap()),
            ssh: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        },
    )
}

/// A TCP connection from `from` (any 127/8 address) to `to`.
/// The login form as a browser posts it (its own CSRF token in the cookie and the form),
/// on `tcp`.
fn send_login(tcp: &mut TcpStream, http: SocketAddr, user: &str, password: &str) {
    let csrf = "ab".repeat(32);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .append_pair("password", password)
        .append_pair("csrf", &csrf)
        .finish();
    write!(
        tcp,
        "POST /login HTTP/1.1\r\nHost: {http}\r\nOrigin: http://{http}\r\n\
         Cookie: login_csrf={csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

/// The answer's status and the whole answer.
fn answer(tcp: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A login posted from `from`: the answer's status and the whole answer.
fn login_from(http: SocketAddr, from: [u8; 4], user: &str, password: &str) -> (u16, String) {
    let mut tcp = connect_from(from, http);
    send_login(&mut tcp, http, user, password);
    answer(&mut tcp)
}

/// The wait a refusal names ("try again in N s").
fn wait_in(answer: &str) -> u64 {
    let at = answer.find("try again in ").expect("a wait") + 13;
    answer[at..].split(' ').next().unwrap().parse().unwrap()
}

/// Password checks that failed for `user` from `from` ("" for any address), as logged.
fn failures(card: &Card, user: &str, from: &str) -> usize {
    card.events()
        .iter()
        .filter(|e| {
            e.kind == "login_failed"
                && e.message.contains(&format!("'{user}'"))
                && e.message.contains(from)
        })
        .count()
}

/// Once `n` failures are logged, that no more come.
fn exactly(card: &Card, user: &str, from: &str, n: usize) {
    wait_for(&format!("{n} failures logged"), || {
        failures(card, user, from) >= n
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(failures(card, user, from), n);
}

#[test]
fn a_right_password_for_one_user_clears_no_failures_of_another() {
    let card = card();
    let mut admin = admin_in(card.plain_browser());
    drop(new_user(
        &mut admin,
        card.plain_browser(),
        "viewer",
        "read-only",
    ));
    let http = card.http();
    // Three wrong admin passwords, then the right one of the read-only user, ten times
    // over from one address: the read-only logins must not buy more admin guesses.
    let mut held = 0;
    for _ in 0..10 {
        for _ in 0..3 {
            let (status, answer) = login_from(http, LOCAL, "admin", WRONG);
            assert!(matches!(status, 401 | 429), "{answer}");
            if status == 429 {
                held += 1;
                assert!(answer.contains("Too many failed logins from your address"));
            }
        }
        let (status, answer) = login_from(http, LOCAL, "viewer", GOOD_2);
        assert_eq!(
            status, 303,
            "the read-only user gets in each time: {answer}"
        );
    }
    assert!(held > 0, "the admin guesses were slowed");
    // Three free, then one per wait (1 s, 2 s, 4 s ...): far fewer than the 30 tried.
    std::thread::sleep(Duration::from_millis(500));
    let checked = failures(&card, "admin", "");
    assert!(checked < 10, "{checked} admin passwords checked");
    assert_eq!(checked + held, 30);
}

#[test]
fn twelve_posts_at_once_get_no_more_checks_than_the_allowance() {
    let card = card();
    let http = card.http();
    let from = [127, 0, 0, 5];
    let start = Arc::new(Barrier::new(12));
    let posts: Vec<_> = (0..12)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut tcp = connect_from(from, http);
                start.wait();
                send_login(&mut tcp, http, "admin", WRONG);
                answer(&mut tcp)
            })
        })
        .collect();
    let statuses: Vec<u16> = posts.into_iter().map(|p| p.join().unwrap().0).collect();
    // Three free tries and the one that starts the wait: the password is checked four
    // times, and the eight others are refused unchecked.
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let held = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, held), (4, 8), "{statuses:?}");
    exactly(&card, "admin", "from 127.0.0.5", 4);
}

#[test]
fn an_attack_from_many_addresses_keeps_nobody_out_for_long() {
    let card = card();
    drop(admin_in(card.plain_browser())); // admin's own address: 127.0.0.1
    let http = card.http();
    let start = Instant::now();
    // 100 addresses take turns guessing admin's password for 20 s (2000 tries at most),
    // long enough for the account's wait to reach its cap.
    let attack = std::thread::spawn(move || {
        let mut waits = Vec::new();
        for i in 0..2000 {
            if start.elapsed() > Duration::from_secs(20) {
                break;
            }
            let from = [127, 0, 0, 10 + (i % 100) as u8];
            let (status, answer) = login_from(http, from, "admin", WRONG);
            match status {
                401 => {}
                429 => {
                    assert!(answer.contains("Too many failed logins for this user"));
                    waits.push(wait_in(&answer));
                }
                _ => panic!("{answer}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        waits
    });
    // While it goes on, once the account waits 4 s between guesses, admin logs in from
    // its own address at once.
    wait_for("the account's wait to grow", || {
        failures(&card, "admin", "") > ACCOUNT_FREE + 3
    });
    let (status, answer) = login_from(http, LOCAL, "admin", GOOD);
    assert_eq!(status, 303, "{answer}");
    assert!(answer.contains("Location: /\r\n"), "{answer}");
    let waits = attack.join().unwrap();
    let took = start.elapsed().as_secs();
    // The attack was held back account-wide, each wait no longer than the cap...
    eprintln!("attack: {} tries held back, {took} s", waits.len());
    assert_eq!(waits.iter().max(), Some(&ACCOUNT_CAP_S), "waits: {waits:?}");
    // ... so its guesses were the free ones and one per wait (1, 2, 4, 8, 10, 10 s ...).
    let checked = failures(&card, "admin", "");
    eprintln!("attack: {checked} passwords checked");
    assert!(
        checked as u64 <= ACCOUNT_FREE as u64 + 1 + took / 2,
        "{checked} passwords checked in {took} s"
    );
    // A new address of the real user waits its turn, never longer than the cap, and
    // gets in.
    for tries in 0.. {
        let (status, answer) = login_from(http, [127, 0, 0, 3], "admin", GOOD);
        if status == 303 {
            break;
        }
        assert_eq!(status, 429, "{answer}");
        assert!(tries < 3, "still held after {tries} waits");
        let wait = wait_in(&answer);
        assert!(wait <= ACCOUNT_CAP_S, "{answer}");
        std::thread::sleep(Duration::from_secs(wait));
    }
}

#[test]
fn ssh_and_the_web_share_the_count() {
    let card = card();
    let ssh = card.service().ssh_addr().unwrap();
    let from = [127, 0, 0, 6];
    let connection = || common::ssh::on(connect_from(from, ssh));
    // Seven wrong passwords over SSH (six on a connection at most): the fourth starts a
    // wait of 1 s, the seventh one of 8 s.
    let s = connection();
    for _ in 0..6 {
        assert!(s.userauth_password("admin", WRONG).is_err());
    }
    assert!(connection().userauth_password("admin", WRONG).is_err());
    // Within that wait the web refuses even the right password from that address,
    // unchecked...
    let (status, answer) = login_from(card.http(), from, "admin", DEFAULT_PASSWORD);
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("Too many failed logins from your address"));
    exactly(&card, "admin", "console, from 127.0.0.6", 7);
    // ... and lets it in after the wait.
    std::thread::sleep(Duration::from_secs(wait_in(&answer)));
    let (status, answer) = login_from(card.http(), from, "admin", DEFAULT_PASSWORD);
    assert_eq!(status, 303, "{answer}");
    assert_eq!(failures(&card, "admin", ""), 7);
}
