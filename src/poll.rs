//! Waiting, for the threads that serve descriptors: on some descriptors, on the service's
//! shutdown, or on a value another thread hands over (a new listener, new settings).

use crate::shutdown::Shutdown;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// What ended a wait on one descriptor.
pub enum Ready {
    Readable,
    Timeout,
    Shutdown,
}

/// Waits for any of `fds` (those given) to be readable, for `timeout` (None: forever), or
/// for shutdown. Returns which were readable, and whether shutdown came.
pub fn wait_any<const N: usize>(
    fds: [Option<BorrowedFd<'_>>; N],
    shutdown: &Shutdown,
    timeout: Option<Duration>,
) -> io::Result<([bool; N], bool)> {
    let mut polled = Vec::with_capacity(N + 1);
    polled.push(PollFd::new(shutdown.fd(), PollFlags::POLLIN));
    let mut at = [None; N];
    for (i, fd) in fds.iter().enumerate() {
        if let Some(fd) = fd {
            at[i] = Some(polled.len());
            polled.push(PollFd::new(*fd, PollFlags::POLLIN));
        }
    }
    loop {
        match ppoll(&mut polled, timeout.map(TimeSpec::from_duration), None) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let ready = |i: usize| polled[i].revents().is_some_and(|r| !r.is_empty());
    Ok((at.map(|i| i.is_some_and(ready)), ready(0)))
}

/// Waits for `fd` to be readable, for `timeout` (None: forever), or for shutdown.
pub fn wait_readable(
    fd: BorrowedFd<'_>,
    shutdown: &Shutdown,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let ([readable], stop) = wait_any([Some(fd)], shutdown, timeout)?;
    Ok(if stop {
        Ready::Shutdown
    } else if readable {
        Ready::Readable
    } else {
        Ready::Timeout
    })
}

/// A new value for a thread that waits on descriptors: `put` stores it and wakes the
/// thread, which takes it between two pieces of work.
pub struct Update<T> {
    value: Mutex<Option<T>>,
    wake: EventFd,
}

impl<T> Update<T> {
    pub fn new() -> std::io::Result<Update<T>> {
        Ok(Update {
            value: Mutex::new(None),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }

    pub fn put(&self, value: T) {
        *self.value.lock() = Some(value);
        let _ = self.wake.write(1);
    }

    /// The newest value put since the last take.
    pub fn take(&self) -> Option<T> {
        let _ = self.wake.read();
        self.value.lock().take()
    }

    /// Readable while a value waits.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}
