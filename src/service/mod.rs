//! The whole card as one value: open the store, load the settings, start every thread;
//! and stop them all again. `run`, `demo`, the tests and the benchmark all start it here.
//! Each running part registers with [`Live`] what it does when a setting of its own
//! changes. Every thread is owned by a value that stops it ([`owned`]), so the service
//! stops by dropping them: the last started first, the board after them all, and the store
//! thread last of all, which writes their last events.

mod follow;
mod owned;

use crate::accounts::{Accounts, Limits, Mac};
use crate::board::clock::{self, Clock, Ntp};
use crate::board::control::{Control, Restart};
use crate::board::leds::{LedNames, Leds, UpsSignal};
use crate::board::network::{self, NetSettings, Network};
use crate::board::{watchdog, Board, BoardConfig};
use crate::card::Card;
use crate::console::{ssh, Console};
use crate::event::{Event, Events};
use crate::firmware::{self, Refusal, Slots, Step, Upgrader};
use crate::health::{Health, Limit};
use crate::link::{Link, LinkConfig};
use crate::live::{Live, Who};
use crate::rs485::{Rs485, Rs485Config, Rs485Status};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::{self, Boot, Store};
use crate::tcp::mbtls::{self, Mbtls};
use crate::tcp::{self, Sessions, Tcp, TcpConfig};
use crate::web::{Web, WebConfig};
use crossbeam_channel::Receiver;
use follow::follow;
use owned::{Owned, Threads};
use parking_lot::Mutex;
use std::error::Error;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
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
    /// How long a thread may stay busy without progress before the watchdog is no
    /// longer fed (the UPS link gets two serial timeouts on top); default [`STALL_LIMIT`].
    pub stall_limit: Option<Duration>,
    /// The script that applies the network settings (`init/modbus-card-network`); None
    /// leaves the network alone (the demo, tests, a desktop).
    pub network_script: Option<PathBuf>,
    /// Set the system clock when NTP or the user set the time (on the board); otherwise
    /// only the card's own clock moves.
    pub system_clock: bool,
    /// The A/B install this service runs from (`/opt/modbus-card` on the card); None: no
    /// firmware upgrades (the demo, tests, a desktop).
    pub firmware: Option<PathBuf>,
    /// Where plain HTTP listens (while `http_enabled`); `None`: not served.
    pub http: Option<SocketAddr>,
    /// Where HTTPS listens (while `https_enabled`); `None`: not served.
    pub https: Option<SocketAddr>,
    /// Where the SSH console listens (while `ssh_enabled`); `None`: not served.
    pub ssh: Option<SocketAddr>,
    /// Where Modbus/TCP Security listens (while `mbtls_enabled`); `None`: not served.
    pub mbtls: Option<SocketAddr>,
    /// The card's MAC address; `None`: that of `net_interface`, else of the first other
    /// interface that has one.
    pub mac: Option<Mac>,
    /// The multicast DNS port DNS-SD announces on (5353 on the card, while
    /// `mdns_enabled`); `None`: no announcements (the tests, unless they ask; the demo).
    pub mdns_port: Option<u16>,
    /// Where DNS-SD announces, in place of `net_interface` (the demo: `lo`).
    pub mdns_interface: Option<String>,
}

/// How long after an upgrade over the network the service restarts into it.
pub const UPGRADE_RESTART_AFTER: Duration = Duration::from_secs(2);

/// Default of [`Options::stall_limit`].
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

