//! The web front under abuse, on loopback: TLS 1.2 refused and 1.3 accepted, the root the
//! card hands out verifying its certificate, 200 slow and idle clients while a user still
//! gets in, the ClientHello + close_notify trick leaving the front idle, oversized heads
//! and bodies refused, path traversal in many spellings finding nothing, deadlines.

use crate::common;

use common::web::{start_web, Browser};
use common::{Card, Setup, PATIENCE};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rustls client config trusting `root_pem`, speaking only `versions`.
fn client_config(
    root_pem: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Sends `raw` over TLS 1.3 to the card and returns all it answers until it closes.
fn tls_exchange(card: &Card, raw: &[u8]) -> String {
    let config = client_config(&card.root_pem(), &[&rustls::version::TLS13]);
    let conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(card.https()).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn only_tls_1_3_is_spoken() {
    let card = start_web(Setup::default());
    let root = card.root_pem();
    for (versions, ok) in [
        (&[&rustls::version::TLS12][..], false),
        (&[&rustls::version::TLS13][..], true),
    ] {
        let config = client_config(&root, versions);
        let conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
        let sock = TcpStream::connect(card.https()).unwrap();
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let sent = tls.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let read = sent.and_then(|()| tls.read_to_string(&mut answer));
        if ok {
            read.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert_eq!(
                tls.conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
        } else {
            let err = read.unwrap_err().to_string();
            assert!(
                err.contains("ProtocolVersion") || err.contains("protocol"),
                "{err}"
            );
        }
    }
}

#[test]
fn the_downloaded_root_verifies_the_cards_certificate_for_its_address() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let p = admin.get("/config/root-ca.pem");
    assert_eq!(p.status, 200);
    assert_eq!(p.header("content-type"), Some("application/x-pem-file"));
    assert!(p.body.starts_with("-----BEGIN CERTIFICATE-----"));
    // A client that trusts only the downloaded root connects to https://127.0.0.1:PORT.
    let base = format!("https://{}", card.https());
    let mut trusting = Browser::new(&base, Some(p.body.as_bytes()));
    assert_eq!(trusting.get("/login").status, 200);
    // One that trusts another root does not.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let stranger = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![
                    ureq::tls::Certificate::from_pem(other.cert.pem().as_bytes()).unwrap(),
                ])))
                .build(),
        )
        .build()
        .new_agent();
    let err = stranger.get(format!("{base}/login")).call().unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

/// Opens `n` connections to `addr` that each send `first` and then sit there.
fn hold(addr: SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(first).unwrap();
            s
        })
        .collect()
}

