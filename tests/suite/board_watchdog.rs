//! The watchdog as the board sees it: a FIFO standing for /dev/watchdog, fed by the real
//! service while every thread makes progress, no longer fed while one is stalled on
//! purpose (the store thread, by a test holding the database's write lock), disarmed by
//! the magic close on a clean stop only; and the reason logged at the next start.

use crate::board_fixture;
use crate::common;

use board_fixture::*;
use common::{wait_for, PATIENCE};
use modbus_card::board::watchdog::MARKER;
use modbus_card::link::LinkState;
use modbus_card::pty::Pty;
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Sim, SimConfig};
use modbus_card::store::{Store, FILE_NAME};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");

/// Holds the database's write lock, as a hung writer elsewhere would: the store thread
/// then waits in its write.
fn lock_database(data: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(data.join(FILE_NAME)).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

/// Until nothing has come from the service for `quiet`.
fn wait_unfed(log: &FifoLog, quiet: Duration) {
    wait_for("the watchdog no longer fed", || {
        log.last_at().is_some_and(|t| t.elapsed() > quiet)
    });
}

#[test]
fn fed_while_healthy_starved_by_a_stalled_thread_disarmed_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wd = fifo(dir.path(), "watchdog");
    let log = FifoLog::open(&wd);
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let service = Service::start(Options {
        data: data.clone(),
        ups: sim.path().unwrap().to_owned(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: vec![("watchdog_device".into(), wd.display().to_string())],
        stall_limit: Some(Duration::from_secs(3)),
        ..Options::default()
    })
    .unwrap();
    wait_for("UPS found", || service.link.status.state() == LinkState::Up);
    let names = service.health.threads();
    for t in ["store", "ups link", "modbus tcp"] {
        assert!(names.iter().any(|n| n == t), "{t} not watched: {names:?}");
    }

    // Healthy: fed about once a second.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let fed = log.since(t0);
    assert!(fed.len() >= 2, "fed {} times in 4 s", fed.len());
    assert!(fed.iter().all(|&b| b != b'V'), "disarmed while running");

    // The store thread stalls: it has an event to write and cannot get the lock.
    let lock = lock_database(&data);
    let _session = TcpStream::connect(service.modbus_addr()).unwrap();
    wait_unfed(&log, Duration::from_millis(2500));
    let marker = std::fs::read_to_string(data.join(MARKER)).unwrap();
    assert!(
        marker.contains("thread 'store' made no progress"),
        "{marker}"
    );
    // The gateway itself goes on meanwhile: only the watchdog reacts.
    assert_eq!(service.link.status.state(), LinkState::Up);

    // It recovers before the board resets: fed again, the marker gone.
    drop(lock);
    let t1 = Instant::now();
    wait_for("fed again", || !log.since(t1).is_empty());
    wait_for("marker removed", || !data.join(MARKER).exists());

    // A clean stop: the magic close, then the device closed.
    service.stop();
    wait_for("device closed", || !log.closes.lock().unwrap().is_empty());
    assert_eq!(log.received().last().map(|b| b.1), Some(b'V'));
}

#[test]
fn a_service_dropped_without_stop_ends_its_threads_and_leaves_the_watchdog_armed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wd = fifo(dir.path(), "watchdog");
    let log = FifoLog::open(&wd);
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let service = Service::start(Options {
        data: data.clone(),
        ups: sim.path().unwrap().to_owned(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: vec![("watchdog_device".into(), wd.display().to_string())],
        ..Options::default()
    })
    .unwrap();
    wait_for("fed", || !log.received().is_empty());
    let modbus = service.modbus_addr();

    // Not a clean stop (a panic unwinding, an error returned past it): the threads end,
    // the device is closed, but without the magic close the board still resets.
    drop(service);
    wait_for("device closed", || !log.closes.lock().unwrap().is_empty());
    assert!(log.received().iter().all(|b| b.1 != b'V'), "disarmed");
    assert!(
        TcpStream::connect(modbus).is_err(),
        "Modbus TCP still listening"
    );
}

/// The service as the init script runs it, its log in a file.
fn run(data: &Path, ups: &Path, wd: &Path, log: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["run", "--stall-limit", "2", "--data"])
        .arg(data)
        .arg("--ups")
        .arg(ups)
        .args(["--modbus", &format!("127.0.0.1:{port}")])
        .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .args(["--ssh", "127.0.0.1:0"])
        .args(["--set", &format!("watchdog_device={}", wd.display())])
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

fn connect(port: u16) -> TcpStream {
    let start = Instant::now();
    loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            return s;
        }
        assert!(start.elapsed() < PATIENCE, "service not listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_reason_of_a_watchdog_reset_is_logged_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wd = fifo(dir.path(), "watchdog");
    let fifo_log = FifoLog::open(&wd);
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let port = crate::common::free_port();
    let first_log = dir.path().join("first.log");
    let mut first = run(&data, sim.path().unwrap(), &wd, &first_log, port);
    let session = connect(port);
    wait_for("fed", || fifo_log.last_at().is_some());
    drop(session);

    let lock = lock_database(&data);
    let _session = connect(port);
    wait_for("the stall recorded", || data.join(MARKER).exists());
    // The board resets: the process ends at once, without a clean stop.
    first.kill().unwrap();
    first.wait().unwrap();
    drop(lock);
    let text = std::fs::read_to_string(&first_log).unwrap();
    assert!(text.contains("watchdog no longer fed"), "{text}");
    assert!(
        fifo_log.received().iter().all(|b| b.1 != b'V'),
        "a reset run must not disarm"
    );

    let second_log = dir.path().join("second.log");
    let mut second = run(&data, sim.path().unwrap(), &wd, &second_log, port);
    drop(connect(port));
    let events = {
        let mut found = None;
        wait_for("the reset logged", || {
            let rows = Store::open(&data).unwrap().events(100).unwrap();
            found = rows.into_iter().find(|e| e.kind == "watchdog_reset");
            found.is_some()
        });
        found.unwrap()
    };
    assert!(
        events
            .message
            .starts_with("Restart by watchdog: thread 'store' made no progress for "),
        "{}",
        events.message
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert!(second.wait().unwrap().success());
    let text = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        text.contains("the previous run stopped feeding the watchdog (thread 'store'"),
        "{text}"
    );
    assert!(!data.join(MARKER).exists());
    wait_for("the magic close", || {
        fifo_log.received().last().map(|b| b.1) == Some(b'V')
    });
}
