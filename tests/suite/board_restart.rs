//! A restart asked for by the reset button, as the binary handles it: in place without a
//! reboot command (the demo, a desktop), through the init system's `reboot` on the board.

use crate::board_fixture;
use crate::common;

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
        let port = crate::common::free_port();
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
    run.wait_log("rebooting the board", 1);
    run.terminate();
}

/// The HTTPS port the run's log says it listens on.
fn https_port(run: &Run) -> u16 {
    run.wait_log("https listening on", 1);
    let text = run.text();
    let line = text
        .lines()
        .find(|l| l.contains("https listening on"))
        .unwrap();
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// `raw` over TLS to 127.0.0.1:`port`, trusting `root`: all that comes back, and whether
/// it ended with TLS's close_notify (a clean end) rather than a cut connection.
fn tls_exchange(port: u16, root: &[u8], raw: &[u8]) -> (String, bool) {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use std::io::Read;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "127.0.0.1".try_into().unwrap())
            .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(raw).unwrap();
    let mut got = vec![];
    let clean = tls.read_to_end(&mut got).is_ok();
    (String::from_utf8_lossy(&got).into_owned(), clean)
}

/// The confirmed Reboot of the Control page as `admin`'s browser sends it, as raw bytes.
fn reboot_request(admin: &mut common::web::Browser, port: u16) -> String {
    admin.get("/control");
    let body = format!("csrf={}&confirm=yes", admin.csrf);
    let cookies: Vec<String> = admin
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "POST /control/reboot HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Origin: https://127.0.0.1:{port}\r\nCookie: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        cookies.join("; "),
        body.len()
    )
}

/// A reboot asked for on the Control page is answered first: the whole page, ended by
/// TLS's close_notify, reaches the browser; the reboot command runs after, within 2 s.
#[test]
fn a_reboot_from_the_control_page_is_answered_before_the_card_restarts() {
    use common::web::{Browser, DEFAULT_PASSWORD, GOOD, MAC};
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let marker = dir.path().join("rebooted");
    let command = format!("date +%s.%N > {}", marker.display());
    let run = Run::start(dir.path(), &sim, &["--reboot", &command, "--mac", MAC]);
    let port = https_port(&run);
    let root = std::fs::read(dir.path().join("data/tls/ca.pem")).unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let mut admin = Browser::new(&base, Some(&root));
    admin.login("admin", DEFAULT_PASSWORD);
    admin.change_password(DEFAULT_PASSWORD, GOOD);
    assert_eq!(admin.login("admin", GOOD).location(), "/");
    let (answer, clean) = tls_exchange(port, &root, reboot_request(&mut admin, port).as_bytes());
    let answered = std::time::SystemTime::now();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        clean,
        "the answer was cut, not closed with close_notify: {answer}"
    );
    let (head, page) = answer.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(page.len(), length, "the whole page");
    assert!(page.contains("The card is restarting"), "{page}");
    wait_for("the reboot command run", || {
        std::fs::read_to_string(&marker).is_ok_and(|t| !t.trim().is_empty())
    });
    let called: f64 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let answered = answered
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Generous for a loaded machine; the card itself waits at most 1 s for its answers.
    assert!(
        called - answered < 5.0,
        "the reboot came {:.2} s after the answer",
        called - answered
    );
    run.wait_log("event: Service stopped", 1);
    run.terminate();
}

/// The demo restarts in place: its Reboot page, too, reaches the browser whole before the
/// service stops, and the service is back.
#[test]
fn the_demos_reboot_page_is_answered_before_it_restarts_in_place() {
    use common::web::{Browser, GOOD};
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Fixed ports, as the demo's own: a restart listens where it did.
    let at = |p: u16| format!("127.0.0.1:{p}");
    let mut child = Command::new(BIN)
        .args(["demo", "--data"])
        .arg(&data)
        .args(["--modbus", &at(common::free_port())])
        .args(["--http", &at(common::free_port())])
        .args(["--https", &at(common::free_port())])
        .args(["--ssh", &at(common::free_port())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next_line = |want: &str| -> String {
        loop {
            let line = rx.recv_timeout(PATIENCE).expect("the demo's output");
            if line.contains(want) {
                return line;
            }
        }
    };
    let web = next_line("https://127.0.0.1:");
    let port: u16 = web
        .split("https://127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let first = next_line("first password");
    let password = first
        .split("first password ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let root = std::fs::read(data.join("tls/ca.pem")).unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let mut admin = Browser::new(&base, Some(&root));
    admin.login("admin", &password);
    admin.change_password(&password, GOOD);
    assert_eq!(admin.login("admin", GOOD).location(), "/");
    let (answer, clean) = tls_exchange(port, &root, reboot_request(&mut admin, port).as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(clean, "cut, not closed with close_notify: {answer}");
    assert!(answer.contains("The card is restarting"), "{answer}");
    next_line("the service restarted");
    // Back: the same port serves the login again.
    wait_for("the demo's pages back", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(Browser::new(&base, Some(&root)).get("/login").status, 200);
    let _ = child.kill();
    let _ = child.wait();
}
