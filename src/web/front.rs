//! The front: the only part of the web that faces the network.
//!
//! One thread holds every connection, non-blocking, and waits on all of them with one
//! `ppoll`. It does the TLS handshake (rustls, TLS 1.3 only), reads a request head and its
//! body with deadlines and size caps, and only then hands the whole request to the handler
//! pool through a bounded queue ([`Job`]). The handler's answer comes back as bytes
//! ([`Reply`]) and the front writes them out, again without blocking.
//!
//! Why one thread: a connection that sends one byte a minute, or none, costs a few hundred
//! bytes of state here and no thread.
//!
//! No connection without a session holds a place against a user. Each request head goes
//! through the [`Gate`] before any of its body is read: a body is taken only from a live
//! session (or a login form, 4 KiB at most); anything else is answered at once, with
//! `Connection: close`, and what follows of its body is read and dropped for at most
//! [`REFUSED_LINGER`] or [`REFUSED_DRAIN`] bytes (with a live session, from the user's own
//! browser with a form gone stale, for as long as after an upload's early answer). Each
//! port has [`PLACES`] places for connections that have not shown a live session and
//! [`SESSION_PLACES`] more kept for those that have. When a port's places are all taken, a new connection takes the place
//! of one without a session, in whatever phase: one already answered and closing first,
//! then one that has said nothing yet, then one waiting for the rest of its request, then
//! one with a handler; within those, the address
//! that holds the most loses its oldest. A crowd from one address only pushes out its own,
//! and a user's new connection, the youngest, gets its request through in a few polls.
//!
//! Nothing here waits on anything but the poll: a socket with nothing to say is not looked
//! at, a closed one is dropped at once, so no connection can make the thread spin.

use super::http::{self, BodyPolicy, Head, Refusal, MAX_BODY, MAX_HEAD};
use super::listen::{Kind, Listeners};
use super::upload::{self, Upload};
use crate::health::Heartbeat;
use crate::shutdown::Shutdown;
use crossbeam_channel::{Sender, TrySendError};
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use parking_lot::Mutex;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Places on each port (HTTP, HTTPS) for connections that have not shown a live session.
pub const PLACES: usize = 64;
/// Places on each port kept for connections that showed a live session (a browser opens
/// six at most).
pub const SESSION_PLACES: usize = 8;
/// New connections taken per port and per poll: a burst cannot push out, in one go, a
/// connection that is halfway through its request.
const ACCEPTS_PER_POLL: usize = 16;
/// A refused request's body is read and dropped up to this many bytes...
pub const REFUSED_DRAIN: usize = 64 * 1024;
/// ... or for this long, whichever comes first, so that a client still sending reads the
/// answer instead of a reset; then the connection is closed. The body is read once, at
/// the end (a refused client trickling its body costs no wake-ups).
pub const REFUSED_LINGER: Duration = Duration::from_secs(1);
/// From accept to a finished TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// From the first byte of a request to the end of its head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// From the end of the head to the end of the body (1 MiB at 35 kB/s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A kept-alive connection with no new request is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// A client that does not read its answer is dropped after this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After an answer to an upload that was not wanted whole, the rest is read and dropped
/// for this long at most, so the client, still sending, reads the answer instead of
/// meeting a reset connection.
pub const LINGER: Duration = Duration::from_secs(10);
/// A new connection that has sent nothing for this long counts as silent (the first kind
/// to give its place away); before, its first bytes may just be on the way.
const SILENT_AFTER: Duration = Duration::from_millis(500);
/// Requests on one connection before it is closed (and the client opens another).
const MAX_REQUESTS: u32 = 1000;
/// Bytes read from a socket at a time.
const CHUNK: usize = 16 * 1024;
/// How often the periodic work (`tick`) runs.
const TICK: Duration = Duration::from_secs(30);

/// A whole request for the handler pool; or, for a streamed upload, its head, with the
/// body to follow through `upload`.
pub struct Job {
    pub conn: u64,
    pub secure: bool,
    pub peer: SocketAddr,
    /// The card's address the connection came in on.
    pub local: Option<SocketAddr>,
    pub head: Head,
    pub body: Vec<u8>,
    pub upload: Option<Upload>,
    /// The connection stays open after the answer.
    pub keep_alive: bool,
}

