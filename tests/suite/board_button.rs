//! The reset button as a user presses it: `input_event` records written to a FIFO the
//! real service reads as its button device, held for each duration of docs/board.md, with the
//! LEDs showing what a release would do while it is held.

use crate::board_fixture;
use crate::common;

use board_fixture::*;
use common::{start, wait_for, Card, Setup, PATIENCE};
use modbus_card::store::Store;
use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

struct Rig {
    card: Card,
    sys: Sysfs,
    button: File,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let sys = Sysfs::new(&dir.path().join("sys"));
    let fifo = fifo(dir.path(), "event0");
    let mut setup = Setup::default().set("button_device", fifo.display());
    setup.settings.extend(sys.settings());
    let card = start(setup);
    // The service holds the read end open, so this does not block.
    let button = File::options().write(true).open(&fifo).unwrap();
    Rig {
        card,
        sys,
        button,
        _dir: dir,
    }
}

impl Rig {
    fn press(&mut self) -> Instant {
        self.button.write_all(&key(1)).unwrap();
        Instant::now()
    }

    fn release(&mut self) {
        self.button.write_all(&key(0)).unwrap();
    }

    /// Until the four LEDs show (rs485 green, yellow, net green, yellow).
    fn wait_leds(&self, what: &str, want: [Seen; 4]) {
        let start = Instant::now();
        loop {
            let seen = self.sys.observe(
                &[GREEN, YELLOW, NET_GREEN, NET_YELLOW],
                Duration::from_millis(700),
            );
            if seen.iter().zip(&want).all(|(s, w)| s.like(w)) {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "LEDs never showed {what}: {seen:?}"
            );
        }
    }

    /// Network LEDs are kernel-timed in the fixture: their trigger says "timer".
    fn net_flashing(&self) -> bool {
        self.sys.read(NET_GREEN, "trigger") == "timer"
            && self.sys.read(NET_YELLOW, "trigger") == "timer"
    }

    fn kinds(&self) -> Vec<String> {
        self.card.events().into_iter().map(|e| e.kind).collect()
    }
}

/// Sleeps until `at`.
fn until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn held_two_seconds_restarts() {
    let mut r = rig();
    // At 100 Mb/s the network pair normally shows yellow, so the green of a pending
    // restart stands out.
    r.sys.set_net("speed", "100");
    r.card.wait_state(modbus_card::link::LinkState::Up);
    r.wait_leds("the link", [Seen::On, Seen::Off, Seen::Off, Seen::On]);
    // Too short: nothing.
    let t = r.press();
    until(t + Duration::from_millis(400));
    r.release();
    let restarts = r.card.service().restarts().clone();
    assert!(restarts.recv_timeout(Duration::from_secs(2)).is_err());

    let t = r.press();
    // Held past 1 s: a release would restart; the green LEDs say so.
    until(t + Duration::from_millis(1100));
    r.wait_leds(
        "restart pending",
        [Seen::On, Seen::Off, Seen::On, Seen::Off],
    );
    until(t + Duration::from_secs(2));
    r.release();
    let request = restarts.recv_timeout(PATIENCE).expect("no restart asked");
    assert!(request.by.starts_with("button, held 2."), "{}", request.by);
    let logged = r.card.wait_event("restart");
    assert_eq!(logged.message, format!("Restart ({})", request.by));
    // Back to the link's own pattern once released.
    r.wait_leds("the link again", [Seen::On, Seen::Off, Seen::Off, Seen::On]);
    assert!(!r.kinds().contains(&"factory_reset".to_string()));
}

#[test]
fn held_four_seconds_resets_accounts() {
    let mut r = rig();
    let t = r.press();
    until(t + Duration::from_millis(3200));
    // Yellow LEDs: accounts reset pending.
    r.wait_leds(
        "accounts reset pending",
        [Seen::Off, Seen::On, Seen::Off, Seen::On],
    );
    assert!(t.elapsed() < Duration::from_millis(5800), "test too slow");
    r.release();
    let logged = r.card.wait_event("accounts_reset");
    assert!(
        logged
            .message
            .starts_with("Accounts and passwords reset to default (button, held "),
        "{}",
        logged.message
    );
    assert!(!r.kinds().contains(&"restart".to_string()));
}

#[test]
fn held_seven_seconds_resets_to_factory_settings_and_restarts() {
    let mut r = rig();
    let who = crate::common::admin_who();
    let live = &r.card.service().live;
    live.change(&[("poll_rate_s", "7"), ("rs485_slave", "9")], &who, false)
        .unwrap();
    let t = r.press();
    until(t + Duration::from_millis(6300));
    // Every LED flashing: factory reset pending.
    wait_for("all LEDs flashing", || r.net_flashing());
    let seen = r.sys.observe(&[GREEN, YELLOW], Duration::from_millis(1200));
    assert!(seen.iter().all(Seen::is_flash), "{seen:?}");
    r.release();
    let request = r
        .card
        .service()
        .restarts()
        .recv_timeout(PATIENCE)
        .expect("no restart after the factory reset");
    assert!(request.by.starts_with("button, held "), "{}", request.by);
    let logged = r.card.wait_event("factory_reset");
    assert_eq!(
        logged.message,
        format!("Configuration reset to factory settings ({})", request.by)
    );
    // Factory values, stored and in force, but the board's devices (the button stays).
    let stored = Store::open(&r.card.data).unwrap().load_settings().unwrap();
    let running = r.card.service().settings();
    for s in [&stored, &*running] {
        assert_eq!((s.poll_rate_s, s.rs485_slave), (10, 1));
    }
    assert!(running.button_device.ends_with("event0"));
    // Logged before it acted: the factory reset comes before the restart it asks for.
    r.card.wait_event("restart");
    let kinds = r.kinds();
    let pos = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(pos("factory_reset") > pos("restart"), "{kinds:?}");
}
