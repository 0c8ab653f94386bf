//! Modbus TCP: a byte stream cut into frames as the session does (src/tcp/session.rs),
//! each frame split into header and PDU. Property: every frame `check` accepts is 8 to
//! 260 bytes, and `encode` of its `split` gives back exactly its bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::modbus::mbap;

fuzz_target!(|data: &[u8]| {
    let mut used = 0;
    loop {
        match mbap::check(&data[used..]) {
            Ok(Some(n)) => {
                assert!(
                    (mbap::HEADER_LEN + 1..=mbap::MAX_FRAME).contains(&n),
                    "frame of {n} bytes"
                );
                let frame = &data[used..used + n];
                let (header, pdu) = mbap::split(frame);
                assert!(!pdu.is_empty() && pdu.len() <= modbus_card::modbus::MAX_PDU);
                let mut out = Vec::new();
                mbap::encode(header, pdu, &mut out);
                assert_eq!(out, frame, "encode(split(frame)) differs");
                used += n;
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
});
