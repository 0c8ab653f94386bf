//! The tests that judge the card's timing on a line to the microsecond: the silence it
//! keeps between frames at each baud rate, and when a master gets its answer or 0x0B in
//! an outage. Their judge is the simulated UPS's clock in this process, which the hundreds
//! of cards, floods and password hashes of `tests/suite/` would blur; so they are a binary
//! of their own, which `cargo test` runs after that one, and a few at a time: each card's
//! serial threads and its simulated UPS run SCHED_FIFO at one priority, and a dozen such
//! cards on two cores wait on each other longer than a 3.5-character silence.

#[path = "../suite/common/mod.rs"]
mod common;

mod line_silence;
mod outage;

use std::sync::{Condvar, Mutex, PoisonError};

/// Tests of this binary running at once.
const AT_ONCE: usize = 3;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A test's turn: taken first thing, given back when the test ends, pass or fail.
pub struct Turn(());

pub fn turn() -> Turn {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    while *running >= AT_ONCE {
        running = FREED.wait(running).unwrap_or_else(PoisonError::into_inner);
    }
    *running += 1;
    Turn(())
}

impl Drop for Turn {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        FREED.notify_one();
    }
}
