//! A firmware image uploaded on the `/firmware` page, over HTTPS as a browser sends it
//! (multipart form): streamed through the front to the firmware module, installed into
//! the inactive slot, and the card asks to restart into it. Refused uploads (not an
//! image, a bad signature, Network upgrade off, no token, not admin, too large) change
//! nothing and say why on the page.

use crate::common;
use crate::firmware_fixture;

use common::web::{Browser, Page, DEFAULT_PASSWORD, GOOD, MAC};
use firmware_fixture::*;
use modbus_card::accounts::Mac;
use modbus_card::service::{Options, Service};
use std::time::Duration;

fn start(card: &Card, upgrade_enabled: bool) -> Service {
    Service::start(Options {
        data: card.data.clone(),
        ups: card.sim.path().unwrap().to_path_buf(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        firmware: Some(card.root.clone()),
        http: Some(format!("127.0.0.1:{}", card.http).parse().unwrap()),
        https: Some(format!("127.0.0.1:{}", card.https).parse().unwrap()),
        mac: Some(MAC.parse::<Mac>().unwrap()),
        overrides: vec![("upgrade_enabled".into(), upgrade_enabled.to_string())],
        ..Options::default()
    })
    .unwrap()
}

/// Admin logged in, its first password changed.
fn admin(card: &Card) -> Browser {
    let mut b = card.browser();
    if b.login("admin", DEFAULT_PASSWORD).location() == "/password" {
        b.change_password(DEFAULT_PASSWORD, GOOD);
    }
    assert_eq!(b.login("admin", GOOD).location(), "/");
    b
}

/// Where the page's upload form posts (with the session's token).
fn action(b: &mut Browser) -> String {
    let p = b.get("/firmware");
    assert_eq!(p.status, 200);
    let at = p
        .body
        .find("action=\"/firmware/upload?csrf=")
        .expect("the form")
        + 8;
    common::web::unescape(p.body[at..].split('"').next().unwrap())
}

fn upload(b: &mut Browser, image: &[u8]) -> Page {
    let to = action(b);
    b.post_files(&to, &[("image", image)])
}

#[test]
fn an_image_uploaded_on_the_page_is_installed_and_the_card_restarts_into_it() {
    let card = Card::install(60);
    let image = std::fs::read(card.image_of(NEW, OLD)).unwrap();
    let service = start(&card, true);
    let mut b = admin(&card);
    let page = b.get("/firmware");
    page.shows(&[
        modbus_card::firmware::version::current(),
        "Firmware image",
        "enctype=\"multipart/form-data\"",
    ]);
    let p = upload(&mut b, &image);
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["Firmware 1.1.0 installed", "goes back to 1.0.0"]);
    assert_eq!(card.link("current").as_deref(), Some("b"));
    assert_eq!(card.link("good").as_deref(), Some("a"));
    assert_eq!(card.slot_version("b").as_deref(), Some(NEW));
    let restart = service
        .restarts()
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        restart.by,
        "admin, web 127.0.0.1, firmware upgrade to 1.1.0"
    );
    service.stop();
    assert!(card.events().iter().any(|e| e
        .message
        .starts_with("Firmware 1.1.0 installed in slot b (admin, web 127.0.0.1)")));
}

#[test]
fn refused_uploads_change_nothing_and_say_why() {
    let card = Card::install(60);
    let good = std::fs::read(card.image_of(NEW, OLD)).unwrap();
    let before = card.snapshot();
    let service = start(&card, false);
    let mut b = admin(&card);
    // Network upgrade off: the page offers no form, and the upload is refused.
    let page = b.get("/firmware");
    page.shows(&["Network upgrade is off"]);
    assert!(!page.body.contains("type=\"file\""));
    let token = b.csrf.clone();
    let p = b.post_files(
        &format!("/firmware/upload?csrf={token}"),
        &[("image", &good)],
    );
    assert_eq!(p.status, 400, "{}", p.body);
    p.shows(&["The firmware was not changed", "Network upgrade is off"]);
    b.submit("/control", &[("upgrade_enabled", "true")]);

    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let noise: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    for (what, body, said) in [
        ("noise", &noise, "Not a firmware image of this card"),
        ("tampered", &tampered, "The firmware was not changed"),
    ] {
        let p = upload(&mut b, body);
        assert_eq!(p.status, 400, "{what}: {}", p.body);
        p.shows(&[said]);
    }
    // Without the session's token in the address: refused before the body is read.
    let p = b.post_files("/firmware/upload", &[("image", &good)]);
    assert_eq!(p.status, 403);
    // Larger than an image may be: refused by its length, before the body is read.
    let huge = vec![0u8; 17 * 1024 * 1024];
    let to = action(&mut b);
    match b.try_post_files(&to, &[("image", &huge)]) {
        Ok(p) => assert_eq!(p.status, 413, "{}", p.body),
        Err(e) => assert!(matches!(e, ureq::Error::Io(_)), "{e:?}"),
    }
    // Not admin.
    let mut op = common::web::new_user(&mut admin(&card), card.browser(), "op", "read-write");
    op.get("/firmware")
        .shows(&["Only admin uploads new firmware"]);
    let token = op.csrf.clone();
    let p = op.post_files(
        &format!("/firmware/upload?csrf={token}"),
        &[("image", &good)],
    );
    assert_eq!(p.status, 403);
    p.shows(&["Only admin upgrades the firmware"]);

    // Still serving, and the install as it was.
    assert_eq!(admin(&card).get("/firmware").status, 200);
    assert!(service.restarts().try_recv().is_err());
    service.stop();
    let after = card.snapshot();
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v) && !k.starts_with('('))
        .map(|(k, _)| k)
        .collect();
    assert!(changed.is_empty(), "changed: {changed:?}");
}
