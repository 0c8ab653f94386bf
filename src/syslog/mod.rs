//! Remote syslog: every event-log entry also sent to a log server as an RFC 5424 message
//! ([`format`]), over UDP, TCP (RFC 6587 octet counting) or TLS 1.3 (RFC 5425).
//!
//! The store thread hands each entry it wrote to [`Syslog::tap`], which never waits: the
//! entries queue in a channel of [`QUEUE`] and, past that, are counted as dropped. One
//! thread of its own, below Modbus in priority, does everything that may block: the
//! server's name lookup, connecting, the TLS handshake, writing. While the server is away
//! it retries with a back-off from 1 s to 60 s and leaves the entries queued; when the
//! server answers again it first sends (and logs) how many were dropped. Nothing here is
//! watched by the watchdog: a slow log server must never restart the card.

pub mod format;

use crate::event::Stamped;
use crate::settings::{Settings, SyslogTransport};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use format::Origin;
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// Entries waiting for the server at most; older ones are kept, newer ones dropped.
pub const QUEUE: usize = 1000;
/// First pause after a failed connection; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest a connection attempt, a handshake or a write may block the syslog thread.
const IO_LIMIT: Duration = Duration::from_secs(5);
/// The CA an administrator uploads for the log server's certificate (in the data folder).
pub const CA_FILE: &str = "syslog-ca.pem";
/// The system's CAs, used while none is uploaded.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The settings the syslog thread follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub enabled: bool,
    pub server: String,
    pub port: u16,
    pub transport: SyslogTransport,
}

impl Config {
    pub fn of(s: &Settings) -> Config {
        Config {
            enabled: s.syslog_enabled,
            server: s.syslog_server.clone(),
            port: s.syslog_port,
            transport: s.syslog_transport,
        }
    }

    fn on(&self) -> bool {
        self.enabled && !self.server.is_empty()
    }
}

/// Tells whether a user name belongs to an account (for failed logins).
pub type Known = Box<dyn Fn(&str) -> bool + Send + Sync>;

enum Control {
    Config(Config),
    /// A test message, sent now; the outcome is answered.
    Test(Sender<Result<String, String>>),
    /// A new CA: the next message goes over a new connection.
    Reconnect,
}

/// The handle of the syslog thread: cloned into the settings' follower and the pages.
#[derive(Clone)]
pub struct Syslog {
    control: Sender<Control>,
    entries: Sender<Stamped>,
    on: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    known: Arc<Mutex<Option<Known>>>,
    ca_file: PathBuf,
}

impl Syslog {
    /// Starts the thread; it ends when `stop` is dropped or sent to.
    pub fn spawn(
        config: Config,
        origin: Origin,
        data: &Path,
        stop: Receiver<()>,
    ) -> io::Result<(Syslog, JoinHandle<()>)> {
        let (control, control_rx) = crossbeam_channel::unbounded();
        let (entries, entries_rx) = crossbeam_channel::bounded(QUEUE);
        let syslog = Syslog {
            control,
            entries,
            on: Arc::new(AtomicBool::new(config.on())),
            dropped: Arc::new(AtomicU64::new(0)),
            known: Arc::new(Mutex::new(None)),
            ca_file: data.join(CA_FILE),
        };
        let mut sender = Forwarder {
            config,
            origin,
            ca_file: data.join(CA_FILE),
            dropped: syslog.dropped.clone(),
            known: syslog.known.clone(),
            conn: None,
            backoff: MIN_BACKOFF,
            next_try: Instant::now(),
            held: None,
            away: false,
        };
        let thread = thread::Builder::new()
            .name("syslog".into())
            .spawn(move || {
                below_modbus();
                sender.run(control_rx, entries_rx, stop)
            })?;
        Ok((syslog, thread))
    }

