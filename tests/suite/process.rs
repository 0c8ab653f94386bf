//! The binary as an init script runs it: start, serve, stop on SIGTERM with exit code 0,
//! and clear errors for a wrong command line or a damaged database.

use crate::common::free_port;
use modbus_card::pty::Pty;
use modbus_card::sim::{Sim, SimConfig};
use modbus_card::store::Store;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");

#[test]
fn run_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--data"])
        .arg(dir.path())
        .arg("--ups")
        .arg(sim.path().unwrap())
        .args(["--modbus", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .args(["--ssh", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log says where it listens, and when the UPS is found.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let mut addr = None;
    let mut detected = false;
    while !(addr.is_some() && detected) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "service did not come up"
        );
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("modbus tcp listening on ").nth(1) {
            addr = Some(rest.trim().to_string());
        }
        detected |= line.contains("UPS detected at 19200 baud");
    }
    let mut s = std::net::TcpStream::connect(addr.unwrap()).unwrap();
    use std::io::{Read, Write};
    s.write_all(&[0, 1, 0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1])
        .unwrap();
    let mut answer = [0u8; 11];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..9], &[0, 1, 0, 0, 0, 5, 1, 3, 2]);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Drain the rest of the log so the pipe never blocks the child.
    for _ in lines {}
    let events = Store::open(dir.path()).unwrap().events(100).unwrap();
    assert_eq!(events[0].kind, "stopped");
    assert!(events.iter().any(|e| e.kind == "tcp_closed"));
}

#[test]
fn bad_command_lines_say_what_is_wrong() {
    let out = Command::new(BIN)
        .args(["run", "--data", "/tmp/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ups"));
    let out = Command::new(BIN).args(["frobnicate"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "--ups",
            "/dev/null",
            "--set",
            "rs485_slave=200",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("174"));
}

#[test]
fn a_damaged_database_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(modbus_card::store::FILE_NAME);
    std::fs::write(&db, vec![0x5Au8; 8192]).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--ups", "/dev/null", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x5Au8; 8192]);
}

