//! Modbus TCP: an acceptor and at most three session threads.
//!
//! - With all sessions in use, a new connection takes the slot of the session idle the
//!   longest, if that one has been idle for `modbus_evict_idle_s`; otherwise it is accepted
//!   and closed at once. A session that polls is never disturbed. Both are logged under a
//!   budget (a burst of 30, then one every 2 s) so a flood cannot fill the log.
//! - Each session reads frames as they come and answers them in order, so pipelined
//!   requests work; it has one request at the link at a time, which keeps the link fair.
//! - A header that can never become valid (protocol id not 0, length outside 2..=254)
//!   closes the session, as the implementation guide says: the stream is out of step. A
//!   partial frame only ever holds up its own session, and must be completed within
//!   [`PARTIAL_FRAME_DEADLINE`].
//! - Only whole requests (and their answers) count as activity: the idle timeout closes a
//!   session that asks nothing, however it trickles bytes; TCP keepalive frees the slot of
//!   a master that vanished without closing (power cut, cable pulled).
//! - `modbus_enabled` opens and closes the port live ([`Tcp::switch`]); turning it off
//!   ends the open sessions. Modbus/TCP Security is not touched.

pub mod mbtls;
mod session;

use crate::access::{self, Cidr, Writers};
use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::link::Link;
use crate::poll::wait_any;
use crate::poll::Update;
use crate::settings::Routing;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use std::net::{Shutdown as Both, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Simultaneous sessions, as the card's manual says.
pub const MAX_SESSIONS: usize = 3;
/// An answer that cannot be handed to the kernel for this long ends the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame whose first bytes have come must be whole within this, or the session ends:
/// a Modbus TCP frame is sent at once, and trickled bytes must not hold a slot.
pub const PARTIAL_FRAME_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Masters allowed to connect; empty: everyone.
    pub allow: Vec<Cidr>,
    pub writers: Writers,
    /// Who may write when `writers` is [`Writers::Listed`].
    pub writer_list: Vec<Cidr>,
    /// Zero: never close an idle session.
    pub idle_timeout: Duration,
    /// With all sessions in use, a new connection takes the slot of a session idle this
    /// long. Zero: never.
    pub evict_idle: Duration,
    pub routing: Routing,
    pub ups_slave: u8,
}

/// Who holds each session slot: for the pages, and to find an idle one to give away.
#[derive(Default)]
pub struct Sessions {
    slots: Mutex<[Option<Slot>; MAX_SESSIONS]>,
}

struct Slot {
    peer: SocketAddr,
    /// The client certificate's subject, on Modbus/TCP Security.
    subject: Option<String>,
    opened: SystemTime,
    /// The last whole request or answer.
    active: Instant,
    /// A request is with the link.
    busy: bool,
    /// The session's socket, to end it from the acceptor.
    stream: TcpStream,
    evicted: Arc<AtomicBool>,
}

/// One open session, as the pages show it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// 1 to 3, as in the events "TCP session x opened".
    pub number: u8,
    pub peer: SocketAddr,
    /// The client certificate's subject, on Modbus/TCP Security.
    pub subject: Option<String>,
    pub opened: SystemTime,
    /// Time since its last whole request or answer.
    pub idle: Duration,
}

impl Sessions {
    /// The open sessions, by number.
    pub fn list(&self) -> Vec<SessionInfo> {
        let slots = self.slots.lock();
        (0..MAX_SESSIONS)
            .filter_map(|i| {
                let s = slots[i].as_ref()?;
                Some(SessionInfo {
                    number: i as u8 + 1,
                    peer: s.peer,
                    subject: s.subject.clone(),
                    opened: s.opened,
                    idle: if s.busy {
                        Duration::ZERO
                    } else {
                        s.active.elapsed()
                    },
                })
            })
            .collect()
    }

    /// Peers of the open sessions, by slot (session x = slot + 1).
    pub fn peers(&self) -> [Option<SocketAddr>; MAX_SESSIONS] {
        let slots = self.slots.lock();
        std::array::from_fn(|i| slots[i].as_ref().map(|s| s.peer))
    }

