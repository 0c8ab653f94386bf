//! One signal that ends every thread at once.
//!
//! It is the read end of a pipe whose write end is dropped on shutdown: the read end then
//! polls as readable (hang-up), so threads wait on their port *and* the shutdown with one
//! ppoll, wake at once when asked to stop, and never wake up just to check a flag.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    read: OwnedFd,
    write: parking_lot::Mutex<Option<OwnedFd>>,
    fired: AtomicBool,
}

impl Shutdown {
    pub fn new() -> std::io::Result<Shutdown> {
        // Close-on-exec: a child the service starts must not keep the write end alive.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok(Shutdown {
            inner: Arc::new(Inner {
                read,
                write: parking_lot::Mutex::new(Some(write)),
                fired: AtomicBool::new(false),
            }),
        })
    }

    /// Asks every thread holding a clone to stop.
    pub fn fire(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        self.inner.write.lock().take();
    }

    pub fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Readable once fired; for ppoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.read.as_fd()
    }

    /// Sleeps for `d`, or less if shutdown comes first. Returns true when fired.
    pub fn sleep(&self, d: Duration) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::ppoll(
            &mut fds,
            Some(nix::sys::time::TimeSpec::from_duration(d)),
            None,
        );
        self.is_fired()
    }
}
