//! The serial terminal's way into the running service.
//!
//! The USB gadget's tty belongs to init, which runs `modbus-card console` on it (see
//! [`super::relay`]); the menu must act inside the service, through its one door. So the
//! service listens on a Unix socket in its data folder ([`SOCKET`], owner only), the
//! relay passes the terminal's bytes through it, and each connection gets a thread of its
//! own here: the login the card's manual shows ("Please Enter User Name :", "Please Enter
//! Password:", not echoed), on the accounts like every login (from [`Peer::Serial`],
//! throttled as the web's), then the menu. A socket left by a service that did not stop
//! cleanly is replaced at start; the socket goes when the service stops, and with it every
//! terminal's connection.

use super::input::{Answer, Keys, Stop, Watch};
use super::{menu, Console};
use crate::accounts::{Channel, LoginError, Peer, Session};
use crate::health::Heartbeat;
use crate::shutdown::Shutdown;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The socket's name in the data folder.
pub const SOCKET: &str = "console.sock";

/// How the event log names the way these users came.
pub const VIA: &str = "serial console";

/// Terminals served at once: the card has one serial console; a few more connections
/// (a relay starting over while the old one closes) are no harm, a flood is.
const MAX_TERMINALS: usize = 4;

/// Wrong logins before the relay starts over with "Please press Enter".
const TRIES: usize = 3;

/// A terminal that takes no output for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET)
}

/// Listens on the data folder's socket and serves each terminal until `shutdown`.
pub fn spawn(
    console: Console,
    data: &Path,
    shutdown: Shutdown,
    beat: Heartbeat,
) -> io::Result<JoinHandle<()>> {
    let path = socket_path(data);
    let listener = bind(&path)?;
    log::info!("serial console listening on {}", path.display());
    std::thread::Builder::new()
        .name("console".into())
        .stack_size(128 * 1024)
        .spawn(move || listen(listener, path, console, shutdown, beat))
}

/// Binds under a name of its own, made owner-only, then takes the socket's name at once,
/// replacing a stale one: nobody else can connect in between.
fn bind(path: &Path) -> io::Result<UnixListener> {
    let tmp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let named = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| listener.set_nonblocking(true));
    if let Err(e) = named {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

fn listen(
    listener: UnixListener,
    path: PathBuf,
    console: Console,
    shutdown: Shutdown,
    beat: Heartbeat,
) {
    // Each terminal's thread, and a handle on its socket to end it with the service.
    let mut terminals: Vec<(UnixStream, JoinHandle<()>)> = Vec::new();
    loop {
        beat.idle();
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(shutdown.fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::NONE);
        beat.busy();
        if shutdown.is_fired() {
            break;
        }
        let (done, running) = terminals.into_iter().partition(|(_, t)| t.is_finished());
        terminals = running;
        for (_, t) in done {
            let _ = t.join();
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                log::warn!("serial console: {e}");
                shutdown.sleep(Duration::from_millis(200));
                continue;
            }
        };
        if terminals.len() >= MAX_TERMINALS {
            let _ = (&stream).write_all(b"\r\nThe console is busy: try again later.\r\n");
            continue;
        }
        let started = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
            .and_then(|()| stream.try_clone())
            .and_then(|handle| {
                let console = console.clone();
                let thread = std::thread::Builder::new()
                    .name("console terminal".into())
                    // As a web handler's: the same hashing, store and door work.
                    .stack_size(512 * 1024)
                    .spawn(move || terminal(&console, stream))?;
                Ok((handle, thread))
            });
        match started {
            Ok(t) => terminals.push(t),
            Err(e) => log::error!("serial console: cannot serve a terminal: {e}"),
        }
    }
    // A closed socket ends each terminal's wait at once; the menu leaves nothing half-made.
    for (handle, _) in &terminals {
        let _ = handle.shutdown(std::net::Shutdown::Both);
    }
    for (_, t) in terminals {
        let _ = t.join();
    }
    let _ = std::fs::remove_file(&path);
}

/// One terminal: the login, then the menu.
fn terminal(console: &Console, mut stream: UnixStream) {
    let timeout = console.accounts.limits().login_timeout;
    let mut last = Instant::now();
    let idle: Watch = Box::new(move |typed| {
        if typed {
            last = Instant::now();
        }
        if last.elapsed() >= timeout {
            Err("No login for a while: the console starts over.".into())
        } else {
            Ok(())
        }
    });
    let mut keys = Keys::new(&mut stream, idle);
    match login(console, &mut keys) {
        Ok(Some(session)) => menu::run_on(console, &mut keys, session, VIA),
        Ok(None) | Err(Stop::Closed) => {}
        Err(Stop::Ended(message)) => {
            let _ = keys.say(&format!("\n{message}"));
        }
    }
    // The listener keeps a handle until its next turn: the relay must see the end now.
    drop(keys);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Asks for a user name and password until a login succeeds; `None` after [`TRIES`]
/// wrong ones, or when logins are refused for now (throttled), said on the terminal.
fn login(console: &Console, keys: &mut Keys<'_>) -> Result<Option<Session>, Stop> {
    let mut failed = 0;
    keys.say("")?;
    while failed < TRIES {
        keys.write("Please Enter User Name : ")?;
        let user = match keys.line(true)? {
            Answer::Text(t) => t.trim().to_owned(),
            Answer::Cancelled => continue,
            Answer::TooLong => {
                keys.say("That name is too long.")?;
                continue;
            }
        };
        if user.is_empty() {
            continue;
        }
        keys.write("Please Enter Password: ")?;
        let password = match keys.line(false)? {
            Answer::Text(t) => t,
            Answer::Cancelled => continue,
            Answer::TooLong => {
                keys.say("That password is too long.")?;
                continue;
            }
        };
        let before = console.accounts.current();
        match console
            .accounts
            .login(&user, &password, Peer::Serial, Channel::Console)
        {
            Ok(session) => {
                if let Some(old) = before.filter(|old| old.token != session.token) {
                    keys.say(&old.ended_notice())?;
                }
                return Ok(Some(session));
            }
            Err(e @ LoginError::Refused { .. }) => {
                failed += 1;
                keys.say(&e.to_string())?;
            }
            Err(e) => {
                keys.say(&e.to_string())?;
                return Ok(None);
            }
        }
    }
    keys.say("Too many failed logins: the console starts over.")?;
    Ok(None)
}
