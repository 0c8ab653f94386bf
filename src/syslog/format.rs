//! Event-log entries as RFC 5424 syslog messages: pure text, no I/O.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME modbus-card PROCID MSGID [origin ...][event@32473 ...] MSG`
//!
//! The MSGID is the event's kind (the event log's own stable name), so a log server can
//! filter on it. The structured data carries the card's MAC and the event's fields; 32473
//! is the private enterprise number RFC 5612 sets aside for documentation, used until the
//! maker registers its own. Text a person typed (user names, setting values, reasons) is
//! escaped in SD values as RFC 5424 asks (`"`, `\`, `]`) and its control characters,
//! newlines first, become spaces: a message stays one line for every receiver. A failed
//! login names its user only when that user exists: an unknown name is often a password
//! typed in the wrong field, and it must not travel to another machine.

use crate::event::{Event, Stamped};
use std::time::SystemTime;

/// Most octets a message takes, whatever the transport: RFC 5426 asks receivers to
/// take 2048 over UDP, and RFC 5425 (TLS) the same.
pub const MAX_LEN: usize = 2048;

/// The SD-ID of the event's own fields.
pub const SD_EVENT: &str = "event@32473";

/// Facilities used (RFC 5424 §6.2.1).
pub const DAEMON: u8 = 3;
/// Logins, sessions, passwords, users: security messages, kept apart by most servers.
pub const AUTHPRIV: u8 = 10;

/// Severities used (RFC 5424 §6.2.1).
pub const ERROR: u8 = 3;
pub const WARNING: u8 = 4;
pub const NOTICE: u8 = 5;
pub const INFO: u8 = 6;

/// What every message tells of the card.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `modbus-card-xxxxxx`, the name the card announces on the network too.
    pub host: String,
    /// `00:11:22:AA:BB:CC`
    pub mac: String,
    pub version: String,
    pub procid: u32,
}

/// The facility and severity of an event kind.
pub fn class(event: &Event) -> (u8, u8) {
    use Event::*;
    match event {
        UpsLost | RtuLost | WatchdogReset { .. } | FirmwareRolledBack { .. } => (DAEMON, ERROR),
        UpsNotFound { .. } | FirmwareRefused { .. } | TcpEventsSkipped { .. } => (DAEMON, WARNING),
        TcpRefused { .. } | TcpNotAllowed { .. } | WriteRefused { .. } => (DAEMON, WARNING),
        ColdBoot | WarmBoot | UpsRestored | RtuRestored | UpsDetected { .. } | Stopped => {
            (DAEMON, NOTICE)
        }
        TimeChangedByServer { .. } | TcpOpened { .. } | TcpClosed { .. } => (DAEMON, INFO),
        // Port 802's sessions: who connected with which certificate is an access record.
        MbtlsOpened { .. } | MbtlsClosed { .. } => (AUTHPRIV, INFO),
        MbtlsRefused { .. } | MbtlsNoRights { .. } => (AUTHPRIV, WARNING),
        // The UPS's own state: what an operator's log server should flag first.
        UpsMode { to: "online", .. } | UpsMode { to: "eco", .. } => (DAEMON, NOTICE),
        UpsMode { to: "battery", .. } | UpsMode { to: "bypass", .. } => (DAEMON, WARNING),
        UpsMode { .. } | UpsBatteryLow { .. } => (DAEMON, ERROR),
        UpsAlarm { raised: true, .. } => (DAEMON, WARNING),
        UpsAlarm { raised: false, .. } => (DAEMON, NOTICE),
        Network { .. } => (DAEMON, INFO),
        TimeChangedByUser { .. }
        | Restart { .. }
        | SettingChanged { .. }
        | FactoryReset { .. }
        | LogCleared { .. }
        | ConfigurationLoaded { .. }
        | FirmwareStarted { .. }
        | FirmwareInstalled { .. }
        | FirmwareConfirmed { .. }
        | CertificateMade { .. } => (DAEMON, NOTICE),
        LoginFailed { .. } | PasswordExpired { .. } => (AUTHPRIV, WARNING),
        AccountsReset { .. }
        | PasswordChanged { .. }
        | PasswordReset { .. }
        | UserAdded { .. }
        | UserRemoved { .. }
        | UserRoleChanged { .. }
        | CertificateInstalled { .. }
        | CertificateReverted { .. }
        | RootMade { .. }
        | MbtlsChanged { .. } => (AUTHPRIV, NOTICE),
        MbtlsExpiring { .. } => (AUTHPRIV, WARNING),
        LoginSucceeded { .. }
        | Logout { .. }
        | SessionTakenOver { .. }
        | SessionTimedOut { .. } => (AUTHPRIV, INFO),
    }
}

/// What a failed login's user name becomes when no such user exists.
pub const UNKNOWN_USER: &str = "(unknown user)";