    /// The store thread's hand-over of each entry written: never blocks.
    pub fn tap(&self) -> impl Fn(&Stamped) + Send + 'static {
        let (entries, on, dropped) = (self.entries.clone(), self.on.clone(), self.dropped.clone());
        move |entry| {
            if !on.load(Ordering::Relaxed) {
                return;
            }
            if let Err(TrySendError::Full(_)) = entries.try_send(entry.clone()) {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Who counts as a known user in failed logins; until set, nobody does.
    pub fn set_known(&self, known: Known) {
        *self.known.lock() = Some(known);
    }

    /// The settings changed.
    pub fn apply(&self, config: Config) {
        self.on.store(config.on(), Ordering::Relaxed);
        let _ = self.control.send(Control::Config(config));
    }

    /// Sends a test message now, and says how it went (within about `IO_LIMIT` twice).
    pub fn test(&self) -> Result<String, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.control
            .send(Control::Test(tx))
            .map_err(|_| "the syslog sender is not running".to_string())?;
        rx.recv_timeout(IO_LIMIT * 3)
            .unwrap_or_else(|_| Err("no answer from the syslog sender in time".into()))
    }

    /// Keeps `pem` as the CA the log server's certificate is checked against (TLS), once
    /// it holds at least one certificate and nothing else; the next connection uses it.
    pub fn install_ca(&self, pem: &[u8]) -> Result<usize, String> {
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
        let certs = certs.map_err(|e| format!("The CA file is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("The CA file holds no certificate (PEM, BEGIN CERTIFICATE)".into());
        }
        for (i, cert) in certs.iter().enumerate() {
            x509_parser::parse_x509_certificate(cert)
                .map_err(|e| format!("Certificate {} of the CA file: {e}", i + 1))?;
        }
        crate::files::write_private(&self.ca_file, pem)
            .map_err(|e| format!("The CA could not be kept: {e}"))?;
        // A connection made with the old CA is made again with the new one.
        let _ = self.control.send(Control::Reconnect);
        Ok(certs.len())
    }

    /// An administrator uploaded the log server's CA.
    pub fn ca_uploaded(&self) -> bool {
        self.ca_file.exists()
    }

    /// Entries dropped since the server was last reached.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A connection to the log server.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn send(&mut self, message: &str) -> io::Result<()> {
        match self {
            Conn::Udp(socket) => socket.send(message.as_bytes()).map(drop),
            Conn::Tcp(stream) => {
                still_open(stream)?;
                // RFC 6587 §3.4.1: MSG-LEN SP SYSLOG-MSG.
                stream.write_all(format!("{} {message}", message.len()).as_bytes())
            }
            Conn::Tls(tls) => {
                still_open(&tls.sock)?;
                tls.write_all(format!("{} {message}", message.len()).as_bytes())?;
                tls.flush()
            }
        }
    }
}

/// A stream the server closed fails here rather than taking one more message into the
/// void: a closed peer reads as end of file at once.
fn still_open(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false)?;
    match peeked {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the connection",
        )),
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(()),
    }
}

/// The thread's state.
struct Forwarder {
    config: Config,
    origin: Origin,
    ca_file: PathBuf,
    dropped: Arc<AtomicU64>,
    known: Arc<Mutex<Option<Known>>>,
    conn: Option<Conn>,
    backoff: Duration,
    next_try: Instant,
    /// An entry taken from the queue and not yet sent.
    held: Option<String>,
    /// The server could not be reached (said once in the log until it is again).
    away: bool,
}

impl Forwarder {
    fn run(&mut self, control: Receiver<Control>, entries: Receiver<Stamped>, stop: Receiver<()>) {
        loop {
            if self.config.on() {
                self.connect_when_due();
                self.flush_held();
            }
            let ready = self.config.on() && self.conn.is_some() && self.held.is_none();
            let wait = if !self.config.on() || ready {
                Duration::from_secs(3600)
            } else {
                self.next_try
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10))
            };
            let queue = if ready || !self.config.on() {
                entries.clone()
            } else {
                crossbeam_channel::never()
            };
            crossbeam_channel::select! {
                recv(stop) -> _ => return self.last_words(&entries),
                recv(control) -> c => match c {
                    Ok(c) => self.control(c),
                    Err(_) => return,
                },
                recv(queue) -> entry => {
                    let Ok(entry) = entry else { return };
                    // select! takes a ready channel at random: settings sent before this
                    // entry was queued (syslog just turned on) apply to it first.
                    while let Ok(c) = control.try_recv() {
                        self.control(c);
                    }
                    // Off: what was queued before is not for any server.
                    if self.config.on() {
                        self.held = Some(self.format(&entry));
                    }
                },
                default(wait) => {}
            }
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Config(config) => self.reconfigure(config),
            Control::Reconnect => {
                self.conn = None;
                self.next_try = Instant::now();
            }
            Control::Test(answer) => {
                let _ = answer.send(self.test());
            }
        }
    }

    /// At the stop, what is queued goes out if the server is there now (the service's
    /// last events), within a few seconds; no reconnection is waited for.
    fn last_words(&mut self, entries: &Receiver<Stamped>) {
        let until = Instant::now() + Duration::from_secs(2);
        while self.config.on() && self.conn.is_some() && Instant::now() < until {
            self.flush_held();
            if self.held.is_some() {
                return;
            }
            let Ok(entry) = entries.try_recv() else {
                return;
            };
            self.held = Some(self.format(&entry));
        }
    }

    fn format(&self, entry: &Stamped) -> String {
        let known = self.known.lock();
        let known: &dyn Fn(&str) -> bool = match known.as_ref() {
            Some(k) => k,
            None => &|_| false,
        };
        format::message(entry, &self.origin, known)
    }

    fn reconfigure(&mut self, config: Config) {
        if config != self.config {
            log::info!(
                "syslog: {}",
                if config.on() {
                    format!(
                        "to {}:{} over {}",
                        config.server,
                        config.port,
                        config.transport.name()
                    )
                } else {
                    "off".into()
                }
            );
            self.config = config;
            self.conn = None;
            self.backoff = MIN_BACKOFF;
            self.next_try = Instant::now();
            self.away = false;
        }
    }

    fn connect_when_due(&mut self) {
        if self.conn.is_some() || Instant::now() < self.next_try {
            return;
        }
        match connect(&self.config, &self.ca_file) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff = MIN_BACKOFF;
                if std::mem::take(&mut self.away) {
                    log::info!("syslog: {} reached again", self.config.server);
                }
                let dropped = self.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    log::warn!(
                        "syslog: {dropped} event-log entries were not sent: the queue of \
                         {QUEUE} was full while the server was away"
                    );
                    let text = format!(
                        "{dropped} event-log entries were not sent: the log server was away \
                         and the card's queue of {QUEUE} was full"
                    );
                    let notice =
                        format::notice(SystemTime::now(), &self.origin, "syslog_dropped", &text);
                    // Sent before what stayed queued, so the gap is told where it is.
                    if let Some(conn) = self.conn.as_mut() {
                        if let Err(e) = conn.send(&notice) {
                            self.lost(e);
                        }
                    }
                }
            }
            Err(e) => self.lost(e),
        }
    }

    fn flush_held(&mut self) {
        let (Some(conn), Some(message)) = (self.conn.as_mut(), self.held.as_ref()) else {
            return;
        };
        match conn.send(message) {
            Ok(()) => self.held = None,
            Err(e) => self.lost(e),
        }
    }

    /// The server could not be reached or the connection broke: try again after the
    /// back-off, doubled for the next time.
    fn lost(&mut self, e: io::Error) {
        self.conn = None;
        if !self.away {
            log::warn!(
                "syslog: {}:{} over {}: {e}; entries are queued (at most {QUEUE}) and the \
                 server tried again with a growing pause",
                self.config.server,
                self.config.port,
                self.config.transport.name()
            );
            self.away = true;
        }
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn test(&mut self) -> Result<String, String> {
        if !self.config.on() {
            return Err("remote syslog is off, or no server is set".into());
        }
        // A test asked by a person tries at once, whatever the back-off.
        if self.conn.is_none() {
            self.conn = Some(connect(&self.config, &self.ca_file).map_err(|e| {
                format!(
                    "{}:{} over {}: {e}",
                    self.config.server,
                    self.config.port,
                    self.config.transport.name()
                )
            })?);
        }
        let message = format::notice(
            SystemTime::now(),
            &self.origin,
            "syslog_test",
            "Test message from the card's Configuration page",
        );
        let sent = self.conn.as_mut().map(|c| c.send(&message));
        match sent {
            Some(Ok(())) => Ok(format!(
                "Test message sent to {}:{} over {}",
                self.config.server,
                self.config.port,
                self.config.transport.name()
            )),
            Some(Err(e)) => {
                let text = e.to_string();
                self.lost(e);
                Err(text)
            }
            None => Err("not connected".into()),
        }
    }
}

