//! The UPS's own events in the event log, from the card's polling of the simulated UPS:
//! on battery and back on line, an alarm raised and cleared, each once per change with
//! the figures at that moment, and no alarm "cleared" while the UPS is lost.

use crate::common;

use common::{start_up, wait_for, Card, Setup};
use modbus_card::link::LinkState;
use modbus_card::sim::Fault;
use modbus_card::ups::map::alarm;

fn count(card: &Card, kind: &str) -> usize {
    card.events().iter().filter(|e| e.kind == kind).count()
}

/// Waits for `n` more whole polling cycles.
fn cycles(card: &Card, n: u64) {
    let status = &card.service().link.status;
    let from = status.ups.lock().cycles;
    wait_for(&format!("{n} cycles"), || {
        status.ups.lock().cycles >= from + n
    });
}

#[test]
fn mains_failure_and_return_are_logged_once_each_with_the_figures() {
    let card = start_up(Setup::default().set("poll_rate_s", 1));
    cycles(&card, 3);
    assert_eq!(
        count(&card, "ups_on_line"),
        0,
        "on line at start is no event"
    );

    card.sim.set_mains(false);
    let e = card.wait_event("ups_on_battery");
    assert!(
        e.message.starts_with("UPS on battery (load "),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("runtime ") && e.message.contains(" min)"),
        "{}",
        e.message
    );
    cycles(&card, 3);
    assert_eq!(
        count(&card, "ups_on_battery"),
        1,
        "once per change, not per poll"
    );

    card.sim.set_mains(true);
    let e = card.wait_event("ups_on_line");
    assert!(e.message.starts_with("UPS back on line ("), "{}", e.message);
    cycles(&card, 3);
    assert_eq!(count(&card, "ups_on_line"), 1);
    assert_eq!(count(&card, "ups_on_battery"), 1);
}

#[test]
fn an_alarm_is_raised_and_cleared_but_not_while_the_ups_is_lost() {
    let card = start_up(Setup::default().set("poll_rate_s", 1));
    cycles(&card, 2);
    card.sim.set_alarm(alarm::OVERLOAD, true);
    let e = card.wait_event("ups_alarm_raised");
    assert!(
        e.message.starts_with("UPS alarm raised: Overload ("),
        "{}",
        e.message
    );
    cycles(&card, 3);
    assert_eq!(
        count(&card, "ups_alarm_raised"),
        1,
        "the general alarm is no line of its own"
    );

    // The UPS falls silent, and its alarm ends meanwhile: nothing is "cleared" while lost.
    card.sim.set_fault(Fault::Silent);
    card.wait_state(LinkState::Lost);
    card.sim.set_alarm(alarm::OVERLOAD, false);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(count(&card, "ups_alarm_cleared"), 0);

    // Back: the alarm is seen gone, and that is said once.
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    let e = card.wait_event("ups_alarm_cleared");
    assert!(
        e.message.starts_with("UPS alarm cleared: Overload ("),
        "{}",
        e.message
    );
    cycles(&card, 3);
    assert_eq!(count(&card, "ups_alarm_cleared"), 1);
}

#[test]
fn the_console_title_screen_has_the_ups_in_one_line() {
    let card = common::console::card(Setup::default().set("poll_rate_s", 1));
    card.wait_state(LinkState::Up);
    cycles(&card, 1);
    card.sim.set_mains(false);
    let status = &card.service().link.status;
    wait_for("on battery read", || {
        modbus_card::ups::decode(&status.ups.lock().tables).mode
            == Some(modbus_card::ups::Mode::OnBattery)
    });
    let mut t = common::console::Screen::console(&card);
    t.first_admin_login();
    let menu = t.transcript.clone();
    let line = menu
        .lines()
        .find(|l| l.starts_with("UPS DIGYS: "))
        .unwrap_or_else(|| panic!("no UPS line: {menu}"));
    assert!(
        line.contains("On battery, load ") && line.contains("battery "),
        "{line}"
    );
}