/// A handler's whole answer, as bytes to send.
pub struct Reply {
    pub conn: u64,
    pub bytes: Vec<u8>,
    pub close: bool,
}

/// What the web makes of a request head, before any of its body is read.
pub enum Admit {
    /// On to a handler. `session`: the head showed a live session (else it asked for a
    /// page anyone may see).
    Pass { session: bool },
    /// This whole answer, then the connection closes. `session`: the head showed a live
    /// session all the same (the user's own browser, with a form gone stale): the body it
    /// is still sending is dropped as long as an upload's answer would wait for it.
    Refuse { answer: Vec<u8>, session: bool },
}

/// The web's look at each head: the head, whether it came over HTTPS, and from whom.
pub type Gate = Box<dyn Fn(&Head, bool, SocketAddr) -> Admit + Send>;

/// Where handlers put their replies: a list, and a pipe that wakes the front.
#[derive(Clone)]
pub struct Replies {
    inner: Arc<(Mutex<Vec<Reply>>, OwnedFd)>,
}

impl Replies {
    pub fn send(&self, reply: Reply) {
        self.inner.0.lock().push(reply);
        self.wake();
    }

    /// Wakes the front: an answer is ready, or a streamed upload has room again.
    pub fn wake(&self) {
        // A full pipe is already readable: the front will wake anyway.
        let _ = nix::unistd::write(&self.inner.1, &[1]);
    }
}

/// The listening sockets and what the front needs to serve them.
pub struct Front {
    /// HTTP and HTTPS, each while it is on.
    listeners: [Option<TcpListener>; 2],
    /// Where the settings' door hands over sockets to start or stop.
    ports: Arc<Listeners>,
    tls: Arc<ServerConfig>,
    jobs: Sender<Job>,
    gate: Gate,
    replies: Replies,
    wake: OwnedFd,
    shutdown: Shutdown,
    conns: Vec<Conn>,
    next_id: u64,
    /// After an accept error (out of descriptors), listeners rest until then.
    accept_pause: Option<Instant>,
    tick: Box<dyn FnMut() + Send>,
    next_tick: Instant,
    beat: Heartbeat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TLS handshake under way.
    Handshake,
    /// Waiting for (the rest of) a request head; idle when nothing has come yet.
    Head,
    /// Head read, waiting for the body.
    Body,
    /// A streamed upload: the handler has the request, the body goes to it as it comes.
    Stream,
    /// The request is with a handler.
    Handler,
    /// Sending the answer.
    Write,
    /// The answer is out; the rest of an upload not wanted is read and dropped.
    Linger,
}

struct Conn {
    id: u64,
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<Box<ServerConnection>>,
    phase: Phase,
    /// When the current phase began: eviction takes the oldest (a connection moving on
    /// with its request is young again).
    since: Instant,
    /// Its last request that needed a session showed a live one, and it holds one of the
    /// places kept for sessions.
    authed: bool,
    /// Its request was refused at the head: the answer goes out and it closes.
    refused: bool,
    /// Some bytes have come from the client (a connection that has said nothing yet is
    /// the first to make room).
    heard: bool,
    deadline: Instant,
    /// Plaintext received and not yet used.
    input: Vec<u8>,
    head: Option<Head>,
    out: Vec<u8>,
    sent: usize,
    close_after: bool,
    served: u32,
    /// The current request's first byte has come (its head deadline is set).
    started: bool,
    /// Its service was turned off: closed once the answer under way is out.
    retired: bool,
    /// Where a streamed body goes, and how much of it is still to come.
    stream: Option<(Sender<Vec<u8>>, usize)>,
    /// Bytes of an upload no longer wanted, still to be read and dropped.
    discard: usize,
    closed: bool,
}

