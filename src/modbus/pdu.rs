//! Function codes, exception codes and what a request PDU asks for.

/// The public function codes the card knows by name (Modbus Application Protocol v1.1b3 §6).
pub mod function {
    pub const READ_COILS: u8 = 0x01;
    pub const READ_DISCRETE_INPUTS: u8 = 0x02;
    pub const READ_HOLDING_REGISTERS: u8 = 0x03;
    pub const READ_INPUT_REGISTERS: u8 = 0x04;
    pub const WRITE_SINGLE_COIL: u8 = 0x05;
    pub const WRITE_SINGLE_REGISTER: u8 = 0x06;
    pub const READ_EXCEPTION_STATUS: u8 = 0x07;
    pub const DIAGNOSTICS: u8 = 0x08;
    pub const GET_COMM_EVENT_COUNTER: u8 = 0x0B;
    pub const GET_COMM_EVENT_LOG: u8 = 0x0C;
    pub const WRITE_MULTIPLE_COILS: u8 = 0x0F;
    pub const WRITE_MULTIPLE_REGISTERS: u8 = 0x10;
    pub const REPORT_SERVER_ID: u8 = 0x11;
    pub const READ_FILE_RECORD: u8 = 0x14;
    pub const WRITE_FILE_RECORD: u8 = 0x15;
    pub const MASK_WRITE_REGISTER: u8 = 0x16;
    pub const READ_WRITE_MULTIPLE_REGISTERS: u8 = 0x17;
    pub const READ_FIFO_QUEUE: u8 = 0x18;
    pub const ENCAPSULATED_INTERFACE: u8 = 0x2B;
}

/// A short name for the frame log.
pub fn function_name(code: u8) -> &'static str {
    use function::*;
    match code & 0x7F {
        READ_COILS => "read coils",
        READ_DISCRETE_INPUTS => "read discrete inputs",
        READ_HOLDING_REGISTERS => "read holding registers",
        READ_INPUT_REGISTERS => "read input registers",
        WRITE_SINGLE_COIL => "write single coil",
        WRITE_SINGLE_REGISTER => "write single register",
        READ_EXCEPTION_STATUS => "read exception status",
        DIAGNOSTICS => "diagnostics",
        GET_COMM_EVENT_COUNTER => "get comm event counter",
        GET_COMM_EVENT_LOG => "get comm event log",
        WRITE_MULTIPLE_COILS => "write multiple coils",
        WRITE_MULTIPLE_REGISTERS => "write multiple registers",
        REPORT_SERVER_ID => "report server id",
        READ_FILE_RECORD => "read file record",
        WRITE_FILE_RECORD => "write file record",
        MASK_WRITE_REGISTER => "mask write register",
        READ_WRITE_MULTIPLE_REGISTERS => "read/write multiple registers",
        READ_FIFO_QUEUE => "read fifo queue",
        ENCAPSULATED_INTERFACE => "encapsulated interface",
        _ => "unknown function",
    }
}

/// Exception codes (Modbus Application Protocol §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exception {
    IllegalFunction = 0x01,
    IllegalDataAddress = 0x02,
    IllegalDataValue = 0x03,
    ServerDeviceFailure = 0x04,
    Acknowledge = 0x05,
    ServerDeviceBusy = 0x06,
    MemoryParityError = 0x08,
    /// The gateway has no path to the addressed device (unknown unit, or link down).
    GatewayPathUnavailable = 0x0A,
    /// The device did not answer, or answered wrongly, before the timeout.
    GatewayTargetFailedToRespond = 0x0B,
}

impl Exception {
    /// The exception PDU answering a request with function `code`.
    pub fn pdu(self, code: u8) -> [u8; 2] {
        [code | 0x80, self as u8]
    }

    pub fn from_code(code: u8) -> Option<Exception> {
        use Exception::*;
        Some(match code {
            0x01 => IllegalFunction,
            0x02 => IllegalDataAddress,
            0x03 => IllegalDataValue,
            0x04 => ServerDeviceFailure,
            0x05 => Acknowledge,
            0x06 => ServerDeviceBusy,
            0x08 => MemoryParityError,
            0x0A => GatewayPathUnavailable,
            0x0B => GatewayTargetFailedToRespond,
            _ => return None,
        })
    }
}

