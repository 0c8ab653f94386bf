//! The Modbus/TCP Security page as an administrator uses it over HTTPS, and what its
//! changes do to a TLS master on the card's port at its next connection: CAs uploaded,
//! serials revoked and un-revoked, a revocation list, a master's request signed with a
//! role, the role table, and refusals that change nothing.

use crate::common::ports::{config, identity, make_client, BOTH};
use crate::common::web::{unescape, Browser, Page, MAC};
use crate::common::{start_with, wait_for, Card, Setup};
use crate::mbtls::{refused, Master, READ, WRITE};
use modbus_card::link::LinkState;
use modbus_card::service::Options;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};

/// A card serving HTTPS and Modbus/TCP Security (on), its UPS found.
fn card() -> Card {
    let card = start_with(
        Setup::default().set("mbtls_enabled", "true"),
        Options {
            mbtls: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse().unwrap()),
            ..Options::default()
        },
    );
    card.wait_state(LinkState::Up);
    card
}

/// The page, as admin sees it (and the session's CSRF token for the next post).
fn page(b: &mut Browser) -> Page {
    let p = b.get("/mbtls");
    assert_eq!(p.status, 200, "{}", p.body);
    p
}

fn cert_of(dir: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join("client.pem")).unwrap()
}

/// A certificate's serial as `openssl x509 -serial` shows it, with colons, lower case.
fn serial_with_colons(cert: &CertificateDer<'_>) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
    c.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn mbtls_file(card: &Card, name: &str) -> Option<Vec<u8>> {
    std::fs::read(card.data.join("mbtls").join(name)).ok()
}

#[test]
fn a_ca_uploaded_on_the_page_lets_its_masters_in() {
    let card = card();
    // A site's own CA, made elsewhere, with a master's certificate from it.
    let site = tempfile::tempdir().unwrap();
    let master = site.path().join("master");
    make_client(&site.path().join("pki"), "operate", &master);
    let ca = std::fs::read(site.path().join("pki/mbtls/client-ca.pem")).unwrap();
    let ca_der = CertificateDer::from_pem_slice(&ca).unwrap();

    let mut admin = card.admin();
    let p = page(&mut admin);
    p.shows(&["No CA is trusted", "On, listening on"]);
    shut_out(&card, &master);

    let p = admin.post_files("/mbtls/ca", &[("ca", &ca[..]), ("mode", b"add")]);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["Client CA trusted", "Modbus card client CA"]);
    let listed = serial_with_colons(&ca_der).replace(':', "").to_uppercase();
    p.shows(&[listed.trim_start_matches("00")]);
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&WRITE).unwrap(), WRITE);
    assert_eq!(card.sim.register(0x0010), Some(0xBEEF));
    let changed = card.wait_event("mbtls_changed");
    assert!(changed.message.contains("by admin"), "{}", changed.message);

    // Removed: refused again at the next connection.
    let id = p.field("id").unwrap();
    let p = admin.post("/mbtls/ca/remove", &[("id", &id)]);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["No CA is trusted"]);
    shut_out(&card, &master);
}

/// The master with the key and certificate in `dir` gets no answer.
fn shut_out(card: &Card, dir: &Path) {
    match Master::connect(card, config(card, Some(dir), BOTH)) {
        Err(_) => {}
        Ok(mut m) => assert!(m.ask(&READ).is_err(), "a request was answered"),
    }
}

#[test]
fn a_serial_revoked_on_the_page_is_refused_and_accepted_again_once_un_revoked() {
    let card = card();
    let master = identity(&card, "read");
    let serial = serial_with_colons(&cert_of(&master));
    let mut admin = card.admin();
    page(&mut admin);
    let p = admin.post("/mbtls/revoke", &[("serial", &serial)]);
    assert_eq!(p.status, 200, "{}", p.body);
    let stored = serial.replace(':', "").to_uppercase();
    let stored = stored.trim_start_matches("00");
    p.shows(&["Un-revoke", stored]);

    refused(&card, config(&card, Some(&master), BOTH));
    let event = card.wait_event("mbtls_refused");
    assert!(event.message.contains("Revoked"), "{}", event.message);
    // Another master of the same CA still gets in.
    let other = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&other), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);

    let p = admin.post("/mbtls/unrevoke", &[("serial", stored)]);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["No serial number revoked here"]);
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    wait_for("both changes logged", || {
        let events = card.events();
        ["revoked by admin", "no longer revoked by admin"]
            .iter()
            .all(|t| {
                events
                    .iter()
                    .any(|e| e.kind == "mbtls_changed" && e.message.contains(t))
            })
    });
}

