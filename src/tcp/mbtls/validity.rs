//! The time a client certificate's dates are judged by. A card without a real-time clock
//! may start after a power cut with its clock at 1970, or wherever it stopped, until NTP
//! or the user sets it; judged by that clock, every certificate would look not yet valid.
//! So until the time is set, certificates are judged by the latest of: the card's clock,
//! this firmware's build time, and the time of the last event logged before this start.
//! The real time is not earlier than any of them, unless the clock was wrong (ahead) when
//! that event was logged: once NTP or the user sets the time, the clock alone decides.

use crate::clock::{unix_s, CardClock};
use crate::firmware::version::BUILT_UNIX_S;
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;
use std::sync::Arc;
use std::time::Duration;

/// rustls's clock for the handshakes of port 802.
#[derive(Debug)]
pub struct ValidityTime {
    pub clock: Arc<CardClock>,
    /// Unix seconds of the last event written before this start; None: an empty log.
    pub last_event_s: Option<i64>,
}

impl ValidityTime {
    /// Unix seconds to judge by now.
    pub fn now_s(&self) -> i64 {
        let clock = unix_s(self.clock.now());
        if self.clock.is_set() {
            return clock;
        }
        judged_at(clock, BUILT_UNIX_S, self.last_event_s)
    }
}

/// The latest of the clock, the build time and the last event.
pub fn judged_at(clock_s: i64, built_s: i64, last_event_s: Option<i64>) -> i64 {
    clock_s.max(built_s).max(last_event_s.unwrap_or(i64::MIN))
}

impl TimeProvider for ValidityTime {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = u64::try_from(self.now_s()).ok()?;
        Some(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_of_clock_build_and_last_event_until_the_time_is_set() {
        assert_eq!(judged_at(0, 100, Some(50)), 100);
        assert_eq!(judged_at(0, 100, Some(500)), 500);
        assert_eq!(judged_at(900, 100, Some(500)), 900);
        assert_eq!(judged_at(-5, 100, None), 100);

        let clock = Arc::new(CardClock::default());
        let now = unix_s(clock.now());
        // The clock a day behind the last event: the event decides.
        clock.shift(-86_400 * 1_000_000_000);
        let t = ValidityTime {
            clock: clock.clone(),
            last_event_s: Some(now),
        };
        assert!(t.now_s() >= now);
        // Set (by NTP or the user): the clock alone.
        clock.mark_set();
        assert!(t.now_s() < now - 86_000);
    }
}
