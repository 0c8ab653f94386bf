//! The firmware image's manifest: `Manifest::decode`, which `image::verify` calls once the
//! signature is checked (src/firmware/image.rs). It is signed, so the maker wrote it; a
//! damaged or hand-made image still must not crash the card.
//! Property: a manifest taken encodes to text that decodes to the same manifest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::firmware::image::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        let text = m.encode();
        assert_eq!(
            Manifest::decode(text.as_bytes()).as_ref(),
            Ok(&m),
            "{text:?}"
        );
    }
});
