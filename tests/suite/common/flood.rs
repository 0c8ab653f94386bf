//! Attackers and a user on raw sockets, for the web front's flood tests and benchmark:
//! each socket is bound to a source address of our choosing on loopback (127.0.0.0/8),
//! so one machine plays many hosts.
#![allow(dead_code)]

use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The head of the flood: an upload announced and never sent.
pub const UPLOAD_HEAD: &[u8] =
    b"POST /firmware/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\n\r\n";

/// A TCP connection from `from` to `to`.
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("IPv4 only"));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(TcpStream::from(fd))
}

/// A TLS 1.3 client trusting only the card's root.
pub fn tls_config(root_pem: &[u8]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A plain or TLS connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Connects from `from`; with `tls`, the handshake is done before this returns.
    pub fn open(
        from: Ipv4Addr,
        to: SocketAddr,
        tls: Option<&Arc<ClientConfig>>,
        timeout: Duration,
    ) -> io::Result<Conn> {
        let sock = connect_from(from, to)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        sock.set_nodelay(true)?;
        match tls {
            None => Ok(Conn::Plain(sock)),
            Some(config) => {
                let name = to.ip().into();
                let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
                let mut s = StreamOwned::new(conn, sock);
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Ok(Conn::Tls(Box::new(s)))
            }
        }
    }

    pub fn sock(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    pub fn set_timeout(&self, t: Duration) {
        let _ = self.sock().set_read_timeout(Some(t));
        let _ = self.sock().set_write_timeout(Some(t));
    }

    /// One answer on a kept-alive connection: its head, then as many bytes of body as its
    /// Content-Length says.
    pub fn answer(&mut self) -> io::Result<Answer> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match self.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match self.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(Answer::new(
            head,
            String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
        ))
    }

    /// Sends `raw` and reads its answer.
    pub fn request(&mut self, raw: &str) -> io::Result<Answer> {
        self.write_all(raw.as_bytes())?;
        self.flush()?;
        self.answer()
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// An answer's status line and headers, and its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    fn new(head: String, body: String) -> Answer {
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer { status, head, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    /// The value a `Set-Cookie` gives cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            if !n.eq_ignore_ascii_case("set-cookie") {
                return None;
            }
            let pair = v.trim().split(';').next()?;
            let (k, v) = pair.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_owned())
        })
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A user of the web pages from one address, one connection per request (the hardest
/// case in a flood: every request has to win a place anew).
pub struct User {
    pub from: Ipv4Addr,
    pub to: SocketAddr,
    pub tls: Arc<ClientConfig>,
    /// Each request's whole time limit.
    pub timeout: Duration,
    pub session: Option<String>,
}

impl User {
    pub fn new(from: Ipv4Addr, to: SocketAddr, tls: Arc<ClientConfig>, timeout: Duration) -> User {
        User {
            from,
            to,
            tls,
            timeout,
            session: None,
        }
    }

    /// One request on a new connection, its answer within the time limit.
    pub fn once(&self, raw: &str) -> io::Result<Answer> {
        let started = Instant::now();
        let mut conn = Conn::open(self.from, self.to, Some(&self.tls), self.timeout)?;
        let left = self.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        conn.set_timeout(left);
        let answer = conn.request(raw)?;
        if started.elapsed() > self.timeout {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(answer)
    }

    /// Logs in with the login form's own CSRF cookie, as a browser that opened the form.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<Answer> {
        let token = "ab".repeat(32);
        let body = format!(
            "user={}&password={}&csrf={token}",
            encode(user),
            encode(password)
        );
        let raw = format!(
            "POST /login HTTP/1.1\r\nHost: {to}\r\nOrigin: https://{to}\r\n\
             Cookie: login_csrf={token}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len(),
            to = self.to
        );
        let answer = self.once(&raw)?;
        self.session = answer.cookie("session");
        Ok(answer)
    }

    /// A GET of `path` with the session, if any.
    pub fn get_raw(&self, path: &str, keep_alive: bool) -> String {
        let cookie = self
            .session
            .as_ref()
            .map(|s| format!("Cookie: session={s}\r\n"))
            .unwrap_or_default();
        let connection = if keep_alive { "keep-alive" } else { "close" };
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{cookie}Connection: {connection}\r\n\r\n",
            self.to
        )
    }

    pub fn get(&self, path: &str) -> io::Result<Answer> {
        self.once(&self.get_raw(path, false))
    }

    /// A form of the session's posted as the browser posts it: the page fetched for its
    /// CSRF token, then `fields` (url-encoded already) and the token.
    pub fn post_form(&self, path: &str, fields: &str) -> io::Result<Answer> {
        let form = self.get(path)?;
        let at = form
            .body
            .find("name=\"csrf\" value=\"")
            .ok_or_else(|| io::Error::other(format!("no CSRF field on {path}")))?
            + 19;
        let token = form.body[at..].split('"').next().unwrap_or("");
        let body = format!("{fields}&csrf={token}");
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: {to}\r\nOrigin: https://{to}\r\n\
             Cookie: session={}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.session.as_deref().unwrap_or(""),
            body.len(),
            to = self.to
        );
        self.once(&raw)
    }

    /// The admin's first login: the default password, the forced change to `new`, and a
    /// login with it. Panics if the card does not answer as a first login should.
    pub fn first_admin_login(&mut self, default: &str, new: &str) {
        let first = self.login("admin", default).unwrap();
        assert_eq!(first.header("location"), Some("/password"), "{first:?}");
        let fields = format!(
            "current={}&new={}&repeat={}",
            encode(default),
            encode(new),
            encode(new)
        );
        let changed = self.post_form("/password", &fields).unwrap();
        assert_eq!(changed.status, 303, "{changed:?}");
        let again = self.login("admin", new).unwrap();
        assert_eq!(again.header("location"), Some("/"), "{again:?}");
    }

    /// A kept-alive connection of this user.
    pub fn open(&self) -> io::Result<Conn> {
        Conn::open(self.from, self.to, Some(&self.tls), self.timeout)
    }
}

