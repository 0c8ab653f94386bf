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
    }
}
