//! The SNTP server's reply: `sntp::parse_reply`, which the clock calls on every datagram
//! that arrives on its socket (src/board/clock.rs). The request's time and the reply's
//! arrival are the card's own clock (a recent date, a round trip of 0 to 4 s); the reply is
//! the input, its originate timestamp set to the request's in half of the cases so the
//! checks behind it are reached.
//! Property: a sample taken has a non-negative delay no longer than the round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::board::sntp;

const NANOS: i64 = 1_000_000_000;
/// 2026-11-24 08:00:00 UTC.
const NOW: i64 = 1_795_507_200 * NANOS;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, reply @ ..] = data else {
        return;
    };
    let t1 = NOW + i64::from(u16::from_le_bytes([*a, *b])) * NANOS;
    let t4 = t1 + i64::from(*c & 0x7f) * NANOS / 32;
    let sent = sntp::to_ntp(t1);
    let mut reply = reply.to_vec();
    if c & 0x80 != 0 && reply.len() >= 32 {
        reply[24..32].copy_from_slice(&sent.to_be_bytes());
    }
    if let Ok(s) = sntp::parse_reply(&reply, sent, t1, t4) {
        assert!(
            s.delay_ns >= 0 && s.delay_ns <= t4 - t1 + NANOS / 100,
            "{s:?}"
        );
        assert!((1..16).contains(&s.stratum));
    }
});
