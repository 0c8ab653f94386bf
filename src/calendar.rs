//! Dates as people read them, from Unix time, in UTC: for the event log, the pages, the
//! CSV download and the simulated UPS's clock. No time zone database on the card: UTC
//! everywhere, said so.

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact over the whole proleptic Gregorian calendar).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day counted from 1970-01-01 of a date: the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    let num = |s: &str| -> Result<i64, String> {
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
    let days = days_from_civil(year, month, day);
    if !(1..=12).contains(&month)
        || civil_from_days(days) != (year, month, day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    Ok(((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000)
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
fn parts(unix_ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60, ms)
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
            assert_eq!(days_from_civil(y, m, d), days);
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
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }
}
