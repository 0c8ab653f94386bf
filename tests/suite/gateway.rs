//! The gateway as a Modbus TCP master sees it: the real service over pseudo-terminals with
//! the simulated UPS, driven by an independent client (the tokio-modbus crate). The tests
//! of answers, exceptions, malformed frames, late answers and fairness run on both ports
//! ([`on_both_ports!`] at the end): plain Modbus TCP, and Modbus/TCP Security through a
//! TLS relay ([`common::ports`]).

use crate::common;

use common::ports::Port;
use common::{start, start_up, wait_for, Setup, PATIENCE};
use modbus_card::link::LinkState;
use modbus_card::sim::Fault;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_modbus::client::{tcp, Context, Reader, Writer};
use tokio_modbus::{ExceptionCode, Slave};

async fn client(addr: SocketAddr, unit: u8) -> Context {
    timeout(PATIENCE, tcp::connect_slave(addr, Slave(unit)))
        .await
        .unwrap()
        .unwrap()
}

async fn reads_and_writes_of_each_common_function(port: Port) {
    let card = port.start_up(Setup::default());
    let mut c = client(card.addr(), 1).await;

    // Socomec tables: identification read whole, measurements in part.
    let id = c.read_holding_registers(0x1000, 12).await.unwrap().unwrap();
    let expected: Vec<u16> = (0x1000..0x100C)
        .map(|a| card.sim.register(a).unwrap())
        .collect();
    assert_eq!(id, expected);
    let load = c.read_input_registers(0x1060, 4).await.unwrap().unwrap();
    assert_eq!(load.len(), 4);
    assert_eq!(load[0], card.sim.register(0x1060).unwrap());

    // Scratch bank: every common function.
    c.write_single_register(0x0010, 0xBEEF)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(card.sim.register(0x0010), Some(0xBEEF));
    c.write_multiple_registers(0x0020, &[1, 2, 3, 0xFFFF])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.read_holding_registers(0x0020, 4).await.unwrap().unwrap(),
        vec![1, 2, 3, 0xFFFF]
    );
    c.masked_write_register(0x0020, 0x00F2, 0x0025)
        .await
        .unwrap()
        .unwrap();
    // (1 AND 0x00F2) OR (0x0025 AND NOT 0x00F2) = 0x0005
    assert_eq!(
        c.read_holding_registers(0x0020, 1).await.unwrap().unwrap(),
        vec![0x0005]
    );
    let rw = c
        .read_write_multiple_registers(0x0021, 2, 0x0030, &[7, 8])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rw, vec![2, 3]);
    assert_eq!(
        c.read_holding_registers(0x0030, 2).await.unwrap().unwrap(),
        vec![7, 8]
    );

    c.write_single_coil(5, true).await.unwrap().unwrap();
    c.write_multiple_coils(8, &[true, false, true, true])
        .await
        .unwrap()
        .unwrap();
    let coils = c.read_coils(4, 8).await.unwrap().unwrap();
    assert_eq!(
        coils,
        vec![false, true, false, false, true, false, true, true]
    );
    let inputs = c.read_discrete_inputs(0, 16).await.unwrap().unwrap();
    assert_eq!(inputs.len(), 16);

    // The UPS command register, function 06.
    c.write_single_register(0x05B0, 0x000A)
        .await
        .unwrap()
        .unwrap();
}

