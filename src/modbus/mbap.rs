//! The MBAP header of Modbus TCP: transaction id, protocol id (always 0), length (of unit
//! id + PDU), unit id; then the PDU.

/// Bytes in the header, unit id included.
pub const HEADER_LEN: usize = 7;
/// Largest frame: header + 253-byte PDU.
pub const MAX_FRAME: usize = HEADER_LEN + super::MAX_PDU;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub transaction: u16,
    pub unit: u8,
}

/// A header that can never become valid: the implementation guide has the connection
/// closed, since the byte stream can no longer be trusted to be in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The protocol id is not 0 (Modbus).
    ProtocolId(u16),
    /// The length field is outside 2..=254 (unit id plus a PDU of 1..=253 bytes).
    Length(u16),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::ProtocolId(p) => write!(f, "protocol id {p} is not Modbus (0)"),
            HeaderError::Length(n) => write!(f, "length field {n} outside 2..=254"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Looks at the start of `buf`: `Ok(None)` while the frame is incomplete, `Ok(Some(n))` when
/// the first `n` bytes are a whole frame. A bad header is reported as soon as its bytes have
/// arrived, without waiting for a body that may never come.
pub fn check(buf: &[u8]) -> Result<Option<usize>, HeaderError> {
    if buf.len() >= 4 {
        let protocol = u16::from_be_bytes([buf[2], buf[3]]);
        if protocol != 0 {
            return Err(HeaderError::ProtocolId(protocol));
        }
    }
    if buf.len() < 6 {
        return Ok(None);
    }
    let length = u16::from_be_bytes([buf[4], buf[5]]);
    if !(2..=254).contains(&length) {
        return Err(HeaderError::Length(length));
    }
    let total = 6 + usize::from(length);
    Ok((buf.len() >= total).then_some(total))
}

/// Splits a whole frame (as measured by [`check`]) into header and PDU.
pub fn split(frame: &[u8]) -> (Header, &[u8]) {
    let header = Header {
        transaction: u16::from_be_bytes([frame[0], frame[1]]),
        unit: frame[6],
    };
    (header, &frame[HEADER_LEN..])
}

/// Appends a frame carrying `pdu` to `out`.
pub fn encode(header: Header, pdu: &[u8], out: &mut Vec<u8>) {
    let length = (pdu.len() + 1) as u16;
    out.extend_from_slice(&header.transaction.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&length.to_be_bytes());
    out.push(header.unit);
    out.extend_from_slice(pdu);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_request() {
        // tid 0x0102, protocol 0, length 6, unit 1, read holding 0x1060 x 48
        let frame = [0x01, 0x02, 0, 0, 0, 6, 1, 0x03, 0x10, 0x60, 0x00, 0x30];
        for cut in 0..frame.len() {
            assert_eq!(check(&frame[..cut]), Ok(None));
        }
        assert_eq!(check(&frame), Ok(Some(12)));
        let (header, pdu) = split(&frame);
        assert_eq!(
            header,
            Header {
                transaction: 0x0102,
                unit: 1
            }
        );
        assert_eq!(pdu, &[0x03, 0x10, 0x60, 0x00, 0x30]);
        let mut out = Vec::new();
        encode(header, pdu, &mut out);
        assert_eq!(out, frame);
    }

    #[test]
    fn bad_headers_are_known_before_the_body() {
        assert_eq!(check(&[0, 1, 0, 7]), Err(HeaderError::ProtocolId(7)));
        assert_eq!(check(&[0, 1, 0, 0, 0, 1]), Err(HeaderError::Length(1)));
        assert_eq!(check(&[0, 1, 0, 0, 0, 255]), Err(HeaderError::Length(255)));
        assert_eq!(
            check(&[0, 1, 0, 0, 0xFF, 0xFF]),
            Err(HeaderError::Length(0xFFFF))
        );
        assert_eq!(check(&[0, 1, 0, 0, 0, 254]), Ok(None));
    }
}
