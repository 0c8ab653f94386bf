//! Modbus/TCP Security (port 802) as a TLS master sees it: a rustls client over a real
//! socket, with keys and certificates made by `modbus-card cert client`, reading and
//! writing the simulated UPS through the card, and Modbus frames written out by hand.

use crate::common;

use common::ports::{config, identity, make_client, BOTH};
use common::{start_with, wait_for, Card, Setup, PATIENCE};
use modbus_card::link::LinkState;
use modbus_card::service::Options;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls::{ProtocolVersion, SupportedProtocolVersion};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A card serving Modbus/TCP Security on a loopback port, its UPS found.
pub(crate) fn card(setup: Setup) -> Card {
    let card = start_with(
        setup.set("mbtls_enabled", "true"),
        Options {
            mbtls: Some("127.0.0.1:0".parse().unwrap()),
            ..Options::default()
        },
    );
    card.wait_state(LinkState::Up);
    card
}

pub(crate) struct Master {
    tls: StreamOwned<ClientConnection, TcpStream>,
    transaction: u16,
}

impl Master {
    /// Connects and completes the handshake (as the client sees it: with TLS 1.3 the
    /// server's verdict on the client's certificate comes with the first answer).
    pub(crate) fn connect(card: &Card, config: Arc<ClientConfig>) -> std::io::Result<Master> {
        let addr = card.service().mbtls_addr().expect("mbtls served");
        let mut sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(PATIENCE))?;
        sock.set_write_timeout(Some(PATIENCE))?;
        let name = ServerName::try_from("modbus-card").unwrap();
        let mut conn = ClientConnection::new(config, name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(Master {
            tls: StreamOwned::new(conn, sock),
            transaction: 0,
        })
    }

    /// Sends `pdu` to unit 1 and returns the answer's PDU.
    pub(crate) fn ask(&mut self, pdu: &[u8]) -> std::io::Result<Vec<u8>> {
        self.transaction += 1;
        let mut frame = self.transaction.to_be_bytes().to_vec();
        frame.extend([0, 0]);
        frame.extend((pdu.len() as u16 + 1).to_be_bytes());
        frame.push(1);
        frame.extend(pdu);
        self.tls.write_all(&frame)?;
        self.tls.flush()?;
        let mut head = [0u8; 7];
        self.tls.read_exact(&mut head)?;
        assert_eq!(
            u16::from_be_bytes([head[0], head[1]]),
            self.transaction,
            "answer to another request"
        );
        let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
        let mut answer = vec![0u8; len - 1];
        self.tls.read_exact(&mut answer)?;
        Ok(answer)
    }
}

/// Read holding registers: 0x1060, one register.
pub(crate) const READ: [u8; 5] = [0x03, 0x10, 0x60, 0x00, 0x01];
/// Write single register 0x0010 = 0xBEEF.
pub(crate) const WRITE: [u8; 5] = [0x06, 0x00, 0x10, 0xBE, 0xEF];

#[test]
fn role_read_reads_and_its_writes_get_exception_01() {
    let card = card(Setup::default());
    let id = identity(&card, "read");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    let answer = m.ask(&READ).unwrap();
    assert_eq!(answer[..2], [0x03, 2]);
    let value = card.sim.register(0x1060).unwrap();
    assert_eq!(u16::from_be_bytes([answer[2], answer[3]]), value);
    assert_eq!(m.ask(&WRITE).unwrap(), [0x86, 0x01]);
    assert_ne!(card.sim.register(0x0010), Some(0xBEEF));
    let opened = card.wait_event("mbtls_opened");
    assert!(opened.message.contains("role read"), "{}", opened.message);
    assert!(
        opened.message.contains("Modbus master (read)"),
        "{}",
        opened.message
    );
    // Which port, whose certificate, which role refused it.
    let refused = card.wait_event("write_refused");
    for part in [
        "Modbus/TCP Security session 1",
        "Modbus master (read)",
        "role read may only read",
    ] {
        assert!(refused.message.contains(part), "{}", refused.message);
    }
}

#[test]
fn role_operate_writes() {
    let card = card(Setup::default());
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(m.ask(&WRITE).unwrap(), WRITE);
    assert_eq!(card.sim.register(0x0010), Some(0xBEEF));
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    // The session is listed beside, not among, the plain ones, with its certificate's
    // subject.
    let listed = card.service().mbtls.as_ref().unwrap().sessions.list();
    assert_eq!(listed.len(), 1);
    let subject = listed[0].subject.as_deref().unwrap_or_default();
    assert!(subject.contains("Modbus master (operate)"), "{subject}");
    assert_eq!(card.service().sessions.open(), 0);
}

