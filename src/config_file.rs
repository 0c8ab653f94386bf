//! The configuration file: every setting in a readable, commented file, to download from
//! one card and upload to another (or keep as a backup).
//!
//! It is TOML, restricted to what the card writes: comments, `format = 1`, and one
//! `key = value` a line under the keys of the settings table, the value an integer,
//! `true`/`false`, or a string in double quotes. The strict reader below reports each
//! problem at its line (a syntax error, an unknown or repeated key, a value of the wrong
//! type), then the values are checked as one change ([`Settings::change`]), so a file is
//! taken whole or not at all. A file may hold only some keys: the others stay as they are.
//! Accounts, passwords, keys and certificates are never in it.
//!
//! Why a reader of its own rather than the `toml` crate: read with `toml` (its parser
//! alone, `default-features = false, features = ["parse"]`) the stripped release binary
//! grew by 197,128 bytes, and the answers changed: `toml` stops at a file's first
//! problem, where an operator is told every one at once, and words them its own way
//! ("invalid basic string", "expected `.`, `=`", nothing at all for `key =`). The
//! recorded answers of tests/fixtures/config/ keep this reader to its words; the
//! `toml` crate checks, in the tests, that it reads every file this reader accepts to
//! the same values.

use crate::settings::{def_named, def_of, Diff, Key, Kind as Typed, Section, Settings, DEFS};

/// The version of this format; a file says which it follows.
pub const FORMAT: i64 = 1;
/// A file of every setting is about 5 KiB; anything much bigger is not one.
pub const MAX_SIZE: usize = 64 * 1024;

/// A problem with a file, at its line (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// One setting read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: Key,
    /// As [`Settings::set`] takes it.
    pub value: String,
}

/// What kind of TOML value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Bool,
    /// A string; for a number or `auto`, an integer too.
    Text,
}

/// From the setting's kind in the table: a choice among numbers (the baud rates) is an
/// integer.
fn kind_of(key: Key) -> Kind {
    match def_of(key).kind {
        Typed::Number => Kind::Integer,
        Typed::Switch { .. } => Kind::Bool,
        Typed::Choice(list) if list.iter().all(|(v, _)| v.parse::<u64>().is_ok()) => Kind::Integer,
        Typed::Choice(_) | Typed::NumberOrAuto | Typed::Text => Kind::Text,
    }
}

/// The file for `settings`; `origin` is a comment line saying where it comes from.
pub fn export(settings: &Settings, origin: &str) -> String {
    let mut out = String::with_capacity(6 * 1024);
    out.push_str("# modbus-card configuration file\n");
    out.push_str(&format!("# {origin}\n"));
    out.push_str(
        "# Upload it on the Configuration page, or: modbus-card config import --data DIR FILE\n\
         # A file may hold only some settings; the others stay as they are.\n\
         # Accounts, passwords, keys and certificates are never in this file.\n\n",
    );
    out.push_str(&format!("format = {FORMAT}\n"));
    let mut section = None;
    for def in &DEFS {
        if section != Some(def.section) {
            section = Some(def.section);
            out.push_str(&format!("\n# --- {} ---\n", section_name(def.section)));
        }
        let value = settings.get(def.key);
        out.push_str(&format!("\n# {}: {}\n", def.label, def.help));
        let shown = match kind_of(def.key) {
            Kind::Integer | Kind::Bool => value,
            Kind::Text => quote(&value),
        };
        out.push_str(&format!("{} = {shown}\n", def.key));
    }
    out
}

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Modbus => "Modbus: the UPS link, Modbus TCP and RS485",
        Section::Accounts => "Logins",
        Section::Services => "Services (the Control page)",
        Section::Network => "Network: the static address",
        Section::Time => "Date and time",
        Section::Board => "The board's devices",
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads a file (bytes as uploaded). Every problem is reported, each at its line.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, Vec<LineError>> {
    let whole = |message: String| vec![LineError { line: 0, message }];
    if bytes.len() > MAX_SIZE {
        return Err(whole(format!(
            "the file is {} KiB; a configuration file is at most {} KiB",
            bytes.len() / 1024,
            MAX_SIZE / 1024
        )));
    }
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
        .ok_or_else(|| whole("this is not a text file: not a configuration file".into()))?;
    let mut entries: Vec<Entry> = vec![];
    let mut errors = vec![];
    let mut format = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut err = |message: String| errors.push(LineError { line, message });
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((key, rest)) = content.split_once('=') else {
            err(format!("expected key = value, found {:?}", clip(content)));
            continue;
        };
        let key = key.trim();
        let value = match value(rest.trim()) {
            Ok(v) => v,
            Err(e) => {
                err(format!("{key}: {e}"));
                continue;
            }
        };
        if key == "format" {
            match value {
                Value::Integer(FORMAT) => format = Some(line),
                _ => err(format!(
                    "format: this card reads format {FORMAT}; this file says {}",
                    clip(rest.trim())
                )),
            }
            continue;
        }
        let Some(def) = def_named(key) else {
            err(format!("unknown setting {:?}", clip(key)));
            continue;
        };
        if let Some(first) = entries.iter().find(|e| e.key == def.key) {
            err(format!("{key} is set again (first on line {})", first.line));
            continue;
        }
        let text = match (kind_of(def.key), value) {
            (Kind::Integer, Value::Integer(n)) => n.to_string(),
            (Kind::Bool, Value::Bool(b)) => b.to_string(),
            (Kind::Text, Value::Text(s)) => s,
            (Kind::Text, Value::Integer(n)) if def.kind == Typed::NumberOrAuto => n.to_string(),
            (kind, _) => {
                let wanted = match kind {
                    Kind::Integer => "a whole number",
                    Kind::Bool => "true or false",
                    Kind::Text => "a string in double quotes",
                };
                err(format!("{key} takes {wanted}, not {}", clip(rest.trim())));
                continue;
            }
        };
        entries.push(Entry {
            line,
            key: def.key,
            value: text,
        });
    }
    if format.is_none() && errors.is_empty() {
        errors.push(LineError {
            line: 0,
            message: format!(
                "no \"format = {FORMAT}\" line: not a configuration file of this card"
            ),
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// What a file would change, checked as one change against `current`: refusals come back
/// at the line of the key they name.
pub fn changes(current: &Settings, entries: &[Entry]) -> Result<Vec<Diff>, Vec<LineError>> {
    let pairs: Vec<(Key, &str)> = entries.iter().map(|e| (e.key, e.value.as_str())).collect();
    match current.change(&pairs) {
        Ok((_, diffs)) => Ok(diffs),
        Err(refused) => Err(refused
            .into_iter()
            .map(|r| LineError {
                line: entries
                    .iter()
                    .find(|e| e.key == *r.key)
                    .map_or(0, |e| e.line),
                message: r.message,
            })
            .collect()),
    }
}

enum Value {
    Integer(i64),
    Bool(bool),
    Text(String),
}

/// A TOML value as this file has them, with an optional comment after it.
fn value(s: &str) -> Result<Value, String> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        loop {
            match chars.next() {
                None => return Err("the string has no closing quote".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or("a bad \\u escape")?;
                        out.push(c);
                    }
                    _ => return Err("an unknown escape in the string".into()),
                },
                Some(c) if c.is_control() => return Err("a control character in the string".into()),
                Some(c) => out.push(c),
            }
        }
        trailing(chars.as_str())?;
        return Ok(Value::Text(out));
    }
    let word = s.split_once('#').map_or(s, |(w, _)| w).trim();
    match word {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "" => Err("no value".into()),
        _ => word
            .replace('_', "")
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| {
                format!(
                    "{:?} is not a number, true/false or a \"string\"",
                    clip(word)
                )
            }),
    }
}

