//! The card's certificates: its own root and server certificate (owner-only files, made
//! again for new addresses), a root that signs only for the card (proven with the openssl
//! command and rustls-webpki), kept across upgrades and replaced only when admin confirms,
//! uploads that are checked whole before they replace anything, and can be reverted; and
//! plain HTTP's redirect, which never sends a browser to a name that is not the card's.

use crate::common;

use common::web::{start_web, Browser};
use common::Setup;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
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

/// openssl's verdict on `leaf` (PEM) with `root` (PEM) as the only trust anchor, as a TLS
/// server certificate. The openssl command must be there: a test without it fails.
fn openssl_verify(root: &[u8], leaf: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = (dir.path().join("ca.pem"), dir.path().join("leaf.pem"));
    std::fs::write(&ca, root).unwrap();
    std::fs::write(&cert, leaf).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&ca)
        .arg(&cert)
        .output()
        .expect("the openssl command (this test needs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

/// rustls-webpki's verdict on the chain from `leaf` to `root`, as a TLS server certificate.
fn webpki_verify(root: &[u8], leaf: &[u8]) -> Result<(), String> {
    let root = CertificateDer::from_pem_slice(root).unwrap();
    let leaf = CertificateDer::from_pem_slice(leaf).unwrap();
    let anchor = webpki::anchor_from_trusted_cert(&root).unwrap();
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    ee.verify_for_usage(
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(drop)
    .map_err(|e| format!("{e:?}"))
}

/// Both verifiers agree on the chain, and this is what they say.
fn verdict(root: &[u8], leaf: &[u8], what: &str) -> bool {
    let (o, w) = (openssl_verify(root, leaf), webpki_verify(root, leaf));
    assert_eq!(o.is_ok(), w.is_ok(), "{what}: openssl {o:?}, webpki {w:?}");
    o.is_ok()
}

/// A server certificate for `names`, signed with the card's own root key (as whoever took
/// `tls/ca.key` off a card could).
fn signed_with_card_root(tls: &Path, names: &[&str]) -> String {
    let ca_pem = std::fs::read_to_string(tls.join("ca.pem")).unwrap();
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &issuer).unwrap().pem()
}

/// The host name as the card's certificate names it (`HOST` and `HOST.local`), if it is a
/// DNS name.
fn host_names() -> Vec<String> {
    let host = nix::unistd::gethostname()
        .unwrap()
        .into_string()
        .unwrap()
        .to_ascii_lowercase();
    let host = host.strip_suffix(".local").unwrap_or(&host).to_string();
    let dns = !host.is_empty()
        && host != "localhost"
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if dns {
        vec![host.clone(), format!("{host}.local")]
    } else {
        vec![]
    }
}

/// Those of [`host_names`] the card's root covers: a bare host name is not, since the
/// constraint would cover every name under it (a whole top-level domain).
fn covered_host_names() -> Vec<String> {
    host_names()
        .into_iter()
        .filter(|h| h.contains('.'))
        .collect()
}

#[test]
fn the_cards_root_signs_for_the_card_only() {
    let card = start_web(Setup::default());
    let tls = card.data.join("tls");
    let root = card.root_pem();

    // The constraints are there, and marked critical: a client that cannot read them
    // must refuse the root rather than ignore them.
    let (_, p) = x509_parser::pem::parse_x509_pem(&root).unwrap();
    let cert = p.parse_x509().unwrap();
    let nc = cert.name_constraints().unwrap().expect("name constraints");
    assert!(nc.critical);
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(tls.join("ca.pem"))
        .output()
        .expect("the openssl command (this test needs it)");
    let text = String::from_utf8_lossy(&text.stdout);
    for permitted in [
        "DNS:localhost",
        "IP:127.0.0.0/255.0.0.0",
        "IP:192.168.7.0/255.255.255.0",
    ] {
        assert!(text.contains(permitted), "{permitted} in\n{text}");
    }

    // The card's own certificate is accepted, and so is one for its names.
    let served = std::fs::read(tls.join("server.pem")).unwrap();
    assert!(verdict(&root, &served, "the card's own certificate"));
    let mut own: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "192.168.7.18".into(),
    ];
    own.extend(covered_host_names());
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let leaf = signed_with_card_root(&tls, &own);
    assert!(verdict(&root, leaf.as_bytes(), "the card's names"));

    // Any other name, signed with the card's root key, is refused: names under a bare
    // host name too (`vm` is a top-level domain).
    let under_host: Vec<String> = host_names()
        .iter()
        .filter(|h| !h.contains('.'))
        .map(|h| format!("www.{h}"))
        .collect();
    let mut others: Vec<Vec<&str>> = vec![
        vec!["example.com"],
        vec!["www.bank.example"],
        vec!["203.0.113.5"],
        vec!["10.255.255.1"],
        vec!["localhost", "example.com"],
        vec!["127.0.0.1", "198.51.100.7"],
    ];
    others.extend(under_host.iter().map(|h| vec![h.as_str()]));
    for names in &others {
        let leaf = signed_with_card_root(&tls, names);
        assert!(
            !verdict(&root, leaf.as_bytes(), &format!("{names:?}")),
            "{names:?} accepted"
        );
        let said = openssl_verify(&root, leaf.as_bytes()).unwrap_err();
        assert!(said.contains("subtree violation"), "{names:?}: {said}");
    }

    // A browser trusting the root still reaches the card.
    assert_eq!(card.browser().get("/login").status, 200);
}

