//! The client's role, from its certificate: the extension 1.3.6.1.4.1.50316.802.1 of
//! MODBUS/TCP Security, one UTF8String of at most [`MAX_ROLE`] bytes. The role maps to
//! the rights of the session through the administrator's table ([`ROLES`], read at each
//! connection; [`DEFAULT`] until one is saved).

use std::path::Path;
use x509_parser::prelude::{FromDer, X509Certificate};

pub const ROLE_OID: &str = "1.3.6.1.4.1.50316.802.1";
pub const ROLE_OID_ARCS: &[u64] = &[1, 3, 6, 1, 4, 1, 50316, 802, 1];
/// Longest role accepted, in bytes.
pub const MAX_ROLE: usize = 64;

/// The role table in `DATA/mbtls`: one line per role, `read NAME` or `operate NAME`; a
/// role not listed has no rights.
pub const ROLES: &str = "roles.txt";
/// The table until the administrator saves one.
pub const DEFAULT: &str = "read read\noperate operate\n";

/// What a role may do on this port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    None,
    /// The read function codes (those `modbus_write` lets a read-only master use).
    Read,
    /// Reads and writes.
    Operate,
}

impl Grant {
    pub fn name(self) -> &'static str {
        match self {
            Grant::None => "none",
            Grant::Read => "read",
            Grant::Operate => "operate",
        }
    }

    pub fn parse(word: &str) -> Option<Grant> {
        [Grant::None, Grant::Read, Grant::Operate]
            .into_iter()
            .find(|g| g.name() == word)
    }
}

/// The role table as the administrator left it, in its order.
pub fn table(data: &Path) -> Vec<(String, Grant)> {
    let text = std::fs::read_to_string(super::pki::dir(data).join(ROLES))
        .unwrap_or_else(|_| DEFAULT.into());
    text.lines()
        .filter_map(|line| {
            let (grant, name) = line.split_once(' ')?;
            Some((name.to_string(), Grant::parse(grant)?))
        })
        .collect()
}

/// What `role` may do now.
pub fn grant(data: &Path, role: &str) -> Grant {
    table(data)
        .into_iter()
        .find(|(name, _)| name == role)
        .map_or(Grant::None, |(_, g)| g)
}

/// A role name the table takes: what a certificate can carry, printable, without spaces
/// at its ends (they would not show on the page).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ROLE {
        return Err(format!(
            "A role name is 1 to {MAX_ROLE} bytes (this one is {}).",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err(
            "A role name is printable text, without control characters or spaces at its ends."
                .into(),
        );
    }
    Ok(())
}

/// Gives `role` the rights `grant` (None takes it out of the table), written whole.
pub fn set(data: &Path, role: &str, grant: Grant) -> Result<(), String> {
    check_name(role)?;
    let mut table = table(data);
    match table.iter_mut().find(|(name, _)| name == role) {
        Some(entry) => entry.1 = grant,
        None => table.push((role.to_string(), grant)),
    }
    table.retain(|(_, g)| *g != Grant::None);
    let text: String = table
        .iter()
        .map(|(name, g)| format!("{} {name}\n", g.name()))
        .collect();
    super::pki::store(data, ROLES, &text)
}

/// What a client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The certificate's subject, for the events and pages.
    pub subject: String,
    /// Its serial number as the revoked list holds them (`trust::serial`); empty when the
    /// certificate is not readable.
    pub serial: String,
    /// The role, or why there is none to use.
    pub role: Result<String, String>,
}

/// The subject and role of a client's (already verified) certificate.
pub fn of(der: &[u8]) -> Client {
    let cert = match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert,
        Err(e) => {
            return Client {
                subject: "?".into(),
                serial: String::new(),
                role: Err(format!("certificate not readable: {e}")),
            }
        }
    };
    let subject = cert.subject().to_string();
    let serial = super::trust::of_bytes(cert.raw_serial());
    let mut found = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == ROLE_OID);
    let role = match (found.next(), found.next()) {
        (None, _) => Err("no role in the certificate".into()),
        (Some(_), Some(_)) => Err("the role extension appears twice".into()),
        (Some(ext), None) => utf8_string(ext.value),
    };
    Client {
        subject,
        serial,
        role,
    }
}

/// The text of a DER UTF8String that is the whole of `der`, at most [`MAX_ROLE`] bytes.
fn utf8_string(der: &[u8]) -> Result<String, String> {
    let malformed = || {
        Err(format!(
            "the role is not one UTF8String of at most {MAX_ROLE} bytes"
        ))
    };
    // Tag 0x0C, then a short-form length: DER has no long form below 128.
    let [0x0c, len, text @ ..] = der else {
        return malformed();
    };
    if usize::from(*len) != text.len() || text.len() > MAX_ROLE {
        return malformed();
    }
    match std::str::from_utf8(text) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => malformed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_one_short_utf8_string() {
        assert_eq!(utf8_string(b"\x0c\x04read"), Ok("read".into()));
        assert_eq!(utf8_string(b"\x0c\x00"), Ok(String::new()));
        // Another string type, a wrong length, trailing bytes, bad UTF-8, too long.
        assert!(utf8_string(b"\x13\x04read").is_err());
        assert!(utf8_string(b"\x0c\x05read").is_err());
        assert!(utf8_string(b"\x0c\x04read\x00").is_err());
        assert!(utf8_string(b"\x0c\x02\xff\xfe").is_err());
        let mut long = vec![0x0c, 65];
        long.extend([b'a'; 65]);
        assert!(utf8_string(&long).is_err());
        assert!(utf8_string(b"").is_err());
    }

    #[test]
    fn the_role_table_keeps_names_with_spaces_and_drops_roles_without_rights() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        assert_eq!(grant(data, "read"), Grant::Read);
        assert_eq!(grant(data, "operate"), Grant::Operate);
        assert_eq!(grant(data, "guest"), Grant::None);
        set(data, "shift lead=2", Grant::Operate).unwrap();
        set(data, "read", Grant::None).unwrap();
        assert_eq!(grant(data, "shift lead=2"), Grant::Operate);
        assert_eq!(grant(data, "read"), Grant::None);
        assert_eq!(table(data).len(), 2);
        for bad in ["", " x", "a\nb", &"r".repeat(65)] {
            assert!(set(data, bad, Grant::Read).is_err(), "{bad:?}");
        }
        assert_eq!(table(data).len(), 2);
    }
}