async fn genuine_exceptions_pass_through_without_waiting_for_the_timeout(port: Port) {
    let card = port.start_up(Setup::default().set("serial_timeout_ms", 3000));
    let mut c = client(card.addr(), 1).await;
    let before = card.service().link.status.counters();
    let started = Instant::now();
    // The status table must be read whole: the UPS answers exception 02.
    let r = c.read_holding_registers(0x1020, 3).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    let r = c.read_holding_registers(0x2000, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    // Two exceptions well inside one serial timeout: neither waited for it.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let counters = card.service().link.status.counters();
    assert_eq!(counters.exceptions, before.exceptions + 2);
    assert_eq!(counters.timeouts, before.timeouts);
}

async fn a_silent_ups_gives_0b_at_the_serial_timeout_then_at_once_once_lost(port: Port) {
    let card = port.start_up(Setup::default().set("serial_timeout_ms", 400));
    let mut c = client(card.addr(), 1).await;
    card.sim.set_fault(Fault::Silent);
    let mut took = vec![];
    for _ in 0..5 {
        let started = Instant::now();
        let r = c.read_holding_registers(0x1060, 2).await.unwrap();
        took.push(started.elapsed());
        assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    }
    // The first waited for the UPS for the serial timeout; the second waited while the
    // control frame checked the UPS (at most one more timeout); the UPS is then lost and
    // the rest are answered without the line.
    assert!(took[0] >= Duration::from_millis(400), "{took:?}");
    assert!(took[0] < Duration::from_millis(400 + 1000), "{took:?}");
    assert!(took[1] < Duration::from_millis(400 + 1000), "{took:?}");
    for t in &took[2..] {
        assert!(*t < Duration::from_millis(200), "{took:?}");
    }
    card.wait_event("ups_lost");
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    assert!(c.read_holding_registers(0x1060, 2).await.unwrap().is_ok());
}

async fn wrong_answers_give_exception_0b(port: Port) {
    let card = port.start_up(Setup::default().set("serial_timeout_ms", 400));
    let mut c = client(card.addr(), 1).await;
    for fault in [
        Fault::BadCrc,
        Fault::WrongSlave,
        Fault::WrongFunction,
        Fault::Truncated,
        Fault::Noise,
    ] {
        card.sim.set_fault(fault);
        let r = c.read_holding_registers(0x1060, 2).await.unwrap();
        assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice), "{fault:?}");
        // The control frame checks the UPS at once, meets the same fault, and the UPS
        // is lost until it answers properly again.
        card.wait_state(LinkState::Lost);
        card.sim.set_fault(Fault::None);
        card.wait_state(LinkState::Up);
        // Nothing of the wrong answers lingers into the next request.
        let ok = c.read_holding_registers(0x1060, 2).await.unwrap();
        assert!(ok.is_ok(), "after {fault:?}: {ok:?}");
    }
    assert!(card.service().link.status.counters().bad_answers >= 3);
}

async fn a_late_answer_never_leaks_into_the_next_request(port: Port) {
    let card = port.start_up(
        Setup::default()
            .set("serial_timeout_ms", 400)
            .set("poll_rate_s", 0),
    );
    let mut c = client(card.addr(), 1).await;
    c.write_multiple_registers(0x0040, &[0x1111, 0x2222])
        .await
        .unwrap()
        .unwrap();
    for round in 0..3 {
        // The answer to the first read comes 600 ms after it: after the card gave up.
        card.sim.set_fault(Fault::Late(Duration::from_millis(600)));
        let r = c.read_holding_registers(0x0040, 1).await.unwrap();
        assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice), "round {round}");
        card.sim.set_fault(Fault::None);
        // Same shape of request, other register: its answer is its own, or 0x0B while the
        // card makes sure of the UPS again; never the late one.
        let mut own = false;
        while !own {
            match c.read_holding_registers(0x0041, 1).await.unwrap() {
                Ok(words) => {
                    assert_eq!(words, vec![0x2222], "round {round}: a late answer");
                    own = true;
                }
                Err(e) => assert_eq!(e, ExceptionCode::GatewayTargetDevice),
            }
        }
    }
    assert!(card.service().link.status.counters().late_answers >= 1);
}

#[test]
fn baud_rate_is_detected_at_each_rate() {
    for baud in [57600, 19200, 9600] {
        let card = start(Setup {
            sim_baud: baud,
            ..Setup::default()
        });
        card.wait_state(LinkState::Up);
        assert_eq!(card.service().link.status.baud(), baud);
        // Probes at the other rates went unanswered: the simulator checked the speed.
        if baud != 57600 {
            assert!(card.sim.stats().wrong_speed >= 1);
        }
        let event = card.wait_event("ups_detected");
        assert!(
            event.message.contains(&baud.to_string()),
            "{}",
            event.message
        );
    }
}

