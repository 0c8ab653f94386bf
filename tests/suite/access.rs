//! Access control on Modbus TCP, as masters from two addresses see it: loopback gives this
//! machine every 127.x.y.z, so a client bound to 127.0.0.2 is "another master".

use crate::common;

use common::{start_up, wait_for, Card, Setup, PATIENCE};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::timeout;
use tokio_modbus::client::{tcp, Context, Reader, Writer};
use tokio_modbus::{ExceptionCode, Slave};

/// A master connecting from `from` (a loopback address).
async fn master_from(card: &Card, from: &str) -> std::io::Result<Context> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    let stream = timeout(PATIENCE, socket.connect(card.addr())).await??;
    Ok(tcp::attach_slave(stream, Slave(1)))
}

fn change(card: &Card, key: &str, value: &str) {
    let who = crate::common::admin_who();
    card.service()
        .live
        .change(&[(key, value)], &who, false)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_masters_get_in() {
    let card = start_up(Setup::default().set("modbus_allow", "127.0.0.1"));
    let mut inside = master_from(&card, "127.0.0.1").await.unwrap();
    assert!(inside
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    // The other master is accepted and closed at once: its request never gets an answer.
    let mut outside = master_from(&card, "127.0.0.2").await.unwrap();
    let r = timeout(PATIENCE, outside.read_holding_registers(0x1060, 1))
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    let tcp = &card.service().tcp;
    // Counted just after the connection is closed.
    wait_for("the refusal counted", || {
        tcp.refused.connections.load(Relaxed) >= 1
    });
    let event = card.wait_event("tcp_not_allowed");
    assert!(event.message.contains("127.0.0.2"), "{}", event.message);
    // It never took a session slot.
    assert_eq!(card.service().sessions.open(), 1);
    // Opened to its network, live: it gets in.
    change(&card, "modbus_allow", "127.0.0.1, 127.0.0.0/30");
    let mut now_in = master_from(&card, "127.0.0.2").await.unwrap();
    assert!(now_in
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_protection_refuses_writes_without_touching_the_link() {
    // The card's own polling off, so that every request the link counts is a master's.
    let card = start_up(
        Setup::default()
            .set("modbus_write", "nobody")
            .set("poll_rate_s", 0),
    );
    let mut m = master_from(&card, "127.0.0.1").await.unwrap();
    let before = card.service().link.status.counters().requests;
    let r = m.write_single_register(0x0020, 77).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalFunction));
    let r = m.write_multiple_registers(0x0020, &[1, 2]).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalFunction));
    assert_eq!(card.service().link.status.counters().requests, before);
    assert_eq!(card.sim.register(0x0020), Some(0));
    // Reads work.
    assert!(m.read_holding_registers(0x1060, 4).await.unwrap().is_ok());
    assert_eq!(card.service().tcp.refused.writes.load(Relaxed), 2);
    wait_for("the refusals in the log", || {
        card.events()
            .iter()
            .filter(|e| e.kind == "write_refused")
            .count()
            == 2
    });

    // Only the listed network may write; the change reaches the open session at once.
    let r = card.service().live.change(
        &[("modbus_write", "listed"), ("modbus_writers", "127.0.0.2")],
        &crate::common::admin_who(),
        false,
    );
    assert!(r.is_ok(), "{r:?}");
    let mut writer = master_from(&card, "127.0.0.2").await.unwrap();
    writer
        .write_single_register(0x0020, 77)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(card.sim.register(0x0020), Some(77));
    let r = m.write_single_register(0x0020, 78).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalFunction));
    assert_eq!(card.sim.register(0x0020), Some(77));
}

#[test]
fn a_write_list_without_networks_is_refused() {
    let card = start_up(Setup::default());
    let who = crate::common::admin_who();
    let r = card
        .service()
        .live
        .change(&[("modbus_write", "listed")], &who, false);
    assert!(format!("{:?}", r.unwrap_err()).contains("none is listed"));
}

/// One raw Modbus TCP exchange: the answer's PDU.
fn exchange(stream: &mut std::net::TcpStream, tid: u16, pdu: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut frame = tid.to_be_bytes().to_vec();
    frame.extend([0, 0]);
    frame.extend(((pdu.len() + 1) as u16).to_be_bytes());
    frame.push(1);
    frame.extend(pdu);
    stream.write_all(&frame).unwrap();
    let mut head = [0u8; 7];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[..2], tid.to_be_bytes(), "answer to another request");
    let len = usize::from(u16::from_be_bytes([head[4], head[5]])) - 1;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).unwrap();
    answer
}