#[test]
fn modbus_write_applies_too_and_the_stricter_rule_wins() {
    let card = card(Setup::default().set("modbus_write", "nobody"));
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(m.ask(&WRITE).unwrap(), [0x86, 0x01]);
    assert_ne!(card.sim.register(0x0010), Some(0xBEEF));
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    let refused = card.wait_event("write_refused");
    for part in ["role operate", "this master may only read"] {
        assert!(refused.message.contains(part), "{}", refused.message);
    }
}

#[test]
fn a_role_without_rights_gets_exception_01_for_everything_logged_once() {
    let card = card(Setup::default());
    let id = identity(&card, "guest");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    for _ in 0..3 {
        assert_eq!(m.ask(&READ).unwrap(), [0x83, 0x01]);
    }
    assert_eq!(m.ask(&WRITE).unwrap(), [0x86, 0x01]);
    let refused = card.wait_event("mbtls_no_rights");
    assert!(refused.message.contains("'guest'"), "{}", refused.message);
    drop(m);
    card.wait_event("mbtls_closed");
    assert_eq!(card.count("mbtls_no_rights"), 1);
}

/// The handshake, or at the latest the first request, fails.
pub(crate) fn refused(card: &Card, config: Arc<ClientConfig>) {
    match Master::connect(card, config) {
        Err(_) => {}
        Ok(mut m) => assert!(m.ask(&READ).is_err(), "a request was answered"),
    }
    let event = card.wait_event("mbtls_refused");
    assert!(event.message.contains("handshake"), "{}", event.message);
    assert_eq!(card.count("mbtls_opened"), 0);
}

#[test]
fn no_client_certificate_is_refused() {
    let card = card(Setup::default());
    // Some CA is trusted, so only the missing certificate refuses.
    identity(&card, "read");
    refused(&card, config(&card, None, BOTH));
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let card = card(Setup::default());
    identity(&card, "read");
    let elsewhere = tempfile::tempdir().unwrap();
    let other = elsewhere.path().join("master");
    make_client(&elsewhere.path().join("data"), "operate", &other);
    refused(&card, config(&card, Some(&other), BOTH));
    assert_ne!(card.sim.register(0x0010), Some(0xBEEF));
    // Whom the certificate named, though it was refused.
    let event = card.wait_event("mbtls_refused");
    assert!(
        event.message.contains("Modbus master (operate)"),
        "{}",
        event.message
    );
}

#[test]
fn tls_1_2_with_an_ecdhe_aead_suite_works() {
    let card = card(Setup::default());
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), TLS12)).unwrap();
    assert_eq!(
        m.tls.conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    let suite = format!(
        "{:?}",
        m.tls.conn.negotiated_cipher_suite().unwrap().suite()
    );
    assert!(
        suite.contains("ECDHE") && (suite.contains("GCM") || suite.contains("CHACHA20")),
        "{suite}"
    );
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    assert_eq!(m.ask(&WRITE).unwrap(), WRITE);
}

#[test]
fn off_by_default_and_switched_live() {
    let card = start_with(
        Setup::default(),
        Options {
            mbtls: Some("127.0.0.1:0".parse().unwrap()),
            ..Options::default()
        },
    );
    card.wait_state(LinkState::Up);
    assert!(!card.service().settings().mbtls_enabled);
    assert_eq!(card.service().mbtls_addr(), None);
    let admin = crate::common::admin_who();
    let switch = |on: &str| {
        let applied = card
            .service()
            .live
            .change(&[("mbtls_enabled", on)], &admin, false)
            .unwrap();
        assert!(applied.next_start.is_empty(), "applies at once");
    };
    switch("true");
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    let addr = card.service().mbtls_addr().unwrap();
    switch("false");
    // The open session ends (the acceptor ends it just after the change), and the port is
    // closed.
    wait_for("the session closed", || {
        card.events()
            .iter()
            .any(|e| e.kind == "mbtls_closed" && e.message.contains("turned off"))
    });
    assert!(m.ask(&READ).is_err());
    assert_eq!(card.service().mbtls_addr(), None);
    wait_for("the port closed", || TcpStream::connect(addr).is_err());
}

/// A master's certificate from the card's client CA with `role` as the raw value of the
/// role extension (None: no extension), made here since `cert client` only makes good ones.
fn odd_identity(card: &Card, name: &str, role: Option<Vec<u8>>) -> PathBuf {
    signed_identity(card, name, |params| {
        if let Some(value) = role {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 50316, 802, 1],
                    value,
                ));
        }
    })
}

