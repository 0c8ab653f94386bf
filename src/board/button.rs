//! The reset button: a gpio-keys input device (`/dev/input/eventN`) read as Linux
//! `struct input_event` records. Any key event of the device is the button; how long it is
//! held decides the action, taken at release (docs/board.md): 1–3 s restart, 3–6 s accounts and
//! passwords to default, over 6 s factory defaults. Durations are measured on the
//! monotonic clock as the board thread reads the events, so a clock step cannot change them.
//!
//! The device is opened non-blocking and re-opened if it ends (a FIFO whose writer closed,
//! in tests) or fails (a device that went away).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `EV_KEY` of linux/input-event-codes.h.
const EV_KEY: u16 = 0x01;
/// The kernel's timestamp is two `unsigned long`s, even for 64-bit time on 32-bit boards.
const TIME: usize = 2 * std::mem::size_of::<libc::c_ulong>();
/// One record: time, type (u16), code (u16), value (i32); 24 bytes on 64-bit.
pub const RECORD: usize = TIME + 8;

/// Held at least this long: restart.
pub const RESTART_AFTER: Duration = Duration::from_secs(1);
/// Held at least this long: accounts and passwords to default.
pub const ACCOUNTS_AFTER: Duration = Duration::from_secs(3);
/// Held longer than this: factory defaults.
pub const FACTORY_AFTER: Duration = Duration::from_secs(6);
/// A missing or failed device is looked for again this often.
const REOPEN_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Restart,
    ResetAccounts,
    FactoryReset,
}

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::ResetAccounts => "reset accounts and passwords",
            Action::FactoryReset => "reset to factory settings",
        }
    }
}

/// The action a release after `held` takes.
pub fn action_for(held: Duration) -> Option<Action> {
    if held > FACTORY_AFTER {
        Some(Action::FactoryReset)
    } else if held >= ACCOUNTS_AFTER {
        Some(Action::ResetAccounts)
    } else if held >= RESTART_AFTER {
        Some(Action::Restart)
    } else {
        None
    }
}

/// Key events in `bytes` as (value) per whole record: 1 press, 0 release, 2 repeat.
/// Returns the key values and how many bytes were used.
pub fn key_values(bytes: &[u8]) -> (Vec<i32>, usize) {
    let mut values = Vec::new();
    let mut used = 0;
    for record in bytes.chunks_exact(RECORD) {
        let kind = u16::from_ne_bytes([record[TIME], record[TIME + 1]]);
        let value = i32::from_ne_bytes(record[TIME + 4..TIME + 8].try_into().unwrap());
        if kind == EV_KEY {
            values.push(value);
        }
        used += RECORD;
    }
    (values, used)
}

pub struct Button {
    path: PathBuf,
    file: Option<File>,
    last_open: Option<Instant>,
    buf: Vec<u8>,
    pressed_at: Option<Instant>,
    warned: bool,
}

impl Button {
    pub fn new(path: &Path) -> Button {
        let mut b = Button {
            path: path.to_owned(),
            file: None,
            last_open: None,
            buf: Vec::with_capacity(RECORD * 64),
            pressed_at: None,
            warned: false,
        };
        b.reopen(Instant::now());
        b
    }

    fn reopen(&mut self, now: Instant) {
        self.file = None;
        self.last_open = Some(now);
        self.buf.clear();
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => {
                if self.warned {
                    log::info!("reset button: {} opened", self.path.display());
                }
                self.warned = false;
                self.file = Some(f);
            }
            Err(e) if !self.warned => {
                log::warn!(
                    "reset button: cannot open {}: {e}; trying again every {} s",
                    self.path.display(),
                    REOPEN_EVERY.as_secs()
                );
                self.warned = true;
            }
            Err(_) => {}
        }
    }

    /// The device to wait on, if open; a missing one is looked for again here.
    pub fn fd(&mut self, now: Instant) -> Option<BorrowedFd<'_>> {
        if self.file.is_none() && self.last_open.is_none_or(|t| now - t >= REOPEN_EVERY) {
            self.reopen(now);
        }
        self.file.as_ref().map(|f| f.as_fd())
    }

    /// Reads what is there; returns how long the button was held, if it was released.
    pub fn read(&mut self, now: Instant) -> Option<Duration> {
        let file = self.file.as_mut()?;
        let mut chunk = [0u8; RECORD * 16];
        let mut press = None;
        loop {
            match file.read(&mut chunk) {
                Ok(0) => {
                    // The writer of a FIFO went away: open again for the next one.
                    self.reopen(now);
                    break;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    let (values, used) = key_values(&self.buf);
                    self.buf.drain(..used);
                    for v in values {
                        match v {
                            1 if self.pressed_at.is_none() => self.pressed_at = Some(now),
                            0 => {
                                if let Some(at) = self.pressed_at.take() {
                                    press = Some(now - at);
                                }
                            }
                            _ => {} // autorepeat, or a second press without a release
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("reset button: {}: {e}", self.path.display());
                    self.file = None;
                    self.last_open = Some(now);
                    break;
                }
            }
        }
        press
    }

    /// How long it has been held, while it is.
    pub fn held(&self, now: Instant) -> Option<Duration> {
        self.pressed_at.map(|t| now - t)
    }

    /// When the action a release would take changes next, while held.
    pub fn next_threshold(&self, now: Instant) -> Option<Instant> {
        let at = self.pressed_at?;
        [
            RESTART_AFTER,
            ACCOUNTS_AFTER,
            FACTORY_AFTER + Duration::from_millis(1),
        ]
        .into_iter()
        .map(|d| at + d)
        .find(|t| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut r = vec![0u8; TIME];
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&code.to_ne_bytes());
        r.extend_from_slice(&value.to_ne_bytes());
        r
    }

    #[test]
    fn records_are_the_kernel_s_size() {
        assert_eq!(RECORD, std::mem::size_of::<libc::input_event>());
    }

    #[test]
    fn key_events_are_picked_out_of_whole_records() {
        let mut bytes = record(EV_KEY, 0x198, 1); // KEY_RESTART pressed
        bytes.extend(record(0, 0, 0)); // EV_SYN
        bytes.extend(record(EV_KEY, 0x198, 2)); // repeat
        bytes.extend(record(EV_KEY, 0x198, 0));
        bytes.extend(&record(EV_KEY, 1, 1)[..10]); // half a record
        let (values, used) = key_values(&bytes);
        assert_eq!(values, [1, 2, 0]);
        assert_eq!(used, 4 * RECORD);
    }

    #[test]
    fn the_held_time_picks_the_action() {
        let s = Duration::from_secs;
        assert_eq!(action_for(Duration::from_millis(999)), None);
        assert_eq!(action_for(s(1)), Some(Action::Restart));
        assert_eq!(
            action_for(Duration::from_millis(2999)),
            Some(Action::Restart)
        );
        assert_eq!(action_for(s(3)), Some(Action::ResetAccounts));
        assert_eq!(action_for(s(6)), Some(Action::ResetAccounts));
        assert_eq!(
            action_for(s(6) + Duration::from_millis(1)),
            Some(Action::FactoryReset)
        );
        assert_eq!(action_for(s(600)), Some(Action::FactoryReset));
    }
}
