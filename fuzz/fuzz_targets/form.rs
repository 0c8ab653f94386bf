//! Posted form bodies: `Form::parse`, which `Form::of` calls on every POST
//! (src/web/form.rs). Input: the Content-Type up to the first newline, then the body.
//! Properties: a field's bytes are a part of the body as sent (multipart takes parts, it
//! does not rewrite them); `field` and `text` agree.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::web::form::Form;

/// Field names the card's forms use, and names the seeds carry.
const NAMES: [&str; 6] = ["cert", "key", "ca", "file", "user", "password"];

fuzz_target!(|data: &[u8]| {
    let (ctype, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(ctype) = std::str::from_utf8(ctype) else {
        return;
    };
    let form = Form::parse(ctype, body);
    let multipart = ctype
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"));
    for name in NAMES {
        let bytes = form.bytes(name);
        if multipart && !bytes.is_empty() {
            assert!(
                body.windows(bytes.len()).any(|w| w == bytes),
                "a multipart field that is not in the body"
            );
        }
        match form.field(name) {
            Some(text) => assert_eq!(text, form.text(name)),
            None => assert_eq!(form.text(name), ""),
        }
    }
});
