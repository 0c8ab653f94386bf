//! The SSH console (docs/console.md): a real SSH server (russh) whose only service is the menu.
//!
//! - One thread, `ssh`, runs the server on a single-threaded runtime. Password hashing
//!   runs on a blocking pool of at most [`LOGIN_THREADS`], so a login never stalls the
//!   other connections; each menu runs on a thread of its own ([`term`]).
//! - Password and keyboard-interactive authentication against the card's accounts (the
//!   same throttling and events as the web); `none` and public keys never succeed.
//! - Only a pty and a shell, which is the menu: exec, subsystems (sftp), port and agent
//!   forwarding and X11 are refused ([`handler`]).
//! - One console session at a time: a new login ends the one before (the accounts say so)
//!   and the connection that held it is told why and closed (by its menu, which watches
//!   its session); the new user is told whose session ended.
//! - Pre-authentication is bounded: at most [`MAX_WAITING`] connections waiting to log in
//!   (when full, the address that holds the most loses its oldest, so a flood from one
//!   address never pushes out somebody else), each for at most [`LOGIN_GRACE`].
//! - Modern algorithms only ([`config`]): no SHA-1, no CBC, strict key exchange.
//! - `ssh_enabled` starts and stops it live, as the web's services ([`Place`]).

mod handler;
pub mod host_key;
pub mod term;