pub struct Service {
    /// The settings in force, and the one door to change them.
    pub live: Arc<Live>,
    pub link: Link,
    pub tcp: Tcp,
    pub sessions: Arc<Sessions>,
    /// Modbus/TCP Security, when served.
    pub mbtls: Option<Mbtls>,
    pub rs485: Option<Arc<Rs485Status>>,
    /// Users, sessions, logins: shared by the web and the console.
    pub accounts: Arc<Accounts>,
    pub data: PathBuf,
    /// Every long-lived thread's progress, which the watchdog is fed on (the web and
    /// console threads register here too).
    pub health: Arc<Health>,
    /// Restart, accounts reset, factory reset: for the button, pages and console.
    pub control: Control,
    /// The card's clock, NTP's status.
    pub clock: Clock,
    /// What the network script did; None when the network is left alone.
    pub network: Option<Network>,
    /// Firmware upgrades, when the service runs from an A/B install.
    pub upgrader: Option<Arc<Upgrader>>,
    /// The console's menu and what it acts on, for its hosts (SSH, the serial terminal).
    pub console: Console,
    /// [`Service::upgrade`], shared with the `/firmware` page.
    network_upgrade: crate::web::Upgrade,
    /// Where the SSH console listens, when the card serves it.
    ssh: Option<Arc<ssh::Place>>,
    restarts: Receiver<Restart>,
    /// The web's listeners (None when not served); its threads are among `threads`.
    web: Arc<Mutex<Option<Web>>>,
    events: Events,
    shutdown: Shutdown,
    /// Set by [`Service::stop`]: only a clean stop disarms the watchdog.
    clean: bool,
    threads: Threads,
    /// It watches the others, so it ends after them though it starts after most.
    board: Option<Board>,
    writer: Option<store::Writer>,
    /// Remote syslog, fed by the store thread: it ends after it.
    pub syslog: crate::syslog::Syslog,
    syslog_thread: Option<Owned>,
}

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