/// A UPS not found yet (its COM-slot port not enabled, the commonest installation
/// mistake) is a UPS that does not answer: 0x0B at once, and the log says what to check,
/// once per start.
async fn requests_get_0b_at_once_while_the_ups_is_not_found(port: Port) {
    let card = port.start(Setup {
        sim_fault: Fault::Silent,
        ..Setup::default().set("serial_timeout_ms", 2000)
    });
    let mut c = client(card.addr(), 1).await;
    // Not found yet: exception 0x0B, at once (well inside one serial timeout).
    for _ in 0..3 {
        let started = Instant::now();
        let r = c.read_holding_registers(0x1060, 1).await.unwrap();
        assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(card.service().link.status.state(), LinkState::Detecting);
    // After a whole round (3 rates × 2 s), and only once however long it goes on.
    let event = card.wait_event("ups_not_found");
    assert_eq!(
        event.message,
        "UPS not found: check that its COM-slot port is enabled (57600/19200/9600, slave 1)"
    );
    assert!(card.service().link.status.not_found());
    // A unit id the card does not route is still 0x0A.
    let mut other = client(card.addr(), 7).await;
    let r = other.read_holding_registers(0x1060, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayPathUnavailable));
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    assert!(c.read_holding_registers(0x1060, 1).await.unwrap().is_ok());
    assert!(!card.service().link.status.not_found());
    // The event log is written by its own thread: wait for the event, then count.
    card.wait_event("ups_detected");
    assert_eq!(card.count("ups_not_found"), 1);
}

async fn three_sessions_work_while_a_fourth_is_turned_away(port: Port) {
    let card = port.start_up(Setup::default());
    let mut clients = vec![];
    for _ in 0..3 {
        clients.push(client(card.addr(), 1).await);
    }
    wait_for("3 sessions", || card.sessions().open() == 3);
    for c in clients.iter_mut() {
        assert!(c.read_holding_registers(0x1060, 4).await.unwrap().is_ok());
    }
    // The fourth is accepted and closed at once.
    let mut fourth = TcpStream::connect(card.addr()).unwrap();
    fourth.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 16];
    let n = fourth.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the fourth connection was not closed");
    card.wait_port_event("tcp_refused");
    // The three never noticed.
    for c in clients.iter_mut() {
        assert!(c.read_holding_registers(0x1060, 4).await.unwrap().is_ok());
    }
    // A closed session frees its slot.
    let first = clients.remove(0);
    drop(first);
    wait_for("slot freed", || card.sessions().open() == 2);
    let mut again = client(card.addr(), 1).await;
    assert!(again
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    let closed = card.wait_port_event("tcp_closed");
    assert!(
        closed.message.contains("closed by client"),
        "{}",
        closed.message
    );
}

/// Sends raw bytes; returns what came back before the connection closed or went quiet.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], quiet: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut got = vec![];
    let mut buf = [0u8; 512];
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
        if started.elapsed() > PATIENCE {
            return (got, false);
        }
    }
}

