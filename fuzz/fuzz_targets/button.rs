//! The button's input events: `button::key_values`, which `Button::read` calls on what the
//! kernel's input device gives (src/board/button.rs). A device node can be anything the
//! data folder's settings name, so its bytes are outside bytes.
//! Property: whole records only are used; one key value at most per record.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::board::button::{self, RECORD};

fuzz_target!(|data: &[u8]| {
    let (values, used) = button::key_values(data);
    assert_eq!(used, data.len() / RECORD * RECORD);
    assert!(values.len() <= data.len() / RECORD);
});
