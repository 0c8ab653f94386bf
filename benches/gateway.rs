//! Gateway benchmark: `cargo bench --bench gateway` (figures go in BENCHMARKS.md).
//!
//! The service runs as its own process (the release binary), so the CPU time and resident
//! memory read from /proc are its own; the simulated UPS and the clients run here.
//!
//! 1. Unpaced, over pseudo-terminals: requests/s and round-trip latency for 1 and 3 Modbus
//!    TCP clients, against the floor: an RTU master talking straight to the simulated UPS
//!    over the same kind of pty. There is no wire, so both keep no inter-frame gap.
//! 2. Paced: the simulated UPS emulates the wire at 57600, 19200 and 9600 baud; throughput
//!    against the theoretical line rate and against the paced floor; the service's CPU.
//!    Both masters keep the 3.5-character gap, as on a real line.
//! 3. Resident memory after 100,000 requests from 3 clients, and whether it grows.
//! 4. Stripped binary size and start-up time.
//! 5. The web under a few hundred HTTPS pages a second from a second process: Modbus
//!    latency with and without it, resident memory with every service on, login time.
//!    `BENCH_WEB_ONLY=1` runs only this part.

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
            .env("RUST_LOG", "info")
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
        std::thread::spawn(move || for _ in lines {});
        let service = Service {
            child,
            addr: addr.unwrap(),
            https: https.expect("https listening"),
            _dir: dir,
        };
        (service, listening.unwrap(), detected.unwrap())
    }

    /// CPU time used so far (user + system) and resident memory.
    fn usage(&self) -> (Duration, u64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf takes an integer name and returns an integer.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap();
        (Duration::from_millis(ticks * 1000 / hz), rss)
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

/// The simulated UPS at 19200 baud on a new pseudo-terminal, answering as fast as it can.
fn unpaced_sim() -> Sim {
    Sim::on_pty(
        Pty::open().unwrap(),
        SimConfig {
            baud: 19200,
            ..SimConfig::default()
        },
    )
    .unwrap()
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

    // 1. Unpaced.
    let sim = unpaced_sim();
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

    // 2. Paced.
    println!("\n## paced: the simulated UPS at wire speed ({paced_for:?} per run)\n");
    println!("| baud | line-rate exchanges/s | floor exchanges/s | card exchanges/s | card / floor | card / line rate | card median ms | service CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    for baud in [57600, 19200, 9600] {
        let sim = Sim::on_pty(
            Pty::open().unwrap(),
            SimConfig {
                baud,
                paced: true,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let path = sim.path().unwrap().to_path_buf();
        let line = 1.0 / line_rate_time(baud).as_secs_f64();
        let fl = floor(&path, baud, rtu::t35(baud), |_, t| t >= paced_for);
        let (service, _, _) = Service::start(&path, baud, &[]);
        let (cpu0, _) = service.usage();
        let st = tcp_load(&service.addr, 1, |_, t| t >= paced_for);
        let (cpu1, _) = service.usage();
        let cpu = (cpu1 - cpu0).as_secs_f64() / st.elapsed.as_secs_f64() * 100.0;
        println!(
            "| {baud} | {line:.2} | {:.2} | {:.2} | {:.1} % | {:.1} % | {:.2} | {cpu:.1} % of a core |",
            fl.rate(), st.rate(), st.rate() / fl.rate() * 100.0, st.rate() / line * 100.0, us(st.median) / 1000.0
        );
        service.stop();
    }

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
    let sim = unpaced_sim();
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
