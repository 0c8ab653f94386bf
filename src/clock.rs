//! The card's clock: the system's time plus an offset, so that NTP and the user can set
//! the time that stamps events without touching the system's clock. It sits below the
//! event log, which stamps with it; the board's NTP client moves it.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock that stamps events: system time plus an offset.
#[derive(Debug, Default)]
pub struct CardClock {
    offset_ns: AtomicI64,
}

impl CardClock {
    pub fn now(&self) -> SystemTime {
        from_unix_ns(self.now_ns())
    }

    /// Unix nanoseconds by the card's clock.
    pub fn now_ns(&self) -> i64 {
        unix_ns(SystemTime::now()).saturating_add(self.offset_ns.load(Relaxed))
    }

    /// The card's clock minus the system's.
    pub fn offset(&self) -> i64 {
        self.offset_ns.load(Relaxed)
    }

    pub(crate) fn shift(&self, by_ns: i64) {
        self.offset_ns.fetch_add(by_ns, Relaxed);
    }
}

pub fn unix_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

pub fn from_unix_ns(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}