    pub fn open(&self) -> usize {
        self.slots.lock().iter().flatten().count()
    }

    fn take(
        &self,
        peer: SocketAddr,
        subject: Option<&str>,
        stream: &TcpStream,
    ) -> Option<(u8, Arc<AtomicBool>)> {
        let mut slots = self.slots.lock();
        let i = slots.iter().position(Option::is_none)?;
        let evicted = Arc::new(AtomicBool::new(false));
        slots[i] = Some(Slot {
            peer,
            subject: subject.map(str::to_owned),
            opened: SystemTime::now(),
            active: Instant::now(),
            busy: false,
            stream: stream.try_clone().ok()?,
            evicted: evicted.clone(),
        });
        Some((i as u8 + 1, evicted))
    }

    fn release(&self, session: u8) {
        self.slots.lock()[usize::from(session - 1)] = None;
    }

    /// Session `session` received a whole request (`busy`) or sent its answer.
    fn activity(&self, session: u8, busy: bool) {
        if let Some(s) = &mut self.slots.lock()[usize::from(session - 1)] {
            s.active = Instant::now();
            s.busy = busy;
        }
    }

    /// Wakes every session whose master `allow` leaves out: it sees the list at once,
    /// answers the request it may be relaying (the reading half alone is shut), and ends.
    fn wake_not_allowed(&self, allow: &[Cidr]) {
        for s in self.slots.lock().iter().flatten() {
            if !access::allowed(allow, s.peer.ip()) {
                let _ = s.stream.shutdown(Both::Read);
            }
        }
    }

    /// Ends every session (their service turned off): each wakes, sees the end of its
    /// stream and stops.
    fn end_all(&self) {
        for s in self.slots.lock().iter().flatten() {
            let _ = s.stream.shutdown(Both::Both);
        }
    }

    /// Ends the session idle the longest, if it has been idle at least `min`: returns its
    /// number and how long it was idle. Its thread still has to finish.
    fn evict_idle(&self, min: Duration) -> Option<(u8, Duration)> {
        let slots = self.slots.lock();
        let (i, idle) = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                (!s.busy).then(|| (i, s.active.elapsed()))
            })
            .max_by_key(|(_, idle)| *idle)
            .filter(|(_, idle)| *idle >= min)?;
        let s = slots[i].as_ref()?;
        s.evicted.store(true, Ordering::SeqCst);
        // Wakes the session's wait: it sees the end of its stream and stops.
        let _ = s.stream.shutdown(Both::Both);
        Some((i as u8 + 1, idle))
    }
}

/// What access control turned away, for the pages.
#[derive(Default)]
pub struct Refused {
    /// Connections from masters outside the allow-list.
    pub connections: AtomicU64,
    /// Writes from masters that may only read.
    pub writes: AtomicU64,
}

/// The running Modbus TCP server, for whoever changes its settings.
#[derive(Clone)]
pub struct Tcp {
    pub sessions: Arc<Sessions>,
    pub refused: Arc<Refused>,
    config: Arc<Mutex<TcpConfig>>,
    listener: Arc<Update<Option<TcpListener>>>,
    /// Where it listens, or listened last while off.
    addr: Arc<Mutex<SocketAddr>>,
    /// `modbus_enabled`: off, sessions say why they ended.
    on: Arc<AtomicBool>,
}

