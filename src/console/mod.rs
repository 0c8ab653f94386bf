//! The console (SPEC §9): one menu over any terminal, and its two hosts, SSH and the
//! serial (USB gadget) terminal. The menu knows nothing of either: it reads and writes
//! bytes, echoes what it reads, and acts through the same parts as the pages (the
//! settings' one door, the accounts, the card's controls), so the checks, messages and
//! events are the same wherever a user comes from.

pub mod input;
pub mod menu;
pub mod relay;
pub mod serial;
pub mod ssh;

use crate::accounts::{Accounts, Session};
use crate::board::clock::Clock;
use crate::board::control::Control;
use crate::board::network::NetWatch;
use crate::event::Events;
use crate::live::Live;
use std::io::{self, Read, Write};
use std::sync::Arc;
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

/// Everything the menu acts on; cheap to clone, one per session.
#[derive(Clone)]
pub struct Console {
    pub accounts: Arc<Accounts>,
    pub live: Arc<Live>,
    pub control: Control,
    pub clock: Clock,
    /// What the network script did (the address DHCP gave); None when the network is
    /// left to the system.
    pub network: Option<NetWatch>,
    pub events: Events,
    /// The UPS link, for the UPS's line on the title screen; `None` without one.
    pub link: Option<Arc<crate::link::LinkStatus>>,
}

impl Console {
    /// Serves the menu to `session` (already logged in, on [`crate::accounts::Channel::Console`])
    /// until Exit, inactivity (`login_timeout_s`), the session ending, or the terminal
    /// closing. A password that must change is changed first. `via` says how the user came,
    /// for the event log: "ssh 192.0.2.1", "serial console".
    pub fn run(&self, term: &mut dyn Terminal, session: Session, via: &str) {
        menu::run(self, term, session, via)
    }
}