/// The event's fields, by name, as the SD-PARAMs tell them. `known` says whether a user
/// name belongs to an account.
pub fn fields(event: &Event, known: &dyn Fn(&str) -> bool) -> Vec<(&'static str, String)> {
    use Event::*;
    let s = |v: &str| v.to_string();
    match event {
        ColdBoot | WarmBoot | UpsLost | UpsRestored | RtuLost | RtuRestored | Stopped => vec![],
        UpsDetected { baud } => vec![("baud", baud.to_string())],
        UpsMode { to, from, figures } => {
            vec![("to", s(to)), ("from", s(from)), ("figures", s(figures))]
        }
        UpsBatteryLow { figures } => vec![("figures", s(figures))],
        UpsAlarm {
            alarm,
            raised,
            figures,
        } => vec![
            ("alarm", s(alarm)),
            ("raised", raised.to_string()),
            ("figures", s(figures)),
        ],
        UpsNotFound { bauds, slave } => vec![
            (
                "bauds",
                bauds
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("slave", slave.to_string()),
        ],
        TcpOpened { session, peer } => {
            vec![("session", session.to_string()), ("peer", peer.to_string())]
        }
        TcpClosed { session, reason } => {
            vec![("session", session.to_string()), ("reason", s(reason))]
        }
        TcpRefused { peer } | TcpNotAllowed { peer } => vec![("peer", peer.to_string())],
        MbtlsOpened {
            session,
            peer,
            subject,
            role,
        } => vec![
            ("session", session.to_string()),
            ("peer", peer.to_string()),
            ("subject", s(subject)),
            ("role", s(role)),
        ],
        MbtlsClosed { session, reason } => {
            vec![("session", session.to_string()), ("reason", s(reason))]
        }
        MbtlsRefused {
            peer,
            subject,
            reason,
        } => {
            let mut fields = vec![("peer", peer.to_string()), ("reason", s(reason))];
            fields.extend(subject.as_ref().map(|x| ("subject", s(x))));
            fields
        }
        MbtlsNoRights {
            session,
            subject,
            why,
        } => vec![
            ("session", session.to_string()),
            ("subject", s(subject)),
            ("why", s(why)),
        ],
        WriteRefused {
            session,
            peer,
            function,
            holder,
            ..
        } => {
            let mut fields = vec![
                ("session", session.to_string()),
                ("peer", peer.to_string()),
                ("function", function.to_string()),
            ];
            if let Some(h) = holder {
                fields.extend([("subject", s(&h.subject)), ("role", s(&h.role))]);
            }
            fields
        }
        TcpEventsSkipped { count } => vec![("count", count.to_string())],
        TimeChangedByServer { step_ms } => vec![("step_ms", step_ms.to_string())],
        TimeChangedByUser { step_ms, by } => {
            vec![("step_ms", step_ms.to_string()), ("by", s(by))]
        }
        Restart { by }
        | AccountsReset { by }
        | FactoryReset { by }
        | LogCleared { by }
        | FirmwareStarted { by }
        | CertificateReverted { by } => vec![("by", s(by))],
        WatchdogReset { reason } => vec![("reason", s(reason))],
        Network { message } => vec![("message", s(message))],
        SettingChanged {
            label,
            old,
            new,
            by,
        } => vec![
            ("setting", s(label)),
            ("old", s(old)),
            ("new", s(new)),
            ("by", s(by)),
        ],
        ConfigurationLoaded { changed, by } => {
            vec![("changed", changed.to_string()), ("by", s(by))]
        }
        FirmwareRefused { reason, by } => vec![("reason", s(reason)), ("by", s(by))],
        FirmwareInstalled {
            version,
            previous,
            slot,
            by,
        } => vec![
            ("version", s(version)),
            ("previous", s(previous)),
            ("slot", s(slot)),
            ("by", s(by)),
        ],
        FirmwareConfirmed { version } => vec![("version", s(version))],
        FirmwareRolledBack { from, to, reason } => {
            vec![("from", s(from)), ("to", s(to)), ("reason", s(reason))]
        }
        LoginSucceeded {
            user,
            channel,
            peer,
            ..
        } => vec![
            ("user", s(user)),
            ("channel", s(channel)),
            ("peer", s(peer)),
        ],
        LoginFailed {
            user,
            peer,
            channel,
        } => vec![
            ("user", shown_user(user, known)),
            ("channel", s(channel)),
            ("peer", s(peer)),
        ],
        Logout { user, channel } => vec![("user", s(user)), ("channel", s(channel))],
        SessionTakenOver { user, channel, by } => {
            vec![("user", s(user)), ("channel", s(channel)), ("by", s(by))]
        }
        SessionTimedOut {
            user,
            channel,
            after_s,
        } => vec![
            ("user", s(user)),
            ("channel", s(channel)),
            ("after_s", after_s.to_string()),
        ],
        PasswordChanged { user, by } | PasswordReset { user, by } | UserRemoved { user, by } => {
            vec![("user", s(user)), ("by", s(by))]
        }
        PasswordExpired { user, days } => vec![("user", s(user)), ("days", days.to_string())],
        UserAdded { user, role, by } | UserRoleChanged { user, role, by } => {
            vec![("user", s(user)), ("role", s(role)), ("by", s(by))]
        }
        CertificateMade { names } => vec![("names", s(names))],
        CertificateInstalled { subject, by } => vec![("subject", s(subject)), ("by", s(by))],
        RootMade { scope, by } => vec![("scope", s(scope)), ("by", s(by))],
        MbtlsChanged { what, by } => vec![("what", s(what)), ("by", s(by))],
        MbtlsExpiring { what } => vec![("what", s(what))],
    }
}

fn shown_user(user: &str, known: &dyn Fn(&str) -> bool) -> String {
    if known(user) {
        user.to_string()
    } else {
        UNKNOWN_USER.to_string()
    }
}

/// The text a person reads (MSG): the event log's line, but a failed login's unknown
/// user name.
pub fn text(event: &Event, known: &dyn Fn(&str) -> bool) -> String {
    match event {
        Event::LoginFailed {
            user,
            peer,
            channel,
        } if !known(user) => format!("Login failed for an unknown user ({channel}, from {peer})"),
        _ => event.message(),
    }
}

/// `entry` as one RFC 5424 message of at most [`MAX_LEN`] octets.
pub fn message(entry: &Stamped, origin: &Origin, known: &dyn Fn(&str) -> bool) -> String {
    let (facility, severity) = class(&entry.event);
    let fields = fields(&entry.event, known);
    compose(
        facility,
        severity,
        entry.at,
        origin,
        entry.event.kind(),
        &fields,
        &text(&entry.event, known),
    )
}

/// A message of the card's own (not an event): the test button, the count of messages
/// lost while the server was away.
pub fn notice(at: SystemTime, origin: &Origin, msgid: &str, text: &str) -> String {
    compose(DAEMON, NOTICE, at, origin, msgid, &[], text)
}

fn compose(
    facility: u8,
    severity: u8,
    at: SystemTime,
    origin: &Origin,
    msgid: &str,
    fields: &[(&str, String)],
    text: &str,
) -> String {
    let head = format!(
        "<{}>1 {} {} modbus-card {} {} [origin software=\"modbus-card\" swVersion=\"{}\"]",
        u32::from(facility) * 8 + u32::from(severity),
        timestamp(at),
        header_field(&origin.host, 255),
        origin.procid,
        header_field(msgid, 32),
        sd_value(&origin.version, 64),
    );
    // Each value is cut shorter until the structured data fits with room for a few words
    // of the text; then the text takes what is left.
    for cap in [255, 64, 16, 0] {
        let mut sd = format!("{head}[{SD_EVENT} mac=\"{}\"", origin.mac);
        if cap > 0 {
            for (name, value) in fields {
                sd.push_str(&format!(" {name}=\"{}\"", sd_value(value, cap)));
            }
        }
        sd.push(']');
        if sd.len() + 64 <= MAX_LEN || cap == 0 {
            let room = MAX_LEN.saturating_sub(sd.len() + 1);
            let line = one_line(text);
            return format!("{sd} {}", truncate(&line, room));
        }
    }
    unreachable!("the last cap always returns")
}

/// RFC 3339 in UTC with milliseconds, as RFC 5424 §6.2.3 allows.
pub fn timestamp(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A header field: printable US-ASCII without spaces, at most `max` characters; "-" when
/// nothing is left.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// A PARAM-VALUE: control characters made spaces, cut to `cap` bytes (on a character
/// boundary, before escaping, so an escape is never cut in half), then `"`, `\` and `]`
/// escaped.
pub fn sd_value(v: &str, cap: usize) -> String {
    let line = one_line(v);
    let cut = truncate(&line, cap);
    let mut out = String::with_capacity(cut.len() + 8);
    for c in cut.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Control characters (newlines first of all) as spaces: one message, one line.
fn one_line(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` bytes of `v`, cut on a character boundary.
fn truncate(v: &str, max: usize) -> &str {
    if v.len() <= max {
        return v;
    }
    let mut end = max;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn origin() -> Origin {
        Origin {
            host: "modbus-card-bfa32b".into(),
            mac: "00:11:22:BF:A3:2B".into(),
            version: "1.2.3".into(),
            procid: 42,
        }
    }

    fn at() -> SystemTime {
        // 2026-12-07T19:49:59.123Z
        UNIX_EPOCH + Duration::from_millis(1_796_672_999_123)
    }

    fn nobody(_: &str) -> bool {
        false
    }

    fn stamped(event: Event) -> Stamped {
        Stamped { at: at(), event }
    }

    #[test]
    fn ups_lost_is_a_daemon_error_with_the_kind_as_msgid() {
        let m = message(&stamped(Event::UpsLost), &origin(), &nobody);
        assert_eq!(
            m,
            "<27>1 2026-12-07T19:49:59.123Z modbus-card-bfa32b modbus-card 42 ups_lost \
             [origin software=\"modbus-card\" swVersion=\"1.2.3\"]\
             [event@32473 mac=\"00:11:22:BF:A3:2B\"] UPS communication lost"
        );
    }

    #[test]
    fn sd_values_escape_quote_backslash_and_bracket_and_lose_newlines() {
        assert_eq!(sd_value(r#"a"b\c]d"#, 255), r#"a\"b\\c\]d"#);
        assert_eq!(sd_value("one\ntwo\r\nthree", 255), "one two  three");
        let m = message(
            &stamped(Event::SettingChanged {
                label: "NTP server",
                old: "x\"]".into(),
                new: "a\nb".into(),
                by: "admin, web".into(),
            }),
            &origin(),
            &nobody,
        );
        assert!(
            m.contains(r#"setting="NTP server" old="x\"\]" new="a b" by="admin, web"]"#),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
        assert!(
            m.starts_with("<29>1 "),
            "a setting change is daemon.notice: {m}"
        );
    }

    #[test]
    fn a_failed_login_names_only_a_known_user() {
        let failed = |user: &str| {
            stamped(Event::LoginFailed {
                user: user.into(),
                peer: "10.0.0.9".into(),
                channel: "web",
            })
        };
        let known = |u: &str| u == "admin";
        let m = message(&failed("hunter2secret"), &origin(), &known);
        assert!(!m.contains("hunter2secret"), "{m}");
        assert!(m.contains("user=\"(unknown user)\""), "{m}");
        assert!(m.starts_with("<84>1 "), "authpriv.warning: {m}");
        let m = message(&failed("admin"), &origin(), &known);
        assert!(m.contains("user=\"admin\""), "{m}");
        assert!(m.contains("Login failed for 'admin'"), "{m}");
    }

    #[test]
    fn a_login_is_authpriv_info() {
        let m = message(
            &stamped(Event::LoginSucceeded {
                user: "admin".into(),
                admin: true,
                channel: "ssh",
                peer: "127.0.0.1".into(),
            }),
            &origin(),
            &nobody,
        );
        assert!(m.starts_with("<86>1 "), "{m}");
        assert!(m.contains(" admin_login [origin"), "{m}");
    }

    #[test]
    fn a_huge_event_still_fits_2048_octets_with_escapes_whole() {
        let huge = "é]\"\\\n".repeat(2000);
        let m = message(
            &stamped(Event::SettingChanged {
                label: "Masters allowed",
                old: huge.clone(),
                new: huge.clone(),
                by: huge.clone(),
            }),
            &origin(),
            &nobody,
        );
        assert!(m.len() <= MAX_LEN, "{} octets", m.len());
        let (elements, text) = parse_sd(&m).expect("the structured data parses");
        let event = &elements[1];
        assert_eq!(event.0, SD_EVENT);
        let by = &event.1.iter().find(|(n, _)| n == "by").unwrap().1;
        assert!(by.starts_with("é]\"\\ é"), "{by}");
        assert!(text.starts_with("Masters allowed changed from"), "{text}");
    }

    /// An SD-ELEMENT: its id and its params, escapes undone.
    type Element = (String, Vec<(String, String)>);

    /// The SD elements and the MSG after them.
    fn parse_sd(m: &str) -> Option<(Vec<Element>, String)> {
        let rest = m.splitn(7, ' ').nth(6)?;
        let mut chars = rest.chars().peekable();
        let mut elements = vec![];
        while chars.peek() == Some(&'[') {
            chars.next();
            let mut id = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' || c == ']' {
                    break;
                }
                id.push(c);
                chars.next();
            }
            let mut params = vec![];
            loop {
                match chars.next()? {
                    ']' => break,
                    ' ' => {}
                    _ => return None,
                }
                let mut name = String::new();
                loop {
                    match chars.next()? {
                        '=' => break,
                        c => name.push(c),
                    }
                }
                (chars.next()? == '"').then_some(())?;
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | ']') => value.push(c),
                            c => {
                                value.push('\\');
                                value.push(c)
                            }
                        },
                        '"' => break,
                        ']' => return None,
                        c => value.push(c),
                    }
                }
                params.push((name, value));
            }
            elements.push((id, params));
        }
        (chars.next()? == ' ').then_some(())?;
        Some((elements, chars.collect()))
    }
}