#[test]
fn two_hundred_slow_or_idle_clients_do_not_keep_a_user_out() {
    let card = start_web(Setup::default());
    let partial_head = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    // Half of a TLS record header: a handshake that never goes on.
    let partial_hello = [0x16, 0x03, 0x01];
    let mut held = Vec::new();
    for round in 0..2 {
        held.extend(hold(card.http(), 50, partial_head));
        held.extend(hold(card.http(), 50, b""));
        held.extend(hold(card.https(), 50, &partial_hello));
        held.extend(hold(card.https(), 50, b""));
        let base = format!("https://{}", card.https());
        let started = Instant::now();
        let page = Browser::new(&base, Some(&card.root_pem())).get("/login");
        let took = started.elapsed();
        assert_eq!(page.status, 200);
        eprintln!(
            "round {round}: /login over HTTPS in {took:?} with {} held",
            held.len()
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
        let started = Instant::now();
        let page = Browser::new(&format!("http://{}", card.http()), None).get("/login");
        assert_eq!(
            page.status, 301,
            "HTTP answers (with its redirect to HTTPS)"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    // The held ones cost their place: most were dropped to make room.
    let mut closed = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        if matches!(s.read(&mut [0u8; 64]), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(closed >= 300, "only {closed} of 400 dropped");
}

/// CPU time (user + system, in clock ticks) of this process's thread named `name`.
fn thread_ticks(name: &str) -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            return f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        }
    }
    panic!("no thread {name}");
}

#[test]
fn a_client_hello_then_close_notify_leaves_the_front_idle() {
    let card = start_web(Setup::default());
    let config = client_config(&card.root_pem(), &[&rustls::version::TLS13]);
    let mut socks = Vec::new();
    for _ in 0..20 {
        let mut conn =
            rustls::ClientConnection::new(config.clone(), "127.0.0.1".try_into().unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut s = TcpStream::connect(card.https()).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&hello).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // A close_notify alert in a record of its own, and the socket kept open.
        s.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00])
            .unwrap();
        socks.push(s);
    }
    let before = thread_ticks("web-front");
    std::thread::sleep(Duration::from_secs(2));
    let used = thread_ticks("web-front") - before;
    assert!(used <= 10, "the front used {used} ticks in 2 s");
    // Each was closed by the card.
    for s in &mut socks {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // And the card still serves.
    assert_eq!(card.browser().get("/login").status, 200);
}

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let card = start_web(Setup::default());
    let big = format!(
        "GET /login HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(status_of(&tls_exchange(&card, big.as_bytes())), 431);
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET /login HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(status_of(&tls_exchange(&card, many.as_bytes())), 431);
    // Refused on the head alone: the 2 MiB never have to be sent.
    let huge = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n";
    let answer = tls_exchange(&card, huge.as_bytes());
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("1 MiB at most"));
    let chunked = "POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(status_of(&tls_exchange(&card, chunked.as_bytes())), 411);
    let garbage = b"\x00\x01\x02 not http at all\r\n\r\n";
    assert_eq!(status_of(&tls_exchange(&card, garbage)), 400);
    // A login form of exactly its cap (4 KiB) is taken (and answered by the page); one
    // byte more is refused on its head.
    for (size, status) in [(4096, 403), (4097, 413)] {
        let body = "a".repeat(size);
        let raw = format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n{body}"
        );
        let answer = tls_exchange(&card, raw.as_bytes());
        assert_eq!(status_of(&answer), status, "{size}: {answer}");
    }
    // A logged-in user's body of exactly the cap (1 MiB) is taken, and answered by the page.
    let admin = card.admin();
    let body = "a".repeat(1024 * 1024);
    let max = format!(
        "POST /config HTTP/1.1\r\nHost: {host}\r\nOrigin: https://{host}\r\nCookie: session={}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        admin.cookies["session"],
        body.len(),
        host = card.https(),
    );
    let answer = tls_exchange(&card, max.as_bytes());
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(answer.contains("This form has expired"), "{answer}");
    assert_eq!(card.browser().get("/login").status, 200);
}

#[test]
fn path_traversal_in_every_spelling_finds_no_file() {
    let card = start_web(Setup::default());
    let admin = card.admin();
    let cookie = format!("session={}", admin.cookies["session"]);
    let spellings = [
        "/../../../../etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/%252e%252e/%252e%252e/etc/passwd",
        "/static/..%5c..%5c..%5cetc%5cpasswd",
        "/static/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/static/style.css/../../../../etc/passwd",
        "/static//etc/passwd",
        "//etc/passwd",
        "/config/root-ca.pem/../../../../etc/passwd",
        "/static/./../data/card.db",
        "/static/style.css%00.pem",
        "/%2e%2e/%2e%2e/etc/shadow",
        "/static/../tls/ca.key",
    ];
    for path in spellings {
        for with_session in [false, true] {
            let cookie_line = if with_session {
                format!("Cookie: {cookie}\r\n")
            } else {
                String::new()
            };
            let raw =
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n{cookie_line}Connection: close\r\n\r\n");
            let answer = tls_exchange(&card, raw.as_bytes());
            let status = status_of(&answer);
            assert!([303, 400, 404].contains(&status), "{path}: {answer}");
            assert!(!answer.contains("root:"), "{path}");
            assert!(!answer.contains("PRIVATE KEY"), "{path}");
            assert!(!answer.contains("SQLite format"), "{path}");
        }
    }
    // The files themselves are served as they are.
    let answer = tls_exchange(
        &card,
        b"GET /static/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("text/css"));
}

#[test]
fn keep_alive_pipelining_and_deadlines() {
    let card = start_web(Setup::default());
    // Two requests in one write get two answers, in order, on one connection.
    let two = "GET /login HTTP/1.1\r\nHost: x\r\n\r\nGET /static/home.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = tls_exchange(&card, two.as_bytes());
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert!(answer.find("<form").unwrap() < answer.find("X-Refresh").unwrap());

    // A head that never ends, and a kept-alive connection that says nothing more, are
    // both closed by their deadlines.
    let mut slow = TcpStream::connect(card.http()).unwrap();
    slow.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(card.http()).unwrap();
    idle.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    for s in [&mut slow, &mut idle] {
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(30),
        "closed after {took:?}"
    );
}
