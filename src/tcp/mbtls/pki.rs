//! The certificates of Modbus/TCP Security, all in `DATA/mbtls/` (files 0600,
//! each written to a temporary name and renamed):
//!
//! - `server.pem`, `server-key.pem`: the card's certificate on this port, self-signed, made
//!   at the first start.
//! - `clients-ca.pem`: the CAs whose client certificates are accepted, as the administrator
//!   installs them. Without it every handshake is refused.
//! - `clients-crl.pem`: revocation lists (PEM) of those CAs, if the administrator installs
//!   any; a certificate they list is refused.
//! - `client-ca.pem`, `client-ca-key.pem`: the card's own client CA, for a site without a
//!   PKI of its own; `modbus-card cert client` and a CSR signed on the Modbus/TCP Security
//!   page make it and add it to `clients-ca.pem`.

use super::role::{ROLE_OID, ROLE_OID_ARCS};
use crate::files::{create_dir_durable, write_private};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

pub const SERVER_CERT: &str = "server.pem";
/// The name in the card's certificate on this port (masters that check names use it).
pub const SERVER_NAME: &str = "modbus-card";
pub const SERVER_KEY: &str = "server-key.pem";
/// The CAs trusted for client certificates.
pub const CLIENTS_CA: &str = "clients-ca.pem";
/// Revocation lists of the trusted CAs.
pub const CLIENTS_CRL: &str = "clients-crl.pem";
pub const CARD_CA: &str = "client-ca.pem";
pub const CARD_CA_KEY: &str = "client-ca-key.pem";

/// Ends before 2038, which the board's 32-bit time cannot pass.
const DAYS: i64 = 3650;

/// `DATA/mbtls`.
pub fn dir(data: &Path) -> PathBuf {
    data.join("mbtls")
}

fn params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Modbus card");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(DAYS);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &crate::accounts::random_bytes::<16>(),
    ));
    params
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    write_private(&dir.join(name), text.as_bytes())
        .map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

