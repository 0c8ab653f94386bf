//! The card's time past 2038-01-19 03:14:07 UTC (the last second a 32-bit `time_t` holds)
//! and past NTP's era rollover (2036-02-07 06:28:16 UTC). Run on 32-bit Arm under emulation
//! by .ci/board, where the bindings' `time_t` has 32 bits: every conversion here must go
//! through 64-bit integers to pass.

use crate::board::clock::{self, unix_ns, Clock, Decision, Policy};
use crate::board::sntp;
use crate::event::{Event, Events};
use crate::store::Store;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS: i64 = 1_000_000_000;
/// 2038-01-19 03:14:08 UTC: one second past a 32-bit `time_t`.
const PAST_2038: i64 = 1 << 31;
/// 2040-01-01 00:00:00 UTC.
const Y2040: i64 = 2_208_988_800;
/// 2036-02-07 06:28:16 UTC: NTP era 1 begins, its seconds start again from 0.
const NTP_ERA_1: i64 = 2_085_978_496;

/// The card's clock, set by the user to `unix_s`, and the events it stamped.
fn card_at(
    unix_s: i64,
) -> (
    Clock,
    Events,
    crossbeam_channel::Receiver<crate::event::Stamped>,
) {
    let (events, rx) = Events::channel();
    let clock = Clock::new(&events, false);
    clock
        .set_by_user(
            UNIX_EPOCH + Duration::from_secs(unix_s as u64),
            "admin",
            &events,
        )
        .unwrap();
    rx.recv().unwrap();
    (clock, events, rx)
}

#[test]
fn the_card_clock_reads_past_2038() {
    for (at, shown) in [
        (PAST_2038, "2038-01-19 03:14:08 UTC"),
        (Y2040, "2040-01-01 00:00:00 UTC"),
    ] {
        let (clock, _, _) = card_at(at);
        let now = unix_ns(clock.now());
        assert!((now - at * NANOS).abs() < 5 * NANOS, "{}", clock::utc(now));
        // The pages' and the console's date line.
        assert_eq!(&clock::utc(at * NANOS), shown);
        assert_eq!(
            crate::calendar::input_value(at * 1000),
            shown[..19].replace(' ', "T")
        );
        assert_eq!(crate::calendar::parse_utc(shown), Ok(at * 1000));
        // A date typed on the Date and time page is accepted.
        assert!(clock
            .set_by_user(
                clock::from_unix_ns(at * NANOS + NANOS),
                "admin",
                &Events::channel().0
            )
            .is_ok());
    }
}

#[test]
fn events_past_2038_are_stamped_stored_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    for at in [PAST_2038, Y2040] {
        let (_clock, events, rx) = card_at(at);
        events.emit(Event::TimeChangedByServer { step_ms: 1000 });
        let stamped = rx.recv().unwrap();
        let stamp = unix_ns(stamped.at) / NANOS;
        assert!((stamp - at).abs() < 5, "stamped {stamp}, card at {at}");
        store.add_events(&[stamped]).unwrap();
    }
    let rows = store.events(10).unwrap();
    let mut stored: Vec<i64> = rows.iter().map(|r| unix_ns(r.at()) / NANOS).collect();
    stored.sort();
    assert!((stored[0] - PAST_2038).abs() < 5, "{stored:?}");
    assert!((stored[1] - Y2040).abs() < 5, "{stored:?}");
    let mut csv = Vec::new();
    store.write_events_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains(",2038-01-19T03:1"), "{csv}");
    assert!(csv.contains(",2040-01-01T00:00:0"), "{csv}");
}

#[test]
fn certificates_made_today_cross_2038_and_are_checked_past_it() {
    use crate::web::certs::{Certs, Names, FOLDER};
    let dir = tempfile::tempdir().unwrap();
    let (certs, _) = Certs::open(dir.path(), &Names::for_bind([127, 0, 0, 1].into())).unwrap();
    let root = CertificateDer::from_pem_slice(certs.root_pem().unwrap().as_bytes()).unwrap();
    let server_pem = std::fs::read(dir.path().join(FOLDER).join("server.pem")).unwrap();
    let server = CertificateDer::from_pem_slice(&server_pem).unwrap();
    // The 20-year root ends after 2038, read as such.
    let (_, parsed) = x509_parser::parse_x509_certificate(&root).unwrap();
    let root_end = parsed.validity().not_after.timestamp();
    let today = unix_ns(SystemTime::now()) / NANOS;
    assert!(root_end > PAST_2038, "root ends {root_end}");
    assert!((root_end - today - 20 * 365 * 86_400).abs() < 2 * 86_400);
    assert!(
        certs.info().not_after.as_str() > "2027",
        "{}",
        certs.info().not_after
    );
    // The server certificate verifies today, and has expired (not "not yet valid", as a
    // wrapped 32-bit time would make it) in 2038 and 2040.
    let anchor = webpki::anchor_from_trusted_cert(&root).unwrap();
    let ee = webpki::EndEntityCert::try_from(&server).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let verify = |at: i64| {
        ee.verify_for_usage(
            provider.signature_verification_algorithms.all,
            std::slice::from_ref(&anchor),
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(at as u64)),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
    };
    verify(today).unwrap();
    for at in [PAST_2038, Y2040] {
        assert!(
            matches!(verify(at), Err(webpki::Error::CertExpired { .. })),
            "{:?}",
            verify(at)
        );
    }
}

#[test]
fn ntp_answers_after_the_2036_rollover_set_the_clock() {
    for (card, server) in [
        // Both in era 1.
        (Y2040 * NANOS, Y2040 * NANOS + 3600 * NANOS),
        // The card still in era 0, the server 10 s into era 1.
        ((NTP_ERA_1 - 5) * NANOS, (NTP_ERA_1 + 5) * NANOS),
        // Past 2038 both.
        (PAST_2038 * NANOS, PAST_2038 * NANOS - 2 * NANOS),
    ] {
        let sent = sntp::to_ntp(card);
        let mut reply = [0u8; sntp::PACKET];
        reply[0] = (4 << 3) | 4;
        reply[1] = 2;
        reply[24..32].copy_from_slice(&sntp::request(sent)[40..48]);
        let t = sntp::to_ntp(server + 1_000_000).to_be_bytes();
        reply[32..40].copy_from_slice(&t);
        reply[40..48].copy_from_slice(&t);
        let sample = sntp::parse_reply(&reply, sent, card, card + 2_000_000).unwrap();
        let offset = server - card;
        assert!(
            (sample.offset_ns - offset).abs() < 1_000,
            "{sample:?} vs {offset}"
        );
        let mut policy = Policy::default();
        assert_eq!(
            policy.decide(sample.offset_ns, card),
            Decision::Step(sample.offset_ns)
        );
    }
    // Era 1's first second is written as 0 on the wire and read back as 2036.
    assert_eq!(sntp::to_ntp(NTP_ERA_1 * NANOS) >> 32, 0);
    assert_eq!(clock::utc(sntp::from_ntp(0)), "2036-02-07 06:28:16 UTC");
}
