//! The web interface: HTTP and HTTPS on the card.
//!
//! Two halves. The **front** ([`front`]) faces the network: one thread, TLS 1.3 only,
//! deadlines and size caps, a cap on connections; it hands whole requests to a small
//! **pool of handler threads**, which see them as rouille [`Request`]s and answer with
//! rouille `Response`s through [`routes`]: `fn(&Request) -> Response`, one module per page
//! under [`pages`], HTML from the templates in `www/` (askama, escaped by default).
//! rouille's own server is never started.
//!
//! The pages read the service's state directly (link status, TCP sessions, RS485 status:
//! atomics and short locks) and log in through [`crate::accounts`], shared with the
//! console.

pub mod certs;
pub mod form;
pub mod front;
pub mod http;
pub mod listen;
pub mod pages;
pub mod routes;
pub mod upload;

use crate::card::Card;
use crate::event::Event;
use crate::health::{Health, Heartbeat};
use crate::link::framelog::FrameLog;
use crate::live::Live;
use crate::rs485::Rs485Status;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::tcp::{Refused, Sessions};
use certs::{Certs, Made, Names};
use front::{Admit, Front, Gate, Job, Replies, Reply};
use listen::{Kind, Listeners};
use parking_lot::Mutex;
use rouille::Request;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Handler threads: pages are quick; one more lets a page be served while a login hashes.
pub const HANDLERS: usize = 2;
/// Whole requests waiting for a handler; past this the front answers 503 at once.
pub const QUEUE: usize = 32;
/// How often the card checks that its own certificate still fits (names, expiry).
const CERT_CHECK: Duration = Duration::from_secs(3600);
/// How often Modbus/TCP Security's CAs and lists are looked at for their end.
const MBTLS_CHECK: Duration = Duration::from_secs(86_400);

/// Where the web listens while each service is on; `None` = never served.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

pub use crate::board::network::NetWatch;

/// A firmware upgrade from an upload ([`crate::service::Service::upgrade`]): the body,
/// its length if known, who, and what to tell of each step.
pub type Upgrade = Arc<
    dyn Fn(
            &mut dyn std::io::Read,
            Option<u64>,
            &crate::live::Who,
            &mut dyn FnMut(crate::firmware::Step),
        ) -> std::result::Result<crate::firmware::Installed, crate::firmware::Refusal>
        + Send
        + Sync,
>;

/// What the handlers share: the service's state as pages show it, and the ways to change
/// it (the settings' one door, the card's actions, the clock).
pub struct App {
    /// Accounts, settings, actions, clock, network, events: as the console has them.
    pub card: Card,
    pub certs: Arc<Certs>,
    pub frames: Arc<FrameLog>,
    pub sessions: Arc<Sessions>,
    /// Modbus/TCP Security's sessions, when it is served.
    pub mbtls_sessions: Option<Arc<Sessions>>,
    /// What Modbus TCP access control turned away.
    pub refused: Arc<Refused>,
    /// Modbus TCP, for the address it really listens on.
    pub modbus: crate::tcp::Tcp,
    pub rs485: Option<Arc<Rs485Status>>,
    /// Firmware upgrades over the network.
    pub upgrade: Upgrade,
    /// The card runs from an A/B install, so it can take an upgrade at all.
    pub upgradable: bool,
    /// The pages' own connection to the store, for the event log.
    pub store: Mutex<Store>,
    /// Where HTTP and HTTPS listen: plain HTTP redirects to HTTPS while it is on.
    pub listeners: Arc<Listeners>,
    /// The address HTTPS is bound to (0.0.0.0 for every interface): the card's names
    /// follow from it.
    pub https_bind: std::net::IpAddr,
    /// Where the SSH console listens, if the card serves it.
    pub ssh: Option<SshHome>,
    /// The UPS's samples not yet written to the history (Home's charts show them).
    pub history: crate::history::Recent,
    pub started: Instant,
    pub syslog: crate::syslog::Syslog,
    /// Modbus/TCP Security, if the card serves it (for where it listens).
    pub mbtls: Option<crate::tcp::mbtls::Mbtls>,
    /// The data folder: Modbus/TCP Security's certificates and roles are in it.
    pub data: std::path::PathBuf,
    /// Those of its CAs and lists near their end already told in the log.
    pub mbtls_warned: Mutex<std::collections::HashSet<String>>,
}

impl App {
    /// The card's names as they are now (addresses, host name, static address).
    pub fn card_names(&self) -> Names {
        card_names(self.https_bind, &self.card.live)
    }

    /// The HTTPS port while HTTPS is on.
    pub fn https_port(&self) -> Option<u16> {
        self.listeners.addr(Kind::Https).map(|a| a.port())
    }
}

