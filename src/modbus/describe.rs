//! Frames in words, for the frame log page: "read holding registers 0x1060 ×48",
//! "48 registers: 0x0028 0x0029 …", "exception 02: illegal data address".
//!
//! Pure: an RTU frame (address, PDU, CRC) in, one line out. An answer is described by
//! itself (its byte count says how many registers), so entries need no pairing.

use super::pdu::{function::*, function_name, word};

/// Exception code in words.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// A request PDU in words.
pub fn request(pdu: &[u8]) -> String {
    let Some(&fc) = pdu.first() else {
        return "empty".into();
    };
    let name = function_name(fc);
    let (a, b) = (word(pdu, 1), word(pdu, 3));
    match (fc, a, b) {
        (
            READ_COILS | READ_DISCRETE_INPUTS | READ_HOLDING_REGISTERS | READ_INPUT_REGISTERS,
            Some(addr),
            Some(n),
        ) => format!("{name} 0x{addr:04X} ×{n}"),
        (WRITE_SINGLE_REGISTER, Some(addr), Some(v)) => {
            format!("{name} 0x{addr:04X} = 0x{v:04X} ({v})")
        }
        (WRITE_SINGLE_COIL, Some(addr), Some(v)) => {
            format!(
                "{name} 0x{addr:04X} = {}",
                if v == 0xFF00 { "on" } else { "off" }
            )
        }
        (WRITE_MULTIPLE_REGISTERS | WRITE_MULTIPLE_COILS, Some(addr), Some(n)) => {
            format!("{name} 0x{addr:04X} ×{n}")
        }
        (DIAGNOSTICS, Some(sub), _) => format!("{name}, sub-function {sub}"),
        (ENCAPSULATED_INTERFACE, _, _) if pdu.get(1) == Some(&0x0E) => {
            "read device identification".into()
        }
        _ => format!("{name} ({:02X}h)", fc),
    }
}

/// An answer PDU in words.
pub fn answer(pdu: &[u8]) -> String {
    let Some(&fc) = pdu.first() else {
        return "no answer (broadcast)".into();
    };
    if fc & 0x80 != 0 {
        let code = pdu.get(1).copied().unwrap_or(0);
        return format!("exception {code:02X}: {}", exception_name(code));
    }
    match fc {
        READ_HOLDING_REGISTERS | READ_INPUT_REGISTERS | READ_WRITE_MULTIPLE_REGISTERS => {
            let words: Vec<String> = (0..)
                .map_while(|i| word(pdu, 2 + 2 * i))
                .map(|w| format!("0x{w:04X}"))
                .collect();
            let shown = words.iter().take(8).cloned().collect::<Vec<_>>().join(" ");
            let more = if words.len() > 8 { " …" } else { "" };
            let noun = if words.len() == 1 {
                "register"
            } else {
                "registers"
            };
            format!("{} {noun}: {shown}{more}", words.len())
        }
        READ_COILS | READ_DISCRETE_INPUTS => {
            format!("{} bytes of bits", pdu.get(1).copied().unwrap_or(0))
        }
        WRITE_SINGLE_REGISTER
        | WRITE_SINGLE_COIL
        | WRITE_MULTIPLE_REGISTERS
        | WRITE_MULTIPLE_COILS => format!("{} done", function_name(fc)),
        _ => format!("{} answer, {} bytes", function_name(fc), pdu.len()),
    }
}

/// An RTU frame in words: "slave 1: …", the PDU read as a request or an answer.
pub fn frame(bytes: &[u8], is_request: bool) -> String {
    if bytes.len() < 4 {
        return format!("{} bytes, not a frame", bytes.len());
    }
    let pdu = &bytes[1..bytes.len() - 2];
    let text = if is_request {
        request(pdu)
    } else {
        answer(pdu)
    };
    format!("slave {}: {text}", bytes[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_read_as_words() {
        assert_eq!(
            request(&[0x03, 0x10, 0x60, 0x00, 0x30]),
            "read holding registers 0x1060 ×48"
        );
        assert_eq!(
            request(&[0x06, 0x05, 0xB0, 0x00, 0x03]),
            "write single register 0x05B0 = 0x0003 (3)"
        );
        assert_eq!(answer(&[0x83, 0x02]), "exception 02: illegal data address");
        assert_eq!(
            answer(&[0x03, 0x04, 0x00, 0x28, 0x00, 0x29]),
            "2 registers: 0x0028 0x0029"
        );
        let long: Vec<u8> = [0x03, 20].into_iter().chain([0u8; 20]).collect();
        assert!(answer(&long).ends_with(" …"));
        assert_eq!(
            frame(&[0x01, 0x03, 0x10, 0x60, 0x00, 0x01, 0x80, 0xD4], true),
            "slave 1: read holding registers 0x1060 ×1"
        );
        assert_eq!(frame(&[0x01, 0x02], false), "2 bytes, not a frame");
    }
}
