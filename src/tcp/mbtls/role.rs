//! The client's role, from its certificate: the extension 1.3.6.1.4.1.50316.802.1 of
//! MODBUS/TCP Security, one UTF8String of at most [`MAX_ROLE`] bytes. The role maps to
//! the rights of the session.

use x509_parser::prelude::{FromDer, X509Certificate};

pub const ROLE_OID: &str = "1.3.6.1.4.1.50316.802.1";
pub const ROLE_OID_ARCS: &[u64] = &[1, 3, 6, 1, 4, 1, 50316, 802, 1];
/// Longest role accepted, in bytes.
pub const MAX_ROLE: usize = 64;

/// What a client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The certificate's subject, for the events and pages.
    pub subject: String,
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
                role: Err(format!("certificate not readable: {e}")),
            }
        }
    };
    let subject = cert.subject().to_string();
    let mut found = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == ROLE_OID);
    let role = match (found.next(), found.next()) {
        (None, _) => Err("no role in the certificate".into()),
        (Some(_), Some(_)) => Err("the role extension appears twice".into()),
        (Some(ext), None) => utf8_string(ext.value),
    };
    Client { subject, role }
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
}
