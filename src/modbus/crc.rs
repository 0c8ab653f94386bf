//! CRC-16/MODBUS: polynomial 0xA001 (reflected 0x8005), initial value 0xFFFF.
//! The low byte goes on the wire first.

const fn make_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static TABLE: [u16; 256] = make_table();

/// The CRC of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |crc, &b| {
        (crc >> 8) ^ TABLE[((crc ^ u16::from(b)) & 0xFF) as usize]
    })
}

/// True when the last two bytes of `frame` are the CRC of the bytes before them.
pub fn is_valid(frame: &[u8]) -> bool {
    if frame.len() < 3 {
        return false;
    }
    let (body, tail) = frame.split_at(frame.len() - 2);
    crc16(body).to_le_bytes() == [tail[0], tail[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference, as the Modbus over serial line guide (§6.2.2) describes it.
    fn reference(data: &[u8]) -> u16 {
        let mut crc = 0xFFFFu16;
        for &b in data {
            crc ^= u16::from(b);
            for _ in 0..8 {
                let lsb = crc & 1;
                crc >>= 1;
                if lsb != 0 {
                    crc ^= 0xA001;
                }
            }
        }
        crc
    }

    #[test]
    fn known_frames() {
        // Read holding registers, slave 1, address 0x1060, 48 words: "01 03 10 60 00 30" + CRC.
        assert_eq!(
            crc16(&[0x01, 0x03, 0x10, 0x60, 0x00, 0x30]).to_le_bytes(),
            [0x41, 0x00]
        );
        // The guide's example frame: slave 0x02, function 0x07 has CRC 0x1241 (0x41 0x12 on the wire).
        assert_eq!(crc16(&[0x02, 0x07]), 0x1241);
        // CRC-16/MODBUS check value of "123456789".
        assert_eq!(crc16(b"123456789"), 0x4B37);
    }

    #[test]
    fn table_matches_reference_for_all_byte_pairs() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(crc16(&[a, b]), reference(&[a, b]));
            }
        }
    }

    #[test]
    fn any_single_bit_flip_is_detected() {
        let mut frame = vec![0x01, 0x03, 0x02, 0x12, 0x34];
        frame.extend_from_slice(&crc16(&frame).to_le_bytes());
        assert!(is_valid(&frame));
        for i in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(!is_valid(&bad), "flip of bit {i} went unnoticed");
        }
    }
}
