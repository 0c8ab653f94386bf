//! Dates as people read them, from Unix time, in UTC: for the event log, the pages, the
//! CSV download and the simulated UPS's clock. No time zone database on the card: UTC
//! everywhere, said so.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01. Days beyond the years
/// ±9999 give 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let date = i32::try_from(days + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .unwrap_or(Date::from_julian_day(UNIX_EPOCH_JULIAN_DAY as i32).expect("in range"));
    (
        i64::from(date.year()),
        i64::from(u8::from(date.month())),
        i64::from(date.day()),
    )
}

/// Unix milliseconds of a date and time in UTC as people type it: `2026-11-24 08:00`,
/// `2026-11-24T08:00:30` (what a browser's date-time field sends), an optional `UTC` or
/// `Z` after it.
pub fn parse_utc(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "'{}' is not a date and time such as 2026-11-24 08:00:00",
            text.chars().take(40).collect::<String>()
        )
    };
    let t = text.trim();
    let t = t
        .strip_suffix("UTC")
        .or_else(|| t.strip_suffix('Z'))
        .unwrap_or(t)
        .trim();
    let (date, time) = t.split_once(['T', ' ']).ok_or_else(bad)?;
    // Digits only, at most 4: no sign, no space, no "+1".
    let num = |s: &str| -> Result<u16, String> {
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let d: Vec<&str> = date.trim().split('-').collect();
    let c: Vec<&str> = time.trim().split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&c.len()) {
        return Err(bad());
    }
    let (year, month, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hour, minute) = (num(c[0])?, num(c[1])?);
    let second = c.get(2).map_or(Ok(0), |s| num(s))?;
    let small = |n: u16| u8::try_from(n).map_err(|_| bad());
    let month = Month::try_from(small(month)?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::from(year), month, small(day)?).map_err(|_| bad())?;
    let time = Time::from_hms(small(hour)?, small(minute)?, small(second)?).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp()
        * 1000)
}

/// `2026-11-24T08:00:00`: the value of a browser's date-time field.
pub fn input_value(unix_ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = parts(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// `08:00:00.123`: a time of day to the millisecond (the frame log).
pub fn clock_ms(unix_ms: i64) -> String {
    let (_, _, _, h, mi, s, ms) = parts(unix_ms);
    format!("{h:02}:{mi:02}:{s:02}.{ms:03}")
}

/// The parts of a Unix time in milliseconds: (year, month, day, hour, minute, second, ms).
/// A time beyond the years ±9999 (no clock or record of the card's holds one) shows as
/// 1970-01-01 plus its time of day.
fn parts(unix_ms: i64) -> (i32, u8, u8, u8, u8, u8, u16) {
    let t = OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000)).unwrap_or(
        OffsetDateTime::UNIX_EPOCH
            + time::Duration::seconds(unix_ms.div_euclid(1000).rem_euclid(86_400)),
    );
    let ms = unix_ms.rem_euclid(1000) as u16;
    (
        t.year(),
        t.month().into(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms,
    )
}

/// `2026-11-24 08:00:00 UTC`
pub fn utc(unix_ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = parts(unix_ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2026-11-24T08:00:00.123Z`, for files and scripts.
pub fn iso8601(unix_ms: i64) -> String {
    let (y, mo, d, h, mi, s, ms) = parts(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2024-02-29, a leap day.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(utc(1_795_478_400_000), "2026-11-24 00:00:00 UTC");
        assert_eq!(
            iso8601(1_795_478_400_123 + 3_723_000),
            "2026-11-24T01:02:03.123Z"
        );
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(clock_ms(1_795_478_400_123 + 3_723_000), "01:02:03.123");
    }

    #[test]
    fn typed_dates_read_back() {
        for days in [-1, 0, 19_782, 20_416, 100_000] {
            let (y, m, d) = civil_from_days(days);
            let typed = format!("{y:04}-{m:02}-{d:02} 00:00");
            assert_eq!(parse_utc(&typed), Ok(days * 86_400_000), "{typed}");
        }
        let t = 1_795_478_400_000 + 3_723_000;
        assert_eq!(parse_utc("2026-11-24T01:02:03"), Ok(t));
        assert_eq!(parse_utc(&input_value(t)), Ok(t));
        assert_eq!(parse_utc(" 2026-11-24 01:02:03 UTC "), Ok(t));
        assert_eq!(parse_utc("2026-11-24T01:02"), Ok(t - 3000));
        for bad in [
            "",
            "2026-02-30 10:00",
            "2026-11-24",
            "24/11/2026 10:00",
            "2026-11-24 25:00",
            "2026-13-01 00:00",
            "x-y-z 1:2",
            "2025-02-29 00:00",
            "2026-11-24 23:60",
            "2026-11-24 10:00:60",
            "2026-11-24 -1:00",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }
}
