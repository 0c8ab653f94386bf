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
        Ok(Pty { master: File::from(pair.master), path, _slave: pair.slave })
    }
}

/// The speed, in baud, last set on the slave side of the pty whose master is `master`.
///
/// Read with TCGETS2, whose speed field holds the rate however it was set (serial drivers
/// and the serialport crate may use BOTHER, which the classic speed flags cannot show).
pub fn slave_speed(master: &impl AsFd) -> io::Result<u32> {
    let mut attrs = std::mem::MaybeUninit::<libc::termios2>::zeroed();
    // SAFETY: TCGETS2 fills a termios2 struct; the fd is open for the call's duration.
    let rc = unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TCGETS2, attrs.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl succeeded, so the struct is initialised.
    Ok(unsafe { attrs.assume_init() }.c_ospeed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_sees_the_speed_set_on_the_slave() {
        let pty = Pty::open().unwrap();
        for baud in [9600, 19200, 57600] {
            let port = serialport::new(pty.path.to_string_lossy(), baud).open_native().unwrap();
            assert_eq!(slave_speed(&pty.master).unwrap(), baud);
            drop(port);
        }
    }
}