use crate::console::Console;
use crate::health::Heartbeat;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use russh::keys::{Algorithm, PrivateKey};
use russh::{cipher, kex, mac, MethodKind, MethodSet, Preferred, SshId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::Notify;

/// Connections waiting to log in, at most.
pub const MAX_WAITING: usize = 64;
/// How long a connection may take to log in.
pub const LOGIN_GRACE: Duration = Duration::from_secs(60);
/// Authentication tries on one connection.
pub const MAX_AUTH_TRIES: usize = 6;
/// Threads hashing passwords at once (the hasher itself takes one at a time).
pub const LOGIN_THREADS: usize = 2;
/// How long a connection that must end has to say goodbye before it is cut.
const GOODBYE: Duration = Duration::from_secs(1);
/// How long the stopping service waits for its SSH users to read their goodbye: a client
/// that never reads must not hold the service's stop past 2 s.
const STOP_GOODBYE: Duration = Duration::from_millis(1500);
/// How often the thread tells the watchdog it is alive: it counts as stalled only when a
/// beat is this much later than its limit (the service registers it so).
pub const BEAT: Duration = Duration::from_secs(5);

/// Where the SSH console listens: fixed by the command line, bound while `ssh_enabled`.
/// A port chosen by the system (`:0`, in tests) is bound again at the port it had.
pub struct Place {
    now: Mutex<Option<SocketAddr>>,
    last: Mutex<SocketAddr>,
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

enum Command {
    Listen(std::net::TcpListener),
    /// Close the socket, then say so.
    Stop(std::sync::mpsc::SyncSender<()>),
}

impl Place {
    pub fn new(configured: SocketAddr) -> Arc<Place> {
        Arc::new(Place {
            now: Mutex::new(None),
            last: Mutex::new(configured),
            commands: Mutex::new(None),
        })
    }

    /// Where the SSH console listens now; None while it is off.
    pub fn addr(&self) -> Option<SocketAddr> {
        *self.now.lock()
    }

    /// Where it listens when it is on.
    pub fn home(&self) -> SocketAddr {
        self.addr().unwrap_or(*self.last.lock())
    }

    fn bind(&self) -> Result<std::net::TcpListener, String> {
        let addr = *self.last.lock();
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for SSH on {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("SSH: {e}"))?;
        Ok(listener)
    }

    /// Hands the server a new socket, or tells it to stop (and waits until the port is
    /// closed, so "off" means off when the change returns); the address shown follows.
    fn put(&self, listener: Option<std::net::TcpListener>) {
        let now = listener.as_ref().and_then(|l| l.local_addr().ok());
        let (closed, is_closed) = std::sync::mpsc::sync_channel(1);
        let command = match listener {
            Some(l) => Command::Listen(l),
            None => Command::Stop(closed),
        };
        *self.now.lock() = now;
        match now {
            Some(a) => {
                *self.last.lock() = a;
                log::info!("ssh listening on {a}");
            }
            None => log::info!("ssh stopped"),
        }
        if let Some(commands) = &*self.commands.lock() {
            if commands.send(command).is_ok() && now.is_none() {
                let _ = is_closed.recv_timeout(GOODBYE);
            }
        }
    }
}

/// Starts the SSH console's thread; it listens at once if `ssh_enabled` is on, and
/// follows the setting from then on. The host key is made on the first start.
pub fn spawn(
    place: Arc<Place>,
    data: &Path,
    console: Console,
    beat: Heartbeat,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, String> {
    let key = host_key::load_or_make(data)?;
    log::info!("ssh host key {}", host_key::fingerprint(&key));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(LOGIN_THREADS)
        .thread_name("ssh login")
        .thread_stack_size(256 * 1024)
        .build()
        .map_err(|e| format!("SSH: {e}"))?;
    let (tx, commands) = mpsc::unbounded_channel();
    *place.commands.lock() = Some(tx);
    if console.live.current().ssh_enabled {
        place.put(Some(place.bind()?));
    }
    register(&place, &console);
    let shared = Arc::new(Shared {
        config: Arc::new(config(key)),
        console,
        conns: Mutex::new(Vec::new()),
        menus: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
    });
    std::thread::Builder::new()
        .name("ssh".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let server = shared.clone();
            runtime.block_on(run(server, commands, shutdown, beat));
            // Dropping the runtime ends every connection's tasks: each menu's input closes
            // and its thread returns.
            drop(runtime);
            let menus = std::mem::take(&mut *shared.menus.lock());
            for menu in menus {
                let _ = menu.join();
            }
        })
        .map_err(|e| format!("SSH: {e}"))
}

/// Lets the settings' door start and stop the server.
fn register(place: &Arc<Place>, console: &Console) {
    let place = place.clone();
    console.live.register(
        "ssh",
        Box::new(move |old, new| {
            if old.ssh_enabled == new.ssh_enabled {
                return Ok(None);
            }
            let listener = if new.ssh_enabled {
                Some(place.bind()?)
            } else {
                None
            };
            let place = place.clone();
            Ok(Some(Box::new(move || place.put(listener))))
        }),
    );
}

/// The server's settings: modern algorithms only, as ssh-audit wants them.
fn config(key: PrivateKey) -> russh::server::Config {
    const KEX: &[kex::Name] = &[
        kex::MLKEM768X25519_SHA256,
        kex::CURVE25519,
        kex::CURVE25519_PRE_RFC_8731,
        kex::EXTENSION_SUPPORT_AS_SERVER,
        // Strict key exchange (Terrapin, CVE-2023-48795).
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
    ];
    const CIPHERS: &[cipher::Name] = &[
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_GCM,
        cipher::AES_128_GCM,
        cipher::AES_256_CTR,
        cipher::AES_128_CTR,
    ];
    // Encrypt-then-MAC only, SHA-2 only.
    const MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];
    russh::server::Config {
        server_id: SshId::Standard(Cow::Owned(format!(
            "SSH-2.0-modbus-card_{}",
            crate::firmware::version::current()
        ))),
        methods: methods(),
        // Every refusal takes this long, whatever the reason (unknown user, wrong password).
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH asks with `none` first to learn the methods: answer that at once.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        // The menu reads what a person types: small windows and queues.
        window_size: 64 * 1024,
        maximum_packet_size: 32 * 1024,
        channel_buffer_size: 16,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            key: Cow::Borrowed(&[Algorithm::Ed25519]),
            cipher: Cow::Borrowed(CIPHERS),
            mac: Cow::Borrowed(MACS),
            ..Preferred::default()
        },
        max_auth_attempts: MAX_AUTH_TRIES,
        // Before login the grace time bounds a connection, after it the menu's inactivity
        // timeout; keepalives find the peers that vanished.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// Password and keyboard-interactive: the card's accounts have passwords only.
fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::Password, MethodKind::KeyboardInteractive][..])
}

