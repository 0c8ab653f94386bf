//! The web front under a flood: `cargo bench --bench flood` (figures go in BENCHMARKS.md);
//! `BENCH_QUICK=1` for 5 s per pattern instead of 60; `BENCH_ONLY=TEXT` for the attacks
//! whose row names contain TEXT.
//!
//! The service runs as its own process (the release binary), so the memory read from
//! /proc is its own. A logged-in user from 127.0.0.2 loads Home over HTTPS, one load every
//! 100 ms, each on a new connection (TLS handshake included: every load has to win a place
//! anew, the hardest case); first with nothing else going on, then while 64 and then 500
//! attacking connections from 100 addresses (127.0.0.10–109) cycle each abuse pattern on
//! HTTP and then on HTTPS, each reconnecting as soon as it is closed. The attackers are
//! tasks on one thread at nice 19 (tests/suite/common/flood.rs): on a card they are other
//! machines, so here they take only the CPU nobody else wants. For each: the share of
//! loads answered within 2 s, their median and p99, and the service's largest VmRSS.
mod card;
#[path = "../tests/suite/common/flood.rs"]
mod flood;
mod usage;

use card::{Card, DEFAULT};
use flood::{Abuse, Flood, User};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOOD: &str = "Cardpass12!Ab";
const USER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// A load answered within this counts as served.
const GOAL: Duration = Duration::from_secs(2);
/// A load not answered within this is given up.
const GIVE_UP: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(100);

/// What a run measured.
struct Run {
    loads: usize,
    within: usize,
    median: Duration,
    p99: Duration,
    rss_max: u64,
    attacks: u64,
}

/// The user loads Home for `d`, paced; the service's memory sampled between loads.
fn loads(card: &Card, user: &User, d: Duration) -> (Vec<Option<Duration>>, u64) {
    let (mut times, mut rss_max) = (Vec::new(), usage::of(card.pid()).1);
    let started = Instant::now();
    while started.elapsed() < d {
        let t = Instant::now();
        let ok =
            matches!(user.get("/"), Ok(a) if a.status == 200 && a.body.contains("<h1>Home</h1>"));
        times.push(ok.then(|| t.elapsed()));
        rss_max = rss_max.max(usage::of(card.pid()).1);
        std::thread::sleep(PACE);
    }
    (times, rss_max)
}

fn summary(times: Vec<Option<Duration>>, rss_max: u64, attacks: u64) -> Run {
    let mut ok: Vec<Duration> = times.iter().flatten().copied().collect();
    ok.sort();
    let pick = |q: f64| {
        // Failed loads count as the slowest.
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        ok.get(i).copied().unwrap_or(GIVE_UP)
    };
    Run {
        loads: times.len(),
        within: ok.iter().filter(|d| **d <= GOAL).count(),
        median: pick(0.5),
        p99: pick(0.99),
        rss_max,
        attacks,
    }
}

fn row(what: &str, r: &Run) {
    println!(
        "| {what} | {} | {:.1} % | {:.1} | {:.1} | {} | {} |",
        r.loads,
        r.within as f64 * 100.0 / r.loads.max(1) as f64,
        r.median.as_secs_f64() * 1000.0,
        r.p99.as_secs_f64() * 1000.0,
        r.rss_max,
        r.attacks,
    );
}

/// Logs in from [`USER`], setting the admin's own password first.
fn logged_in(card: &Card, tls: Arc<rustls::ClientConfig>) -> User {
    let mut user = User::new(USER, card.addr("https"), tls, GIVE_UP);
    user.first_admin_login(DEFAULT, GOOD);
    user
}

fn main() {
    card::raise_fd_limit();
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let each = Duration::from_secs(if quick { 5 } else { 60 });
    // Only the attacks whose row names contain this.
    let only = std::env::var("BENCH_ONLY").ok();
    let sim = card::simulated_ups();
    let card = Card::start(sim.path().unwrap(), &[] as &[&str], &["http", "https"]);
    // The root is made just after the ports are bound.
    let root = card.data().join("tls/ca.pem");
    let started = Instant::now();
    while !root.exists() && started.elapsed() < GIVE_UP {
        std::thread::sleep(Duration::from_millis(20));
    }
    let tls = flood::tls_config(&std::fs::read(root).unwrap());
    let user = logged_in(&card, tls.clone());
    let sources: Vec<Ipv4Addr> = (10..110).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();

    println!(
        "# Web front under a flood ({} s per pattern)\n",
        each.as_secs()
    );
    println!("| attack | Home loads | within 2 s | median ms | p99 ms | VmRSS max KiB | attacking connections made |");
    println!("|---|---|---|---|---|---|---|");
    let (times, rss) = loads(&card, &user, each);
    row("none", &summary(times, rss, 0));
    for (port, addr, secure) in [
        ("HTTP", card.addr("http"), false),
        ("HTTPS", card.addr("https"), true),
    ] {
        for conns in [64, 500] {
            for abuse in Abuse::ALL {
                let what = format!("{conns} on {port}: {}", abuse.name());
                if only.as_ref().is_some_and(|o| !what.contains(o.as_str())) {
                    continue;
                }
                let f = Flood::start(abuse, addr, secure.then(|| tls.clone()), &sources, conns);
                // Time for the flood to take the places it can.
                std::thread::sleep(Duration::from_secs(1));
                let (times, rss) = loads(&card, &user, each);
                let attacks = f.stop();
                row(&what, &summary(times, rss, attacks));
                // The card closes what is left of the flood.
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    let (times, rss) = loads(&card, &user, each.min(Duration::from_secs(10)));
    row("none, after", &summary(times, rss, 0));
    println!(
        "\nVmHWM (peak resident) over the whole run: {} KiB",
        usage::vm(card.pid(), "VmHWM:").unwrap_or(0)
    );
    assert!(card.stop(), "the service did not stop cleanly");
}