/// Form encoding of the characters our test passwords use.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What an attacking connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// The head of an upload ([`UPLOAD_HEAD`]), no body; waits until the card closes.
    LingerHead,
    /// The same head, then the body at 1 KiB/s.
    SlowBody,
    /// Connects and says nothing.
    Idle,
    /// On HTTPS a ClientHello, on HTTP a request head, one byte every 100 ms.
    Trickle,
}

impl Abuse {
    pub const ALL: [Abuse; 4] = [
        Abuse::LingerHead,
        Abuse::SlowBody,
        Abuse::Idle,
        Abuse::Trickle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Abuse::LingerHead => "upload head, no body",
            Abuse::SlowBody => "upload body at 1 KiB/s",
            Abuse::Idle => "idle connections",
            Abuse::Trickle => "handshake or head, a byte per 100 ms",
        }
    }
}

/// Connections that attack the card until stopped, each reconnecting when closed. They
/// all run on one thread, at nice 19, as tasks of a single-threaded runtime: on a card the
/// attackers are other machines, and here they should take the CPU the card's threads
/// need only when nothing else wants it (hundreds of attacking threads would crowd the
/// card's out of the scheduler, whatever their niceness).
pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Connections made so far.
    pub connects: Arc<AtomicU64>,
}

impl Flood {
    /// `conns` attackers on `to` (through TLS when `tls` is given), the i-th from
    /// `sources[i % sources.len()]`.
    pub fn start(
        abuse: Abuse,
        to: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
        sources: &[Ipv4Addr],
        conns: usize,
    ) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicU64::new(0));
        let sources = sources.to_vec();
        let thread = {
            let (stop, connects) = (stop.clone(), connects.clone());
            std::thread::Builder::new()
                .name("attackers".into())
                .spawn(move || {
                    // SAFETY: setpriority with integer arguments; 0 is this thread.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for i in 0..conns {
                            let from = sources[i % sources.len()];
                            let (stop, connects, tls) =
                                (stop.clone(), connects.clone(), tls.clone());
                            tokio::spawn(async move {
                                while !stop.load(Relaxed) {
                                    let r = attack(abuse, from, to, tls.as_ref(), &connects);
                                    if r.await.is_err() {
                                        // Refused or reset: again shortly, as a flood would.
                                        tokio::time::sleep(Duration::from_millis(10)).await;
                                    }
                                }
                            });
                        }
                        while !stop.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    });
                    // Dropping the runtime drops every attacker's socket.
                })
                .unwrap()
        };
        Flood {
            stop,
            thread: Some(thread),
            connects,
        }
    }

    /// Stops every attacker; the number of connections they made.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.connects.load(Relaxed)
    }
}