/// What the server's tasks share.
struct Shared {
    config: Arc<russh::server::Config>,
    console: Console,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// The menus' threads, joined when the server ends.
    menus: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
}

impl Shared {
    fn forget(&self, id: u64) {
        self.conns.lock().retain(|c| c.id != id);
    }

    /// Ends every other logged-in connection that has no menu: its console session was
    /// taken over. A menu sees that itself within a second, says so and ends, and its
    /// connection with it.
    fn taken_over(&self, by: u64, why: &str) {
        for c in self.conns.lock().iter() {
            if c.id != by && c.logged_in() && !c.has_menu() {
                c.end(why);
            }
        }
    }

    fn add_menu(&self, thread: JoinHandle<()>) {
        let mut menus = self.menus.lock();
        menus.retain(|t| !t.is_finished());
        menus.push(thread);
    }
}

/// One client connection.
struct Conn {
    id: u64,
    ip: IpAddr,
    since: Instant,
    logged_in: AtomicBool,
    end: Mutex<End>,
    /// Wakes the connection's task when it must end.
    kick: Notify,
    /// The console session it opened, logged out when the connection ends.
    token: Mutex<Option<String>>,
}

#[derive(Default)]
struct End {
    /// Why the connection must end, for the user; set once.
    why: Option<String>,
    /// Dropped to close the menu's input.
    hangup: Option<crossbeam_channel::Sender<()>>,
    menu: bool,
}

impl Conn {
    fn logged_in(&self) -> bool {
        self.logged_in.load(Relaxed)
    }

    fn ending(&self) -> bool {
        self.end.lock().why.is_some()
    }

    fn has_menu(&self) -> bool {
        self.end.lock().menu
    }

    /// Asks the connection to end, telling the user `why` if a menu runs.
    fn end(&self, why: &str) {
        let mut end = self.end.lock();
        if end.why.is_none() {
            end.why = Some(why.to_owned());
        }
        end.hangup = None;
        drop(end);
        self.kick.notify_one();
    }

    /// A menu starts on this connection, unless it is ending; `hangup` ends its input.
    fn start_menu(&self, hangup: crossbeam_channel::Sender<()>) -> bool {
        let mut end = self.end.lock();
        if end.why.is_some() {
            return false;
        }
        end.hangup = Some(hangup);
        end.menu = true;
        true
    }

    fn farewell(&self) -> Option<String> {
        self.end.lock().why.clone()
    }
}

