//! SNTP (RFC 4330) as pure functions: the client request, and the checks and arithmetic
//! on the server's reply. No I/O: [`super::clock`] sends and receives.
//!
//! Times are nanoseconds since the Unix epoch (`i64`: 1678 to 2262). On the wire an NTP
//! timestamp is 32 bits of seconds since 1900 and 32 bits of fraction; the seconds wrap in
//! February 2036, so, as RFC 4330 §3 says, a value with its top bit clear is read as after
//! 2036 (era 1) and one with it set as 1968–2036 (era 0).

use std::fmt;

/// A request or reply: 48 bytes (no extension fields, no authenticator).
pub const PACKET: usize = 48;
/// The standard server port.
pub const PORT: u16 = 123;

/// Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01.
const UNIX_OFFSET: i64 = 2_208_988_800;
const NANOS: i64 = 1_000_000_000;
/// A server whose root delay/2 + root dispersion exceeds this (RFC 5905's MAXDISP) does
/// not know the time well enough to set a clock by.
const MAX_DISPERSION_NS: i64 = 16 * NANOS;

/// Unix nanoseconds to an NTP timestamp.
pub fn to_ntp(unix_ns: i64) -> u64 {
    let secs = unix_ns.div_euclid(NANOS) + UNIX_OFFSET;
    let frac = ((unix_ns.rem_euclid(NANOS) as u128) << 32) / NANOS as u128;
    ((secs as u64 & 0xFFFF_FFFF) << 32) | frac as u64
}

/// An NTP timestamp to Unix nanoseconds (era by the top bit, see the module doc).
pub fn from_ntp(ts: u64) -> i64 {
    let secs = (ts >> 32) as i64;
    let secs = if secs & 0x8000_0000 != 0 {
        secs
    } else {
        secs + (1 << 32)
    };
    let frac = ((ts & 0xFFFF_FFFF) as u128 * NANOS as u128) >> 32;
    (secs - UNIX_OFFSET) * NANOS + frac as i64
}

/// A client request (version 4, mode 3) carrying `transmit`, which the server must echo
/// as its originate timestamp: that is how its reply is matched to this request.
pub fn request(transmit: u64) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    p[0] = (4 << 3) | 3;
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// What a good reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Server clock minus ours, in ns: add it to our time to get the server's.
    pub offset_ns: i64,
    /// Round trip, less the server's own processing.
    pub delay_ns: i64,
    pub stratum: u8,
}

/// Why a reply is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer than 48 bytes.
    Short(usize),
    /// Not a server reply (mode 4) of version 1 to 4.
    NotAReply { version: u8, mode: u8 },
    /// Kiss-o'-Death (stratum 0): the server asks us to go away or slow down.
    Kiss(String),
    /// The server says its own clock is not synchronized.
    Unsynchronized,
    /// The originate timestamp is not the one we sent: a stale or forged reply.
    NotOurs,
    /// Zero, or out-of-order timestamps, or a round trip that makes no sense.
    BadTimestamps,
    /// The server's own error bound is too wide to set a clock by.
    TooImprecise { dispersion_ms: i64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Short(n) => write!(f, "reply of {n} bytes, not {PACKET}"),
            Refusal::NotAReply { version, mode } => {
                write!(f, "not a server reply (version {version}, mode {mode})")
            }
            Refusal::Kiss(code) => write!(f, "the server refused service (kiss code {code})"),
            Refusal::Unsynchronized => f.write_str("the server's clock is not synchronized"),
            Refusal::NotOurs => f.write_str("the reply does not answer our request"),
            Refusal::BadTimestamps => f.write_str("the reply's timestamps make no sense"),
            Refusal::TooImprecise { dispersion_ms } => {
                write!(f, "the server's time is uncertain by {dispersion_ms} ms")
            }
        }
    }
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
}

fn u64_at(p: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(p[at..at + 8].try_into().unwrap())
}

