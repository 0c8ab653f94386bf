//! The RS485 port as an RTU master on the bus sees it: an independent RTU client (the
//! tokio-modbus crate over tokio-serial) on the far end of a pseudo-terminal null modem.

use crate::common;

use common::{start_up, wait_for, Card, Setup, PATIENCE};
use modbus_card::modbus::rtu;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_modbus::client::{rtu as rtu_client, Context, Reader, Writer};
use tokio_modbus::Slave;

fn master(card: &Card, slave: u8, baud: u32) -> Context {
    let path = card.rs485.as_ref().unwrap().user_side().to_string_lossy();
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path, baud)).unwrap();
    rtu_client::attach_slave(port, Slave(slave))
}

#[tokio::test]
async fn an_rtu_master_reads_and_writes_through_the_card() {
    let card = start_up(
        Setup {
            rs485: true,
            ..Setup::default()
        }
        .set("rs485_slave", 17),
    );
    let mut m = master(&card, 17, 9600);
    let id = timeout(PATIENCE, m.read_holding_registers(0x1000, 12))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let expected: Vec<u16> = (0x1000..0x100C)
        .map(|a| card.sim.register(a).unwrap())
        .collect();
    assert_eq!(id, expected);
    timeout(PATIENCE, m.write_single_register(0x0005, 4242))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(card.sim.register(0x0005), Some(4242));
    // An exception from the UPS comes back as it is.
    let r = timeout(PATIENCE, m.read_holding_registers(0x1020, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, Err(tokio_modbus::ExceptionCode::IllegalDataAddress));
    let status = card.service().rs485.as_ref().unwrap();
    assert!(status.frames.load(std::sync::atomic::Ordering::Relaxed) >= 3);
}

/// The raw far end of the null modem, for what a client crate will not send.
fn raw(card: &Card) -> std::fs::File {
    let path = card.rs485.as_ref().unwrap().user_side();
    let port = serialport::new(path.to_string_lossy(), 9600)
        .open_native()
        .unwrap();
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor comes from into_raw_fd and is owned by the File from here on.
    unsafe { std::fs::File::from_raw_fd(port.into_raw_fd()) }
}

fn read_frame(port: &mut std::fs::File, request_pdu: &[u8], slave: u8) -> Option<Vec<u8>> {
    let mut buf = vec![];
    let started = Instant::now();
    let mut chunk = [0u8; 256];
    while started.elapsed() < Duration::from_secs(3) {
        match rtu::check_response(slave, request_pdu, &buf) {
            Ok(rtu::Status::Complete(n)) => return Some(buf[..n].to_vec()),
            Err(e) => panic!("bad answer {e}: {buf:02X?}"),
            _ => {}
        }
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&*port),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap() > 0 {
            let n = port.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    None
}

#[test]
fn other_addresses_are_ignored_broadcasts_act_silently_and_crc_errors_are_counted() {
    let card = start_up(Setup {
        rs485: true,
        ..Setup::default()
    });
    let mut port = raw(&card);
    let mut frame = vec![];

    // Slave 9 is not the card: no answer.
    let read = [0x03, 0x10, 0x60, 0x00, 0x01];
    rtu::encode(9, &read, &mut frame);
    port.write_all(&frame).unwrap();
    assert_eq!(read_frame(&mut port, &read, 9), None);

    // A broadcast write reaches the UPS; nobody answers.
    let write = [0x06, 0x00, 0x07, 0x12, 0x34];
    rtu::encode(0, &write, &mut frame);
    port.write_all(&frame).unwrap();
    wait_for("broadcast relayed", || {
        card.sim.register(0x0007) == Some(0x1234)
    });
    assert_eq!(read_frame(&mut port, &write, 0), None);
    assert!(card.sim.stats().broadcasts >= 1);

    // A frame with a bad CRC is ignored and counted; the next good one is answered.
    rtu::encode(1, &read, &mut frame);
    let mut bad = frame.clone();
    *bad.last_mut().unwrap() ^= 0x55;
    port.write_all(&bad).unwrap();
    // The next frame only after the card has seen the silence that ends the bad one: sent
    // at once, both are one run of garbage to the card, as on a real line.
    let status = card.service().rs485.as_ref().unwrap();
    wait_for("the bad frame counted", || {
        status.bad_frames.load(std::sync::atomic::Ordering::Relaxed) >= 1
    });
    port.write_all(&frame).unwrap();
    let answer = read_frame(&mut port, &read, 1).expect("answer after a bad frame");
    assert_eq!(answer[1], 0x03);
    assert!(status.bad_frames.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(
        status
            .other_slave
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// Noise on the bus with no silence before the master's request (a driver switching on,
/// a reflection): the noise is dropped and counted, the request answered.
#[test]
fn noise_just_before_a_request_costs_the_noise_not_the_request() {
    let card = start_up(Setup {
        rs485: true,
        ..Setup::default()
    });
    let mut port = raw(&card);
    let read = [0x03, 0x10, 0x60, 0x00, 0x01];
    let mut run = vec![
        0xF4, 0x50, 0xEB, 0xBB, 0xA4, 0x67, 0x2C, 0xC7, 0x23, 0x5A, 0x00, 0xFF,
    ];
    let mut frame = vec![];
    rtu::encode(1, &read, &mut frame);
    run.extend_from_slice(&frame);
    // One write: the card reads it as one run of bytes, ended by the silence after it.
    port.write_all(&run).unwrap();
    let answer = read_frame(&mut port, &read, 1).expect("the request after the noise answered");
    assert_eq!(answer[..3], [1, 0x03, 2]);
    let status = card.service().rs485.as_ref().unwrap();
    assert_eq!(
        status.bad_frames.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn rtu_communication_lost_and_restored_are_logged() {
    let card = start_up(
        Setup {
            rs485: true,
            ..Setup::default()
        }
        .set("rs485_timeout_s", 1),
    );
    let mut port = raw(&card);
    let read = [0x03, 0x10, 0x60, 0x00, 0x01];
    let mut frame = vec![];
    rtu::encode(1, &read, &mut frame);
    port.write_all(&frame).unwrap();
    assert!(read_frame(&mut port, &read, 1).is_some());
    // A second of silence from the master.
    card.wait_event("rtu_lost");
    port.write_all(&frame).unwrap();
    assert!(read_frame(&mut port, &read, 1).is_some());
    let restored = card.wait_event("rtu_restored");
    assert_eq!(restored.message, "RTU communication restored");
}

/// The RS485 adapter goes away and comes back as another device behind the same link.
#[test]
fn an_rs485_port_that_goes_away_and_comes_back_is_used_again() {
    use modbus_card::pty::{NullModem, Pty};
    use modbus_card::service::{Options, Service};
    use modbus_card::sim::{Sim, SimConfig};
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let link = dir.path().join("rs485");
    let first = NullModem::open().unwrap();
    std::os::unix::fs::symlink(first.card_side(), &link).unwrap();
    let service = Service::start(Options {
        data: dir.path().join("data"),
        ups: sim.path().unwrap().to_path_buf(),
        rs485: Some(link.clone()),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::default()
    })
    .unwrap();
    wait_for("UPS found", || {
        service.link.status.state() == modbus_card::link::LinkState::Up
    });
    let ask = |modem: &NullModem| {
        let port = serialport::new(modem.user_side().to_string_lossy(), 9600)
            .open_native()
            .unwrap();
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor comes from into_raw_fd and is owned by the File from here on.
        let mut port = unsafe { std::fs::File::from_raw_fd(port.into_raw_fd()) };
        let read = [0x03, 0x10, 0x60, 0x00, 0x01];
        let mut frame = vec![];
        rtu::encode(1, &read, &mut frame);
        port.write_all(&frame).unwrap();
        read_frame(&mut port, &read, 1)
    };
    assert!(ask(&first).is_some());
    drop(first);
    let second = NullModem::open().unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(second.card_side(), &link).unwrap();
    let started = Instant::now();
    let mut answered = false;
    while !answered && started.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(300));
        answered = ask(&second).is_some();
    }
    assert!(
        answered,
        "the card did not come back on the new RS485 device"
    );
    service.stop();
}

#[tokio::test]
async fn the_rs485_port_works_at_its_slowest_and_fastest_rates() {
    for baud in [1200u32, 57600] {
        let card = start_up(
            Setup {
                rs485: true,
                ..Setup::default()
            }
            .set("rs485_baud", baud),
        );
        let mut m = master(&card, 1, baud);
        let words = timeout(PATIENCE, m.read_holding_registers(0x1060, 8))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(words.len(), 8, "at {baud} baud");
        timeout(PATIENCE, m.write_single_register(0x0011, baud as u16))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(card.sim.register(0x0011), Some(baud as u16));
    }
}

/// While the UPS is not found, an RTU master gets 0x0B at once, as while it is lost: it
/// is told the UPS does not answer instead of waiting out its own timeout.
#[test]
fn an_rtu_master_gets_0b_at_once_while_the_ups_is_not_found() {
    let card = common::start(Setup {
        rs485: true,
        sim_fault: modbus_card::sim::Fault::Silent,
        ..Setup::default().set("serial_timeout_ms", 2000)
    });
    let mut port = raw(&card);
    let mut frame = vec![];
    let read = [0x03, 0x10, 0x60, 0x00, 0x01];
    rtu::encode(1, &read, &mut frame);
    let started = Instant::now();
    port.write_all(&frame).unwrap();
    let answer = read_frame(&mut port, &read, 1).expect("an answer");
    assert_eq!(&answer[1..3], &[0x83, 0x0B], "{answer:02X?}");
    assert!(started.elapsed() < Duration::from_millis(1000), "at once");
    assert_eq!(
        card.service().link.status.state(),
        modbus_card::link::LinkState::Detecting
    );
}
