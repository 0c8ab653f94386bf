//! The web front under a flood, on loopback: connections that announce an upload and never
//! send it, or send it slowly, from one address or from a hundred, on HTTP or on HTTPS,
//! while a user from 127.0.0.2 logs in and loads Home over HTTPS; refused heads answered
//! and closed at once; a user's open connections, and the other port's, kept.

use crate::common;
use crate::common::flood;

use common::web::{start_web, GOOD};
use common::{Card, Setup};
use flood::{Abuse, Conn, Flood, User};
use parking_lot::Mutex;
use rustls::ClientConfig;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The user's address; the attackers are elsewhere.
const USER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Each of the user's requests is answered within this, connection included.
const ANSWER: Duration = Duration::from_secs(10);
/// Attacking connections: more than the front's places.
const ATTACKERS: usize = 80;

/// One flood at a time on this machine: they would crowd each other's cards out.
static FLOODS: Mutex<()> = Mutex::new(());

/// A card whose admin has set a password ([`GOOD`]), and a client that trusts it.
fn card() -> (Card, Arc<ClientConfig>) {
    let card = start_web(Setup::default());
    drop(card.admin());
    let tls = flood::tls_config(&card.root_pem());
    (card, tls)
}

/// While `flood` runs: the user logs in from 127.0.0.2 and loads Home five times over
/// HTTPS, a new connection each time, each answered within [`ANSWER`].
fn user_gets_in(card: &Card, tls: Arc<ClientConfig>, flood: Flood) {
    // Time for the flood to take every place it can.
    std::thread::sleep(Duration::from_secs(1));
    let mut user = User::new(USER, card.https(), tls, ANSWER);
    let started = Instant::now();
    let login = user.login("admin", GOOD);
    let homes: Vec<io::Result<flood::Answer>> = match &login {
        Ok(_) => (0..5).map(|_| user.get("/")).collect(),
        Err(_) => Vec::new(),
    };
    let took = started.elapsed();
    let connects = flood.stop();
    eprintln!("login and 5 Home loads in {took:?}; the flood made {connects} connections");
    let login = login.expect("the login answered");
    assert_eq!(login.status, 303, "{login:?}");
    assert_eq!(login.header("location"), Some("/"), "{login:?}");
    assert!(user.session.is_some(), "{login:?}");
    for home in homes {
        let home = home.expect("Home answered");
        assert_eq!(home.status, 200, "{home:?}");
        assert!(home.body.contains("<h1>Home</h1>"), "{}", home.body);
    }
    assert!(connects >= ATTACKERS as u64, "the flood ran: {connects}");
}

#[test]
fn an_upload_head_flood_on_http_does_not_keep_a_user_out_of_https() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let f = Flood::start(
        Abuse::LingerHead,
        card.http(),
        None,
        &[Ipv4Addr::LOCALHOST],
        ATTACKERS,
    );
    user_gets_in(&card, tls, f);
}

#[test]
fn an_upload_head_flood_on_https_does_not_keep_a_user_out() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let f = Flood::start(
        Abuse::LingerHead,
        card.https(),
        Some(tls.clone()),
        &[Ipv4Addr::LOCALHOST],
        ATTACKERS,
    );
    user_gets_in(&card, tls, f);
}

#[test]
fn slow_upload_bodies_on_https_do_not_keep_a_user_out() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let f = Flood::start(
        Abuse::SlowBody,
        card.https(),
        Some(tls.clone()),
        &[Ipv4Addr::LOCALHOST],
        ATTACKERS,
    );
    user_gets_in(&card, tls, f);
}

#[test]
fn a_flood_from_a_hundred_addresses_does_not_keep_a_user_out() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let sources: Vec<Ipv4Addr> = (10..110).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    // Two from each address, on the user's own port.
    let f = Flood::start(
        Abuse::LingerHead,
        card.https(),
        Some(tls.clone()),
        &sources,
        200,
    );
    user_gets_in(&card, tls, f);
}

#[test]
fn a_flood_of_idle_connections_from_a_hundred_addresses_on_both_ports_does_not_keep_a_user_out() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let sources: Vec<Ipv4Addr> = (10..110).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let http = Flood::start(Abuse::Idle, card.http(), None, &sources, 100);
    let f = Flood::start(
        Abuse::Trickle,
        card.https(),
        Some(tls.clone()),
        &sources,
        100,
    );
    user_gets_in(&card, tls, f);
    http.stop();
}