impl Service {
    pub fn start(options: Options) -> Result<Service> {
        let store = Store::open(&options.data)?;
        // Before this start's events: Modbus/TCP Security judges certificates no earlier.
        let last_event_s = store.events(1)?.first().map(|e| e.at_ms.div_euclid(1000));
        let mut factory = Settings::default();
        for (key, value) in &options.factory {
            factory.set(key, value)?;
        }
        let mut settings = store.load_settings_over(factory.clone())?;
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
        let mac = match options.mac {
            Some(mac) => mac,
            None => Mac::of_interfaces(&settings.net_interface).ok_or(
                "the card's MAC address could not be read from any network interface; give it with --mac",
            )?,
        };
        // The door's own connection: the store thread keeps the other.
        let door_store = Store::open(&options.data)?;
        let health = Health::new();
        let stall = options.stall_limit.unwrap_or(STALL_LIMIT);
        let (events, rx) = Events::channel();
        // Remote syslog sees each event once the store thread wrote it; its thread stops
        // after the store thread (declared first, dropped last).
        let (syslog_stop, syslog_stopped) = crossbeam_channel::bounded::<()>(0);
        let (syslog, syslog_thread) = crate::syslog::Syslog::spawn(
            crate::syslog::Config::of(&settings),
            crate::syslog::origin(&mac),
            &options.data,
            syslog_stopped,
        )?;
        let syslog_owned = Owned::thread("syslog", syslog_thread, move || drop(syslog_stop));
        let writer = store::spawn_tapped_writer(
            store,
            rx,
            health.register("store", stall),
            Some(Box::new(syslog.tap())),
        );
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
        let accounts = Arc::new(Accounts::open(
            &options.data,
            mac,
            Limits::from_settings(&settings),
            events.clone(),
        )?);

        // The one door, ready before any thread that may change a setting starts.
        let live = Arc::new(Live::new(settings, factory, door_store, events.clone()));
        let settings = live.current();
        let reset_accounts = {
            let accounts = accounts.clone();
            Box::new(move || accounts.reset_to_default().map_err(|e| e.to_string()))
        };
        let reset_certificates = {
            let data = options.data.clone();
            Box::new(move || crate::web::certs::forget(&data).map_err(|e| e.to_string()))
        };
        let (control, restarts) = Control::new(
            events.clone(),
            live.clone(),
            reset_accounts,
            reset_certificates,
        );

        let upgrader = options.firmware.as_ref().map(|root| {
            let events = events.clone();
            Arc::new(Upgrader::new(
                root,
                &options.data,
                Box::new(move |e| events.emit(e)),
            ))
        });
        let network_upgrade = network_upgrade(
            upgrader.clone(),
            live.clone(),
            control.clone(),
            events.clone(),
        );

        let shutdown = Shutdown::new()?;
        let ssh_place = options.ssh.map(ssh::Place::new);
        // Declared after the writer: on an early return the threads stop first, then the
        // store thread, which writes their last events.
        let mut threads = Threads::default();
        let link_config = link_config(&settings, &options.ups);
        let link_beat = health.register("ups link", stall + link_config.timeout * 2);
        let link_limit = link_beat.limit();
        let (link, link_thread) =
            match Link::spawn(link_config, events.clone(), shutdown.clone(), link_beat) {
                Ok(started) => started,
                Err(e) => {
                    leds.show_ups(UpsSignal::HardwareError);
                    return Err(e.into());
                }
            };
        threads.push(Owned::thread("ups link", link_thread, {
            // The link ends once its queue is closed too; its waiting callers are answered.
            let (shutdown, link) = (shutdown.clone(), link.clone());
            move || {
                shutdown.fire();
                link.close();
            }
        }));
        // The UPS's events and history, from what the link's polling reads.
        let history = match crate::history::History::open(&options.data) {
            Ok(h) => Some(h),
            Err(e) => {
                log::error!("no UPS history: {e}");
                None
            }
        };
        let recent = history
            .as_ref()
            .map(crate::history::History::recent)
            .unwrap_or_default();
        let watch = crate::ups_watch::spawn(
            link.status.clone(),
            events.clone(),
            history,
            shutdown.clone(),
            health.register("ups watch", stall),
        )?;
        threads.push(Owned::thread("ups watch", watch, stops(&shutdown)));
        let web = Arc::new(Mutex::new(None));
        let started = (|| -> Result<_> {
            let rs485 = match &options.rs485 {
                Some(path) => {
                    let config = rs485_config(&settings, path);
                    let (port, thread) = crate::rs485::spawn(
                        config,
                        &link,
                        events.clone(),
                        shutdown.clone(),
                        health.register("rs485", stall),
                    )?;
                    threads.push(Owned::thread("rs485", thread, stops(&shutdown)));
                    Some(port)
                }
                None => None,
            };

            let addr = options.modbus.unwrap_or_else(|| {
                let host = options.modbus_host.unwrap_or([0, 0, 0, 0].into());
                SocketAddr::new(host, settings.modbus_port)
            });
            let listener = match settings.modbus_enabled {
                true => Some(
                    TcpListener::bind(addr)
                        .map_err(|e| format!("cannot listen for Modbus TCP on {addr}: {e}"))?,
                ),
                false => None,
            };
            let (tcp, tcp_thread) = tcp::spawn(
                listener,
                addr,
                tcp_config(&settings),
                link.clone(),
                events.clone(),
                shutdown.clone(),
                health.register("modbus tcp", stall),
            )?;
            threads.push(Owned::thread("modbus tcp", tcp_thread, stops(&shutdown)));
            let mbtls = match options.mbtls {
                Some(addr) => {
                    let listener = match settings.mbtls_enabled {
                        true => Some(TcpListener::bind(addr).map_err(|e| {
                            format!("cannot listen for Modbus/TCP Security on {addr}: {e}")
                        })?),
                        false => None,
                    };
                    let (mbtls, thread) = mbtls::spawn(
                        addr,
                        &options.data,
                        last_event_s,
                        &tcp,
                        link.clone(),
                        events.clone(),
                        shutdown.clone(),
                        health.register("modbus/tcp security", stall),
                    )?;
                    threads.push(Owned::thread(
                        "modbus/tcp security",
                        thread,
                        stops(&shutdown),
                    ));
                    mbtls.switch(listener);
                    register_mbtls(&live, &mbtls);
                    Some(mbtls)
                }
                None => None,
            };

            let (ntp, ntp_thread) = clock::spawn_ntp(
                clock::NtpConfig::new(&settings.ntp_server),
                clock.clone(),
                events.clone(),
                shutdown.clone(),
                health.register("ntp", stall + clock::REPLY_WAIT),
            )?;
            threads.push(Owned::thread("ntp", ntp_thread, stops(&shutdown)));
            let network = match &options.network_script {
                Some(script) => {
                    let (network, thread) = Network::spawn(
                        script.clone(),
                        options.data.join("network"),
                        NetSettings::of(&settings),
                        events.clone(),
                        health.register("network", stall + network::SCRIPT_LIMIT),
                        shutdown.clone(),
                    )?;
                    threads.push(Owned::thread("network", thread, stops(&shutdown)));
                    Some(network)
                }
                None => {
                    log::info!("network settings left to the system (no network script)");
                    None
                }
            };
            // What the web and the console act on.
            let card = Card {
                accounts: accounts.clone(),
                live: live.clone(),
                control: control.clone(),
                clock: clock.clone(),
                network: network.as_ref().map(Network::watcher),
                events: events.clone(),
                link: link.status.clone(),
            };
            // Every part follows its settings before anyone can change them.
            register_parts(&live, &link, &tcp, rs485.as_ref(), &options);
            register_board(&live, &ntp, network.as_ref(), link_limit.clone(), stall);
            register_accounts(&live, &accounts);
            follow(
                &live,
                "syslog",
                syslog.clone(),
                crate::syslog::Config::of,
                crate::syslog::Syslog::apply,
            );
            syslog.set_known({
                let accounts = accounts.clone();
                Box::new(move |user| {
                    accounts
                        .users()
                        .is_ok_and(|users| users.iter().any(|u| u.name == user))
                })
            });
            let web_config = WebConfig {
                http: options.http,
                https: options.https,
            };
            if web_config.http.is_some() || web_config.https.is_some() {
                let parts = crate::web::Parts {
                    card: card.clone(),
                    frames: link.frames.clone(),
                    sessions: tcp.sessions.clone(),
                    mbtls_sessions: mbtls.as_ref().map(|m| m.sessions.clone()),
                    refused: tcp.refused.clone(),
                    modbus: tcp.clone(),
                    rs485: rs485.as_ref().map(|r| r.status.clone()),
                    upgrade: network_upgrade.clone(),
                    upgradable: upgrader.is_some(),
                    data: options.data.clone(),
                    health: health.clone(),
                    stall,
                    ssh: ssh_place
                        .clone()
                        .map(|place| Arc::new(move || place.home()) as crate::web::SshHome),
                    history: recent.clone(),
                    syslog: syslog.clone(),
                    mbtls: mbtls.clone(),
                };
                *web.lock() = Some(Web::start(&web_config, parts, shutdown.clone())?);
                let web = web.clone();
                threads.push(Owned::part("web", stops(&shutdown), move || {
                    let started = web.lock().take();
                    if let Some(web) = started {
                        web.join();
                    }
                }));
            }
            Ok((rs485, tcp, mbtls, network, card))
        })();
        let (rs485, tcp, mbtls, network, card) = started?;
        log::info!("modbus tcp listening on {}", tcp.addr());
        let board_config = BoardConfig {
            sysfs: settings.sysfs_root.clone().into(),
            net_interface: settings.net_interface.clone(),
            button_device: settings.button_device.clone(),
            watchdog_device: settings.watchdog_device.clone(),
            ups_path: options.ups.clone(),
            data: options.data.clone(),
        };
        let console = card.clone();
        // The serial terminal's way in; the card runs on without it, said in the log.
        let beat = health.register("console", stall);
        match crate::console::serial::spawn(console.clone(), &options.data, shutdown.clone(), beat)
        {
            Ok(thread) => threads.push(Owned::thread("console", thread, stops(&shutdown))),
            Err(e) => log::error!("no serial console: {e}"),
        }
        let mut service = Service {
            console,
            live,
            link,
            sessions: tcp.sessions.clone(),
            tcp,
            mbtls,
            rs485: rs485.map(|r| r.status),
            accounts,
            data: options.data,
            health,
            control,
            clock,
            network,
            upgrader,
            network_upgrade,
            ssh: ssh_place,
            restarts,
            web,
            events,
            shutdown,
            clean: false,
            threads,
            board: None,
            writer: Some(writer),
            syslog: syslog.clone(),
            syslog_thread: Some(syslog_owned),
        };
        match Board::spawn(
            board_config,
            leds,
            service.link.status.clone(),
            service.health.clone(),
            service.control.clone(),
        ) {
            Ok(board) => service.board = Some(board),
            Err(e) => {
                service.stop();
                return Err(e.into());
            }
        }
        if let Err(e) = service.start_firmware(options.firmware.as_deref()) {
            service.stop();
            return Err(e);
        }
        if let Err(e) = service.start_ssh(stall) {
            service.stop();
            return Err(e);
        }
        if let Some(port) = options.mdns_port {
            service.start_dns_sd(port, mac, options.mdns_interface.clone())?;
        }
        Ok(service)
    }

