//! Modbus RTU framing: `address, PDU, CRC (low byte first)`.
//!
//! A serial reader does not want to wait for the 3.5-character silence after every answer:
//! at 9600 baud that is 3.6 ms lost per request. So the length of a frame is computed from
//! its function code (and byte count, where it has one) and a frame is complete the moment
//! its last byte arrives. Only functions whose length cannot be known from their bytes
//! ([`Status::UntilSilence`]) fall back to the silence rule.

use super::crc;
use super::pdu::{self, function::*, Expect};
use super::MAX_RTU;
use std::fmt;
use std::time::Duration;

/// Address 0 is a broadcast: every slave acts, none answers.
pub const BROADCAST: u8 = 0;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// More bytes are needed; at least this many in all.
    Incomplete(usize),
    /// A whole, valid frame of this many bytes starts the buffer.
    Complete(usize),
    /// The length cannot be known from the bytes (unknown function, or one of variable
    /// shape): the frame ends at the first 3.5-character silence; then call [`check_silent`].
    UntilSilence,
}

/// Which rule a frame broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The CRC does not match the bytes.
    BadCrc,
    /// An answer from another slave than the one asked.
    WrongSlave { expected: u8, got: u8 },
    /// An answer for another function than the one asked.
    WrongFunction { expected: u8, got: u8 },
    /// The answer's shape does not fit the request (byte count, echoed address or value).
    Mismatch,
    /// Fewer bytes than the smallest frame (4) before the line fell silent.
    TooShort,
    /// More bytes than the largest frame (256).
    TooLong,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadCrc => write!(f, "bad CRC"),
            FrameError::WrongSlave { expected, got } => {
                write!(f, "answer from slave {got}, expected {expected}")
            }
            FrameError::WrongFunction { expected, got } => {
                write!(
                    f,
                    "answer for function 0x{got:02X}, expected 0x{expected:02X}"
                )
            }
            FrameError::Mismatch => write!(f, "answer does not fit the request"),
            FrameError::TooShort => write!(f, "truncated frame"),
            FrameError::TooLong => write!(f, "frame longer than 256 bytes"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes `address, pdu, crc` into `out` (cleared first).
pub fn encode(address: u8, pdu: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(address);
    out.extend_from_slice(pdu);
    let crc = crc::crc16(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The PDU inside a whole frame (address and CRC removed).
pub fn pdu_of(frame: &[u8]) -> &[u8] {
    &frame[1..frame.len() - 2]
}

/// Length of a request frame from its first bytes, as a slave sees it.
fn request_len(buf: &[u8]) -> Result<Status, FrameError> {
    let need = |n: usize| Ok(Status::Incomplete(n));
    let Some(&fc) = buf.get(1) else {
        return need(2);
    };
    let counted = |at: usize, fixed: usize| match buf.get(at) {
        Some(&n) => Ok(Status::Complete(fixed + usize::from(n))),
        None => need(at + 1),
    };
    match fc {
        READ_COILS..=WRITE_SINGLE_REGISTER => Ok(Status::Complete(8)),
        // Sub-function 0 ("return query data") carries data of any length.
        DIAGNOSTICS => match pdu::word(buf, 2) {
            Some(0) => Ok(Status::UntilSilence),
            Some(_) => Ok(Status::Complete(8)),
            None => need(4),
        },
        READ_EXCEPTION_STATUS | GET_COMM_EVENT_COUNTER | GET_COMM_EVENT_LOG | REPORT_SERVER_ID => {
            Ok(Status::Complete(4))
        }
        // address, fc, start(2), quantity(2), byte count, data, crc(2)
        WRITE_MULTIPLE_COILS | WRITE_MULTIPLE_REGISTERS => counted(6, 9),
        READ_FILE_RECORD | WRITE_FILE_RECORD => counted(2, 5),
        MASK_WRITE_REGISTER => Ok(Status::Complete(10)),
        // address, fc, read start(2), read qty(2), write start(2), write qty(2), byte count
        READ_WRITE_MULTIPLE_REGISTERS => counted(10, 13),
        READ_FIFO_QUEUE => Ok(Status::Complete(6)),
        // Read device identification (MEI type 0x0E) has a fixed shape; other MEI types not.
        ENCAPSULATED_INTERFACE => match buf.get(2) {
            Some(0x0E) => Ok(Status::Complete(7)),
            Some(_) => Ok(Status::UntilSilence),
            None => need(3),
        },
        _ => Ok(Status::UntilSilence),
    }
}

/// Length of an answer to `request_pdu` from its first bytes.
fn response_len(request_pdu: &[u8], buf: &[u8]) -> Result<Status, FrameError> {
    let need = |n: usize| Ok(Status::Incomplete(n));
    let Some(&fc) = buf.get(1) else {
        return need(2);
    };
    if fc & 0x80 != 0 {
        return Ok(Status::Complete(5));
    }
    let counted = |at: usize, fixed: usize| match buf.get(at) {
        Some(&n) => Ok(Status::Complete(fixed + usize::from(n))),
        None => need(at + 1),
    };
    match fc {
        READ_COILS..=READ_INPUT_REGISTERS
        | GET_COMM_EVENT_LOG
        | REPORT_SERVER_ID
        | READ_FILE_RECORD
        | WRITE_FILE_RECORD
        | READ_WRITE_MULTIPLE_REGISTERS => counted(2, 5),
        WRITE_SINGLE_COIL | WRITE_SINGLE_REGISTER => Ok(Status::Complete(8)),
        WRITE_MULTIPLE_COILS | WRITE_MULTIPLE_REGISTERS => Ok(Status::Complete(8)),
        READ_EXCEPTION_STATUS => Ok(Status::Complete(5)),
        // Diagnostics echo their request: sub-function 0 ("return query data") echoes it whole.
        DIAGNOSTICS => Ok(Status::Complete(request_pdu.len() + 3)),
        GET_COMM_EVENT_COUNTER => Ok(Status::Complete(8)),
        MASK_WRITE_REGISTER => Ok(Status::Complete(10)),
        // The FIFO answer's byte count is a 16-bit word.
        READ_FIFO_QUEUE => match pdu::word(buf, 2) {
            Some(n) => Ok(Status::Complete(6 + usize::from(n))),
            None => need(4),
        },
        _ => Ok(Status::UntilSilence),
    }
}

/// Checks the start of `buf` as a request from a master (the slave's view).
///
/// Returns `Complete(n)` once the first `n` bytes are a whole frame with a good CRC.
pub fn check_request(buf: &[u8]) -> Result<Status, FrameError> {
    finish(buf, request_len(buf)?)
}

/// Checks the start of `buf` as the answer of slave `address` to `request_pdu`.
///
/// Wrong slave and wrong function are reported as soon as those bytes arrive, so a reader
/// can give up early; a frame that does not fit the request (see [`pdu::expect`]) is a
/// [`FrameError::Mismatch`].
pub fn check_response(address: u8, request_pdu: &[u8], buf: &[u8]) -> Result<Status, FrameError> {
    let Some(&got) = buf.first() else {
        return Ok(Status::Incomplete(1));
    };
    if got != address {
        return Err(FrameError::WrongSlave {
            expected: address,
            got,
        });
    }
    let expected = request_pdu.first().copied().unwrap_or(0);
    if let Some(&fc) = buf.get(1) {
        if fc & 0x7F != expected {
            return Err(FrameError::WrongFunction {
                expected,
                got: fc & 0x7F,
            });
        }
    }
    let status = finish(buf, response_len(request_pdu, buf)?)?;
    if let Status::Complete(n) = status {
        let answer = pdu_of(&buf[..n]);
        if !pdu::is_exception(answer) && !fits(request_pdu, answer) {
            return Err(FrameError::Mismatch);
        }
    }
    Ok(status)
}

/// True when a (non-exception) answer has the shape its request calls for.
fn fits(request_pdu: &[u8], answer: &[u8]) -> bool {
    match pdu::expect(request_pdu) {
        Some(Expect::ByteCount(n)) => answer.get(1) == Some(&n),
        Some(Expect::Echo(n)) => answer.get(1..1 + n) == request_pdu.get(1..1 + n),
        None => true,
    }
}

/// Validates a frame whose end was found by silence: all of `buf` is the frame.
pub fn check_silent(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::TooShort);
    }
    if buf.len() > MAX_RTU {
        return Err(FrameError::TooLong);
    }
    if !crc::is_valid(buf) {
        return Err(FrameError::BadCrc);
    }
    Ok(buf.len())
}

/// Turns a length into a status for what has arrived, checking the CRC when all is there.
fn finish(buf: &[u8], status: Status) -> Result<Status, FrameError> {
    match status {
        Status::Complete(n) if n > MAX_RTU => Err(FrameError::TooLong),
        Status::Complete(n) if buf.len() < n => Ok(Status::Incomplete(n)),
        Status::Complete(n) if !crc::is_valid(&buf[..n]) => Err(FrameError::BadCrc),
        other => Ok(other),
    }
}

/// What a slave makes of the bytes received so far: see [`next_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A whole valid frame of this many bytes starts the buffer.
    Frame(usize),
    /// The line fell silent on bytes that are no valid frame: drop this many. All of them,
    /// or the noise before a whole frame of known length that ends at the silence (the next
    /// call takes it).
    Garbage(usize),
    /// Wait for more bytes, or for the silence.
    Wait,
}