async fn malformed_headers_close_only_their_own_session(port: Port) {
    let card = port.start_up(Setup::default());
    let mut good = client(card.addr(), 1).await;
    assert!(good
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());

    // Protocol id 1: the session is closed at once, nothing answered.
    let (got, closed) = raw_exchange(
        card.addr(),
        &[0, 1, 0, 1, 0, 6, 1, 3, 0x10, 0x60, 0, 1],
        PATIENCE,
    );
    assert!(got.is_empty() && closed);
    assert!(good
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    // Length field 0 and 300.
    for header in [[0u8, 1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0x01, 0x2C, 1]] {
        let (got, closed) = raw_exchange(card.addr(), &header, PATIENCE);
        assert!(got.is_empty() && closed, "{header:?}");
        assert!(good
            .read_holding_registers(0x1060, 1)
            .await
            .unwrap()
            .is_ok());
    }
    // Random bytes: closed or ignored, never a crash.
    let mut seed = 0x1234_5678u32;
    for _ in 0..20 {
        let noise: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = raw_exchange(card.addr(), &noise, Duration::from_millis(200));
        assert!(good
            .read_holding_registers(0x1060, 1)
            .await
            .unwrap()
            .is_ok());
    }
    // Events reach the log through the store thread.
    card.wait_port_events("tcp_closed", 3);
}

async fn a_partial_frame_holds_up_nobody_else(port: Port) {
    let card = port.start_up(Setup::default());
    // Half a header, then nothing.
    let mut stalled = TcpStream::connect(card.addr()).unwrap();
    stalled.write_all(&[0, 9, 0, 0]).unwrap();
    let mut c = client(card.addr(), 1).await;
    for _ in 0..20 {
        let r = timeout(Duration::from_secs(5), c.read_holding_registers(0x1060, 2)).await;
        assert!(r.unwrap().unwrap().is_ok());
    }
    // The stalled session completes its frame late and gets its answer.
    stalled.write_all(&[0, 6, 1, 3, 0x10, 0x60, 0, 1]).unwrap();
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = [0u8; 11];
    stalled.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..2], &[0, 9]);
    assert_eq!(answer[7], 3);
}

fn pipelined_requests_are_answered_in_order(port: Port) {
    let card = port.start_up(Setup::default());
    let mut s = TcpStream::connect(card.addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    // Distinct values in four scratch registers, so a swapped answer shows.
    let values = [0x1111u16, 0x2222, 0x3333, 0x4444];
    let mut burst = vec![];
    for (i, v) in values.iter().enumerate() {
        burst.extend_from_slice(&[0, 100 + i as u8, 0, 0, 0, 6, 1, 6, 0, 0x60 + i as u8]);
        burst.extend_from_slice(&v.to_be_bytes());
    }
    // Then reads of them in reverse order, with transaction ids 1..=4, all in one write.
    for tid in 1..=4u8 {
        let register = 0x60 + 4 - tid;
        burst.extend_from_slice(&[0, tid, 0, 0, 0, 6, 1, 3, 0, register, 0, 1]);
    }
    s.write_all(&burst).unwrap();
    let mut echo = [0u8; 12];
    for i in 0..4u8 {
        s.read_exact(&mut echo).unwrap();
        assert_eq!(echo[1], 100 + i, "write answers out of order");
    }
    for tid in 1..=4u8 {
        let mut answer = [0u8; 11];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(&answer[..9], &[0, tid, 0, 0, 0, 5, 1, 3, 2]);
        let value = u16::from_be_bytes([answer[9], answer[10]]);
        assert_eq!(
            value,
            values[usize::from(4 - tid)],
            "answer {tid} out of order"
        );
    }
}

async fn other_units_get_0a_without_touching_the_serial_line(port: Port) {
    let card = port.start_up(Setup::default().set("poll_rate_s", 0));
    let before = card.sim.stats().requests;
    let mut c = client(card.addr(), 7).await;
    let r = c.read_holding_registers(0x1060, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayPathUnavailable));
    assert_eq!(card.sim.stats().requests, before);
    // Units 0 and 255 reach the UPS.
    for unit in [0, 255] {
        let mut c = client(card.addr(), unit).await;
        assert!(
            c.read_holding_registers(0x1060, 1).await.unwrap().is_ok(),
            "unit {unit}"
        );
    }
    assert!(card.sim.stats().requests >= before + 2);
}

