//! Modbus TCP: an acceptor and at most three session threads.
//!
//! - A fourth connection is accepted and closed at once (and logged, at most once a
//!   second so a flood cannot fill the log); the open sessions never notice.
//! - Each session reads frames as they come and answers them in order, so pipelined
//!   requests work; it has one request at the link at a time, which keeps the link fair.
//! - A header that can never become valid (protocol id not 0, length outside 2..=254)
//!   closes the session, as the implementation guide says: the stream is out of step. A
//!   partial frame only ever holds up its own session.
//! - The idle timeout closes a silent session; TCP keepalive frees the slot of a master
//!   that vanished without closing (power cut, cable pulled).

mod session;

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::link::Link;
use crate::serial::{wait_readable, Ready};
use crate::settings::Routing;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Simultaneous sessions, as the card's manual says.
pub const MAX_SESSIONS: usize = 3;
/// An answer that cannot be handed to the kernel for this long ends the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Zero: never close an idle session.
    pub idle_timeout: Duration,
    pub routing: Routing,
    pub ups_slave: u8,
    /// Progress of the acceptor for the watchdog: idle while waiting for connections.
    pub heartbeat: Heartbeat,
}

/// Who holds each session slot, for the pages.
#[derive(Default)]
pub struct Sessions {
    slots: Mutex<[Option<SocketAddr>; MAX_SESSIONS]>,
}

impl Sessions {
    /// Peers of the open sessions, by slot (session x = slot + 1).
    pub fn peers(&self) -> [Option<SocketAddr>; MAX_SESSIONS] {
        *self.slots.lock()
    }

    pub fn open(&self) -> usize {
        self.slots.lock().iter().flatten().count()
    }

    fn take(&self, peer: SocketAddr) -> Option<u8> {
        let mut slots = self.slots.lock();
        let i = slots.iter().position(Option::is_none)?;
        slots[i] = Some(peer);
        Some(i as u8 + 1)
    }

    fn release(&self, session: u8) {
        self.slots.lock()[usize::from(session - 1)] = None;
    }
}

/// Starts the acceptor on a bound listener. Session threads are joined before it returns.
pub fn spawn(
    listener: TcpListener,
    config: TcpConfig,
    link: Link,
    events: Events,
    shutdown: Shutdown,
) -> std::io::Result<(Arc<Sessions>, JoinHandle<()>)> {
    listener.set_nonblocking(true)?;
    let sessions = Arc::new(Sessions::default());
    let shared = sessions.clone();
    let thread = std::thread::Builder::new()
        .name("tcp-accept".into())
        .stack_size(128 * 1024)
        .spawn(move || accept_loop(listener, config, link, events, shutdown, shared))?;
    Ok((sessions, thread))
}

fn accept_loop(
    listener: TcpListener,
    config: TcpConfig,
    link: Link,
    events: Events,
    shutdown: Shutdown,
    sessions: Arc<Sessions>,
) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let log = Arc::new(SessionLog::new(events));
    loop {
        config.heartbeat.idle();
        let ready = wait_readable(listener.as_fd(), &shutdown, None);
        config.heartbeat.busy();
        match ready {
            Ok(Ready::Readable) => {}
            Ok(Ready::Timeout) => continue,
            Ok(Ready::Shutdown) => break,
            Err(e) => {
                log::error!("modbus tcp: {e}");
                break;
            }
        }
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of descriptors, say: back off rather than spin.
                log::warn!("modbus tcp accept: {e}");
                shutdown.sleep(Duration::from_millis(100));
                continue;
            }
        };
        threads.retain(|t| !t.is_finished());
        let Some(session) = sessions.take(peer) else {
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
            config: config.clone(),
            caller: link.caller(crate::link::Source::Tcp(session)),
            shutdown: shutdown.clone(),
        };
        let (session_log, slots) = (log.clone(), sessions.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("tcp-session-{session}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                let reason = ctx.run();
                // Logged before the slot is free, so "closed" always precedes the next
                // "opened" of the same session number.
                session_log.emit(Event::TcpClosed { session, reason });
                slots.release(session);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                log::error!("modbus tcp: no thread for session {session}: {e}");
                sessions.release(session);
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Session events, without letting a client that connects in a loop fill the event log
/// (and wear the flash): a burst of [`BURST`], then one per [`REFILL`]; what is skipped
/// is counted in one line when logging resumes.
struct SessionLog {
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

    fn emit(&self, event: Event) {
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
