//! The date and time a user types: `calendar::parse_utc`, which the Date and time page
//! calls on the posted field (src/web/pages/date_time.rs `submit`).
//! Property: a time taken shows (`calendar::utc`, `input_value`) as text that reads back to
//! the same time.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::calendar;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ms) = calendar::parse_utc(text) {
        assert_eq!(ms % 1000, 0);
        assert_eq!(calendar::parse_utc(&calendar::utc(ms)), Ok(ms), "{text:?}");
        assert_eq!(
            calendar::parse_utc(&calendar::input_value(ms)),
            Ok(ms),
            "{text:?}"
        );
    }
});
