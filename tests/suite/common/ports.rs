//! The card's two Modbus ports as a master reaches them: plain Modbus TCP, and
//! Modbus/TCP Security (TLS with a client certificate made by `modbus-card cert client`).
//! A test written against plain TCP runs on the secure port through [`Relay`]: a loopback
//! listener whose every connection is carried to the card's port 802 inside TLS, byte for
//! byte, and closed when the card closes its end. The card is the real service on its
//! real port; the relay only speaks TLS on the master's behalf.
#![allow(dead_code)]

use super::{start_with, wait_for, Card, Setup};
use modbus_card::link::LinkState;
use modbus_card::service::Options;
use modbus_card::tcp::Sessions;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// `modbus-card cert client --data DATA --role ROLE --out OUT`, as an operator runs it.
pub fn make_client(data: &Path, role: &str, out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_modbus-card"))
        .args(["cert", "client", "--data"])
        .arg(data)
        .args(["--role", role, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "cert client failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A key and certificate with `role` from the card's own client CA.
pub fn identity(card: &Card, role: &str) -> PathBuf {
    let out = card.data.parent().unwrap().join(format!("master-{role}"));
    make_client(&card.data, role, &out);
    out
}

/// The master's TLS settings: the card's certificate trusted, `identity` shown if given.
pub fn config(
    card: &Card,
    identity: Option<&Path>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(card.data.join("mbtls/server.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(dir) => {
            let chain = CertificateDer::pem_file_iter(dir.join("client.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(dir.join("client-key.pem")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// Plain connections on `addr`, each carried inside TLS to the card.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

/// How long one relayed connection may live: longer than any test.
const RELAY_LIFETIME: Duration = Duration::from_secs(300);

impl Relay {
    pub fn start(card: SocketAddr, config: Arc<ClientConfig>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for plain in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(plain) = plain else { continue };
                let config = config.clone();
                std::thread::spawn(move || carry(plain, card, config));
            }
        });
        Relay { addr, stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: both ends closed as soon as either closes or fails.
fn carry(plain: TcpStream, card: SocketAddr, config: Arc<ClientConfig>) {
    let Ok(sock) = TcpStream::connect(card) else {
        return;
    };
    let _ = plain.set_nodelay(true);
    let _ = sock.set_nodelay(true);
    let name = ServerName::try_from("modbus-card").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let _ = pipe(&plain, &sock, conn);
    let _ = plain.shutdown(Shutdown::Both);
    let _ = sock.shutdown(Shutdown::Both);
}

fn pipe(mut plain: &TcpStream, mut sock: &TcpStream, mut conn: ClientConnection) -> io::Result<()> {
    let until = Instant::now() + RELAY_LIFETIME;
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        let mut fds = [
            PollFd::new(plain.as_fd(), PollFlags::POLLIN),
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, PollTimeout::from(1000u16))?;
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let (from_master, from_card) = (ready(&fds[0]), ready(&fds[1]));
        if from_card {
            if conn.read_tls(&mut sock)? == 0 {
                return Ok(());
            }
            // A refusal (an alert) ends the connection as the card ended it.
            let state = conn.process_new_packets().map_err(io::Error::other)?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let mut answer = vec![0u8; n];
                conn.reader().read_exact(&mut answer)?;
                plain.write_all(&answer)?;
            }
            if state.peer_has_closed() {
                return Ok(());
            }
        }
        if from_master {
            let n = plain.read(&mut buf)?;
            if n == 0 {
                conn.send_close_notify();
                while conn.wants_write() {
                    conn.write_tls(&mut sock)?;
                }
                return Ok(());
            }
            conn.writer().write_all(&buf[..n])?;
        }
    }
    Ok(())
}

/// Which of the card's Modbus ports a test talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Plain Modbus TCP.
    Plain,
    /// Modbus/TCP Security, as a master with a certificate of role `operate`.
    Tls,
}

/// A card with the port a test talks to.
pub struct Served {
    pub card: Card,
    pub port: Port,
    relay: Option<Relay>,
}

impl Port {
    /// A card serving this port.
    pub fn start(self, setup: Setup) -> Served {
        let (setup, mbtls) = match self {
            Port::Plain => (setup, None),
            Port::Tls => (
                setup.set("mbtls_enabled", "true"),
                Some("127.0.0.1:0".parse().unwrap()),
            ),
        };
        let card = start_with(
            setup,
            Options {
                mbtls,
                ..Options::default()
            },
        );
        let relay = (self == Port::Tls).then(|| {
            let id = identity(&card, "operate");
            let addr = card.service().mbtls_addr().unwrap();
            Relay::start(addr, config(&card, Some(&id), BOTH))
        });
        Served {
            card,
            port: self,
            relay,
        }
    }

    /// A card serving this port, its UPS found.
    pub fn start_up(self, setup: Setup) -> Served {
        let served = self.start(setup);
        served.card.wait_state(LinkState::Up);
        served
    }

    /// The kind of event this port logs for plain Modbus TCP's `kind` (`tcp_opened`,
    /// `tcp_closed`, `tcp_refused`).
    pub fn kind(self, kind: &'static str) -> &'static str {
        match (self, kind) {
            (Port::Plain, _) => kind,
            (Port::Tls, "tcp_opened") => "mbtls_opened",
            (Port::Tls, "tcp_closed") => "mbtls_closed",
            (Port::Tls, "tcp_refused") => "mbtls_refused",
            (Port::Tls, other) => other,
        }
    }
}

impl Served {
    /// Where a master connects with plain TCP: the card, or the relay to its secure port.
    pub fn addr(&self) -> SocketAddr {
        match &self.relay {
            Some(relay) => relay.addr,
            None => self.card.addr(),
        }
    }

    /// The port's sessions.
    pub fn sessions(&self) -> &Sessions {
        match self.port {
            Port::Plain => &self.card.service().sessions,
            Port::Tls => &self.card.service().mbtls.as_ref().unwrap().sessions,
        }
    }

    /// Waits for this port's event of plain Modbus TCP's `kind`.
    pub fn wait_port_event(&self, kind: &'static str) -> modbus_card::store::EventRow {
        self.card.wait_event(self.port.kind(kind))
    }

    /// Waits until `n` events of plain Modbus TCP's `kind` are logged for this port.
    pub fn wait_port_events(&self, kind: &'static str, n: usize) {
        let kind = self.port.kind(kind);
        wait_for(&format!("{n} {kind}"), || {
            self.card.events().iter().filter(|e| e.kind == kind).count() >= n
        });
    }
}

impl std::ops::Deref for Served {
    type Target = Card;

    fn deref(&self) -> &Card {
        &self.card
    }
}
