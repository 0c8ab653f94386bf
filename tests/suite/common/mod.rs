//! A card on this machine for integration tests: the simulated UPS on a pseudo-terminal,
//! the real service on a loopback port and a temporary data folder.
#![allow(dead_code)]

pub mod console;
pub mod flood;
pub mod ports;
pub mod ssh;
pub mod web;

use modbus_card::link::LinkState;
use modbus_card::pty::{NullModem, Pty};
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Fault, Sim, SimConfig};
use modbus_card::store::{EventRow, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine; tests end as soon as the condition holds.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Setup {
    pub sim_baud: u32,
    /// The simulator's fault from the start, before the card first probes it.
    pub sim_fault: Fault,
    pub settings: Vec<(&'static str, String)>,
    pub rs485: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            sim_baud: 19200,
            sim_fault: Fault::None,
            settings: vec![],
            rs485: false,
        }
    }
}

impl Setup {
    pub fn set(mut self, key: &'static str, value: impl ToString) -> Setup {
        self.settings.push((key, value.to_string()));
        self
    }
}

pub struct Card {
    pub service: Option<Service>,
    pub sim: Sim,
    pub rs485: Option<NullModem>,
    pub data: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn start(setup: Setup) -> Card {
    start_with(setup, Options::default())
}

/// A card with `base`'s options beyond those the setup gives (web listeners, MAC).
pub fn start_with(setup: Setup, base: Options) -> Card {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sim = Sim::on_pty(
        Pty::open().unwrap(),
        SimConfig {
            baud: setup.sim_baud,
            ..SimConfig::default()
        },
    )
    .unwrap();
    sim.set_fault(setup.sim_fault);
    let rs485 = setup.rs485.then(|| NullModem::open().unwrap());
    let service = Service::start(Options {
        data: data.clone(),
        ups: sim.path().unwrap().to_path_buf(),
        rs485: rs485.as_ref().map(|n| n.card_side().to_path_buf()),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: setup
            .settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..base
    })
    .unwrap();
    Card {
        service: Some(service),
        sim,
        rs485,
        data,
        _dir: dir,
    }
}

/// A card whose link has found the UPS.
pub fn start_up(setup: Setup) -> Card {
    let card = start(setup);
    card.wait_state(LinkState::Up);
    card
}

impl Card {
    pub fn service(&self) -> &Service {
        self.service.as_ref().unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.service().modbus_addr()
    }

    pub fn wait_state(&self, state: LinkState) {
        let status = &self.service().link.status;
        wait_for(&format!("link state {state:?}"), || status.state() == state);
    }

    /// The event log as stored, newest first.
    pub fn events(&self) -> Vec<EventRow> {
        Store::open(&self.data).unwrap().events(10_000).unwrap()
    }

    /// How many events of `kind` the log holds.
    pub fn count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e.kind == kind).count()
    }

    pub fn wait_event(&self, kind: &str) -> EventRow {
        let mut found = None;
        wait_for(&format!("event {kind}"), || {
            found = self.events().into_iter().find(|e| e.kind == kind);
            found.is_some()
        });
        found.unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            s.stop();
        }
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin, as a test that changes settings through the settings' door names itself.
pub fn admin_who() -> modbus_card::live::Who {
    modbus_card::live::Who {
        user: "admin".into(),
        via: "test".into(),
        role: modbus_card::accounts::Role::Admin,
    }
}

/// A loopback port for a card a test starts on a port of its own choosing. Each call in
/// this process takes a new number below the kernel's ephemeral range (32768 and up),
/// where `bind(…:0)` and outgoing connections take theirs: two tests running side by side
/// never get the same port, and no client socket takes it between this pick and the
/// card's bind. The block depends on the process ID, for test processes of other
/// checkouts on the same machine; a port someone else holds is skipped.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = 10_000 + (std::process::id() % 100) as u16 * 200;
    loop {
        let port = block + NEXT.fetch_add(1, Ordering::Relaxed) % 200;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Makes the UPS silent and times `master`'s next read: it must get exception 0x0B (the
/// gateway's target did not answer) after the serial timeout `ms`, and not much later.
pub async fn silent_ups_answered_after(
    card: &Card,
    master: &mut tokio_modbus::client::Context,
    ms: u64,
) {
    use tokio_modbus::client::Reader;
    card.sim.set_fault(Fault::Silent);
    let started = Instant::now();
    let r = master.read_holding_registers(0x1060, 1).await.unwrap();
    let took = started.elapsed();
    assert_eq!(r, Err(tokio_modbus::ExceptionCode::GatewayTargetDevice));
    assert!(took >= Duration::from_millis(ms), "{took:?}");
    assert!(took < Duration::from_millis(ms + 1000), "{took:?}");
}

/// Polls `cond` until it holds; fails the test after [`PATIENCE`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP connection from `from` (any 127/8 address) to `to`, reads bounded by [`PATIENCE`].
pub fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    let tcp = flood::connect_from(from.into(), to).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp
}
