//! The UPS's own events from its readings: on battery, back on line, on bypass, battery
//! low, each alarm raised and cleared. Pure: one [`Reading`] per poll in, the changes out.
//!
//! A change counts once it has been seen in [`HOLD`] polls in a row, so a bit that flickers
//! for one poll logs nothing; and each change is given once, not once per poll. Only what
//! was read is judged: a table not read (the UPS lost, polling off, a table refused) is no
//! evidence that an alarm cleared, so nothing is "cleared" while the UPS is lost.

use super::decode::{Alarm, Mode, Reading};
use super::map::{alarm, Bit};
use std::collections::BTreeMap;

/// Polls in a row a new state must be seen before it counts.
pub const HOLD: u32 = 2;

/// A change worth an event, with the figures at that moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The load moved: to `to`, from `from` (`None` at the first reading).
    Mode {
        from: Option<Mode>,
        to: Mode,
    },
    BatteryLow,
    AlarmRaised(Alarm),
    AlarmCleared(Alarm),
}

/// One condition followed through the polls: what counts now, and how many polls in a row
/// it has seemed otherwise.
#[derive(Debug, Clone, Copy, Default)]
struct Held<T> {
    counted: T,
    seen: T,
    streak: u32,
}

impl<T: Copy + PartialEq> Held<T> {
    fn new(v: T) -> Held<T> {
        Held {
            counted: v,
            seen: v,
            streak: 0,
        }
    }

    /// Feeds one poll's value; the old value if it now counts as changed.
    fn feed(&mut self, v: T) -> Option<T> {
        if v == self.counted {
            self.streak = 0;
            return None;
        }
        if v == self.seen && self.streak > 0 {
            self.streak += 1;
        } else {
            self.seen = v;
            self.streak = 1;
        }
        if self.streak >= HOLD {
            self.streak = 0;
            return Some(std::mem::replace(&mut self.counted, v));
        }
        None
    }
}

#[derive(Debug, Default)]
pub struct Changes {
    mode: Option<Held<Option<Mode>>>,
    low: Held<bool>,
    alarms: BTreeMap<(u16, u16), (Alarm, Held<bool>)>,
}

impl Changes {
    pub fn new() -> Changes {
        Changes {
            mode: None,
            low: Held::new(false),
            alarms: BTreeMap::new(),
        }
    }

    /// The readings stopped (the UPS lost, polling off): half-seen changes are forgotten,
    /// what counted stays.
    pub fn pause(&mut self) {
        if let Some(m) = &mut self.mode {
            m.streak = 0;
        }
        self.low.streak = 0;
        for (_, held) in self.alarms.values_mut() {
            held.streak = 0;
        }
    }

    /// One poll's reading. `alarms_read`: the alarm table was read this poll (else the
    /// alarms are not judged).
    pub fn feed(&mut self, r: &Reading, alarms_read: bool) -> Vec<Change> {
        let mut out = Vec::new();
        if !r.decoded() {
            return out;
        }
        if let Some(mode) = r.mode {
            let held = self.mode.get_or_insert_with(|| Held::new(None));
            if let Some(from) = held.feed(Some(mode)) {
                // At the first reading, only a state out of the ordinary is worth a line.
                if from.is_some() || mode != Mode::OnLine {
                    out.push(Change::Mode { from, to: mode });
                }
            }
            if self.low.feed(r.battery_low) == Some(false) {
                out.push(Change::BatteryLow);
            }
        }
        if alarms_read {
            let active: Vec<Alarm> = r
                .alarms
                .iter()
                .filter(|a| a.bit != alarm::GENERAL)
                .copied()
                .collect();
            for a in &active {
                self.alarms
                    .entry(key(a.bit))
                    .or_insert_with(|| (*a, Held::new(false)));
            }
            for (k, (a, held)) in self.alarms.iter_mut() {
                let on = active.iter().any(|x| key(x.bit) == *k);
                match held.feed(on) {
                    Some(false) => out.push(Change::AlarmRaised(*a)),
                    Some(true) => out.push(Change::AlarmCleared(*a)),
                    None => {}
                }
            }
        }
        out
    }
}

