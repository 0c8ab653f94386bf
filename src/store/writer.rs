//! The store thread: the only writer of events.

use super::Store;
use crate::event::Stamped;
use crate::health::Heartbeat;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Most events written in one transaction: a burst costs one commit, and a huge backlog
/// still commits often enough that a power cut loses little.
pub const BATCH: usize = 256;

/// Pauses before each retry of a batch that failed to write. The busy timeout already
/// covers readers; these give a transient fault (a full or briefly failing flash) time to
/// clear without holding events for long.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_secs(1),
];

/// Starts the store thread. It blocks on `rx`, drains what else is queued (at most
/// [`BATCH`]) and writes it in one transaction. It ends once every sender is dropped and
/// everything received is written. A failed write is logged and retried a few times; if it
/// still fails the batch is given up (and logged), never a panic. `heartbeat` is idle while
/// it waits for events and busy while it writes.
pub fn spawn_writer(store: Store, rx: Receiver<Stamped>, heartbeat: Heartbeat) -> JoinHandle<()> {
    run_writer(store, rx, crossbeam_channel::never(), heartbeat, None)
}

/// What else sees each event once written (remote syslog); it must not block.
pub type Tap = Box<dyn Fn(&Stamped) + Send>;

/// The store thread of a running service: it ends when this is dropped, once everything
/// queued by then is written, however many senders of events are still alive.
pub struct Writer {
    close: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the store thread as [`spawn_writer`] does, ended by dropping the [`Writer`].
pub fn spawn_closable_writer(store: Store, rx: Receiver<Stamped>, heartbeat: Heartbeat) -> Writer {
    spawn_tapped_writer(store, rx, heartbeat, None)
}

/// [`spawn_closable_writer`], with each event handed to `tap` once written.
pub fn spawn_tapped_writer(
    store: Store,
    rx: Receiver<Stamped>,
    heartbeat: Heartbeat,
    tap: Option<Tap>,
) -> Writer {
    let (close, closed) = crossbeam_channel::bounded(0);
    Writer {
        close: Some(close),
        thread: Some(run_writer(store, rx, closed, heartbeat, tap)),
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.close.take());
        if let Some(Err(_)) = self.thread.take().map(JoinHandle::join) {
            log::error!("store thread panicked");
        }
    }
}

fn run_writer(
    mut store: Store,
    rx: Receiver<Stamped>,
    closed: Receiver<()>,
    heartbeat: Heartbeat,
    tap: Option<Tap>,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            heartbeat.idle();
            loop {
                let first = crossbeam_channel::select! {
                    recv(rx) -> first => first.ok(),
                    // Closed: what is queued now is the last to write.
                    recv(closed) -> _ => rx.try_recv().ok(),
                };
                let Some(first) = first else { break };
                heartbeat.busy();
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                write(&mut store, &batch);
                if let Some(tap) = &tap {
                    batch.iter().for_each(tap);
                }
                batch.clear();
                heartbeat.idle();
            }
        })
        .expect("cannot start the store thread")
}

fn write(store: &mut Store, batch: &[Stamped]) {
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        let Err(e) = store.add_events(batch) else {
            return;
        };
        match pauses.next() {
            Some(pause) => {
                log::error!(
                    "event log: {} events not written yet, retrying in {pause:?}: {e}",
                    batch.len()
                );
                thread::sleep(*pause);
            }
            None => {
                log::error!(
                    "event log: {} events lost after {} attempts: {e}",
                    batch.len(),
                    RETRY_PAUSES.len() + 1
                );
                for s in batch {
                    log::error!("event not stored: {}", s.event.message());
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use rusqlite::Connection;
    use std::time::{Instant, SystemTime};
    use tempfile::TempDir;

    fn join_within(handle: JoinHandle<()>, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !handle.is_finished() {
            assert!(
                Instant::now() < deadline,
                "store thread still running after {limit:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        handle.join().expect("store thread panicked");
    }

    #[test]
    fn a_failed_write_is_retried_and_the_thread_lives_on() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = Connection::open(store.path()).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        other.execute_batch("DROP TABLE events").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = spawn_writer(store, rx, Heartbeat::unwatched("store"));
        tx.send(Stamped {
            at: SystemTime::now(),
            event: Event::UpsLost,
        })
        .unwrap();
        // The first attempt fails on the missing table; the table is back before the retry.
        thread::sleep(Duration::from_millis(30));
        other
            .execute_batch(
                "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, \
                 kind TEXT NOT NULL, message TEXT NOT NULL)",
            )
            .unwrap();
        tx.send(Stamped {
            at: SystemTime::now(),
            event: Event::UpsRestored,
        })
        .unwrap();
        drop(tx);
        join_within(handle, Duration::from_secs(10));
        let store = Store::open(dir.path()).unwrap();
        let kinds: Vec<_> = store
            .events(10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["ups_restored", "ups_lost"]);
    }

    #[test]
    fn a_batch_that_keeps_failing_is_given_up_without_a_panic() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Connection::open(store.path())
            .unwrap()
            .execute_batch("DROP TABLE events")
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = spawn_writer(store, rx, Heartbeat::unwatched("store"));
        tx.send(Stamped {
            at: SystemTime::now(),
            event: Event::UpsLost,
        })
        .unwrap();
        drop(tx);
        join_within(handle, Duration::from_secs(10));
    }

    #[test]
    fn a_closed_writer_ends_with_a_sender_still_alive_and_everything_queued_written() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = store.path().to_owned();
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = spawn_closable_writer(store, rx, Heartbeat::unwatched("store"));
        for _ in 0..BATCH + 10 {
            tx.send(Stamped {
                at: SystemTime::now(),
                event: Event::UpsLost,
            })
            .unwrap();
        }
        let (done, ended) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            drop(writer);
            let _ = done.send(());
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .expect("the store thread did not end while a sender was alive");
        let written: i64 = Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(written, (BATCH + 10) as i64);
        drop(tx);
    }
}
