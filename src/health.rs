//! Which threads of the service are making progress: what the watchdog is fed on.
//!
//! Each long-lived thread registers a [`Heartbeat`] and says when it starts work
//! ([`Heartbeat::busy`]) and when it goes to wait for the outside world
//! ([`Heartbeat::idle`]): a request, a frame, a connection, an event to write. A thread
//! waiting idle is alive however long it waits; a thread busy for longer than its limit
//! is stalled (a deadlock, a loop, a device that never completes a write), and
//! [`Health::check`] names it. Both calls are one atomic store, so the serial threads can
//! make them on every turn.
//!
//! A thread that ends normally drops its heartbeat and is no longer watched; one that
//! panics stays stalled, so the board resets rather than run without it.

use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State words: idle, or busy since (ms after the registry's epoch) + [`BUSY_BASE`].
const IDLE: u64 = 0;
const ENDED: u64 = 1;
const PANICKED: u64 = 2;
const BUSY_BASE: u64 = 3;

/// The registry, shared by the service and the board thread.
pub struct Health {
    epoch: Instant,
    entries: Mutex<Vec<Arc<Entry>>>,
}

struct Entry {
    name: String,
    /// In ms; changed when the work's bound changes (a new serial timeout).
    limit: Arc<AtomicU64>,
    state: AtomicU64,
}

/// A thread's side: cheap to clone (the clones share one state).
#[derive(Clone)]
pub struct Heartbeat {
    entry: Arc<Entry>,
    epoch: Instant,
}

/// A thread busy past its limit, or dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub thread: String,
    /// How long it has been busy; `None` when it panicked.
    pub busy_for: Option<Duration>,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.busy_for {
            Some(d) => write!(
                f,
                "thread '{}' made no progress for {} s",
                self.thread,
                d.as_secs()
            ),
            None => write!(f, "thread '{}' ended with a panic", self.thread),
        }
    }
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            epoch: Instant::now(),
            entries: Mutex::new(Vec::new()),
        })
    }

    /// Watches a thread that may stay busy up to `limit` at a time. It starts busy.
    pub fn register(&self, name: &str, limit: Duration) -> Heartbeat {
        let entry = Arc::new(Entry {
            name: name.to_owned(),
            limit: Arc::new(AtomicU64::new(ms(limit))),
            state: AtomicU64::new(IDLE),
        });
        let mut entries = self.entries.lock();
        entries.retain(|e| e.state.load(Relaxed) != ENDED);
        entries.push(entry.clone());
        let beat = Heartbeat {
            entry,
            epoch: self.epoch,
        };
        beat.busy();
        beat
    }

    /// The first thread found stalled, if any.
    pub fn check(&self) -> Result<(), Stall> {
        let now = ms_since(self.epoch);
        for e in self.entries.lock().iter() {
            match e.state.load(Relaxed) {
                IDLE | ENDED => {}
                PANICKED => {
                    return Err(Stall {
                        thread: e.name.clone(),
                        busy_for: None,
                    })
                }
                since => {
                    let busy_for = Duration::from_millis(now.saturating_sub(since - BUSY_BASE));
                    if busy_for > Duration::from_millis(e.limit.load(Relaxed)) {
                        return Err(Stall {
                            thread: e.name.clone(),
                            busy_for: Some(busy_for),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Names of the threads watched now.
    pub fn threads(&self) -> Vec<String> {
        self.entries
            .lock()
            .iter()
            .filter(|e| e.state.load(Relaxed) != ENDED)
            .map(|e| e.name.clone())
            .collect()
    }
}

impl Heartbeat {
    /// A heartbeat nobody watches, for a thread started outside a service (tests, tools).
    pub fn unwatched(name: &str) -> Heartbeat {
        Health::new().register(name, Duration::MAX)
    }

    /// Work starts (or goes on: each call is progress).
    pub fn busy(&self) {
        let now = ms_since(self.epoch) + BUSY_BASE;
        self.entry.state.store(now, Relaxed);
    }

    /// The thread waits for the outside world; alive however long the wait.
    pub fn idle(&self) {
        self.entry.state.store(IDLE, Relaxed);
    }

    /// A handle that changes how long the thread may stay busy, for whoever knows when
    /// its work's bound changes. It does not keep the thread watched.
    pub fn limit(&self) -> Limit {
        Limit(self.entry.limit.clone())
    }
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Heartbeat({})", self.entry.name)
    }
}

impl Drop for Heartbeat {
    /// The last clone of a thread's heartbeat goes when the thread ends; any clone dropped
    /// by a panic marks the thread dead.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.entry.state.store(PANICKED, Relaxed);
        } else if Arc::strong_count(&self.entry) <= 2 && self.entry.state.load(Relaxed) != PANICKED
        {
            self.entry.state.store(ENDED, Relaxed);
        }
    }
}

/// See [`Heartbeat::limit`].
#[derive(Clone)]
pub struct Limit(Arc<AtomicU64>);

impl Limit {
    pub fn set(&self, limit: Duration) {
        self.0.store(ms(limit), Relaxed);
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_threads_are_alive_and_busy_ones_stall_past_their_limit() {
        let health = Health::new();
        let a = health.register("a", Duration::from_millis(50));
        let b = health.register("b", Duration::from_secs(60));
        a.idle();
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            health.check(),
            Ok(()),
            "idle for longer than the limit is fine"
        );
        a.busy();
        assert_eq!(health.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        let stall = health.check().unwrap_err();
        assert_eq!(stall.thread, "a");
        assert!(stall.busy_for.unwrap() >= Duration::from_millis(50));
        assert!(
            stall.to_string().contains("'a' made no progress"),
            "{stall}"
        );
        // Progress clears it.
        a.busy();
        assert_eq!(health.check(), Ok(()));
        drop(b);
        assert_eq!(health.threads(), ["a"]);
    }

    #[test]
    fn a_thread_that_ends_is_forgotten_one_that_panics_is_not() {
        let health = Health::new();
        let beat = health.register("worker", Duration::from_secs(60));
        std::thread::spawn(move || {
            let _beat = beat;
        })
        .join()
        .unwrap();
        assert_eq!(health.check(), Ok(()));
        assert!(health.threads().is_empty());

        let beat = health.register("fragile", Duration::from_secs(60));
        let clone = beat.clone();
        let r = std::thread::spawn(move || {
            let _beat = beat;
            panic!("on purpose");
        })
        .join();
        assert!(r.is_err());
        // A clone kept elsewhere does not hide the panic.
        drop(clone);
        let stall = health.check().unwrap_err();
        assert_eq!(stall.thread, "fragile");
        assert!(stall.to_string().contains("panic"), "{stall}");
    }
}
