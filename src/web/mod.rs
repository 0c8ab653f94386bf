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
pub mod pages;
pub mod routes;

use crate::accounts::Accounts;
use crate::event::{Event, Events};
use crate::health::Health;
use crate::link::LinkStatus;
use crate::rs485::Rs485Status;
use crate::shutdown::Shutdown;
use crate::tcp::Sessions;
use certs::{Certs, Made, Names};
use front::{Front, Job, Replies, Reply};
use rouille::Request;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Handler threads: pages are quick; one more lets a page be served while a login hashes.
pub const HANDLERS: usize = 2;
/// Whole requests waiting for a handler; past this the front answers 503 at once.
pub const QUEUE: usize = 32;
/// How often the card checks that its own certificate still fits (names, expiry).
const CERT_CHECK: Duration = Duration::from_secs(3600);

/// Where the web listens; `None` = not served.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

/// What the handlers share: the service's state as pages show it.
pub struct App {
    pub accounts: Arc<Accounts>,
    pub certs: Arc<Certs>,
    pub link: Arc<LinkStatus>,
    pub sessions: Arc<Sessions>,
    pub rs485: Option<Arc<Rs485Status>>,
    pub events: Events,
    /// The names the card's certificate must carry (for uploads).
    pub names: Names,
    /// Where HTTPS listens while it is on: plain HTTP then redirects there.
    pub https_port: Option<u16>,
    pub started: Instant,
}

/// The running web interface.
pub struct Web {
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The parts of the service the web shows.
pub struct Parts {
    pub accounts: Arc<Accounts>,
    pub link: Arc<LinkStatus>,
    pub sessions: Arc<Sessions>,
    pub rs485: Option<Arc<Rs485Status>>,
    pub events: Events,
    pub data: std::path::PathBuf,
    /// Where the web threads report their progress (the watchdog is fed on it).
    pub health: Arc<Health>,
    /// How long a web thread may be busy without progress.
    pub stall: Duration,
}

impl Web {
    /// Binds the listeners, makes or loads the certificates, starts the front and the
    /// handler pool.
    pub fn start(config: &WebConfig, parts: Parts, shutdown: Shutdown) -> Result<Web> {
        let bind = |addr: SocketAddr, what: &str| {
            TcpListener::bind(addr).map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
        };
        let http = config.http.map(|a| bind(a, "HTTP")).transpose()?;
        let https = config.https.map(|a| bind(a, "HTTPS")).transpose()?;
        let http_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
        let https_addr = https.as_ref().map(TcpListener::local_addr).transpose()?;

        let names =
            Names::for_bind(https_addr.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip()));
        let (certs, made) = Certs::open(&parts.data, &names)?;
        if let Made::Server(names) = made {
            parts.events.emit(Event::CertificateMade { names });
        }
        let certs = Arc::new(certs);
        let tls = tls_config(certs.clone())?;

        let app = Arc::new(App {
            accounts: parts.accounts,
            certs: certs.clone(),
            link: parts.link,
            sessions: parts.sessions,
            rs485: parts.rs485,
            events: parts.events.clone(),
            names: names.clone(),
            https_port: https_addr.map(|a| a.port()),
            started: Instant::now(),
        });

        let mut listeners = Vec::new();
        listeners.extend(http.map(|l| (l, false)));
        listeners.extend(https.map(|l| (l, true)));
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let tick = {
            let (app, events) = (app.clone(), parts.events);
            let mut last_cert_check = Instant::now();
            Box::new(move || {
                app.accounts.expire_idle();
                if last_cert_check.elapsed() >= CERT_CHECK {
                    last_cert_check = Instant::now();
                    match app.certs.refresh(&app.names) {
                        Ok(Made::Server(names)) => events.emit(Event::CertificateMade { names }),
                        Ok(Made::Nothing) => {}
                        Err(e) => log::error!("HTTPS certificate: {e}"),
                    }
                }
            })
        };
        let beat = parts.health.register("web front", parts.stall);
        let (front, replies) = Front::new(listeners, tls, jobs_tx, shutdown, tick, beat)?;
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
                            handle(&app, job, &replies);
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
        if let Some(a) = http_addr {
            log::info!("http listening on {a}");
        }
        if let Some(a) = https_addr {
            log::info!("https listening on {a}");
        }
        Ok(Web {
            http_addr,
            https_addr,
            threads,
        })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
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

/// Runs one request through the routes and sends the answer back to the front.
fn handle(app: &App, job: Job, replies: &Replies) {
    let head_only = job.head.method == "HEAD";
    let headers = job.head.headers;
    let request = if job.secure {
        Request::fake_https_from(
            job.peer,
            job.head.method,
            job.head.target,
            headers,
            job.body,
        )
    } else {
        Request::fake_http_from(
            job.peer,
            job.head.method,
            job.head.target,
            headers,
            job.body,
        )
    };
    let response = routes::handle(app, &request);
    let code = response.status_code;
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let (mut reader, size) = response.data.into_reader_and_size();
    let mut body = Vec::with_capacity(size.unwrap_or(0));
    if let Err(e) = reader.read_to_end(&mut body) {
        log::error!(
            "web: answer to {} could not be read: {e}",
            request.raw_url()
        );
    }
    let bytes = http::write_response(code, &headers, &body, head_only, job.keep_alive);
    replies.send(Reply {
        conn: job.conn,
        bytes,
        close: !job.keep_alive,
    });
}