/// True for the functions a broadcast may carry: writes, since nobody answers it.
pub fn may_broadcast(code: u8) -> bool {
    use function::*;
    matches!(
        code,
        WRITE_SINGLE_COIL
            | WRITE_SINGLE_REGISTER
            | WRITE_MULTIPLE_COILS
            | WRITE_MULTIPLE_REGISTERS
            | MASK_WRITE_REGISTER
            | WRITE_FILE_RECORD
    )
}

/// True when a response PDU is an exception.
pub fn is_exception(pdu: &[u8]) -> bool {
    pdu.first().is_some_and(|fc| fc & 0x80 != 0)
}

/// Big-endian word at `at`, if the slice is long enough.
pub fn word(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// What an answer to `request` must contain, beyond its function code, so that an answer to
/// some other request (a late one, say) is not taken for it. `None` where the answer's shape
/// does not depend on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Reads: the byte count of the answer.
    ByteCount(u8),
    /// Single writes and mask write: the answer echoes the request's first `n` data bytes.
    Echo(usize),
}

/// The [`Expect`] rule for a request PDU (function code first).
pub fn expect(request: &[u8]) -> Option<Expect> {
    use function::*;
    let fc = *request.first()?;
    match fc {
        READ_COILS | READ_DISCRETE_INPUTS => {
            let quantity = word(request, 3)?;
            Some(Expect::ByteCount(u8::try_from(quantity.div_ceil(8)).ok()?))
        }
        READ_HOLDING_REGISTERS | READ_INPUT_REGISTERS => {
            let quantity = word(request, 3)?;
            Some(Expect::ByteCount(
                u8::try_from(quantity.checked_mul(2)?).ok()?,
            ))
        }
        READ_WRITE_MULTIPLE_REGISTERS => {
            let quantity = word(request, 3)?;
            Some(Expect::ByteCount(
                u8::try_from(quantity.checked_mul(2)?).ok()?,
            ))
        }
        WRITE_SINGLE_COIL | WRITE_SINGLE_REGISTER => Some(Expect::Echo(4)),
        MASK_WRITE_REGISTER => Some(Expect::Echo(6)),
        // Address and quantity come back.
        WRITE_MULTIPLE_COILS | WRITE_MULTIPLE_REGISTERS => Some(Expect::Echo(4)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_pdu_sets_the_high_bit() {
        assert_eq!(
            Exception::GatewayTargetFailedToRespond.pdu(0x03),
            [0x83, 0x0B]
        );
        assert_eq!(Exception::GatewayPathUnavailable.pdu(0x10), [0x90, 0x0A]);
        for code in 0..=255u8 {
            if let Some(e) = Exception::from_code(code) {
                assert_eq!(e as u8, code);
            }
        }
    }

    #[test]
    fn expectations_follow_the_request() {
        assert_eq!(
            expect(&[0x03, 0x10, 0x60, 0x00, 0x30]),
            Some(Expect::ByteCount(96))
        );
        assert_eq!(
            expect(&[0x01, 0x00, 0x00, 0x00, 0x09]),
            Some(Expect::ByteCount(2))
        );
        assert_eq!(
            expect(&[0x06, 0x05, 0xB0, 0x00, 0x03]),
            Some(Expect::Echo(4))
        );
        // 200 registers cannot be answered in one frame: no byte count fits, so no rule.
        assert_eq!(expect(&[0x03, 0x00, 0x00, 0x00, 200]), None);
        assert_eq!(expect(&[0x03]), None);
        assert_eq!(expect(&[0x2B, 0x0E, 0x01, 0x00]), None);
    }
}

/// A PDU in a fixed buffer, so passing one between threads never allocates.
#[derive(Clone, Copy)]
pub struct PduBuf {
    len: u8,
    bytes: [u8; super::MAX_PDU],
}

impl PduBuf {
    /// The empty PDU: "no answer" (a broadcast).
    pub const EMPTY: PduBuf = PduBuf {
        len: 0,
        bytes: [0; super::MAX_PDU],
    };

    /// Copies `pdu`; `None` if it is longer than the protocol allows.
    pub fn new(pdu: &[u8]) -> Option<PduBuf> {
        let mut buf = PduBuf::EMPTY;
        buf.bytes.get_mut(..pdu.len())?.copy_from_slice(pdu);
        buf.len = pdu.len() as u8;
        Some(buf)
    }

    pub fn exception(function: u8, exception: Exception) -> PduBuf {
        PduBuf::new(&exception.pdu(function)).expect("2 bytes fit")
    }
}

impl std::ops::Deref for PduBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for PduBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PduBuf({:02X?})", &**self)
    }
}
