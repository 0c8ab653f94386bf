//! A bounded, preallocated log of the frames on the UPS link, for the debug page.
//!
//! The link thread pushes every frame it sends or receives; pushing copies into a slot of a
//! fixed ring, so the log costs no allocation and never grows, however long the card runs.

use super::Source;
use parking_lot::Mutex;
use std::time::SystemTime;

/// Frames kept; the oldest is overwritten.
pub const CAPACITY: usize = 256;
const MAX_BYTES: usize = crate::modbus::MAX_RTU;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToUps,
    FromUps,
    /// A request from the RS485 master.
    FromRs485,
    /// An answer for the RS485 master.
    ToRs485,
}

/// What the link made of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Request,
    Broadcast,
    Answer,
    Exception,
    /// The answer broke a rule; the text says which.
    Invalid(crate::modbus::rtu::FrameError),
    /// No (whole) answer before the serial timeout.
    Timeout,
    /// Bytes on the line that belonged to no request, discarded.
    Stale,
    /// An answer that came after its request had timed out, discarded.
    Late,
    /// An answer the RS485 master no longer waited for (it had sent a newer request):
    /// not sent.
    Superseded,
    /// An answer that came after the RS485 master's time (the serial timeout from its
    /// request): not sent, so the master never takes it for the next one's.
    TooLate,
}

#[derive(Clone)]
pub struct Entry {
    pub at: SystemTime,
    /// Whose request the frame belongs to; [`Source::Control`] for the link's own.
    pub source: Source,
    pub direction: Direction,
    pub note: Note,
    len: u16,
    bytes: [u8; MAX_BYTES],
}

impl Entry {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

struct Ring {
    slots: Vec<Entry>,
    next: usize,
    filled: usize,
}

pub struct FrameLog {
    ring: Mutex<Ring>,
}

impl Default for FrameLog {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameLog {
    pub fn new() -> FrameLog {
        let blank = Entry {
            at: SystemTime::UNIX_EPOCH,
            source: Source::Control,
            direction: Direction::ToUps,
            note: Note::Request,
            len: 0,
            bytes: [0; MAX_BYTES],
        };
        FrameLog {
            ring: Mutex::new(Ring {
                slots: vec![blank; CAPACITY],
                next: 0,
                filled: 0,
            }),
        }
    }

    pub fn push(&self, source: Source, direction: Direction, bytes: &[u8], note: Note) {
        let bytes = &bytes[..bytes.len().min(MAX_BYTES)];
        let at = SystemTime::now();
        let mut ring = self.ring.lock();
        let i = ring.next;
        let slot = &mut ring.slots[i];
        slot.at = at;
        slot.source = source;
        slot.direction = direction;
        slot.note = note;
        slot.len = bytes.len() as u16;
        slot.bytes[..bytes.len()].copy_from_slice(bytes);
        ring.next = (i + 1) % CAPACITY;
        ring.filled = (ring.filled + 1).min(CAPACITY);
    }

    /// The newest `max` entries, newest first.
    pub fn newest(&self, max: usize) -> Vec<Entry> {
        let ring = self.ring.lock();
        (1..=ring.filled.min(max))
            .map(|back| ring.slots[(ring.next + CAPACITY - back) % CAPACITY].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_never_grows() {
        let log = FrameLog::new();
        for i in 0..(CAPACITY + 10) {
            log.push(
                Source::Tcp(1),
                Direction::ToUps,
                &[(i % 256) as u8, 1, 2],
                Note::Request,
            );
        }
        let all = log.newest(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].bytes(), &[((CAPACITY + 9) % 256) as u8, 1, 2]);
        assert_eq!(all[CAPACITY - 1].bytes()[0], 10);
        assert_eq!(log.newest(3).len(), 3);
    }
}
