//! The UPS link, the master's side: bytes from the UPS judged against the current request
//! and the requests whose answers may still come late, as the link thread does
//! (src/link/mod.rs calls `Outstanding::judge`, `judge_silent` and `take_late`, which call
//! `rtu::check_response` and `rtu::check_silent`).
//!
//! Input: slave, count of earlier requests (0..=8), each as (slave, length, PDU), the
//! current request as (length, PDU), then the bytes received.
//! Properties: an answer is a whole, CRC-checked answer to the current request that fits
//! no earlier one (the late-answer guard); a late answer is whole for the earlier request
//! it names; a silence-ended answer is never taken when an earlier request of the same
//! slave and function is kept; `take_late` finds exactly the late answers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::link::outstanding::{Outstanding, Verdict};
use modbus_card::modbus::pdu::PduBuf;
use modbus_card::modbus::{crc, rtu, MAX_PDU};
use std::time::Instant;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn pdu(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.byte()?) % (MAX_PDU + 1);
        let len = len.min(self.0.len());
        let (pdu, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(pdu)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(slave), Some(count)) = (input.byte(), input.byte()) else {
        return;
    };
    let now = Instant::now();
    let mut outstanding = Outstanding::default();
    let mut kept: Vec<(u8, Vec<u8>)> = Vec::new();
    for _ in 0..count % 9 {
        let (Some(s), Some(pdu)) = (input.byte(), input.pdu()) else {
            return;
        };
        outstanding.add(s, pdu, now);
        kept.push((s, pdu.to_vec()));
    }
    let Some(pdu) = input.pdu() else { return };
    if pdu.is_empty() {
        return;
    }
    let buf = input.0;
    let complete_for = |(s, p): &(u8, Vec<u8>), b: &[u8]| match rtu::check_response(*s, p, b) {
        Ok(rtu::Status::Complete(n)) => Some(n),
        _ => None,
    };

    match outstanding.judge(slave, pdu, buf) {
        Verdict::Answer(n) => {
            assert!(n <= buf.len());
            assert_eq!(
                rtu::check_response(slave, pdu, buf),
                Ok(rtu::Status::Complete(n))
            );
            assert!(crc::is_valid(&buf[..n]));
            // The link copies the answer's PDU with `expect("frame ≤ 256")`.
            assert!(PduBuf::new(rtu::pdu_of(&buf[..n])).is_some());
            for e in &kept {
                assert_eq!(
                    complete_for(e, buf),
                    None,
                    "a late answer taken for the current one"
                );
            }
        }
        Verdict::Late { index, len } => {
            assert!(index < kept.len() && len <= buf.len());
            assert_eq!(complete_for(&kept[index], buf), Some(len));
        }
        Verdict::Wait(_) | Verdict::Invalid(_) => {}
    }

    match outstanding.judge_silent(slave, pdu, buf) {
        Verdict::Answer(len) => {
            assert_eq!(len, buf.len());
            assert!(crc::is_valid(buf));
            assert!(!kept
                .iter()
                .any(|(s, p)| *s == slave && p.first() == pdu.first()));
        }
        Verdict::Late { index, len } => {
            assert_eq!(len, buf.len());
            let (s, p) = &kept[index];
            assert!(*s == slave && p.first() == pdu.first());
        }
        _ => {}
    }

    let late = kept.iter().any(|e| complete_for(e, buf) == Some(buf.len()));
    assert_eq!(outstanding.take_late(buf), late);

    let probe = outstanding.probe(slave);
    assert_eq!(probe[0], 0x03);
});
