//! `modbus-card image build` and `image verify` as a maker uses them: a signed image of
//! a build, shown; the part to sign by hand, signed apart and appended, as with the
//! minisign tool; and the mistakes a maker can make, each named.

use crate::firmware_fixture;

use firmware_fixture::*;
use modbus_card::firmware::keys;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(BIN).args(args).args(paths).output().unwrap()
}

#[test]
fn a_signed_image_shows_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = key_pair(d, "maker");
    let bin = build_of(d, "2.3.4");
    let img = image(d, &bin, INIT.as_ref(), &key, "2.0.0");
    let o = run(&["image", "verify", "--key"], &[&key.public, &img]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    let id = keys::read_public(&key.public).unwrap().id;
    let size = fs::metadata(&bin).unwrap().len();
    for line in [
        "  version        2.3.4".to_string(),
        "  replaces       2.0.0 and later".to_string(),
        format!("  file           modbus-card ({size} bytes)"),
        format!("  signed by      maker ({id})"),
        "signature, manifest and contents are good".to_string(),
    ] {
        assert!(said.contains(&line), "{line}\n{said}");
    }

    // The card's own trusted keys, when none are given: here none.
    let o = run(&["image", "verify", "--data"], &[d, &img]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("this card trusts no signing key"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_part_to_sign_signed_apart_and_appended_is_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = key_pair(d, "maker");
    let bin = build_of(d, "2.3.4");
    let body = d.join("fw.body");
    let o = run(
        &["image", "build", "--unsigned", "--binary"],
        &[&bin, Path::new("--out"), &body],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("unsigned: sign it with `minisign -Sm FILE`"),
        "{}",
        text(&o)
    );
    // What `minisign -Sm fw.body` writes to fw.body.minisig (the tool itself: .ci/firmware).
    let sig = keys::sign(&key.secret, &body, "signed apart").unwrap();
    let mut image = fs::read(&body).unwrap();
    image.extend_from_slice(sig.as_bytes());
    let img = d.join("fw.img");
    fs::write(&img, image).unwrap();
    let o = run(&["image", "verify", "--key"], &[&key.public, &img]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("signed comment signed apart"),
        "{}",
        text(&o)
    );
    // The body alone is not an image.
    let o = run(&["image", "verify", "--key"], &[&key.public, &body]);
    assert!(text(&o).contains("the image is incomplete"), "{}", text(&o));
}

#[test]
fn a_maker_s_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = key_pair(d, "maker");
    let out = d.join("x.img");
    let not_ours = Path::new("/bin/sh");
    let o = run(
        &["image", "build", "--key"],
        &[
            &key.secret,
            Path::new("--out"),
            &out,
            Path::new("--binary"),
            not_ours,
        ],
    );
    assert!(
        text(&o).contains("carries no version stamp: is it a build of modbus-card?"),
        "{}",
        text(&o)
    );
    let bin = build_of(d, "2.3.4");
    let o = run(
        &["image", "build", "--replaces", "3.0.0", "--key"],
        &[
            &key.secret,
            Path::new("--out"),
            &out,
            Path::new("--binary"),
            &bin,
        ],
    );
    assert!(
        text(&o).contains("an image of 2.3.4 cannot replace only versions from 3.0.0 on"),
        "{}",
        text(&o)
    );
    let o = run(&["image", "build", "--out"], &[&out]);
    assert!(
        text(&o).contains("needs --key SECRET_KEY or --unsigned"),
        "{}",
        text(&o)
    );
    // An init script that is not a shell script is found by the card's check.
    let readme = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let img = image(d, &bin, readme, &key, "0.0.0");
    let o = run(&["image", "verify", "--key"], &[&key.public, &img]);
    assert!(
        text(&o).contains("modbus-card.init is not a shell script"),
        "{}",
        text(&o)
    );
    assert!(!out.exists(), "nothing left behind");
}
