//! The hand-over between the sources and the link thread: a FIFO of requests, and a reply
//! slot per caller.
//!
//! A mutex and condition variable, not a channel: waiters park on a futex at once. The
//! channel's spin-then-yield wait costs a sched_yield per hand-over, and on a two-core
//! board with busy threads each yield is a context switch.

use super::{LinkConfig, Request, Source};
use crate::modbus::pdu::PduBuf;
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
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
    /// A new configuration, taken before the next request.
    config: Option<LinkConfig>,
    closed: bool,
}

// Requests move by value (a PDU in a fixed buffer): boxing them would allocate on every
// request, which the hot path avoids.
#[allow(clippy::large_enum_variant)]
pub enum Pop {
    Request(Request),
    Reconfigure(LinkConfig),
    Timeout,
    Closed,
}

impl Queue {
    pub fn new() -> Queue {
        Queue {
            state: Mutex::new(State {
                requests: VecDeque::with_capacity(8),
                config: None,
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

    /// A new configuration for the link thread, which takes it before its next request.
    pub fn reconfigure(&self, config: LinkConfig) {
        self.state.lock().config = Some(config);
        self.ready.notify_one();
    }

    /// The new configuration, if one waits.
    pub fn take_config(&self) -> Option<LinkConfig> {
        self.state.lock().config.take()
    }

    /// A new configuration, or the oldest request, waiting until `deadline` for either.
    pub fn pop(&self, deadline: Instant) -> Pop {
        let mut state = self.state.lock();
        loop {
            if let Some(c) = state.config.take() {
                return Pop::Reconfigure(c);
            }
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

    /// Takes the queued requests of `source` out of the queue (they are dropped outside the
    /// lock); true if there were any.
    pub fn remove(&self, source: Source) -> bool {
        let mut removed = Vec::new();
        {
            let mut state = self.state.lock();
            let mut i = 0;
            while i < state.requests.len() {
                if state.requests[i].source == source {
                    removed.extend(state.requests.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        !removed.is_empty()
    }

    /// Refuses new requests and wakes the link thread.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Where the link thread puts one caller's answer.
///
/// Each request carries the slot's generation at the time it was made; an answer for an
/// older generation (a request its caller gave up on) is thrown away, so a caller only
/// ever sees the answer to its newest request.
pub struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
    /// Made readable by each answer, for a caller that waits on other descriptors too.
    wake: Option<EventFd>,
}

#[derive(Default)]
struct SlotState {
    generation: u64,
    answer: Option<PduBuf>,
    /// A request of the current generation is queued or on the line.
    pending: bool,
}

impl Slot {
    pub fn new(with_wake: bool) -> std::io::Result<Slot> {
        let wake = if with_wake {
            Some(EventFd::from_flags(
                EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
            )?)
        } else {
            None
        };
        Ok(Slot {
            state: Mutex::new(SlotState::default()),
            ready: Condvar::new(),
            wake,
        })
    }

    /// Starts a new request: answers to earlier ones will be thrown away. Returns its
    /// generation and whether an earlier request was still waiting for its answer.
    pub fn begin(&self) -> (u64, bool) {
        let mut s = self.state.lock();
        s.generation += 1;
        s.answer = None;
        let superseded = std::mem::replace(&mut s.pending, true);
        (s.generation, superseded)
    }

    /// Forgets the current request (it was answered without reaching the queue).
    pub fn end(&self) {
        self.state.lock().pending = false;
    }

    /// The answer to the request of `generation`; false (and nothing stored) if the caller
    /// has moved on.
    pub fn put(&self, generation: u64, answer: PduBuf) -> bool {
        let mut s = self.state.lock();
        if s.generation != generation {
            return false;
        }
        s.answer = Some(answer);
        s.pending = false;
        drop(s);
        self.ready.notify_one();
        if let Some(wake) = &self.wake {
            let _ = wake.write(1);
        }
        true
    }

    /// Waits for the answer.
    pub fn take(&self) -> PduBuf {
        let mut s = self.state.lock();
        loop {
            if let Some(a) = s.answer.take() {
                return a;
            }
            self.ready.wait(&mut s);
        }
    }

    /// The answer if it is there, without waiting.
    pub fn try_take(&self) -> Option<PduBuf> {
        if let Some(wake) = &self.wake {
            // Reset the descriptor; an answer that lands right after is seen by the next
            // wait, as it writes again.
            let _ = wake.read();
        }
        self.state.lock().answer.take()
    }

    /// Readable when an answer has been put (slots made `with_wake` only).
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake.as_ref().map(|w| w.as_fd())
    }
}
