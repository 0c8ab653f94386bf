//! The board: LEDs, reset button, watchdog, network settings, clock, restart.
//!
//! Each device is a Linux file named by a setting ([`crate::settings`]: `sysfs_root`,
//! `led_*`, `net_interface`, `button_device`, `watchdog_device`), so tests point them at
//! a temporary folder and FIFOs and drive the same code as the board.
//!
//! One board thread does what must keep time together: it shows the LED patterns (and
//! flashes the LEDs itself where the kernel's timer trigger is missing), reads the button
//! and shows what a release would do while it is held, and feeds the watchdog while every
//! thread is healthy. It wakes at the LEDs' edges (4 times a second) and at button events.
//! The NTP client ([`clock`]) and the network apply script ([`network`]) wait on the
//! network, so each has a thread of its own. The board thread stops last, after the
//! serial threads, so a thread that hangs while stopping still gets the board reset.

pub mod button;
pub mod clock;
pub mod control;
pub mod leds;
pub mod network;
pub mod sntp;
pub mod watchdog;

use crate::health::Health;
use crate::link::LinkStatus;
use crate::live::Who;
use crate::poll::{wait_readable, Ready};
use crate::shutdown::Shutdown;
use button::{Action, Button};
use control::Control;
use leds::{Leds, NetIndicator, Pattern, Patterns, UpsIndicator};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use watchdog::Watchdog;

/// What the board thread watches and drives.
pub struct BoardConfig {
    /// Where sysfs is (the network interface's files).
    pub sysfs: PathBuf,
    pub net_interface: String,
    /// Empty: no button.
    pub button_device: String,
    /// Empty: no watchdog.
    pub watchdog_device: String,
    /// The UPS port: its device node missing means a hardware error.
    pub ups_path: PathBuf,
    /// The data folder, for the watchdog's marker.
    pub data: PathBuf,
}

/// The running board thread. Dropping it ends the thread with the watchdog left armed
/// (the board resets); only [`Board::stop`] disarms it.
pub struct Board {
    shutdown: Shutdown,
    clean: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Board {
    /// Starts the board thread with the LEDs already opened (they showed power-on while
    /// the service started). A watchdog that cannot be opened (another program holds it)
    /// is logged as an error and the card runs on: its gateway matters more.
    pub fn spawn(
        config: BoardConfig,
        leds: Leds,
        link: Arc<LinkStatus>,
        health: Arc<Health>,
        control: Control,
    ) -> std::io::Result<Board> {
        let watchdog = match config.watchdog_device.as_str() {
            "" => None,
            path => Watchdog::open(path.as_ref(), &config.data)
                .map_err(|e| log::error!("{e}; running without the watchdog"))
                .ok(),
        };
        let button = match config.button_device.as_str() {
            "" => None,
            path => Some(Button::new(path.as_ref())),
        };
        let shutdown = Shutdown::new()?;
        let clean = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            clean: clean.clone(),
            ups: UpsIndicator::new(link, config.ups_path.clone()),
            net: NetIndicator::new(&config.sysfs, &config.net_interface),
            leds,
            button,
            watchdog,
            health,
            control,
            shutdown: shutdown.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("board".into())
            .stack_size(128 * 1024)
            .spawn(move || worker.run())?;
        Ok(Board {
            shutdown,
            clean,
            thread: Some(thread),
        })
    }

    /// Turns the LEDs off, disarms the watchdog and ends the thread: the clean stop.
    pub fn stop(self) {
        self.clean.store(true, Ordering::SeqCst);
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.shutdown.fire();
        if let Some(Err(_)) = self.thread.take().map(JoinHandle::join) {
            log::error!("board thread panicked");
        }
    }
}

struct Worker {
    /// Set before the stop only when it is clean: then the watchdog is disarmed.
    clean: Arc<AtomicBool>,
    leds: Leds,
    ups: UpsIndicator,
    net: NetIndicator,
    button: Option<Button>,
    watchdog: Option<Watchdog>,
    health: Arc<Health>,
    control: Control,
    shutdown: Shutdown,
}

impl Worker {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            let patterns = self.patterns(now);
            self.leds.show(patterns, now);
            if let Some(w) = &mut self.watchdog {
                w.tend(&self.health, now);
            }
            // Without LEDs or a watchdog only the button (or the stop) wakes the thread.
            let mut until = if self.leds.any() || self.watchdog.is_some() {
                self.leds.next_edge(now)
            } else {
                now + Duration::from_secs(3600)
            };
            if let Some(t) = self.button.as_ref().and_then(|b| b.next_threshold(now)) {
                until = until.min(t);
            }
            let timeout = until.saturating_duration_since(Instant::now());
            let ready = match self.button.as_mut().and_then(|b| b.fd(now)) {
                Some(fd) => wait_readable(fd, &self.shutdown, Some(timeout)),
                None => Ok(if self.shutdown.sleep(timeout) {
                    Ready::Shutdown
                } else {
                    Ready::Timeout
                }),
            };
            match ready {
                Ok(Ready::Shutdown) => break,
                Ok(Ready::Readable) => self.read_button(),
                Ok(Ready::Timeout) => {}
                Err(e) => {
                    log::error!("board: {e}");
                    if self.shutdown.sleep(leds::HALF_PERIOD) {
                        break;
                    }
                }
            }
        }
        self.leds.show([Pattern::Off; 4], Instant::now());
        match self.watchdog.take() {
            Some(w) if self.clean.load(Ordering::SeqCst) => w.close(),
            Some(_) => log::warn!("watchdog left armed: the service did not stop cleanly"),
            None => {}
        }
    }

    fn patterns(&mut self, now: Instant) -> Patterns {
        let ups = self.ups.signal(now);
        let (ng, ny) = self.net.patterns(now);
        let held = self.button.as_ref().and_then(|b| b.held(now));
        // While the button is held, all four say what a release would do.
        match held.and_then(button::action_for) {
            Some(Action::Restart) => [Pattern::On, Pattern::Off, Pattern::On, Pattern::Off],
            Some(Action::ResetAccounts) => [Pattern::Off, Pattern::On, Pattern::Off, Pattern::On],
            Some(Action::FactoryReset) => [Pattern::Flash; 4],
            None => {
                let (g, y) = ups.patterns();
                [g, y, ng, ny]
            }
        }
    }

    fn read_button(&mut self) {
        let Some(button) = self.button.as_mut() else {
            return;
        };
        let Some(held) = button.read(Instant::now()) else {
            return;
        };
        let secs = held.as_secs_f32();
        let Some(action) = button::action_for(held) else {
            log::info!("reset button released after {secs:.1} s: too short, nothing done");
            return;
        };
        log::warn!("reset button held {secs:.1} s: {}", action.describe());
        let who = Who {
            user: "button".into(),
            via: format!("held {secs:.1} s"),
            role: crate::accounts::Role::Admin,
        };
        let result = match action {
            Action::Restart => {
                self.control.restart(&who);
                Ok(())
            }
            Action::ResetAccounts => self.control.reset_accounts(&who),
            Action::FactoryReset => self.control.factory_reset(&who),
        };
        if let Err(e) = result {
            log::error!("reset button: {e}");
        }
    }
}