impl Front {
    /// `ports`: the sockets to serve, now and as the settings change. `tick` runs every
    /// [`TICK`] on the front's thread (session expiry, certificate renewal).
    pub fn new(
        ports: Arc<Listeners>,
        tls: Arc<ServerConfig>,
        jobs: Sender<Job>,
        gate: Gate,
        shutdown: Shutdown,
        tick: Box<dyn FnMut() + Send>,
        beat: Heartbeat,
    ) -> io::Result<(Front, Replies)> {
        let (wake, wake_tx) = nix::unistd::pipe()?;
        for fd in [&wake, &wake_tx] {
            nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
        }
        let replies = Replies {
            inner: Arc::new((Mutex::new(Vec::new()), wake_tx)),
        };
        let mut front = Front {
            listeners: [None, None],
            ports,
            tls,
            jobs,
            gate,
            replies: replies.clone(),
            wake,
            shutdown,
            conns: Vec::with_capacity(2 * (PLACES + SESSION_PLACES)),
            next_id: 0,
            accept_pause: None,
            tick,
            next_tick: Instant::now() + TICK,
            beat,
        };
        front.take_listeners();
        Ok((front, replies))
    }

    /// Serves until shutdown.
    pub fn run(mut self) {
        // What each poll entry is.
        enum Slot {
            Wake,
            Ports,
            Listener(usize),
            Conn(usize),
        }
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                (self.tick)();
                self.next_tick = now + TICK;
            }
            for c in &mut self.conns {
                if now >= c.deadline {
                    log::debug!("web: {} dropped: {:?} deadline passed", c.peer, c.phase);
                    if c.phase == Phase::Linger && c.refused {
                        c.drop_pending();
                    }
                    c.closed = true;
                }
            }
            self.conns.retain(|c| !c.closed);
            if self.accept_pause.is_some_and(|t| now >= t) {
                self.accept_pause = None;
            }

