//! Access control on Modbus TCP, as masters from two addresses see it: loopback gives this
//! machine every 127.x.y.z, so a client bound to 127.0.0.2 is "another master".

mod common;

use common::{start_up, wait_for, Card, Setup, PATIENCE};
use modbus_card::live::Who;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
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
    let who = Who {
        user: "admin".into(),
        via: "test".into(),
    };
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
    let card = start_up(Setup::default().set("modbus_write", "nobody"));
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
        &Who {
            user: "admin".into(),
            via: "test".into(),
        },
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
    let who = Who {
        user: "admin".into(),
        via: "test".into(),
    };
    let r = card
        .service()
        .live
        .change(&[("modbus_write", "listed")], &who, false);
    assert!(format!("{:?}", r.unwrap_err()).contains("none is listed"));
}