/// Looks the server up and connects (TLS: with the handshake done), each step bounded.
fn connect(config: &Config, ca_file: &Path) -> io::Result<Conn> {
    let addrs: Vec<SocketAddr> = (config.server.as_str(), config.port)
        .to_socket_addrs()?
        .filter(SocketAddr::is_ipv4)
        .collect();
    let first = addrs.first().copied().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no IPv4 address", config.server),
        )
    })?;
    if config.transport == SyslogTransport::Udp {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket.connect(first)?;
        return Ok(Conn::Udp(socket));
    }
    let mut last = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, IO_LIMIT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(stream) = stream else {
        return Err(last.unwrap_or_else(|| io::ErrorKind::NotFound.into()));
    };
    stream.set_write_timeout(Some(IO_LIMIT))?;
    stream.set_read_timeout(Some(IO_LIMIT))?;
    if config.transport == SyslogTransport::Tcp {
        return Ok(Conn::Tcp(stream));
    }
    let tls = tls_client(ca_file)?;
    let name = ServerName::try_from(config.server.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut conn = rustls::ClientConnection::new(tls, name).map_err(io::Error::other)?;
    let mut stream = stream;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)?;
    }
    Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, stream))))
}

/// TLS 1.3 only, as the web front; the server is checked against the uploaded CA, or
/// the system's CAs while none is uploaded.
fn tls_client(ca_file: &Path) -> io::Result<Arc<rustls::ClientConfig>> {
    let path = if ca_file.exists() {
        ca_file
    } else {
        Path::new(SYSTEM_CAS)
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    for cert in certs.flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(io::Error::other(format!(
            "no CA certificate in {} to check the log server against",
            path.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Modbus answers come first: the syslog thread runs at a lower priority (Linux keeps the
/// nice value per thread).
fn below_modbus() {
    // SAFETY: setpriority with integer arguments; 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) } != 0 {
        log::debug!("syslog: priority unchanged: {}", io::Error::last_os_error());
    }
}

/// The origin of the card's messages: `modbus-card-xxxxxx` from the MAC's last digits.
pub fn origin(mac: &crate::accounts::Mac) -> Origin {
    Origin {
        host: host_name(mac),
        mac: mac.to_string(),
        version: crate::firmware::version::current().to_string(),
        procid: std::process::id(),
    }
}

/// `modbus-card-xxxxxx`: the card's name on the network (syslog, DNS-SD).
pub fn host_name(mac: &crate::accounts::Mac) -> String {
    format!(
        "modbus-card-{}",
        mac.default_password().to_ascii_lowercase()
    )
}