    /// DNS-SD announcements of the services in force, followed once a second and at once
    /// on a setting change.
    fn start_dns_sd(&mut self, mdns_port: u16, mac: Mac, interface: Option<String>) -> Result<()> {
        use crate::discovery::{self, Service as Announced, Wanted};
        let (poke_tx, poke) = crossbeam_channel::bounded(1);
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        self.live.register(
            "dns-sd",
            Box::new(move |_, _| {
                let poke = poke_tx.clone();
                Ok(Some(Box::new(move || {
                    let _ = poke.try_send(());
                })))
            }),
        );
        let wanted = {
            let (live, tcp, web) = (self.live.clone(), self.tcp.clone(), self.web.clone());
            let (ssh, mbtls, link) = (
                self.ssh.clone(),
                self.mbtls.clone(),
                self.link.status.clone(),
            );
            Box::new(move || {
                let s = live.current();
                let mut services = std::collections::BTreeMap::new();
                services.insert(Announced::Modbus, tcp.addr());
                if let Some(web) = web.lock().as_ref() {
                    if let Some(a) = web.https_addr() {
                        services.insert(Announced::Https, a);
                    }
                    if let Some(a) = web.http_addr() {
                        services.insert(Announced::Http, a);
                    }
                }
                if let Some(a) = ssh.as_ref().and_then(|s| s.addr()) {
                    services.insert(Announced::Ssh, a);
                }
                if let Some(a) = mbtls.as_ref().and_then(Mbtls::addr) {
                    services.insert(Announced::MbapS, a);
                }
                Wanted {
                    on: s.mdns_enabled,
                    interface: interface.clone().unwrap_or_else(|| s.net_interface.clone()),
                    services,
                    ups: discovery::Ups::of(&link.ups.lock().tables),
                }
            })
        };
        let identity = discovery::Identity {
            mac,
            version: crate::firmware::version::current().to_string(),
        };
        let thread = discovery::spawn(identity, wanted, mdns_port, poke, stop)?;
        self.threads
            .push(Owned::thread("dns-sd", thread, move || drop(stop_tx)));
        Ok(())
    }

