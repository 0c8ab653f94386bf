//! The web's two listening sockets, started and stopped while the card runs.
//!
//! `http_enabled` and `https_enabled` go through the settings' one door like any setting:
//! turning a service on binds its port while the change is being checked (a port in use
//! refuses the whole change), and the front takes the new socket between two polls;
//! turning it off closes the socket, so the port stops answering at once, and ends that
//! service's connections once their current answer is out. A port chosen by the system
//! (`:0`, in tests) is bound again at the port it had, so the service comes back where it
//! was.

use crate::live::{Commit, Live};
use crate::settings::Settings;
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

/// Connections the kernel queues for each service before the front accepts them.
const BACKLOG: i32 = 1024;

/// The two web services, as indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http = 0,
    Https = 1,
}

impl Kind {
    pub const BOTH: [Kind; 2] = [Kind::Http, Kind::Https];

    pub fn secure(self) -> bool {
        self == Kind::Https
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Http => "HTTP",
            Kind::Https => "HTTPS",
        }
    }

    fn enabled(self, s: &Settings) -> bool {
        match self {
            Kind::Http => s.http_enabled,
            Kind::Https => s.https_enabled,
        }
    }
}

/// A change for the front: per service, `Some(Some(l))` listen on `l`, `Some(None)` stop.
pub type Change = [Option<Option<TcpListener>>; 2];

pub struct Listeners {
    /// Where each service listens when it is on (from the command line); `None`: never.
    configured: [Option<SocketAddr>; 2],
    /// Where each listens now; `None`: off.
    now: Mutex<[Option<SocketAddr>; 2]>,
    /// Where each listened last: a system-chosen port is bound again there.
    last: Mutex<[Option<SocketAddr>; 2]>,
    pending: Mutex<Change>,
    wake: EventFd,
}

impl Listeners {
    /// `configured`: the HTTP and HTTPS addresses. Nothing is bound yet.
    pub fn new(configured: [Option<SocketAddr>; 2]) -> std::io::Result<Listeners> {
        Ok(Listeners {
            configured,
            now: Mutex::new([None, None]),
            last: Mutex::new(configured),
            pending: Mutex::new([None, None]),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }

    /// Whether `kind` is served at all on this card (it has an address).
    pub fn served(&self, kind: Kind) -> bool {
        self.configured[kind as usize].is_some()
    }

    /// Where `kind` listens now.
    pub fn addr(&self, kind: Kind) -> Option<SocketAddr> {
        self.now.lock()[kind as usize]
    }

    /// Where `kind` listens when it is on: now, or where it last did.
    pub fn home(&self, kind: Kind) -> Option<SocketAddr> {
        self.addr(kind).or(self.last.lock()[kind as usize])
    }

    /// Binds `kind`'s socket, at its last address; the front takes it with [`Self::put`].
    pub fn bind(&self, kind: Kind) -> Result<TcpListener, String> {
        let addr = self.last.lock()[kind as usize]
            .or(self.configured[kind as usize])
            .ok_or_else(|| format!("{} has no address on this card", kind.name()))?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for {} on {addr}: {e}", kind.name()))?;
        // A longer queue of connections not yet accepted: in a flood, a user's connection
        // waits there behind the attackers' (the front takes them fast) instead of having
        // its SYN dropped and sent again a second later.
        let backlog = nix::sys::socket::Backlog::new(BACKLOG).expect("a valid backlog");
        nix::sys::socket::listen(&listener, backlog)
            .map_err(|e| format!("cannot listen for {} on {addr}: {e}", kind.name()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{}: {e}", kind.name()))?;
        Ok(listener)
    }

    /// Hands `change` to the front, which takes it at its next poll; the addresses the
    /// pages show follow at once.
    pub fn put(&self, change: Change) {
        let mut pending = self.pending.lock();
        let (mut now, mut last) = (self.now.lock(), self.last.lock());
        for (i, c) in change.into_iter().enumerate() {
            let Some(c) = c else { continue };
            now[i] = c.as_ref().and_then(|l| l.local_addr().ok());
            if now[i].is_some() {
                last[i] = now[i];
            }
            match &now[i] {
                Some(a) => log::info!("{} listening on {a}", Kind::BOTH[i].name().to_lowercase()),
                None => log::info!("{} stopped", Kind::BOTH[i].name().to_lowercase()),
            }
            pending[i] = Some(c);
        }
        let _ = self.wake.write(1);
    }

    /// What the front must change since it last looked.
    pub fn take(&self) -> Change {
        let _ = self.wake.read();
        std::mem::take(&mut *self.pending.lock())
    }

    /// Readable while a change waits.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Lets the door start and stop the services with their settings.
    pub fn register(self: &Arc<Self>, live: &Live) {
        let me = self.clone();
        live.register(
            "web",
            Box::new(move |old, new| {
                let mut change: Change = [None, None];
                for kind in Kind::BOTH {
                    let on = kind.enabled(new);
                    if on == kind.enabled(old) || !me.served(kind) {
                        continue;
                    }
                    change[kind as usize] = Some(if on { Some(me.bind(kind)?) } else { None });
                }
                if change.iter().all(Option::is_none) {
                    return Ok(None);
                }
                let me = me.clone();
                let commit: Commit = Box::new(move || me.put(change));
                Ok(Some(commit))
            }),
        );
    }
}
