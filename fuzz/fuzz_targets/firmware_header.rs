//! The firmware image's header: `Header::decode`, which `image::verify` calls on an
//! uploaded image's first 32 bytes (src/firmware/image.rs).
//! Property: a header taken encodes back to the same 32 bytes, and its lengths are the
//! bounded ones the reader relies on.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::firmware::image::{Header, HEADER_LEN, MAX_IMAGE, MAX_MANIFEST};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = Header::decode(data) {
        assert_eq!(&header.encode()[..], &data[..HEADER_LEN as usize]);
        assert!(header.manifest_len >= 1 && header.manifest_len <= MAX_MANIFEST);
        assert!(header.payload_len <= MAX_IMAGE);
        assert!(header.body_len() <= HEADER_LEN + u64::from(MAX_MANIFEST) + MAX_IMAGE);
    }
});
