//! DNS-SD: a card announcing on loopback (`net_interface` = lo, a port of the test's own
//! for multicast DNS), found by `modbus-card find` as an installer runs it; services
//! turned off are withdrawn.

use crate::common;
use common::web::MAC;
use common::{free_port, start_with, Card, Setup};
use modbus_card::accounts::Mac;
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
    let who = crate::common::admin_who();
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

/// CPU time (user + system, in clock ticks) of this process's threads named `name`.
fn thread_ticks(name: &str) -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime is the 12th, stime 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks
}

/// A query flood on loopback, multicast to the card's mDNS port: what the card's mDNS
/// thread spends. Figures for BENCHMARKS.md; bounded in count and time.
/// `cargo test --release --test suite discovery::a_query_flood -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run by hand"]
fn a_query_flood_costs_bounded_cpu() {
    use std::os::fd::AsRawFd;
    let mdns_port = free_port();
    let card = card(mdns_port);
    find_until(mdns_port, "the card announced", |cards| !cards.is_empty());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lo = libc::in_addr {
        s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
    };
    // SAFETY: setsockopt with a valid descriptor and an in_addr of the right size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &lo as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    // A PTR question for _modbus._tcp.local, as browsers ask.
    let mut query = vec![0u8, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["_modbus", "_tcp", "local"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 12, 0, 1]);
    let hz = 100.0; // USER_HZ on Linux
    for rate in [1_000u32, 10_000] {
        let before = thread_ticks("mDNS_daemon");
        let started = Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < Duration::from_secs(10) && sent < rate * 10 {
            let _ = socket.send_to(&query, ("224.0.0.251", mdns_port));
            sent += 1;
            // Paced to `rate` a second.
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let took = started.elapsed().as_secs_f64();
        let cpu = (thread_ticks("mDNS_daemon") - before) as f64 / hz;
        println!(
            "{sent} queries in {took:.1} s ({:.0}/s): the card's mDNS thread used {cpu:.2} s of CPU ({:.0} % of one core)",
            sent as f64 / took,
            100.0 * cpu / took
        );
    }
    // The card still answers after the flood.
    find_until(mdns_port, "the card after the flood", |cards| {
        !cards.is_empty()
    });
    drop(card);
}
