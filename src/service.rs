//! The whole card as one value: open the store, load the settings, start every thread;
//! and stop them all again. `run`, `demo`, the tests and the benchmark all start it here.

use crate::board::clock::{self, Clock, NtpConfig};
use crate::board::control::{Control, Restart};
use crate::board::leds::{LedNames, Leds, UpsSignal};
use crate::board::network::{NetSettings, Network};
use crate::board::{watchdog, Board, BoardConfig};
use crate::event::{Event, Events};
use crate::health::Health;
use crate::link::{Link, LinkConfig};
use crate::rs485::{Rs485Config, Rs485Status};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{self, Boot, Store};
use crate::tcp::{self, Sessions, TcpConfig};
use crossbeam_channel::Receiver;
use std::error::Error;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Folder of the database (and, later, keys and certificates).
    pub data: PathBuf,
    /// Serial device of the UPS link.
    pub ups: PathBuf,
    /// Serial device of the RS485 port, if the card has one wired.
    pub rs485: Option<PathBuf>,
    /// Where Modbus TCP listens; default 0.0.0.0 on the configured port.
    pub modbus: Option<SocketAddr>,
    /// Settings for this run only, over the stored ones: (key, value).
    pub overrides: Vec<(String, String)>,
    /// How long a thread may stay busy without progress before the watchdog is no
    /// longer fed (the UPS link and RS485 port get their serial timeouts on top);
    /// default [`STALL_LIMIT`].
    pub stall_limit: Option<Duration>,
    /// The script that applies the network settings (`init/modbus-card-network`); None
    /// leaves the network alone (the demo, tests, a desktop).
    pub network_script: Option<PathBuf>,
    /// Set the system clock when NTP or the user set the time (on the board); otherwise
    /// only the card's own clock moves.
    pub system_clock: bool,
}

/// Default of [`Options::stall_limit`].
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

pub struct Service {
    pub settings: Settings,
    pub link: Link,
    pub sessions: Arc<Sessions>,
    pub rs485: Option<Arc<Rs485Status>>,
    pub data: PathBuf,
    /// Every long-lived thread's progress, which the watchdog is fed on (the web and
    /// console threads register here too).
    pub health: Arc<Health>,
    /// Restart, accounts reset, factory reset: for the button, pages and console.
    pub control: Control,
    /// The card's clock, NTP's status, setting the time by hand.
    pub clock: Clock,
    /// What the network script did; None when the network is left alone.
    pub network: Option<Network>,
    restarts: Receiver<Restart>,
    board: Option<Board>,
    modbus_addr: SocketAddr,
    events: Events,
    shutdown: Shutdown,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
}

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

