//! Requests whose answers may still come: the guard that keeps a late answer from ever
//! being taken for another request's.
//!
//! An RTU answer carries no request id: only its slave address, function code and shape
//! tie it to a request. After a request times out (or is answered with garbage), its real
//! answer may still arrive, at any time. So every such request is kept here, and a frame
//! that fits one of them is taken as that one's late answer and thrown away, even when it
//! would fit the current request too. A UPS answers in order, so once a later request of
//! the same slave has been answered unmistakably, every earlier answer has come or never
//! will: the slave is settled. The control frame that checks the UPS after a failure is
//! shaped so that its answer fits none of the requests kept here ([`Outstanding::probe`]);
//! entries older than a few serial timeouts are forgotten, as a last resort, in case a UPS
//! answers exceptions to the control frame (an exception fits any request of its
//! function).
//!
//! Pure logic over bytes: no I/O, no clock of its own.

use crate::modbus::pdu::{self, Expect, PduBuf};
use crate::modbus::rtu::{self, FrameError, Status};
use std::time::{Duration, Instant};

/// Requests remembered at most; the oldest is forgotten first.
const CAPACITY: usize = 8;
/// Word counts the control frame may read from the measurement table.
const PROBE_WORDS: std::ops::RangeInclusive<u16> = 1..=16;

#[derive(Clone, Copy)]
struct Entry {
    slave: u8,
    pdu: PduBuf,
    sent: Instant,
}

#[derive(Default)]
pub struct Outstanding {
    /// Oldest first.
    entries: Vec<Entry>,
}

/// What the bytes received so far are, while waiting for the answer to one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The first `n` bytes are the answer to the current request.
    Answer(usize),
    /// The first `len` bytes are the late answer to an earlier request (entry `index`):
    /// throw them away and keep waiting.
    Late { index: usize, len: usize },
    /// Wait for more bytes: `Incomplete(n)` once `n` bytes could decide, or the silence.
    Wait(Status),
    /// The bytes fit neither the current request nor an earlier one.
    Invalid(FrameError),
}

impl Outstanding {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Remembers a request whose answer did not come (whole) in time.
    pub fn add(&mut self, slave: u8, pdu: &[u8], sent: Instant) {
        let Some(pdu) = PduBuf::new(pdu) else { return };
        if self.entries.len() == CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push(Entry { slave, pdu, sent });
    }

    /// A request to `slave` was answered unmistakably: every earlier answer of that slave
    /// has come or never will.
    pub fn settle(&mut self, slave: u8) {
        self.entries.retain(|e| e.slave != slave);
    }

    /// Entry `index` got its late answer: it, and the older ones of its slave, are done.
    pub fn retire(&mut self, index: usize) {
        let Some(slave) = self.entries.get(index).map(|e| e.slave) else {
            return;
        };
        let mut i = 0;
        self.entries.retain(|e| {
            let keep = i > index || e.slave != slave;
            i += 1;
            keep
        });
    }

    /// Forgets requests sent more than `window` before `now`.
    pub fn expire(&mut self, now: Instant, window: Duration) {
        self.entries.retain(|e| now.duration_since(e.sent) < window);
    }

    /// Judges the bytes received for the request `pdu` to `slave`.
    pub fn judge(&self, slave: u8, pdu: &[u8], buf: &[u8]) -> Verdict {
        let current = rtu::check_response(slave, pdu, buf);
        let mut earlier_incomplete = None;
        for (index, e) in self.entries.iter().enumerate() {
            match rtu::check_response(e.slave, &e.pdu, buf) {
                // Fits an earlier request (whether or not it fits this one too): in order,
                // the earlier answer comes first.
                Ok(Status::Complete(len)) => return Verdict::Late { index, len },
                Ok(status @ Status::Incomplete(_)) => {
                    earlier_incomplete.get_or_insert(status);
                }
                Ok(Status::UntilSilence) | Err(_) => {}
            }
        }
        match current {
            Ok(Status::Complete(n)) => Verdict::Answer(n),
            Ok(status) => Verdict::Wait(status),
            Err(e) => match earlier_incomplete {
                Some(status) => Verdict::Wait(status),
                None => Verdict::Invalid(e),
            },
        }
    }