            let ports = self.ports.clone();
            let mut slots = Vec::with_capacity(5 + self.conns.len());
            let mut fds = Vec::with_capacity(slots.capacity());
            fds.push(PollFd::new(self.shutdown.fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(ports.fd(), PollFlags::POLLIN));
            slots.push(Slot::Wake);
            slots.push(Slot::Wake);
            slots.push(Slot::Ports);
            // Always: a new connection finds a place, by eviction if need be.
            if self.accept_pause.is_none() {
                for (i, l) in self.listeners.iter().enumerate() {
                    if let Some(l) = l {
                        fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                        slots.push(Slot::Listener(i));
                    }
                }
            }
            let mut wake_at = self.next_tick;
            for (i, c) in self.conns.iter().enumerate() {
                wake_at = wake_at.min(c.deadline);
                fds.push(PollFd::new(c.sock.as_fd(), c.interest()));
                slots.push(Slot::Conn(i));
            }
            if let Some(t) = self.accept_pause {
                wake_at = wake_at.min(t);
            }
            let wait = TimeSpec::from_duration(wake_at.saturating_duration_since(now));
            self.beat.idle();
            let polled = ppoll(&mut fds, Some(wait), None);
            self.beat.busy();
            if let Err(e) = polled {
                if e != nix::errno::Errno::EINTR {
                    log::error!("web: poll failed: {e}");
                    self.shutdown.sleep(Duration::from_millis(100));
                }
                continue;
            }
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                break;
            }
            let ready: Vec<(Slot, PollFlags)> = fds
                .iter()
                .zip(slots)
                .skip(1)
                .filter_map(|(fd, slot)| {
                    let r = fd.revents().unwrap_or(PollFlags::empty());
                    (!r.is_empty()).then_some((slot, r))
                })
                .collect();
            drop(fds);
            let now = Instant::now();
            let mut accept = Vec::new();
            let mut ports_changed = false;
            for (slot, revents) in ready {
                match slot {
                    Slot::Wake => self.take_replies(now),
                    Slot::Ports => ports_changed = true,
                    Slot::Listener(i) => accept.push(i),
                    Slot::Conn(i) => self.on_ready(i, revents, now),
                }
            }
            self.conns.retain(|c| !c.closed);
            for i in accept {
                self.accept(i, now);
            }
            if ports_changed {
                self.take_listeners();
            }
        }
        log::debug!("web: front stopped with {} connections", self.conns.len());
    }

    /// Starts and stops the services as the settings' door asked. The connections of a
    /// service turned off end: at once if they wait for a request, after their answer if
    /// one is being made (the page that turned the service off gets its answer).
    fn take_listeners(&mut self) {
        for (kind, change) in Kind::BOTH.into_iter().zip(self.ports.take()) {
            let Some(listener) = change else { continue };
            let stopped = listener.is_none();
            self.listeners[kind as usize] = listener;
            if stopped {
                for c in self
                    .conns
                    .iter_mut()
                    .filter(|c| c.tls.is_some() == kind.secure())
                {
                    match c.phase {
                        Phase::Handler | Phase::Write => c.retired = true,
                        _ => c.closed = true,
                    }
                }
                self.conns.retain(|c| !c.closed);
            }
        }
    }

    fn take_replies(&mut self, now: Instant) {
        let mut drain = [0u8; 64];
        while matches!(nix::unistd::read(self.wake.as_raw_fd(), &mut drain), Ok(n) if n > 0) {}
        // A handler took a piece of its upload: there is room for more.
        for c in self.conns.iter_mut().filter(|c| c.phase == Phase::Stream) {
            c.pump(now);
        }
        let replies = std::mem::take(&mut *self.replies.inner.0.lock());
        for reply in replies {
            // The connection may be gone (reset, or evicted without a session): the reply
            // is then dropped.
            if let Some(i) = self.conns.iter().position(|c| c.id == reply.conn) {
                let c = &mut self.conns[i];
                c.start_write(reply.bytes, reply.close, now);
                c.flush(now);
                // A pipelined request may be waiting in the input already.
                if !c.closed {
                    self.advance(i, now);
                }
            }
        }
    }

    fn on_ready(&mut self, i: usize, revents: PollFlags, now: Instant) {
        let c = &mut self.conns[i];
        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
            c.closed = true;
            return;
        }
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) && c.reading() {
            c.receive();
        } else if revents.contains(PollFlags::POLLHUP) {
            c.closed = true;
        }
        if revents.contains(PollFlags::POLLOUT) || c.wants_tls_write() {
            c.flush(now);
        }
        if !c.closed {
            self.advance(i, now);
        }
    }

    /// Moves a connection on with what it has received: a finished handshake, a whole head,
    /// a whole request (handed to the pool) or a refusal.
    fn advance(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if c.discard > 0 && c.phase != Phase::Stream {
            let n = c.input.len().min(c.discard);
            c.input.drain(..n);
            c.discard -= n;
            if c.discard == 0 && c.phase == Phase::Linger {
                c.closed = true;
            }
            return;
        }
        if c.phase == Phase::Handshake {
            match &c.tls {
                Some(tls) if !tls.is_handshaking() => c.enter(Phase::Head, HEAD_TIMEOUT, now),
                _ => return,
            }
        }
        if c.phase == Phase::Head {
            if c.input.is_empty() {
                return;
            }
            if !c.started {
                // The first byte of a request: from now on the head has its own deadline
                // (a kept-alive connection was on its idle one).
                c.started = true;
                if c.served > 0 {
                    c.deadline = now + HEAD_TIMEOUT;
                }
            }
            match http::parse_head(&c.input) {
                Err(Refusal::Partial) => return,
                Err(refusal) => {
                    let (code, text) = refusal.status();
                    log::debug!("web: {} refused: {code} {text}", c.peer);
                    c.refused = true;
                    c.start_write(http::plain(code, text, false), true, now);
                    c.flush(now);
                    return;
                }
                Ok(head) => {
                    let (secure, peer) = (c.tls.is_some(), c.peer);
                    match (self.gate)(&head, secure, peer) {
                        Admit::Refuse { answer, session } => {
                            if session {
                                self.authenticate(i);
                            }
                            let c = &mut self.conns[i];
                            log::debug!("web: {peer} refused at the head of {}", head.path());
                            c.input.drain(..head.len);
                            c.authed &= session;
                            c.refused = !c.authed;
                            c.discard = if c.refused {
                                head.content_length.min(REFUSED_DRAIN)
                            } else {
                                head.content_length
                            };
                            c.start_write(answer, true, now);
                            c.flush(now);
                            if !c.closed {
                                // Body bytes that came with the head.
                                self.advance(i, now);
                            }
                            return;
                        }
                        Admit::Pass { session: true } => self.authenticate(i),
                        Admit::Pass { session: false } => {}
                    }
                    let c = &mut self.conns[i];
                    if head
                        .header("expect")
                        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
                        && c.input.len() < head.len + head.content_length
                    {
                        c.send_now(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    if let BodyPolicy::Stream { .. } = http::body_policy(&head) {
                        self.start_stream(i, head, now);
                        return;
                    }
                    c.head = Some(head);
                    c.enter(Phase::Body, BODY_TIMEOUT, now);
                }
            }
        }
        let c = &mut self.conns[i];
        if c.phase == Phase::Stream {
            c.pump(now);
            return;
        }
        if c.phase == Phase::Body {
            let head = c.head.as_ref().expect("a head in the body phase");
            let end = head.len + head.content_length;
            if c.input.len() < end {
                return;
            }
            let head = c.head.take().expect("a head in the body phase");
            let body = c.input[head.len..end].to_vec();
            c.input.drain(..end);
            let keep_alive = head.keep_alive() && c.served + 1 < MAX_REQUESTS;
            let job = Job {
                conn: c.id,
                secure: c.tls.is_some(),
                peer: c.peer,
                local: c.sock.local_addr().ok(),
                head,
                body,
                upload: None,
                keep_alive,
            };
            c.enter(Phase::Handler, Duration::MAX, now);
            self.dispatch(i, job, now);
        }
    }

    /// A streamed upload: the handler gets the request now, with the body's channel; the
    /// connection is closed after the answer (whatever of the body was not read).
    fn start_stream(&mut self, i: usize, head: Head, now: Instant) {
        let (tx, rx) = crossbeam_channel::bounded(upload::CHUNKS);
        let replies = self.replies.clone();
        let c = &mut self.conns[i];
        c.input.drain(..head.len);
        let upload = Upload::new(
            rx,
            head.content_length as u64,
            Box::new(move || replies.wake()),
        );
        c.stream = Some((tx, head.content_length));
        let job = Job {
            conn: c.id,
            secure: c.tls.is_some(),
            peer: c.peer,
            local: c.sock.local_addr().ok(),
            head,
            body: Vec::new(),
            upload: Some(upload),
            keep_alive: false,
        };
        c.enter(Phase::Stream, upload::IDLE, now);
        c.pump(now);
        self.dispatch(i, job, now);
    }

    /// Hands a job to the pool, or answers 503 when the pool's queue is full.
    fn dispatch(&mut self, i: usize, job: Job, now: Instant) {
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                let c = &mut self.conns[i];
                let busy = http::plain(
                    503,
                    "The card is busy; try again in a moment.",
                    job.keep_alive,
                );
                c.start_write(busy, !job.keep_alive, now);
                c.flush(now);
            }
            Err(TrySendError::Disconnected(_)) => self.conns[i].closed = true,
        }
    }

    fn accept(&mut self, i: usize, now: Instant) {
        let secure = Kind::BOTH[i].secure();
        for _ in 0..ACCEPTS_PER_POLL {
            let Some(listener) = &self.listeners[i] else {
                return;
            };
            let (sock, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    log::warn!("web: accept failed ({e}); pausing new connections briefly");
                    self.accept_pause = Some(now + Duration::from_millis(100));
                    return;
                }
            };
            while self.waiting(secure) >= PLACES && self.evict_one(secure) {}
            if let Err(e) = sock
                .set_nonblocking(true)
                .and_then(|()| sock.set_nodelay(true))
            {
                log::debug!("web: {peer}: {e}");
                continue;
            }
            let tls = if secure {
                match ServerConnection::new(self.tls.clone()) {
                    Ok(t) => Some(Box::new(t)),
                    Err(e) => {
                        log::error!("web: no TLS for {peer}: {e}");
                        continue;
                    }
                }
            } else {
                None
            };
            let (phase, limit) = if secure {
                (Phase::Handshake, HANDSHAKE_TIMEOUT)
            } else {
                (Phase::Head, HEAD_TIMEOUT)
            };
            self.next_id += 1;
            self.conns.push(Conn {
                id: self.next_id,
                sock,
                peer,
                tls,
                phase,
                since: now,
                authed: false,
                refused: false,
                heard: false,
                deadline: now + limit,
                input: Vec::new(),
                head: None,
                out: Vec::new(),
                sent: 0,
                close_after: false,
                served: 0,
                started: false,
                retired: false,
                stream: None,
                discard: 0,
                closed: false,
            });
        }
    }

    /// Connections on the port (HTTPS if `secure`) without a place kept for sessions.
    fn waiting(&self, secure: bool) -> usize {
        self.conns
            .iter()
            .filter(|c| c.tls.is_some() == secure && !c.authed && !c.closed)
            .count()
    }

    /// Makes room on the port (HTTPS if `secure`) among the connections without a session:
    /// one already answered and closing goes first, then one that has said nothing yet (no
    /// handshake, or no request since the last answer), then one waiting for the rest of
    /// its client's request, then one with a handler; among those, the oldest of the
    /// address that holds the most. False when there is none.
    fn evict_one(&mut self, secure: bool) -> bool {
        // A connection just accepted has not spoken yet only because its first bytes are
        // on the way: it is silent, and first to make room, once it has had time to speak.
        let now = Instant::now();
        let silent = |c: &Conn| !c.heard && now.duration_since(c.since) >= SILENT_AFTER;
        let tier = |c: &Conn| match c.phase {
            _ if c.refused => 0,
            Phase::Handshake if silent(c) => 1,
            // Idle between requests, or plain HTTP that never spoke; not a connection
            // whose TLS handshake has just ended, its request on the way.
            Phase::Head if !c.started && (c.served > 0 || silent(c)) => 1,
            Phase::Handler => 3,
            _ => 2,
        };
        let candidates: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                let c = &self.conns[i];
                c.tls.is_some() == secure && !c.authed && !c.closed
            })
            .collect();
        let Some(lowest) = candidates.iter().map(|&i| tier(&self.conns[i])).min() else {
            return false;
        };
        // What each address holds counts all its places, whatever their phase: an address
        // with one connection in the lowest tier and others elsewhere still holds more than
        // a user with one.
        let mut per_ip: Vec<(IpAddr, usize)> = Vec::new();
        for &i in &candidates {
            let ip = self.conns[i].peer.ip();
            match per_ip.iter_mut().find(|(a, _)| *a == ip) {
                Some((_, n)) => *n += 1,
                None => per_ip.push((ip, 1)),
            }
        }
        let held = |ip: IpAddr| per_ip.iter().find(|(a, _)| *a == ip).map_or(0, |p| p.1);
        let candidates: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| tier(&self.conns[i]) == lowest)
            .collect();
        let most = candidates
            .iter()
            .map(|&i| held(self.conns[i].peer.ip()))
            .max()
            .unwrap_or(0);
        let victim = candidates
            .into_iter()
            .filter(|&i| held(self.conns[i].peer.ip()) == most)
            .min_by_key(|&i| self.conns[i].since)
            .expect("a candidate of the address that holds the most");
        let c = self.conns.swap_remove(victim);
        log::debug!(
            "web: {} evicted ({:?}, {} held) for a new connection",
            c.peer,
            c.phase,
            most
        );
        true
    }

    /// A head showed a live session: the connection moves to a place kept for sessions,
    /// if its port has one free (else one of the session's own idle connections gives it
    /// up). A refused head moves it back ([`Self::advance`]).
    fn authenticate(&mut self, i: usize) {
        let secure = self.conns[i].tls.is_some();
        if self.conns[i].authed {
            return;
        }
        let kept = self
            .conns
            .iter()
            .filter(|c| c.tls.is_some() == secure && c.authed && !c.closed)
            .count();
        if kept >= SESSION_PLACES {
            // The oldest of those idle between requests.
            let idle = (0..self.conns.len())
                .filter(|&j| {
                    let c = &self.conns[j];
                    c.tls.is_some() == secure
                        && c.authed
                        && !c.closed
                        && c.phase == Phase::Head
                        && !c.started
                })
                .min_by_key(|&j| self.conns[j].since);
            match idle {
                Some(j) => self.conns[j].closed = true,
                None => return,
            }
        }
        self.conns[i].authed = true;
    }
}

