//! init/modbus-card as the board's init system uses it: start, status, a restart from the
//! reset button that reboots through REBOOT, stop; a stale PID file; and the example
//! /etc/default/modbus-card it reads.

use crate::board_fixture;
use crate::common;

use board_fixture::*;
use common::wait_for;
use modbus_card::pty::Pty;
use modbus_card::sim::{Sim, SimConfig};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/init/modbus-card");
const DEFAULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/init/default");

fn init(dir: &Path, ups: &Path, action: &str) -> Output {
    let button = dir.join("event0");
    Command::new("sh")
        .arg(SCRIPT)
        .arg(action)
        .env("DEFAULTS", "/nonexistent")
        .env("DAEMON", BIN)
        .env("DATA", dir.join("data"))
        .env("UPS", ups)
        .env("RS485", "")
        .env("MODBUS", "127.0.0.1:0")
        .env("HTTP", "127.0.0.1:0")
        .env("HTTPS", "127.0.0.1:0")
        .env("SSH", "127.0.0.1:0")
        .env("PIDFILE", dir.join("pid"))
        .env("LOG", dir.join("log"))
        .env(
            "REBOOT",
            format!("echo rebooted > {}", dir.join("rebooted").display()),
        )
        .env(
            "OPTIONS",
            format!("--set button_device={}", button.display()),
        )
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn start_status_reboot_by_the_button_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let ups = sim.path().unwrap();
    let button = fifo(dir.path(), "event0");

    // A PID file left by a crash, naming a process that is not the service.
    std::fs::write(dir.path().join("pid"), std::process::id().to_string()).unwrap();
    let out = init(dir.path(), ups, "status");
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));

    let out = init(dir.path(), ups, "start");
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("modbus-card started (pid"));
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    let out = init(dir.path(), ups, "status");
    assert!(out.status.success());
    assert_eq!(
        said(&out).trim(),
        format!("modbus-card running (pid {})", pid.trim())
    );
    let out = init(dir.path(), ups, "start");
    assert!(said(&out).contains("already running"), "{}", said(&out));

    // The reset button held 1.5 s: the service stops cleanly and asks for a reboot.
    let mut b = std::fs::File::options().write(true).open(&button).unwrap();
    b.write_all(&key(1)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    b.write_all(&key(0)).unwrap();
    wait_for("the reboot command", || {
        dir.path().join("rebooted").exists()
    });
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("event: Restart (button, held 1."), "{log}");
    assert!(log.contains("event: Service stopped"), "{log}");

    // The init system's stop (here, in place of the reboot's).
    let out = init(dir.path(), ups, "stop");
    assert!(out.status.success());
    assert!(said(&out).contains("modbus-card stopped"));
    assert_eq!(init(dir.path(), ups, "status").status.code(), Some(3));
    assert!(!dir.path().join("pid").exists());
}

#[test]
fn the_example_defaults_are_plain_sh_for_the_board() {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". {DEFAULTS}; echo \"$UPS|$RS485|$NETWORK_SCRIPT|$REBOOT|$SYSTEM_CLOCK|$OPTIONS\""
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        said(&out).trim(),
        "/dev/ttyS1|/dev/ttyS2|/usr/lib/modbus-card/modbus-card-network|reboot|yes|\
         --set button_device=/dev/input/event0 --set watchdog_device=/dev/watchdog"
    );
    // Every setting named there is one the service knows.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for kv in [
        "button_device=/dev/input/event0",
        "watchdog_device=/dev/watchdog",
    ] {
        let out = Command::new(BIN)
            .args(["settings", "--data"])
            .arg(&data)
            .arg(kv)
            .output()
            .unwrap();
        assert!(out.status.success(), "{kv}: {:?}", out);
    }
}
