//! Request heads: `web::http::parse_head`, which the web front calls on the bytes of every
//! connection until a head is whole (src/web/front.rs). Input: the bytes a client sends.
//! Properties: a head taken lies within what was sent and within MAX_HEAD, its target is a
//! path; the same bytes up to its end give the same head, and any shorter start of them
//! is never taken for a head (the front waits, or refuses); the head's accessors and its
//! body policy hold for any head.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::web::http::{body_policy, parse_head, Refusal, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(head) => {
            assert!(head.len <= data.len() && head.len <= MAX_HEAD);
            assert!(head.target.starts_with('/'));
            assert!(head.path().starts_with('/'));
            assert_eq!(parse_head(&data[..head.len]).as_ref(), Ok(&head));
            for cut in [0, head.len / 2, head.len.saturating_sub(1)] {
                if cut < head.len {
                    assert!(parse_head(&data[..cut]).is_err(), "a head in {cut} bytes");
                }
            }
            let _ = (head.keep_alive(), head.header("content-type"));
            let _ = body_policy(&head);
        }
        Err(Refusal::Partial) => assert!(data.len() < MAX_HEAD),
        Err(refusal) => {
            let (code, text) = refusal.status();
            assert!((400..=505).contains(&code) && !text.is_empty());
        }
    }
});
