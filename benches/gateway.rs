//! Gateway benchmark: `cargo bench --bench gateway` (figures go in BENCHMARKS.md).
//!
//! The service runs as its own process (the release binary), so the CPU time and resident
//! memory read from /proc are its own; the simulated UPS and the clients run here.
//!
//! 1. Unpaced, over pseudo-terminals: requests/s and round-trip latency for 1 and 3 Modbus
//!    TCP clients, against the floor: an RTU master talking straight to the simulated UPS
//!    over the same kind of pty. There is no wire, so both keep no inter-frame gap.
//! 2. Paced: the simulated UPS emulates the half-duplex wire at 57600, 19200 and 9600 baud
//!    and holds back a frame sent inside the 3.5-character silence until the line is free.
//!    The floor master sends its next request the moment it has the answer, so it loses no
//!    line time at all; the card, which must keep the silence itself, is compared with it,
//!    with 1 and 3 clients: throughput against the floor and the line rate, the turnaround
//!    overshoot the simulator measures (request arrival − answer's last byte − silence),
//!    frames sent too early (must be 0) and the service's CPU. `BENCH_PACED_ONLY=1` runs
//!    only this part.
//! 3. Resident memory after 100,000 requests from 3 clients, and whether it grows.
//! 4. Stripped binary size and start-up time.
//! 5. The web under a few hundred HTTPS pages a second from a second process: Modbus
//!    latency with and without it, resident memory with every service on, login time.
//!    `BENCH_WEB_ONLY=1` runs only this part.
mod usage;

mod card;

use modbus_card::modbus::{mbap, rtu};
use modbus_card::pty::Pty;
use modbus_card::serial::{Port, Wait};
use modbus_card::shutdown::Shutdown;
use modbus_card::sim::{Sim, SimConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
/// The realistic request: the measurement table, 48 words.
const READ: [u8; 5] = [0x03, 0x10, 0x60, 0x00, 0x30];
const REQUEST_BYTES: usize = 8;
const ANSWER_BYTES: usize = 5 + 96;

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok()
}

struct Stats {
    count: usize,
    elapsed: Duration,
    median: Duration,
    p99: Duration,
}

