//! The hand-over between the sources and the link thread: a FIFO of requests, and a reply
//! slot per caller.
//!
//! A mutex and condition variable, not a channel: waiters park on a futex at once. The
//! channel's spin-then-yield wait costs a sched_yield per hand-over, and on a two-core
//! board with busy threads each yield is a context switch.

use super::Request;
use crate::modbus::pdu::PduBuf;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Instant;

/// Each source has at most one request queued, so this is never exceeded in practice;
/// it only bounds memory if that ever changed.
const MAX_QUEUED: usize = 32;

pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    requests: VecDeque<Request>,
    closed: bool,
}

// Requests move by value (a PDU in a fixed buffer): boxing them would allocate on every
// request, which the hot path avoids.
#[allow(clippy::large_enum_variant)]
pub enum Pop {
    Request(Request),
    Timeout,
    Closed,
}

impl Queue {
    pub fn new() -> Queue {
        Queue {
            state: Mutex::new(State {
                requests: VecDeque::with_capacity(8),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues a request; false if the link is closed or the queue full.
    pub fn push(&self, request: Request) -> bool {
        let mut state = self.state.lock();
        if state.closed || state.requests.len() >= MAX_QUEUED {
            return false;
        }
        state.requests.push_back(request);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// The oldest request, waiting until `deadline` for one.
    pub fn pop(&self, deadline: Instant) -> Pop {
        let mut state = self.state.lock();
        loop {
            if let Some(r) = state.requests.pop_front() {
                return Pop::Request(r);
            }
            if state.closed {
                return Pop::Closed;
            }
            if self.ready.wait_until(&mut state, deadline).timed_out() {
                return match state.requests.pop_front() {
                    Some(r) => Pop::Request(r),
                    None => Pop::Timeout,
                };
            }
        }
    }

    /// A request already queued, without waiting.
    pub fn try_pop(&self) -> Option<Request> {
        self.state.lock().requests.pop_front()
    }

    /// Refuses new requests and wakes the link thread.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Where the link thread puts one caller's answer.
#[derive(Default)]
pub struct Slot {
    answer: Mutex<Option<PduBuf>>,
    ready: Condvar,
}

impl Slot {
    pub fn put(&self, answer: PduBuf) {
        *self.answer.lock() = Some(answer);
        self.ready.notify_one();
    }

    pub fn take(&self) -> PduBuf {
        let mut answer = self.answer.lock();
        loop {
            if let Some(a) = answer.take() {
                return a;
            }
            self.ready.wait(&mut answer);
        }
    }
}