/// After a value: nothing but a comment.
fn trailing(rest: &str) -> Result<(), String> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected {:?} after the value", clip(rest)))
    }
}

/// At most 40 characters of something quoted back in an error.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_reads_back_to_the_same_settings_and_changes_nothing() {
        let mut s = Settings::default();
        s.set("ntp_server", "pool.ntp.org").unwrap();
        s.set("routing", "transparent").unwrap();
        s.set("https_enabled", "false").unwrap();
        let file = export(&s, "test");
        let entries = parse(file.as_bytes()).unwrap();
        assert_eq!(entries.len(), DEFS.len());
        assert_eq!(changes(&s, &entries).unwrap(), vec![]);
        let diffs = changes(&Settings::default(), &entries).unwrap();
        assert_eq!(diffs.len(), 3);
        assert!(file.contains("\nups_baud = 0\n"));
        assert!(file.contains("\nhttps_enabled = false\n"));
        assert!(file.contains("\nntp_server = \"pool.ntp.org\"\n"));
    }

    #[test]
    fn every_problem_is_reported_at_its_line() {
        let file = "format = 1\n\
                    poll_rate_s = \"5\"\n\
                    nonsense = 3\n\
                    http_enabled = yes\n\
                    modbus_port = 1502\n\
                    modbus_port = 1503\n\
                    just words\n\
                    ntp_server = \"unclosed\n";
        let errors = parse(file.as_bytes()).unwrap_err();
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 6, 7, 8], "{errors:?}");
        assert!(errors[0].message.contains("a whole number"));
        assert!(errors[1].message.contains("unknown setting"));
        assert!(errors[3].message.contains("first on line 5"));
    }

    #[test]
    fn values_the_card_refuses_come_back_at_their_line() {
        let file =
            "format = 1\n\n# a comment\nrs485_slave = 200\nserial_timeout_ms = 100  # too short\n";
        let entries = parse(file.as_bytes()).unwrap();
        let errors = changes(&Settings::default(), &entries).unwrap_err();
        assert_eq!(errors[0].line, 4);
        assert!(errors[0].to_string().starts_with("line 4: rs485_slave"));
    }

    #[test]
    fn what_is_not_a_configuration_file_is_refused_whole() {
        let binary = [0x7F, b'E', b'L', b'F', 0, 0, 0xFF];
        assert!(parse(&binary).unwrap_err()[0]
            .message
            .contains("not a text file"));
        let big = vec![b'#'; MAX_SIZE + 1];
        assert!(parse(&big).unwrap_err()[0].message.contains("KiB"));
        assert!(parse(b"poll_rate_s = 5\n").unwrap_err()[0]
            .message
            .contains("format = 1"));
        assert!(parse(b"format = 2\n").unwrap_err()[0]
            .message
            .contains("format 1"));
        // A truncated export: the last line cut in its string.
        let file = export(&Settings::default(), "test");
        let cut = &file[..file.rfind("watchdog_device = \"").unwrap() + 19];
        let errors = parse(cut.as_bytes()).unwrap_err();
        assert!(errors[0].message.contains("closing quote"), "{errors:?}");
    }

    #[test]
    fn strings_keep_what_quoting_protects() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        match value("\"a\\\"b\\\\c\\u0041\" # note").unwrap() {
            Value::Text(s) => assert_eq!(s, "a\"b\\cA"),
            _ => panic!(),
        }
    }
}