/// A master's certificate named `name` from the card's client CA, as `edit` makes it.
fn signed_identity(
    card: &Card,
    name: &str,
    edit: impl FnOnce(&mut rcgen::CertificateParams),
) -> PathBuf {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose};
    identity(card, "read");
    let dir = card.data.join("mbtls");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("client-ca-key.pem")).unwrap())
            .unwrap();
    let ca = CertificateDer::from_pem_file(dir.join("client-ca.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca, &ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    edit(&mut params);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let out = card.data.parent().unwrap().join(name);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("client.pem"), cert.pem()).unwrap();
    std::fs::write(out.join("client-key.pem"), key.serialize_pem()).unwrap();
    out
}

#[test]
fn no_role_or_a_malformed_one_gets_exception_01() {
    let card = card(Setup::default());
    let cases = [
        ("no-role", None, "no role"),
        // A PrintableString, not a UTF8String.
        (
            "printable",
            Some(b"\x13\x07operate".to_vec()),
            "not one UTF8String",
        ),
        // 65 bytes.
        (
            "too-long",
            Some([&[0x0c, 65][..], &[b'a'; 65]].concat()),
            "not one UTF8String",
        ),
    ];
    for (name, role, why) in cases {
        let id = odd_identity(&card, name, role);
        let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
        assert_eq!(m.ask(&READ).unwrap(), [0x83, 0x01], "{name}");
        assert_eq!(m.ask(&WRITE).unwrap(), [0x86, 0x01], "{name}");
        wait_for(name, || {
            card.events().iter().any(|e| {
                e.kind == "mbtls_no_rights" && e.message.contains(name) && e.message.contains(why)
            })
        });
    }
    assert_ne!(card.sim.register(0x0010), Some(0xBEEF));
}

#[test]
fn handshakes_in_progress_are_bounded_one_address_cannot_keep_others_out_and_a_silent_one_ends() {
    let card = card(Setup::default());
    let id = identity(&card, "read");
    let addr = card.service().mbtls_addr().unwrap();
    // Connections from one address that never say hello hold every handshake place.
    let silent: Vec<TcpStream> = (0..modbus_card::tcp::mbtls::MAX_PENDING)
        .map(|_| common::connect_from([127, 0, 0, 2], addr))
        .collect();
    // A master from another address still gets in: the oldest silent one makes room.
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    let mut byte = [0u8; 1];
    assert!(matches!((&silent[0]).read(&mut byte), Ok(0) | Err(_)));
    wait_for("the dropped handshake logged", || {
        card.events().iter().any(|e| {
            e.kind == "mbtls_refused"
                && e.message.contains("127.0.0.2")
                && e.message.contains("dropped for a newer connection")
        })
    });
    // The others end within the handshake timeout.
    assert!(matches!((&silent[1]).read(&mut byte), Ok(0) | Err(_)));
    wait_for("a handshake timeout logged", || {
        card.events()
            .iter()
            .any(|e| e.kind == "mbtls_refused" && e.message.contains("not completed within"))
    });
}

#[test]
fn pipelined_requests_are_answered_in_order_and_logged_as_tls_frames() {
    let card = card(Setup::default().set("poll_rate_s", 0));
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    // Three requests in one TLS record.
    let mut burst = Vec::new();
    for (t, address) in [(1u16, 0x1060u16), (2, 0x1061), (3, 0x1062)] {
        burst.extend(t.to_be_bytes());
        burst.extend([0, 0, 0, 6, 1, 0x03]);
        burst.extend(address.to_be_bytes());
        burst.extend([0, 1]);
    }
    m.tls.write_all(&burst).unwrap();
    m.tls.flush().unwrap();
    for (t, address) in [(1u16, 0x1060u16), (2, 0x1061), (3, 0x1062)] {
        let mut answer = [0u8; 11];
        m.tls.read_exact(&mut answer).unwrap();
        assert_eq!(u16::from_be_bytes([answer[0], answer[1]]), t);
        assert_eq!(answer[7..9], [0x03, 2]);
        let value = card.sim.register(address).unwrap();
        assert_eq!(u16::from_be_bytes([answer[9], answer[10]]), value);
    }
    let frames = card.service().link.frames.newest(100);
    assert!(frames
        .iter()
        .any(|f| f.source == modbus_card::link::Source::Mbtls(1)));
}

#[test]
fn a_request_sent_with_the_end_of_the_handshake_is_answered() {
    let card = card(Setup::default());
    let id = identity(&card, "read");
    for versions in [BOTH, TLS12] {
        let sock = TcpStream::connect(card.service().mbtls_addr().unwrap()).unwrap();
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = ServerName::try_from("modbus-card").unwrap();
        let mut conn = ClientConnection::new(config(&card, Some(&id), versions), name).unwrap();
        // Written before the handshake ends: it leaves with the client's Finished.
        conn.writer()
            .write_all(&[0, 7, 0, 0, 0, 6, 1, 0x03, 0x10, 0x60, 0, 1])
            .unwrap();
        let mut tls = StreamOwned::new(conn, sock);
        let mut answer = [0u8; 11];
        tls.read_exact(&mut answer).unwrap();
        assert_eq!(answer[..2], [0, 7]);
        assert_eq!(answer[7..9], [0x03, 2]);
    }
}

/// A certificate revoked in the CRL the administrator installs is refused; one the CRL
/// does not list still gets in.
#[test]
fn a_revoked_certificate_is_refused() {
    use rcgen::{
        CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
        SerialNumber,
    };
    let card = card(Setup::default());
    let revoked = identity(&card, "operate");
    let kept = identity(&card, "read");
    let dir = card.data.join("mbtls");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("client-ca-key.pem")).unwrap())
            .unwrap();
    let ca = CertificateDer::from_pem_file(dir.join("client-ca.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca, &ca_key).unwrap();
    let der = CertificateDer::from_pem_file(revoked.join("client.pem")).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(30),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now - time::Duration::minutes(5),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    std::fs::write(dir.join("clients-crl.pem"), crl.pem().unwrap()).unwrap();

    refused(&card, config(&card, Some(&revoked), BOTH));
    let event = card.wait_event("mbtls_refused");
    assert!(event.message.contains("Revoked"), "{}", event.message);
    let mut m = Master::connect(&card, config(&card, Some(&kept), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
}

/// Sends a read of 0x1060 on a plain Modbus TCP connection; the answer's PDU, or the
/// error if the connection was closed.
fn plain_read(sock: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    sock.write_all(&[0, 1, 0, 0, 0, 6, 1, 0x03, 0x10, 0x60, 0, 1])?;
    let mut answer = [0u8; 11];
    sock.read_exact(&mut answer)?;
    Ok(answer[7..].to_vec())
}

/// `modbus_enabled` off closes plain port 502 and ends its sessions at once, leaving
/// Modbus/TCP Security and its sessions alone; on again, 502 listens where it did. Only
/// the admin switches it, and the change is logged.
#[test]
fn plain_modbus_tcp_is_switched_off_and_on_live_and_802_stays() {
    let card = card(Setup::default());
    assert!(card.service().settings().modbus_enabled, "on by default");
    let plain_addr = card.addr();
    let mut plain = TcpStream::connect(plain_addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(plain_read(&mut plain).unwrap()[..2], [0x03, 2]);
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);

    let mut operator = crate::common::admin_who();
    operator.role = modbus_card::accounts::Role::ReadWrite;
    let live = &card.service().live;
    assert!(live
        .change(&[("modbus_enabled", "false")], &operator, false)
        .is_err());
    assert!(card.service().settings().modbus_enabled);

    let admin = crate::common::admin_who();
    // The open session is named before anything is done.
    match live.change(&[("modbus_enabled", "false")], &admin, false) {
        Err(modbus_card::live::Refused::Confirm(w)) => {
            assert!(w[0].contains("session 1"), "{w:?}")
        }
        other => panic!("not asked to confirm: {other:?}"),
    }
    let applied = live
        .change(&[("modbus_enabled", "false")], &admin, true)
        .unwrap();
    assert!(applied.next_start.is_empty(), "applies at once");
    wait_for("the plain session closed", || {
        card.events()
            .iter()
            .any(|e| e.kind == "tcp_closed" && e.message.contains("Modbus TCP turned off"))
    });
    assert!(plain_read(&mut plain).is_err());
    wait_for("port 502 closed", || {
        TcpStream::connect(plain_addr).is_err()
    });
    // Port 802 goes on: the open session and a new one.
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    let mut again = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(again.ask(&READ).unwrap()[..2], [0x03, 2]);
    let changed = card.wait_event("setting_changed");
    assert!(
        changed.message.contains("Modbus TCP"),
        "{}",
        changed.message
    );

    live.change(&[("modbus_enabled", "true")], &admin, false)
        .unwrap();
    let mut plain = TcpStream::connect(plain_addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(plain_read(&mut plain).unwrap()[..2], [0x03, 2]);
}

/// A master's certificate with role operate, valid from `days_from` to `days_to` days
/// from now by this machine's clock.
fn dated_identity(card: &Card, name: &str, days_from: i64, days_to: i64) -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    signed_identity(card, name, |params| {
        params.not_before = now + time::Duration::days(days_from);
        params.not_after = now + time::Duration::days(days_to);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 50316, 802, 1],
                b"\x0c\x07operate".to_vec(),
            ));
    })
}