/// With writes forbidden, only the function codes that read reach the UPS: an allow-list,
/// so user-defined codes and unknown MEI types are refused like the known writes.
#[test]
fn a_master_that_may_not_write_reaches_the_ups_only_with_reads() {
    let card = start_up(
        Setup::default()
            .set("modbus_write", "nobody")
            .set("poll_rate_s", 0),
    );
    let mut stream = std::net::TcpStream::connect(card.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let reads: Vec<Vec<u8>> = vec![
        vec![0x01, 0x00, 0x00, 0x00, 0x08],
        vec![0x02, 0x00, 0x00, 0x00, 0x08],
        vec![0x03, 0x10, 0x60, 0x00, 0x01],
        vec![0x04, 0x10, 0x60, 0x00, 0x01],
        vec![0x07],
        vec![0x08, 0x00, 0x00, 0x12, 0x34],
        vec![0x0B],
        vec![0x0C],
        vec![0x11],
        vec![0x14, 0x07, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01],
        vec![0x18, 0x10, 0x60],
        vec![0x2B, 0x0E, 0x01, 0x00],
    ];
    let mut refused: Vec<Vec<u8>> = (0x00..=0x7Fu8)
        .filter(|fc| !reads.iter().any(|r| r[0] == *fc))
        .map(|fc| vec![fc, 0x10, 0x60, 0x00, 0x01])
        .collect();
    // Those seen to reach a UPS through a block-list: user-defined codes, another MEI
    // type, and diagnostics other than the echo.
    refused.extend([
        vec![0x41, 0x10, 0x60, 0x00, 0x01],
        vec![0x64, 0x10, 0x60, 0x00, 0x01, 0x00, 0x02],
        vec![0x2B, 0x0D, 0x00, 0x00],
        vec![0x08, 0x00, 0x01, 0x00, 0x00],
        vec![0x08, 0x00, 0x04, 0x00, 0x00],
    ]);
    let heard = || card.sim.stats().requests;
    let before = heard();
    for (i, pdu) in refused.iter().enumerate() {
        let answer = exchange(&mut stream, i as u16, pdu);
        assert_eq!(answer, [pdu[0] | 0x80, 0x01], "request {pdu:02X?}");
    }
    assert_eq!(heard(), before, "a refused request reached the UPS");
    for (i, pdu) in reads.iter().enumerate() {
        let answer = exchange(&mut stream, 1000 + i as u16, pdu);
        assert_eq!(
            answer[0] & 0x7F,
            pdu[0],
            "request {pdu:02X?}: {answer:02X?}"
        );
    }
    // Each read reached the UPS (which answers what it knows and refuses the rest itself).
    wait_for("every read heard by the UPS", || {
        heard() == before + reads.len() as u64
    });
    assert_eq!(
        card.service().tcp.refused.writes.load(Relaxed),
        refused.len() as u64
    );
}

/// Taking a master off the allow-list closes its open session, after the answer it is
/// waiting for; the user is told which sessions a change closes before it is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_taken_off_the_allow_list_loses_its_open_session() {
    let card = start_up(Setup::default());
    let mut stays = master_from(&card, "127.0.0.1").await.unwrap();
    let mut goes = master_from(&card, "127.0.0.2").await.unwrap();
    for m in [&mut stays, &mut goes] {
        assert!(m.read_holding_registers(0x1060, 1).await.unwrap().is_ok());
    }
    let live = &card.service().live;
    let (_, warnings) = live.preview(&[("modbus_allow", "127.0.0.1")]).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("127.0.0.2"), "{warnings:?}");
    let who = crate::common::admin_who();
    let unconfirmed = live.change(&[("modbus_allow", "127.0.0.1")], &who, false);
    assert!(
        matches!(&unconfirmed, Err(modbus_card::live::Refused::Confirm(w)) if w == &warnings),
        "{unconfirmed:?}"
    );
    assert!(goes
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());

    // The change lands while the master's request is with a slow UPS: it gets its answer,
    // then its session ends.
    card.sim
        .set_fault(modbus_card::sim::Fault::Late(Duration::from_millis(300)));
    let in_flight = tokio::spawn(async move {
        let answer = goes.read_holding_registers(0x1060, 1).await;
        (answer, goes)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    live.change(&[("modbus_allow", "127.0.0.1")], &who, true)
        .unwrap();
    let (answer, mut goes) = in_flight.await.unwrap();
    assert!(answer.unwrap().is_ok(), "the exchange on the line was cut");
    card.sim.set_fault(modbus_card::sim::Fault::None);
    let after = timeout(PATIENCE, goes.read_holding_registers(0x1060, 1))
        .await
        .unwrap();
    assert!(after.is_err(), "{after:?}");
    let closed = card.wait_event("tcp_closed");
    assert!(closed.message.contains("no longer"), "{}", closed.message);
    // The other master never noticed.
    assert!(stays
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    assert_eq!(card.service().sessions.open(), 1);
}
