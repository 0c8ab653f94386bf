//! What the link thread tells everyone else: its state and counters, as atomics so readers
//! (pages, console, LEDs, tests) never hold it up.

use crate::ups::Tables;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Searching for the UPS's baud rate; requests get exception 0x0B.
    Detecting,
    /// The UPS answers.
    Up,
    /// The UPS stopped answering (after it had been found).
    Lost,
    /// The link thread has ended.
    Stopped,
}

#[derive(Default)]
pub struct LinkStatus {
    state: AtomicU8,
    baud: AtomicU32,
    /// A whole round of detection got no answer, and none has come since.
    not_found: AtomicBool,
    /// The configuration in force, for the sources: the serial timeout, the UPS's address.
    timeout_ms: AtomicU32,
    ups_slave: AtomicU8,
    pub requests: AtomicU64,
    pub answers: AtomicU64,
    pub exceptions: AtomicU64,
    pub timeouts: AtomicU64,
    pub bad_answers: AtomicU64,
    pub late_answers: AtomicU64,
    pub stale_bytes: AtomicU64,
    pub polls: AtomicU64,
    /// What the polling cycle last read from the UPS's tables.
    pub ups: Mutex<UpsTables>,
}

/// The UPS's tables as the link's polling cycle read them (see [`crate::ups::map::CYCLE`]).
#[derive(Debug, Clone, Default)]
pub struct UpsTables {
    /// The words of each table; emptied while the UPS is lost or not found.
    pub tables: Tables,
    /// Tables the UPS refused at every size (exception 02): a model with another map.
    pub refused: [bool; 4],
    /// Whole cycles read since the start; a reader compares it to see new figures.
    pub cycles: u64,
    /// When the last cycle ended (the card's wall clock).
    pub at: Option<SystemTime>,
    /// Table reads sent by the cycle since the start.
    pub reads: u64,
    /// Polling is off (`poll_rate_s = 0`): the tables are not read.
    pub polling_off: bool,
}

impl UpsTables {
    /// The UPS in one line, for the console's title screen.
    pub fn summary(&self, state: LinkState) -> String {
        let r = crate::ups::decode(&self.tables);
        let head = match (r.model, r.model_code) {
            (Some(name), _) => format!("UPS {name}"),
            (None, Some(code)) => format!("UPS model code {code}"),
            (None, None) => "UPS".to_string(),
        };
        let why = match state {
            LinkState::Lost => Some("communication lost"),
            LinkState::Detecting | LinkState::Stopped => Some("not found yet"),
            LinkState::Up if self.polling_off => Some("polling off, state not read"),
            LinkState::Up if !r.decoded() && r.model_code.is_some() => {
                Some("state not decoded for this model")
            }
            LinkState::Up if r.mode.is_none() => Some("state not read yet"),
            LinkState::Up => None,
        };
        if let Some(why) = why {
            return format!("{head}: {why}");
        }
        let n =
            |v: Option<f64>, unit: &str| v.map_or("—".to_string(), |v| format!("{v:.0} {unit}"));
        // The general alarm only says that there is another.
        let alarms = r
            .alarms
            .iter()
            .filter(|a| a.bit != crate::ups::map::alarm::GENERAL)
            .count();
        let alarms = match alarms {
            0 => "no alarm".to_string(),
            1 => "1 alarm".to_string(),
            n => format!("{n} alarms"),
        };
        format!(
            "{head}: {}, load {}, battery {}, runtime {}, {alarms}",
            r.mode.map_or("—", |m| m.words()),
            n(r.load_total, "%"),
            n(r.battery_charge, "%"),
            n(r.runtime_min, "min"),
        )
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub answers: u64,
    pub exceptions: u64,
    pub timeouts: u64,
    pub bad_answers: u64,
    pub late_answers: u64,
    pub stale_bytes: u64,
    pub polls: u64,
}

impl LinkStatus {
    pub fn state(&self) -> LinkState {
        match self.state.load(Relaxed) {
            0 => LinkState::Detecting,
            1 => LinkState::Up,
            2 => LinkState::Lost,
            _ => LinkState::Stopped,
        }
    }

    pub(super) fn set_state(&self, state: LinkState) {
        let v = match state {
            LinkState::Detecting => 0,
            LinkState::Up => 1,
            LinkState::Lost => 2,
            LinkState::Stopped => 3,
        };
        self.state.store(v, Relaxed);
    }

    /// Detecting, and a whole round of it went unanswered: the UPS's port is off, or
    /// another cable or address is wrong.
    pub fn not_found(&self) -> bool {
        self.not_found.load(Relaxed)
    }

    pub(super) fn set_not_found(&self, not_found: bool) {
        self.not_found.store(not_found, Relaxed);
    }

    /// The detected (or fixed) baud rate; 0 while none has been found.
    pub fn baud(&self) -> u32 {
        self.baud.load(Relaxed)
    }

    pub(super) fn set_baud(&self, baud: u32) {
        self.baud.store(baud, Relaxed);
    }

    /// The serial timeout in force.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms.load(Relaxed)))
    }

    /// The UPS's slave number in force.
    pub fn ups_slave(&self) -> u8 {
        self.ups_slave.load(Relaxed)
    }

    pub(super) fn set_config(&self, timeout: Duration, ups_slave: u8) {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        self.timeout_ms.store(ms, Relaxed);
        self.ups_slave.store(ups_slave, Relaxed);
    }

    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Relaxed),
            answers: self.answers.load(Relaxed),
            exceptions: self.exceptions.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            bad_answers: self.bad_answers.load(Relaxed),
            late_answers: self.late_answers.load(Relaxed),
            stale_bytes: self.stale_bytes.load(Relaxed),
            polls: self.polls.load(Relaxed),
        }
    }
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Relaxed);
}