/// A key pair and its certificate request (PEM) for a master named `name`.
fn request(name: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key).unwrap();
    (key, csr.pem().unwrap())
}

#[test]
fn a_request_signed_on_the_page_gets_its_roles_rights_as_the_table_says() {
    let card = card();
    let (key, csr) = request("plc-7");
    let mut admin = card.admin();
    page(&mut admin);
    let p = admin.post_files("/mbtls/sign", &[("csr", csr.as_bytes()), ("role", b"read")]);
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.header("content-disposition")
            .is_some_and(|d| d.contains("attachment") && d.contains(".pem")),
        "{:?}",
        p.headers
    );
    assert!(
        p.body.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        p.body
    );
    // The master keeps its own key: the certificate is for it.
    let cert = CertificateDer::from_pem_slice(p.body.as_bytes()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let master = card.data.parent().unwrap().join("plc-7");
    std::fs::create_dir_all(&master).unwrap();
    std::fs::write(master.join("client.pem"), &p.body).unwrap();
    std::fs::write(master.join("client-key.pem"), key.serialize_pem()).unwrap();

    // The card's client CA was made for it, and is trusted.
    page(&mut admin).shows(&["Modbus card client CA"]);
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    assert_eq!(m.ask(&WRITE).unwrap(), [0x86, 0x01]);
    assert_ne!(card.sim.register(0x0010), Some(0xBEEF));
    let opened = card.wait_event("mbtls_opened");
    assert!(opened.message.contains("plc-7"), "{}", opened.message);
    assert!(card
        .events()
        .iter()
        .any(|e| e.kind == "mbtls_changed" && e.message.contains("signed for CN=plc-7")));
    drop(m);

    // read may now write too, from the next connection.
    let p = admin.post("/mbtls/role", &[("name", "read"), ("rights", "operate")]);
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        unescape(&p.body).contains("Role 'read' given the rights operate"),
        "{}",
        p.body
    );
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&WRITE).unwrap(), WRITE);
    assert_eq!(card.sim.register(0x0010), Some(0xBEEF));

    // And with no rights, nothing.
    admin.post("/mbtls/role", &[("name", "read"), ("rights", "none")]);
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap(), [0x83, 0x01]);
}