    /// With an A/B install: the rollback made before this start in the log, and the
    /// trial's confirmation when this is the version on trial.
    fn start_firmware(&mut self, root: Option<&std::path::Path>) -> Result<()> {
        let Some(root) = root else {
            return Ok(());
        };
        let slots = Slots::open(root)?;
        let health = self.health.clone();
        let web = self.http_addr().is_some() || self.https_addr().is_some();
        let healthy = Box::new(move || healthy(&health, web));
        let trial =
            firmware::trial::start(slots, healthy, self.events.clone(), self.shutdown.clone())?;
        if let Some(thread) = trial {
            self.threads
                .push(Owned::thread("trial", thread, stops(&self.shutdown)));
        }
        Ok(())
    }

    /// The SSH console's thread, when the card serves it.
    fn start_ssh(&mut self, stall: Duration) -> Result<()> {
        let Some(place) = self.ssh.clone() else {
            return Ok(());
        };
        // Busy from one beat to the next (its loop waits on many things at once): stalled
        // only when a beat is `stall` late.
        let beat = self.health.register("ssh", stall + ssh::BEAT);
        let thread = ssh::spawn(
            place,
            &self.data,
            self.console.clone(),
            beat,
            self.shutdown.clone(),
        )?;
        self.threads
            .push(Owned::thread("ssh", thread, stops(&self.shutdown)));
        Ok(())
    }

    /// A firmware upgrade over the network (the `/firmware` page): `body` is the upload,
    /// streamed; `length` its Content-Length. Only while Network upgrade is on. Once the
    /// image is installed the service restarts into it (on trial), after
    /// [`UPGRADE_RESTART_AFTER`] so the page can answer first. `progress` is told every
    /// step, and while receiving at least every 64 KiB: a thread the watchdog watches
    /// shows its progress there (`Heartbeat::busy`), since a slow upload takes longer
    /// than a stall limit.
    pub fn upgrade(
        &self,
        body: &mut dyn std::io::Read,
        length: Option<u64>,
        who: &Who,
        progress: &mut dyn FnMut(Step),
    ) -> std::result::Result<firmware::Installed, Refusal> {
        (self.network_upgrade)(body, length, who, progress)
    }

