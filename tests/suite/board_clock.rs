//! The card's clock against NTP servers on loopback: one in this test that tells the
//! truth, lies or answers garbage as each test needs, and (run by .ci/ntp) chrony. The
//! machine's own clock is never set: the card keeps its own, and these tests read it.

use crate::common;

use common::{start, wait_for, Setup, PATIENCE};
use modbus_card::board::clock::{self, unix_ns, Clock, NtpConfig};
use modbus_card::board::sntp::to_ntp;
use modbus_card::event::{Event, Events};
use modbus_card::health::Heartbeat;
use modbus_card::shutdown::Shutdown;
use std::collections::VecDeque;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

const NANOS: i64 = 1_000_000_000;
const YEAR: i64 = 365 * 86_400 * NANOS;

/// What the test server answers.
#[derive(Debug, Clone)]
enum Answer {
    /// The time, this far from the system clock.
    Offset(i64),
    /// This Unix time, whatever the clock says.
    At(i64),
    /// 48 bytes of noise.
    Garbage,
}

/// An SNTP server on 127.0.0.1 that answers from a script, then repeats its last line.
struct Server {
    addr: String,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn new(script: &[Answer]) -> Server {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let script = Arc::new(Mutex::new(script.iter().cloned().collect::<VecDeque<_>>()));
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sc, se, st) = (script.clone(), served.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut noise = 0x2545_F491_4F6C_DD1Du64;
            while !st.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if n < 48 {
                    continue;
                }
                let answer = {
                    let mut s = sc.lock().unwrap();
                    if s.len() > 1 {
                        s.pop_front().unwrap()
                    } else {
                        s.front().cloned().unwrap()
                    }
                };
                let mut p = [0u8; 48];
                match answer {
                    Answer::Garbage => {
                        for b in &mut p {
                            noise ^= noise << 13;
                            noise ^= noise >> 7;
                            noise ^= noise << 17;
                            *b = noise as u8;
                        }
                    }
                    Answer::Offset(_) | Answer::At(_) => {
                        let now = match answer {
                            Answer::Offset(o) => unix_ns(SystemTime::now()) + o,
                            Answer::At(t) => t,
                            Answer::Garbage => unreachable!(),
                        };
                        p[0] = (4 << 3) | 4;
                        p[1] = 2;
                        p[12..16].copy_from_slice(b"TEST");
                        p[24..32].copy_from_slice(&buf[40..48]);
                        let ts = to_ntp(now).to_be_bytes();
                        p[32..40].copy_from_slice(&ts);
                        p[40..48].copy_from_slice(&ts);
                    }
                }
                let _ = socket.send_to(&p, peer);
                se.fetch_add(1, Ordering::SeqCst);
            }
        });
        Server { addr, served, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An NTP client thread outside a service.
fn client(config: NtpConfig, clock: &Clock, events: &Events) -> (Shutdown, JoinHandle<()>) {
    let shutdown = Shutdown::new().unwrap();
    let (_ntp, thread) = clock::spawn_ntp(
        config,
        clock.clone(),
        events.clone(),
        shutdown.clone(),
        Heartbeat::unwatched("ntp"),
    )
    .unwrap();
    (shutdown, thread)
}

/// Card clock minus system clock.
fn card_offset(clock: &Clock) -> i64 {
    unix_ns(clock.now()) - unix_ns(SystemTime::now())
}

#[test]
fn the_event_log_follows_the_ntp_server() {
    let server = Server::new(&[Answer::Offset(3600 * NANOS)]);
    // No NTP at first; the server set through the settings' door, as a page would.
    let mut card = start(Setup::default());
    let who = crate::common::admin_who();
    card.service()
        .live
        .change(&[("ntp_server", &server.addr)], &who, false)
        .unwrap();
    let changed = card.wait_event("time_changed_by_server");
    assert_eq!(changed.message, "Time changed by server (NTP): +3600.0 s");
    let clock = card.service().clock.clone();
    let off = card_offset(&clock);
    assert!(
        (off - 3600 * NANOS).abs() < NANOS,
        "card clock off by {off} ns"
    );
    let status = clock.status();
    assert!(
        status.last_sync.is_some() && status.last_error.is_none(),
        "{status:?}"
    );
    assert_eq!(status.server, server.addr);
    // Events from now on carry the server's time.
    card.stop();
    let stopped = &card.events()[0];
    assert_eq!(stopped.kind, "stopped");
    let expected_ms = (unix_ns(SystemTime::now()) + 3600 * NANOS) / 1_000_000;
    assert!(
        (stopped.at_ms - expected_ms).abs() < 10_000,
        "stamped {} ms, expected about {expected_ms}",
        stopped.at_ms
    );
}

#[test]
fn garbage_and_impossible_times_are_logged_and_not_followed() {
    let server = Server::new(&[Answer::Garbage]);
    let card = start(Setup::default().set("ntp_server", &server.addr));
    let clock = card.service().clock.clone();
    wait_for("the garbage refused", || {
        clock.status().last_error.is_some()
    });
    let err = clock.status().last_error.unwrap();
    assert!(err.contains("refused"), "{err}");
    // 1995: before this firmware existed.
    let mut card = card;
    card.stop();
    let server = Server::new(&[Answer::At(788_918_400 * NANOS)]);
    let card = start(Setup::default().set("ntp_server", &server.addr));
    let clock = card.service().clock.clone();
    wait_for("the old time refused", || {
        clock
            .status()
            .last_error
            .is_some_and(|e| e.contains("1995-01-01"))
    });
    assert!(card_offset(&clock).abs() < NANOS);
    assert!(card
        .events()
        .iter()
        .all(|e| !e.kind.starts_with("time_changed")));
}

#[test]
fn a_synced_clock_follows_a_big_jump_only_when_replies_agree() {
    let (events, rx) = Events::channel();
    let clock = Clock::new(&events, false);
    // The truth; two lies; the truth; then the same lie three times.
    let lie = Answer::Offset(10 * YEAR);
    let server = Server::new(&[
        Answer::Offset(0),
        lie.clone(),
        lie.clone(),
        Answer::Offset(0),
        lie.clone(),
        lie.clone(),
        lie,
    ]);
    let config = NtpConfig {
        poll: Duration::from_millis(50),
        retry: Duration::from_millis(50),
        ..NtpConfig::new(&server.addr)
    };
    let (shutdown, thread) = client(config, &clock, &events);
    let stamped = rx.recv_timeout(PATIENCE).expect("never followed");
    let Event::TimeChangedByServer { step_ms } = stamped.event else {
        panic!("{:?}", stamped.event)
    };
    // Only the seventh reply, the third lie in a row, moved the clock.
    assert!(server.served.load(Ordering::SeqCst) >= 7);
    assert!((step_ms - 10 * YEAR / 1_000_000).abs() < 2_000, "{step_ms}");
    assert!((card_offset(&clock) - 10 * YEAR).abs() < 2 * NANOS);
    shutdown.fire();
    thread.join().unwrap();
}

/// Against chrony from Debian, serving on a loopback port: `.ci/ntp` starts it and sets
/// MODBUS_CARD_NTP to its address.
#[test]
#[ignore = "needs an NTP server: run by .ci/ntp"]
fn a_real_ntp_server_sets_the_card_clock() {
    let server = std::env::var("MODBUS_CARD_NTP").expect("MODBUS_CARD_NTP=host:port");
    // A clock set wrong by hand...
    let (events, rx) = Events::channel();
    let clock = Clock::new(&events, false);
    let wrong = SystemTime::now() + Duration::from_secs(3 * 365 * 86_400);
    clock.set_by_user(wrong, "test", &events).unwrap();
    assert!(matches!(
        rx.recv().unwrap().event,
        Event::TimeChangedByUser { .. }
    ));
    // ...is put right by the server.
    let config = NtpConfig {
        retry: Duration::from_secs(1),
        ..NtpConfig::new(&server)
    };
    let (shutdown, thread) = client(config, &clock, &events);
    let stamped = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no time from the server");
    let message = stamped.event.message();
    assert!(
        message.starts_with("Time changed by server (NTP): -946"),
        "{message}"
    );
    assert!(
        card_offset(&clock).abs() < NANOS / 2,
        "{}",
        card_offset(&clock)
    );
    assert!(clock.status().last_error.is_none(), "{:?}", clock.status());
    shutdown.fire();
    thread.join().unwrap();

    // And the whole service polls it and stays in step.
    let card = start(Setup::default().set("ntp_server", &server));
    let clock = card.service().clock.clone();
    wait_for("synchronized", || clock.status().last_sync.is_some());
    assert!(card_offset(&clock).abs() < NANOS / 2);
}