fn key(b: Bit) -> (u16, u16) {
    (b.addr, b.mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ups::map::{alarm, model_name};

    fn reading(mode: Mode, alarms: &[Bit]) -> Reading {
        Reading {
            model: model_name(130),
            model_code: Some(130),
            mode: Some(mode),
            alarms: alarms
                .iter()
                .map(|&bit| Alarm {
                    bit,
                    name: "x",
                    words: "x",
                })
                .collect(),
            ..Reading::default()
        }
    }

    #[test]
    fn a_change_counts_after_two_polls_and_once() {
        let mut c = Changes::new();
        assert!(c.feed(&reading(Mode::OnLine, &[]), true).is_empty());
        assert!(
            c.feed(&reading(Mode::OnLine, &[]), true).is_empty(),
            "on line at start: no line"
        );
        assert!(
            c.feed(&reading(Mode::OnBattery, &[]), true).is_empty(),
            "one poll is no change"
        );
        let got = c.feed(&reading(Mode::OnBattery, &[]), true);
        assert_eq!(
            got,
            vec![Change::Mode {
                from: Some(Mode::OnLine),
                to: Mode::OnBattery
            }]
        );
        for _ in 0..5 {
            assert!(
                c.feed(&reading(Mode::OnBattery, &[]), true).is_empty(),
                "once, not per poll"
            );
        }
    }

    #[test]
    fn a_flicker_of_one_poll_logs_nothing() {
        let mut c = Changes::new();
        for _ in 0..2 {
            c.feed(&reading(Mode::OnLine, &[]), true);
        }
        assert!(c
            .feed(&reading(Mode::OnBypass, &[alarm::OVERLOAD]), true)
            .is_empty());
        for _ in 0..3 {
            assert!(c.feed(&reading(Mode::OnLine, &[]), true).is_empty());
        }
    }

    #[test]
    fn alarms_raise_and_clear_but_not_while_unread() {
        let mut c = Changes::new();
        c.feed(
            &reading(Mode::OnLine, &[alarm::GENERAL, alarm::OVERLOAD]),
            true,
        );
        let got = c.feed(
            &reading(Mode::OnLine, &[alarm::GENERAL, alarm::OVERLOAD]),
            true,
        );
        assert_eq!(
            got.len(),
            1,
            "the general alarm is not a line of its own: {got:?}"
        );
        assert!(matches!(got[0], Change::AlarmRaised(a) if a.bit == alarm::OVERLOAD));
        // Lost: nothing read, nothing cleared.
        c.pause();
        for _ in 0..3 {
            assert!(c.feed(&reading(Mode::OnLine, &[]), false).is_empty());
        }
        c.feed(&reading(Mode::OnLine, &[]), true);
        let got = c.feed(&reading(Mode::OnLine, &[]), true);
        assert!(matches!(got[..], [Change::AlarmCleared(a)] if a.bit == alarm::OVERLOAD));
    }

    #[test]
    fn an_undecoded_model_gives_no_changes() {
        let mut c = Changes::new();
        let mut r = reading(Mode::OnBattery, &[]);
        r.model = None;
        for _ in 0..3 {
            assert!(c.feed(&r, true).is_empty());
        }
    }

    #[test]
    fn battery_low_is_said_once_when_it_comes() {
        let mut c = Changes::new();
        let mut r = reading(Mode::OnBattery, &[]);
        c.feed(&r, true);
        c.feed(&r, true);
        r.battery_low = true;
        assert!(c.feed(&r, true).is_empty());
        assert_eq!(c.feed(&r, true), vec![Change::BatteryLow]);
        assert!(c.feed(&r, true).is_empty());
        r.battery_low = false;
        c.feed(&r, true);
        assert!(c.feed(&r, true).is_empty(), "its end is no event");
    }
}