/// The running web interface.
pub struct Web {
    listeners: Arc<Listeners>,
    threads: Vec<JoinHandle<()>>,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Where the SSH console listens while it is on (for the Control page), as the service
/// hands it over: the web does not reach into the console.
pub type SshHome = Arc<dyn Fn() -> SocketAddr + Send + Sync>;

/// The parts of the service the web shows and changes.
pub struct Parts {
    pub card: Card,
    pub frames: Arc<FrameLog>,
    pub sessions: Arc<Sessions>,
    pub mbtls_sessions: Option<Arc<Sessions>>,
    pub refused: Arc<Refused>,
    /// Modbus TCP, for the address it really listens on.
    pub modbus: crate::tcp::Tcp,
    pub rs485: Option<Arc<Rs485Status>>,
    pub upgrade: Upgrade,
    pub upgradable: bool,
    pub data: std::path::PathBuf,
    /// Where the web threads report their progress (the watchdog is fed on it).
    pub health: Arc<Health>,
    /// How long a web thread may be busy without progress.
    pub stall: Duration,
    /// Where the SSH console listens, if the card serves it (for the Control page).
    pub ssh: Option<SshHome>,
    /// The UPS's samples not yet written to the history.
    pub history: crate::history::Recent,
    /// Remote syslog: its test message and its CA (Configuration page).
    pub syslog: crate::syslog::Syslog,
    /// Modbus/TCP Security, if the card serves it.
    pub mbtls: Option<crate::tcp::mbtls::Mbtls>,
}

impl Web {
    /// Binds the listeners of the services that are on, makes or loads the certificates,
    /// starts the front and the handler pool, and lets the settings' door start and stop
    /// HTTP and HTTPS from then on.
    pub fn start(config: &WebConfig, parts: Parts, shutdown: Shutdown) -> Result<Web> {
        let listeners = Arc::new(Listeners::new([config.http, config.https])?);
        let settings = parts.card.live.current();
        let mut first: listen::Change = [None, None];
        for (kind, on) in [
            (Kind::Http, settings.http_enabled),
            (Kind::Https, settings.https_enabled),
        ] {
            if on && listeners.served(kind) {
                first[kind as usize] = Some(Some(listeners.bind(kind)?));
            }
        }
        let bind = config
            .https
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
        let names = card_names(bind, &parts.card.live);
        let (certs, made) = Certs::open(&parts.data, &names)?;
        if let Made::Server(names) = made {
            parts.card.events.emit(Event::CertificateMade { names });
        }
        let certs = Arc::new(certs);
        let tls = tls_config(certs.clone())?;
        // Said listening (the log line scripts wait for) once the certificates exist: on a
        // first start they are made just above, and a client may read the card's root next.
        listeners.put(first);

        let app = Arc::new(App {
            card: parts.card.clone(),
            certs: certs.clone(),
            frames: parts.frames,
            sessions: parts.sessions,
            mbtls_sessions: parts.mbtls_sessions,
            refused: parts.refused,
            modbus: parts.modbus,
            rs485: parts.rs485,
            upgrade: parts.upgrade,
            upgradable: parts.upgradable,
            store: Mutex::new(Store::open(&parts.data)?),
            listeners: listeners.clone(),
            https_bind: bind,
            ssh: parts.ssh,
            history: parts.history,
            started: Instant::now(),
            syslog: parts.syslog,
            mbtls: parts.mbtls,
            data: parts.data.clone(),
            mbtls_warned: Mutex::default(),
        });
        pages::mbtls::warn_expiring(&app);

        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let tick = {
            let (app, events) = (app.clone(), parts.card.events);
            let mut last_cert_check = Instant::now();
            let mut last_mbtls_check = Instant::now();
            Box::new(move || {
                app.card.accounts.expire_idle();
                if last_mbtls_check.elapsed() >= MBTLS_CHECK {
                    last_mbtls_check = Instant::now();
                    pages::mbtls::warn_expiring(&app);
                }
                // New addresses (DHCP, a static address applied, an interface up) get a
                // server certificate within a tick; expiry is looked at less often.
                let names = app.card_names();
                if names != app.certs.names() || last_cert_check.elapsed() >= CERT_CHECK {
                    last_cert_check = Instant::now();
                    match app.certs.refresh(&names) {
                        Ok(Made::Server(names)) => events.emit(Event::CertificateMade { names }),
                        Ok(Made::Nothing) => {}
                        Err(e) => log::error!("HTTPS certificate: {e}"),
                    }
                }
            })
        };
        let beat = parts.health.register("web front", parts.stall);
        let (front, replies) = Front::new(
            listeners.clone(),
            tls,
            jobs_tx,
            gate(app.clone()),
            shutdown,
            tick,
            beat,
        )?;
        let mut threads = Vec::new();
        for i in 0..HANDLERS {
            let (jobs, replies, app) = (jobs_rx.clone(), replies.clone(), app.clone());
            let beat = parts.health.register("web handler", parts.stall);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("web-handler-{i}"))
                    .stack_size(512 * 1024)
                    .spawn(move || {
                        below_modbus();
                        beat.idle();
                        while let Ok(job) = jobs.recv() {
                            beat.busy();
                            handle(&app, job, &replies, &beat);
                            beat.idle();
                        }
                    })?,
            );
        }
        threads.push(
            std::thread::Builder::new()
                .name("web-front".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    below_modbus();
                    front.run()
                })?,
        );
        listeners.register(&parts.card.live);
        Ok(Web { listeners, threads })
    }

    /// Where plain HTTP listens now.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.listeners.addr(Kind::Http)
    }

    /// Where HTTPS listens now.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.listeners.addr(Kind::Https)
    }

    /// Waits for the threads; the shutdown signal given at start must have fired.
    pub fn join(self) {
        for t in self.threads {
            if t.join().is_err() {
                log::error!("a web thread panicked");
            }
        }
    }
}

