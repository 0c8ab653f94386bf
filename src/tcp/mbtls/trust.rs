//! Whom Modbus/TCP Security lets in, as the administrator decides it (Modbus/TCP Security
//! page): the trusted client CAs ([`pki::CLIENTS_CA`]), their revocation lists
//! ([`pki::CLIENTS_CRL`]) and certificates revoked by serial number ([`REVOKED`]), all in
//! `DATA/mbtls`. Each upload is checked whole before its file is replaced (temporary file,
//! synced, renamed); a handshake reads them as they are then.

use super::pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::path::Path;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Serial numbers the administrator revoked, one a line in upper-case hex.
pub const REVOKED: &str = "revoked.txt";
/// A CA or CRL this close to its end is warned about, on the page and in the log.
pub const WARN_DAYS: i64 = 30;

/// A trusted CA as the page shows it.
#[derive(Debug, Clone)]
pub struct Ca {
    pub subject: String,
    pub serial: String,
    pub not_after: String,
    pub warning: Option<String>,
    /// SHA-256 of the certificate, to name it in a removal.
    pub id: String,
}

/// A revocation list as the page shows it.
#[derive(Debug, Clone)]
pub struct Crl {
    pub issuer: String,
    pub next_update: String,
    pub warning: Option<String>,
    pub serials: Vec<String>,
}

fn now() -> i64 {
    crate::clock::unix_s(std::time::SystemTime::now())
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_or_else(|_| unix.to_string(), |t| t.date().to_string())
}

/// What to warn of an end at `end`, if it is within [`WARN_DAYS`] of `now` or past.
fn warning(end: i64, now: i64) -> Option<String> {
    let days = (end - now).div_euclid(86_400);
    match end - now {
        left if left < 0 => Some(format!("expired on {}", date(end))),
        left if left < WARN_DAYS * 86_400 => {
            Some(format!("expires in {days} days, on {}", date(end)))
        }
        _ => None,
    }
}

/// A serial number as upper-case hex without colons or leading zero bytes; `Err` says
/// what is wrong with it.
pub fn serial(text: &str) -> Result<String, String> {
    let digits: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':' && *c != ' ')
        .collect::<String>()
        .to_ascii_uppercase();
    let digits = digits.strip_prefix("0X").unwrap_or(&digits);
    if digits.is_empty() || digits.len() > 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{}' is not a serial number: hexadecimal digits (at most 20 bytes), with or \
             without colons, as in 4F:A2:01.",
            text.trim()
        ));
    }
    Ok(of_bytes(&hex_bytes(digits)))
}

fn hex_bytes(digits: &str) -> Vec<u8> {
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect()
}

/// A certificate's raw serial as [`serial`] writes it.
pub fn of_bytes(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().max(1) - 1);
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

/// `DER` as a PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    use ct_codecs::{Base64, Encoder};
    let b64 = Base64::encode_to_string(der).unwrap_or_default();
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

fn sha256(der: &[u8]) -> String {
    crate::accounts::hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

fn trusted_ders(data: &Path) -> Vec<CertificateDer<'static>> {
    pki::read_certs(&pki::dir(data).join(pki::CLIENTS_CA)).unwrap_or_default()
}

/// The trusted client CAs.
pub fn cas(data: &Path) -> Vec<Ca> {
    let now = now();
    trusted_ders(data)
        .iter()
        .map(|der| match X509Certificate::from_der(der) {
            Ok((_, c)) => Ca {
                subject: c.subject().to_string(),
                serial: of_bytes(c.raw_serial()),
                not_after: date(c.validity().not_after.timestamp()),
                warning: warning(c.validity().not_after.timestamp(), now),
                id: sha256(der),
            },
            Err(e) => Ca {
                subject: format!("(not readable: {e})"),
                serial: String::new(),
                not_after: String::new(),
                warning: None,
                id: sha256(der),
            },
        })
        .collect()
}

