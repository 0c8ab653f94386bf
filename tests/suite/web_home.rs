//! Home and /api/status show the card as it is: the UPS link, the Modbus TCP sessions with
//! their masters' addresses, the RS485 port, the card's identity and who is logged in.

use crate::common;

use common::web::start_web;
use common::{wait_for, Setup};
use std::net::TcpStream;

#[test]
fn home_and_the_status_api_show_the_card() {
    let card = start_web(
        Setup {
            rs485: true,
            ..Setup::default()
        }
        .set("poll_rate_s", 1),
    );
    card.wait_state(modbus_card::link::LinkState::Up);
    let master = TcpStream::connect(card.addr()).unwrap();
    let peer = master.local_addr().unwrap().to_string();
    wait_for("the session open", || card.service().sessions.open() == 1);
    let mut admin = card.admin();

    let p = admin.get("/api/status");
    assert_eq!(p.status, 200);
    assert_eq!(
        p.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(p.header("cache-control"), Some("no-store"));
    let s: serde_json::Value = serde_json::from_str(&p.body).unwrap();
    assert_eq!(s["ups"]["state"], "up");
    assert_eq!(s["ups"]["baud"], 19200);
    assert!(s["ups"]["counters"]["answers"].as_u64().unwrap() >= 1);
    assert_eq!(s["tcp"][0]["peer"], peer.as_str());
    assert!(s["tcp"][0]["since"].as_str().unwrap().ends_with(" UTC"));
    assert!(s["tcp"][0]["idle_s"].as_u64().is_some());
    assert_eq!(s["tcp"][1]["peer"], serde_json::Value::Null);
    assert_eq!(s["rs485"]["wired"], true);
    assert_eq!(s["mac"], "00:1A:2B:3C:4D:5E");
    assert_eq!(s["firmware"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["login"]["user"], "admin");
    assert_eq!(s["login"]["from"], "127.0.0.1");

    let home = admin.get("/");
    for shown in [
        "Communicating",
        "19200 baud",
        peer.as_str(),
        "00:1A:2B:3C:4D:5E",
        "No master heard",
        "admin",
        "src=\"/static/home.js\"",
    ] {
        assert!(home.body.contains(shown), "Home lacks {shown}");
    }

    // The UPS falls silent: the page says so.
    card.sim.set_fault(modbus_card::sim::Fault::Silent);
    card.wait_state(modbus_card::link::LinkState::Lost);
    assert!(admin.get("/").body.contains("Communication lost"));
    drop(master);
    wait_for("the session closed", || card.service().sessions.open() == 0);
    let s: serde_json::Value = serde_json::from_str(&admin.get("/api/status").body).unwrap();
    assert_eq!(s["ups"]["state"], "lost");
    assert_eq!(s["tcp"][0]["peer"], serde_json::Value::Null);
}

/// A UPS never found (its COM-slot port off) is said in words on Home, with what to check.
#[test]
fn home_says_when_the_ups_is_not_found() {
    let card = start_web(Setup {
        sim_fault: modbus_card::sim::Fault::Silent,
        ..Setup::default().set("serial_timeout_ms", 300)
    });
    let mut admin = card.admin();
    wait_for("a whole round of detection", || {
        card.service().link.status.not_found()
    });
    admin
        .get("/")
        .shows(&["UPS not found: check that its COM-slot port is enabled"]);
    card.sim.set_fault(modbus_card::sim::Fault::None);
    card.wait_state(modbus_card::link::LinkState::Up);
    let home = admin.get("/");
    assert!(!home.body.contains("UPS not found"));
    home.shows(&["Communicating"]);
}

/// The pages show the values in force, with the stored value beside them where this run's
/// command line put another (`--modbus`, `--set`); the configuration file keeps the
/// stored ones.
#[test]
fn the_pages_show_the_values_in_force_and_export_the_stored_ones() {
    let card = start_web(Setup::default().set("poll_rate_s", 1));
    let port = card.addr().port();
    assert_ne!(port, 502);
    let mut admin = card.admin();
    let s: serde_json::Value = serde_json::from_str(&admin.get("/api/status").body).unwrap();
    assert_eq!(s["modbus"]["port"], port);
    assert_eq!(s["modbus"]["stored_port"], 502);
    let shown =
        format!("port {port} (given on the command line for this run; the stored setting is 502)");
    admin.get("/").shows(&[&shown]);
    let modbus = admin.get("/modbus");
    modbus.shows(&[&format!("Listening on {shown}")]);
    modbus.shows(&[
        "In force for this run: 1 (given on the command line); the stored setting is 10.",
    ]);
    let file = admin.get("/config/export").body;
    assert!(file.contains("\npoll_rate_s = 10\n"), "{file}");
    assert!(file.contains("\nmodbus_port = 502\n"), "{file}");
}