/// `id` is refused at the handshake, the event saying `why` and naming the certificate
/// (whose common name is its folder's name).
fn refused_because(card: &Card, id: &Path, why: &str) {
    let name = id.file_name().unwrap().to_str().unwrap();
    match Master::connect(card, config(card, Some(id), BOTH)) {
        Err(_) => {}
        Ok(mut m) => assert!(m.ask(&READ).is_err(), "a request was answered"),
    }
    wait_for(why, || {
        card.events().iter().any(|e| {
            e.kind == "mbtls_refused" && e.message.contains(why) && e.message.contains(name)
        })
    });
}

/// A card without a real-time clock may start after a power cut with its clock far
/// behind. The time of the last event it logged before is no earlier than the real
/// time was then, so certificates are judged by it while the clock is behind it. Here the
/// clock is right and the event log is ahead (an event 10 days from now), which is the
/// same case seen from the other side: certificates are judged 10 days from now, both
/// ways (one not yet valid by the clock gets in, one that expires before then does not).
#[test]
fn certificates_are_judged_no_earlier_than_the_last_event_logged() {
    let mut card = card(Setup::default());
    let later = dated_identity(&card, "from-in-2-days", 2, 60);
    let soon_over = dated_identity(&card, "over-in-1-day", -30, 1);
    // By the clock: the first is not valid yet, the second is.
    refused_because(&card, &later, "certificate not valid yet");
    let mut m = Master::connect(&card, config(&card, Some(&soon_over), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    drop(m);

    card.stop();
    let ten_days = std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400);
    let mut store = modbus_card::store::Store::open(&card.data).unwrap();
    store
        .add_events(&[modbus_card::event::Stamped {
            at: ten_days,
            event: modbus_card::event::Event::Stopped,
        }])
        .unwrap();
    drop(store);
    card.service = Some(
        modbus_card::service::Service::start(Options {
            data: card.data.clone(),
            ups: card.sim.path().unwrap().to_path_buf(),
            modbus: Some("127.0.0.1:0".parse().unwrap()),
            mbtls: Some("127.0.0.1:0".parse().unwrap()),
            overrides: vec![("mbtls_enabled".into(), "true".into())],
            ..Options::default()
        })
        .unwrap(),
    );
    card.wait_state(LinkState::Up);
    let mut m = Master::connect(&card, config(&card, Some(&later), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    refused_because(&card, &soon_over, "certificate expired");
}

/// Home lists Modbus/TCP Security's sessions beside the plain ones, each with its master's
/// address and its certificate's subject; with plain Modbus TCP off it says so.
#[test]
fn home_lists_tls_sessions_with_their_certificates_subject() {
    let card = start_with(
        Setup::default().set("mbtls_enabled", "true"),
        Options {
            mbtls: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some("00:1A:2B:3C:4D:5E".parse().unwrap()),
            ..Options::default()
        },
    );
    card.wait_state(LinkState::Up);
    let id = identity(&card, "operate");
    let mut m = Master::connect(&card, config(&card, Some(&id), BOTH)).unwrap();
    assert_eq!(m.ask(&READ).unwrap()[..2], [0x03, 2]);
    let peer = m.tls.sock.local_addr().unwrap().to_string();
    let mut admin = card.admin();
    let s: serde_json::Value = serde_json::from_str(&admin.get("/api/status").body).unwrap();
    assert_eq!(s["tls"][0]["peer"], peer.as_str());
    let subject = s["tls"][0]["subject"].as_str().unwrap_or_default();
    assert!(subject.contains("Modbus master (operate)"), "{s}");
    assert_eq!(s["tls"][1]["peer"], serde_json::Value::Null);
    assert_eq!(s["tcp"][0]["subject"], serde_json::Value::Null);
    let home = admin.get("/");
    for shown in ["TLS session 1", peer.as_str(), "Modbus master (operate)"] {
        assert!(home.body.contains(shown), "Home lacks {shown}");
    }

    card.service()
        .live
        .change(
            &[("modbus_enabled", "false")],
            &crate::common::admin_who(),
            true,
        )
        .unwrap();
    let home = admin.get("/");
    assert!(
        home.body.contains("plain Modbus TCP is turned off"),
        "{}",
        home.body
    );
}