/// A root as cards made them before their roots carried name constraints.
fn unconstrained_root() -> (String, String) {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Modbus card root CA");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Modbus card");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(20 * 365);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Puts `root` (certificate, key) in the card's data as its root, the card stopped.
fn give_root(card: &mut common::Card, root: &(String, String)) {
    card.stop();
    let tls = card.data.join("tls");
    std::fs::write(tls.join("ca.pem"), &root.0).unwrap();
    std::fs::write(tls.join("ca.key"), &root.1).unwrap();
}

#[test]
fn an_older_root_is_kept_until_admin_confirms_a_new_one() {
    let mut card = start_web(Setup::default());
    let tls = card.data.join("tls");
    // The data of a card from before: a root that signs for anything. The new firmware
    // starts on it.
    let old = unconstrained_root();
    give_root(&mut card, &old);
    card.restart_web("127.0.0.1:0");
    assert_eq!(
        card.root_pem(),
        old.0.as_bytes(),
        "the upgrade kept the root"
    );
    assert_eq!(std::fs::read_to_string(tls.join("ca.key")).unwrap(), old.1);
    let served = std::fs::read(tls.join("server.pem")).unwrap();
    assert!(verdict(
        old.0.as_bytes(),
        &served,
        "served, from the old root"
    ));
    // Clients that trust the old root go on working.
    let mut admin = card.admin();
    let page = admin.get("/config");
    page.shows(&[
        "any site: it was made before the card limited its root",
        "Make a new root that signs only for this card",
    ]);

    // Asked first; nothing changes until confirmed.
    let p = admin.post("/config/certificate/root", &[]);
    assert_eq!(p.status, 200);
    p.shows(&[
        "Make a new root certificate?",
        "no longer trust the card",
        "download the new root and trust it",
        "The current root&#39;s key is deleted",
        "Yes, make a new root",
    ]);
    assert_eq!(card.root_pem(), old.0.as_bytes());
    // Another restart still keeps it.
    card.restart_web("127.0.0.1:0");
    assert_eq!(card.root_pem(), old.0.as_bytes());

    // Only admin makes one.
    let mut admin = card.browser();
    assert_eq!(admin.login("admin", common::web::GOOD).location(), "/");
    admin.get("/");
    let mut rw = card.user(&mut admin, "operator", "read-write");
    rw.get("/config").shows(&["Root signs for"]);
    assert!(!rw.get("/config").body.contains("/config/certificate/root"));
    let p = rw.post("/config/certificate/root", &[("confirm", "yes")]);
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(card.root_pem(), old.0.as_bytes());

    // Confirmed: a new root with constraints, the old key gone, and the card's
    // certificate from the new root.
    let mut admin = card.browser();
    assert_eq!(admin.login("admin", common::web::GOOD).location(), "/");
    admin.get("/config");
    let p = admin.post("/config/certificate/root", &[("confirm", "yes")]);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["The card has a new root"]);
    let new = card.root_pem();
    assert_ne!(new, old.0.as_bytes());
    let key = std::fs::read_to_string(tls.join("ca.key")).unwrap();
    assert_ne!(key, old.1, "the old root's key is gone");
    assert!(!std::fs::read_dir(&tls)
        .unwrap()
        .any(|e| std::fs::read_to_string(e.unwrap().path()).is_ok_and(|t| t == old.1)));
    let served = std::fs::read(tls.join("server.pem")).unwrap();
    assert!(verdict(&new, &served, "served, from the new root"));
    assert!(!verdict(
        old.0.as_bytes(),
        &served,
        "served, against the old root"
    ));
    let leaf = signed_with_card_root(&tls, &["example.com"]);
    assert!(!verdict(
        &new,
        leaf.as_bytes(),
        "example.com from the new root"
    ));
    let url = format!("https://{}/login", card.https());
    agent_trusting(&new).get(&url).call().unwrap();
    assert!(agent_trusting(old.0.as_bytes()).get(&url).call().is_err());
    let made = card.wait_event("root_made");
    assert!(made.message.contains("by admin"), "{}", made.message);
    let mut admin = card.browser();
    assert_eq!(admin.login("admin", common::web::GOOD).location(), "/");
    admin
        .get("/config")
        .shows(&["localhost, ", "127.0.0.0/8, 192.168.7.0/24", " only"]);
}

