//! The card's own polling reads the UPS's tables whole at `poll_rate_s`, over the real
//! link to the simulated UPS: it follows the UPS, falls back to the smaller table sizes of
//! an older unit, leaves alone a unit with another map, and reads nothing while polling is
//! off.

use crate::common;

use common::{start_up, wait_for, Setup};
use modbus_card::link::LinkState;
use modbus_card::sim::ups::Tables as SimTables;
use modbus_card::ups::{decode, Mode};
use std::time::Duration;

#[test]
fn the_cycle_reads_every_table_whole_and_follows_the_ups() {
    let card = start_up(Setup::default().set("poll_rate_s", 1));
    let status = &card.service().link.status;
    wait_for("a whole cycle", || status.ups.lock().cycles >= 1);
    {
        let ups = status.ups.lock();
        assert_eq!(ups.tables.identification.as_ref().unwrap()[0], 130);
        assert_eq!(ups.tables.status.as_ref().unwrap().len(), 6);
        assert_eq!(ups.tables.alarms.as_ref().unwrap().len(), 4);
        assert_eq!(ups.tables.measurements.as_ref().unwrap().len(), 48);
        assert!(ups.at.is_some());
        let r = decode(&ups.tables);
        assert_eq!(r.model, Some("DIGYS"));
        assert_eq!(r.mode, Some(Mode::OnLine));
    }
    card.sim.set_mains(false);
    wait_for("on battery", || {
        decode(&status.ups.lock().tables).mode == Some(Mode::OnBattery)
    });
    card.sim.set_mains(true);
    wait_for("on line again", || {
        decode(&status.ups.lock().tables).mode == Some(Mode::OnLine)
    });
}

#[test]
fn an_older_unit_is_read_at_the_smaller_sizes() {
    let card = start_up(Setup::default().set("poll_rate_s", 1));
    card.sim.set_tables(SimTables::Short);
    let status = &card.service().link.status;
    wait_for("the smaller tables", || {
        let ups = status.ups.lock();
        ups.tables.status.as_ref().is_some_and(|s| s.len() == 4)
            && ups
                .tables
                .measurements
                .as_ref()
                .is_some_and(|m| m.len() == 25)
    });
    let ups = status.ups.lock().clone();
    assert_eq!(ups.refused, [false; 4]);
    let r = decode(&ups.tables);
    assert_eq!(r.mode, Some(Mode::OnLine));
    assert_eq!(r.battery_charge, Some(100.0));
    assert_eq!(status.state(), LinkState::Up);
}

#[test]
fn a_unit_with_another_map_is_left_alone_and_stays_up() {
    let card = start_up(Setup::default().set("poll_rate_s", 1));
    card.sim.set_tables(SimTables::Other);
    let status = &card.service().link.status;
    wait_for("status, alarms and measurements refused", || {
        status.ups.lock().refused[1..] == [true, true, true]
    });
    let cycles = status.ups.lock().cycles;
    wait_for("two more cycles", || status.ups.lock().cycles >= cycles + 2);
    assert_eq!(status.state(), LinkState::Up, "refused tables are no loss");
    let ups = status.ups.lock().clone();
    assert!(ups.tables.status.is_none() && ups.tables.measurements.is_none());
    assert!(!card.events().iter().any(|e| e.kind == "ups_lost"));
}

#[test]
fn polling_off_reads_nothing() {
    let card = start_up(Setup::default().set("poll_rate_s", 0));
    let status = &card.service().link.status;
    let before = card.sim.stats().requests;
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        card.sim.stats().requests,
        before,
        "no frame while polling is off"
    );
    let ups = status.ups.lock();
    assert!(ups.polling_off);
    assert_eq!((ups.cycles, ups.reads), (0, 0));
    assert!(ups.tables.status.is_none());
}

#[test]
fn a_masters_read_of_a_whole_table_refreshes_the_figures() {
    use std::io::{Read, Write};
    // One cycle at the start, the next an hour later.
    let card = start_up(Setup::default().set("poll_rate_s", 3600));
    let status = &card.service().link.status;
    wait_for("the first cycle", || status.ups.lock().cycles >= 1);
    card.sim.set_mains(false);
    let mut master = std::net::TcpStream::connect(card.addr()).unwrap();
    master
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Read holding registers 0x1020 × 6: the whole status table.
    master
        .write_all(&[0, 7, 0, 0, 0, 6, 1, 0x03, 0x10, 0x20, 0, 6])
        .unwrap();
    let mut answer = [0u8; 9 + 12];
    master.read_exact(&mut answer).unwrap();
    assert_eq!(answer[7], 0x03);
    assert_eq!(
        decode(&status.ups.lock().tables).mode,
        Some(Mode::OnBattery),
        "the master's answer refreshed the status"
    );
    assert_eq!(status.ups.lock().cycles, 1, "without another cycle");
}

#[test]
fn the_cycle_goes_on_while_masters_keep_the_line_busy() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let card = start_up(Setup::default().set("poll_rate_s", 1));
    let status = &card.service().link.status;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (addr, stop) = (card.addr(), &stop);
            s.spawn(move || {
                let mut m = std::net::TcpStream::connect(addr).unwrap();
                let mut answer = [0u8; 9 + 96];
                // Back to back: a request always waits at the link.
                while !stop.load(Relaxed) {
                    m.write_all(&[0, 1, 0, 0, 0, 6, 1, 0x03, 0x10, 0x60, 0, 48])
                        .unwrap();
                    m.read_exact(&mut answer).unwrap();
                    assert_eq!(answer[7], 0x03);
                }
            });
        }
        let from = status.ups.lock().cycles;
        card.sim.set_mains(false);
        wait_for("three cycles under load", || {
            status.ups.lock().cycles >= from + 3
        });
        stop.store(true, Relaxed);
    });
    assert_eq!(
        decode(&status.ups.lock().tables).mode,
        Some(Mode::OnBattery)
    );
}
