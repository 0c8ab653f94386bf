//! What masters get while the UPS is slow, silent or gone: never another request's
//! answer, exception 0x0B within the stated time, and session slots that nobody can hold
//! hostage. Masters are independent: tokio-modbus over TCP, and on RS485 a raw RTU master
//! written here as libmodbus behaves (a response timeout, no flush between requests), with
//! its own CRC.

use crate::common;

use common::{start_up, wait_for, Card, Setup, PATIENCE};
use modbus_card::link::LinkState;
use modbus_card::sim::Fault;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_modbus::client::{tcp, Context, Reader, Writer};
use tokio_modbus::{ExceptionCode, Slave};

/// The serial timeout of these tests (the UPS at a fixed 19200 baud allows it).
const T: Duration = Duration::from_millis(300);

fn setup() -> Setup {
    Setup::default()
        .set("ups_baud", 19200)
        .set("serial_timeout_ms", T.as_millis())
}

async fn client(addr: SocketAddr, unit: u8) -> Context {
    timeout(PATIENCE, tcp::connect_slave(addr, Slave(unit)))
        .await
        .unwrap()
        .unwrap()
}

/// Two scratch tables of the same shape with different contents: an answer carrying the
/// other table's words is another request's answer.
const TABLE_A: u16 = 0x0040;
const TABLE_B: u16 = 0x0060;
const WORDS: u16 = 12;

fn contents(table: u16) -> Vec<u16> {
    (0..WORDS).map(|i| table << 4 | i).collect()
}