impl Service {
    pub fn start(options: Options) -> Result<Service> {
        let store = Store::open(&options.data)?;
        let mut settings = store.load_settings()?;
        for (key, value) in &options.overrides {
            settings.set(key, value)?;
        }
        // The RS485 LEDs say "power on" until the link runs.
        let mut leds = Leds::open(&LedNames {
            sysfs: settings.sysfs_root.clone().into(),
            rs485_green: settings.led_rs485_green.clone(),
            rs485_yellow: settings.led_rs485_yellow.clone(),
            net_green: settings.led_net_green.clone(),
            net_yellow: settings.led_net_yellow.clone(),
        });
        leds.show_ups(UpsSignal::PowerOn);
        let boot = store.boot(&boot_id())?;
        let health = Health::new();
        let stall = options.stall_limit.unwrap_or(STALL_LIMIT);
        let (events, rx) = Events::channel();
        let writer = store::spawn_writer(store, rx, health.register("store", stall));
        events.emit(match boot {
            Boot::Cold => Event::ColdBoot,
            Boot::Warm => Event::WarmBoot,
        });
        if let Some(reason) = watchdog::take_last_stall(&options.data) {
            log::warn!(
                "the previous run stopped feeding the watchdog ({reason}) and never stopped \
                 cleanly{}",
                match boot {
                    Boot::Cold => ": the board was reset",
                    Boot::Warm => ", but the board was not reset",
                }
            );
            events.emit(Event::WatchdogReset { reason });
        }
        let clock = Clock::new(&events, options.system_clock);
        // Accounts live in their own module: this hook resets them to the defaults.
        let reset_accounts = Box::new(|| Err("accounts are not part of this firmware".into()));
        let (control, restarts) =
            Control::new(events.clone(), options.data.clone(), reset_accounts);

        let shutdown = Shutdown::new()?;
        let mut threads = Vec::new();
        // An exchange (and the wait for a late answer after it) may take two timeouts.
        let exchange = settings.serial_timeout() * 2;
        let link_config = LinkConfig {
            path: options.ups.clone(),
            baud: settings.ups_baud,
            ups_slave: settings.ups_slave,
            timeout: settings.serial_timeout(),
            poll_every: Duration::from_secs(u64::from(settings.poll_rate_s)),
            frame_gap: settings
                .frame_gap_us
                .map(|us| Duration::from_micros(u64::from(us))),
            heartbeat: health.register("ups link", stall + exchange),
        };
        let (link, link_thread) = match Link::spawn(link_config, events.clone(), shutdown.clone()) {
            Ok(started) => started,
            Err(e) => {
                leds.show_ups(UpsSignal::HardwareError);
                drop((events, control));
                let _ = writer.join();
                return Err(e.into());
            }
        };
        threads.push(("ups link", link_thread));
        let started = (|| -> Result<_> {
            let rs485 = match &options.rs485 {
                Some(path) => {
                    let config = Rs485Config {
                        path: path.clone(),
                        baud: settings.rs485_baud,
                        slave: settings.rs485_slave,
                        ups_slave: settings.ups_slave,
                        lost_after: Duration::from_secs(u64::from(settings.rs485_timeout_s)),
                        // Its relay waits for the link, behind at most every other source.
                        heartbeat: health
                            .register("rs485", stall + exchange * (tcp::MAX_SESSIONS as u32 + 2)),
                    };
                    let (status, thread) =
                        crate::rs485::spawn(config, &link, events.clone(), shutdown.clone())?;
                    threads.push(("rs485", thread));
                    Some(status)
                }
                None => None,
            };

            let addr = options
                .modbus
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], settings.modbus_port)));
            let listener = TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen for Modbus TCP on {addr}: {e}"))?;
            let modbus_addr = listener.local_addr()?;
            let tcp_config = TcpConfig {
                idle_timeout: Duration::from_secs(u64::from(settings.modbus_timeout_s)),
                routing: settings.routing,
                ups_slave: settings.ups_slave,
                heartbeat: health.register("modbus tcp", stall),
            };
            let (sessions, tcp_thread) = tcp::spawn(
                listener,
                tcp_config,
                link.clone(),
                events.clone(),
                shutdown.clone(),
            )?;
            threads.push(("modbus tcp", tcp_thread));

            if !settings.ntp_server.is_empty() {
                let config = NtpConfig::new(
                    &settings.ntp_server,
                    health.register("ntp", stall + clock::REPLY_WAIT),
                );
                let t = clock::spawn_ntp(config, clock.clone(), events.clone(), shutdown.clone())?;
                threads.push(("ntp", t));
            }
            let network = match &options.network_script {
                Some(script) => Some(Network::spawn(
                    script.clone(),
                    options.data.join("network"),
                    NetSettings::of(&settings),
                    events.clone(),
                    health.register("network", stall + crate::board::network::SCRIPT_LIMIT),
                    shutdown.clone(),
                )?),
                None => {
                    log::info!("network settings left to the system (no network script)");
                    None
                }
            };
            Ok((rs485, sessions, modbus_addr, network))
        })();
        let (rs485, sessions, modbus_addr, network) = match started {
            Ok(parts) => parts,
            Err(e) => {
                shutdown.fire();
                link.close();
                for (_, t) in threads {
                    let _ = t.join();
                }
                drop((events, control));
                let _ = writer.join();
                return Err(e);
            }
        };
        log::info!("modbus tcp listening on {modbus_addr}");
        let mut service = Service {
            settings,
            link,
            sessions,
            rs485,
            data: options.data.clone(),
            health,
            control,
            clock,
            network,
            restarts,
            board: None,
            modbus_addr,
            events,
            shutdown,
            threads,
            writer,
        };
        let board = BoardConfig {
            sysfs: service.settings.sysfs_root.clone().into(),
            net_interface: service.settings.net_interface.clone(),
            button_device: service.settings.button_device.clone(),
            watchdog_device: service.settings.watchdog_device.clone(),
            ups_path: options.ups.clone(),
            data: options.data,
        };
        match Board::spawn(
            board,
            leds,
            service.link.status.clone(),
            service.health.clone(),
            service.control.clone(),
        ) {
            Ok(b) => service.board = Some(b),
            Err(e) => {
                service.stop();
                return Err(e.into());
            }
        }
        Ok(service)
    }

    /// Restart requests (from the button, later the pages and console): whoever runs the
    /// service stops it and restarts it, or reboots the board.
    pub fn restarts(&self) -> &Receiver<Restart> {
        &self.restarts
    }

    /// Sets the card's time by hand (the Date and time page, the console), logged as
    /// "Time changed by user" with the step.
    pub fn set_time(&self, to: std::time::SystemTime, by: &str) -> std::result::Result<(), String> {
        self.clock.set_by_user(to, by, &self.events)
    }

    /// The address Modbus TCP really listens on (useful with port 0).
    pub fn modbus_addr(&self) -> SocketAddr {
        self.modbus_addr
    }

    /// Ends every thread, writes the last events, and returns when all is on disk. The
    /// board thread goes last: the watchdog stays fed (or not) until the others ended.
    pub fn stop(self) {
        self.shutdown.fire();
        self.link.close();
        for (name, thread) in self.threads {
            if thread.join().is_err() {
                log::error!("{name} thread panicked");
            }
        }
        if let Some(network) = self.network {
            network.stop();
        }
        if let Some(board) = self.board {
            board.stop();
        }
        self.events.emit(Event::Stopped);
        let dropped = self.events.dropped();
        if dropped > 0 {
            log::warn!("{dropped} events could not be stored: the event queue was full");
        }
        drop(self.events);
        drop(self.control);
        drop(self.link);
        let _ = self.writer.join();
        log::info!("stopped");
    }
}

/// The kernel's id of this boot: a new one after every power-up, the same across service
/// restarts. Tells a cold boot from a warm one.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
