//! The service as the benchmarks run it: the release binary's `modbus-card run`, its data in
//! a new folder, on loopback ports the kernel picks, its log read for where each service
//! listens; stopped with SIGTERM as the init script stops it.
#![allow(dead_code)]

use modbus_card::pty::Pty;
use modbus_card::sim::{Sim, SimConfig};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
/// The card's MAC: its default admin password is [`DEFAULT`].
pub const MAC: &str = "00:1a:2b:3c:4d:5e";
pub const DEFAULT: &str = "3C4D5E";

pub struct Card {
    pub child: Child,
    dir: tempfile::TempDir,
    /// Each service's name as its log line says it ("modbus tcp", "http", "https",
    /// "ssh") and where it listens.
    listening: Vec<(String, SocketAddr)>,
}

impl Card {
    /// `modbus-card run` on `ups` at 19200 baud, every service on a loopback port, then
    /// `extra` options; returns once the UPS is found and each of `wait_for` listens.
    pub fn start<S: AsRef<OsStr>>(ups: &Path, extra: &[S], wait_for: &[&str]) -> Card {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["run", "--data"])
            .arg(dir.path().join("data"))
            .arg("--ups")
            .arg(ups)
            .args(["--baud", "19200", "--modbus", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--ssh", "127.0.0.1:0", "--mac", MAC])
            .args(extra)
            // CARD_RUST_LOG=…,modbus_card::link=debug and CARD_LOG=FILE keep the
            // service's whole log of a run, to look into what it met.
            .env(
                "RUST_LOG",
                std::env::var("CARD_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut listening, mut detected) = (Vec::<(String, SocketAddr)>::new(), false);
        while !detected
            || wait_for
                .iter()
                .any(|w| !listening.iter().any(|(n, _)| n == w))
        {
            let line = lines.next().expect("service log ended").unwrap();
            // "[… INFO module] https listening on 127.0.0.1:40123"
            if let Some((head, addr)) = line.split_once(" listening on ") {
                let name = head.rsplit_once("] ").map_or(head, |(_, n)| n);
                if let Ok(addr) = addr.trim().parse() {
                    listening.push((name.to_owned(), addr));
                }
            }
            detected |= line.contains("UPS detected");
        }
        // Errors the run provokes are echoed, for the record; the rest is drained (or kept
        // in CARD_LOG).
        let mut keep = std::env::var_os("CARD_LOG").and_then(|f| std::fs::File::create(f).ok());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains(" ERROR ") {
                    eprintln!("service: {line}");
                }
                if let Some(f) = &mut keep {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        Card {
            child,
            dir,
            listening,
        }
    }

    /// Where `service` ("modbus tcp", "http", "https", "ssh") listens.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|(n, _)| n == service)
            .unwrap_or_else(|| panic!("{service} does not listen"))
            .1
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGTERM, as the init script stops it; true if it ended cleanly.
    pub fn stop(mut self) -> bool {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for Card {
    /// A run that fails midway does not leave its service behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lets this process hold many sockets (attackers, waiting connections).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A simulated UPS on a pseudo-terminal at 19200 baud, the rate [`Card::start`] gives.
pub fn simulated_ups() -> Sim {
    Sim::on_pty(
        Pty::open().unwrap(),
        SimConfig {
            baud: 19200,
            ..SimConfig::default()
        },
    )
    .unwrap()
}
