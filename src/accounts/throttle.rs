//! Failed logins slow down whoever makes them; nobody is ever locked out. Three counts, each
//! with its own [`Rule`]:
//!
//! - [`PAIR`]: the failures of one account from one address. A few tries are free, then
//!   each failure doubles the wait before that address may try that account again. A
//!   success forgets these failures and no others: knowing one user's password buys no
//!   guesses at another's.
//! - [`ADDRESS`]: every failure from one address, whatever the user name, so that trying
//!   many names from one place is slowed too.
//! - [`ACCOUNT`]: the failures against one account from every address, so that an attacker
//!   spreading over many addresses is slowed as well; its wait is capped low, so that it
//!   cannot keep the real user out, and an address that logged in to that account within
//!   [`TRUSTED_FOR`] is not slowed by it at all, nor is the serial console (a hand on the
//!   card).
//!
//! A try takes its place before the password is checked ([`Throttle::begin`]) and counts as
//! a failure until it is known to have succeeded ([`Throttle::succeeded`]): tries made at
//! the same moment cannot overrun the allowance, and a try that never finishes counts as
//! failed. A try that comes before the wait is over is refused without checking the
//! password, so it costs neither a hash nor a thread: nobody sleeps here.
//!
//! Everything is in memory: a restart forgets the failures and which addresses logged in.

use super::Peer;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How failures turn into a wait: `free` failures cost nothing, the next one imposes
/// `first`, and each further one doubles the wait, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub free: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Rule {
    /// The wait imposed after `failures` failures in a row.
    pub fn wait(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free - 1).min(16);
        (self.first * 2u32.pow(doublings)).min(self.max)
    }
}

/// One account from one address: three free tries (typos), then 1 s doubling up to 60 s.
pub const PAIR: Rule = Rule {
    free: 3,
    first: Duration::from_secs(1),
    max: Duration::from_secs(60),
};
/// One address, all user names together: room for a few people behind one address (a
/// NAT) to mistype, then as [`PAIR`].
pub const ADDRESS: Rule = Rule {
    free: 10,
    first: Duration::from_secs(1),
    max: Duration::from_secs(60),
};
/// One account, all addresses together: capped at 10 s, so an attacker on many addresses
/// makes the account's real user wait 10 s at worst (and not at all from an address the
/// user logged in from before).
pub const ACCOUNT: Rule = Rule {
    free: 10,
    first: Duration::from_secs(1),
    max: Duration::from_secs(10),
};
/// An address that logged in to an account is spared the account's wait for this long
/// after its last login: a user's usual computers, over a month of occasional visits.
pub const TRUSTED_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Failures are forgotten after this long without a new one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Entries kept in each count; past this the one with the fewest failures (the quietest
/// among equals) is forgotten, so a flood of names or addresses cannot grow memory, nor
/// push out the count of an account under attack.
const CAPACITY: usize = 1024;
/// (address, account) logins remembered; past this the oldest is forgotten.
const TRUSTED_CAPACITY: usize = 256;
/// User names are counted by their first bytes: no account has a longer name, and a
/// typed name of any length costs the same memory.
const NAME_BYTES: usize = 32;

/// Which count holds a try back: what the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// Failures from this address ([`PAIR`] or [`ADDRESS`]).
    Address,
    /// Failures against this account from anywhere ([`ACCOUNT`]).
    Account,
}

/// A wait still to run, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub left: Duration,
    pub by: By,
}

impl Wait {
    const NONE: Wait = Wait {
        left: Duration::ZERO,
        by: By::Address,
    };

    fn longest(self, other: Wait) -> Wait {
        if other.left > self.left {
            other
        } else {
            self
        }
    }
}

/// A try that has taken its place: end it with [`Throttle::failed`],
/// [`Throttle::succeeded`] or [`Throttle::release`]. Dropped, it stays counted as failed.
#[must_use]
#[derive(Debug)]
pub struct Try {
    peer: Peer,
    account: String,
}

#[derive(Debug)]
struct Count {
    failures: u32,
    last: Instant,
    until: Instant,
}

impl Count {
    fn left(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }

    /// One more failure, its wait starting `now`.
    fn add(&mut self, rule: Rule, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.restart(rule, now);
    }

    /// The wait of the failures counted so far starts again `now` (a try's place was taken
    /// before its hash; its failure is known after).
    fn restart(&mut self, rule: Rule, now: Instant) {
        self.last = now;
        self.until = self.until.max(now + rule.wait(self.failures));
    }

