//! The console (docs/console.md): one menu over any terminal, and its two hosts, SSH and the
//! serial (USB gadget) terminal. The menu knows nothing of either: it reads and writes
//! bytes, echoes what it reads, and acts through the same parts as the pages (the
//! settings' one door, the accounts, the card's controls), so the checks, messages and
//! events are the same wherever a user comes from.

pub mod input;
pub mod menu;
pub mod relay;
pub mod serial;
pub mod ssh;

use std::io::{self, Read, Write};
use std::time::Duration;

/// A terminal the menu runs on: bytes in (raw, not echoed), bytes out.
pub trait Terminal: Read + Write + Send {
    /// How long a read waits for input; `None`: for ever. A read that waits longer fails
    /// with [`io::ErrorKind::WouldBlock`] or [`io::ErrorKind::TimedOut`]; a read of 0
    /// bytes means the terminal is gone.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Terminal for std::os::unix::net::UnixStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
}

/// What the menu acts on: the card as the web sees it too ([`crate::card::Card`]).
pub type Console = crate::card::Card;
