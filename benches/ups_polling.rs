//! What the card's polling cycle costs an RS485 master: with the UPS line at 9600 baud
//! (the simulator paced as a wire), an RTU master on the RS485 port sends a read of the
//! measurement table (48 words) the moment the cycle's own read of that table has been
//! taken for the line, the worst moment, and times its answer's first byte. The same
//! master with polling off gives the floor. The service runs in this process (its
//! threads as in the card), the master on the far end of a pty null modem.
//!
//! Then three Modbus TCP masters read the same table back to back, with polling off and
//! every second, side by side: exchanges per second and each master's latency.
//!
//! `cargo bench --bench ups_polling` (about 3 minutes; `BENCH_QUICK=1`: 20 samples, 5 s).

use modbus_card::modbus::rtu;
use modbus_card::pty::{NullModem, Pty};
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Sim, SimConfig};
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

const BAUD: u32 = 9600;
const PDU: [u8; 5] = [0x03, 0x10, 0x60, 0x00, 48];

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let n = if quick { 20 } else { 100 };
    println!("| polling | samples | first byte median ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    for poll in [0u32, 1] {
        let mut t = run(poll, n);
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            if poll == 0 {
                "off (floor), requests at random moments"
            } else {
                "every 1 s, requests just after the cycle's 48-word read was taken"
            },
            t.len(),
            ms(t[t.len() / 2]),
            ms(t[t.len() * 95 / 100]),
            ms(*t.last().unwrap()),
        );
    }
    let secs = if quick { 5 } else { 30 };
    println!();
    println!("| 3 masters, 19200 baud, {secs} s | exchanges/s | median ms | p99 ms | max ms | cycle reads |");
    println!("|---|---|---|---|---|---|");
    for poll in [0u32, 1] {
        let (rate, mut t, reads) = masters(poll, secs);
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| polling {} | {rate:.2} | {:.1} | {:.1} | {:.1} | {reads} |",
            if poll == 0 { "off" } else { "every 1 s" },
            ms(t[t.len() / 2]),
            ms(t[t.len() * 99 / 100]),
            ms(*t.last().unwrap()),
        );
    }
}

fn start(poll: u32, baud: u32) -> (tempfile::TempDir, Sim, NullModem, Service) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(
        Pty::open().unwrap(),
        SimConfig {
            baud,
            paced: true,
            ..SimConfig::default()
        },
    )
    .unwrap();
    let rs485 = NullModem::open().unwrap();
    let service = Service::start(Options {
        data: dir.path().join("data"),
        ups: sim.path().unwrap().to_path_buf(),
        rs485: Some(rs485.card_side().to_path_buf()),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: vec![
            ("ups_baud".into(), baud.to_string()),
            ("poll_rate_s".into(), poll.to_string()),
        ],
        ..Options::default()
    })
    .unwrap();
    let started = Instant::now();
    while service.link.status.state() != modbus_card::link::LinkState::Up {
        assert!(started.elapsed() < Duration::from_secs(30), "UPS not found");
        std::thread::sleep(Duration::from_millis(20));
    }
    (dir, sim, rs485, service)
}

/// Three masters reading 48 words back to back for `secs`: exchanges per second, and the
/// latencies of all their requests.
fn masters(poll: u32, secs: u64) -> (f64, Vec<Duration>, u64) {
    let (_dir, _sim, _rs485, service) = start(poll, 19200);
    let addr = service.modbus_addr();
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let times: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    let mut m = std::net::TcpStream::connect(addr).unwrap();
                    m.set_nodelay(true).unwrap();
                    let mut t = Vec::new();
                    let mut answer = [0u8; 9 + 96];
                    let mut id = 0u16;
                    while Instant::now() < until {
                        id = id.wrapping_add(1);
                        let [a, b] = id.to_be_bytes();
                        let sent = Instant::now();
                        m.write_all(&[a, b, 0, 0, 0, 6, 1, 0x03, 0x10, 0x60, 0, 48])
                            .unwrap();
                        m.read_exact(&mut answer).unwrap();
                        assert_eq!(answer[7], 0x03, "an answer, not an exception");
                        t.push(sent.elapsed());
                    }
                    t
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    let reads = service.link.status.ups.lock().reads;
    service.stop();
    (rate, times, reads)
}

fn run(poll: u32, n: usize) -> Vec<Duration> {
    let (_dir, _sim, rs485, service) = start(poll, BAUD);
    let status = service.link.status.clone();
    let port = serialport::new(rs485.user_side().to_string_lossy(), 9600)
        .open_native()
        .unwrap();
    // SAFETY: the descriptor comes from into_raw_fd and is owned by the File from here on.
    let mut port = unsafe { std::fs::File::from_raw_fd(port.into_raw_fd()) };
    let mut request = Vec::new();
    rtu::encode(1, &PDU, &mut request);
    let mut times = Vec::with_capacity(n);
    let mut rng = 0x9E37_79B9u32;
    while times.len() < n {
        if poll == 0 {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            std::thread::sleep(Duration::from_millis(u64::from(rng % 300)));
        } else {
            // The 4th read of a cycle (identification, status, alarms, measurements) is
            // the 48-word one: wait until it has just been taken for the line.
            let seen = status.ups.lock().reads;
            let target = (seen / 4 + 1) * 4;
            let deadline = Instant::now() + Duration::from_secs(10);
            while status.ups.lock().reads < target {
                assert!(Instant::now() < deadline, "no cycle read");
                std::hint::spin_loop();
            }
        }
        let sent = Instant::now();
        port.write_all(&request).unwrap();
        let mut fds = [nix::poll::PollFd::new(
            port.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(3000u16)).unwrap() > 0);
        times.push(sent.elapsed());
        // The rest of the answer, until the line is quiet.
        let mut buf = [0u8; 512];
        let mut got = 0;
        loop {
            let mut fds = [nix::poll::PollFd::new(
                port.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)).unwrap() == 0 {
                break;
            }
            got += port.read(&mut buf[got.min(256)..]).unwrap();
        }
        assert!(got >= 101, "a whole answer: {got} bytes");
    }
    service.stop();
    times
}