#[test]
fn names_the_root_does_not_cover_are_left_out_and_said() {
    let hosts = covered_host_names();
    let mut card = start_web(Setup::default());
    let tls = card.data.join("tls");
    // A root that covers loopback and `localhost`, but not the host name (as when the card
    // was renamed after its root was made).
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Modbus card root CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![
            rcgen::GeneralSubtree::DnsName("localhost".into()),
            rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_v4_prefix([127, 0, 0, 1], 32)),
        ],
        excluded_subtrees: vec![],
    });
    let key = KeyPair::generate().unwrap();
    let narrow = (params.self_signed(&key).unwrap().pem(), key.serialize_pem());
    give_root(&mut card, &narrow);
    card.restart_web("127.0.0.1:0");
    assert_eq!(card.root_pem(), narrow.0.as_bytes());
    // The certificate carries what the root covers, and so still verifies.
    let names = served_names(&card);
    assert_eq!(names, ["127.0.0.1", "localhost"]);
    let served = std::fs::read(tls.join("server.pem")).unwrap();
    assert!(verdict(narrow.0.as_bytes(), &served, "served"));
    let mut admin = card.admin();
    let page = admin.get("/config");
    page.shows(&["Root signs for", "localhost, 127.0.0.1/32 only"]);
    if !hosts.is_empty() {
        common::wait_for("the certificate's event", || {
            card.events().iter().any(|e| {
                e.kind == "certificate_made"
                    && e.message.contains(&format!(
                        "(not for {}: the card's root does not cover them)",
                        hosts.join(", ")
                    ))
            })
        });
    }
    if hosts.is_empty() {
        assert!(!page.body.contains("does not sign for"));
    } else {
        page.shows(&[&format!("does not sign for {}", hosts.join(", "))]);
    }

    // A new root covers them.
    admin.get("/config");
    let p = admin.post("/config/certificate/root", &[("confirm", "yes")]);
    p.shows(&["The card has a new root"]);
    let mut want = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    want.extend(hosts);
    assert_eq!(served_names(&card), want);
    let mut admin = card.browser();
    assert_eq!(admin.login("admin", common::web::GOOD).location(), "/");
    assert!(!admin.get("/config").body.contains("does not sign for"));
}