#[test]
fn settings_are_stored_checked_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(["settings", "--data"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("serial_timeout_ms=500\n"), "{shown}");
    assert!(shown.contains("poll_rate_s=10\n"), "{shown}");
    // Detection may settle on 9600 baud, where the longest exchange needs about 0.3 s.
    assert!(
        shown.contains("# lowest sane serial_timeout_ms at 9600 baud: 310"),
        "{shown}"
    );

    let out = run(&["rs485_slave=17", "modbus_timeout_s=0"]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("rs485_slave=17\n") && shown.contains("modbus_timeout_s=0\n"));

    // Refused values say why and change nothing.
    let out = run(&["serial_timeout_ms=50"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowest sane timeout"));
    let shown = String::from_utf8_lossy(&run(&[]).stdout).into_owned();
    assert!(shown.contains("serial_timeout_ms=500\n") && shown.contains("rs485_slave=17\n"));
}

/// A change from the command line passes the settings' door: the same checks (whoever
/// stands at the card may change what only an admin may) and the same words in the log.
#[test]
fn settings_changed_from_the_command_line_are_logged_as_the_door_logs_them() {
    let dir = tempfile::tempdir().unwrap();
    let settings = |args: &[&str]| {
        Command::new(BIN)
            .args(["settings", "--data"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = settings(&["poll_rate_s=7", "http_enabled=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = settings(&["poll_rate_s=2", "rs485_baud=4800"]);
    assert!(!out.status.success());
    let messages: Vec<String> = modbus_card::store::Store::open(dir.path())
        .unwrap()
        .events(100)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(
        messages.contains(&"Polling rate (s) changed from 10 to 7 (command line)".to_string()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"HTTP changed from true to false (command line)".to_string()),
        "{messages:?}"
    );
    // The refused change is not logged.
    assert!(
        !messages.iter().any(|m| m.contains("from 7 to 2")),
        "{messages:?}"
    );
}

#[test]
fn the_configuration_file_goes_out_and_back_in_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let card = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    assert!(card(&["settings"]).status.success());
    let settings = |pairs: &[&str]| {
        let mut args = vec!["settings"];
        args.extend_from_slice(pairs);
        assert!(card(&args).status.success());
    };
    settings(&["poll_rate_s=7", "ntp_server=pool.ntp.org"]);
    let out = card(&["config", "export"]);
    assert!(out.status.success());
    let file = String::from_utf8(out.stdout).unwrap();
    // An independent TOML reader sees every setting with its value.
    let table: toml::Table = file.parse().unwrap();
    assert_eq!(table["format"].as_integer(), Some(1));
    assert_eq!(table["poll_rate_s"].as_integer(), Some(7));
    assert_eq!(table["ntp_server"].as_str(), Some("pool.ntp.org"));
    assert_eq!(table["https_enabled"].as_bool(), Some(true));
    assert_eq!(table.len(), modbus_card::settings::DEFS.len() + 1);

    // Back into a card with other settings: they become the file's.
    let path = dir.path().join("card.toml");
    std::fs::write(&path, &file).unwrap();
    settings(&["poll_rate_s=3"]);
    let import = |extra: &[&str]| {
        let mut args = vec!["config", "import"];
        args.extend_from_slice(extra);
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--data").arg(&data);
        cmd.output().unwrap()
    };
    let p = path.to_str().unwrap();
    let out = import(&["--dry-run", p]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("poll_rate_s: 3 -> 7"));
    assert!(String::from_utf8_lossy(&card(&["settings"]).stdout).contains("poll_rate_s=3\n"));
    assert!(import(&[p]).status.success());
    assert!(String::from_utf8_lossy(&card(&["settings"]).stdout).contains("poll_rate_s=7\n"));
    let out = import(&[p]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to change"));

    // A broken file is refused whole, with its line, and the exit status says so.
    let broken = file
        .replace("poll_rate_s = 7", "poll_rate_s = 2")
        .replace("rs485_baud = 9600", "rs485_baud = 4800");
    std::fs::write(&path, broken).unwrap();
    let out = import(&[p]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rs485_baud") && err.contains("line "), "{err}");
    assert!(String::from_utf8_lossy(&card(&["settings"]).stdout).contains("poll_rate_s=7\n"));
    // Each change is in the event log, with who made it.
    let events = modbus_card::store::Store::open(&data)
        .unwrap()
        .events(100)
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.message == "Polling rate (s) changed from 3 to 7 (command line)"));
    assert!(events.iter().any(|e| e.kind == "configuration_loaded"));
}

#[test]
fn the_init_script_starts_and_stops_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/init/modbus-card");
    let run = |action: &str| {
        Command::new("sh")
            .arg(script)
            .arg(action)
            .env("DAEMON", BIN)
            .env("DATA", dir.path().join("data"))
            .env("UPS", sim.path().unwrap())
            .env("RS485", "")
            .env("MODBUS", format!("127.0.0.1:{port}"))
            .env("HTTP", "127.0.0.1:0")
            .env("HTTPS", "127.0.0.1:0")
            .env("SSH", "127.0.0.1:0")
            .env("PIDFILE", dir.path().join("pid"))
            .env("LOG", dir.path().join("log"))
            .output()
            .unwrap()
    };
    let out = run("start");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(run("status").status.success());
    // Serving.
    let started = Instant::now();
    let mut answered = false;
    while !answered && started.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&[0, 1, 0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1])
                .unwrap();
            let mut answer = [0u8; 9];
            answered = s.read_exact(&mut answer).is_ok() && answer[7] == 3;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered, "the service started by the script did not answer");
    let out = run("stop");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    assert_eq!(run("status").status.code(), Some(3));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("event: Service stopped"), "{log}");

    // A wrong serial port is reported by the script itself.
    let out = Command::new("sh")
        .arg(script)
        .arg("start")
        .env("DAEMON", BIN)
        .env("DATA", dir.path().join("data"))
        .env("UPS", "/nonexistent/tty")
        .env("RS485", "")
        .env("PIDFILE", dir.path().join("pid"))
        .env("LOG", dir.path().join("log"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("failed to start") && said.contains("/nonexistent/tty"),
        "{said}"
    );
}

/// A log nobody reads (a full pipe, a stalled disk) must not stall the gateway: the serial
/// threads hand log lines over without waiting, and lines that do not fit are counted.
#[test]
fn a_stalled_log_never_stalls_the_gateway() {
    use modbus_card::sim::Fault;
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--baud",
            "19200",
            "--modbus",
            &format!("127.0.0.1:{port}"),
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--ssh",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path())
        .arg("--ups")
        .arg(sim.path().unwrap())
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held but never read until the end: the pipe fills after a few hundred lines.
    let mut stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let ask = |s: &mut std::net::TcpStream, tid: u16| -> u8 {
        let mut req = tid.to_be_bytes().to_vec();
        req.extend_from_slice(&[0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1]);
        s.write_all(&req).unwrap();
        let mut head = [0u8; 8];
        s.read_exact(&mut head).unwrap();
        let mut rest = vec![0u8; usize::from(head[5]) - 2];
        s.read_exact(&mut rest).unwrap();
        if head[7] & 0x80 != 0 {
            rest[0]
        } else {
            0
        }
    };
    let started = Instant::now();
    let mut s = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "service did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Not found yet: 0x0B at once.
    while ask(&mut s, 0) == 0x0B {
        assert!(started.elapsed() < Duration::from_secs(20), "UPS not found");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every refused answer is a debug line (and once the UPS counts as lost, every request
    // answered at once): far more than the pipe holds.
    sim.set_fault(Fault::BadCrc);
    for tid in 1..=1500u16 {
        assert_eq!(ask(&mut s, tid), 0x0B, "request {tid}");
    }
    sim.set_fault(Fault::None);
    let restoring = Instant::now();
    while ask(&mut s, 2000) != 0 {
        assert!(
            restoring.elapsed() < Duration::from_secs(20),
            "UPS not back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Now read the log: the backlog drains and the count of what was dropped comes out.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            log.push_str(&String::from_utf8_lossy(&chunk[..n]));
            if log.contains("log lines dropped") {
                let _ = tx.send(());
            }
        }
        log
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the log never said it dropped lines");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert!(child.0.wait().unwrap().success());
    let log = reader.join().unwrap();
    assert!(
        log.contains("event: Service stopped"),
        "{}",
        &log[log.len().saturating_sub(500)..]
    );
}

/// A service started by a test that fails half-way is not left running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Password hashes, keys and the event log are the service's alone: the data folder is
/// 0700 and the database with its journal files 0600, on a first start and on a folder an
/// older firmware left open.
#[test]
fn the_data_folder_is_the_services_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let fresh = root.path().join("fresh");
    let old = root.path().join("old");
    drop(Store::open(&old).unwrap());
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(old.join("card.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(mode(&old.join("card.db")), 0o644);
    for data in [fresh, old] {
        let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
        let mut child = Command::new(BIN)
            .args(["run", "--data"])
            .arg(&data)
            .arg("--ups")
            .arg(sim.path().unwrap())
            .args(["--modbus", "127.0.0.1:0", "--ssh", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = Instant::now();
        while !lines
            .next()
            .unwrap()
            .unwrap()
            .contains("modbus tcp listening on")
        {
            assert!(started.elapsed() < Duration::from_secs(20), "no start");
        }
        // While it runs, with the write-ahead log open.
        assert_eq!(mode(&data), 0o700, "{}", data.display());
        for file in ["card.db", "card.db-wal", "card.db-shm"] {
            assert_eq!(
                mode(&data.join(file)),
                0o600,
                "{file} in {}",
                data.display()
            );
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
        for _ in lines {}
    }
}