/// Frames requests as a slave receives them. A frame ends at its last byte when its
/// function tells its length, otherwise at the 3.5-character silence; bytes that break a
/// rule (bad CRC, a frame cut short) are garbage up to the next silence, where the next
/// frame can start. `silent`: the line has been quiet for 3.5 characters since the last
/// byte.
pub fn next_request(buf: &[u8], silent: bool) -> Framing {
    if buf.is_empty() {
        return Framing::Wait;
    }
    match check_request(buf) {
        Ok(Status::Complete(n)) => Framing::Frame(n),
        Ok(Status::UntilSilence) if silent => match check_silent(buf) {
            Ok(n) => Framing::Frame(n),
            Err(_) => Framing::Garbage(noise_before_frame(buf)),
        },
        _ if silent => Framing::Garbage(noise_before_frame(buf)),
        _ => Framing::Wait,
    }
}

/// How many bytes of `buf` (no valid frame, ended by a silence) to drop: up to a whole
/// request of known length with a good CRC that ends exactly at the silence, else all.
/// A burst of noise just before a master's request (a driver switching on, a reflection,
/// a reader scheduled late that gets both at once) then costs the noise, not the request.
/// Only lengths the function fixes are taken: a frame ending at the silence with a CRC
/// that a random run matches by chance once in 65,536 tries, at one place only.
///
/// It runs on the RS485 thread: only the last [`MAX_RTU`] bytes can hold such a frame, and
/// the CRC is computed only where the function's length reaches exactly to the end.
fn noise_before_frame(buf: &[u8]) -> usize {
    let len = buf.len();
    (len.saturating_sub(MAX_RTU).max(1)..len.saturating_sub(3))
        .find(|&k| {
            request_len(&buf[k..]) == Ok(Status::Complete(len - k)) && crc::is_valid(&buf[k..])
        })
        .unwrap_or(len)
}

