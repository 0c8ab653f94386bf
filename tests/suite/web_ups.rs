//! The UPS at a glance: Home and /api/status show the simulated UPS's model, state,
//! figures and alarms as the card's polling reads them, and follow a mains failure, its
//! return and an alarm; a model the map does not cover, a unit with another map and
//! polling off are each said in words.

use crate::common;

use common::web::{start_web, Browser};
use common::{wait_for, Setup};
use modbus_card::ups::map::alarm;
use serde_json::Value;

fn status(b: &mut Browser) -> Value {
    serde_json::from_str(&b.get("/api/status").body).unwrap()
}

/// Waits until /api/status's `ups` satisfies `cond`; returns it.
fn wait_ups(b: &mut Browser, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, || {
        last = status(b)["ups"].clone();
        cond(&last)
    });
    last
}

#[test]
fn home_shows_the_ups_first_and_follows_mains_and_an_alarm() {
    let card = start_web(Setup::default().set("poll_rate_s", 1));
    let mut admin = card.admin();
    // A whole cycle: the status (first) and the measurements (last).
    let ups = wait_ups(&mut admin, "the UPS read", |u| {
        u["mode"] == "online" && u["battery_charge"].is_number()
    });
    // The link's fields are still there, beside the UPS's.
    assert_eq!(ups["state"], "up");
    assert_eq!(ups["baud"], 19200);
    assert_eq!(ups["model"], "DIGYS 10 kVA");
    assert_eq!(ups["model_code"], 130);
    assert_eq!(ups["serial"], "S24A100042");
    assert_eq!(ups["mode_text"], "On line");
    assert_eq!(ups["battery_charge"], 100.0);
    assert_eq!(ups["temperature"], 24.0);
    assert_eq!(ups["runtime_min"], Value::Null, "0xFFFF on line");
    assert_eq!(ups["load"].as_array().unwrap().len(), 3);
    assert_eq!(ups["output_frequency"], 50.0);
    assert_eq!(ups["alarms_text"], "No alarm");

    let home = admin.get("/").body;
    for shown in [
        "DIGYS 10 kVA",
        "S24A100042",
        "On line",
        "No alarm",
        "100 %",
        "24 °C",
        "50.0 Hz",
        "230 · 230 · 230 V",
    ] {
        assert!(home.contains(shown), "Home lacks {shown}");
    }
    // The UPS comes before the link's counters.
    assert!(home.find("On line").unwrap() < home.find("UPS link").unwrap());

    // Mains off: On battery within one poll (a cycle under way may have read the status
    // just before; the next one has it).
    let link = &card.service().link.status;
    let before = link.ups.lock().cycles;
    card.sim.set_mains(false);
    wait_for("two more cycles", || link.ups.lock().cycles >= before + 2);
    assert_eq!(status(&mut admin)["ups"]["mode"], "battery");
    let ups = wait_ups(&mut admin, "on battery", |u| u["mode"] == "battery");
    assert_eq!(ups["mode_text"], "On battery");
    assert!(ups["runtime_min"].as_f64().unwrap() > 0.0);
    let home = admin.get("/").body;
    assert!(home.contains("On battery"), "Home lacks On battery");
    assert!(home.contains("Rectifier input supply out of tolerance"));

    card.sim.set_mains(true);
    wait_ups(&mut admin, "on line again", |u| u["mode"] == "online");

    card.sim.set_alarm(alarm::OVERLOAD, true);
    let ups = wait_ups(&mut admin, "the overload alarm", |u| {
        u["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "overload")
    });
    assert!(ups["alarms_text"].as_str().unwrap().contains("Overload"));
    assert!(admin.get("/").body.contains("Overload"));
    card.sim.set_alarm(alarm::OVERLOAD, false);
    wait_ups(&mut admin, "no alarm again", |u| {
        u["alarms_text"] == "No alarm"
    });
}

#[test]
fn another_model_shows_its_raw_words_and_another_map_is_said() {
    let card = start_web(Setup::default().set("poll_rate_s", 1));
    card.sim.set_model_code(999);
    let mut admin = card.admin();
    let ups = wait_ups(&mut admin, "model 999 and its four tables", |u| {
        u["model_code"] == 999 && u["raw"].as_array().unwrap().len() == 4
    });
    assert_eq!(ups["mode"], "unknown");
    assert_eq!(ups["mode_text"], "State not decoded for this model");
    assert_eq!(ups["model"], "Model code 999");
    let home = admin.get("/").body;
    assert!(home.contains("State not decoded for this model"));
    assert!(home.contains("0x1020"), "the raw status words are shown");

    card.sim.set_tables(modbus_card::sim::ups::Tables::Other);
    let ups = wait_ups(&mut admin, "another map", |u| {
        u["reading_text"]
            .as_str()
            .unwrap()
            .contains("another register map")
    });
    assert_eq!(ups["state"], "up", "the link stays up");
    assert!(admin.get("/").body.contains("another register map"));
}

#[test]
fn polling_off_is_said_on_home() {
    let card = start_web(Setup::default().set("poll_rate_s", 0));
    card.wait_state(modbus_card::link::LinkState::Up);
    let mut admin = card.admin();
    let ups = status(&mut admin)["ups"].clone();
    assert!(ups["reading_text"]
        .as_str()
        .unwrap()
        .starts_with("Polling is off"));
    assert_eq!(ups["battery_charge"], Value::Null);
    let home = admin.get("/").body;
    assert!(home.contains("Polling is off"));
    assert!(home.contains("—"));
}

/// Home's script takes the new charts from Home once a minute: those fetches, marked as
/// refreshes, keep no session alive, as the figures' refreshes do not.
#[test]
fn the_charts_refresh_keeps_no_session_alive() {
    use std::time::{Duration, Instant};
    let card = start_web(Setup::default().set("login_timeout_s", 30));
    let mut b = card.admin();
    let started = Instant::now();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(9));
        let p = b.get_with("/", &[("X-Refresh", "1")]);
        assert_eq!(p.status, 200);
        assert!(p.body.contains("class=\"charts\""));
    }
    std::thread::sleep(Duration::from_secs(31).saturating_sub(started.elapsed()));
    assert_eq!(b.get("/").location(), "/login");
}
