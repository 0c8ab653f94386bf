//! The whole card as one value: open the store, load the settings, start every thread;
//! and stop them all again. `run`, `demo`, the tests and the benchmark all start it here.
//! Each running part registers with [`Live`] what it does when a setting of its own
//! changes.

use crate::event::{Event, Events};
use crate::link::{Link, LinkConfig};
use crate::live::Live;
use crate::rs485::{Rs485, Rs485Config, Rs485Status};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{self, Boot, Store};
use crate::tcp::{self, Sessions, Tcp, TcpConfig};
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
    /// Where Modbus TCP listens, fixed for this run; default: `modbus_host` on the
    /// configured port.
    pub modbus: Option<SocketAddr>,
    /// The address Modbus TCP listens on, on the configured port; default 0.0.0.0.
    pub modbus_host: Option<std::net::IpAddr>,
    /// Settings for this run only, over the stored ones: (key, value).
    pub overrides: Vec<(String, String)>,
    /// Factory values that differ from the card's on this machine (the demo's Modbus port).
    pub factory: Vec<(String, String)>,
}

pub struct Service {
    /// The settings in force, and the one door to change them.
    pub live: Arc<Live>,
    pub link: Link,
    pub tcp: Tcp,
    pub sessions: Arc<Sessions>,
    pub rs485: Option<Arc<Rs485Status>>,
    pub data: PathBuf,
    events: Events,
    shutdown: Shutdown,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
}

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

impl Service {
    pub fn start(options: Options) -> Result<Service> {
        let store = Store::open(&options.data)?;
        let mut factory = Settings::default();
        for (key, value) in &options.factory {
            factory.set(key, value)?;
        }
        let mut settings = store.load_settings_over(factory.clone())?;
        for (key, value) in &options.overrides {
            settings.set(key, value)?;
        }
        let boot = store.boot(&boot_id())?;
        // The door's own connection: the store thread keeps the other.
        let door_store = Store::open(&options.data)?;
        let (events, rx) = Events::channel();
        let writer = store::spawn_writer(store, rx);
        events.emit(match boot {
            Boot::Cold => Event::ColdBoot,
            Boot::Warm => Event::WarmBoot,
        });

        let shutdown = Shutdown::new()?;
        let mut threads = Vec::new();
        let link_config = link_config(&settings, &options.ups);
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
                    let config = rs485_config(&settings, path);
                    let (port, thread) =
                        crate::rs485::spawn(config, &link, events.clone(), shutdown.clone())?;
                    threads.push(("rs485", thread));
                    Some(port)
                }
                None => None,
            };

            let addr = options.modbus.unwrap_or_else(|| {
                let host = options.modbus_host.unwrap_or([0, 0, 0, 0].into());
                SocketAddr::new(host, settings.modbus_port)
            });
            let listener = TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen for Modbus TCP on {addr}: {e}"))?;
            let (tcp, tcp_thread) = tcp::spawn(
                listener,
                tcp_config(&settings),
                link.clone(),
                events.clone(),
                shutdown.clone(),
            )?;
            threads.push(("modbus tcp", tcp_thread));
            Ok((rs485, tcp))
        })();
        let (rs485, tcp) = match started {
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
        log::info!("modbus tcp listening on {}", tcp.addr());
        let live = Arc::new(Live::new(settings, factory, door_store, events.clone()));
        register_parts(&live, &link, &tcp, rs485.as_ref(), &options);
        Ok(Service {
            live,
            link,
            sessions: tcp.sessions.clone(),
            tcp,
            rs485: rs485.map(|r| r.status),
            data: options.data,
            events,
            shutdown,
            threads,
            writer,
        })
    }

    /// The address Modbus TCP really listens on (useful with port 0).
    pub fn modbus_addr(&self) -> SocketAddr {
        self.tcp.addr()
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.live.current()
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
        // The store thread ends when the last sender of events is gone: the door's too
        // (every thread that could hold it has ended).
        drop(self.events);
        drop(self.live);
        drop(self.link);
        let _ = self.writer.join();
        log::info!("stopped");
    }
}

fn link_config(s: &Settings, path: &std::path::Path) -> LinkConfig {
    LinkConfig {
        path: path.to_path_buf(),
        baud: s.ups_baud,
        ups_slave: s.ups_slave,
        timeout: s.serial_timeout(),
        poll_every: Duration::from_secs(u64::from(s.poll_rate_s)),
        frame_gap: s
            .frame_gap_us
            .map(|us| Duration::from_micros(u64::from(us))),
    }
}

fn tcp_config(s: &Settings) -> TcpConfig {
    TcpConfig {
        allow: s.modbus_allow.clone(),
        writers: s.modbus_write,
        writer_list: s.modbus_writers.clone(),
        idle_timeout: Duration::from_secs(u64::from(s.modbus_timeout_s)),
        evict_idle: Duration::from_secs(u64::from(s.modbus_evict_idle_s)),
        routing: s.routing,
        ups_slave: s.ups_slave,
    }
}

fn rs485_config(s: &Settings, path: &std::path::Path) -> Rs485Config {
    Rs485Config {
        path: path.to_path_buf(),
        baud: s.rs485_baud,
        slave: s.rs485_slave,
        ups_slave: s.ups_slave,
        lost_after: Duration::from_secs(u64::from(s.rs485_timeout_s)),
    }
}

/// What the link, Modbus TCP and RS485 do when their settings change.
fn register_parts(live: &Live, link: &Link, tcp: &Tcp, rs485: Option<&Rs485>, options: &Options) {
    let (link, ups) = (link.clone(), options.ups.clone());
    live.register(
        "ups link",
        Box::new(move |old, new| {
            let config = link_config(new, &ups);
            if config == link_config(old, &ups) {
                return Ok(None);
            }
            let link = link.clone();
            Ok(Some(Box::new(move || link.reconfigure(config))))
        }),
    );
    let tcp = tcp.clone();
    live.register(
        "modbus tcp",
        Box::new(move |old, new| {
            // A new port is bound now, so a port in use refuses the whole change.
            let listener = if new.modbus_port != old.modbus_port {
                let addr = SocketAddr::new(tcp.addr().ip(), new.modbus_port);
                Some(TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?)
            } else {
                None
            };
            let config = tcp_config(new);
            if listener.is_none() && config == tcp_config(old) {
                return Ok(None);
            }
            let tcp = tcp.clone();
            Ok(Some(Box::new(move || {
                tcp.reconfigure(config);
                if let Some(l) = listener {
                    if let Err(e) = tcp.rebind(l) {
                        log::error!("modbus tcp: {e}");
                    }
                }
            })))
        }),
    );
    if let (Some(rs485), Some(path)) = (rs485, options.rs485.clone()) {
        let rs485 = rs485.clone();
        live.register(
            "rs485",
            Box::new(move |old, new| {
                let config = rs485_config(new, &path);
                if config == rs485_config(old, &path) {
                    return Ok(None);
                }
                let rs485 = rs485.clone();
                Ok(Some(Box::new(move || rs485.reconfigure(config))))
            }),
        );
    }
}

/// The kernel's id of this boot: a new one after every power-up, the same across service
/// restarts. Tells a cold boot from a warm one.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
