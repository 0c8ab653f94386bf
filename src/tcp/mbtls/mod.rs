//! MODBUS/TCP Security (port 802): the frames of Modbus TCP inside TLS with mutual
//! authentication, and the client's role, from its certificate, for rights.
//!
//! - TLS 1.3, and TLS 1.2 (most PLC masters speak only 1.2) with ring's suites, which are
//!   all ECDHE with AEAD ciphers: the spec's RSA key exchange and CBC suites are not
//!   offered. A client certificate is required, verified against `DATA/mbtls/clients-ca.pem`
//!   (read at each handshake, so a new CA applies at once), its revocation lists and
//!   the serials the administrator revoked ([`trust`]). No resumption: every connection
//!   shows its certificate. Its dates are judged by [`validity`]'s time, not the system
//!   clock alone, which a card without a real-time clock may have at 1970.
//! - `mbtls_enabled` opens and closes the port live ([`Mbtls::switch`]); turning it off
//!   ends the open sessions.
//! - At most [`MAX_PENDING`] handshakes at a time, each within [`HANDSHAKE_TIMEOUT`]; a new
//!   connection beyond them drops the oldest handshake of the address that holds the most,
//!   as the SSH front does, so one address cannot keep the others out; then
//!   at most three sessions of its own, beside the three of plain Modbus TCP, given away
//!   when idle as those are.
//! - After the handshake the session is that of plain Modbus TCP ([`Session`]): the same
//!   queue and fairness at the link (as `Source::Mbtls`), frame log, counters, timeouts and
//!   allow-lists (`modbus_allow`, `modbus_write`), with the role's rights on top.

pub mod pki;
pub mod role;
pub mod trust;
pub mod validity;

use super::session::{Rights, Session, Transport};
use super::{prepare, Refused, SessionLog, Sessions, Tcp, TcpConfig};
use crate::access;
use crate::event::{Event, Events, Holder};
use crate::health::Heartbeat;
use crate::link::{Link, Source};
use crate::poll::{wait_any, wait_readable, Ready, Update};
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where it listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "0.0.0.0:802";
/// Handshakes in progress at once; more connections are closed at once.
pub const MAX_PENDING: usize = 4;
/// A handshake not completed within this ends the connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running service, for the pages and for `mbtls_enabled`.
#[derive(Clone)]
pub struct Mbtls {
    pub sessions: Arc<Sessions>,
    /// Where it listens while on, as given (`--mbtls`).
    pub place: SocketAddr,
    /// Where it really listens; None while off.
    addr: Arc<Mutex<Option<SocketAddr>>>,
    listener: Arc<Update<Option<TcpListener>>>,
}

impl Mbtls {
    /// Where it listens, while on.
    pub fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock()
    }

    /// Listens on `listener` from now on (already bound, so a port in use refuses the
    /// change before it is made), or, with None, stops listening and ends its sessions.
    pub fn switch(&self, listener: Option<TcpListener>) {
        let addr = listener.as_ref().and_then(|l| {
            l.set_nonblocking(true).ok()?;
            l.local_addr().ok()
        });
        *self.addr.lock() = addr;
        self.listener.put(listener);
    }
}

/// What every connection's thread shares.
struct Shared {
    data: PathBuf,
    sessions: Arc<Sessions>,
    /// Plain Modbus TCP's: its timeouts and allow-lists apply here too.
    config: Arc<Mutex<TcpConfig>>,
    refused: Arc<Refused>,
    link: Link,
    log: Arc<SessionLog>,
    shutdown: Shutdown,
    /// Handshakes in progress.
    pending: Mutex<Vec<Pending>>,
    next_id: AtomicU64,
    /// Off: handshakes in progress end without a session, sessions say why they ended.
    on: AtomicBool,
    validity: Arc<validity::ValidityTime>,
}

/// Starts the acceptor, not listening until [`Mbtls::switch`] gives it a listener, with
/// plain Modbus TCP's configuration and counters. The card's certificate on this port is
/// made now if missing. `last_event_s`: the time of the last event logged before this
/// start, for [`validity`].
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    place: SocketAddr,
    data: &Path,
    last_event_s: Option<i64>,
    tcp: &Tcp,
    link: Link,
    events: Events,
    shutdown: Shutdown,
    heartbeat: Heartbeat,
) -> io::Result<(Mbtls, JoinHandle<()>)> {
    pki::server_identity(data).map_err(io::Error::other)?;
    let mbtls = Mbtls {
        sessions: Arc::new(Sessions::default()),
        place,
        addr: Arc::new(Mutex::new(None)),
        listener: Arc::new(Update::new()?),
    };
    let validity = Arc::new(validity::ValidityTime {
        clock: events.clock().clone(),
        last_event_s,
    });
    let shared = Arc::new(Shared {
        data: data.to_path_buf(),
        sessions: mbtls.sessions.clone(),
        config: tcp.config.clone(),
        refused: tcp.refused.clone(),
        link,
        log: Arc::new(SessionLog::new(events)),
        shutdown,
        pending: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(0),
        on: AtomicBool::new(false),
        validity,
    });
    let switched = mbtls.listener.clone();
    let thread = std::thread::Builder::new()
        .name("mbtls-accept".into())
        .stack_size(128 * 1024)
        .spawn(move || accept_loop(switched, shared, heartbeat))?;
    Ok((mbtls, thread))
}

