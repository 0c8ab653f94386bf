//! The whole card as one value: open the store, load the settings, start every thread;
//! and stop them all again. `run`, `demo`, the tests and the benchmark all start it here.

use crate::event::{Event, Events};
use crate::link::{Link, LinkConfig};
use crate::rs485::{Rs485Config, Rs485Status};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{self, Boot, Store};
use crate::tcp::{self, Sessions, TcpConfig};
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
}

pub struct Service {
    pub settings: Settings,
    pub link: Link,
    pub sessions: Arc<Sessions>,
    pub rs485: Option<Arc<Rs485Status>>,
    pub data: PathBuf,
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
        let boot = store.boot(&boot_id())?;
        let (events, rx) = Events::channel();
        let writer = store::spawn_writer(store, rx);
        events.emit(match boot {
            Boot::Cold => Event::ColdBoot,
            Boot::Warm => Event::WarmBoot,
        });

        let shutdown = Shutdown::new()?;
        let mut threads = Vec::new();
        let link_config = LinkConfig {
            path: options.ups.clone(),
            baud: settings.ups_baud,
            ups_slave: settings.ups_slave,
            timeout: settings.serial_timeout(),
            poll_every: Duration::from_secs(u64::from(settings.poll_rate_s)),
            frame_gap: settings
                .frame_gap_us
                .map(|us| Duration::from_micros(u64::from(us))),
        };
        let (link, link_thread) = match Link::spawn(link_config, events.clone(), shutdown.clone()) {
            Ok(started) => started,
            Err(e) => {
                drop(events);
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
                evict_idle: Duration::from_secs(u64::from(settings.modbus_evict_idle_s)),
                routing: settings.routing,
                ups_slave: settings.ups_slave,
            };
            let (sessions, tcp_thread) = tcp::spawn(
                listener,
                tcp_config,
                link.clone(),
                events.clone(),
                shutdown.clone(),
            )?;
            threads.push(("modbus tcp", tcp_thread));
            Ok((rs485, sessions, modbus_addr))
        })();
        let (rs485, sessions, modbus_addr) = match started {
            Ok(parts) => parts,
            Err(e) => {
                shutdown.fire();
                link.close();
                for (_, t) in threads {
                    let _ = t.join();
                }
                drop(events);
                let _ = writer.join();
                return Err(e);
            }
        };
        log::info!("modbus tcp listening on {modbus_addr}");
        Ok(Service {
            settings,
            link,
            sessions,
            rs485,
            data: options.data,
            modbus_addr,
            events,
            shutdown,
            threads,
            writer,
        })
    }

    /// The address Modbus TCP really listens on (useful with port 0).
    pub fn modbus_addr(&self) -> SocketAddr {
        self.modbus_addr
    }

    /// Ends every thread, writes the last events, and returns when all is on disk.
    pub fn stop(self) {
        self.shutdown.fire();
        self.link.close();
        for (name, thread) in self.threads {
            if thread.join().is_err() {
                log::error!("{name} thread panicked");
            }
        }
        self.events.emit(Event::Stopped);
        let dropped = self.events.dropped();
        if dropped > 0 {
            log::warn!("{dropped} events could not be stored: the event queue was full");
        }
        drop(self.events);
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
