//! Settings changed through the one door reach the running card at once, without a
//! restart, all or nothing, logged with who made them. Checked as users would: a Modbus
//! master (tokio-modbus) on the new port, a silent UPS timed with the new timeout, an RTU
//! master at the new slave number.

use crate::common;

use common::{free_port, start_up, wait_for, Setup, PATIENCE};
use modbus_card::link::LinkState;
use modbus_card::live::{Refused, Who};
use modbus_card::store::Store;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::Slave;

fn admin() -> Who {
    crate::common::admin_who()
}

async fn client(addr: SocketAddr) -> Context {
    timeout(PATIENCE, tcp::connect_slave(addr, Slave(1)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_modbus_port_listens_at_once_and_open_sessions_go_on() {
    let card = start_up(Setup::default());
    let old = card.addr();
    let mut before = client(old).await;
    let port = free_port();
    let live = &card.service().live;
    let applied = live
        .change(&[("modbus_port", &port.to_string())], &admin(), false)
        .unwrap();
    assert_eq!(applied.diffs.len(), 1);
    assert_eq!(card.addr().port(), port);
    // The new port serves; the old one no longer takes connections; the session opened
    // before goes on.
    let mut after = client(card.addr()).await;
    assert!(after
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    wait_for("the old port closed", || TcpStream::connect(old).is_err());
    assert!(before
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    // Stored, and logged with who did it.
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!(stored.modbus_port, port);
    let event = card.wait_event("setting_changed");
    assert!(
        event.message.starts_with("Modbus TCP port changed from ")
            && event.message.ends_with(&format!("to {port} (admin, test)")),
        "{}",
        event.message
    );
}

#[test]
fn a_port_in_use_refuses_the_whole_change() {
    let card = start_up(Setup::default());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = card.service().live.change(
        &[("poll_rate_s", "3"), ("modbus_port", &port)],
        &admin(),
        false,
    );
    assert!(
        matches!(r, Err(Refused::Failed(ref e)) if e.contains("cannot listen")),
        "{r:?}"
    );
    // Nothing changed: not the poll rate either, in the card or in the store.
    assert_eq!(card.service().settings().poll_rate_s, 10);
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!(stored.poll_rate_s, 10);
    assert!(card.events().iter().all(|e| e.kind != "setting_changed"));
}

#[test]
fn bad_values_are_refused_with_every_reason_and_nothing_changed() {
    let card = start_up(Setup::default());
    let before = card.service().settings();
    let r = card.service().live.change(
        &[
            ("serial_timeout_ms", "100"),
            ("rs485_slave", "200"),
            ("modbus_timeout_s", "30"),
        ],
        &admin(),
        false,
    );
    let Err(Refused::Invalid(refused)) = r else {
        panic!("{r:?}")
    };
    let keys: Vec<_> = refused.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["rs485_slave"]);
    assert!(refused[0].message.contains("174"));
    assert_eq!(*card.service().settings(), *before);
    // Alone, the timeout is refused by the rule between settings.
    let r = card
        .service()
        .live
        .change(&[("serial_timeout_ms", "100")], &admin(), false);
    assert!(matches!(r, Err(Refused::Invalid(ref v)) if v[0].message.contains("310 ms")));
    assert_eq!(*card.service().settings(), *before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_serial_timeout_is_the_time_a_silent_ups_gets() {
    let card = start_up(Setup::default().set("poll_rate_s", 0));
    card.service()
        .live
        .change(&[("serial_timeout_ms", "1500")], &admin(), false)
        .unwrap();
    let mut c = client(card.addr()).await;
    common::silent_ups_answered_after(&card, &mut c, 1500).await;
}

#[test]
fn a_new_ups_baud_rate_sends_the_link_looking_for_the_ups_again() {
    let card = start_up(Setup::default());
    assert_eq!(card.service().link.status.baud(), 19200);
    let live = &card.service().live;
    // Fixed at a rate the UPS does not speak: not found.
    live.change(&[("ups_baud", "57600")], &admin(), false)
        .unwrap();
    card.wait_state(LinkState::Detecting);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(card.service().link.status.state(), LinkState::Detecting);
    // Back to detection: found at its own rate.
    live.change(&[("ups_baud", "0")], &admin(), false).unwrap();
    card.wait_state(LinkState::Up);
    assert_eq!(card.service().link.status.baud(), 19200);
}

#[test]
fn a_new_rs485_slave_number_is_answered_and_the_old_one_ignored() {
    use modbus_card::modbus::rtu;
    use std::io::{Read, Write};
    let card = start_up(Setup {
        rs485: true,
        ..Setup::default()
    });
    card.service()
        .live
        .change(&[("rs485_slave", "42")], &admin(), false)
        .unwrap();
    let path = card.rs485.as_ref().unwrap().user_side();
    let port = serialport::new(path.to_string_lossy(), 9600)
        .timeout(Duration::from_millis(1500))
        .open_native()
        .unwrap();
    let mut port: Box<dyn serialport::SerialPort> = Box::new(port);
    let read = [0x03, 0x10, 0x60, 0x00, 0x01];
    let ask = |port: &mut Box<dyn serialport::SerialPort>, slave: u8| -> Vec<u8> {
        let mut frame = vec![];
        rtu::encode(slave, &read, &mut frame);
        port.write_all(&frame).unwrap();
        let mut got = vec![0u8; 7];
        match port.read_exact(&mut got) {
            Ok(()) => got,
            Err(_) => vec![],
        }
    };
    // The change is taken between frames: give the port a moment, then ask.
    let started = Instant::now();
    let mut answer = ask(&mut port, 42);
    while answer.is_empty() && started.elapsed() < PATIENCE {
        answer = ask(&mut port, 42);
    }
    assert_eq!(&answer[..3], &[42, 0x03, 0x02]);
    port.clear(serialport::ClearBuffer::Input).unwrap();
    assert!(
        ask(&mut port, 1).is_empty(),
        "the old number still answered"
    );
}

#[test]
fn turning_off_both_web_services_asks_for_confirmation_first() {
    let card = start_up(Setup::default());
    let live = &card.service().live;
    let off = [("http_enabled", "false"), ("https_enabled", "false")];
    let r = live.change(&off, &admin(), false);
    let Err(Refused::Confirm(warnings)) = r else {
        panic!("{r:?}")
    };
    assert!(warnings[0].contains("HTTP and HTTPS"), "{warnings:?}");
    assert!(card.service().settings().https_enabled);
    let applied = live.change(&off, &admin(), true).unwrap();
    assert_eq!(applied.diffs.len(), 2);
    assert!(!card.service().settings().https_enabled);
    // A board setting is stored but applies at the next start, and says so.
    let applied = live
        .change(&[("net_interface", "eth1")], &admin(), false)
        .unwrap();
    assert_eq!(applied.next_start, ["net_interface"]);
}

#[test]
fn a_factory_reset_brings_the_settings_back_but_not_the_board_devices() {
    let card = start_up(Setup::default());
    let live = &card.service().live;
    live.change(
        &[
            ("poll_rate_s", "3"),
            ("routing", "transparent"),
            ("led_net_green", "lan:green"),
        ],
        &admin(),
        false,
    )
    .unwrap();
    let applied = live.reset_to_factory(&admin()).unwrap();
    let keys: Vec<_> = applied.diffs.iter().map(|d| d.key).collect();
    assert_eq!(keys, ["poll_rate_s", "routing"]);
    let now = card.service().settings();
    assert_eq!(
        (now.poll_rate_s, now.routing),
        (10, modbus_card::settings::Routing::Ups)
    );
    assert_eq!(now.led_net_green, "lan:green");
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!(stored.poll_rate_s, 10);
    // The reset is in the log before the changes it made.
    // Both written (the store may commit them in two batches).
    wait_for("the reset's events", || {
        let events = card.events();
        events.iter().any(|e| e.kind == "factory_reset")
            && events.iter().any(|e| {
                e.message
                    .starts_with("Polling rate (s) changed from 3 to 10")
            })
    });
    let events = card.events();
    let reset = events
        .iter()
        .position(|e| e.kind == "factory_reset")
        .unwrap();
    let change = events
        .iter()
        .position(|e| {
            e.message
                .starts_with("Polling rate (s) changed from 3 to 10")
        })
        .unwrap();
    assert!(
        change < reset,
        "newest first: the change comes after the reset"
    );
}