    /// Restart requests (the button, the pages, the console): whoever runs the service
    /// stops it, then restarts it or reboots the board.
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
        self.tcp.addr()
    }

    /// Where Modbus/TCP Security really listens, if it does.
    pub fn mbtls_addr(&self) -> Option<SocketAddr> {
        self.mbtls.as_ref().and_then(Mbtls::addr)
    }

    /// Where plain HTTP really listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.web.lock().as_ref().and_then(Web::http_addr)
    }

    /// Where HTTPS really listens, if it does.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.web.lock().as_ref().and_then(Web::https_addr)
    }

    /// Where the SSH console really listens, if it does (off: None).
    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh.as_ref().and_then(|s| s.addr())
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.live.current()
    }

    /// Ends every thread, writes the last events, and returns when all is on disk; the
    /// watchdog is disarmed. (Dropping the service without it ends the threads too, but
    /// leaves the watchdog armed.)
    pub fn stop(mut self) {
        self.clean = true;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Every thread is asked at once, so they end together; then each is waited for.
        self.threads.ask_all();
        drop(std::mem::take(&mut self.threads));
        // The watchdog stays fed (or not) until the others ended.
        if let Some(board) = self.board.take() {
            if self.clean {
                board.stop();
            }
        }
        if self.clean {
            self.events.emit(Event::Stopped);
        }
        let dropped = self.events.dropped();
        if dropped > 0 {
            log::warn!("{dropped} events could not be stored: the event queue was full");
        }
        // Whoever still holds a sender of events, the store thread ends now.
        drop(self.writer.take());
        drop(self.syslog_thread.take());
        log::info!("stopped");
    }
}

/// Asks the threads that wait on the service's shutdown to stop.
fn stops(shutdown: &Shutdown) -> impl FnOnce() + Send + Sync + 'static {
    let shutdown = shutdown.clone();
    move || shutdown.fire()
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

/// The accounts follow the login timeout and the password lifetime at once.
fn register_accounts(live: &Live, accounts: &Arc<Accounts>) {
    follow(
        live,
        "accounts",
        accounts.clone(),
        Limits::from_settings,
        |accounts, limits| accounts.set_limits(limits),
    );
}

/// What the link, Modbus TCP and RS485 do when their settings change.
fn register_parts(live: &Live, link: &Link, tcp: &Tcp, rs485: Option<&Rs485>, options: &Options) {
    let ups = options.ups.clone();
    follow(
        live,
        "ups link",
        link.clone(),
        move |s| link_config(s, &ups),
        Link::reconfigure,
    );
    let sessions = tcp.clone();
    live.warn_with(Box::new(move |old, new| {
        if old.modbus_enabled && !new.modbus_enabled {
            let open = sessions.sessions.list().into_iter();
            return open
                .map(|s| {
                    format!(
                        "Modbus TCP session {} from {} will be closed: plain Modbus TCP is \
                         turned off.",
                        s.number,
                        s.peer.ip()
                    )
                })
                .collect();
        }
        sessions.closed_by(&old.modbus_allow, &new.modbus_allow)
    }));
    let tcp = tcp.clone();
    live.register(
        "modbus tcp",
        Box::new(move |old, new| {
            // A new port is bound now, so a port in use refuses the whole change. Some:
            // a new listener, or None to stop listening (`modbus_enabled` off).
            let switch = match (old.modbus_enabled, new.modbus_enabled) {
                (true, false) => Some(None),
                (was, true) if !was || new.modbus_port != old.modbus_port => {
                    let addr = match new.modbus_port == old.modbus_port {
                        true => tcp.addr(),
                        false => SocketAddr::new(tcp.addr().ip(), new.modbus_port),
                    };
                    let bound = TcpListener::bind(addr)
                        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                    Some(Some(bound))
                }
                _ => None,
            };
            let config = tcp_config(new);
            if switch.is_none() && config == tcp_config(old) {
                return Ok(None);
            }
            let tcp = tcp.clone();
            Ok(Some(Box::new(move || {
                tcp.reconfigure(config);
                if let Some(listener) = switch {
                    if let Err(e) = tcp.switch(listener) {
                        log::error!("modbus tcp: {e}");
                    }
                }
            })))
        }),
    );
    if let (Some(rs485), Some(path)) = (rs485, options.rs485.clone()) {
        follow(
            live,
            "rs485",
            rs485.clone(),
            move |s| rs485_config(s, &path),
            Rs485::reconfigure,
        );
    }
}