    /// Judges a frame of unknown length that the silence ended (all of `buf`): an earlier
    /// request of the same slave and function could have had an answer just like it.
    pub fn judge_silent(&self, slave: u8, pdu: &[u8], buf: &[u8]) -> Verdict {
        let same = |e: &Entry| e.slave == slave && e.pdu.first() == pdu.first();
        match rtu::check_silent(buf) {
            Ok(len) => match self.entries.iter().position(same) {
                Some(index) => Verdict::Late { index, len },
                None => Verdict::Answer(len),
            },
            Err(e) => Verdict::Invalid(e),
        }
    }

    /// If `stale` (bytes found on an idle line) is the late answer to a request kept here,
    /// retires it and returns true.
    pub fn take_late(&mut self, stale: &[u8]) -> bool {
        let found = self.entries.iter().position(|e| {
            rtu::check_response(e.slave, &e.pdu, stale) == Ok(Status::Complete(stale.len()))
        });
        if let Some(index) = found {
            self.retire(index);
        }
        found.is_some()
    }

    /// The control frame for `slave`: a read of the measurement table whose (normal) answer
    /// fits none of the requests kept here, so a late answer to one of them is never taken
    /// for the UPS's sign of life. One word when nothing is kept.
    pub fn probe(&self, slave: u8) -> [u8; 5] {
        let taken = |words: u16| {
            self.entries.iter().any(|e| {
                e.slave == slave
                    && e.pdu.first() == Some(&pdu::function::READ_HOLDING_REGISTERS)
                    && pdu::expect(&e.pdu) == Some(Expect::ByteCount((words * 2) as u8))
            })
        };
        let words = PROBE_WORDS
            .clone()
            .find(|w| !taken(*w))
            .unwrap_or(*PROBE_WORDS.start());
        let [hi, lo] = words.to_be_bytes();
        let mut probe = super::CONTROL_PDU;
        probe[3] = hi;
        probe[4] = lo;
        probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slave 1's answer to a read of `words` registers, all holding `value`.
    fn read_answer(words: u8, value: u16) -> Vec<u8> {
        let mut pdu = vec![0x03, words * 2];
        for _ in 0..words {
            pdu.extend_from_slice(&value.to_be_bytes());
        }
        let mut frame = vec![];
        rtu::encode(1, &pdu, &mut frame);
        frame
    }

    const READ_0040: [u8; 5] = [0x03, 0x00, 0x40, 0x00, 0x01];
    const READ_0041: [u8; 5] = [0x03, 0x00, 0x41, 0x00, 0x01];
    const READ_0040_X2: [u8; 5] = [0x03, 0x00, 0x40, 0x00, 0x02];

    #[test]
    fn with_nothing_kept_an_answer_is_the_current_requests() {
        let o = Outstanding::default();
        let answer = read_answer(1, 0x1111);
        assert_eq!(o.judge(1, &READ_0041, &answer), Verdict::Answer(7));
        assert_eq!(
            o.judge(1, &READ_0041, &answer[..3]),
            Verdict::Wait(Status::Incomplete(7))
        );
    }

    #[test]
    fn an_answer_that_fits_an_earlier_request_is_late_even_if_it_fits_this_one() {
        let mut o = Outstanding::default();
        let t = Instant::now();
        o.add(1, &READ_0040, t);
        // Same shape: it could be either; in order, it is the earlier one's.
        let answer = read_answer(1, 0x1111);
        assert_eq!(
            o.judge(1, &READ_0041, &answer),
            Verdict::Late { index: 0, len: 7 }
        );
        // An exception fits any read.
        let mut exception = vec![];
        rtu::encode(1, &[0x83, 0x02], &mut exception);
        assert_eq!(
            o.judge(1, &READ_0041, &exception),
            Verdict::Late { index: 0, len: 5 }
        );
        // Once retired, the next such frame is the current request's.
        o.retire(0);
        assert_eq!(o.judge(1, &READ_0041, &answer), Verdict::Answer(7));
    }

    #[test]
    fn a_frame_that_starts_like_an_earlier_answer_is_waited_for_not_refused() {
        let mut o = Outstanding::default();
        o.add(1, &READ_0040_X2, Instant::now());
        let late = read_answer(2, 0x2222);
        // Its byte count already says it is not the current (one-word) answer.
        assert_eq!(
            o.judge(1, &READ_0041, &late[..4]),
            Verdict::Wait(Status::Incomplete(9))
        );
        assert_eq!(
            o.judge(1, &READ_0041, &late),
            Verdict::Late { index: 0, len: 9 }
        );
        // Garbage fits nothing.
        assert!(matches!(
            o.judge(1, &READ_0041, &[0x01, 0x03, 0x06, 0, 0, 0, 0, 0, 0, 0, 0]),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn the_probe_answer_fits_no_kept_request() {
        let mut o = Outstanding::default();
        assert_eq!(o.probe(1), super::super::CONTROL_PDU);
        let t = Instant::now();
        o.add(1, &[0x03, 0x10, 0x64, 0x00, 0x01], t);
        o.add(1, &READ_0040_X2, t);
        let probe = o.probe(1);
        assert_eq!(probe, [0x03, 0x10, 0x60, 0x00, 0x03]);
        // Its answer is judged its own, the kept requests' answers late.
        assert_eq!(o.judge(1, &probe, &read_answer(3, 1)), Verdict::Answer(11));
        assert!(matches!(
            o.judge(1, &probe, &read_answer(1, 1)),
            Verdict::Late { .. }
        ));
        // Another slave's requests do not matter.
        assert_eq!(o.probe(2), super::super::CONTROL_PDU);
    }

    #[test]
    fn settling_retiring_and_expiry_forget_the_right_entries() {
        let mut o = Outstanding::default();
        let t = Instant::now();
        o.add(1, &READ_0040, t);
        o.add(5, &READ_0040, t + Duration::from_millis(10));
        o.add(1, &READ_0041, t + Duration::from_millis(20));
        o.retire(2);
        // Slave 1's two are done; slave 5's answer may still come.
        assert_eq!(o.len(), 1);
        o.add(1, &READ_0041, t + Duration::from_millis(30));
        o.settle(1);
        assert_eq!(o.len(), 1);
        o.expire(t + Duration::from_millis(100), Duration::from_millis(50));
        assert!(o.is_empty());
        for i in 0..20 {
            o.add(1, &READ_0040, t + Duration::from_millis(i));
        }
        assert_eq!(o.len(), CAPACITY);
    }

    #[test]
    fn stale_bytes_that_are_a_late_answer_retire_their_request() {
        let mut o = Outstanding::default();
        o.add(1, &READ_0040, Instant::now());
        assert!(!o.take_late(&[0xFF, 0x00]));
        assert!(o.take_late(&read_answer(1, 7)));
        assert!(o.is_empty());
    }

    #[test]
    fn a_silence_ended_frame_is_late_when_an_earlier_request_had_the_same_function() {
        let mut o = Outstanding::default();
        let mei = [0x2B, 0x0D, 0x00];
        let mut frame = vec![];
        rtu::encode(1, &[0x2B, 0x0D, 0x01, 0x02], &mut frame);
        assert_eq!(
            o.judge_silent(1, &mei, &frame),
            Verdict::Answer(frame.len())
        );
        o.add(1, &mei, Instant::now());
        assert_eq!(
            o.judge_silent(1, &mei, &frame),
            Verdict::Late {
                index: 0,
                len: frame.len()
            }
        );
    }
}