async fn fill_tables(card: &Card) {
    let mut c = client(card.addr(), 1).await;
    for table in [TABLE_A, TABLE_B] {
        c.write_multiple_registers(table, &contents(table))
            .await
            .unwrap()
            .unwrap();
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    right: u32,
    gateway_failed: u32,
    wrong: u32,
}

/// Reads `table` over and over until `until`, checking each answer is its own.
async fn read_table_until(addr: SocketAddr, table: u16, until: Instant) -> Tally {
    let mut c = client(addr, 1).await;
    let mut tally = Tally::default();
    while Instant::now() < until {
        match c.read_holding_registers(table, WORDS).await.unwrap() {
            Ok(words) if words == contents(table) => tally.right += 1,
            Ok(words) => {
                eprintln!("table {table:04X} read as {words:04X?}");
                tally.wrong += 1;
            }
            Err(ExceptionCode::GatewayTargetDevice) => tally.gateway_failed += 1,
            Err(e) => panic!("unexpected exception {e:?}"),
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_never_get_each_others_answers_from_a_late_ups() {
    let _turn = crate::turn();
    let card = start_up(setup());
    fill_tables(&card).await;
    // Late just after the timeout, at 1.6 and at 2.4 times it.
    for late in [T + Duration::from_millis(20), T * 16 / 10, T * 24 / 10] {
        card.sim.set_fault(Fault::None);
        card.wait_state(LinkState::Up);
        // Events reach the log through the store thread: let the last outage's be in.
        wait_for("the previous outage's events", || {
            card.count("ups_lost") == card.count("ups_restored")
        });
        let (lost, restored) = (card.count("ups_lost"), card.count("ups_restored"));
        card.sim.set_fault(Fault::Late(late));
        let until = Instant::now() + Duration::from_secs(6);
        let a = tokio::spawn(read_table_until(card.addr(), TABLE_A, until));
        let b = tokio::spawn(read_table_until(card.addr(), TABLE_B, until));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(a.wrong + b.wrong, 0, "late {late:?}: {a:?} {b:?}");
        assert!(a.gateway_failed > 0 && b.gateway_failed > 0, "{a:?} {b:?}");
        // One outage, no flapping: the control frame's late answers are no sign of life.
        assert!(
            card.count("ups_lost") <= lost + 1,
            "late {late:?}: lost logged more than once"
        );
        assert_eq!(
            card.count("ups_restored"),
            restored,
            "late {late:?}: restored while the UPS was still late"
        );
    }
    assert!(card.service().link.status.counters().late_answers > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_outages_every_answer_is_the_masters_own() {
    let _turn = crate::turn();
    let card = start_up(setup());
    fill_tables(&card).await;
    let until = Instant::now() + Duration::from_secs(12);
    let a = tokio::spawn(read_table_until(card.addr(), TABLE_A, until));
    let b = tokio::spawn(read_table_until(card.addr(), TABLE_B, until));
    // The UPS comes and goes: fine, just late, silent, very late, fine again ...
    let faults = [
        Fault::None,
        Fault::Late(T + Duration::from_millis(20)),
        Fault::None,
        Fault::Silent,
        Fault::None,
        Fault::Late(T * 24 / 10),
    ];
    for fault in faults.iter().cycle() {
        if Instant::now() + Duration::from_millis(1500) > until {
            break;
        }
        card.sim.set_fault(*fault);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    card.sim.set_fault(Fault::None);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.wrong + b.wrong, 0, "{a:?} {b:?}");
    assert!(a.right > 0 && b.right > 0, "{a:?} {b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_silent_ups_0b_comes_within_the_stated_time() {
    let _turn = crate::turn();
    // A longer timeout here, so that "at once" and "at the timeout" stay far apart on a
    // busy machine.
    let t = Duration::from_millis(1000);
    let card = start_up(
        setup()
            .set("poll_rate_s", 0)
            .set("serial_timeout_ms", t.as_millis()),
    );
    let slack = Duration::from_millis(700);
    // One master: each request is answered within one serial timeout (the first at it).
    let mut c = client(card.addr(), 1).await;
    card.sim.set_fault(Fault::Silent);
    for i in 0..4 {
        let started = Instant::now();
        let r = c.read_holding_registers(0x1060, 2).await.unwrap();
        let took = started.elapsed();
        assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
        assert!(took < t + slack, "request {i}: {took:?}");
        if i == 0 {
            assert!(took >= t, "0x0B before the serial timeout: {took:?}");
        }
    }
    card.wait_state(LinkState::Lost);
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    drop(c);

    // Three masters at once: each within two serial timeouts (the one ahead on the line,
    // then the control frame), and at once once the UPS is known lost.
    card.sim.set_fault(Fault::Silent);
    let mut masters = vec![];
    for _ in 0..3 {
        let addr = card.addr();
        masters.push(tokio::spawn(async move {
            let mut c = client(addr, 1).await;
            let mut took = vec![];
            for _ in 0..3 {
                let started = Instant::now();
                let r = c.read_holding_registers(0x1060, 2).await.unwrap();
                took.push(started.elapsed());
                assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
            }
            took
        }));
    }
    for m in masters {
        let took = m.await.unwrap();
        for each in &took {
            assert!(*each < t * 2 + slack, "{took:?}");
        }
    }
    card.wait_state(LinkState::Lost);
    let mut c = client(card.addr(), 1).await;
    let started = Instant::now();
    let r = c.read_holding_registers(0x1060, 2).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{started:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ups_return_is_noticed_within_about_a_second() {
    let _turn = crate::turn();
    let card = start_up(setup().set("poll_rate_s", 0));
    let mut c = client(card.addr(), 1).await;
    card.sim.set_fault(Fault::Silent);
    while c.read_holding_registers(0x1060, 1).await.unwrap().is_err()
        && card.service().link.status.state() != LinkState::Lost
    {}
    card.wait_state(LinkState::Lost);
    card.sim.set_fault(Fault::None);
    let back = Instant::now();
    card.wait_state(LinkState::Up);
    // A control frame about every second, plus its own exchange; generous for a busy CI.
    assert!(
        back.elapsed() < Duration::from_secs(3),
        "{:?}",
        back.elapsed()
    );
    assert!(c.read_holding_registers(0x1060, 1).await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_asking_a_silent_address_does_not_fail_anyone_else() {
    let _turn = crate::turn();
    let card = start_up(setup().set("routing", "transparent"));
    let until = Instant::now() + Duration::from_secs(4);
    let addr = card.addr();
    // Unit 7 is nobody on the line: every request of this master times out.
    let nobody = tokio::spawn(async move {
        let mut c = client(addr, 7).await;
        let mut failed = 0;
        while Instant::now() < until {
            let r = c.read_holding_registers(0x1060, 1).await.unwrap();
            assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
            failed += 1;
        }
        failed
    });
    let mut c = client(addr, 1).await;
    let mut good = 0;
    while Instant::now() < until {
        let r = c.read_holding_registers(0x1060, 4).await.unwrap();
        assert!(r.is_ok(), "a good read failed: {r:?}");
        good += 1;
    }
    assert!(nobody.await.unwrap() >= 3);
    assert!(good > 3);
    assert_eq!(card.count("ups_lost"), 0);
    assert_eq!(card.service().link.status.state(), LinkState::Up);
}

/// An RTU master as libmodbus is: it sends, waits `timeout` for the first byte of the
/// answer, reads the rest as it comes, and never flushes: whatever comes next is taken for
/// the answer to its latest request.
struct RtuMaster {
    port: std::fs::File,
    timeout: Duration,
    slave: u8,
    /// Drops what came after it gave up before asking again, as a master with a timeout
    /// shorter than the card's must: the card may still answer within its own timeout,
    /// before the next request reaches it.
    drops_stale: bool,
}

/// What a read of holding registers got.
#[derive(Debug, PartialEq)]
enum Got {
    Words(Vec<u16>),
    Exception(u8),
    Nothing,
    Garbage(Vec<u8>),
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

impl RtuMaster {
    fn open(card: &Card, timeout: Duration) -> RtuMaster {
        let path = card.rs485.as_ref().unwrap().user_side();
        let port = serialport::new(path.to_string_lossy(), 9600)
            .open_native()
            .unwrap();
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor comes from into_raw_fd and is owned by the File from here.
        let port = unsafe { std::fs::File::from_raw_fd(port.into_raw_fd()) };
        RtuMaster {
            port,
            timeout,
            slave: 1,
            drops_stale: false,
        }
    }

    fn wait(&self, t: Duration) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.port.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(t.as_millis()).unwrap_or(u16::MAX);
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap() > 0
    }

    fn read_holding(&mut self, addr: u16, count: u16) -> Got {
        let mut frame = vec![self.slave, 0x03];
        frame.extend_from_slice(&addr.to_be_bytes());
        frame.extend_from_slice(&count.to_be_bytes());
        frame.extend_from_slice(&crc16(&frame).to_le_bytes());
        let mut stale = [0u8; 256];
        while self.drops_stale && self.wait(Duration::ZERO) {
            let _ = self.port.read(&mut stale).unwrap();
        }
        self.port.write_all(&frame).unwrap();
        if !self.wait(self.timeout) {
            return Got::Nothing;
        }
        // Slave, function, then a byte count or an exception code: the rest follows.
        let mut got = vec![];
        let mut chunk = [0u8; 256];
        loop {
            let expected = match (got.get(1), got.get(2)) {
                (Some(f), Some(_)) if f & 0x80 != 0 => 5,
                (Some(_), Some(&n)) => 5 + usize::from(n),
                _ => 3,
            };
            if got.len() >= expected {
                got.truncate(expected);
                break;
            }
            // libmodbus's byte timeout is 500 ms.
            if !self.wait(Duration::from_millis(500)) {
                return Got::Garbage(got);
            }
            let n = self.port.read(&mut chunk).unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        let body = got.len() - 2;
        if crc16(&got[..body]).to_le_bytes() != got[body..] || got[0] != self.slave {
            return Got::Garbage(got);
        }
        if got[1] == 0x83 {
            return Got::Exception(got[2]);
        }
        Got::Words(
            got[3..body]
                .chunks(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect(),
        )
    }
}

/// Alternating reads of the two tables until `until`; every answer must be its own.
fn rtu_reads_until(m: &mut RtuMaster, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0;
    while Instant::now() < until {
        let table = if i % 2 == 0 { TABLE_A } else { TABLE_B };
        i += 1;
        match m.read_holding(table, WORDS) {
            Got::Words(w) if w == contents(table) => tally.right += 1,
            Got::Exception(0x0B) => tally.gateway_failed += 1,
            Got::Nothing => {}
            other => {
                eprintln!("read of {table:04X} got {other:02X?}");
                tally.wrong += 1;
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_master_with_the_cards_timeout_never_gets_an_earlier_answer() {
    let _turn = crate::turn();
    let card = start_up(Setup {
        rs485: true,
        ..setup()
    });
    fill_tables(&card).await;
    let mut m = RtuMaster::open(&card, T);
    let until = Instant::now() + Duration::from_secs(14);
    let toggler = {
        let faults = [
            Fault::None,
            Fault::Late(T - Duration::from_millis(30)),
            Fault::Late(T + Duration::from_millis(20)),
            Fault::None,
            Fault::Silent,
            Fault::None,
            Fault::Late(T * 24 / 10),
        ];
        let sim = &card.sim;
        std::thread::scope(|s| {
            let handle = s.spawn(|| rtu_reads_until(&mut m, until));
            for fault in faults.iter().cycle() {
                if Instant::now() + Duration::from_millis(1000) > until {
                    break;
                }
                sim.set_fault(*fault);
                std::thread::sleep(Duration::from_millis(1000));
            }
            sim.set_fault(Fault::None);
            handle.join().unwrap()
        })
    };
    let tally = toggler;
    assert_eq!(tally.wrong, 0, "{tally:?}");
    assert!(tally.right > 0, "{tally:?}");
    // Once the UPS is known lost, the card answers 0x0B at once instead of staying silent.
    // First the late answers still on their way (up to 2.4 T after their request) arrive:
    // one that came after the loss would rightly count as a sign of life.
    card.wait_state(LinkState::Up);
    std::thread::sleep(T * 3);
    card.sim.set_fault(Fault::Silent);
    card.wait_state(LinkState::Lost);
    // (Before, the card stayed silent: this master would get nothing within its timeout.)
    assert_eq!(m.read_holding(TABLE_A, WORDS), Got::Exception(0x0B));
    let status = card.service().rs485.as_ref().unwrap();
    assert!(status.too_late.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rs485_a_newer_request_supersedes_an_older_one() {
    let _turn = crate::turn();
    let card = start_up(
        Setup {
            rs485: true,
            ..Setup::default()
        }
        .set("ups_baud", 19200)
        .set("serial_timeout_ms", 500),
    );
    fill_tables(&card).await;
    // The master gives up after 150 ms; the UPS answers after 250 ms half of the time.
    // Its next request usually reaches the card first (the old answer is then never
    // sent); on a loaded machine it may come after the card answered within its own
    // 500 ms, and the master drops that answer, as it must with the shorter timeout. What
    // it must never get: an old answer after its new request.
    let mut m = RtuMaster::open(&card, Duration::from_millis(150));
    m.drops_stale = true;
    let mut tally = Tally::default();
    let mut logged = false;
    for round in 0..8 {
        let slow = round % 2 == 0;
        card.sim.set_fault(if slow {
            Fault::Late(Duration::from_millis(250))
        } else {
            Fault::None
        });
        let t = rtu_reads_until(&mut m, Instant::now() + Duration::from_millis(1500));
        tally.right += t.right;
        tally.wrong += t.wrong;
        tally.gateway_failed += t.gateway_failed;
        logged |= card
            .service()
            .link
            .frames
            .newest(256)
            .iter()
            .any(|f| f.note == modbus_card::link::framelog::Note::Superseded);
    }
    assert_eq!(tally.wrong, 0, "{tally:?}");
    assert!(tally.right > 0, "{tally:?}");
    let status = card.service().rs485.as_ref().unwrap();
    assert!(status.superseded.load(Relaxed) > 0);
    assert!(logged, "no superseded request in the frame log");
}

/// A connection that trickles one byte of a frame every so often.
fn trickle(addr: SocketAddr) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let header = [0u8, 1, 0, 0, 0, 6, 1, 3, 0x10];
        for b in header.iter().cycle() {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            let mut byte = [0u8];
            match s.read(&mut byte) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => break,
            }
            assert!(started.elapsed() < PATIENCE, "never closed");
        }
        started.elapsed()
    })
}

#[test]
fn trickling_connections_are_closed_within_the_partial_frame_deadline() {
    let _turn = crate::turn();
    let card = start_up(Setup::default().set("modbus_evict_idle_s", 0));
    let trickles: Vec<_> = (0..3).map(|_| trickle(card.addr())).collect();
    wait_for("three sessions", || card.service().sessions.open() == 3);
    for t in trickles {
        let held = t.join().unwrap();
        assert!(held < Duration::from_secs(10), "held the slot {held:?}");
    }
    // A real master gets in and is served.
    wait_for("slots free", || card.service().sessions.open() == 0);
    let mut s = TcpStream::connect(card.addr()).unwrap();
    s.write_all(&[0, 9, 0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1])
        .unwrap();
    let mut answer = [0u8; 11];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..2], &[0, 9]);
    wait_for("three sessions closed for their partial frames", || {
        card.events()
            .iter()
            .filter(|e| e.kind == "tcp_closed" && e.message.contains("not completed"))
            .count()
            >= 3
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_master_takes_the_slot_of_a_session_idle_long_enough() {
    let _turn = crate::turn();
    let card = start_up(Setup::default().set("modbus_evict_idle_s", 2));
    let addr = card.addr();
    // One master polls; two sit idle.
    let mut poller = client(addr, 1).await;
    let mut idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    wait_for("three sessions", || card.service().sessions.open() == 3);
    // Too early: nobody has been idle for 2 s, so the newcomer is turned away.
    let early = TcpStream::connect(addr).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!((&early).read(&mut [0u8; 1]).unwrap_or(0), 0);
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert!(poller
            .read_holding_registers(0x1060, 1)
            .await
            .unwrap()
            .is_ok());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Now one idle session gives way; the newcomer is served, the poller undisturbed.
    let mut newcomer = client(addr, 1).await;
    assert!(newcomer
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    assert!(poller
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    let closed: Vec<_> = idle
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            matches!(s.read(&mut [0u8; 1]), Ok(0))
        })
        .collect();
    assert_eq!(closed.iter().filter(|c| **c).count(), 1, "{closed:?}");
    let evicted = || {
        card.events()
            .iter()
            .filter(|e| e.kind == "tcp_closed" && e.message.contains("slot given"))
            .count()
    };
    wait_for("the eviction in the log", || evicted() >= 1);
    assert_eq!(evicted(), 1);
}

#[test]
fn a_late_answer_during_baud_detection_is_not_taken_for_the_ups() {
    let _turn = crate::turn();
    // The UPS talks at 19200 but answers just after the timeout: the answer to the probe at
    // 19200 arrives while the card probes at 9600, and must not make it settle on 9600.
    let card = common::start(Setup {
        sim_fault: Fault::Late(Duration::from_millis(420)),
        ..Setup::default().set("serial_timeout_ms", 400)
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(card.service().link.status.state(), LinkState::Detecting);
    assert!(card.service().link.status.counters().late_answers > 0);
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    assert_eq!(card.service().link.status.baud(), 19200);
}
