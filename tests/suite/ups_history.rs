//! The UPS's history: bounded after a simulated year of samples (added through the
//! store's own API at an injected clock, not by waiting), kept across a restart of the
//! card, drawn on Home (shaded on battery, broken at gaps) and downloadable as CSV.

use crate::common;

use common::web::start_web;
use common::{wait_for, Setup};
use modbus_card::history::{self, History, Resolution, Sample, DAY_MS, MINUTE_MS};
use modbus_card::store::Store;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn sample(load: f64, on_battery: bool) -> Sample {
    Sample {
        load_pct: Some(load),
        charge_pct: Some(if on_battery { 60.0 } else { 100.0 }),
        runtime_min: on_battery.then_some(30.0),
        input_v: (!on_battery).then_some(230.0),
        output_v: Some(230.0),
        temp_c: Some(24.0),
        on_battery,
    }
}

fn db_bytes(dir: &std::path::Path) -> u64 {
    ["card.db", "card.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_simulated_year_stays_within_the_bound_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_800_000_000_000i64;
    let year = 365 * DAY_MS;
    let mut h = History::open(dir.path()).unwrap();
    // A year: a sample every 10 minutes, then the last week every minute.
    let mut t = start;
    while t < start + year - 7 * DAY_MS {
        h.record(at(t), sample(40.0, false)).unwrap();
        t += 10 * MINUTE_MS;
    }
    while t < start + year {
        h.record(at(t), sample(41.0, false)).unwrap();
        t += MINUTE_MS;
    }
    h.flush().unwrap();
    drop(h);

    let store = Store::open(dir.path()).unwrap();
    let minutes = history::rows(store.connection(), None, Resolution::Minute, 0).unwrap();
    let hours = history::rows(store.connection(), None, Resolution::Hour, 0).unwrap();
    assert!(
        minutes.len() as i64 <= history::MINUTE_DAYS * 1440 + 1,
        "{} minute rows",
        minutes.len()
    );
    assert_eq!(
        minutes.len() as i64,
        7 * 1440,
        "the last week, every minute"
    );
    assert!(
        hours.len() as i64 <= history::HOUR_DAYS * 24 + 1,
        "{} hour rows",
        hours.len()
    );
    assert!(hours.len() > 360 * 24, "a year of hours: {}", hours.len());
    store
        .connection()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    let bytes = db_bytes(dir.path());
    assert!(bytes < 3 * 1024 * 1024, "{bytes} bytes after a year");
    eprintln!("a year of history: {bytes} bytes");

    // Another year on: the bound holds still, nothing grows.
    let mut h = History::open(dir.path()).unwrap();
    for i in 0..(2 * 1440) {
        h.record(at(start + 2 * year + i * MINUTE_MS), sample(42.0, false))
            .unwrap();
    }
    h.flush().unwrap();
    let minutes = history::rows(store.connection(), None, Resolution::Minute, 0).unwrap();
    assert_eq!(
        minutes.len(),
        2 * 1440,
        "a clock jump forward leaves only the new days"
    );
}

#[test]
fn home_draws_the_history_and_the_csv_parses_and_it_survives_a_restart() {
    let now = now_ms() / MINUTE_MS * MINUTE_MS;
    let card = start_web(Setup::default().set("poll_rate_s", 1));
    // The last 6 hours before the card's start: on line, an hour on battery, a gap.
    {
        let mut h = History::open(&card.data).unwrap();
        for m in (60..360).rev() {
            if (100..130).contains(&m) {
                continue; // the gap: no sample
            }
            let on_battery = (200..260).contains(&m);
            h.record(at(now - m * MINUTE_MS), sample(40.0, on_battery))
                .unwrap();
        }
        h.flush().unwrap();
    }
    let mut admin = card.admin();
    let home = admin.get("/").body;
    assert!(home.contains("Load and battery charge (%)"));
    assert!(home.contains("Runtime on battery (min)"));
    assert!(home.contains("<svg"));
    let first = &home[home.find("<svg").unwrap()..];
    let first = &first[..first.find("</svg>").unwrap()];
    assert!(
        first.contains(history::chart::SHADE),
        "on battery is shaded"
    );
    let load = first.split("<path d=\"").nth(1).unwrap();
    let load = &load[..load.find('"').unwrap()];
    assert!(
        load.matches('M').count() >= 2,
        "the gap breaks the line: {load}"
    );
    let week = admin.get("/?history=7d").body;
    assert!(week.contains("Last 24 hours</a>"));

    // The card takes its own sample of the UPS as it runs.
    let p = admin.get("/history.csv");
    assert_eq!(p.status, 200);
    assert!(p.header("content-type").unwrap().starts_with("text/csv"));
    let mut lines = p.body.lines();
    assert_eq!(
        lines.next().unwrap(),
        "time_utc,load_pct,charge_pct,runtime_min,input_v,output_v,temp_c,on_battery"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 8));
    assert!(rows.iter().all(|r| r[0].len() == 20 && r[0].ends_with('Z')));
    assert_eq!(rows.iter().filter(|r| r[7] == "1").count(), 60);
    assert!(rows.len() >= 270);
    wait_for("the card's own sample", || {
        let body = admin.get("/history.csv").body;
        body.lines().count() > 271
    });
    let data = card.data.clone();
    drop(admin);
    let mut card = card;
    card.stop();

    // Stopped: its samples are on disk, and the next start shows them.
    let store = Store::open(&data).unwrap();
    let minutes = history::rows(store.connection(), None, Resolution::Minute, 0).unwrap();
    // The card's own: one a minute, so two when the run spans two turns of the minute (a
    // loaded machine).
    assert!(
        (271..=272).contains(&minutes.len()),
        "270 inserted and the card's own: {}",
        minutes.len()
    );
    let own = minutes.last().unwrap();
    assert!(
        own.0 >= now - MINUTE_MS,
        "the newest is the card's own sample"
    );
    assert_eq!(own.1.temp_c, Some(24.0));
    assert_eq!(own.1.charge_pct, Some(100.0));
    drop(store);
    drop(card);
}
