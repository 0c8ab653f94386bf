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
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(ups: &std::path::Path, baud: u32, extra: &[&str]) -> (Service, Duration, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(["run", "--data"])
            .arg(dir.path())
            .arg("--ups")
            .arg(ups)
            .args(["--baud", &baud.to_string(), "--modbus", "127.0.0.1:0"])
            .args(["--set", "poll_rate_s=0"])
            .args(extra.iter().flat_map(|kv| ["--set", kv]))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut listening, mut detected) = (None, None, None);
        while detected.is_none() {
            let line = lines.next().expect("service log ended").unwrap();
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

fn line_rate_time(baud: u32) -> Duration {
    rtu::wire_time(baud, REQUEST_BYTES + ANSWER_BYTES) + rtu::t35(baud) * 2
}

fn main() {
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

    // 1. Unpaced.
    let sim = Sim::on_pty(
        Pty::open().unwrap(),
        SimConfig {
            baud: 19200,
            ..SimConfig::default()
        },
    )
    .unwrap();
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