impl Tcp {
    /// Where it listens, or would listen while off.
    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock()
    }

    /// Whether it listens (`modbus_enabled`).
    pub fn listening(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    pub fn config(&self) -> TcpConfig {
        self.config.lock().clone()
    }

    /// New timeouts and routing: each session takes them at its next turn. A session
    /// whose master is no longer allowed ends after the answer it may be waiting for.
    pub fn reconfigure(&self, config: TcpConfig) {
        let allow = config.allow.clone();
        *self.config.lock() = config;
        self.sessions.wake_not_allowed(&allow);
    }

    /// What a new allow-list would do to the open sessions, in words, for the user to
    /// confirm before it is saved.
    pub fn closed_by(&self, old: &[Cidr], new: &[Cidr]) -> Vec<String> {
        self.sessions
            .list()
            .into_iter()
            .filter(|s| access::allowed(old, s.peer.ip()) && !access::allowed(new, s.peer.ip()))
            .map(|s| {
                format!(
                    "Modbus TCP session {} from {} will be closed: that master is not among \
                     the masters allowed any more.",
                    s.number,
                    s.peer.ip()
                )
            })
            .collect()
    }

    /// Listens on `listener` from now on (already bound, so a port in use refuses the
    /// change before it is made), open sessions going on; or, with None, stops listening
    /// and ends its sessions.
    pub fn switch(&self, listener: Option<TcpListener>) -> std::io::Result<()> {
        if let Some(l) = &listener {
            l.set_nonblocking(true)?;
            *self.addr.lock() = l.local_addr()?;
        }
        self.on.store(listener.is_some(), Ordering::SeqCst);
        self.listener.put(listener);
        Ok(())
    }
}

/// Starts the acceptor on a bound listener, or, with None (`modbus_enabled` off), not
/// listening until [`Tcp::switch`] gives it one at `place`. Session threads are joined
/// before it returns. `heartbeat` tells the watchdog the acceptor is idle while it waits
/// for connections.
pub fn spawn(
    listener: Option<TcpListener>,
    place: SocketAddr,
    config: TcpConfig,
    link: Link,
    events: Events,
    shutdown: Shutdown,
    heartbeat: Heartbeat,
) -> std::io::Result<(Tcp, JoinHandle<()>)> {
    let tcp = Tcp {
        sessions: Arc::new(Sessions::default()),
        refused: Arc::new(Refused::default()),
        config: Arc::new(Mutex::new(config)),
        listener: Arc::new(Update::new()?),
        addr: Arc::new(Mutex::new(place)),
        on: Arc::new(AtomicBool::new(false)),
    };
    tcp.switch(listener)?;
    let shared = tcp.clone();
    let thread = std::thread::Builder::new()
        .name("tcp-accept".into())
        .stack_size(128 * 1024)
        .spawn(move || accept_loop(shared, link, events, shutdown, heartbeat))?;
    Ok((tcp, thread))
}

