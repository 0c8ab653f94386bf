//! A tty opened as a serial port: 8 data bits, no parity, 1 stop bit, raw, exclusive.
//!
//! The serialport crate opens and configures the device; reads and writes then go straight
//! to the file descriptor with ppoll, so waits have microsecond resolution (the 3.5-character
//! silence at 57600 baud is 1.75 ms) and a thread waits on its port and the shutdown signal
//! at once instead of waking up to check.
//!
//! The serialport crate configures a tty with termios2 (TCGETS2/TCSETS2, for any rate).
//! Where that is missing (older board kernels, qemu-user, which does not translate it), the
//! port is configured with the classic calls and the rate's standard constant instead:
//! every rate the card uses has one.

use crate::poll::{wait_readable, Ready};
use crate::shutdown::Shutdown;
use nix::fcntl::OFlag;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::termios::{self, BaudRate, ControlFlags, SetArg};
use nix::sys::time::TimeSpec;
use serialport::{ClearBuffer, DataBits, FlowControl, Parity, SerialPort, StopBits, TTYPort};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Port {
    tty: TTYPort,
    io: File,
    path: PathBuf,
    baud: u32,
    /// When [`Port::read_until`] last found bytes.
    data_at: Instant,
}

/// What a wait for input ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Bytes were read (appended to the buffer).
    Data(usize),
    /// The deadline passed with nothing to read.
    Timeout,
    /// The service is shutting down.
    Shutdown,
}