/// Trusts the CA certificates of `pem` beside those already trusted, or in their place
/// (`replace`). Each must be a CA certificate a handshake can use; if one is not, nothing
/// changes and every fault is said. Returns the subjects of those added.
pub fn add_cas(data: &Path, pem_text: &[u8], replace: bool) -> Result<Vec<String>, Vec<String>> {
    let parsed: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_slice_iter(pem_text).collect();
    let new = match parsed {
        Ok(list) if !list.is_empty() => list,
        Ok(_) => {
            return Err(vec![
                "The file holds no PEM certificate (a block starting with -----BEGIN \
                 CERTIFICATE-----)."
                    .into(),
            ])
        }
        Err(e) => return Err(vec![format!("The file is not readable PEM: {e}.")]),
    };
    let mut errors = Vec::new();
    let mut subjects = Vec::new();
    for (i, der) in new.iter().enumerate() {
        let n = i + 1;
        match X509Certificate::from_der(der) {
            Err(e) => errors.push(format!("Certificate {n} cannot be read as X.509: {e}.")),
            Ok((_, c)) if !c.is_ca() => errors.push(format!(
                "Certificate {n} ({}) is not a CA certificate (no basic constraints with CA \
                 true): upload the CA that issues the masters' certificates.",
                c.subject()
            )),
            Ok((_, c)) => match webpki::anchor_from_trusted_cert(der) {
                Ok(_) => subjects.push(c.subject().to_string()),
                Err(e) => errors.push(format!(
                    "Certificate {n} ({}) cannot be a trust anchor: {e:?}.",
                    c.subject()
                )),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut all = if replace {
        Vec::new()
    } else {
        trusted_ders(data)
    };
    for der in new {
        if !all.contains(&der) {
            all.push(der);
        }
    }
    save_cas(data, &all).map_err(|e| vec![e])?;
    Ok(subjects)
}

fn save_cas(data: &Path, all: &[CertificateDer<'_>]) -> Result<(), String> {
    let text: String = all.iter().map(|d| pem("CERTIFICATE", d)).collect();
    pki::store(data, pki::CLIENTS_CA, &text)
}

/// Stops trusting the CA whose [`Ca::id`] is `id`; returns its subject.
pub fn remove_ca(data: &Path, id: &str) -> Result<String, String> {
    let mut all = trusted_ders(data);
    let Some(at) = all.iter().position(|d| sha256(d) == id) else {
        return Err("That CA is no longer trusted (the list changed): nothing removed.".into());
    };
    let gone = all.remove(at);
    save_cas(data, &all)?;
    Ok(X509Certificate::from_der(&gone).map_or("?".into(), |(_, c)| c.subject().to_string()))
}

fn crl_ders(data: &Path) -> Vec<CertificateRevocationListDer<'static>> {
    CertificateRevocationListDer::pem_file_iter(pki::dir(data).join(pki::CLIENTS_CRL))
        .map(|it| it.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// The revocation lists installed.
pub fn crls(data: &Path) -> Vec<Crl> {
    let now = now();
    crl_ders(data)
        .iter()
        .filter_map(|der| {
            let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
            let next = crl.next_update().map(|t| t.timestamp());
            Some(Crl {
                issuer: crl.issuer().to_string(),
                next_update: next.map_or("not given".into(), date),
                // A list past its next update is stale rather than expired.
                warning: next.and_then(|t| warning(t, now)).map(|w| {
                    w.replace("expires in", "due in")
                        .replace("expired on", "overdue since")
                }),
                serials: crl
                    .iter_revoked_certificates()
                    .map(|r| of_bytes(r.raw_serial()))
                    .collect(),
            })
        })
        .collect()
}

/// Installs the revocation list(s) of `pem`, each in place of the list of the same
/// issuer if there is one. Each must parse as the handshake reads it. Returns their
/// issuers.
pub fn install_crl(data: &Path, pem_text: &[u8]) -> Result<Vec<String>, Vec<String>> {
    let parsed: Result<Vec<CertificateRevocationListDer<'static>>, _> =
        CertificateRevocationListDer::pem_slice_iter(pem_text).collect();
    let new = match parsed {
        Ok(list) if !list.is_empty() => list,
        Ok(_) => {
            return Err(vec![
                "The file holds no PEM revocation list (a block starting with -----BEGIN \
                 X509 CRL-----)."
                    .into(),
            ])
        }
        Err(e) => return Err(vec![format!("The file is not readable PEM: {e}.")]),
    };
    let mut errors = Vec::new();
    let mut issuers = Vec::new();
    for (i, der) in new.iter().enumerate() {
        let n = i + 1;
        match CertificateRevocationList::from_der(der) {
            Err(e) => errors.push(format!("List {n} cannot be read as a CRL: {e}.")),
            Ok((_, crl)) => match webpki::OwnedCertRevocationList::from_der(der) {
                Ok(_) => issuers.push(crl.issuer().to_string()),
                Err(e) => errors.push(format!(
                    "List {n} ({}) cannot be used: {e:?}.",
                    crl.issuer()
                )),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let issuer_of = |der: &[u8]| {
        CertificateRevocationList::from_der(der).map(|(_, c)| c.issuer().as_raw().to_vec())
    };
    let replaced: Vec<Vec<u8>> = new.iter().filter_map(|d| issuer_of(d).ok()).collect();
    let mut all: Vec<_> = crl_ders(data)
        .into_iter()
        .filter(|d| issuer_of(d).map_or(true, |i| !replaced.contains(&i)))
        .collect();
    all.extend(new);
    let text: String = all.iter().map(|d| pem("X509 CRL", d)).collect();
    pki::store(data, pki::CLIENTS_CRL, &text).map_err(|e| vec![e])?;
    Ok(issuers)
}

/// The serial numbers the administrator revoked.
pub fn revoked(data: &Path) -> Vec<String> {
    std::fs::read_to_string(pki::dir(data).join(REVOKED))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serial(l).ok())
        .collect()
}

/// Revokes (`on`) or un-revokes a serial number, written as the user typed it. Returns
/// it as stored; `Err` if it is not a serial number, or not revoked when un-revoking.
pub fn set_revoked(data: &Path, text: &str, on: bool) -> Result<String, String> {
    let s = serial(text)?;
    let mut all = revoked(data);
    let had = all.contains(&s);
    if on && !had {
        all.push(s.clone());
    } else if !on {
        if !had {
            return Err(format!("{s} is not revoked here: nothing changed."));
        }
        all.retain(|r| *r != s);
    }
    let text: String = all.iter().map(|r| format!("{r}\n")).collect();
    pki::store(data, REVOKED, &text)?;
    Ok(s)
}

/// The CAs and lists within [`WARN_DAYS`] of their end or past it: a key that names the
/// item, and what to tell.
pub fn expiring(data: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cas(data)
        .into_iter()
        .filter_map(|ca| {
            let w = ca.warning?;
            Some((ca.id, format!("trusted client CA {}: {w}", ca.subject)))
        })
        .collect();
    out.extend(crls(data).into_iter().filter_map(|crl| {
        let w = crl.warning?;
        Some((
            format!("crl {} {}", crl.issuer, crl.next_update),
            format!("revocation list of {}: next update {w}", crl.issuer),
        ))
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_is_hex_with_or_without_colons_and_leading_zeros() {
        assert_eq!(serial("4f:a2:01"), Ok("4FA201".into()));
        assert_eq!(serial(" 00:8F:01 "), Ok("8F01".into()));
        assert_eq!(serial("0x1"), Ok("01".into()));
        assert_eq!(serial("00"), Ok("00".into()));
        assert_eq!(of_bytes(&[0, 0x8f, 1]), "8F01");
        for bad in ["", "xyz", "12-34", &"A".repeat(41)] {
            assert!(serial(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_end_is_warned_of_within_30_days_and_once_past() {
        let day = 86_400;
        assert_eq!(warning(100 * day, 0), None);
        assert!(warning(29 * day, 0)
            .unwrap()
            .starts_with("expires in 29 days"));
        assert!(warning(0, day)
            .unwrap()
            .starts_with("expired on 1970-01-01"));
    }
}
