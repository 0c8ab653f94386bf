//! A restart asked for by the reset button, as the binary handles it: in place without a
//! reboot command (the demo, a desktop), through the init system's `reboot` on the board.

mod board_fixture;
mod common;

use board_fixture::*;
use common::{wait_for, PATIENCE};
use modbus_card::pty::Pty;
use modbus_card::sim::{Sim, SimConfig};
use modbus_card::store::Store;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");

struct Run {
    child: Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Run {
    fn start(dir: &Path, sim: &Sim, extra: &[&str]) -> Run {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let button = fifo(dir, "event0");
        let log = dir.join("log");
        let child = Command::new(BIN)
            .args(["run", "--data"])
            .arg(dir.join("data"))
            .arg("--ups")
            .arg(sim.path().unwrap())
            .args(["--modbus", &format!("127.0.0.1:{port}")])
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--ssh", "127.0.0.1:0"])
            .args(["--set", &format!("button_device={}", button.display())])
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let run = Run { child, log, port };
        run.wait_log("modbus tcp listening", 1);
        run
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Until `needle` is in the log `times` times.
    fn wait_log(&self, needle: &str, times: usize) {
        wait_for(&format!("'{needle}' x{times} in the log"), || {
            self.text().matches(needle).count() >= times
        });
    }

    /// Holds the button (the FIFO the service reads) for `held`.
    fn press(&self, dir: &Path, held: Duration) {
        let mut button = std::fs::File::options()
            .write(true)
            .open(dir.join("event0"))
            .unwrap();
        button.write_all(&key(1)).unwrap();
        std::thread::sleep(held);
        button.write_all(&key(0)).unwrap();
    }

    fn serves(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    fn terminate(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}\n{}", self.text());
                return;
            }
            assert!(Instant::now() < deadline, "did not stop:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn without_a_reboot_command_the_service_restarts_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let run = Run::start(dir.path(), &sim, &[]);
    run.press(dir.path(), Duration::from_millis(1500));
    run.wait_log("restart asked by button, held 1.", 1);
    run.wait_log("modbus tcp listening", 2);
    wait_for("serving again", || run.serves());
    run.terminate();
    let kinds: Vec<String> = Store::open(&dir.path().join("data"))
        .unwrap()
        .events(100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    // Newest first: stop, the second start, the restart and the first run's stop.
    let restart = kinds.iter().position(|k| k == "restart").unwrap();
    assert_eq!(kinds[0], "stopped");
    assert!(
        kinds[..restart].iter().any(|k| k.ends_with("_boot")),
        "{kinds:?}"
    );
    assert_eq!(kinds[restart - 1], "stopped", "{kinds:?}");
}

#[test]
fn with_a_reboot_command_the_board_is_rebooted() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let marker = dir.path().join("rebooted");
    let command = format!("echo reboot > {}", marker.display());
    let run = Run::start(dir.path(), &sim, &["--reboot", &command]);
    run.press(dir.path(), Duration::from_millis(1500));
    wait_for("the reboot command run", || marker.exists());
    // The service stopped cleanly first, and waits for the init system's signal.
    run.wait_log("event: Service stopped", 1);
    assert!(!run.serves(), "still serving after asking for a reboot");
    assert!(run.text().contains("rebooting the board"));
    run.terminate();
}
