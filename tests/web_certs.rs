//! The card's certificates: its own root and server certificate (owner-only files, made
//! again for new addresses), and uploads that are checked whole before they replace
//! anything, and can be reverted.

mod common;

use common::web::{start_web, Browser};
use common::Setup;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// The SANs of the certificate the card serves, read with x509-parser.
fn served_names(card: &common::Card) -> Vec<String> {
    let pem = std::fs::read(card.data.join("tls/server.pem")).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = p.parse_x509().unwrap();
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::IPAddress(b) => {
                std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn the_cards_own_certificates_are_private_and_follow_its_addresses() {
    let mut card = start_web(Setup::default());
    let tls = card.data.join("tls");
    assert_eq!(
        std::fs::metadata(&tls).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        let mode = std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let names = served_names(&card);
    assert!(
        names.contains(&"127.0.0.1".to_string()) && names.contains(&"localhost".to_string()),
        "{names:?}"
    );
    card.wait_event("certificate_made");
    let root = card.root_pem();
    let server = std::fs::read(tls.join("server.pem")).unwrap();

    // The same addresses: nothing is made again.
    card.restart_web("127.0.0.1:0");
    assert_eq!(std::fs::read(tls.join("server.pem")).unwrap(), server);
    // Another address: a new server certificate from the same root, which still verifies.
    card.restart_web("127.0.0.2:0");
    assert_eq!(card.root_pem(), root, "the root stays");
    assert_ne!(std::fs::read(tls.join("server.pem")).unwrap(), server);
    let names = served_names(&card);
    assert!(
        names.contains(&"127.0.0.2".to_string()) && !names.contains(&"127.0.0.1".to_string()),
        "{names:?}"
    );
    let mut b = Browser::new(&format!("https://{}", card.https()), Some(&root));
    assert_eq!(b.get("/login").status, 200);
    let made = || {
        card.events()
            .iter()
            .filter(|e| e.kind == "certificate_made")
            .count()
    };
    // Events reach the log through the store thread.
    common::wait_for("both certificates in the log", || made() >= 2);
    assert_eq!(made(), 2);
}

/// A CA of the site's own and a certificate it signs for `names`.
struct SiteCa {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl SiteCa {
    fn new() -> SiteCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Site CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        SiteCa {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM).
    fn sign(&self, names: &[&str], days: (i64, i64)) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn agent_trusting(pem: &[u8]) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![
                    ureq::tls::Certificate::from_pem(pem).unwrap(),
                ])))
                .build(),
        )
        .build()
        .new_agent()
}

#[test]
fn a_good_upload_is_served_and_can_be_reverted() {
    let card = start_web(Setup::default());
    let url = format!("https://{}/login", card.https());
    let site = SiteCa::new();
    let (cert, key) = site.sign(&["127.0.0.1", "card.example"], (-1, 90));
    let mut admin = card.admin();
    admin.get("/config");
    let p = admin.post_files(
        "/config/certificate",
        &[
            ("certificate", cert.as_bytes()),
            ("key", key.as_bytes()),
            ("ca", site.ca_pem.as_bytes()),
        ],
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("The uploaded certificate is now in use"),
        "{}",
        p.body
    );
    assert!(p.body.contains("Uploaded certificate"));
    // New connections get it: a client trusting the site's CA connects, one trusting only
    // the card's root does not.
    agent_trusting(site.ca_pem.as_bytes())
        .get(&url)
        .call()
        .unwrap();
    assert!(agent_trusting(&card.root_pem()).get(&url).call().is_err());
    card.wait_event("certificate_installed");

    // Back to the card's own.
    let mut admin = Browser::new(
        &format!("https://{}", card.https()),
        Some(site.ca_pem.as_bytes()),
    );
    admin.login("admin", common::web::GOOD);
    admin.get("/config");
    let p = admin.post("/config/certificate/revert", &[]);
    assert!(
        p.body.contains("own certificate is in use again"),
        "{}",
        p.body
    );
    agent_trusting(&card.root_pem()).get(&url).call().unwrap();
    assert!(!card.data.join("tls/uploaded.pem").exists());
    card.wait_event("certificate_reverted");
}

#[test]
fn a_bad_upload_is_refused_with_nothing_changed() {
    let card = start_web(Setup::default());
    let site = SiteCa::new();
    let (good_cert, _) = site.sign(&["127.0.0.1"], (-1, 90));
    let (_, other_key) = site.sign(&["127.0.0.1"], (-1, 90));
    let (expired, expired_key) = site.sign(&["127.0.0.1"], (-30, -1));
    let (elsewhere, elsewhere_key) = site.sign(&["printer.example"], (-1, 90));
    let (signed, signed_key) = site.sign(&["127.0.0.1"], (-1, 90));
    let stranger = SiteCa::new();
    // (the sentence expected, certificate, key, CA)
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], &'a [u8]);
    let cases: [Case; 6] = [
        (
            "does not belong to the certificate",
            good_cert.as_bytes(),
            other_key.as_bytes(),
            b"",
        ),
        (
            "expired on",
            expired.as_bytes(),
            expired_key.as_bytes(),
            b"",
        ),
        (
            "names printer.example, but not this card",
            elsewhere.as_bytes(),
            elsewhere_key.as_bytes(),
            b"",
        ),
        (
            "holds no PEM certificate",
            b"not a certificate",
            signed_key.as_bytes(),
            b"",
        ),
        (
            "no private key",
            signed.as_bytes(),
            b"-----BEGIN NOTHING-----",
            b"",
        ),
        (
            "does not verify against the CA file",
            signed.as_bytes(),
            signed_key.as_bytes(),
            stranger.ca_pem.as_bytes(),
        ),
    ];
    let served = std::fs::read(card.data.join("tls/server.pem")).unwrap();
    let mut admin = card.admin();
    for (why, cert, key, ca) in cases {
        admin.get("/config");
        let p = admin.post_files(
            "/config/certificate",
            &[("certificate", cert), ("key", key), ("ca", ca)],
        );
        assert_eq!(p.status, 400, "{why}");
        assert!(p.body.contains(why), "{why}: {}", p.body);
        assert!(p.body.contains("Nothing was changed"));
        // The card's own certificate is still the one served.
        let mut b = Browser::new(&format!("https://{}", card.https()), Some(&card.root_pem()));
        assert_eq!(b.get("/login").status, 200, "{why}");
        assert!(!card.data.join("tls/uploaded.pem").exists(), "{why}");
        assert_eq!(
            std::fs::read(card.data.join("tls/server.pem")).unwrap(),
            served
        );
    }
    assert!(!card
        .events()
        .iter()
        .any(|e| e.kind == "certificate_installed"));
}