/// The server: accepts while listening, follows on/off commands, ends with the service.
async fn run(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: Shutdown,
    beat: Heartbeat,
) {
    // The shutdown pipe turns readable when the service stops.
    let stop = match shutdown.fd().try_clone_to_owned().and_then(|fd| {
        // SAFETY: the AsyncFd owns this duplicate descriptor, open for all its life.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| std::io::Error::other(e.to_string()))
    }) {
        Ok(fd) => fd,
        Err(e) => {
            log::error!("ssh: cannot watch for shutdown: {e}");
            return;
        }
    };
    let mut listener: Option<tokio::net::TcpListener> = None;
    let mut beats = tokio::time::interval(BEAT);
    loop {
        tokio::select! {
            _ = stop.readable() => break,
            command = commands.recv() => match command {
                Some(Command::Listen(l)) => match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => listener = Some(l),
                    Err(e) => log::error!("ssh: {e}"),
                },
                Some(Command::Stop(closed)) => {
                    listener = None;
                    let _ = closed.send(());
                    end_all(&shared, "The SSH console has been turned off.");
                }
                None => break,
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => admit(&shared, stream, peer),
                // Out of descriptors, a connection reset before accept: try again shortly.
                Err(e) => {
                    log::warn!("ssh: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = beats.tick() => beat.busy(),
        }
    }
    drop(listener);
    end_all(&shared, "The card is stopping.");
    let deadline = Instant::now() + STOP_GOODBYE;
    while !shared.conns.lock().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn end_all(shared: &Shared, why: &str) {
    for c in shared.conns.lock().iter() {
        c.end(why);
    }
}

/// Takes a new connection, making room among those waiting to log in if need be.
fn admit(shared: &Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let conn = Arc::new(Conn {
        id: shared.next_id.fetch_add(1, Relaxed),
        ip: peer.ip(),
        since: Instant::now(),
        logged_in: AtomicBool::new(false),
        end: Mutex::new(End::default()),
        kick: Notify::new(),
        token: Mutex::new(None),
    });
    {
        let mut conns = shared.conns.lock();
        let waiting: Vec<&Arc<Conn>> = conns
            .iter()
            .filter(|c| !c.logged_in() && !c.ending())
            .collect();
        if waiting.len() >= MAX_WAITING {
            if let Some(victim) = evictee(&waiting) {
                log::info!(
                    "ssh: {} connections waiting to log in: one from {} dropped",
                    waiting.len(),
                    victim.ip
                );
                victim.end("Too many connections waiting to log in.");
            }
        }
        conns.push(conn.clone());
    }
    tokio::spawn(serve(shared.clone(), conn, stream));
}

/// Among connections waiting to log in: the oldest of the address that holds the most.
fn evictee<'a>(waiting: &[&'a Arc<Conn>]) -> Option<&'a Arc<Conn>> {
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    for c in waiting {
        *per_ip.entry(c.ip).or_default() += 1;
    }
    let most = per_ip.values().copied().max()?;
    waiting
        .iter()
        .filter(|c| per_ip[&c.ip] == most)
        .min_by_key(|c| c.since)
        .copied()
}

/// One connection, from the SSH banner to its end.
async fn serve(shared: Arc<Shared>, conn: Arc<Conn>, stream: tokio::net::TcpStream) {
    let deadline = tokio::time::Instant::now() + LOGIN_GRACE;
    // The session's task cannot be aborted from here: a duplicate of the socket lets this
    // task shut the connection down whatever state that task is in.
    let socket = std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned().ok();
    let handler = handler::Handler::new(shared.clone(), conn.clone(), deadline);
    let started = tokio::select! {
        s = russh::server::run_stream(shared.config.clone(), stream, handler) => s.ok(),
        _ = tokio::time::sleep_until(deadline) => None,
        _ = conn.kick.notified() => None,
    };
    if let Some(mut session) = started {
        let handle = session.handle();
        let grace = tokio::time::sleep_until(deadline);
        tokio::pin!(grace);
        let (mut done, mut grace_over) = (false, false);
        let why = loop {
            tokio::select! {
                _ = &mut session => {
                    done = true;
                    break None;
                }
                _ = &mut grace, if !grace_over => {
                    grace_over = true;
                    if !conn.logged_in() {
                        break Some("No login within the grace time.".to_owned());
                    }
                }
                _ = conn.kick.notified() => {
                    // A menu says why and closes its channel itself: give it a moment.
                    if conn.has_menu() {
                        done = tokio::time::timeout(GOODBYE, &mut session).await.is_ok();
                    }
                    break conn.farewell();
                }
            }
        };
        if let (Some(why), false) = (why, done) {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, why, String::new())
                .await;
            // Before login the message is a courtesy (it waits for the key exchange): a
            // connection that never logs in is cut at once.
            let wait = if conn.logged_in() {
                GOODBYE
            } else {
                Duration::from_millis(100)
            };
            let _ = tokio::time::timeout(wait, &mut session).await;
        }
    }
    if let Some(socket) = socket {
        use std::os::fd::AsRawFd;
        let _ = nix::sys::socket::shutdown(socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
    shared.forget(conn.id);
    if let Some(token) = conn.token.lock().take() {
        shared.console.accounts.logout(&token);
    }
}