impl Stats {
    fn from(mut samples: Vec<Duration>, elapsed: Duration) -> Stats {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        Stats {
            count: samples.len(),
            elapsed,
            median: at(0.5),
            p99: at(0.99),
        }
    }
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// An RTU master straight on the pty: the floor.
fn floor(
    sim_path: &std::path::Path,
    baud: u32,
    gap: Duration,
    until: impl Fn(usize, Duration) -> bool,
) -> Stats {
    let mut port = Port::open(sim_path, baud).unwrap();
    let shutdown = Shutdown::new().unwrap();
    let mut frame = vec![];
    rtu::encode(1, &READ, &mut frame);
    let mut buf = Vec::with_capacity(512);
    let mut samples = vec![];
    let started = Instant::now();
    let mut last_byte = Instant::now() - gap;
    while !until(samples.len(), started.elapsed()) {
        // The master decides to ask now; a compliant master first keeps the gap.
        let asked = Instant::now();
        let ready = last_byte + gap;
        while Instant::now() < ready {
            std::thread::sleep(ready - Instant::now());
        }
        port.write_all(&frame).unwrap();
        buf.clear();
        loop {
            match rtu::check_response(1, &READ, &buf) {
                Ok(rtu::Status::Complete(_)) => break,
                Ok(_) => {}
                Err(e) => panic!("floor: {e}"),
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            assert!(
                matches!(
                    port.read_until(&mut buf, deadline, &shutdown).unwrap(),
                    Wait::Data(_)
                ),
                "floor: timeout"
            );
        }
        last_byte = Instant::now();
        samples.push(asked.elapsed());
    }
    Stats::from(samples, started.elapsed())
}

struct Service {
    child: Child,
    addr: String,
    https: String,
    /// The link's turnaround trace lines, when started with it on.
    trace: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(ups: &std::path::Path, baud: u32, extra: &[&str]) -> (Service, Duration, Duration) {
        Service::start_with(ups, baud, extra, &[])
    }

    /// With `args` given to `run` as they are (e.g. `--rs485 PATH`).
    fn start_with(
        ups: &std::path::Path,
        baud: u32,
        extra: &[&str],
        args: &[&str],
    ) -> (Service, Duration, Duration) {
        Service::launch(ups, baud, extra, args, "info")
    }

    /// With the UPS link's turnaround trace on ([`Service::trace`]).
    fn start_traced(ups: &std::path::Path, baud: u32) -> Service {
        Service::launch(ups, baud, &[], &[], "info,modbus_card::link=trace").0
    }

    fn launch(
        ups: &std::path::Path,
        baud: u32,
        extra: &[&str],
        args: &[&str],
        log: &str,
    ) -> (Service, Duration, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(["run", "--data"])
            .arg(dir.path())
            .arg("--ups")
            .arg(ups)
            .args(["--baud", &baud.to_string(), "--modbus", "127.0.0.1:0"])
            .args([
                "--http",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
                "--ssh",
                "127.0.0.1:0",
                "--mac",
                WEB_MAC,
            ])
            .args(args)
            .args(["--set", "poll_rate_s=0"])
            .args(extra.iter().flat_map(|kv| ["--set", kv]))
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut listening, mut detected, mut https) = (None, None, None, None);
        while detected.is_none() || addr.is_none() {
            let line = lines.next().expect("service log ended").unwrap();
            if let Some(rest) = line.split("https listening on ").nth(1) {
                https = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("modbus tcp listening on ").nth(1) {
                addr = Some(rest.trim().to_string());
                listening = Some(started.elapsed());
            }
            if line.contains("UPS detected") {
                detected = Some(started.elapsed());
            }
        }
        let trace = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        std::thread::spawn({
            let trace = trace.clone();
            move || {
                for line in lines.map_while(Result::ok) {
                    if line.contains("turnaround (monotonic ns)") {
                        trace.lock().unwrap().push(line);
                    }
                }
            }
        });
        let service = Service {
            child,
            addr: addr.unwrap(),
            https: https.expect("https listening"),
            trace,
            _dir: dir,
        };
        (service, listening.unwrap(), detected.unwrap())
    }

    /// CPU time used so far (user + system) and resident memory in KiB.
    fn usage(&self) -> (Duration, u64) {
        usage::of(self.child.id())
    }

    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

/// `clients` Modbus TCP clients, each sending one request at a time.
fn tcp_load(addr: &str, clients: usize, until: impl Fn(usize, Duration) -> bool + Sync) -> Stats {
    // Sessions of an earlier load free their slots as soon as the card sees them closed.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let per_client: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let until = &until;
                s.spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream.set_nodelay(true).unwrap();
                    let mut request = vec![];
                    let mut answer = [0u8; 7 + 2 + 96];
                    let mut samples = vec![];
                    let mut tid = 0u16;
                    while !until(samples.len() * clients, started.elapsed()) {
                        tid = tid.wrapping_add(1);
                        request.clear();
                        mbap::encode(
                            mbap::Header {
                                transaction: tid,
                                unit: 1,
                            },
                            &READ,
                            &mut request,
                        );
                        let t = Instant::now();
                        stream.write_all(&request).unwrap();
                        stream.read_exact(&mut answer).unwrap();
                        samples.push(t.elapsed());
                        assert_eq!(u16::from_be_bytes([answer[0], answer[1]]), tid);
                        assert_eq!(answer[7], 0x03, "exception {:02X}", answer[8]);
                    }
                    samples
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Stats::from(
        per_client.into_iter().flatten().collect(),
        started.elapsed(),
    )
}

fn line_rate_time(baud: u32) -> Duration {
    rtu::wire_time(baud, REQUEST_BYTES + ANSWER_BYTES) + rtu::t35(baud) * 2
}

fn main() {
    if let Ok(spec) = std::env::var(WEB_LOAD) {
        return web_load(&spec);
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only a smoke run.
    let n = if quick() || !std::env::args().any(|a| a == "--bench") {
        300
    } else {
        20_000
    };
    let paced_for = if quick() || n == 300 {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    println!(
        "# gateway benchmark ({} cores; {})",
        std::thread::available_parallelism().unwrap(),
        machine()
    );
    println!("request: read 48 holding registers at 0x1060 ({REQUEST_BYTES}-byte request, {ANSWER_BYTES}-byte answer)\n");
    if std::env::var("BENCH_WEB_ONLY").is_ok() {
        return web(n);
    }
    if std::env::var("BENCH_PACED_ONLY").is_ok() {
        return paced(paced_for);
    }

    // 1. Unpaced.
    let sim = card::simulated_ups();
    let path = sim.path().unwrap().to_path_buf();
    let fl = floor(&path, 19200, Duration::ZERO, |done, _| done >= n);
    println!("## unpaced, over pseudo-terminals ({n} requests each)\n");
    println!("| path | clients | requests/s | median µs | p99 µs | added median µs | added p99 µs | service CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| floor: RTU master → simulated UPS | 1 | {:.0} | {:.0} | {:.0} | – | – | – |",
        fl.rate(),
        us(fl.median),
        us(fl.p99)
    );
    let (service, listening, detected) = Service::start(&path, 19200, &["frame_gap_us=0"]);
    for clients in [1, 3] {
        let (cpu0, _) = service.usage();
        let st = tcp_load(&service.addr, clients, |done, _| done >= n);
        let (cpu1, _) = service.usage();
        let cpu = (cpu1 - cpu0).as_secs_f64() / st.elapsed.as_secs_f64() * 100.0;
        println!(
            "| TCP → card → simulated UPS | {clients} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {cpu:.0} % of a core |",
            st.rate(), us(st.median), us(st.p99),
            us(st.median) - us(fl.median), us(st.p99) - us(fl.p99)
        );
    }

    // 3. Memory under load, on the same service: one long run, sampled as it goes.
    let total = if n == 300 { 3_000 } else { 100_000 };
    println!("\n## resident memory, 3 clients, {total} requests\n");
    println!("| after requests | VmRSS KiB |");
    println!("|---|---|");
    println!(
        "| 0 (after start-up and the runs above) | {} |",
        service.usage().1
    );
    let done = std::sync::atomic::AtomicUsize::new(0);
    let samples = std::sync::Mutex::new(vec![]);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = total / 4;
            while next <= total {
                if done.load(std::sync::atomic::Ordering::Relaxed) >= next {
                    samples.lock().unwrap().push((next, service.usage().1));
                    next += total / 4;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        tcp_load(&service.addr, 3, |d, _| {
            done.store(d, std::sync::atomic::Ordering::Relaxed);
            d >= total
        });
        done.store(total, std::sync::atomic::Ordering::Relaxed);
    });
    for (at, rss) in samples.into_inner().unwrap() {
        println!("| {at} | {rss} |");
    }
    service.stop();
    drop(sim);

    paced(paced_for);

    web(n);

    // 4. Size and start-up.
    let size = std::fs::metadata(BIN).unwrap().len();
    println!("\n## binary and start-up\n");
    println!(
        "- binary {BIN}: {:.2} MiB ({size} bytes)",
        size as f64 / 1048576.0
    );
    println!("- start-up: Modbus TCP listening after {:.0} ms; UPS found (fixed 19200 baud, one probe) after {:.0} ms", listening.as_secs_f64() * 1e3, detected.as_secs_f64() * 1e3);
}

/// Part 2: the card against the wire-speed floor, per rate and number of clients; then the
/// trace of one exchange.
fn paced(run_for: Duration) {
    println!(
        "\n## turnaround on the UPS line: the simulated UPS at wire speed ({run_for:?} per run)\n"
    );
    println!("| baud | clients | line-rate exchanges/s | floor exchanges/s | card exchanges/s | card / floor | card / line rate | overshoot median µs | p99 µs | max µs | early frames | service CPU |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut bed = vec![];
    for baud in [57600, 19200, 9600] {
        let sim = paced_sim(baud);
        let path = sim.path().unwrap().to_path_buf();
        let line = 1.0 / line_rate_time(baud).as_secs_f64();
        // Sends at once: every request is early, and the simulator starts it as soon as
        // the line is free. Its turnarounds are the bed's own: two pty hops, two wake-ups.
        let fl = floor(&path, baud, Duration::ZERO, |_, t| t >= run_for);
        let mut own: Vec<Duration> = sim
            .take_turnarounds()
            .iter()
            .map(|t| t.arrival - t.last_byte)
            .collect();
        own.sort();
        bed.push((baud, own[own.len() / 2], own[own.len() * 99 / 100]));
        let (service, _, _) = Service::start(&path, baud, &[]);
        for clients in [1, 3] {
            sim.take_turnarounds();
            let early = sim.stats().early;
            let (cpu0, _) = service.usage();
            let st = tcp_load(&service.addr, clients, |_, t| t >= run_for);
            let (cpu1, _) = service.usage();
            let early = sim.stats().early - early;
            let mut over = overshoots(&sim);
            let cpu = (cpu1 - cpu0).as_secs_f64() / st.elapsed.as_secs_f64() * 100.0;
            over.sort();
            let at = |q: f64| us(over[((over.len() as f64 * q) as usize).min(over.len() - 1)]);
            println!(
                "| {baud} | {clients} | {line:.2} | {:.2} | {:.2} | {:.2} % | {:.2} % | {:.0} | {:.0} | {:.0} | {early} | {cpu:.1} % of a core |",
                fl.rate(),
                st.rate(),
                st.rate() / fl.rate() * 100.0,
                st.rate() / line * 100.0,
                at(0.5),
                at(0.99),
                us(*over.last().unwrap()),
            );
        }
        service.stop();
    }
    println!("\nThe bed's own turnaround (the floor master's answer's last byte to its next request, no silence kept):");
    for (baud, median, p99) in bed {
        println!(
            "- {baud} baud: median {:.0} µs, p99 {:.0} µs",
            us(median),
            us(p99)
        );
    }
    trace(run_for.min(Duration::from_secs(5)));
}

/// The simulated UPS on a new pseudo-terminal, emulating the wire at `baud`.
fn paced_sim(baud: u32) -> Sim {
    Sim::on_pty(
        Pty::open().unwrap(),
        SimConfig {
            baud,
            paced: true,
            ..SimConfig::default()
        },
    )
    .unwrap()
}

/// The overshoots of the turnarounds recorded since the last take, but the first: it
/// follows the idle line before a run, not an answer the master waited for.
fn overshoots(sim: &Sim) -> Vec<Duration> {
    let turnarounds = sim.take_turnarounds();
    turnarounds
        .iter()
        .skip(1)
        .map(|t| t.overshoot().expect("the card sent inside the silence"))
        .collect()
}

/// One turnaround as the simulator and the card's trace saw it, in monotonic nanoseconds.
#[derive(Clone, Copy)]
struct Traced {
    /// The simulator wrote the answer's last byte.
    last_byte: i64,
    /// The card's silence: it ends at `found` + `gap`.
    gap: i64,
    found: i64,
    /// The card took the next request from its queue.
    taken: i64,
    /// The card woke from its sleep to the silence's end.
    woke: i64,
    /// The card had written the request.
    sent: i64,
    /// The simulator found the request.
    arrival: i64,
}

impl Traced {
    fn overshoot(&self) -> i64 {
        self.arrival - self.last_byte - self.gap
    }
}

/// One exchange at 57600 baud, 1 client, with the link's trace on: where the overshoot of
/// the median turnaround goes, and its parts over every exchange. The simulator's and the
/// card's timestamps are lined up on the monotonic clock.
fn trace(run_for: Duration) {
    let baud = 57600;
    let sim = paced_sim(baud);
    let service = Service::start_traced(sim.path().unwrap(), baud);
    sim.take_turnarounds();
    tcp_load(&service.addr, 1, |_, t| t >= run_for);
    let turnarounds: Vec<_> = sim.take_turnarounds().into_iter().skip(1).collect();
    std::thread::sleep(Duration::from_millis(300));
    let lines = std::mem::take(&mut *service.trace.lock().unwrap());
    service.stop();
    // Per exchange: silence ends, the silence, request taken, woke, sent.
    let card: Vec<[i64; 5]> = lines
        .iter()
        .filter_map(|l| {
            let numbers: Vec<i64> = l
                .split_whitespace()
                .filter_map(|w| w.trim_matches(|c| c == '(' || c == ',').parse().ok())
                .collect();
            numbers.try_into().ok()
        })
        .collect();
    // Each turnaround with the card's line for the request that ended it: the last one
    // written before the simulator found the request.
    let mut traced: Vec<Traced> = turnarounds
        .iter()
        .filter_map(|t| {
            let last_byte = modbus_card::rt::monotonic_ns(t.last_byte);
            let arrival = modbus_card::rt::monotonic_ns(t.arrival);
            let [ends, gap, taken, woke, sent] = *card.iter().rev().find(|c| c[4] <= arrival)?;
            // Not the line of an earlier exchange.
            (ends - gap >= last_byte).then_some(Traced {
                last_byte,
                gap,
                found: ends - gap,
                taken,
                woke,
                sent,
                arrival,
            })
        })
        .collect();
    if traced.is_empty() {
        println!("\n(no trace lines matched the simulator's turnarounds)");
        return;
    }
    traced.sort_by_key(Traced::overshoot);
    let t = traced[traced.len() / 2];
    let at = |ns: i64| (ns - t.last_byte) as f64 / 1000.0;
    println!(
        "\n### one exchange traced (57600 baud, 1 client; the median overshoot of {} turnarounds: {:.0} µs)\n",
        traced.len(),
        t.overshoot() as f64 / 1000.0
    );
    println!("| event | µs after the answer's last byte was written |");
    println!("|---|---|");
    println!("| simulated UPS writes the answer's last byte | 0.0 |");
    println!(
        "| card finds it (its poll wakes; the silence counts from here) | {:.1} |",
        at(t.found)
    );
    println!(
        "| card takes the next request from its queue | {:.1} |",
        at(t.taken)
    );
    println!(
        "| silence ends (found + {:.0} µs) | {:.1} |",
        t.gap as f64 / 1000.0,
        at(t.found + t.gap)
    );
    println!(
        "| card wakes from its absolute-deadline sleep | {:.1} |",
        at(t.woke)
    );
    println!("| card has written the request | {:.1} |", at(t.sent));
    println!(
        "| simulated UPS finds the request (its poll wakes) | {:.1} |",
        at(t.arrival)
    );

    println!(
        "\nThe parts of the overshoot over all {} traced turnarounds (µs):\n",
        traced.len()
    );
    println!("| part | median | p99 | max |");
    println!("|---|---|---|---|");
    type Part = (&'static str, fn(&Traced) -> i64);
    let parts: [Part; 6] = [
        ("finding the last byte (pty hop, wake-up)", |t| {
            t.found - t.last_byte
        }),
        (
            "the request coming after the silence ended (the master's round trip)",
            |t| (t.taken - t.found - t.gap).max(0),
        ),
        ("waking after the silence's end (timer latency)", |t| {
            t.woke - (t.found + t.gap).max(t.taken)
        }),
        ("draining the port and writing the request", |t| {
            t.sent - t.woke
        }),
        (
            "the request reaching the simulated UPS (pty hop, wake-up)",
            |t| t.arrival - t.sent,
        ),
        ("overshoot", Traced::overshoot),
    ];
    for (name, part) in parts {
        let mut v: Vec<f64> = traced.iter().map(|t| part(t) as f64 / 1000.0).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            v[v.len() / 2],
            v[(v.len() * 99 / 100).min(v.len() - 1)],
            v[v.len() - 1]
        );
    }
    let late = traced.iter().filter(|t| t.taken > t.found + t.gap).count();
    println!(
        "\n{late} of {} requests were taken from the queue after the silence had ended.",
        traced.len()
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, Linux {}", kernel.trim())
}

/// The card's MAC in the benchmark: the default admin password is 3C4D5E.
const WEB_MAC: &str = "00:1a:2b:3c:4d:5e";
/// Set in the environment of the load generator: `BASE|COOKIE|REQUESTS_PER_S|SECONDS`.
const WEB_LOAD: &str = "GATEWAY_BENCH_WEB_LOAD";
const WEB_RATE: u32 = 300;

/// An HTTPS client for the benchmark (the card's own certificate is not checked here).
fn web_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// Logs in as admin (changing the default password first); returns the session cookie and
/// the time each login took.
fn web_login(base: &str) -> (String, Vec<Duration>) {
    let agent = web_agent();
    let post = |cookie: &str, path: &str, form: &[(&str, &str)]| {
        agent
            .post(format!("{base}{path}"))
            .header("Origin", base)
            .header("Cookie", cookie)
            .send_form(form.iter().copied())
            .unwrap()
    };
    let cookies = |r: &ureq::http::Response<ureq::Body>| -> String {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .filter(|c| !c.ends_with('='))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let csrf_of = |body: &str| {
        let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
        body[at..].split('"').next().unwrap().to_string()
    };
    let login = |password: &str| {
        let mut form = agent.get(format!("{base}/login")).call().unwrap();
        let c = cookies(&form);
        let csrf = csrf_of(&form.body_mut().read_to_string().unwrap());
        let t = Instant::now();
        let r = post(
            &c,
            "/login",
            &[("csrf", &csrf), ("user", "admin"), ("password", password)],
        );
        (cookies(&r), t.elapsed())
    };
    let new = "Bench12!Password";
    let (session, _) = login("3C4D5E");
    let mut page = agent
        .get(format!("{base}/password"))
        .header("Cookie", &session)
        .call()
        .unwrap();
    let csrf = csrf_of(&page.body_mut().read_to_string().unwrap());
    post(
        &session,
        "/password",
        &[
            ("csrf", &csrf),
            ("current", "3C4D5E"),
            ("new", new),
            ("repeat", new),
        ],
    );
    let mut times = vec![];
    let mut session = String::new();
    for _ in 0..5 {
        let (s, t) = login(new);
        session = s;
        times.push(t);
    }
    times.sort();
    (session, times)
}

/// The load generator, in a process of its own: GET / and /api/status in turn, paced at
/// the given rate, for the given time, over one kept-alive HTTPS connection.
fn web_load(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let (base, cookie) = (parts[0], parts[1]);
    let rate: u32 = parts[2].parse().unwrap();
    let secs: u64 = parts[3].parse().unwrap();
    let agent = web_agent();
    let started = Instant::now();
    let (mut ok, mut bad, mut bytes) = (0u64, 0u64, 0u64);
    let mut i = 0u32;
    while started.elapsed() < Duration::from_secs(secs) {
        let due = started + Duration::from_secs(1) * i / rate;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let path = if i.is_multiple_of(2) {
            "/"
        } else {
            "/api/status"
        };
        match agent
            .get(format!("{base}{path}"))
            .header("Cookie", cookie)
            .call()
        {
            Ok(mut r) if r.status() == 200 => {
                ok += 1;
                bytes += r.body_mut().read_to_vec().map_or(0, |b| b.len() as u64);
            }
            _ => bad += 1,
        }
        i += 1;
    }
    let t = started.elapsed().as_secs_f64();
    println!("{ok} {bad} {bytes} {t}");
}

/// The web under load while Modbus traffic runs: Modbus latency with and without a few
/// hundred HTTPS page requests per second from a second process; RSS with every service
/// on (Modbus TCP, RS485, HTTP, HTTPS, polling); the cost of a login.
fn web(n: usize) {
    let sim = card::simulated_ups();
    let path = sim.path().unwrap().to_path_buf();
    let rs485 = modbus_card::pty::NullModem::open().unwrap();
    let rs485_path = rs485.card_side().to_string_lossy().into_owned();
    let (service, _, _) = Service::start_with(
        &path,
        19200,
        &["frame_gap_us=0", "poll_rate_s=10"],
        &["--rs485", &rs485_path],
    );
    let base = format!("https://{}", service.https);
    let (cookie, logins) = web_login(&base);
    let rss_idle = service.usage().1;

    let quiet = tcp_load(&service.addr, 1, |done, _| done >= n);
    let secs = (quiet.elapsed.as_secs_f64() * 1.5 + 4.0).ceil() as u64;
    let (cpu0, _) = service.usage();
    let load = Command::new(std::env::current_exe().unwrap())
        .env(WEB_LOAD, format!("{base}|{cookie}|{WEB_RATE}|{secs}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let rss = std::sync::Mutex::new(vec![]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let loaded = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rss.lock().unwrap().push(service.usage().1);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let st = tcp_load(&service.addr, 1, |done, _| done >= n);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        st
    });
    let out = load.wait_with_output().unwrap();
    let (cpu1, rss_after) = service.usage();
    let report = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = report
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (ok, bad, bytes, took) = (f[0], f[1], f[2], f[3]);
    let rss = rss.into_inner().unwrap();

    println!("\n## web load and Modbus latency ({n} Modbus requests each, 1 client)\n");
    println!("| web load | Modbus requests/s | median µs | p99 µs |");
    println!("|---|---|---|---|");
    println!(
        "| none | {:.0} | {:.0} | {:.0} |",
        quiet.rate(),
        us(quiet.median),
        us(quiet.p99)
    );
    println!(
        "| {:.0} HTTPS pages/s (Home and /api/status in turn) | {:.0} | {:.0} | {:.0} |",
        ok / took,
        loaded.rate(),
        us(loaded.median),
        us(loaded.p99)
    );
    println!(
        "\n- p99 with web load: {:+.1} % of the quiet figure; median {:+.1} %",
        (us(loaded.p99) / us(quiet.p99) - 1.0) * 100.0,
        (us(loaded.median) / us(quiet.median) - 1.0) * 100.0
    );
    println!(
        "- load generator: {ok:.0} pages in {took:.1} s, {bad:.0} failed, {:.0} KiB received",
        bytes / 1024.0
    );
    println!(
        "- service CPU over the loaded run: {:.0} % of a core",
        (cpu1 - cpu0).as_secs_f64() / took * 100.0
    );
    println!(
        "- VmRSS with Modbus TCP, RS485, HTTP, HTTPS and polling on: {rss_idle} KiB after login; \
         during the load {}..{} KiB over {} samples; {rss_after} KiB after",
        rss.iter().min().unwrap(),
        rss.iter().max().unwrap(),
        rss.len()
    );
    println!(
        "- login (Argon2id check, release build): median {:.0} ms, slowest {:.0} ms of {}",
        logins[logins.len() / 2].as_secs_f64() * 1e3,
        logins.last().unwrap().as_secs_f64() * 1e3,
        logins.len()
    );
    service.stop();
    drop(rs485);
}