async fn transparent_routing_forwards_every_unit(port: Port) {
    let card = port.start_up(
        Setup::default()
            .set("routing", "transparent")
            .set("serial_timeout_ms", 400)
            .set("poll_rate_s", 0),
    );
    // Unit 7 goes on the wire as slave 7; the simulated UPS is slave 1, so nobody answers.
    let before = card.sim.stats();
    let mut c = client(card.addr(), 7).await;
    let r = c.read_holding_registers(0x1060, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    assert_eq!(card.sim.stats().other_slave, before.other_slave + 1);
    let mut c = client(card.addr(), 1).await;
    assert!(c.read_holding_registers(0x1060, 1).await.unwrap().is_ok());
}

fn idle_sessions_are_closed_after_the_modbus_tcp_timeout(port: Port) {
    let card = port.start_up(Setup::default().set("modbus_timeout_s", 1));
    let mut s = TcpStream::connect(card.addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() >= Duration::from_millis(900));
    let closed = card.wait_port_event("tcp_closed");
    assert!(
        closed.message.contains("idle timeout"),
        "{}",
        closed.message
    );
}

#[test]
fn communication_lost_and_restored_are_logged() {
    let card = start_up(
        Setup::default()
            .set("poll_rate_s", 1)
            .set("serial_timeout_ms", 400),
    );
    card.sim.set_fault(Fault::Silent);
    card.wait_event("ups_lost");
    card.wait_state(LinkState::Lost);
    card.sim.set_fault(Fault::None);
    card.wait_event("ups_restored");
    card.wait_state(LinkState::Up);
    // Logged once each, newest first.
    let events = card.events();
    assert_eq!(events.iter().filter(|e| e.kind == "ups_lost").count(), 1);
    let lost = events.iter().position(|e| e.kind == "ups_lost").unwrap();
    let restored = events
        .iter()
        .position(|e| e.kind == "ups_restored")
        .unwrap();
    assert!(restored < lost);
    assert_eq!(
        events
            .iter()
            .find(|e| e.kind == "ups_lost")
            .unwrap()
            .message,
        "UPS communication lost"
    );
}

#[test]
fn boot_and_session_events_are_in_the_database() {
    let mut card = start_up(Setup::default());
    {
        let _s = TcpStream::connect(card.addr()).unwrap();
        card.wait_event("tcp_opened");
    }
    card.wait_event("tcp_closed");
    let opened = card.wait_event("tcp_opened");
    assert!(
        opened.message.starts_with("TCP session 1 opened"),
        "{}",
        opened.message
    );
    card.stop();
    let events = card.events();
    assert_eq!(events[0].kind, "stopped");
    assert!(events
        .iter()
        .any(|e| e.kind == "cold_boot" || e.kind == "warm_boot"));
}

fn a_flooding_session_cannot_starve_another(port: Port) {
    // Paced at 19200 baud, a one-word read takes about 11 ms on the wire.
    let card = port.start_up(Setup::default().set("ups_baud", 19200));
    card.sim.set_paced(true);
    // Both sessions open first (on port 802, the handshake is not part of the wait).
    let mut other = TcpStream::connect(card.addr()).unwrap();
    let mut flood = TcpStream::connect(card.addr()).unwrap();
    wait_for("two sessions", || card.sessions().open() == 2);
    let mut burst = vec![];
    for tid in 0..100u16 {
        burst.extend_from_slice(&tid.to_be_bytes());
        burst.extend_from_slice(&[0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1]);
    }
    flood.write_all(&burst).unwrap();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let answered = answered.clone();
        let mut flood = flood.try_clone().unwrap();
        std::thread::spawn(move || {
            flood.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut answer = [0u8; 11];
            for _ in 0..100 {
                flood.read_exact(&mut answer).unwrap();
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    wait_for("the flood to start", || {
        answered.load(std::sync::atomic::Ordering::SeqCst) >= 3
    });
    other
        .write_all(&[0, 7, 0, 0, 0, 6, 1, 3, 0x10, 0x64, 0, 1])
        .unwrap();
    other.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = [0u8; 11];
    other.read_exact(&mut answer).unwrap();
    let flood_done = answered.load(std::sync::atomic::Ordering::SeqCst);
    // Served after at most a request or two of the flood, not after all of it. Through the
    // TLS relay, each answer of the flood and the other request cross two more threads of
    // this test, which a loaded machine may hold up for a few of the flood's 11 ms turns:
    // more slack there, still far from the 100 an unfair queue would make it wait.
    let most = match port {
        Port::Plain => 5,
        Port::Tls => 20,
    };
    assert!(
        flood_done <= most,
        "the other session waited for {flood_done} flood answers"
    );
    assert_eq!(&answer[..2], &[0, 7]);
    reader.join().unwrap();
}

async fn stale_bytes_on_an_idle_line_are_drained_before_the_next_request(port: Port) {
    let card = port.start_up(
        Setup::default()
            .set("serial_timeout_ms", 400)
            .set("poll_rate_s", 0),
    );
    let mut c = client(card.addr(), 1).await;
    c.write_multiple_registers(0x0050, &[0xAAAA, 0x5555])
        .await
        .unwrap()
        .unwrap();
    // The answer comes 1.1 s after the request: after the timeout (0.4 s) and after the
    // listen for late answers (another 0.4 s), onto an idle line.
    let answered = card.sim.stats().answered;
    card.sim.set_fault(Fault::Late(Duration::from_millis(1100)));
    let r = c.read_holding_registers(0x0050, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    card.sim.set_fault(Fault::None);
    wait_for("the late answer to be sent", || {
        card.sim.stats().answered > answered
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = card.service().link.status.counters().stale_bytes;
    // The control frame after the failure went unanswered in time: lost, until the next
    // one finds the UPS again (draining what waits on the line first).
    card.wait_state(LinkState::Up);
    let r = c.read_holding_registers(0x0051, 1).await.unwrap().unwrap();
    assert_eq!(r, vec![0x5555], "the stale answer was delivered");
    assert!(card.service().link.status.counters().stale_bytes >= before + 7);
}

#[test]
fn a_connection_flood_cannot_fill_the_event_log() {
    let card = start_up(Setup::default());
    for _ in 0..100 {
        drop(TcpStream::connect(card.addr()).unwrap());
    }
    wait_for("the flood's sessions to end", || {
        card.service().sessions.open() == 0
    });
    // Logging resumes once the budget refills (one event per 2 s), with a count of
    // what was skipped.
    std::thread::sleep(Duration::from_millis(2200));
    drop(TcpStream::connect(card.addr()).unwrap());
    let skipped = card.wait_event("tcp_events_skipped");
    assert!(
        skipped.message.contains("not logged"),
        "{}",
        skipped.message
    );
    let logged = card
        .events()
        .iter()
        .filter(|e| e.kind == "tcp_opened" || e.kind == "tcp_closed")
        .count();
    assert!(
        logged <= 32,
        "{logged} session events logged for 100 connections"
    );
}

async fn transparent_broadcast_reads_are_refused_at_once(port: Port) {
    let card = port.start_up(
        Setup::default()
            .set("routing", "transparent")
            .set("poll_rate_s", 0),
    );
    let before = card.sim.stats();
    let mut c = client(card.addr(), 0).await;
    let r = c.read_holding_registers(0x1060, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayPathUnavailable));
    assert_eq!(card.sim.stats().broadcasts, before.broadcasts);
    // A broadcast write goes out, and acts.
    let mut raw = TcpStream::connect(card.addr()).unwrap();
    raw.write_all(&[0, 1, 0, 0, 0, 6, 0, 6, 0, 0x09, 0x43, 0x21])
        .unwrap();
    wait_for("broadcast write", || {
        card.sim.register(0x0009) == Some(0x4321)
    });
}

async fn late_answers_while_the_ups_is_lost_are_no_sign_of_life(port: Port) {
    let card = port.start_up(
        Setup::default()
            .set("serial_timeout_ms", 400)
            .set("poll_rate_s", 0),
    );
    let mut c = client(card.addr(), 1).await;
    c.write_multiple_registers(0x0070, &[0x0A0A, 0x0B0B, 0x0C0C])
        .await
        .unwrap()
        .unwrap();
    // A: no answer at all; the control frame after it neither: the UPS is lost.
    card.sim.set_fault(Fault::Silent);
    let r = c.read_holding_registers(0x0070, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    card.wait_state(LinkState::Lost);
    // The UPS answers again, but 600 ms late: the control frames' late answers come while
    // the next one waits, and are no sign of life.
    card.sim.set_fault(Fault::Late(Duration::from_millis(600)));
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(card.service().link.status.state(), LinkState::Lost);
    let r = c.read_holding_registers(0x0071, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    card.sim.set_fault(Fault::None);
    // C, once the UPS is back: its answer is its own.
    card.wait_state(LinkState::Up);
    let r = c.read_holding_registers(0x0072, 1).await.unwrap().unwrap();
    assert_eq!(r, vec![0x0C0C], "a late answer was delivered to C");
    // The event reaches the store a moment after the state.
    card.wait_event("ups_restored");
    assert_eq!(
        card.events()
            .iter()
            .filter(|e| e.kind == "ups_restored")
            .count(),
        1,
        "late answers counted as signs of life"
    );
}

/// The card's end of a session has TCP keepalive on, probing after 30 s of silence every
/// 10 s, 3 times: a master that vanished (power cut, cable pulled) frees its slot in
/// about a minute even with the idle timeout off. The service runs in this process, so
/// its socket is found among our own descriptors by its peer address.
#[test]
fn sessions_have_keepalive_so_a_vanished_master_frees_its_slot() {
    use nix::sys::socket::{getpeername, getsockopt, sockopt, SockaddrIn};
    use std::os::fd::BorrowedFd;
    let card = start_up(Setup::default().set("modbus_timeout_s", 0));
    let client = TcpStream::connect(card.addr()).unwrap();
    wait_for("session", || card.service().sessions.open() == 1);
    let ours = client.local_addr().unwrap();
    let mut found = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is open for this loop (a closed one just fails the calls).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(peer) = getpeername::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd)) else {
            continue;
        };
        if peer.port() != ours.port() {
            continue;
        }
        found += 1;
        assert!(getsockopt(&fd, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&fd, sockopt::TcpKeepIdle).unwrap(), 30);
        assert_eq!(getsockopt(&fd, sockopt::TcpKeepInterval).unwrap(), 10);
        assert_eq!(getsockopt(&fd, sockopt::TcpKeepCount).unwrap(), 3);
        assert!(getsockopt(&fd, sockopt::TcpNoDelay).unwrap());
    }
    // The session and its slot in the table each hold a descriptor of the one socket.
    assert!(
        found >= 1,
        "the card's socket for this client was not found"
    );
}

/// Read Device Identification's answer has no length field: the card ends it at the
/// 3.5-character silence, checks its CRC and relays it whole.
#[test]
fn answers_of_unknown_length_end_at_the_silence() {
    let card = start_up(Setup::default());
    let mut s = TcpStream::connect(card.addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    // read device identification, basic stream from object 0
    s.write_all(&[0, 42, 0, 0, 0, 5, 1, 0x2B, 0x0E, 0x01, 0x00])
        .unwrap();
    let mut header = [0u8; 7];
    s.read_exact(&mut header).unwrap();
    assert_eq!(&header[..4], &[0, 42, 0, 0]);
    let len = usize::from(u16::from_be_bytes([header[4], header[5]])) - 1;
    let mut pdu = vec![0u8; len];
    s.read_exact(&mut pdu).unwrap();
    assert_eq!(&pdu[..3], &[0x2B, 0x0E, 0x01], "{pdu:02X?}");
    assert_eq!(pdu[6], 3, "three basic objects");
    let mut objects = vec![];
    let mut at = 7;
    while at < pdu.len() {
        let n = usize::from(pdu[at + 1]);
        objects.push(String::from_utf8_lossy(&pdu[at + 2..at + 2 + n]).into_owned());
        at += 2 + n;
    }
    assert_eq!(objects, ["SOCOMEC", "UPS 10 kVA", "V3.12"]);
}

/// The UPS port is a link (as /dev/serial/by-id/… are); its device goes away and comes
/// back as another one. The card opens the path again and carries on, no restart.
#[tokio::test]
async fn a_ups_port_that_goes_away_and_comes_back_is_used_again() {
    use modbus_card::pty::Pty;
    use modbus_card::service::{Options, Service};
    use modbus_card::sim::{Sim, SimConfig};
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ups");
    let first = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    std::os::unix::fs::symlink(first.path().unwrap(), &link).unwrap();
    let service = Service::start(Options {
        data: dir.path().join("data"),
        ups: link.clone(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: vec![("poll_rate_s".into(), "1".into())],
        ..Options::default()
    })
    .unwrap();
    wait_for("UPS found", || service.link.status.state() == LinkState::Up);
    let mut c = client(service.modbus_addr(), 1).await;
    assert!(c.read_holding_registers(0x1060, 1).await.unwrap().is_ok());

    // Unplugged: answers are 0x0B, and the UPS is lost.
    drop(first);
    let r = c.read_holding_registers(0x1060, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    wait_for("UPS lost", || {
        service.link.status.state() == LinkState::Lost
    });

    // Plugged in again, as another device behind the same link.
    let second = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(second.path().unwrap(), &link).unwrap();
    wait_for("UPS restored", || {
        service.link.status.state() == LinkState::Up
    });
    assert!(c.read_holding_registers(0x1060, 1).await.unwrap().is_ok());
    assert!(second.stats().requests >= 1);
    service.stop();
}

fn function_codes_that_are_never_requests_do_not_reach_the_line(port: Port) {
    let card = port.start_up(Setup::default().set("poll_rate_s", 0));
    let before = card.sim.stats().requests;
    let mut s = TcpStream::connect(card.addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    for (tid, function) in [(1u8, 0x00u8), (2, 0x83), (3, 0xFF)] {
        s.write_all(&[0, tid, 0, 0, 0, 6, 1, function, 0x10, 0x60, 0, 1])
            .unwrap();
        let mut answer = [0u8; 9];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(answer, [0, tid, 0, 0, 0, 3, 1, function | 0x80, 0x01]);
    }
    assert_eq!(card.sim.stats().requests, before);
}

/// Runs each test named on both Modbus ports: plain Modbus TCP (`plain`) and Modbus/TCP
/// Security (`tls`, a master with a certificate of role operate), whose sessions must
/// behave alike.
macro_rules! on_both_ports {
    (async $($name:ident),* $(,)?) => {$(
        mod $name {
            use super::Port;
            #[tokio::test]
            async fn plain() {
                super::$name(Port::Plain).await
            }
            #[tokio::test]
            async fn tls() {
                super::$name(Port::Tls).await
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::Port;
            #[test]
            fn plain() {
                super::$name(Port::Plain)
            }
            #[test]
            fn tls() {
                super::$name(Port::Tls)
            }
        }
    )*};
}

on_both_ports!(
    async reads_and_writes_of_each_common_function,
    genuine_exceptions_pass_through_without_waiting_for_the_timeout,
    a_silent_ups_gives_0b_at_the_serial_timeout_then_at_once_once_lost,
    wrong_answers_give_exception_0b,
    a_late_answer_never_leaks_into_the_next_request,
    requests_get_0b_at_once_while_the_ups_is_not_found,
    three_sessions_work_while_a_fourth_is_turned_away,
    malformed_headers_close_only_their_own_session,
    a_partial_frame_holds_up_nobody_else,
    other_units_get_0a_without_touching_the_serial_line,
    transparent_routing_forwards_every_unit,
    stale_bytes_on_an_idle_line_are_drained_before_the_next_request,
    transparent_broadcast_reads_are_refused_at_once,
    late_answers_while_the_ups_is_lost_are_no_sign_of_life,
);
on_both_ports!(
    pipelined_requests_are_answered_in_order,
    idle_sessions_are_closed_after_the_modbus_tcp_timeout,
    a_flooding_session_cannot_starve_another,
    function_codes_that_are_never_requests_do_not_reach_the_line,
);
