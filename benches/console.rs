//! SSH console benchmark: `cargo bench --bench console` (figures go in BENCHMARKS.md).
//!
//! The service runs as its own process (the release binary), so the CPU time and resident
//! memory read from /proc are its own; the simulated UPS and the SSH clients (libssh2,
//! through the `ssh2` crate) run here.
//!
//! 1. Resident memory with SSH off, with SSH on and idle, and with one session at the menu.
//! 2. Time from connect to the menu's prompt: TCP connect, key exchange, password (Argon2
//!    on the card), pty, shell, the menu drawn; median and worst of N.
//! 3. The service's CPU and memory while 40 connections sit without logging in: 40 that
//!    sent the SSH banner only, then 40 that finished the key exchange and stop there.
mod card;
mod usage;

use card::{Card, DEFAULT};
use ssh2::Session;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const GOOD: &str = "Cardpass12!Ab";
const PROMPT: &str = "Please Enter Your Choice =>";
/// Connections that sit without logging in.
const WAITING: usize = 40;
/// How long each is watched for CPU.
const WATCH: Duration = Duration::from_secs(10);

/// The service with SSH on or off; the console's own address when on.
fn start(ups: &std::path::Path, ssh: bool) -> Card {
    let set = format!("ssh_enabled={ssh}");
    Card::start(ups, &["--set", &set], if ssh { &["ssh"][..] } else { &[] })
}

/// CPU time `card` used so far (user + system) and its resident memory in KiB.
fn usage(card: &Card) -> (Duration, u64) {
    usage::of(card.pid())
}

/// CPU `card` used over `d` (percent of one core) and the resident memory at its end.
fn watch(card: &Card, d: Duration) -> (f64, u64) {
    let (cpu0, _) = usage(card);
    let start = Instant::now();
    std::thread::sleep(d);
    let (cpu1, rss) = usage(card);
    let pct = (cpu1 - cpu0).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;
    (pct, rss)
}

fn handshake(addr: SocketAddr) -> Session {
    let mut s = Session::new().unwrap();
    s.set_timeout(30_000);
    s.set_tcp_stream(TcpStream::connect(addr).unwrap());
    s.handshake().unwrap();
    s
}

/// Reads until `text` shows.
fn read_until(ch: &mut ssh2::Channel, text: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(text) {
        let n = ch.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Logs in and opens the menu; returns the session and its channel at the prompt.
fn to_menu(addr: SocketAddr, password: &str) -> (Session, ssh2::Channel) {
    let s = handshake(addr);
    s.userauth_password("admin", password).unwrap();
    let mut ch = s.channel_session().unwrap();
    ch.request_pty("xterm", None, Some((80, 24, 0, 0))).unwrap();
    ch.shell().unwrap();
    if password == DEFAULT {
        for (prompt, answer) in [
            ("Current password: ", DEFAULT),
            ("New password: ", GOOD),
            ("New password again: ", GOOD),
        ] {
            read_until(&mut ch, prompt);
            ch.write_all(format!("{answer}\r").as_bytes()).unwrap();
        }
    }
    read_until(&mut ch, PROMPT);
    (s, ch)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let logins = if quick { 5 } else { 20 };
    let sim = card::simulated_ups();
    let ups = sim.path().unwrap().to_path_buf();

    println!("# SSH console benchmark\n");
    let off = start(&ups, false);
    std::thread::sleep(Duration::from_secs(2));
    let (_, rss_off) = usage(&off);
    assert!(off.stop(), "the service did not stop cleanly");

    let card = start(&ups, true);
    let addr = card.addr("ssh");
    std::thread::sleep(Duration::from_secs(2));
    let (cpu_idle, rss_idle) = watch(&card, WATCH);

    // The first login changes the default password; the figures are of the later ones.
    let (s, ch) = to_menu(addr, DEFAULT);
    drop((ch, s));
    std::thread::sleep(Duration::from_millis(500));
    let mut times = vec![];
    for _ in 0..logins {
        let start = Instant::now();
        let (s, mut ch) = to_menu(addr, GOOD);
        times.push(start.elapsed());
        ch.write_all(b"0\r").unwrap();
        let _ = ch.read_to_end(&mut vec![]);
        drop((ch, s));
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = *times.last().unwrap();

    let (session, channel) = to_menu(addr, GOOD);
    std::thread::sleep(Duration::from_secs(1));
    let (cpu_session, rss_session) = watch(&card, WATCH);
    drop((channel, session));
    std::thread::sleep(Duration::from_secs(1));

    // Connections that sent the banner only.
    let mut banner_only = vec![];
    for _ in 0..WAITING {
        let mut t = TcpStream::connect(addr).unwrap();
        t.write_all(b"SSH-2.0-bench\r\n").unwrap();
        banner_only.push(t);
    }
    std::thread::sleep(Duration::from_secs(1));
    let (cpu_banner, rss_banner) = watch(&card, WATCH);
    drop(banner_only);
    std::thread::sleep(Duration::from_secs(1));

    // Connections past the key exchange, not logged in.
    let (cpu0, _) = usage(&card);
    let start = Instant::now();
    let kexed: Vec<Session> = (0..WAITING).map(|_| handshake(addr)).collect();
    let kex_time = start.elapsed();
    let (cpu1, _) = usage(&card);
    std::thread::sleep(Duration::from_secs(1));
    let (cpu_kexed, rss_kexed) = watch(&card, WATCH);
    drop(kexed);
    // And a user still gets in at once meanwhile? Measured with them there.
    let kexed: Vec<Session> = (0..WAITING).map(|_| handshake(addr)).collect();
    let start = Instant::now();
    let (s, ch) = to_menu(addr, GOOD);
    let login_busy = start.elapsed();
    drop((ch, s, kexed));
    assert!(card.stop(), "the service did not stop cleanly");

    println!("| measure | value |");
    println!("|---|---|");
    println!("| VmRSS, SSH off | {rss_off} KiB |");
    println!(
        "| VmRSS, SSH on, idle | {rss_idle} KiB ({:+} KiB) |",
        rss_idle as i64 - rss_off as i64
    );
    println!(
        "| CPU, SSH on, idle ({}s) | {cpu_idle:.2} % of a core |",
        WATCH.as_secs()
    );
    println!(
        "| VmRSS, one session at the menu | {rss_session} KiB ({:+} KiB over idle) |",
        rss_session as i64 - rss_idle as i64
    );
    println!("| CPU, one session at the menu, idle | {cpu_session:.2} % of a core |");
    println!(
        "| connect → menu prompt ({logins} logins) | median {:.0} ms, worst {:.0} ms |",
        ms(median),
        ms(worst)
    );
    println!(
        "| {WAITING} connections, banner sent, no login: CPU | {cpu_banner:.2} % of a core, VmRSS {rss_banner} KiB |"
    );
    println!(
        "| {WAITING} key exchanges (card's CPU, wall time) | {:.0} ms CPU, {:.0} ms |",
        ms(cpu1 - cpu0),
        ms(kex_time)
    );
    println!(
        "| {WAITING} connections past the key exchange, no login: CPU | {cpu_kexed:.2} % of a core, VmRSS {rss_kexed} KiB |"
    );
    println!(
        "| connect → menu prompt with {WAITING} of those waiting | {:.0} ms |",
        ms(login_busy)
    );
}