/// `mbtls_enabled` opens and closes Modbus/TCP Security's port at once; the port is bound
/// before the change is accepted, so a port in use refuses it.
fn register_mbtls(live: &Live, mbtls: &Mbtls) {
    let mbtls = mbtls.clone();
    live.register(
        "modbus/tcp security",
        Box::new(move |old, new| {
            if old.mbtls_enabled == new.mbtls_enabled {
                return Ok(None);
            }
            let listener = if new.mbtls_enabled {
                let addr = mbtls.place;
                Some(TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?)
            } else {
                None
            };
            let mbtls = mbtls.clone();
            Ok(Some(Box::new(move || mbtls.switch(listener))))
        }),
    );
}

/// What the board's parts do when their settings change: NTP follows a new server, the
/// network script runs again, and the link's stall limit follows its serial timeout.
fn register_board(
    live: &Live,
    ntp: &Ntp,
    network: Option<&Network>,
    link_limit: Limit,
    stall: Duration,
) {
    follow(
        live,
        "ntp",
        ntp.clone(),
        |s| s.ntp_server.clone(),
        |ntp, server| ntp.set_server(server),
    );
    if let Some(network) = network {
        follow(
            live,
            "network",
            network.applier(),
            NetSettings::of,
            |apply, settings| apply(settings),
        );
    }
    follow(
        live,
        "watchdog",
        link_limit,
        move |s| stall + s.serial_timeout() * 2,
        Limit::set,
    );
}

/// [`Service::upgrade`], as a value the web keeps: refused without an A/B install or while
/// Network upgrade is off; after an install, a restart into the new version a moment
/// later.
fn network_upgrade(
    upgrader: Option<Arc<Upgrader>>,
    live: Arc<Live>,
    control: Control,
    events: Events,
) -> crate::web::Upgrade {
    Arc::new(move |body, length, who, progress| {
        let refuse = |why: &str| {
            let refusal = Refusal::Busy(why.into());
            events.emit(Event::FirmwareRefused {
                reason: refusal.to_string(),
                by: who.to_string(),
            });
            Err(refusal)
        };
        let Some(upgrader) = &upgrader else {
            return refuse(
                "this service runs outside an A/B install (no --firmware): it cannot be \
                 upgraded",
            );
        };
        if !live.current().upgrade_enabled {
            return refuse("Network upgrade is off (Control page): turn it on to upgrade");
        }
        let installed = upgrader.upgrade(body, length, &who.to_string(), progress)?;
        // The restart stops the web at once: it follows a moment later, so the page's
        // answer ("installed, restarting") reaches the browser first.
        let who = Who {
            user: who.user.clone(),
            via: format!("{}, firmware upgrade to {}", who.via, installed.version),
            role: who.role,
        };
        let later = (control.clone(), who.clone());
        let spawned = std::thread::Builder::new()
            .name("upgrade restart".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                std::thread::sleep(UPGRADE_RESTART_AFTER);
                later.0.restart(&later.1);
            });
        if spawned.is_err() {
            control.restart(&who);
        }
        Ok(installed)
    })
}

/// Healthy, as a new version on trial must show before it is kept: the UPS link, the
/// Modbus TCP acceptor and the store threads running, and the web front when the web is
/// served (their ports are bound before the service starts), and no thread stalled.
fn healthy(health: &Health, web: bool) -> std::result::Result<(), String> {
    health.check().map_err(|stall| stall.to_string())?;
    let running = health.threads();
    let web = web.then_some("web front");
    for thread in ["ups link", "modbus tcp", "store"].into_iter().chain(web) {
        if !running.iter().any(|t| t == thread) {
            return Err(format!("thread '{thread}' is not running"));
        }
    }
    Ok(())
}

/// The kernel's id of this boot: a new one after every power-up, the same across service
/// restarts. Tells a cold boot from a warm one.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