/// Bits on the wire per character: start, 8 data, stop (8N1, as the card's ports use).
pub const BITS_PER_CHAR: u32 = 10;

/// Time to send one character at `baud`.
pub fn char_time(baud: u32) -> Duration {
    Duration::from_nanos(u64::from(BITS_PER_CHAR) * 1_000_000_000 / u64::from(baud.max(1)))
}

/// Time to send `bytes` characters at `baud`.
pub fn wire_time(baud: u32, bytes: usize) -> Duration {
    char_time(baud) * bytes as u32
}

/// The silence that ends a frame: 3.5 characters, fixed at 1.75 ms above 19200 baud
/// (Modbus over serial line §2.5.1.1).
pub fn t35(baud: u32) -> Duration {
    if baud > 19200 {
        Duration::from_micros(1750)
    } else {
        Duration::from_nanos(u64::from(BITS_PER_CHAR) * 3_500_000_000 / u64::from(baud.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(bytes[0], &bytes[1..], &mut out);
        out
    }

    #[test]
    fn encodes_a_read_request() {
        // slave 1, read holding registers, start 0x1060, 48 words, CRC 0x0041 low byte first
        assert_eq!(
            frame(&[0x01, 0x03, 0x10, 0x60, 0x00, 0x30]),
            [0x01, 0x03, 0x10, 0x60, 0x00, 0x30, 0x41, 0x00]
        );
    }

    #[test]
    fn read_answer_is_complete_at_its_last_byte() {
        let req = [0x03, 0x10, 0x60, 0x00, 0x02];
        // slave 1, fc 3, byte count 4, two words, CRC
        let answer = frame(&[0x01, 0x03, 0x04, 0x00, 0x2A, 0xFF, 0xFF]);
        for cut in 0..answer.len() {
            let status = check_response(1, &req, &answer[..cut]).unwrap();
            assert!(
                matches!(status, Status::Incomplete(_)),
                "cut {cut}: {status:?}"
            );
        }
        assert_eq!(check_response(1, &req, &answer), Ok(Status::Complete(9)));
    }

    #[test]
    fn exception_is_complete_after_five_bytes() {
        let req = [0x03, 0x20, 0x00, 0x00, 0x01];
        let answer = frame(&[0x01, 0x83, 0x02]);
        assert_eq!(answer.len(), 5);
        assert!(matches!(
            check_response(1, &req, &answer[..4]),
            Ok(Status::Incomplete(5))
        ));
        assert_eq!(check_response(1, &req, &answer), Ok(Status::Complete(5)));
    }

    #[test]
    fn wrong_answers_say_which_rule_they_broke() {
        let req = [0x03, 0x10, 0x60, 0x00, 0x01];
        let good = frame(&[0x01, 0x03, 0x02, 0x00, 0x2A]);
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 0xFF;
        assert_eq!(check_response(1, &req, &bad_crc), Err(FrameError::BadCrc));
        // Known on the first byte: no need to wait for the rest.
        assert_eq!(
            check_response(1, &req, &[0x02]),
            Err(FrameError::WrongSlave {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            check_response(1, &req, &[0x01, 0x04]),
            Err(FrameError::WrongFunction {
                expected: 3,
                got: 4
            })
        );
        // Two registers in the answer to a request for one: an answer to another request.
        let other = frame(&[0x01, 0x03, 0x04, 0x00, 0x2A, 0x00, 0x2B]);
        assert_eq!(check_response(1, &req, &other), Err(FrameError::Mismatch));
        // A write answered with another register's echo.
        let write = [0x06, 0x05, 0xB0, 0x00, 0x03];
        let echo = frame(&[0x01, 0x06, 0x05, 0xB0, 0x00, 0x04]);
        assert_eq!(check_response(1, &write, &echo), Err(FrameError::Mismatch));
    }

    #[test]
    fn request_lengths_for_every_public_function() {
        let cases: &[(&[u8], usize)] = &[
            (&[1, 0x01, 0, 0, 0, 8], 8),
            (&[1, 0x03, 0x10, 0x60, 0, 48], 8),
            (&[1, 0x06, 0x05, 0xB0, 0, 3], 8),
            (&[1, 0x07], 4),
            (&[1, 0x08, 0x00, 0x0B, 0, 0], 8),
            (&[1, 0x0B], 4),
            (&[1, 0x0C], 4),
            (&[1, 0x0F, 0, 0, 0, 10, 2, 0xFF, 0x03], 11),
            (&[1, 0x10, 0, 0, 0, 2, 4, 0, 1, 0, 2], 13),
            (&[1, 0x11], 4),
            (&[1, 0x14, 7, 6, 0, 4, 0, 1, 0, 2], 12),
            (&[1, 0x16, 0, 4, 0, 0xF2, 0, 0x25], 10),
            (&[1, 0x17, 0, 3, 0, 6, 0, 14, 0, 1, 2, 0, 0xFF], 15),
            (&[1, 0x18, 0x04, 0xDE], 6),
            (&[1, 0x2B, 0x0E, 0x01, 0x00], 7),
        ];
        for (body, len) in cases {
            let f = frame(body);
            assert_eq!(f.len(), *len, "fixture {body:02X?}");
            assert_eq!(check_request(&f), Ok(Status::Complete(*len)), "{body:02X?}");
            for cut in 0..f.len() {
                assert!(
                    matches!(check_request(&f[..cut]), Ok(Status::Incomplete(_))),
                    "{body:02X?} cut at {cut}"
                );
            }
        }
        assert_eq!(
            check_request(&frame(&[1, 0x41, 1, 2])),
            Ok(Status::UntilSilence)
        );
        let echo = frame(&[1, 0x08, 0, 0, 1, 2, 3, 4, 5]);
        assert_eq!(check_request(&echo), Ok(Status::UntilSilence));
    }

    #[test]
    fn response_lengths_for_every_public_function() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[0x01, 0, 0, 0, 10], &[1, 0x01, 2, 0xCD, 0x01]),
            (&[0x02, 0, 0, 0, 3], &[1, 0x02, 1, 0x05]),
            (&[0x04, 0, 8, 0, 1], &[1, 0x04, 2, 0, 10]),
            (&[0x05, 0, 0xAC, 0xFF, 0], &[1, 0x05, 0, 0xAC, 0xFF, 0]),
            (&[0x07], &[1, 0x07, 0x6D]),
            (&[0x08, 0, 0, 0xA5, 0x37], &[1, 0x08, 0, 0, 0xA5, 0x37]),
            (&[0x0B], &[1, 0x0B, 0xFF, 0xFF, 0x01, 0x08]),
            (&[0x0C], &[1, 0x0C, 8, 0, 0, 1, 8, 1, 0x21, 0x20, 0]),
            (
                &[0x0F, 0, 0x13, 0, 10, 2, 0xCD, 1],
                &[1, 0x0F, 0, 0x13, 0, 10],
            ),
            (&[0x10, 0, 1, 0, 2, 4, 0, 10, 1, 2], &[1, 0x10, 0, 1, 0, 2]),
            (&[0x11], &[1, 0x11, 3, 0x42, 0xFF, 0x00]),
            (
                &[0x16, 0, 4, 0, 0xF2, 0, 0x25],
                &[1, 0x16, 0, 4, 0, 0xF2, 0, 0x25],
            ),
            (
                &[0x17, 0, 3, 0, 2, 0, 14, 0, 1, 2, 0, 0xFF],
                &[1, 0x17, 4, 0, 0xFE, 0x0A, 0xCD],
            ),
            (
                &[0x18, 0x04, 0xDE],
                &[1, 0x18, 0, 6, 0, 2, 0x01, 0xB8, 0x12, 0x84],
            ),
        ];
        for (req, body) in cases {
            let f = frame(body);
            assert_eq!(
                check_response(1, req, &f),
                Ok(Status::Complete(f.len())),
                "{body:02X?}"
            );
        }
        let mei = frame(&[1, 0x2B, 0x0E, 0x01, 0x01, 0, 0, 0]);
        assert_eq!(
            check_response(1, &[0x2B, 0x0E, 1, 0], &mei),
            Ok(Status::UntilSilence)
        );
        assert_eq!(check_silent(&mei), Ok(mei.len()));
        assert_eq!(check_silent(&[1, 2, 3]), Err(FrameError::TooShort));
    }

    #[test]
    fn a_slave_frames_requests_and_resynchronises_at_the_silence() {
        let read = frame(&[1, 0x03, 0x10, 0x60, 0x00, 0x01]);
        // Known length: a frame at its last byte, without waiting for the silence.
        assert_eq!(next_request(&read[..5], false), Framing::Wait);
        assert_eq!(next_request(&read, false), Framing::Frame(8));
        // Cut short, then silence: garbage.
        assert_eq!(next_request(&read[..5], true), Framing::Garbage(5));
        // A bad CRC stays garbage until the silence; then a whole request that ends at
        // the silence is kept, and only what came before it goes.
        let mut bad = read.clone();
        bad[7] ^= 0x55;
        bad.extend_from_slice(&read);
        assert_eq!(next_request(&bad, false), Framing::Wait);
        assert_eq!(next_request(&bad, true), Framing::Garbage(8));
        assert_eq!(next_request(&bad[8..], true), Framing::Frame(8));
        // Noise and the master's next request read as one run (the reader was late for the
        // silence between them): the request is kept.
        let mut noisy = vec![
            0xF4, 0x50, 0xEB, 0xBB, 0xA4, 0x67, 0x2C, 0xC7, 0x23, 0x5A, 0xEB, 0x51, 0x46,
        ];
        let request = frame(&[1, 0x03, 0x10, 0x60, 0x00, 0x30]);
        noisy.extend_from_slice(&request);
        assert_eq!(next_request(&noisy, true), Framing::Garbage(13));
        assert_eq!(next_request(&noisy[13..], true), Framing::Frame(8));
        // A request cut short at the end is no frame: all of it goes.
        assert_eq!(next_request(&noisy[..20], true), Framing::Garbage(20));
        // Unknown length: a frame only at the silence, and only with a good CRC.
        let odd = frame(&[1, 0x41, 1, 2, 3]);
        assert_eq!(next_request(&odd, false), Framing::Wait);
        assert_eq!(next_request(&odd, true), Framing::Frame(odd.len()));
        assert_eq!(
            next_request(&odd[..odd.len() - 1], true),
            Framing::Garbage(odd.len() - 1)
        );
        assert_eq!(next_request(&[], true), Framing::Wait);
    }

    #[test]
    fn timing_follows_the_serial_line_guide() {
        assert_eq!(char_time(9600), Duration::from_nanos(1_041_666));
        assert_eq!(t35(9600), Duration::from_nanos(3_645_833));
        assert_eq!(t35(19200), Duration::from_nanos(1_822_916));
        assert_eq!(t35(57600), Duration::from_micros(1750));
    }
}
