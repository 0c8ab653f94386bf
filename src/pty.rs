//! Pseudo-terminal pairs: the card's serial ports without the board.
//!
//! The card opens the *slave* side by its path, as it would open /dev/ttyS1; whoever plays
//! the other end (the simulated UPS, a test's RTU master) holds the *master* side. On a pty
//! the master can read the speed the card set on the slave side with tcgetattr, which lets
//! the simulated UPS stay silent unless the card talks at its speed.

use nix::pty::openpty;
use nix::sys::termios::{self, SetArg};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

pub struct Pty {
    /// The end played by the simulated device.
    pub master: File,
    /// Path of the end the card opens.
    pub path: PathBuf,
    /// Kept open so the master never sees a hang-up while the card reopens the slave.
    _slave: OwnedFd,
}

impl Pty {
    /// A new pair with the slave side in raw mode (no echo, no line editing), as a serial
    /// port would be.
    pub fn open() -> io::Result<Pty> {
        let pair = openpty(None, None)?;
        let mut attrs = termios::tcgetattr(&pair.slave)?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(&pair.slave, SetArg::TCSANOW, &attrs)?;
        let path = nix::unistd::ttyname(pair.slave.as_fd())?;
        Ok(Pty {
            master: File::from(pair.master),
            path,
            _slave: pair.slave,
        })
    }
}

/// The speed, in baud, last set on the slave side of the pty whose master is `master`.
///
/// Read with TCGETS2, whose speed field holds the rate however it was set (serial drivers
/// and the serialport crate may use BOTHER, which the classic speed flags cannot show).
pub fn slave_speed(master: &impl AsFd) -> io::Result<u32> {
    let mut attrs = std::mem::MaybeUninit::<libc::termios2>::zeroed();
    // SAFETY: TCGETS2 fills a termios2 struct; the fd is open for the call's duration.
    let rc = unsafe {
        libc::ioctl(
            master.as_fd().as_raw_fd(),
            libc::TCGETS2,
            attrs.as_mut_ptr(),
        )
    };
    if rc == 0 {
        // SAFETY: the ioctl succeeded, so the struct is initialised.
        return Ok(unsafe { attrs.assume_init() }.c_ospeed);
    }
    // No termios2 (older kernels, qemu-user): the classic speed flags, which show every
    // standard rate (the card sets no other where termios2 is missing).
    let e = io::Error::last_os_error();
    if !matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::ENOTTY | libc::EINVAL)
    ) {
        return Err(e);
    }
    let speed = termios::cfgetospeed(&termios::tcgetattr(master)?);
    crate::serial::STANDARD_RATES
        .iter()
        .find(|(_, rate)| *rate == speed)
        .map(|(baud, _)| *baud)
        .ok_or_else(|| io::Error::other(format!("unknown tty speed {speed:?}")))
}

/// Two pseudo-terminals joined like a null-modem cable: what one side writes, the other
/// reads. The card opens one end as its RS485 port; a person's RTU master opens the other.
pub struct NullModem {
    a: PathBuf,
    b: PathBuf,
    stop: crate::shutdown::Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NullModem {
    pub fn open() -> io::Result<NullModem> {
        let (a, b) = (Pty::open()?, Pty::open()?);
        let (pa, pb) = (a.path.clone(), b.path.clone());
        let stop = crate::shutdown::Shutdown::new()?;
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("null-modem".into())
            .spawn(move || relay(a, b, s))?;
        Ok(NullModem {
            a: pa,
            b: pb,
            stop,
            thread: Some(thread),
        })
    }

    /// The end the card opens.
    pub fn card_side(&self) -> &std::path::Path {
        &self.a
    }

    /// The end for the other device.
    pub fn user_side(&self) -> &std::path::Path {
        &self.b
    }
}

impl Drop for NullModem {
    fn drop(&mut self) {
        self.stop.fire();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(mut a: Pty, mut b: Pty, stop: crate::shutdown::Shutdown) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::{Read, Write};
    // The cable: what is written crosses at once whatever else this process does, as on
    // a wire, so a silence the writer keeps is a silence the reader sees.
    crate::rt::make_realtime("null modem");
    let mut buf = [0u8; 1024];
    loop {
        let (ra, rb) = {
            let mut fds = [
                PollFd::new(a.master.as_fd(), PollFlags::POLLIN),
                PollFd::new(b.master.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::NONE).is_err() || stop.is_fired() {
                return;
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
            (ready(&fds[0]), ready(&fds[1]))
        };
        if ra {
            if let Ok(n) = a.master.read(&mut buf) {
                let _ = b.master.write_all(&buf[..n]);
            }
        }
        if rb {
            if let Ok(n) = b.master.read(&mut buf) {
                let _ = a.master.write_all(&buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_sees_the_speed_set_on_the_slave() {
        let pty = Pty::open().unwrap();
        for baud in [9600, 19200, 57600] {
            // As the card opens it (with the classic calls where termios2 is missing).
            let port = crate::serial::Port::open(&pty.path, baud).unwrap();
            assert_eq!(slave_speed(&pty.master).unwrap(), baud);
            drop(port);
        }
    }
}
