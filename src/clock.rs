//! The card's clock: the system's time plus an offset, so that NTP and the user can set
//! the time that stamps events without touching the system's clock. It sits below the
//! event log, which stamps with it; the board's NTP client moves it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock that stamps events: system time plus an offset.
#[derive(Debug, Default)]
pub struct CardClock {
    offset_ns: AtomicI64,
    /// NTP or the user set it since the service started.
    set: AtomicBool,
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

    /// NTP or the user set the time (the card's clock or the system's): it is right.
    pub(crate) fn mark_set(&self) {
        self.set.store(true, Relaxed);
    }

    /// Whether NTP or the user set the time since the service started.
    pub fn is_set(&self) -> bool {
        self.set.load(Relaxed)
    }
}

/// Unix time in nanoseconds, negative before 1970, saturating (year 2262).
pub fn unix_ns(t: SystemTime) -> i64 {
    since_epoch(t, Duration::as_nanos)
}

/// Unix time in milliseconds, negative before 1970 (rounded towards 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    since_epoch(t, Duration::as_millis)
}

/// Unix time in seconds, negative before 1970 (rounded towards 1970).
pub fn unix_s(t: SystemTime) -> i64 {
    since_epoch(t, |d| u128::from(d.as_secs()))
}

fn since_epoch(t: SystemTime, unit: fn(&Duration) -> u128) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(unit(&d)).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(unit(&e.duration())).map_or(i64::MIN, |n| -n),
    }
}

pub fn from_unix_ns(ns: i64) -> SystemTime {
    from_epoch(ns, Duration::from_nanos(ns.unsigned_abs()))
}

pub fn from_unix_ms(ms: i64) -> SystemTime {
    from_epoch(ms, Duration::from_millis(ms.unsigned_abs()))
}

fn from_epoch(signed: i64, d: Duration) -> SystemTime {
    if signed >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}