/// `DATA/mbtls/NAME` replaced whole (temporary file, synced, renamed), the folder made
/// (durably) if missing: the administrator's lists and tables.
pub(super) fn store(data: &Path, name: &str, text: &str) -> Result<(), String> {
    let dir = dir(data);
    create_dir_durable(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write(&dir, name, text)
}

/// The card's certificate chain and key on this port, made if missing.
pub fn server_identity(
    data: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let dir = dir(data);
    if let Ok(found) = load_pair(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY)) {
        return Ok(found);
    }
    create_dir_durable(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = KeyPair::generate().map_err(|e| format!("no key for the server: {e}"))?;
    let mut params = params("Modbus card (Modbus/TCP Security)");
    params.subject_alt_names = vec![rcgen::SanType::DnsName(
        SERVER_NAME.try_into().map_err(|e| format!("{e}"))?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot make the server certificate: {e}"))?;
    // The key first: a cut between the two leaves a pair that does not load, and a new
    // one is made at the next start.
    write(&dir, SERVER_KEY, &key.serialize_pem())?;
    write(&dir, SERVER_CERT, &cert.pem())?;
    load_pair(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY))
}

fn load_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((chain, key))
}

/// Every certificate of a PEM file; an error for a file with none.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The card's client CA, made (and added to the trusted CAs) if missing.
fn card_ca(dir: &Path) -> Result<(KeyPair, CertificateDer<'static>), String> {
    let loaded = (|| {
        let key = KeyPair::from_pem(&fs::read_to_string(dir.join(CARD_CA_KEY)).ok()?).ok()?;
        let cert = read_certs(&dir.join(CARD_CA)).ok()?.into_iter().next()?;
        Some((key, cert))
    })();
    let (key, cert) = match loaded {
        Some(pair) => pair,
        None => {
            create_dir_durable(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let key = KeyPair::generate().map_err(|e| format!("no key for the CA: {e}"))?;
            let mut params = params("Modbus card client CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params
                .self_signed(&key)
                .map_err(|e| format!("cannot make the client CA: {e}"))?;
            write(dir, CARD_CA_KEY, &key.serialize_pem())?;
            write(dir, CARD_CA, &cert.pem())?;
            (key, cert.der().clone())
        }
    };
    // Trusted beside whatever CAs the administrator installed.
    let trusted = read_certs(&dir.join(CLIENTS_CA)).unwrap_or_default();
    if !trusted.contains(&cert) {
        let mut text = fs::read_to_string(dir.join(CLIENTS_CA)).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let ca = fs::read_to_string(dir.join(CARD_CA))
            .map_err(|e| format!("{}: {e}", dir.join(CARD_CA).display()))?;
        text.push_str(&ca);
        write(dir, CLIENTS_CA, &text)?;
    }
    Ok((key, cert))
}

/// The role extension's value: one DER UTF8String.
fn role_extension(role: &str) -> Result<CustomExtension, String> {
    if role.is_empty() || role.len() > super::role::MAX_ROLE {
        return Err(format!(
            "a role is 1 to {} bytes of text",
            super::role::MAX_ROLE
        ));
    }
    let mut der = vec![0x0c, role.len() as u8];
    der.extend_from_slice(role.as_bytes());
    debug_assert_eq!(ROLE_OID, "1.3.6.1.4.1.50316.802.1");
    Ok(CustomExtension::from_oid_content(ROLE_OID_ARCS, der))
}

/// A master's key and certificate with `role`, signed by the card's client CA (made if
/// missing): `client-key.pem` and `client.pem` in `out`. Returns what was written, in words.
pub fn make_client(data: &Path, role: &str, out: &Path) -> Result<String, String> {
    let extension = role_extension(role)?;
    let dir = dir(data);
    let (ca_key, ca_cert) = card_ca(&dir)?;
    let issuer = Issuer::from_ca_cert_der(&ca_cert, &ca_key)
        .map_err(|e| format!("cannot read the client CA: {e}"))?;
    let key = KeyPair::generate().map_err(|e| format!("no key for the client: {e}"))?;
    let mut params = params(&format!("Modbus master ({role})"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions.push(extension);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("cannot make the client certificate: {e}"))?;
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    write(out, "client-key.pem", &key.serialize_pem())?;
    write(out, "client.pem", &cert.pem())?;
    Ok(format!(
        "{0}/client.pem and {0}/client-key.pem: a client certificate with role '{role}', \
         signed by {1} (trusted in {2})",
        out.display(),
        dir.join(CARD_CA).display(),
        dir.join(CLIENTS_CA).display(),
    ))
}

/// A master's certificate for the key of its certificate request (PEM), with `role`,
/// signed by the card's client CA (made and trusted if missing): the master's key never
/// leaves it. The request's subject and alternative names are kept; everything else is
/// the card's (validity, serial, client use only, the role). Returns the certificate (PEM)
/// and its serial number in hex.
pub fn sign_csr(data: &Path, csr_pem: &str, role: &str) -> Result<(String, String), String> {
    let extension = role_extension(role)?;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            "The request's signature does not verify: it was altered, or not signed by the \
             key it carries. Make a new request on the master."
                .to_string()
        }
        rcgen::Error::CouldNotParseCertificationRequest => {
            "This is not a certificate request in PEM (a block starting with -----BEGIN \
             CERTIFICATE REQUEST-----)."
                .to_string()
        }
        rcgen::Error::UnsupportedExtension => {
            "The request asks for an extension the card does not sign (only subject \
             alternative names, key usages and basic constraints are understood)."
                .to_string()
        }
        e => format!("The request cannot be used: {e}."),
    })?;
    let dir = dir(data);
    let (ca_key, ca_cert) = card_ca(&dir)?;
    let issuer = Issuer::from_ca_cert_der(&ca_cert, &ca_key)
        .map_err(|e| format!("cannot read the client CA: {e}"))?;
    let mut fresh = params("");
    fresh.distinguished_name = csr.params.distinguished_name.clone();
    fresh.subject_alt_names = csr.params.subject_alt_names.clone();
    fresh.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    fresh.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    fresh.use_authority_key_identifier_extension = true;
    fresh.custom_extensions.push(extension);
    let serial = fresh
        .serial_number
        .as_ref()
        .map(|s| super::trust::of_bytes(s.as_ref()))
        .unwrap_or_default();
    let signed = CertificateSigningRequestParams {
        params: fresh,
        public_key: csr.public_key,
    }
    .signed_by(&issuer)
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    Ok((signed.pem(), serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A master cannot get more than the administrator gives: a request for a CA
    /// certificate gets a client certificate with the role chosen on the card.
    #[test]
    fn a_signed_request_gets_the_cards_terms_not_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["plc.example".into()]).unwrap();
        asked.distinguished_name.push(DnType::CommonName, "plc-1");
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        asked.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let (pem, serial) = sign_csr(dir.path(), &csr, "read").unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        assert_eq!(cert.subject().to_string(), "CN=plc-1");
        assert_eq!(super::super::trust::of_bytes(cert.raw_serial()), serial);
        assert_eq!(super::super::role::of(&der).role, Ok("read".into()));
        assert!(cert
            .extended_key_usage()
            .unwrap()
            .is_some_and(|e| e.value.client_auth && !e.value.server_auth));
        // The card's client CA was made for it, and is trusted.
        let trusted = read_certs(&super::dir(dir.path()).join(CLIENTS_CA)).unwrap();
        let ca = read_certs(&super::dir(dir.path()).join(CARD_CA)).unwrap();
        assert_eq!(trusted, ca);
    }
}
