//! The whole card as one value: open the store, load the settings, start every thread;
//! and stop them all again. `run`, `demo`, the tests and the benchmark all start it here.

use crate::accounts::{Accounts, Limits, Mac};
use crate::event::{Event, Events};
use crate::link::{Link, LinkConfig};
use crate::rs485::{Rs485Config, Rs485Status};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{self, Boot, Store};
use crate::tcp::{self, Sessions, TcpConfig};
use crate::web::{Web, WebConfig};
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

/// How users reach the card: its web listeners and its identity.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Where plain HTTP listens (while `http_enabled`); `None`: not served.
    pub http: Option<SocketAddr>,
    /// Where HTTPS listens (while `https_enabled`); `None`: not served.
    pub https: Option<SocketAddr>,
    /// The card's MAC address; `None`: the first network interface's.
    pub mac: Option<Mac>,
}

pub struct Service {
    pub settings: Settings,
    pub link: Link,
    pub sessions: Arc<Sessions>,
    pub rs485: Option<Arc<Rs485Status>>,
    pub accounts: Arc<Accounts>,
    pub data: PathBuf,
    modbus_addr: SocketAddr,
    web: Option<Web>,
    events: Events,
    shutdown: Shutdown,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
}

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

impl Service {
    /// The card without its web interface.
    pub fn start(options: Options) -> Result<Service> {
        Service::start_with(options, Access::default())
    }

    pub fn start_with(options: Options, access: Access) -> Result<Service> {
        let store = Store::open(&options.data)?;
        let mut settings = store.load_settings()?;
        for (key, value) in &options.overrides {
            settings.set(key, value)?;
        }
        let boot = store.boot(&boot_id())?;
        let mac = match access.mac {
            Some(mac) => mac,
            None => Mac::of_interfaces(&settings.net_interface).ok_or(
                "the card's MAC address could not be read from any network interface; give it with --mac",
            )?,
        };
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
        let mut web = None;
        let started = (|| -> Result<_> {
            let accounts = Arc::new(Accounts::open(
                &options.data,
                mac,
                Limits::from_settings(&settings),
                events.clone(),
            )?);
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
            let web_config = WebConfig {
                http: access.http.filter(|_| settings.http_enabled),
                https: access.https.filter(|_| settings.https_enabled),
            };
            if web_config.http.is_some() || web_config.https.is_some() {
                let parts = crate::web::Parts {
                    accounts: accounts.clone(),
                    link: link.status.clone(),
                    sessions: sessions.clone(),
                    rs485: rs485.clone(),
                    events: events.clone(),
                    data: options.data.clone(),
                };
                web = Some(Web::start(&web_config, parts, shutdown.clone())?);
            }
            Ok((rs485, sessions, modbus_addr, accounts))
        })();
        let (rs485, sessions, modbus_addr, accounts) = match started {
            Ok(parts) => parts,
            Err(e) => {
                shutdown.fire();
                link.close();
                for (_, t) in threads {
                    let _ = t.join();
                }
                if let Some(web) = web {
                    web.join();
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
            accounts,
            data: options.data,
            modbus_addr,
            web,
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

    /// Where plain HTTP really listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(Web::http_addr)
    }

    /// Where HTTPS really listens, if it does.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(Web::https_addr)
    }

    /// Ends every thread, writes the last events, and returns when all is on disk.
    pub fn stop(self) {
        self.shutdown.fire();
        self.link.close();
        if let Some(web) = self.web {
            web.join();
        }
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
        // The accounts send events too: the store thread ends when the last sender goes.
        drop(self.accounts);
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