/// The `Location` plain HTTP answers a GET of `/login` with `host` as its Host header,
/// over a socket of its own.
fn redirect_for(card: &common::Card, host: &str) -> String {
    let mut s = std::net::TcpStream::connect(card.http()).unwrap();
    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
    write!(
        s,
        "GET /login?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 301"), "{host}: {answer}");
    answer
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{host}: no Location in {answer}"))
}

#[test]
fn plain_http_redirects_only_to_the_cards_own_names() {
    let card = start_web(Setup::default());
    let port = card.https().port();
    let http = card.http().port();
    // Names that are not the card's: the address the connection came in on.
    for host in [
        "evil.example",
        "evil.example:80",
        "evil.example.",
        "[::1]",
        "10.1.2.3",
        "localhost.evil.example",
        "",
    ] {
        assert_eq!(
            redirect_for(&card, host),
            format!("https://127.0.0.1:{port}/login?x=1"),
            "Host: {host}"
        );
    }
    // The card's own names and addresses are kept.
    let mut own = vec![
        format!("127.0.0.1:{http}"),
        "localhost".into(),
        format!("LocalHost:{http}"),
    ];
    own.extend(host_names());
    for host in own {
        let name = host.split(':').next().unwrap();
        assert_eq!(
            redirect_for(&card, &host),
            format!("https://{name}:{port}/login?x=1"),
            "Host: {host}"
        );
    }
}

/// The leaf certificate the card serves on HTTPS, as `openssl s_client` receives it, in
/// base64 without line breaks.
fn served_leaf(card: &common::Card) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &card.https().to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the openssl command");
    pem_body(&String::from_utf8_lossy(&out.stdout))
}

fn pem_body(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate")
        + 27;
    let end = start + text[start..].find("-----END").unwrap();
    text[start..end].split_whitespace().collect()
}

/// An uploaded certificate is two files, its key and its chain. A power cut between storing
/// the two left the new key beside the old chain: they did not match, and the card fell
/// back to its own certificate, neither the upload it had confirmed nor the new one. The
/// chain is now staged whole first, and a start finishes (or forgets) the install.
#[test]
fn an_upload_cut_between_its_key_and_its_chain_is_finished_or_forgotten_at_the_next_start() {
    let mut card = start_web(Setup::default());
    let site = SiteCa::new();
    let (one, one_key) = site.sign(&["127.0.0.1", "one.example"], (-1, 90));
    let (two, two_key) = site.sign(&["127.0.0.1", "two.example"], (-1, 90));
    let mut admin = card.admin();
    admin.get("/config");
    let p = admin.post_files(
        "/config/certificate",
        &[
            ("certificate", one.as_bytes()),
            ("key", one_key.as_bytes()),
            ("ca", site.ca_pem.as_bytes()),
        ],
    );
    assert!(p.body.contains("now in use"), "{}", p.body);
    assert_eq!(served_leaf(&card), pem_body(&one));
    let tls = card.data.join("tls");
    let one_chain = std::fs::read(tls.join("uploaded.pem")).unwrap();
    let two_chain = format!("{two}\n{}", site.ca_pem);

    // Cut after the new key was in place: the new chain is waiting beside the old one.
    card.stop();
    std::fs::write(tls.join("uploaded.key"), &two_key).unwrap();
    std::fs::write(tls.join("uploaded.pem.new"), &two_chain).unwrap();
    card.restart_web("127.0.0.1:0");
    assert_eq!(served_leaf(&card), pem_body(&two), "the install finished");
    assert!(!tls.join("uploaded.pem.new").exists());

    // Cut before the new key was in place: the old upload, whole, stays.
    card.stop();
    std::fs::write(tls.join("uploaded.key"), &one_key).unwrap();
    std::fs::write(tls.join("uploaded.pem"), &one_chain).unwrap();
    std::fs::write(tls.join("uploaded.pem.new"), &two_chain).unwrap();
    card.restart_web("127.0.0.1:0");
    assert_eq!(served_leaf(&card), pem_body(&one), "the old upload kept");
    assert!(!tls.join("uploaded.pem.new").exists());
}
