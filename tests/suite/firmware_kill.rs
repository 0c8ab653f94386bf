//! A kill -9 at each step of an install leaves a card that starts on a good version.
//!
//! The install runs in a child process (this test binary, running the ignored test
//! `install_then_die`), which sends itself SIGKILL when the install reaches the step
//! asked for: halfway through the upload, at the check, halfway through writing the
//! binary, with the files written, just before and just after switching `current`; and
//! the state a kill between putting the old slot aside and the new one in its place
//! leaves. Then the card is started by its init script, as after
//! a power cut, and must run version 1.0.0, or 1.1.0 on trial which it then keeps.

use crate::firmware_fixture;

use firmware_fixture::*;
use modbus_card::event::Event;
use modbus_card::firmware::{Step, Upgrader};
use std::process::Command;

/// The child: installs `FW_IMAGE` into `FW_ROOT` and dies at `FW_DIE_AT`.
#[test]
#[ignore = "the child process of kill_9_at_each_step_of_the_install"]
fn install_then_die() {
    let get = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let (root, data, image) = (get("FW_ROOT"), get("FW_DATA"), get("FW_IMAGE"));
    let at = get("FW_DIE_AT");
    let die = || {
        nix::sys::signal::raise(nix::sys::signal::SIGKILL).unwrap();
    };
    let size = std::fs::metadata(&image).unwrap().len();
    let upgrader = Upgrader::new(root.as_ref(), data.as_ref(), Box::new(|_: Event| {}));
    let mut file = std::fs::File::open(&image).unwrap();
    let mut total_written = None;
    upgrader
        .upgrade(
            &mut file,
            Some(size),
            "test",
            &mut |step| match (at.as_str(), step) {
                ("receiving", Step::Receiving { bytes }) if bytes > size / 2 => die(),
                ("verifying", Step::Verifying) => die(),
                ("writing-half", Step::Writing { done, total }) if done > total / 4 => die(),
                ("written", Step::Writing { done, total }) if done == total => {
                    total_written = Some(total)
                }
                ("written", Step::Replacing) if total_written.is_some() => die(),
                ("switching", Step::Switching) => die(),
                _ => {}
            },
        )
        .unwrap();
    assert_eq!(at, "installed", "the install went past {at}");
    die();
}

fn kill_at(point: &str) {
    let card = Card::install(60);
    let image = card.image_of(NEW, OLD);
    // Slot b holds a version from before (installed, then rolled back), so the install
    // has a slot to replace.
    let o = Command::new(BIN)
        .args(["upgrade", "--no-restart", "--firmware"])
        .arg(&card.root)
        .arg("--data")
        .arg(&card.data)
        .arg(card.image_of("1.0.1", OLD))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(BIN)
        .args(["firmware", "rollback", "--reason", "test", "--firmware"])
        .arg(&card.root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(card.root.join("rolled-back")).unwrap();

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "firmware_kill::install_then_die",
            "--ignored",
            "--nocapture",
        ])
        .env("FW_ROOT", &card.root)
        .env("FW_DATA", &card.data)
        .env("FW_IMAGE", &image)
        .env(
            "FW_DIE_AT",
            if point == "replacing" {
                "written"
            } else {
                point
            },
        )
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        child.status.signal(),
        Some(9),
        "{point}: the child did not die there: {}",
        text(&child)
    );

    if point == "replacing" {
        // A kill between the two renames: the old slot aside, the new one not yet there.
        std::fs::rename(card.root.join("b"), card.root.join(".b.old")).unwrap();
    }
    // The card starts as after a power cut, on a good version.
    let o = card.service("start");
    assert!(o.status.success(), "{point}: {}", text(&o));
    let switched = matches!(point, "installed");
    if switched {
        card.wait_running(NEW, true);
    } else {
        card.wait_running(OLD, true);
        assert_eq!(card.link("current").as_deref(), Some("a"), "{point}");
    }
    // And the next upgrade goes through: nothing left behind stands in its way.
    if !switched {
        let o = card.upgrade(&image);
        assert!(o.status.success(), "{point}: {}", text(&o));
        card.wait_running(NEW, true);
    }
    let leftovers: Vec<String> = std::fs::read_dir(&card.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n == "incoming")
        .collect();
    assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
}

#[test]
fn kill_9_while_receiving_or_verifying() {
    kill_at("receiving");
    kill_at("verifying");
}

#[test]
fn kill_9_while_writing_the_slot() {
    kill_at("writing-half");
    kill_at("written");
}

#[test]
fn kill_9_while_replacing_the_slot() {
    kill_at("replacing");
}

#[test]
fn kill_9_around_the_switch() {
    kill_at("switching");
    kill_at("installed");
}
