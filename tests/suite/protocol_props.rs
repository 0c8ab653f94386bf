//! Property tests of the pure protocol code: whatever the bytes, the checks never panic,
//! never claim more bytes than they were given, and find every valid frame exactly at its end.

use modbus_card::modbus::{mbap, rtu};
use proptest::prelude::*;

fn frame(address: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rtu::encode(address, pdu, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn response_check_never_panics_nor_overreaches(
        req in proptest::collection::vec(any::<u8>(), 1..20),
        buf in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(rtu::Status::Complete(n)) = rtu::check_response(buf.first().copied().unwrap_or(1), &req, &buf) {
            prop_assert!(n <= buf.len());
            prop_assert!(n >= 4);
        }
    }

    #[test]
    fn request_check_never_panics_nor_overreaches(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(rtu::Status::Complete(n)) = rtu::check_request(&buf) {
            prop_assert!(n <= buf.len() && n >= 4);
        }
    }

    /// A read answer of any size, fed byte by byte, is complete exactly at its last byte,
    /// whatever follows it.
    #[test]
    fn read_answers_complete_at_their_last_byte(
        fc in prop_oneof![Just(3u8), Just(4u8)],
        words in proptest::collection::vec(any::<u16>(), 1..=125),
        trailing in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let quantity = words.len() as u16;
        let req = [fc, 0x10, 0x60, (quantity >> 8) as u8, quantity as u8];
        let mut pdu = vec![fc, (words.len() * 2) as u8];
        for w in &words { pdu.extend_from_slice(&w.to_be_bytes()); }
        let answer = frame(1, &pdu);
        for cut in 0..answer.len() {
            let status = rtu::check_response(1, &req, &answer[..cut]);
            prop_assert!(matches!(status, Ok(rtu::Status::Incomplete(_))), "cut {} gave {:?}", cut, status);
        }
        let mut with_tail = answer.clone();
        with_tail.extend_from_slice(&trailing);
        prop_assert_eq!(rtu::check_response(1, &req, &with_tail), Ok(rtu::Status::Complete(answer.len())));
    }

    /// Any corruption of one byte of a valid answer is caught (by CRC or by a rule).
    #[test]
    fn corrupted_answers_are_refused(
        words in proptest::collection::vec(any::<u16>(), 1..=20),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let quantity = words.len() as u16;
        let req = [3, 0, 0, 0, quantity as u8];
        let mut pdu = vec![3, (words.len() * 2) as u8];
        for w in &words { pdu.extend_from_slice(&w.to_be_bytes()); }
        let mut answer = frame(1, &pdu);
        let i = at.index(answer.len());
        answer[i] ^= flip;
        prop_assert!(!matches!(rtu::check_response(1, &req, &answer), Ok(rtu::Status::Complete(n)) if n == answer.len()));
    }

    #[test]
    fn write_multiple_requests_are_measured(values in proptest::collection::vec(any::<u16>(), 1..=123)) {
        let mut pdu = vec![0x10, 0x05, 0xB0, 0, values.len() as u8, (values.len() * 2) as u8];
        for v in &values { pdu.extend_from_slice(&v.to_be_bytes()); }
        let f = frame(7, &pdu);
        prop_assert_eq!(rtu::check_request(&f), Ok(rtu::Status::Complete(f.len())));
    }

    #[test]
    fn mbap_check_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some(n)) = mbap::check(&buf) {
            prop_assert!(n <= buf.len() && (8..=mbap::MAX_FRAME).contains(&n));
        }
    }

    #[test]
    fn mbap_round_trip(tid in any::<u16>(), unit in any::<u8>(), pdu in proptest::collection::vec(any::<u8>(), 1..=253)) {
        let mut out = Vec::new();
        mbap::encode(mbap::Header { transaction: tid, unit }, &pdu, &mut out);
        prop_assert_eq!(mbap::check(&out), Ok(Some(out.len())));
        let (h, p) = mbap::split(&out);
        prop_assert_eq!(h, mbap::Header { transaction: tid, unit });
        prop_assert_eq!(p, &pdu[..]);
    }
}
