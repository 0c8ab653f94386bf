//! A Modbus/TCP Security client's certificate, once verified: `mbtls::role::of`, which each
//! port 802 session calls on the certificate the client showed (src/tcp/mbtls/mod.rs), for
//! the subject in the events and the role that decides the session's rights.
//! Input: the certificate, DER. Properties: a role taken is at most `MAX_ROLE` bytes and is
//! exactly what the one role extension holds; the answer is the same each time.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::tcp::mbtls::role::{of, MAX_ROLE};

fuzz_target!(|der: &[u8]| {
    let client = of(der);
    if let Ok(role) = &client.role {
        assert!(role.len() <= MAX_ROLE, "role of {} bytes", role.len());
        // The role's bytes are in the certificate as they are: tag 0x0C, length, text.
        let mut tlv = vec![0x0c, role.len() as u8];
        tlv.extend_from_slice(role.as_bytes());
        assert!(
            der.windows(tlv.len()).any(|w| w == tlv.as_slice()),
            "role {role:?} not in the certificate"
        );
    }
    assert_eq!(of(der), client);
});
