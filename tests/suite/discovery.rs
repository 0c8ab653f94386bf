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

/// A DNS-SD browse of `ty` on loopback for 3 s, as any browser on the LAN would: each
/// instance resolved, with its port and raw TXT (`key=value`).
fn browse(mdns_port: u16, ty: &str) -> Vec<(u16, Vec<String>)> {
    use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
    let daemon = ServiceDaemon::new_with_port(mdns_port).unwrap();
    daemon
        .disable_interface(vec![IfKind::All, IfKind::LoopbackV6])
        .unwrap();
    daemon.enable_interface(IfKind::Name("lo".into())).unwrap();
    let events = daemon.browse(ty).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut found = std::collections::BTreeMap::new();
    while let Ok(event) = events.recv_deadline(deadline) {
        if let ServiceEvent::ServiceResolved(info) = event {
            let txt = info
                .txt_properties
                .iter()
                .map(|p| format!("{}={}", p.key(), p.val_str()))
                .collect();
            found.insert(info.fullname.clone(), (info.port, txt));
        }
    }
    let _ = daemon.shutdown();
    found.into_values().collect()
}

/// Browses until `check` holds (announcements take a probe's time).
fn browse_until(
    mdns_port: u16,
    ty: &str,
    what: &str,
    check: impl Fn(&[(u16, Vec<String>)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = browse(mdns_port, ty);
        if check(&found) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {found:#?}");
    }
}

#[test]
fn the_txt_names_the_ups_once_read_never_its_serial_and_follows_a_new_one() {
    let mdns_port = free_port();
    let card = start_with(
        Setup::default()
            .set("net_interface", "lo")
            .set("poll_rate_s", 1),
        Options {
            mac: Some(MAC.parse::<Mac>().unwrap()),
            mdns_port: Some(mdns_port),
            ..Options::default()
        },
    );
    // The simulated UPS is a DIGYS (model code 130).
    find_until(mdns_port, "the UPS's model in the TXT", |cards| {
        cards.len() == 1 && cards[0]["ups_model"] == "DIGYS"
    });
    let serial = {
        let tables = card.service().link.status.ups.lock().tables.clone();
        modbus_card::ups::decode(&tables)
            .serial
            .expect("a serial read")
    };
    browse_until(
        mdns_port,
        "_modbus._tcp.local.",
        "the TXT without the serial",
        |found| {
            found.len() == 1
                && found[0].1.iter().any(|t| t.starts_with("ups_model=DIGYS"))
                && found[0]
                    .1
                    .iter()
                    .all(|t| !t.contains(&serial) && t.len() <= 255)
        },
    );
    // Another UPS on the link: the TXT follows, without a restart.
    card.sim.set_model_code(515);
    find_until(mdns_port, "the new UPS's model", |cards| {
        cards.len() == 1 && cards[0]["ups_model"] == "DELPHYS MX"
    });
    // A model the card does not know is named by its code.
    card.sim.set_model_code(4242);
    find_until(mdns_port, "an unknown model's code", |cards| {
        cards.len() == 1 && cards[0]["ups_model"] == "code 4242"
    });
}

#[test]
fn modbus_tcp_security_is_announced_while_it_is_on() {
    let mdns_port = free_port();
    let card = start_with(
        Setup::default()
            .set("net_interface", "lo")
            .set("mbtls_enabled", "true"),
        Options {
            mac: Some(MAC.parse::<Mac>().unwrap()),
            mdns_port: Some(mdns_port),
            mbtls: Some("127.0.0.1:0".parse().unwrap()),
            ..Options::default()
        },
    );
    let port = card.service().mbtls_addr().expect("mbtls on").port();
    browse_until(
        mdns_port,
        "_mbap-s._tcp.local.",
        "_mbap-s._tcp on its port",
        |found| {
            found.len() == 1
                && found[0].0 == port
                && found[0].1.contains(&"services=modbus,mbap-s".to_string())
        },
    );
    let who = crate::common::admin_who();
    card.service()
        .live
        .change(&[("mbtls_enabled", "false")], &who, false)
        .unwrap();
    browse_until(
        mdns_port,
        "_mbap-s._tcp.local.",
        "_mbap-s._tcp withdrawn",
        |found| found.is_empty(),
    );
    find_until(mdns_port, "mbap-s gone from the services", |cards| {
        cards.len() == 1 && cards[0]["services"] == serde_json::json!(["modbus"])
    });
    card.service()
        .live
        .change(&[("mbtls_enabled", "true")], &who, false)
        .unwrap();
    let port = card.service().mbtls_addr().expect("mbtls on again").port();
    browse_until(
        mdns_port,
        "_mbap-s._tcp.local.",
        "_mbap-s._tcp back",
        |found| found.len() == 1 && found[0].0 == port,
    );
}

/// Two cards with the same name (a clone's MAC, or a test bench's): probing finds it taken
/// and the newcomer takes the next (RFC 6762 §9); a browser sees both.
#[test]
fn two_cards_with_the_same_name_are_both_found_one_renamed() {
    let mdns_port = free_port();
    let first = card(mdns_port);
    find_until(mdns_port, "the first card", |cards| cards.len() == 1);
    let second = card(mdns_port);
    let ports = [first.addr().port(), second.addr().port()];
    find_until(mdns_port, "both cards, one renamed", |cards| {
        let names: Vec<_> = cards.iter().map(|c| c["instance"].clone()).collect();
        cards.len() == 2
            && names.contains(&"Modbus card 3C4D5E".into())
            && names.contains(&"Modbus card 3C4D5E (2)".into())
            && cards
                .iter()
                .all(|c| ports.contains(&(c["modbus_port"].as_u64().unwrap() as u16)))
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