fn accept_loop(
    switched: Arc<Update<Option<TcpListener>>>,
    shared: Arc<Shared>,
    heartbeat: Heartbeat,
) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut listener: Option<TcpListener> = None;
    loop {
        heartbeat.idle();
        let fds = [listener.as_ref().map(AsFd::as_fd), Some(switched.fd())];
        let woken = wait_any(fds, &shared.shutdown, None);
        heartbeat.busy();
        match woken {
            Ok((_, true)) => break,
            Ok((_, false)) => {}
            Err(e) => {
                log::error!("modbus/tcp security: {e}");
                break;
            }
        }
        threads.retain(|t| !t.is_finished());
        if let Some(new) = switched.take() {
            shared.on.store(new.is_some(), Ordering::SeqCst);
            match &new {
                Some(l) => log::info!(
                    "modbus/tcp security listening on {}",
                    l.local_addr().map_or("?".into(), |a| a.to_string())
                ),
                None => {
                    log::info!("modbus/tcp security off");
                    shared.sessions.end_all();
                }
            }
            listener = new;
            continue;
        }
        let Some(listening) = &listener else {
            continue;
        };
        let (stream, peer) = match listening.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                log::warn!("modbus/tcp security accept: {e}");
                shared.shutdown.sleep(Duration::from_millis(100));
                continue;
            }
        };
        let refuse = |reason: &str| {
            shared.log.emit(Event::MbtlsRefused {
                peer,
                subject: None,
                reason: reason.into(),
            })
        };
        if !access::allowed(&shared.config.lock().allow, peer.ip()) {
            shared.refused.connections.fetch_add(1, Ordering::Relaxed);
            refuse("not in the masters allowed");
            continue;
        }
        let Some(pending) = admit(&shared, &stream, peer) else {
            refuse("cannot set up its socket");
            continue;
        };
        let ctx = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("mbtls-session".into())
            .stack_size(128 * 1024)
            .spawn(move || serve(stream, peer, pending, &ctx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::error!("modbus/tcp security: no thread for {peer}: {e}"),
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// A handshake in progress.
struct Pending {
    id: u64,
    ip: IpAddr,
    since: Instant,
    /// To end it from the acceptor.
    sock: TcpStream,
    dropped: Arc<AtomicBool>,
}

/// Counts a new connection among the handshakes in progress, first dropping the oldest
/// of the address that holds the most if there are [`MAX_PENDING`] already. Returns its
/// id and whether it was dropped in turn; None if its socket cannot be duplicated.
fn admit(shared: &Shared, stream: &TcpStream, peer: SocketAddr) -> Option<(u64, Arc<AtomicBool>)> {
    let mut pending = shared.pending.lock();
    if pending.len() >= MAX_PENDING {
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
        for p in pending.iter() {
            *per_ip.entry(p.ip).or_default() += 1;
        }
        let most = per_ip.values().copied().max().unwrap_or(0);
        if let Some(victim) = pending
            .iter()
            .filter(|p| per_ip[&p.ip] == most)
            .min_by_key(|p| p.since)
        {
            victim.dropped.store(true, Ordering::SeqCst);
            // Wakes its thread, which logs why it ended.
            let _ = victim.sock.shutdown(std::net::Shutdown::Both);
            let id = victim.id;
            pending.retain(|p| p.id != id);
        }
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let dropped = Arc::new(AtomicBool::new(false));
    pending.push(Pending {
        id,
        ip: peer.ip(),
        since: Instant::now(),
        sock: stream.try_clone().ok()?,
        dropped: dropped.clone(),
    });
    Some((id, dropped))
}

/// One connection: the handshake, a session slot, then the session.
fn serve(stream: TcpStream, peer: SocketAddr, pending: (u64, Arc<AtomicBool>), shared: &Shared) {
    if let Err(e) = prepare(&stream) {
        log::warn!("modbus/tcp security: cannot set up socket from {peer}: {e}");
    }
    let (id, dropped) = pending;
    let seen = Arc::new(Mutex::new(None));
    let shaken = handshake(&stream, shared, seen.clone());
    shared.pending.lock().retain(|p| p.id != id);
    let shaken = match shaken {
        Err(_) if dropped.load(Ordering::SeqCst) => Err(format!(
            "handshake dropped for a newer connection: {MAX_PENDING} were in progress, and \
             this was the oldest of the address with the most"
        )),
        shaken => shaken,
    };
    let mut tls = match shaken {
        Ok(tls) => tls,
        Err(reason) => {
            // Whom the certificate named, if the client got as far as showing one.
            let subject = seen.lock().take();
            shared.log.emit(Event::MbtlsRefused {
                peer,
                subject,
                reason,
            });
            return;
        }
    };
    let client = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| role::of(cert))
        .unwrap_or_else(|| role::Client {
            subject: "?".into(),
            serial: String::new(),
            role: Err("no certificate".into()),
        });
    let refuse = |reason: String| {
        shared.log.emit(Event::MbtlsRefused {
            peer,
            subject: Some(client.subject.clone()),
            reason,
        })
    };
    if !shared.on.load(Ordering::SeqCst) {
        drop(tls);
        refuse("Modbus/TCP Security turned off".into());
        return;
    }
    let Some((number, evicted)) = take_slot(shared, peer, &client.subject, &tls.sock) else {
        refuse(format!("all {} sessions in use", super::MAX_SESSIONS));
        tls.close();
        return;
    };
    let refusal = |why: String| {
        Rights::Nothing(Some(Event::MbtlsNoRights {
            session: number,
            subject: client.subject.clone(),
            why,
        }))
    };
    let role = client
        .role
        .clone()
        .unwrap_or_else(|why| format!("none ({why})"));
    let rights = match &client.role {
        Ok(role) => match role::grant(&shared.data, role) {
            role::Grant::Operate => Rights::All,
            role::Grant::Read => Rights::Read,
            role::Grant::None => refusal(format!("role '{role}' has no rights")),
        },
        Err(why) => refusal(why.clone()),
    };
    shared.log.emit(Event::MbtlsOpened {
        session: number,
        peer,
        subject: client.subject.clone(),
        role: role.clone(),
    });
    let session = Session {
        number,
        stream: tls,
        rights,
        holder: Some(Holder {
            subject: client.subject,
            role,
        }),
        config: shared.config.clone(),
        caller: shared.link.caller(Source::Mbtls(number)),
        shutdown: shared.shutdown.clone(),
        sessions: shared.sessions.clone(),
        peer,
        refused: shared.refused.clone(),
        log: shared.log.clone(),
    };
    let mut reason = session.run();
    if evicted.load(Ordering::SeqCst) {
        reason = "idle, its slot given to a new connection".into();
    } else if !shared.on.load(Ordering::SeqCst) {
        reason = "Modbus/TCP Security turned off".into();
    }
    // Before the slot is free, so "closed" precedes the next "opened" of this number.
    shared.log.emit(Event::MbtlsClosed {
        session: number,
        reason,
    });
    shared.sessions.release(number);
}

/// A free session slot, or that of a session idle long enough, as plain Modbus TCP does.
fn take_slot(
    shared: &Shared,
    peer: SocketAddr,
    subject: &str,
    sock: &TcpStream,
) -> Option<(u8, Arc<AtomicBool>)> {
    if let Some(taken) = shared.sessions.take(peer, Some(subject), sock) {
        return Some(taken);
    }
    let evict_idle = shared.config.lock().evict_idle;
    if evict_idle.is_zero() {
        return None;
    }
    let (old, idle) = shared.sessions.evict_idle(evict_idle)?;
    log::info!("modbus/tcp security: session {old} idle for {idle:?} gives its slot to {peer}");
    // Its thread ends at once and frees the slot.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Some(taken) = shared.sessions.take(peer, Some(subject), sock) {
            return Some(taken);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The TLS settings of one handshake: the client CAs as they are on disk now; the
/// subject of the certificate the client shows goes to `seen`.
fn tls_config(
    data: &Path,
    time: Arc<validity::ValidityTime>,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let dir = pki::dir(data);
    let cas = pki::read_certs(&dir.join(pki::CLIENTS_CA))
        .map_err(|e| format!("no client CA installed ({e})"))?;
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("{}: {e}", pki::CLIENTS_CA))?;
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let crls = dir.join(pki::CLIENTS_CRL);
    if crls.exists() {
        let crls = CertificateRevocationListDer::pem_file_iter(&crls)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", pki::CLIENTS_CRL))?;
        // A CA without a CRL among several is not a refusal.
        verifier = verifier.with_crls(crls).allow_unknown_revocation_status();
    }
    let verifier = verifier.build().map_err(|e| format!("client CAs: {e}"))?;
    let verifier = Arc::new(Noting {
        verifier,
        revoked: trust::revoked(data),
        seen,
    });
    let (chain, key) = pki::server_identity(data)?;
    let mut config = ServerConfig::builder_with_details(provider, time)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("the card's certificate: {e}"))?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Longest subject noted from a certificate not yet verified, in characters.
const NOTED_SUBJECT: usize = 200;

/// The client verifier, noting whom the certificate names before judging it, so that a
/// refusal says whom it refused, and refusing too the serial numbers the administrator
/// revoked ([`trust::REVOKED`], as it was when the connection came). The subject is then
/// anyone's claim: it is logged without control characters and cut at [`NOTED_SUBJECT`]
/// characters.
#[derive(Debug)]
struct Noting {
    verifier: Arc<dyn ClientCertVerifier>,
    revoked: Vec<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl ClientCertVerifier for Noting {
    fn offer_client_auth(&self) -> bool {
        self.verifier.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.verifier.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.verifier.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let client = role::of(end_entity);
        let shown = client
            .subject
            .chars()
            .map(|c| if c.is_control() { '?' } else { c });
        *self.seen.lock() = Some(shown.take(NOTED_SUBJECT).collect());
        let verified = self
            .verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.revoked.contains(&client.serial) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// The handshake, within [`HANDSHAKE_TIMEOUT`]; `Err` says why it failed, for the log.
fn handshake(
    sock: &TcpStream,
    shared: &Shared,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<TlsStream, String> {
    let config = tls_config(&shared.data, shared.validity.clone(), seen)?;
    let mut conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
    let mut sock = sock.try_clone().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        while conn.wants_write() {
            conn.write_tls(&mut sock)
                .map_err(|e| format!("handshake: write failed: {e}"))?;
        }
        if !conn.is_handshaking() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "handshake not completed within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
        }
        match wait_readable(sock.as_fd(), &shared.shutdown, Some(left)) {
            Ok(Ready::Readable) => {}
            Ok(Ready::Timeout) => continue,
            Ok(Ready::Shutdown) => return Err("service stopping".into()),
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        match conn.read_tls(&mut sock) {
            Ok(0) => return Err("closed by the client during the handshake".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("handshake: read failed: {e}")),
        }
        if let Err(e) = conn.process_new_packets() {
            // The alert that says why, for the client.
            let _ = conn.write_tls(&mut sock);
            return Err(format!("handshake refused: {e}"));
        }
    }
    ack_now(&sock);
    // A request may have come with the client's Finished, already decrypted: the
    // session must read it before it waits for the socket.
    let plain = conn
        .process_new_packets()
        .map_err(|e| format!("handshake refused: {e}"))?
        .plaintext_bytes_to_read();
    Ok(TlsStream { conn, sock, plain })
}

/// Acknowledges the client's Finished at once. The card sends nothing after it (no
/// session tickets), so a master without TCP_NODELAY would hold its first request back
/// until the delayed ACK, 40 ms later (pymodbus does: measured in BENCHMARKS.md).
fn ack_now(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a c_int option value and its size.
    let done = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        log::debug!(
            "modbus/tcp security: TCP_QUICKACK: {}",
            io::Error::last_os_error()
        );
    }
}

/// A session's stream: TLS over the socket, read only when the socket is readable (the
/// session waits for it with the shutdown and its timeouts).
struct TlsStream {
    conn: ServerConnection,
    sock: TcpStream,
    /// Decrypted bytes not yet read.
    plain: usize,
}

impl TlsStream {
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.conn.reader().read(buf)?;
        self.plain = self.plain.saturating_sub(n);
        Ok(n)
    }

    /// Says goodbye, as far as the socket takes it without waiting.
    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.write_tls(&mut self.sock);
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        self.close();
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.plain > 0 {
            return self.read_plain(buf);
        }
        // One read of the socket: the session only reads once it is readable.
        if self.conn.read_tls(&mut self.sock)? == 0 {
            return Ok(0);
        }
        let state = self.conn.process_new_packets().map_err(|e| {
            let _ = self.conn.write_tls(&mut self.sock);
            io::Error::new(io::ErrorKind::InvalidData, e)
        })?;
        self.plain = state.plaintext_bytes_to_read();
        if state.peer_has_closed() && self.plain == 0 {
            return Ok(0);
        }
        self.flush()?;
        if self.plain == 0 {
            // A record not yet whole, or one with no data (a key update).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.read_plain(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }
}

impl AsFd for TlsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Transport for TlsStream {
    fn buffered(&self) -> bool {
        self.plain > 0
    }
}