/// 16.16 fixed-point seconds to ns.
fn short_ns(v: u32) -> i64 {
    (i64::from(v) * NANOS) >> 16
}

/// Checks a reply to the request that carried `sent` (sent at `t1_ns`, the reply read at
/// `t4_ns`, both our clock) and computes the offset and delay (RFC 4330 §5).
pub fn parse_reply(reply: &[u8], sent: u64, t1_ns: i64, t4_ns: i64) -> Result<Sample, Refusal> {
    if reply.len() < PACKET {
        return Err(Refusal::Short(reply.len()));
    }
    let (leap, version, mode) = (reply[0] >> 6, (reply[0] >> 3) & 7, reply[0] & 7);
    if mode != 4 || !(1..=4).contains(&version) {
        return Err(Refusal::NotAReply { version, mode });
    }
    let stratum = reply[1];
    if stratum == 0 {
        let code: String = reply[12..16]
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
            .collect();
        return Err(Refusal::Kiss(code));
    }
    if leap == 3 || stratum >= 16 {
        return Err(Refusal::Unsynchronized);
    }
    if u64_at(reply, 24) != sent {
        return Err(Refusal::NotOurs);
    }
    let (received, transmitted) = (u64_at(reply, 32), u64_at(reply, 40));
    if received == 0 || transmitted == 0 {
        return Err(Refusal::BadTimestamps);
    }
    let dispersion = short_ns(u32_at(reply, 4)) / 2 + short_ns(u32_at(reply, 8));
    if dispersion > MAX_DISPERSION_NS {
        return Err(Refusal::TooImprecise {
            dispersion_ms: dispersion / 1_000_000,
        });
    }
    let (t2, t3) = (from_ntp(received), from_ntp(transmitted));
    let delay_ns = (t4_ns - t1_ns) - (t3 - t2);
    // The server cannot send before it received, nor take longer than our round trip.
    if t3 < t2 || delay_ns < -NANOS / 100 {
        return Err(Refusal::BadTimestamps);
    }
    let offset_ns = ((t2 - t1_ns) + (t3 - t4_ns)) / 2;
    Ok(Sample {
        offset_ns,
        delay_ns: delay_ns.max(0),
        stratum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24 08:00:00 UTC.
    const NOW: i64 = 1_795_507_200 * NANOS;

    /// A reply as a server at `offset` from us would send to `req`, having received it
    /// `latency` after t1 and answered at once.
    fn reply_to(req: &[u8; PACKET], t1: i64, offset: i64, latency: i64) -> [u8; PACKET] {
        let mut p = [0u8; PACKET];
        p[0] = (4 << 3) | 4; // LI 0, version 4, mode 4 (server)
        p[1] = 2; // stratum 2
        p[4..8].copy_from_slice(&0x0000_0800u32.to_be_bytes()); // root delay 31 ms
        p[8..12].copy_from_slice(&0x0000_0400u32.to_be_bytes()); // root dispersion 15 ms
        p[12..16].copy_from_slice(b"GPS\0");
        p[24..32].copy_from_slice(&req[40..48]); // originate = our transmit
        let t2 = to_ntp(t1 + latency + offset);
        p[32..40].copy_from_slice(&t2.to_be_bytes());
        p[40..48].copy_from_slice(&t2.to_be_bytes());
        p
    }

    #[test]
    fn timestamps_round_trip_across_both_eras() {
        for unix_s in [
            0i64,
            1_000_000_000,
            2_085_978_495,
            2_085_978_496,
            4_000_000_000,
        ] {
            let ns = unix_s * NANOS + 123_456_789;
            let back = from_ntp(to_ntp(ns));
            assert!((back - ns).abs() <= 1, "{unix_s}: {back} vs {ns}");
        }
        // 2036-02-07 06:28:16 UTC is NTP second 2^32, written as 0 (era 1).
        assert_eq!(to_ntp(2_085_978_496 * NANOS), 0);
        // The Unix epoch is NTP second 2208988800, fraction 0.
        assert_eq!(to_ntp(0), 2_208_988_800u64 << 32);
        // Half a second is fraction 2^31.
        assert_eq!(to_ntp(NANOS / 2) & 0xFFFF_FFFF, 1 << 31);
    }

    #[test]
    fn a_request_is_version_4_client_mode_with_our_transmit_time() {
        let req = request(0x0123_4567_89AB_CDEF);
        assert_eq!(req[0], 0x23);
        assert!(req[1..40].iter().all(|&b| b == 0));
        assert_eq!(&req[40..], &0x0123_4567_89AB_CDEFu64.to_be_bytes());
    }

    #[test]
    fn offset_and_delay_of_a_good_reply() {
        let t1 = NOW;
        let sent = to_ntp(t1);
        let req = request(sent);
        // Server 3600 s ahead, 10 ms each way.
        let reply = reply_to(&req, t1, 3600 * NANOS, 10_000_000);
        let s = parse_reply(&reply, sent, t1, t1 + 20_000_000).unwrap();
        assert!((s.offset_ns - 3600 * NANOS).abs() < 1_000, "{s:?}");
        assert!((s.delay_ns - 20_000_000).abs() < 1_000, "{s:?}");
        assert_eq!(s.stratum, 2);
        // Server behind us.
        let reply = reply_to(&req, t1, -5 * NANOS, 1_000_000);
        let s = parse_reply(&reply, sent, t1, t1 + 2_000_000).unwrap();
        assert!((s.offset_ns + 5 * NANOS).abs() < 1_000, "{s:?}");
    }

    #[test]
    fn garbage_and_unusable_replies_are_refused_with_a_reason() {
        let t1 = NOW;
        let sent = to_ntp(t1);
        let good = reply_to(&request(sent), t1, 0, 1_000_000);
        let t4 = t1 + 2_000_000;
        let check = |p: &[u8]| parse_reply(p, sent, t1, t4);
        assert_eq!(check(&good[..47]), Err(Refusal::Short(47)));
        assert_eq!(check(b""), Err(Refusal::Short(0)));
        let mut p = good;
        p[0] = (4 << 3) | 3; // a client request echoed back
        assert_eq!(
            check(&p),
            Err(Refusal::NotAReply {
                version: 4,
                mode: 3
            })
        );
        let mut p = good;
        p[0] = (7 << 3) | 4;
        assert!(matches!(
            check(&p),
            Err(Refusal::NotAReply { version: 7, .. })
        ));
        let mut p = good;
        p[1] = 0;
        p[12..16].copy_from_slice(b"RATE");
        assert_eq!(check(&p), Err(Refusal::Kiss("RATE".into())));
        let mut p = good;
        p[0] |= 3 << 6; // leap indicator: alarm
        assert_eq!(check(&p), Err(Refusal::Unsynchronized));
        let mut p = good;
        p[1] = 16;
        assert_eq!(check(&p), Err(Refusal::Unsynchronized));
        let mut p = good;
        p[31] ^= 1; // originate differs from what we sent
        assert_eq!(check(&p), Err(Refusal::NotOurs));
        let mut p = good;
        p[40..48].fill(0);
        assert_eq!(check(&p), Err(Refusal::BadTimestamps));
        let mut p = good;
        // Transmitted a second before it received.
        let t2 = u64::from_be_bytes(p[32..40].try_into().unwrap());
        p[40..48].copy_from_slice(&(t2 - (1 << 32)).to_be_bytes());
        assert_eq!(check(&p), Err(Refusal::BadTimestamps));
        let mut p = good;
        p[8..12].copy_from_slice(&(20u32 << 16).to_be_bytes()); // 20 s dispersion
        assert!(matches!(check(&p), Err(Refusal::TooImprecise { .. })));
        // Every refusal reads as a sentence.
        assert!(Refusal::Kiss("DENY".into()).to_string().contains("DENY"));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse_reply(&bytes, x, NOW, NOW + 1);
        }
    }
}