    /// `n` fewer failures; the wait shrinks to what the others impose. True when none are
    /// left.
    fn remove(&mut self, n: u32, rule: Rule) -> bool {
        self.failures = self.failures.saturating_sub(n);
        self.until = self.until.min(self.last + rule.wait(self.failures));
        self.failures == 0
    }
}

#[derive(Default)]
pub struct Throttle {
    pairs: HashMap<(Peer, String), Count>,
    addresses: HashMap<Peer, Count>,
    accounts: HashMap<String, Count>,
    /// When each address last logged in to each account.
    trusted: HashMap<(Peer, String), Instant>,
}

impl Throttle {
    /// Takes a place for a try of `account` from `peer`, or says how long it must wait.
    pub fn begin(&mut self, peer: Peer, account: &str, now: Instant) -> Result<Try, Wait> {
        self.forget_old(now);
        let account = name_key(account);
        let wait = self.wait(peer, &account, now);
        if !wait.left.is_zero() {
            return Err(wait);
        }
        count(&mut self.pairs, (peer, account.clone()), now).add(PAIR, now);
        count(&mut self.addresses, peer, now).add(ADDRESS, now);
        count(&mut self.accounts, account.clone(), now).add(ACCOUNT, now);
        Ok(Try { peer, account })
    }

    /// The password was wrong: the try stays counted, its waits starting now. Returns
    /// the wait this address now has before its next try of the account.
    pub fn failed(&mut self, t: Try, now: Instant) -> Wait {
        if let Some(c) = self.pairs.get_mut(&(t.peer, t.account.clone())) {
            c.restart(PAIR, now);
        }
        if let Some(c) = self.addresses.get_mut(&t.peer) {
            c.restart(ADDRESS, now);
        }
        if let Some(c) = self.accounts.get_mut(&t.account) {
            c.restart(ACCOUNT, now);
        }
        self.wait(t.peer, &t.account, now)
    }

    /// The password was right: the address's failures for this account are forgotten
    /// (and no others), and the address is trusted with the account from now on.
    pub fn succeeded(&mut self, t: Try, now: Instant) {
        let key = (t.peer, t.account);
        let failures = self.pairs.remove(&key).map_or(1, |c| c.failures);
        uncount(&mut self.addresses, &key.0, failures, ADDRESS);
        uncount(&mut self.accounts, &key.1, 1, ACCOUNT);
        if !self.trusted.contains_key(&key) && self.trusted.len() >= TRUSTED_CAPACITY {
            if let Some(oldest) = self
                .trusted
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            {
                self.trusted.remove(&oldest);
            }
        }
        self.trusted.insert(key, now);
    }

    /// The password could not be checked (the accounts could not be read): the try is
    /// not counted.
    pub fn release(&mut self, t: Try) {
        let key = (t.peer, t.account);
        uncount(&mut self.pairs, &key, 1, PAIR);
        uncount(&mut self.addresses, &key.0, 1, ADDRESS);
        uncount(&mut self.accounts, &key.1, 1, ACCOUNT);
    }

    /// The longest wait that holds back a try of `account` (a name key) from `peer`.
    fn wait(&self, peer: Peer, account: &str, now: Instant) -> Wait {
        let left = |c: Option<&Count>| c.map_or(Duration::ZERO, |c| c.left(now));
        let by_address = Wait {
            left: left(self.pairs.get(&(peer, account.to_owned())))
                .max(left(self.addresses.get(&peer))),
            by: By::Address,
        };
        let by_account = if self.spared(peer, account, now) {
            Wait::NONE
        } else {
            Wait {
                left: left(self.accounts.get(account)),
                by: By::Account,
            }
        };
        by_address.longest(by_account)
    }

    /// Whether `peer` is spared the failures others make against `account`.
    fn spared(&self, peer: Peer, account: &str, now: Instant) -> bool {
        peer == Peer::Serial
            || self
                .trusted
                .get(&(peer, account.to_owned()))
                .is_some_and(|at| now.saturating_duration_since(*at) < TRUSTED_FOR)
    }

    fn forget_old(&mut self, now: Instant) {
        let recent = |c: &Count| now.saturating_duration_since(c.last) < FORGET_AFTER;
        self.pairs.retain(|_, c| recent(c));
        self.addresses.retain(|_, c| recent(c));
        self.accounts.retain(|_, c| recent(c));
        self.trusted
            .retain(|_, at| now.saturating_duration_since(*at) < TRUSTED_FOR);
    }
}