/// Reads until the card closes the connection; how long that took.
fn until_closed(conn: &mut Conn, limit: Duration) -> Duration {
    let started = Instant::now();
    conn.set_timeout(Duration::from_millis(100));
    let mut sink = [0u8; 4096];
    while started.elapsed() < limit {
        match conn.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    started.elapsed()
}

#[test]
fn a_body_without_a_session_is_refused_at_its_head_and_not_read() {
    let (card, tls) = card();
    let user = User::new(USER, card.https(), tls.clone(), ANSWER);

    // The head, without a session: sent to the login page at once, the
    // connection closed, though the body keeps coming (at 8 KiB/s: 64 KiB would take 8 s).
    let mut conn = user.open().unwrap();
    conn.write_all(flood::UPLOAD_HEAD).unwrap();
    conn.flush().unwrap();
    let answer = conn.answer().expect("an answer to the head alone");
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(answer.header("location"), Some("/login"), "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    let started = Instant::now();
    conn.set_timeout(Duration::from_millis(100));
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(8) {
        if conn
            .write_all(&[b'a'; 800])
            .and_then(|()| conn.flush())
            .is_err()
        {
            closed = true;
            break;
        }
        let mut sink = [0u8; 64];
        if matches!(conn.read(&mut sink), Ok(0)) {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");

    // A login form larger than a login form: refused at its head.
    let mut conn = user.open().unwrap();
    let big = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n";
    let answer = conn.request(big).expect("an answer to the head alone");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("4 KiB"), "{answer:?}");
    assert!(until_closed(&mut conn, Duration::from_secs(8)) < Duration::from_secs(5));

    // A session without the upload's CSRF token, or from another site: refused at the
    // head too, before any of the image is sent.
    let mut user = User::new(USER, card.https(), tls, ANSWER);
    assert_eq!(user.login("admin", GOOD).unwrap().status, 303);
    let session = user.session.clone().unwrap();
    let own = format!("Origin: https://{}\r\n", card.https());
    for (extra, status) in [
        (own.as_str(), 403),
        ("Origin: https://elsewhere.example\r\n", 403),
    ] {
        let mut conn = user.open().unwrap();
        let head = format!(
            "POST /firmware/upload HTTP/1.1\r\nHost: {host}\r\nCookie: session={session}\r\n\
             {extra}Content-Length: 16000000\r\n\r\n",
            host = card.https()
        );
        let answer = conn.request(&head).expect("an answer to the head alone");
        assert_eq!(answer.status, status, "{extra}: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    }
    // And the session still works.
    assert_eq!(user.get("/").unwrap().status, 200);
}

#[test]
fn a_logged_in_users_open_connections_outlive_a_flood() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let mut user = User::new(USER, card.https(), tls.clone(), ANSWER);
    assert_eq!(user.login("admin", GOOD).unwrap().status, 303);
    // A browser's few kept-alive connections, each having shown the session.
    let mut open: Vec<Conn> = (0..4).map(|_| user.open().unwrap()).collect();
    for conn in &mut open {
        let home = conn.request(&user.get_raw("/", true)).unwrap();
        assert_eq!(home.status, 200);
    }
    let f = Flood::start(
        Abuse::Idle,
        card.https(),
        Some(tls),
        &[Ipv4Addr::LOCALHOST],
        200,
    );
    std::thread::sleep(Duration::from_secs(2));
    let pages: Vec<io::Result<flood::Answer>> = open
        .iter_mut()
        .map(|conn| conn.request(&user.get_raw("/", true)))
        .collect();
    f.stop();
    for page in pages {
        assert_eq!(page.expect("the same connection answers").status, 200);
    }
}

#[test]
fn a_flood_on_http_leaves_https_connections_alone() {
    let _one = FLOODS.lock();
    let (card, tls) = card();
    let user = User::new(USER, card.https(), tls, ANSWER);
    // Kept-alive HTTPS connections without a session.
    let mut open: Vec<Conn> = (0..4).map(|_| user.open().unwrap()).collect();
    for conn in &mut open {
        assert_eq!(
            conn.request(&user.get_raw("/login", true)).unwrap().status,
            200
        );
    }
    let f = Flood::start(Abuse::Idle, card.http(), None, &[Ipv4Addr::LOCALHOST], 200);
    std::thread::sleep(Duration::from_secs(2));
    let pages: Vec<io::Result<flood::Answer>> = open
        .iter_mut()
        .map(|conn| conn.request(&user.get_raw("/login", true)))
        .collect();
    f.stop();
    for page in pages {
        assert_eq!(page.expect("the same connection answers").status, 200);
    }
}