/// The card's names for HTTPS bound to `bind`, with the static address the settings hold.
fn card_names(bind: std::net::IpAddr, live: &Live) -> Names {
    let settings = live.current();
    Names::for_bind(bind).with_static(settings.ip_address, settings.netmask)
}

/// Runs the calling web thread at a lower priority (nice 10) than the Modbus threads, so
/// pages under load wait for a Modbus exchange, never the other way round. (Linux keeps
/// the nice value per thread.)
fn below_modbus() {
    // SAFETY: setpriority with integer arguments; 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) } != 0 {
        log::debug!(
            "web: priority unchanged: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// TLS 1.3 only, with the ring provider; the certificate is asked of [`Certs`] at each
/// handshake, so an upload or a renewal takes effect at once.
fn tls_config(certs: Arc<Certs>) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(64);
    Ok(Arc::new(config))
}

/// The routes' look at each head, on the front's thread ([`routes::at_head`]): quick (a
/// session looked up), and a refusal's answer is a redirect or a short page.
fn gate(app: Arc<App>) -> Gate {
    Box::new(move |head, secure, peer| {
        let req = request(
            secure,
            peer,
            head.method.clone(),
            head.target.clone(),
            head.headers.clone(),
            Vec::new(),
        );
        match routes::at_head(&app, &req, head.content_length) {
            Ok(session) => Admit::Pass { session },
            Err((response, session)) => {
                let response = routes::secure_headers(response, &req);
                Admit::Refuse {
                    answer: answer(&req, response, head.method == "HEAD", false).0,
                    session,
                }
            }
        }
    })
}

/// A rouille request as the routes see it.
fn request(
    secure: bool,
    peer: SocketAddr,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Request {
    if secure {
        Request::fake_https_from(peer, method, target, headers, body)
    } else {
        Request::fake_http_from(peer, method, target, headers, body)
    }
}

/// The bytes of `response` to `req`, and whether the connection stays open after them.
fn answer(
    req: &Request,
    response: rouille::Response,
    head_only: bool,
    keep_alive: bool,
) -> (Vec<u8>, bool) {
    let code = response.status_code;
    // A handler asks for the connection to end after its answer (a restart is coming):
    // the front then closes it cleanly, with TLS's close_notify.
    let close_asked = response
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    let keep_alive = keep_alive && !close_asked;
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection"))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let (mut reader, size) = response.data.into_reader_and_size();
    let mut body = Vec::with_capacity(size.unwrap_or(0));
    if let Err(e) = reader.read_to_end(&mut body) {
        log::error!("web: answer to {} could not be read: {e}", req.raw_url());
    }
    let bytes = http::write_response(code, &headers, &body, head_only, keep_alive);
    (bytes, keep_alive)
}

/// Runs one request through the routes and sends the answer back to the front. `beat`
/// is the handler thread's: a long upload shows its progress there.
fn handle(app: &App, job: Job, replies: &Replies, beat: &Heartbeat) {
    let head_only = job.head.method == "HEAD";
    let request = request(
        job.secure,
        job.peer,
        job.head.method,
        job.head.target,
        job.head.headers,
        job.body,
    );
    let response = routes::handle(app, &request, job.local, job.upload, beat);
    let (bytes, keep_alive) = answer(&request, response, head_only, job.keep_alive);
    replies.send(Reply {
        conn: job.conn,
        bytes,
        close: !keep_alive,
    });
}