fn accept_loop(tcp: Tcp, link: Link, events: Events, shutdown: Shutdown, heartbeat: Heartbeat) {
    let sessions = tcp.sessions.clone();
    let mut threads: [Option<JoinHandle<()>>; MAX_SESSIONS] = Default::default();
    let log = Arc::new(SessionLog::new(events));
    let mut listener: Option<TcpListener> = None;
    loop {
        let fds = [listener.as_ref().map(AsFd::as_fd), Some(tcp.listener.fd())];
        heartbeat.idle();
        let woken = wait_any(fds, &shutdown, None);
        heartbeat.busy();
        match woken {
            Ok((_, true)) => break,
            Ok((_, false)) => {}
            Err(e) => {
                log::error!("modbus tcp: {e}");
                break;
            }
        }
        if let Some(new) = tcp.listener.take() {
            match &new {
                Some(l) => log::info!(
                    "modbus tcp listening on {}",
                    l.local_addr().map_or("?".into(), |a| a.to_string())
                ),
                None => {
                    log::info!("modbus tcp off");
                    sessions.end_all();
                }
            }
            listener = new;
            continue;
        }
        let Some(listening) = &listener else {
            continue;
        };
        let config = tcp.config();
        let (stream, peer) = match listening.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of descriptors, say: back off rather than spin.
                log::warn!("modbus tcp accept: {e}");
                shutdown.sleep(Duration::from_millis(100));
                continue;
            }
        };
        if !access::allowed(&config.allow, peer.ip()) {
            drop(stream);
            tcp.refused.connections.fetch_add(1, Ordering::Relaxed);
            log.emit(Event::TcpNotAllowed { peer });
            continue;
        }
        let mut taken = sessions.take(peer, None, &stream);
        if taken.is_none() && !config.evict_idle.is_zero() {
            if let Some((old, idle)) = sessions.evict_idle(config.evict_idle) {
                log::info!("modbus tcp: session {old} idle for {idle:?} gives its slot to {peer}");
                // It wakes at once; its "closed" event comes before the new "opened".
                if let Some(t) = threads[usize::from(old - 1)].take() {
                    let _ = t.join();
                }
                taken = sessions.take(peer, None, &stream);
            }
        }
        let Some((session, evicted)) = taken else {
            drop(stream);
            log.emit(Event::TcpRefused { peer });
            continue;
        };
        if let Err(e) = prepare(&stream) {
            log::warn!("modbus tcp: cannot set up socket from {peer}: {e}");
        }
        log.emit(Event::TcpOpened { session, peer });
        let ctx = session::Session {
            number: session,
            stream,
            rights: session::Rights::All,
            holder: None,
            config: tcp.config.clone(),
            caller: link.caller(crate::link::Source::Tcp(session)),
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
            peer,
            refused: tcp.refused.clone(),
            log: log.clone(),
        };
        let session_log = log.clone();
        let slots = sessions.clone();
        let on = tcp.on.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tcp-session-{session}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut reason = ctx.run();
                if evicted.load(Ordering::SeqCst) {
                    reason = "idle, its slot given to a new connection".into();
                } else if !on.load(Ordering::SeqCst) {
                    reason = "Modbus TCP turned off".into();
                }
                // Logged before the slot is free, so "closed" always precedes the next
                // "opened" of the same session number.
                session_log.emit(Event::TcpClosed { session, reason });
                slots.release(session);
            });
        match spawned {
            Ok(t) => threads[usize::from(session - 1)] = Some(t),
            Err(e) => {
                log::error!("modbus tcp: no thread for session {session}: {e}");
                sessions.release(session);
            }
        }
    }
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
}

/// Session events, without letting a client that connects in a loop fill the event log
/// (and wear the flash): a burst of [`BURST`], then one per [`REFILL`]; what is skipped
/// is counted in one line when logging resumes.
pub(super) struct SessionLog {
    events: Events,
    budget: Mutex<Budget>,
}

struct Budget {
    tokens: u32,
    refilled: Instant,
    skipped: u64,
}

const BURST: u32 = 30;
const REFILL: Duration = Duration::from_secs(2);

impl SessionLog {
    fn new(events: Events) -> SessionLog {
        let budget = Budget {
            tokens: BURST,
            refilled: Instant::now(),
            skipped: 0,
        };
        SessionLog {
            events,
            budget: Mutex::new(budget),
        }
    }

    pub(super) fn emit(&self, event: Event) {
        let mut b = self.budget.lock();
        let earned = (b.refilled.elapsed().as_nanos() / REFILL.as_nanos()) as u32;
        if earned > 0 {
            b.tokens = (b.tokens + earned).min(BURST);
            b.refilled += REFILL * earned;
        }
        if b.tokens == 0 {
            b.skipped += 1;
            log::debug!("not logged (connection flood): {}", event.message());
            return;
        }
        b.tokens -= 1;
        let skipped = std::mem::take(&mut b.skipped);
        drop(b);
        if skipped > 0 {
            self.events.emit(Event::TcpEventsSkipped { count: skipped });
        }
        self.events.emit(event);
    }
}

/// Keepalive finds a vanished master in about a minute; no Nagle delay on answers; a
/// master that sends but never reads cannot block its session (and its slot) forever.
fn prepare(stream: &TcpStream) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    setsockopt(stream, sockopt::KeepAlive, &true)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &30)?;
    setsockopt(stream, sockopt::TcpKeepInterval, &10)?;
    setsockopt(stream, sockopt::TcpKeepCount, &3)?;
    Ok(())
}
