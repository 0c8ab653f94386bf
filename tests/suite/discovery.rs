//! DNS-SD: a card announcing on loopback (`net_interface` = lo, a port of the test's own
//! for multicast DNS), found by `modbus-card find` as an installer runs it; services
//! turned off are withdrawn.

use crate::common;
use common::web::MAC;
use common::{free_port, start_with, Card, Setup};
use modbus_card::accounts::Mac;
use modbus_card::live::Who;
use modbus_card::service::Options;
use std::process::Command;
use std::time::{Duration, Instant};

fn card(mdns_port: u16) -> Card {
    start_with(
        Setup::default().set("net_interface", "lo"),
        Options {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            mdns_port: Some(mdns_port),
            ..Options::default()
        },
    )
}

/// `modbus-card find --json` on loopback: the cards it lists.
fn find(mdns_port: u16) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_modbus-card"))
        .args(["find", "--json", "--wait", "3", "--interface", "lo"])
        .args(["--mdns-port", &mdns_port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// Finds until `check` holds of the list (announcements take a probe's time).
fn find_until(mdns_port: u16, what: &str, check: impl Fn(&[serde_json::Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cards = find(mdns_port);
        if check(&cards) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {cards:#?}");
    }
}

#[test]
fn find_lists_the_card_with_its_services_and_follows_a_service_turned_off() {
    let mdns_port = free_port();
    let card = card(mdns_port);
    let modbus = card.addr().port();
    find_until(mdns_port, "the card with its services", |cards| {
        cards.iter().any(|c| {
            c["instance"] == "Modbus card 3C4D5E"
                && c["host"] == "modbus-card-3c4d5e.local."
                && c["mac"] == "00:1A:2B:3C:4D:5E"
                && c["firmware"] == modbus_card::firmware::version::current()
                && c["modbus_port"] == modbus
                && c["addresses"][0] == "127.0.0.1"
                && c["services"] == serde_json::json!(["modbus", "https", "http"])
        })
    });
    let who = Who {
        user: "admin".into(),
        via: "test".into(),
        role: modbus_card::accounts::Role::Admin,
    };
    card.service()
        .live
        .change(&[("https_enabled", "false")], &who, false)
        .unwrap();
    find_until(mdns_port, "HTTPS withdrawn", |cards| {
        cards.len() == 1 && cards[0]["services"] == serde_json::json!(["modbus", "http"])
    });
    card.service()
        .live
        .change(&[("mdns_enabled", "false")], &who, false)
        .unwrap();
    find_until(mdns_port, "no card once mdns_enabled is off", |cards| {
        cards.is_empty()
    });
}
