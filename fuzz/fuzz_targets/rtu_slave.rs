//! RS485, the slave's side: bytes from the bus framed as the slave thread does
//! (src/rs485/mod.rs calls `rtu::next_request`). The first byte says at which points the
//! line fell silent. Property: a frame is whole, 4 to 256 bytes, within what arrived, with a
//! good CRC, and `check_request` agrees when it ended at its last byte; garbage comes only at
//! a silence, and what it leaves is a whole request ending there.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::modbus::{crc, rtu, MAX_RTU};

fuzz_target!(|data: &[u8]| {
    let Some((&silences, bytes)) = data.split_first() else {
        return;
    };
    // Bytes arrive one at a time; after byte i the line is silent if bit (i % 8) is set.
    let mut buf: Vec<u8> = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        buf.push(b);
        let silent = silences & (1 << (i % 8)) != 0;
        loop {
            match rtu::next_request(&buf, silent) {
                rtu::Framing::Frame(n) => {
                    assert!((4..=MAX_RTU).contains(&n) && n <= buf.len(), "frame of {n}");
                    let frame = &buf[..n];
                    assert!(crc::is_valid(frame), "frame with a bad CRC");
                    let _ = rtu::pdu_of(frame);
                    if !silent {
                        assert_eq!(rtu::check_request(&buf), Ok(rtu::Status::Complete(n)));
                    }
                    buf.drain(..n);
                }
                rtu::Framing::Garbage(n) => {
                    assert!(silent, "garbage declared before the silence");
                    assert!((1..=buf.len()).contains(&n), "garbage of {n}");
                    buf.drain(..n);
                    // What is kept is a whole request that ends at the silence.
                    if !buf.is_empty() {
                        assert_eq!(
                            rtu::next_request(&buf, true),
                            rtu::Framing::Frame(buf.len()),
                            "kept after garbage: {buf:02X?}"
                        );
                    }
                }
                rtu::Framing::Wait => break,
            }
        }
        // The slave drops what it cannot use; keep the buffer bounded as it does.
        if buf.len() > 1024 {
            buf.clear();
        }
    }
});
