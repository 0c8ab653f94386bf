//! Failed logins slow down the address they come from: a few tries are free, then each
//! failure doubles the wait before the next try, up to [`MAX_WAIT`]. Never a lock-out: the
//! wait always ends, and a success or a quiet quarter of an hour forgets the failures.
//!
//! A try that comes before the wait is over is refused without checking the password, so
//! it costs neither a hash nor a thread: nobody sleeps here.

use super::Peer;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures allowed without any wait (typos).
pub const FREE_TRIES: u32 = 3;
/// The wait after the first failure past the free ones; it doubles with each further one.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Failures are forgotten after this long without a new one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered; past this the one quiet longest is forgotten, so a flood from many
/// addresses cannot grow memory.
const CAPACITY: usize = 1024;

struct Entry {
    failures: u32,
    last: Instant,
    until: Instant,
}

#[derive(Default)]
pub struct Throttle {
    peers: HashMap<Peer, Entry>,
}

impl Throttle {
    /// How long `peer` must still wait before its next try; zero when it may try now.
    pub fn wait(&mut self, peer: &Peer, now: Instant) -> Duration {
        self.forget_old(now);
        self.peers
            .get(peer)
            .map_or(Duration::ZERO, |e| e.until.saturating_duration_since(now))
    }

    /// Counts a failure; returns the wait it imposes (zero for the free tries).
    pub fn fail(&mut self, peer: &Peer, now: Instant) -> Duration {
        self.forget_old(now);
        if !self.peers.contains_key(peer) && self.peers.len() >= CAPACITY {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(p, _)| *p)
            {
                self.peers.remove(&oldest);
            }
        }
        let e = self.peers.entry(*peer).or_insert(Entry {
            failures: 0,
            last: now,
            until: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        let wait = wait_after(e.failures);
        e.until = now + wait;
        wait
    }

    /// A success forgets the address's failures.
    pub fn clear(&mut self, peer: &Peer) {
        self.peers.remove(peer);
    }

    fn forget_old(&mut self, now: Instant) {
        self.peers
            .retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
    }
}

/// The wait imposed after `failures` failures in a row.
pub fn wait_after(failures: u32) -> Duration {
    if failures <= FREE_TRIES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_TRIES - 1).min(16);
    (FIRST_WAIT * 2u32.pow(doublings)).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn peer(n: u8) -> Peer {
        Peer::Net(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    #[test]
    fn waits_grow_and_are_capped() {
        let waits: Vec<u64> = (1..=12).map(|n| wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(wait_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn an_address_waits_alone_and_the_wait_ends() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..FREE_TRIES {
            assert_eq!(t.fail(&peer(1), now), Duration::ZERO);
        }
        assert_eq!(t.fail(&peer(1), now), FIRST_WAIT);
        assert_eq!(t.wait(&peer(1), now), FIRST_WAIT);
        assert_eq!(
            t.wait(&peer(2), now),
            Duration::ZERO,
            "others are not held up"
        );
        assert_eq!(t.wait(&peer(1), now + FIRST_WAIT), Duration::ZERO);
        t.clear(&peer(1));
        assert_eq!(t.fail(&peer(1), now), Duration::ZERO, "a success forgets");
        // A quiet quarter of an hour forgets too.
        for _ in 0..10 {
            t.fail(&peer(3), now);
        }
        assert_eq!(t.wait(&peer(3), now + FORGET_AFTER), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..(CAPACITY as u32 + 100) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            t.fail(&Peer::Net(ip), now + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.peers.len(), CAPACITY);
    }
}