impl Conn {
    fn enter(&mut self, phase: Phase, limit: Duration, now: Instant) {
        if phase == Phase::Head {
            self.started = false;
        }
        self.phase = phase;
        self.since = now;
        self.deadline = now
            .checked_add(limit)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
    }

    /// Whether the front reads from this connection now. Not while a request is with a
    /// handler or its answer goes out: the next request waits in the kernel.
    fn reading(&self) -> bool {
        match self.phase {
            Phase::Handshake | Phase::Head | Phase::Body => true,
            // Until a few chunks wait: then the handler must take some first.
            Phase::Stream => self.input.len() < upload::CHUNKS * CHUNK,
            // A refused body is read once, at the end of its linger (a client that
            // trickles it wakes nobody).
            Phase::Linger if self.refused => false,
            // The rest of an upload not wanted.
            Phase::Handler | Phase::Write | Phase::Linger => self.discard > 0,
        }
    }

    /// Reads and drops, without decrypting, what a refused client sent since its answer
    /// (up to what is left of [`REFUSED_DRAIN`]), so that closing sends it an end of
    /// stream after the answer rather than a reset that could discard the answer.
    fn drop_pending(&mut self) {
        let mut scratch = [0u8; CHUNK];
        // TLS records around the plaintext: a little more than the plaintext itself.
        let mut left = self.discard + self.discard / 16 + 64;
        while left > 0 {
            match self.sock.read(&mut scratch[..left.min(CHUNK)]) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n,
            }
        }
    }

    /// Moves what has come of a streamed body to its handler, as far as the channel takes
    /// it. The whole body sent, the channel closes (the end of the upload) and the
    /// connection waits for the answer.
    fn pump(&mut self, now: Instant) {
        let Some((tx, left)) = &mut self.stream else {
            return;
        };
        while *left > 0 && !self.input.is_empty() {
            let n = self.input.len().min(*left).min(CHUNK);
            match tx.try_send(self.input[..n].to_vec()) {
                Ok(()) => {
                    self.input.drain(..n);
                    *left -= n;
                    self.deadline = now + upload::IDLE;
                }
                Err(TrySendError::Full(_)) => return,
                // The handler stopped reading: its answer is on the way.
                Err(TrySendError::Disconnected(_)) => {
                    self.discard = *left;
                    self.stream = None;
                    self.enter(Phase::Handler, Duration::MAX, now);
                    return;
                }
            }
        }
        if *left == 0 {
            self.stream = None;
            self.enter(Phase::Handler, Duration::MAX, now);
        }
    }

    fn wants_tls_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    fn interest(&self) -> PollFlags {
        let mut f = PollFlags::empty();
        if self.reading() {
            f |= PollFlags::POLLIN;
        }
        if self.phase == Phase::Write || self.wants_tls_write() {
            f |= PollFlags::POLLOUT;
        }
        f
    }

    /// Reads what the socket has into `input`, through TLS if any. A closed or failed
    /// connection is marked closed.
    fn receive(&mut self) {
        let cap = match (&self.phase, &self.head) {
            (Phase::Body, Some(h)) => h.len + h.content_length,
            (Phase::Stream, _) => upload::CHUNKS * CHUNK,
            _ if self.discard > 0 => self.discard.min(upload::CHUNKS * CHUNK),
            _ => MAX_HEAD,
        }
        .min(MAX_HEAD + MAX_BODY);
        let mut chunk = [0u8; CHUNK];
        match &mut self.tls {
            None => loop {
                if self.input.len() >= cap {
                    return;
                }
                match self.sock.read(&mut chunk) {
                    Ok(0) => {
                        self.closed = true;
                        return;
                    }
                    Ok(n) => {
                        self.heard = true;
                        self.input.extend_from_slice(&chunk[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.closed = true;
                        return;
                    }
                }
            },
            Some(tls) => loop {
                if self.input.len() >= cap {
                    return;
                }
                let eof = match tls.read_tls(&mut self.sock) {
                    Ok(0) => true,
                    Ok(_) => {
                        self.heard = true;
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.closed = true;
                        return;
                    }
                };
                let state = match tls.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        log::debug!("web: TLS from {}: {e}", self.peer);
                        // Tell the client why (an alert), if the socket takes it.
                        let _ = tls.write_tls(&mut self.sock);
                        self.closed = true;
                        return;
                    }
                };
                let mut reader = tls.reader();
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) => {
                            self.closed = true;
                            return;
                        }
                        Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.closed = true;
                            return;
                        }
                    }
                }
                if eof || state.peer_has_closed() {
                    self.closed = true;
                    return;
                }
                // Handshake messages to send back.
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.closed = true;
                            return;
                        }
                    }
                }
            },
        }
    }

    fn start_write(&mut self, bytes: Vec<u8>, close: bool, now: Instant) {
        // An answer before the whole upload came: the rest is not wanted.
        if let Some((_, left)) = self.stream.take() {
            self.discard = left;
        }
        self.out = bytes;
        self.sent = 0;
        self.close_after = close || self.retired;
        self.enter(Phase::Write, WRITE_TIMEOUT, now);
    }

    /// A small interim answer (100 Continue), written if the socket takes it now.
    fn send_now(&mut self, bytes: &[u8]) {
        match &mut self.tls {
            None => {
                let _ = self.sock.write(bytes);
            }
            Some(tls) => {
                let _ = tls.writer().write_all(bytes);
                let _ = tls.write_tls(&mut self.sock);
            }
        }
    }

    /// Writes what the socket takes; when the answer is out, closes or waits for the next
    /// request.
    fn flush(&mut self, now: Instant) {
        let done = match self.write_some() {
            Ok(done) => done,
            Err(_) => {
                self.closed = true;
                return;
            }
        };
        if !done || self.phase != Phase::Write {
            return;
        }
        self.served += 1;
        self.out = Vec::new();
        if self.discard > 0 {
            let limit = if self.refused { REFUSED_LINGER } else { LINGER };
            self.enter(Phase::Linger, limit, now);
        } else if self.close_after {
            if let Some(tls) = &mut self.tls {
                tls.send_close_notify();
                let _ = tls.write_tls(&mut self.sock);
            }
            self.closed = true;
        } else {
            self.enter(Phase::Head, IDLE_TIMEOUT, now);
        }
    }

    /// Ok(true) when nothing is left to send.
    fn write_some(&mut self) -> io::Result<bool> {
        let pending =
            |phase: Phase, out: &[u8], sent: usize| phase == Phase::Write && sent < out.len();
        loop {
            match &mut self.tls {
                None => {
                    if !pending(self.phase, &self.out, self.sent) {
                        return Ok(true);
                    }
                    match self.sock.write(&self.out[self.sent..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => self.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(tls) => {
                    let mut progress = false;
                    if pending(self.phase, &self.out, self.sent) {
                        let n = tls.writer().write(&self.out[self.sent..])?;
                        self.sent += n;
                        progress |= n > 0;
                    }
                    while tls.wants_write() {
                        match tls.write_tls(&mut self.sock) {
                            Ok(_) => progress = true,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if !pending(self.phase, &self.out, self.sent) {
                        return Ok(true);
                    }
                    if !progress {
                        return Ok(false);
                    }
                }
            }
        }
    }
}
