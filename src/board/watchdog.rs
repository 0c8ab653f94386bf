//! The hardware watchdog (`/dev/watchdog`): opening it arms it, each write feeds it, and
//! writing `V` before closing disarms it (the "magic close") on a clean stop.
//!
//! It is fed only while every watched thread shows progress ([`crate::health`]). When one
//! stalls, feeding stops, and before that the reason is written to a marker file in the
//! data folder; the board then resets, and the next start reads the marker and logs why.
//! If the thread recovers before the reset, feeding resumes and the marker goes.

use crate::health::{Health, Stall};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fed this often while healthy; drivers' timeouts are many seconds.
pub const FEED_EVERY: Duration = Duration::from_secs(1);
/// The marker in the data folder: why feeding stopped.
pub const MARKER: &str = "watchdog-stall";

nix::ioctl_read!(wdioc_getbootstatus, b'W', 2, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);
/// Bit of WDIOC_GETBOOTSTATUS: the last reboot was by this watchdog.
const WDIOF_CARDRESET: libc::c_int = 0x0020;

pub struct Watchdog {
    path: PathBuf,
    file: File,
    marker: PathBuf,
    last_feed: Option<Instant>,
    /// The stall that stopped feeding, while it lasts.
    starving: Option<Stall>,
}

impl Watchdog {
    /// Opens (arms) the device. `data` is where the marker goes.
    pub fn open(path: &Path, data: &Path) -> io::Result<Watchdog> {
        // Non-blocking, so a FIFO without a reader (tests) is an error, never a hang.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("watchdog {}: {e}", path.display())))?;
        let fd = file.as_raw_fd();
        let mut value: libc::c_int = 0;
        // SAFETY: both ioctls write one c_int into `value`; on a file that is not a
        // watchdog they fail with ENOTTY and write nothing.
        if unsafe { wdioc_gettimeout(fd, &mut value) }.is_ok() {
            log::info!("watchdog {} armed, timeout {value} s", path.display());
        } else {
            log::info!("watchdog {} armed", path.display());
        }
        // SAFETY: as above.
        if unsafe { wdioc_getbootstatus(fd, &mut value) }.is_ok() && value & WDIOF_CARDRESET != 0 {
            log::warn!("the last reboot of the board was caused by the watchdog");
        }
        Ok(Watchdog {
            path: path.to_owned(),
            file,
            marker: data.join(MARKER),
            last_feed: None,
            starving: None,
        })
    }

    /// Feeds the watchdog if it is due and every thread is healthy.
    pub fn tend(&mut self, health: &Health, now: Instant) {
        match health.check() {
            Ok(()) => {
                if let Some(stall) = self.starving.take() {
                    log::warn!("watchdog fed again: the stall is over ({stall})");
                    let _ = std::fs::remove_file(&self.marker);
                }
                if self.last_feed.is_none_or(|t| now - t >= FEED_EVERY) {
                    self.feed();
                    self.last_feed = Some(now);
                }
            }
            Err(stall) => {
                if self.starving.is_none() {
                    log::error!("watchdog no longer fed: {stall}; the board will reset");
                    if let Err(e) = write_marker(&self.marker, &stall.to_string()) {
                        log::error!("cannot write {}: {e}", self.marker.display());
                    }
                }
                self.starving = Some(stall);
            }
        }
    }

    fn feed(&mut self) {
        if let Err(e) = self.file.write_all(b"k") {
            log::warn!("watchdog {}: cannot feed: {e}", self.path.display());
        }
    }

    /// Disarms it (magic close): only on a clean stop.
    pub fn close(mut self) {
        match self.file.write_all(b"V") {
            Ok(()) => log::info!("watchdog {} disarmed", self.path.display()),
            Err(e) => log::warn!("watchdog {}: magic close failed: {e}", self.path.display()),
        }
        // A stall that ended the run cleanly is not a reset.
        let _ = std::fs::remove_file(&self.marker);
    }
}

/// Written and synced, so it survives the reset it announces.
fn write_marker(path: &Path, reason: &str) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(reason.as_bytes())?;
    f.sync_all()
}

/// The reason the previous run stopped feeding the watchdog, if it did and never stopped
/// cleanly; the marker is removed.
pub fn take_last_stall(data: &Path) -> Option<String> {
    let path = data.join(MARKER);
    let reason = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    Some(reason.trim().to_owned())
}
