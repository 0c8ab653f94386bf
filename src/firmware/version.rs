//! The version of this build, and versions as the upgrade rules compare them.
//!
//! The version is stamped into the binary at build time (`MODBUS_CARD_VERSION`, else
//! Cargo's package version) as a fixed-size field behind a marker, so `image build` reads
//! it from any build, a cross-compiled one too, without running it; and the card checks
//! that an image's binary is the version its manifest says.

use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;

/// What precedes the version in the binary: unlikely anywhere else in it.
const MARK: &[u8; 16] = b"\x7fmodbus-card\x00ver";
/// The version's bytes after the mark, padded with NULs.
const FIELD: usize = 32;
const STAMP_LEN: usize = MARK.len() + FIELD;

const fn stamp(version: &str) -> [u8; STAMP_LEN] {
    let v = version.as_bytes();
    assert!(v.len() < FIELD, "version too long for its stamp");
    let mut out = [0u8; STAMP_LEN];
    let mut i = 0;
    while i < MARK.len() {
        out[i] = MARK[i];
        i += 1;
    }
    let mut j = 0;
    while j < v.len() {
        out[MARK.len() + j] = v[j];
        j += 1;
    }
    out
}

const BUILT: &str = match option_env!("MODBUS_CARD_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// When this firmware was built, in Unix seconds: `SOURCE_DATE_EPOCH` at build time (the
/// reproducible-builds convention: the time of the source, e.g. its last commit, so the
/// same source builds the same binary), else the card's floor of time, a date before this
/// firmware existed. The real time is never earlier.
pub const BUILT_UNIX_S: i64 = {
    let floor = crate::board::clock::FLOOR_UNIX_S;
    match option_env!("SOURCE_DATE_EPOCH") {
        Some(s) => match unix_seconds(s) {
            Some(t) if t > floor => t,
            _ => floor,
        },
        None => floor,
    }
};

/// Decimal digits as seconds; None for anything else (or more than 18 digits).
const fn unix_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b[i] - b'0') as i64;
        i += 1;
    }
    Some(n)
}

/// Kept in the binary as it is (`#[used]`), and read through a volatile load so the
/// compiler cannot fold the version into the code that shows it.
#[used]
static STAMP: [u8; STAMP_LEN] = stamp(BUILT);

/// This build's version, as stamped.
pub fn current() -> &'static str {
    static READ: OnceLock<String> = OnceLock::new();
    READ.get_or_init(|| {
        // SAFETY: STAMP is a plain static array; reading it is always valid.
        let stamp = unsafe { std::ptr::read_volatile(&raw const STAMP) };
        field_text(&stamp[MARK.len()..]).unwrap_or(BUILT).to_owned()
    })
}

fn field_text(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).ok()
}

/// Stamps in a binary: the offset of each version field, and its text. The mark alone
/// (the code that looks for it holds one) is not a stamp: a stamp's field is a version
/// padded with NULs.
fn stamps(binary: &[u8]) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    std::iter::from_fn(move || loop {
        let start = at + find(&binary[at..], MARK)? + MARK.len();
        at = start;
        let field = binary.get(start..start + FIELD)?;
        let Some(end) = field.iter().position(|&b| b == 0) else {
            continue;
        };
        if field[end..].iter().any(|&b| b != 0) {
            continue;
        }
        match field_text(field) {
            Some(text) if Version::parse(text).is_some() => return Some((start, text)),
            _ => continue,
        }
    })
}

/// The version stamped in a binary's bytes: `None` when it has no stamp (not a build of
/// this service) or more than one differing.
pub fn stamped_in(binary: &[u8]) -> Option<String> {
    let mut found: Option<&str> = None;
    for (_, text) in stamps(binary) {
        match found {
            Some(f) if f != text => return None,
            _ => found = Some(text),
        }
    }
    found.map(str::to_owned)
}

/// Where the stamp's version field is in a binary, for writing another one (a build of
/// another version, as `MODBUS_CARD_VERSION` would make it).
pub fn stamp_offset(binary: &[u8]) -> Option<usize> {
    stamps(binary).next().map(|(at, _)| at)
}

/// The version field's bytes for `version`, as a build of it carries them.
pub fn stamp_field(version: &str) -> Option<[u8; FIELD]> {
    Version::parse(version)?;
    if version.len() >= FIELD {
        return None;
    }
    let mut field = [0u8; FIELD];
    field[..version.len()].copy_from_slice(version.as_bytes());
    Some(field)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// MAJOR.MINOR.PATCH, compared number by number; a pre-release or build suffix
/// (`-rc1`, `+git`) is kept for display and sorts before the release it precedes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub numbers: [u32; 3],
    pub suffix: String,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let (core, suffix) = match text.find(['-', '+']) {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, ""),
        };
        let mut numbers = [0u32; 3];
        let mut parts = core.split('.');
        for n in &mut numbers {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *n = part.parse().ok()?;
        }
        if parts.next().is_some()
            || !suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b))
        {
            return None;
        }
        Some(Version {
            numbers,
            suffix: suffix.to_owned(),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers.cmp(&other.numbers).then_with(|| {
            // A pre-release (-rc1) comes before its release; build metadata (+x) does not
            // change the order.
            let pre = |v: &Version| v.suffix.starts_with('-');
            match (pre(self), pre(other)) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (true, true) => self.suffix.cmp(&other.suffix),
                (false, false) => Ordering::Equal,
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.numbers;
        write!(f, "{a}.{b}.{c}{}", self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_is_read_as_seconds_or_not_at_all() {
        assert_eq!(unix_seconds("1767225600"), Some(1_767_225_600));
        assert_eq!(unix_seconds(""), None);
        assert_eq!(unix_seconds("-1"), None);
        assert_eq!(unix_seconds("17e8"), None);
        assert_eq!(unix_seconds("1234567890123456789"), None);
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(v("0.10.0") > v("0.9.9"));
        assert!(v("1.0.0") > v("0.99.99"));
        assert!(v("1.2.3-rc1") < v("1.2.3"));
        assert_eq!(v("1.2.3+git5").cmp(&v("1.2.3")), Ordering::Equal);
        assert_eq!(v("1.2.3-rc1").to_string(), "1.2.3-rc1");
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "a.b.c",
            "1..2",
            "1.2.3 ",
            "1.2.3-x y",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn this_build_carries_its_stamp_once() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(stamped_in(&exe).as_deref(), Some(current()));
        assert!(Version::parse(current()).is_some());
    }

    #[test]
    fn a_stamp_written_into_a_binary_is_read_back() {
        let mut bin = b"ELF....".to_vec();
        bin.extend_from_slice(&stamp("0.1.0"));
        bin.extend_from_slice(b"more code");
        let at = stamp_offset(&bin).unwrap();
        bin[at..at + FIELD].copy_from_slice(&stamp_field("2.0.1").unwrap());
        assert_eq!(stamped_in(&bin).as_deref(), Some("2.0.1"));
        assert_eq!(stamped_in(b"no stamp here"), None);
        // Two stamps that disagree: not a build we can trust the version of.
        let mut two = bin.clone();
        two.extend_from_slice(&stamp("0.3.0"));
        assert_eq!(stamped_in(&two), None);
    }
}