#[test]
fn only_admin_sees_or_changes_the_page() {
    let card = card();
    let master = identity(&card, "read");
    let serial = serial_with_colons(&cert_of(&master));
    let mut admin = card.admin();
    let mut user = card.user(&mut admin, "operator", "read-write");
    assert_eq!(user.get("/mbtls").status, 403);
    for (path, fields) in [
        ("/mbtls/revoke", [("serial", serial.as_str())]),
        ("/mbtls/role", [("name", "guest")]),
    ] {
        let p = user.post(path, &fields);
        assert_eq!(p.status, 403, "{path}: {}", p.body);
    }
    let (_, csr) = request("sneaky");
    let p = user.post_files(
        "/mbtls/sign",
        &[("csr", csr.as_bytes()), ("role", b"operate")],
    );
    assert_eq!(p.status, 403);
    assert!(!p.body.contains("BEGIN CERTIFICATE"));
    assert_eq!(mbtls_file(&card, "revoked.txt"), None);
    assert_eq!(mbtls_file(&card, "roles.txt"), None);
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    assert_eq!(card.count("mbtls_changed"), 0);
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let card = card();
    let master = identity(&card, "read");
    let mut admin = card.admin();
    page(&mut admin);
    admin.post("/mbtls/revoke", &[("serial", "0A:0B")]);
    admin.post("/mbtls/role", &[("name", "shift lead"), ("rights", "read")]);
    let files = [
        "clients-ca.pem",
        "clients-crl.pem",
        "revoked.txt",
        "roles.txt",
    ];
    let before: Vec<_> = files.iter().map(|f| mbtls_file(&card, f)).collect();

    let not_ca = std::fs::read(master.join("client.pem")).unwrap();
    let (_, csr) = request("plc-9");
    // One character of the signature changed (its last line holds only signature bytes).
    let mut lines: Vec<String> = csr.lines().map(String::from).collect();
    let last = lines.len() - 2;
    let flipped = if lines[last].starts_with('A') {
        "B"
    } else {
        "A"
    };
    lines[last].replace_range(..1, flipped);
    let tampered = lines.join("\n") + "\n";
    let long_role = "r".repeat(65);
    let cases: Vec<(&str, Vec<Part>, &str)> = vec![
        ("/mbtls/ca", vec![("ca", &b"hello"[..])], "no PEM certificate"),
        (
            "/mbtls/ca",
            vec![("ca", &b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"[..])],
            "not readable PEM",
        ),
        ("/mbtls/ca", vec![("ca", &not_ca), ("mode", b"replace")], "is not a CA certificate"),
        ("/mbtls/crl", vec![("crl", &not_ca)], "no PEM revocation list"),
        (
            "/mbtls/sign",
            vec![("csr", &b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"[..]), ("role", b"read")],
            "not a certificate request",
        ),
        (
            "/mbtls/sign",
            vec![("csr", tampered.as_bytes()), ("role", b"read")],
            "signature does not verify",
        ),
        (
            "/mbtls/sign",
            vec![("csr", csr.as_bytes()), ("role", long_role.as_bytes())],
            "1 to 64 bytes",
        ),
    ];
    for (path, parts, why) in cases {
        let p = admin.post_files(path, &parts);
        assert_eq!(p.status, 400, "{path} {why}: {}", p.body);
        p.shows(&["Nothing was changed", why]);
    }
    // A pasted request is shown again with the refusal.
    let p = admin.post(
        "/mbtls/sign",
        &[("csr_text", tampered.as_str()), ("role", "read")],
    );
    assert_eq!(p.status, 400, "{}", p.body);
    p.shows(&["signature does not verify"]);
    assert_eq!(unescape(&p.body).matches(tampered.trim()).count(), 1);
    for (path, fields, why) in [
        (
            "/mbtls/revoke",
            vec![("serial", "12-34-zz")],
            "not a serial number",
        ),
        (
            "/mbtls/unrevoke",
            vec![("serial", "99")],
            "not revoked here",
        ),
        (
            "/mbtls/role",
            vec![("name", " lead"), ("rights", "read")],
            "printable",
        ),
        (
            "/mbtls/role",
            vec![("name", "lead"), ("rights", "all")],
            "read, operate or none",
        ),
    ] {
        let p = admin.post(path, &fields);
        assert_eq!(p.status, 400, "{path} {why}: {}", p.body);
        p.shows(&["Nothing was changed", why]);
    }
    let p = admin.post("/mbtls/revoke", &[("serial", "12-34-zz")]);
    assert!(
        p.body.contains("value=\"12-34-zz\""),
        "typed kept: {}",
        p.body
    );

    let after: Vec<_> = files.iter().map(|f| mbtls_file(&card, f)).collect();
    assert_eq!(before, after);
    let mut m = Master::connect(&card, config(&card, Some(&master), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
}

/// A form's part: its name and content.
type Part<'a> = (&'a str, &'a [u8]);

/// A CA certificate and key of its own, ending in `days`.
fn short_ca(days: i64) -> (rcgen::KeyPair, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Short-lived site CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    (key, cert)
}

#[test]
fn a_ca_or_revocation_list_near_its_end_is_warned_of_on_the_page_and_once_in_the_log() {
    use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
    let card = card();
    let kept = identity(&card, "read");
    let revoked: PathBuf = identity(&card, "operate");
    let mut admin = card.admin();
    page(&mut admin);
    let (_, ca) = short_ca(10);
    let p = admin.post_files("/mbtls/ca", &[("ca", ca.pem().as_bytes())]);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["Short-lived site CA", "<strong class=\"warn\">expires in "]);
    let warned = card.wait_event("mbtls_expiring");
    assert!(
        warned.message.contains("Short-lived site CA") && warned.message.contains("expires in"),
        "{}",
        warned.message
    );

    // A list of the card's CA, due in 10 days, revoking one master.
    let dir = card.data.join("mbtls");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("client-ca-key.pem")).unwrap())
            .unwrap();
    let ca_der = CertificateDer::from_pem_file(dir.join("client-ca.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der, &ca_key).unwrap();
    let der = cert_of(&revoked);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(10),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now - time::Duration::minutes(5),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let p = admin.post_files("/mbtls/crl", &[("crl", crl.pem().unwrap().as_bytes())]);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["Revocation list installed", "List of", "Next update"]);
    p.shows(&["<strong class=\"warn\">due in "]);
    wait_for("the list's warning", || {
        card.events()
            .iter()
            .any(|e| e.kind == "mbtls_expiring" && e.message.contains("next update due in"))
    });
    refused(&card, config(&card, Some(&revoked), BOTH));
    let mut m = Master::connect(&card, config(&card, Some(&kept), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    // Once per item, however often the page is used.
    page(&mut admin);
    admin.post("/mbtls/role", &[("name", "viewer"), ("rights", "read")]);
    assert_eq!(card.count("mbtls_expiring"), 2);
}

/// `modbus-card ARGS`, as an operator runs it; its standard output.
fn run(args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modbus-card"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_command_line_signs_a_request_and_revokes_by_serial_too() {
    let card = card();
    let (key, csr) = request("plc-offline");
    let dir = card.data.parent().unwrap().join("plc-offline");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("request.pem"), &csr).unwrap();
    std::fs::write(dir.join("client-key.pem"), key.serialize_pem()).unwrap();
    let data = card.data.as_os_str();
    let said = run(&[
        "cert".as_ref(),
        "sign".as_ref(),
        "--data".as_ref(),
        data,
        "--role".as_ref(),
        "operate".as_ref(),
        "--out".as_ref(),
        dir.join("client.pem").as_os_str(),
        dir.join("request.pem").as_os_str(),
    ]);
    assert!(said.contains("role 'operate'"), "{said}");
    let mut m = Master::connect(&card, config(&card, Some(&dir), BOTH)).unwrap();
    assert_eq!(m.ask(&WRITE).unwrap(), WRITE);
    drop(m);

    let serial = serial_with_colons(&cert_of(&dir));
    run(&[
        "cert".as_ref(),
        "revoke".as_ref(),
        "--data".as_ref(),
        data,
        serial.as_ref(),
    ]);
    shut_out(&card, &dir);
    let mut admin = card.admin();
    let stored = serial.replace(':', "").to_uppercase();
    page(&mut admin).shows(&[stored.trim_start_matches("00")]);
    run(&[
        "cert".as_ref(),
        "unrevoke".as_ref(),
        "--data".as_ref(),
        data,
        serial.as_ref(),
    ]);
    let mut m = Master::connect(&card, config(&card, Some(&dir), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    let logged: Vec<_> = card
        .events()
        .into_iter()
        .filter(|e| e.kind == "mbtls_changed" && e.message.contains("by command line"))
        .collect();
    assert_eq!(logged.len(), 3, "{logged:?}");

    // A file that is not a request (the key) is refused with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modbus-card"))
        .args(["cert", "sign", "--role", "read", "--out"])
        .arg(dir.join("other.pem"))
        .arg("--data")
        .arg(&card.data)
        .arg(dir.join("client-key.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a certificate request"));
    assert!(!dir.join("other.pem").exists());
}