impl Port {
    pub fn open(path: &Path, baud: u32) -> io::Result<Port> {
        let tty = match serialport::new(path.to_string_lossy(), baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .open_native()
        {
            Ok(tty) => Ok(tty),
            Err(e) if termios2_missing(&e) => {
                log::info!(
                    "{}: no termios2 ({e}); configured with the classic calls",
                    path.display()
                );
                open_classic(path, baud)
            }
            Err(e) => Err(io::Error::from(e)),
        }
        .map_err(|e| io::Error::other(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: fcntl returns a new descriptor we own (close-on-exec, so children the
        // service starts never hold the port), or -1 which we check.
        let fd = unsafe { libc::fcntl(tty.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let io = unsafe { File::from_raw_fd(fd) };
        Ok(Port {
            tty,
            io,
            path: path.to_owned(),
            baud,
            data_at: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn baud(&self) -> u32 {
        self.baud
    }

    pub fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        match self.tty.set_baud_rate(baud) {
            Ok(()) => {}
            Err(e) if termios2_missing(&e) => set_speed_classic(&self.io, baud)?,
            Err(e) => return Err(io::Error::other(e)),
        }
        self.baud = baud;
        Ok(())
    }

    /// Gives up exclusive use, so the same device can be opened again while this handle
    /// still exists.
    pub fn release(&mut self) {
        let _ = self.tty.set_exclusive(false);
    }

    /// Forgets whatever the driver has received but nobody read.
    pub fn discard_input(&self) -> io::Result<()> {
        self.tty.clear(ClearBuffer::Input).map_err(io::Error::other)
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }

    /// When the last bytes [`Port::read_until`] returned were found: the moment its wait
    /// ended, taken before the read. The bytes were there by then, so a silence counted
    /// from it never ends too soon, and it is as close to their arrival as the thread
    /// can know.
    pub fn data_at(&self) -> Instant {
        self.data_at
    }

    /// Waits until `deadline` for bytes, appending what arrives to `buf` (up to its
    /// capacity); a shutdown ends the wait at once.
    pub fn read_until(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> io::Result<Wait> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_readable(self.io.as_fd(), shutdown, Some(left))? {
                Ready::Shutdown => return Ok(Wait::Shutdown),
                Ready::Timeout => return Ok(Wait::Timeout),
                Ready::Readable => {}
            }
            let woke = Instant::now();
            match read_into(&mut self.io, buf) {
                // Readable yet nothing to read: the device hung up (a USB adapter
                // unplugged, the far end of a pty closed).
                Ok(0) => return Err(io::Error::other(format!("{} hung up", self.path.display()))),
                Ok(n) => {
                    self.data_at = woke;
                    return Ok(Wait::Data(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends what the port has to `buf` (up to its capacity) without waiting: after a
    /// wait said the port is readable. `Ok(0)`: nothing there.
    pub fn read_ready(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match read_into(&mut self.io, buf) {
            Ok(0) => Err(io::Error::other(format!("{} hung up", self.path.display()))),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the bytes already waiting, without blocking, into `scratch` (cleared first,
    /// kept to its capacity; more is read and dropped), and returns how many there were.
    pub fn drain(&mut self, scratch: &mut Vec<u8>) -> io::Result<usize> {
        scratch.clear();
        self.drain_into(scratch)
    }

    /// Like [`Port::drain`], appending to `buf`.
    pub fn drain_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut total = 0;
        let mut overflow = Vec::new();
        while total <= 64 * 1024 {
            let mut fds = [PollFd::new(self.io.as_fd(), PollFlags::POLLIN)];
            let n = ppoll(
                &mut fds,
                Some(TimeSpec::from_duration(Duration::ZERO)),
                None,
            )?;
            if n == 0
                || !fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                break;
            }
            let into = if buf.len() < buf.capacity() {
                &mut *buf
            } else {
                overflow.clear();
                overflow.reserve(256);
                &mut overflow
            };
            match read_into(&mut self.io, into) {
                Ok(0) => return Err(io::Error::other(format!("{} hung up", self.path.display()))),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.io.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.io.as_fd(), PollFlags::POLLOUT)];
                    ppoll(
                        &mut fds,
                        Some(TimeSpec::from_duration(Duration::from_millis(100))),
                        None,
                    )?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The serialport crate's error for a missing termios2: it keeps only the errno's text.
fn termios2_missing(e: &serialport::Error) -> bool {
    use nix::errno::Errno;
    e.kind == serialport::ErrorKind::Unknown
        && [Errno::ENOSYS, Errno::ENOTTY, Errno::EINVAL]
            .iter()
            .any(|errno| e.description == errno.desc())
}

/// Opens a tty as serialport would (exclusive, 8N1 raw, no flow control), with the classic
/// termios calls.
fn open_classic(path: &Path, baud: u32) -> io::Result<TTYPort> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    let mut attrs = termios::tcgetattr(&file)?;
    termios::cfmakeraw(&mut attrs);
    attrs.control_flags |= ControlFlags::CREAD | ControlFlags::CLOCAL;
    attrs.control_flags &= !(ControlFlags::CSTOPB | ControlFlags::CRTSCTS);
    termios::cfsetspeed(&mut attrs, standard_rate(baud)?)?;
    termios::tcsetattr(&file, SetArg::TCSANOW, &attrs)?;
    // Blocking from here, as serialport leaves its ports: reads follow a ppoll.
    nix::fcntl::fcntl(
        file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )?;
    // SAFETY: the descriptor is ours to give; from_raw_fd takes it and makes it exclusive
    // (TIOCEXCL and flock), as serialport's own open does.
    Ok(unsafe { TTYPort::from_raw_fd(file.into_raw_fd()) })
}

/// Changes only the speed, with the classic calls.
fn set_speed_classic(tty: &File, baud: u32) -> io::Result<()> {
    let mut attrs = termios::tcgetattr(tty)?;
    termios::cfsetspeed(&mut attrs, standard_rate(baud)?)?;
    termios::tcsetattr(tty, SetArg::TCSANOW, &attrs)?;
    Ok(())
}

/// The rates the card's links use, with their classic constants.
pub const STANDARD_RATES: [(u32, BaudRate); 9] = [
    (1200, BaudRate::B1200),
    (2400, BaudRate::B2400),
    (4800, BaudRate::B4800),
    (9600, BaudRate::B9600),
    (19_200, BaudRate::B19200),
    (38_400, BaudRate::B38400),
    (57_600, BaudRate::B57600),
    (115_200, BaudRate::B115200),
    (230_400, BaudRate::B230400),
];

fn standard_rate(baud: u32) -> io::Result<BaudRate> {
    STANDARD_RATES
        .iter()
        .find(|(b, _)| *b == baud)
        .map(|(_, rate)| *rate)
        .ok_or_else(|| {
            io::Error::other(format!(
                "{baud} baud needs termios2, which this system lacks"
            ))
        })
}

fn read_into(file: &mut File, buf: &mut Vec<u8>) -> io::Result<usize> {
    let start = buf.len();
    let room = buf.capacity() - start;
    if room == 0 {
        return Err(io::Error::other("receive buffer full"));
    }
    buf.resize(start + room, 0);
    let r = file.read(&mut buf[start..]);
    buf.truncate(start + *r.as_ref().unwrap_or(&0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pty::{slave_speed, Pty};

    /// The path taken where termios2 is missing (qemu-user; .ci/board runs it there): the
    /// port it opens is exclusive, raw 8N1, at the rate asked, and its rate can change.
    #[test]
    fn the_classic_open_configures_the_port_as_serialport_does() {
        let pty = Pty::open().unwrap();
        let tty = open_classic(&pty.path, 19_200).unwrap();
        assert_eq!(slave_speed(&pty.master).unwrap(), 19_200);
        let attrs = termios::tcgetattr(&pty.master).unwrap();
        assert!(attrs.control_flags.contains(ControlFlags::CS8));
        assert!(!attrs
            .control_flags
            .intersects(ControlFlags::PARENB | ControlFlags::CSTOPB));
        assert!(!attrs
            .local_flags
            .intersects(termios::LocalFlags::ICANON | termios::LocalFlags::ECHO));
        // Exclusive: another opener cannot lock it (TIOCEXCL binds only the unprivileged).
        let other = std::fs::OpenOptions::new()
            .read(true)
            .open(&pty.path)
            .unwrap();
        // SAFETY: flock on a descriptor open for the call's duration.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second exclusive lock was granted");
        // SAFETY: a new descriptor of the same tty, owned by the File.
        let file = unsafe { File::from_raw_fd(libc::dup(tty.as_raw_fd())) };
        set_speed_classic(&file, 57_600).unwrap();
        assert_eq!(slave_speed(&pty.master).unwrap(), 57_600);
        let err = set_speed_classic(&file, 12_345).unwrap_err();
        assert!(err.to_string().contains("12345 baud"), "{err}");
    }
}