impl Drop for Flood {
    /// A test that fails midway stops its attackers too.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// The pace of the drips.
const PACE: Duration = Duration::from_millis(100);

/// Sends what TLS has to send.
async fn send_tls(c: &mut ClientConnection, s: &mut tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    while c.wants_write() {
        let mut out = Vec::new();
        c.write_tls(&mut out)?;
        s.write_all(&out).await?;
    }
    Ok(())
}

/// A TLS client handshake over a tokio socket.
async fn handshake(c: &mut ClientConnection, s: &mut tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    while c.is_handshaking() {
        send_tls(c, s).await?;
        if c.is_handshaking() && c.wants_read() {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            c.read_tls(&mut &buf[..n])?;
            c.process_new_packets().map_err(io::Error::other)?;
        }
    }
    send_tls(c, s).await
}

/// Sends `bytes`, through TLS if there is one.
async fn send(
    c: Option<&mut ClientConnection>,
    s: &mut tokio::net::TcpStream,
    bytes: &[u8],
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    match c {
        Some(c) => {
            c.writer().write_all(bytes)?;
            send_tls(c, s).await
        }
        None => s.write_all(bytes).await,
    }
}

/// One attacking connection, until the card closes it (or the runtime is dropped).
async fn attack(
    abuse: Abuse,
    from: Ipv4Addr,
    to: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    connects: &AtomicU64,
) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from.into(), 0))?;
    let mut s = sock.connect(to).await?;
    s.set_nodelay(true)?;
    connects.fetch_add(1, Relaxed);
    // The handshake is done only by the attacks that send a request: on HTTPS the others
    // are the handshake's own abuse.
    let mut conn = match (abuse, tls) {
        (Abuse::LingerHead | Abuse::SlowBody, Some(config)) => {
            let mut c =
                ClientConnection::new(config.clone(), to.ip().into()).map_err(io::Error::other)?;
            handshake(&mut c, &mut s).await?;
            Some(c)
        }
        _ => None,
    };
    let drip: Vec<u8> = match (abuse, tls) {
        (Abuse::Trickle, Some(config)) => {
            let mut hello = Vec::new();
            ClientConnection::new(config.clone(), to.ip().into())
                .map_err(io::Error::other)?
                .write_tls(&mut hello)?;
            hello
        }
        (Abuse::Trickle, None) => {
            let mut head = b"GET /login HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 4000));
            head
        }
        (Abuse::SlowBody, _) => vec![b'a'; 16_000_000],
        _ => Vec::new(),
    };
    let step = match abuse {
        Abuse::SlowBody => 100,
        _ => 1,
    };
    if matches!(abuse, Abuse::LingerHead | Abuse::SlowBody) {
        send(conn.as_mut(), &mut s, UPLOAD_HEAD).await?;
    }
    let mut sent = 0;
    let mut sink = vec![0u8; 4096];
    loop {
        // What the card answers is not read through TLS: only its end matters.
        tokio::select! {
            r = s.read(&mut sink) => match r {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            },
            _ = tokio::time::sleep(PACE), if sent < drip.len() => {
                let n = step.min(drip.len() - sent);
                send(conn.as_mut(), &mut s, &drip[sent..sent + n]).await?;
                sent += n;
            }
        }
    }
}