/// The count of `key`, made (with room made for it) if there is none.
fn count<K: Hash + Eq + Clone>(map: &mut HashMap<K, Count>, key: K, now: Instant) -> &mut Count {
    if !map.contains_key(&key) && map.len() >= CAPACITY {
        if let Some(least) = map
            .iter()
            .min_by_key(|(_, c)| (c.failures, c.last))
            .map(|(k, _)| k.clone())
        {
            map.remove(&least);
        }
    }
    map.entry(key).or_insert(Count {
        failures: 0,
        last: now,
        until: now,
    })
}

/// `n` failures fewer for `key`; its count goes when none are left.
fn uncount<K: Hash + Eq>(map: &mut HashMap<K, Count>, key: &K, n: u32, rule: Rule) {
    if map.get_mut(key).is_some_and(|c| c.remove(n, rule)) {
        map.remove(key);
    }
}

/// The name a try is counted under: its first [`NAME_BYTES`] bytes.
fn name_key(name: &str) -> String {
    let mut end = name.len().min(NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn peer(n: u8) -> Peer {
        Peer::Net(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    /// A wrong password for `account` from `peer` at `now`; the wait it leaves.
    fn fail(t: &mut Throttle, p: Peer, account: &str, now: Instant) -> Result<Wait, Wait> {
        let tried = t.begin(p, account, now)?;
        Ok(t.failed(tried, now))
    }

    fn succeed(t: &mut Throttle, p: Peer, account: &str, now: Instant) -> Result<(), Wait> {
        let tried = t.begin(p, account, now)?;
        t.succeeded(tried, now);
        Ok(())
    }

    #[test]
    fn waits_grow_and_are_capped() {
        let waits = |rule: Rule| -> Vec<u64> { (1..=16).map(|n| rule.wait(n).as_secs()).collect() };
        assert_eq!(
            waits(PAIR),
            [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60]
        );
        assert_eq!(
            waits(ACCOUNT),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 10, 10]
        );
        for rule in [PAIR, ADDRESS, ACCOUNT] {
            assert_eq!(rule.wait(u32::MAX), rule.max);
        }
    }

    #[test]
    fn an_address_waits_alone_and_the_wait_ends() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..PAIR.free {
            assert_eq!(
                fail(&mut t, peer(1), "admin", now).unwrap().left,
                Duration::ZERO
            );
        }
        let w = fail(&mut t, peer(1), "admin", now).unwrap();
        assert_eq!((w.left, w.by), (PAIR.first, By::Address));
        assert_eq!(t.begin(peer(1), "admin", now).unwrap_err().left, PAIR.first);
        assert!(
            succeed(&mut t, peer(2), "admin", now).is_ok(),
            "others are not held up"
        );
        assert!(
            succeed(&mut t, peer(1), "admin", now + PAIR.first).is_ok(),
            "the wait ends"
        );
        let w = fail(&mut t, peer(1), "admin", now + PAIR.first).unwrap();
        assert_eq!(w.left, Duration::ZERO, "a success forgets");
        // A quiet quarter of an hour forgets too.
        let later = now + Duration::from_secs(1);
        for _ in 0..6 {
            let _ = fail(&mut t, peer(3), "admin", later);
        }
        assert!(t.begin(peer(3), "admin", later).is_err());
        assert!(t.begin(peer(3), "admin", later + FORGET_AFTER).is_ok());
    }

    #[test]
    fn a_success_clears_only_its_own_accounts_failures() {
        let mut t = Throttle::default();
        let mut now = Instant::now();
        let mut checked = 0;
        // Three wrong admin passwords, then the right one of a read-only user, ten times
        // over, each try as soon as it may.
        for _ in 0..10 {
            for _ in 0..3 {
                match fail(&mut t, peer(1), "admin", now) {
                    Ok(_) => checked += 1,
                    Err(w) => now += w.left,
                }
            }
            if let Err(w) = succeed(&mut t, peer(1), "viewer", now) {
                assert_eq!(w.by, By::Address, "past ten failures the address waits");
                now += w.left;
                succeed(&mut t, peer(1), "viewer", now).unwrap();
            }
        }
        // Every admin failure still counts, and waits as many do.
        assert!(checked > PAIR.free + 3, "{checked}");
        assert_eq!(t.pairs[&(peer(1), "admin".to_owned())].failures, checked);
        assert!(t.begin(peer(1), "admin", now).is_err());
        assert!(
            t.addresses[&peer(1)].failures == checked,
            "the viewer's tries are gone"
        );
    }

    #[test]
    fn a_place_is_taken_before_the_check_so_parallel_tries_cannot_overrun() {
        let mut t = Throttle::default();
        let now = Instant::now();
        // Twelve tries at once: none has failed yet when the others begin.
        let (taken, refused): (Vec<_>, Vec<_>) = (0..12)
            .map(|_| t.begin(peer(1), "admin", now))
            .partition(Result::is_ok);
        assert_eq!((taken.len(), refused.len()), (PAIR.free as usize + 1, 8));
        for tried in taken {
            t.failed(tried.unwrap(), now);
        }
        // A try that is not checked (the store failed) gives its place back.
        let mut t = Throttle::default();
        for _ in 0..10 {
            let tried = t.begin(peer(1), "admin", now).unwrap();
            t.release(tried);
        }
        assert!(t.pairs.is_empty() && t.addresses.is_empty() && t.accounts.is_empty());
    }

    #[test]
    fn many_addresses_slow_the_account_at_most_the_cap_and_spare_known_addresses() {
        let mut t = Throttle::default();
        let now = Instant::now();
        succeed(&mut t, peer(1), "admin", now).unwrap();
        let mut checked = 0;
        let mut longest = Duration::ZERO;
        for n in 10..110 {
            for _ in 0..3 {
                match fail(&mut t, peer(n), "admin", now) {
                    Ok(w) => {
                        checked += 1;
                        longest = longest.max(w.left);
                    }
                    Err(w) => {
                        assert_eq!(w.by, By::Account);
                        longest = longest.max(w.left);
                    }
                }
            }
        }
        assert_eq!(
            checked,
            ACCOUNT.free + 1,
            "then one try per wait, at the same instant none"
        );
        assert_eq!(longest, ACCOUNT.first, "the wait so far");
        // Over time the account's wait grows, but never past the cap.
        let mut at = now;
        for n in 0..40u8 {
            match fail(&mut t, peer(120 + n % 100), "admin", at) {
                Ok(w) => assert!(w.left <= ACCOUNT.max, "{w:?}"),
                Err(w) => {
                    assert!(w.left <= ACCOUNT.max, "{w:?}");
                    at += w.left;
                }
            }
        }
        assert_eq!(t.accounts["admin"].until - at, ACCOUNT.max);
        // The address that logged in before is not held up, nor the serial console; a new
        // address is, but only for the cap; other accounts are not.
        assert!(succeed(&mut t, peer(1), "admin", at).is_ok());
        assert!(succeed(&mut t, Peer::Serial, "admin", at).is_ok());
        assert_eq!(t.begin(peer(2), "admin", at).unwrap_err().left, ACCOUNT.max);
        assert!(succeed(&mut t, peer(2), "viewer", at).is_ok());
        assert!(succeed(&mut t, peer(2), "admin", at + ACCOUNT.max).is_ok());
        // A login is remembered for a month after it, not longer.
        let later = at + TRUSTED_FOR + Duration::from_secs(1);
        for n in 0..=ACCOUNT.free {
            fail(&mut t, peer(200 + n as u8), "admin", later).unwrap();
        }
        assert_eq!(
            t.begin(peer(1), "admin", later).unwrap_err().by,
            By::Account
        );
    }

    #[test]
    fn memory_is_bounded_and_an_attacked_account_is_kept() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..5 {
            let _ = fail(&mut t, peer(1), "admin", now);
        }
        for i in 0..(CAPACITY as u32 + 100) {
            let ip = Peer::Net(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)));
            let at = now + Duration::from_millis(u64::from(i));
            fail(&mut t, ip, &format!("name{i}"), at).unwrap();
            succeed(&mut t, ip, &format!("user{i}"), at).unwrap();
        }
        // (A success's own place, made room for, is then given back: one less.)
        for len in [t.pairs.len(), t.addresses.len(), t.accounts.len()] {
            assert!((CAPACITY - 1..=CAPACITY).contains(&len), "{len}");
        }
        assert_eq!(t.trusted.len(), TRUSTED_CAPACITY);
        assert_eq!(
            t.pairs[&(peer(1), "admin".to_owned())].failures,
            PAIR.free + 1
        );
        assert_eq!(t.accounts["admin"].failures, PAIR.free + 1);
        assert_eq!(name_key(&"é".repeat(40)).len(), NAME_BYTES);
    }
}
