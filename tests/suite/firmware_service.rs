//! The upgrade as the `/firmware` page calls it: `Service::upgrade` with the upload's
//! body as a stream. Refused while Network upgrade is off or a version is on trial;
//! streamed to disk piece by piece with progress; installed into the inactive slot; then
//! the service asks to be restarted into it, and the events say who did what.

use crate::firmware_fixture;

use firmware_fixture::*;
use modbus_card::firmware::{Refusal, Step};
use modbus_card::live::Who;
use modbus_card::service::{Options, Service};
use std::io::Read;
use std::time::Duration;

/// An upload that arrives in small pieces, as from a network socket.
struct Trickle<R>(R);

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1400);
        self.0.read(&mut buf[..n])
    }
}

fn start(card: &Card, upgrade_enabled: bool) -> Service {
    Service::start(Options {
        data: card.data.clone(),
        ups: card.sim.path().unwrap().to_path_buf(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        firmware: Some(card.root.clone()),
        overrides: vec![("upgrade_enabled".into(), upgrade_enabled.to_string())],
        ..Options::default()
    })
    .unwrap()
}

#[test]
fn the_page_s_upgrade_streams_installs_and_asks_for_the_restart() {
    let card = Card::install(60);
    let image = card.image_of(NEW, OLD);
    let size = std::fs::metadata(&image).unwrap().len();
    let admin = Who {
        user: "admin".into(),
        via: "web 127.0.0.1".into(),
        role: modbus_card::accounts::Role::Admin,
    };

    // Network upgrade off: refused before a byte is read.
    let service = start(&card, false);
    let before = card.snapshot();
    let mut body = Trickle(std::fs::File::open(&image).unwrap());
    let refused = service
        .upgrade(&mut body, Some(size), &admin, &mut |_| {})
        .unwrap_err();
    assert!(matches!(refused, Refusal::Busy(_)), "{refused}");
    assert!(
        refused.to_string().contains("Network upgrade is off"),
        "{refused}"
    );
    assert_eq!(card.snapshot(), before);
    service.stop();

    let service = start(&card, true);
    // A length over the limit is refused at once, before the body is read.
    let mut nothing = std::io::empty();
    let refused = service
        .upgrade(&mut nothing, Some(64 << 20), &admin, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "larger than the 16 MiB an image may be"
    );
    // A body that ends before its length: incomplete, nothing changed.
    let mut half = Trickle(std::fs::File::open(&image).unwrap().take(size / 2));
    let refused = service
        .upgrade(&mut half, Some(size), &admin, &mut |_| {})
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("the upload did not arrive whole: "),
        "{refused}"
    );
    assert_eq!(card.snapshot(), before);

    let mut steps = vec![];
    let mut body = Trickle(std::fs::File::open(&image).unwrap());
    let installed = service
        .upgrade(&mut body, Some(size), &admin, &mut |s| steps.push(s))
        .unwrap();
    assert_eq!(installed.version.to_string(), NEW);
    assert_eq!(installed.previous.to_string(), OLD);
    assert_eq!(installed.slot, "b");
    // Received piece by piece, then checked, written, put in place and switched to.
    let received: Vec<u64> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Receiving { bytes } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert!(received.len() > 100, "{}", received.len());
    assert_eq!(received.last(), Some(&size));
    let order: Vec<&str> = steps
        .iter()
        .map(|s| match s {
            Step::Receiving { .. } => "receiving",
            Step::Verifying => "verifying",
            Step::Writing { .. } => "writing",
            Step::Replacing => "replacing",
            Step::Switching => "switching",
        })
        .fold(vec![], |mut v, s| {
            if v.last() != Some(&s) {
                v.push(s);
            }
            v
        });
    assert_eq!(
        order,
        [
            "receiving",
            "verifying",
            "writing",
            "replacing",
            "switching"
        ]
    );
    assert_eq!(card.link("current").as_deref(), Some("b"));
    assert_eq!(card.link("good").as_deref(), Some("a"));
    assert_eq!(card.slot_version("b").as_deref(), Some(NEW));

    // The service asks whoever runs it to restart it into the new version.
    let restart = service
        .restarts()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        restart.by,
        "admin, web 127.0.0.1, firmware upgrade to 1.1.0"
    );

    // While a new version is on trial, no other upgrade.
    modbus_card::firmware::Slots::open(&card.root)
        .unwrap()
        .begin_trial()
        .unwrap();
    let before = card.snapshot();
    let mut body = Trickle(std::fs::File::open(&image).unwrap());
    let refused = service
        .upgrade(&mut body, Some(size), &admin, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "version 1.1.0 is on trial until it reports healthy: upgrade again after that"
    );
    assert_eq!(card.snapshot(), before);
    service.stop();
    let messages: Vec<String> = card.events().into_iter().map(|e| e.message).collect();
    for expected in [
        "Firmware upgrade refused, nothing changed: Network upgrade is off (Control page): turn it on to upgrade (admin, web 127.0.0.1)",
        "Firmware upgrade started (admin, web 127.0.0.1)",
        "Restart (admin, web 127.0.0.1, firmware upgrade to 1.1.0)",
    ] {
        assert!(messages.iter().any(|m| m == expected), "{expected}\n{messages:#?}");
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Firmware 1.1.0 installed in slot b (admin, web 127.0.0.1)")),
        "{messages:#?}"
    );
}
