//! `modbus-card console`: the serial terminal, relayed to the running service.
//!
//! Init runs it on the USB gadget's tty (init/inittab). It puts the terminal in raw mode
//! (no echo, no line editing, Ctrl-C a byte like any other: the menu does all that) and
//! restores it when it ends, connects to the service's console socket
//! ([`super::serial::SOCKET`]) and passes bytes both ways until either side closes.
//!
//! - With `--tty PATH` it owns the terminal: it prints "Please press Enter to activate
//!   this console.", waits for Enter, serves one login, and starts over after Exit,
//!   inactivity or a service restart; a terminal that goes away (the USB cable pulled)
//!   is opened again.
//! - Without, it serves its standard input and output once and ends: under BusyBox's
//!   `askfirst`, which prints the Enter prompt itself and runs it again.
//!
//! A service that is not running is said so on the terminal.

use super::serial;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, FlushArg, SetArg, Termios};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const ACTIVATE: &str = "Please press Enter to activate this console.";

/// How long to wait before trying again: the service to come back, the tty to reappear.
const RETRY: Duration = Duration::from_secs(2);

/// Serves the terminal; see the module's doc.
pub fn run(data: &Path, tty: Option<&Path>) -> Result<(), String> {
    let socket = serial::socket_path(data);
    let signals = Signals::new().map_err(|e| format!("cannot handle signals: {e}"))?;
    match tty {
        None => {
            let (input, output) = (io::stdin(), io::stdout());
            let _raw = Raw::set(input.as_fd());
            let stream = connect(&socket).map_err(|e| {
                let _ = write_all(output.as_fd(), e.as_bytes());
                e.trim().to_owned()
            })?;
            relay(input.as_fd(), output.as_fd(), stream, &signals);
            Ok(())
        }
        Some(path) => {
            let mut first = true;
            loop {
                let tty = match open(path) {
                    Ok(tty) => tty,
                    Err(e) if first => return Err(format!("{}: {e}", path.display())),
                    Err(_) if signals.wait(RETRY) => return Ok(()),
                    Err(_) => continue,
                };
                first = false;
                if serve(&tty, &socket, &signals) == Ended::Signal {
                    return Ok(());
                }
                // The terminal went away: open it again once it is back.
                drop(tty);
                if signals.wait(RETRY) {
                    return Ok(());
                }
            }
        }
    }
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The service closed the connection (Exit, a timeout, a restart).
    Service,
    /// The terminal closed or failed.
    Terminal,
    Signal,
}

/// The Enter prompt, a login, again and again, on an open tty.
fn serve(tty: &File, socket: &Path, signals: &Signals) -> Ended {
    let _raw = Raw::set(tty.as_fd());
    loop {
        let prompt = format!("\r\n{ACTIVATE}\r\n");
        if write_all(tty.as_fd(), prompt.as_bytes()).is_err() {
            return Ended::Terminal;
        }
        match wait_for_enter(tty, signals) {
            Ended::Service => {}
            other => return other,
        }
        // What was typed with the Enter (an LF after the CR) is not a user name.
        std::thread::sleep(Duration::from_millis(50));
        let _ = termios::tcflush(tty, FlushArg::TCIFLUSH);
        match connect(socket) {
            Ok(stream) => match relay(tty.as_fd(), tty.as_fd(), stream, signals) {
                Ended::Service => {}
                other => return other,
            },
            Err(e) => {
                if write_all(tty.as_fd(), e.as_bytes()).is_err() {
                    return Ended::Terminal;
                }
                if signals.wait(RETRY) {
                    return Ended::Signal;
                }
            }
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// The service's socket, or what to tell the user.
fn connect(socket: &Path) -> Result<UnixStream, String> {
    UnixStream::connect(socket).map_err(|e| {
        format!(
            "\r\nThe card's service is not running ({}: {e}); try again in a moment.\r\n",
            socket.display()
        )
    })
}

/// Reads until CR or LF; [`Ended::Service`] stands for "Enter pressed".
fn wait_for_enter(tty: &File, signals: &Signals) -> Ended {
    let mut buf = [0u8; 64];
    loop {
        match wait(&[tty.as_fd(), signals.fd()]) {
            Err(_) => return Ended::Terminal,
            Ok(ready) if ready[1] => return Ended::Signal,
            Ok(_) => {}
        }
        match (&*tty).read(&mut buf) {
            Ok(0) => return Ended::Terminal,
            Ok(n) if buf[..n].iter().any(|b| matches!(b, b'\r' | b'\n')) => return Ended::Service,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ended::Terminal,
        }
    }
}

/// Bytes both ways until one side closes.
fn relay(
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    mut stream: UnixStream,
    signals: &Signals,
) -> Ended {
    let mut buf = [0u8; 1024];
    let ended = loop {
        let ready = match wait(&[input, stream.as_fd(), signals.fd()]) {
            Ok(ready) => ready,
            Err(_) => break Ended::Terminal,
        };
        if ready[2] {
            break Ended::Signal;
        }
        if ready[1] {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break Ended::Service,
                Ok(n) => {
                    if write_all(output, &buf[..n]).is_err() {
                        break Ended::Terminal;
                    }
                }
            }
        }
        if ready[0] {
            match nix::unistd::read(input.as_raw_fd(), &mut buf) {
                Ok(0) => break Ended::Terminal,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        break Ended::Service;
                    }
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => break Ended::Terminal,
            }
        }
    };
    // The menu sees its terminal close and ends the session, leaving nothing half-made.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    ended
}

/// Waits until one of `fds` is readable, closed or failed; which ones.
fn wait(fds: &[BorrowedFd<'_>]) -> nix::Result<Vec<bool>> {
    let mut polled: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    loop {
        match poll(&mut polled, PollTimeout::NONE) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(nix::errno::Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A terminal in raw mode until dropped; nothing for what is not a terminal (a pipe).
struct Raw<'a> {
    fd: BorrowedFd<'a>,
    saved: Option<Termios>,
}

impl<'a> Raw<'a> {
    fn set(fd: BorrowedFd<'a>) -> Raw<'a> {
        let saved = termios::tcgetattr(fd).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &raw);
        }
        Raw { fd, saved }
    }
}

impl Drop for Raw<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(self.fd, SetArg::TCSADRAIN, saved);
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP as a readable socket, so a wait can end on them and the
/// terminal is restored before the process ends.
struct Signals {
    read: UnixStream,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let (read, write) = UnixStream::pair()?;
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(Signals { read })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Sleeps for `d`; true if a signal came.
    fn wait(&self, d: Duration) -> bool {
        let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(d.as_millis()).unwrap_or(u16::MAX);
        matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
    }
}
