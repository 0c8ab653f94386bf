//! Time to exception 0x0B when the UPS falls silent: `cargo bench --bench outage`
//! (figures go in BENCHMARKS.md).
//!
//! The service runs in this process on a pseudo-terminal with the simulated UPS at 19200
//! baud and the default serial timeout (500 ms). Over several outages, 1 and then 3 Modbus
//! TCP masters each send requests one after another while the UPS is silent; each
//! request's time to its 0x0B is recorded by its place in the outage (first, second,
//! later). Between outages the UPS answers again and the card finds it.

use modbus_card::link::LinkState;
use modbus_card::pty::Pty;
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Fault, Sim, SimConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const OUTAGES: usize = 8;
const PER_OUTAGE: usize = 6;

/// One read of 0x1060; returns the exception code (0 for a normal answer) and the time.
fn ask(s: &mut TcpStream, tid: u16) -> (u8, Duration) {
    let mut req = tid.to_be_bytes().to_vec();
    req.extend_from_slice(&[0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1]);
    let started = Instant::now();
    s.write_all(&req).unwrap();
    let mut head = [0u8; 8];
    s.read_exact(&mut head).unwrap();
    let mut rest = vec![0u8; usize::from(head[5]) - 2];
    s.read_exact(&mut rest).unwrap();
    let took = started.elapsed();
    assert_eq!(&head[..2], &tid.to_be_bytes(), "answer to another request");
    (if head[7] & 0x80 != 0 { rest[0] } else { 0 }, took)
}

fn wait_state(service: &Service, state: LinkState) {
    let started = Instant::now();
    while service.link.status.state() != state {
        assert!(started.elapsed() < Duration::from_secs(30), "no {state:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {label:<14} n={:<3} median {:>7.1} ms   max {:>7.1} ms",
        samples.len(),
        ms(samples[samples.len() / 2]),
        ms(*samples.last().unwrap())
    );
}

fn run(masters: usize) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let service = Service::start(Options {
        data: dir.path().join("data"),
        ups: sim.path().unwrap().to_path_buf(),
        rs485: None,
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: vec![("ups_baud".into(), "19200".into())],
        ..Options::default()
    })
    .unwrap();
    let addr: SocketAddr = service.modbus_addr();
    let mut by_place: Vec<Vec<Duration>> = vec![vec![]; PER_OUTAGE];
    let mut streams: Vec<TcpStream> = (0..masters)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    for outage in 0..OUTAGES {
        wait_state(&service, LinkState::Up);
        // Each master proves the UPS answers, then the UPS falls silent.
        for s in &mut streams {
            while ask(s, 1).0 != 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        sim.set_fault(Fault::Silent);
        let results: Vec<Vec<(u8, Duration)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = streams
                .iter_mut()
                .map(|s| {
                    scope.spawn(move || {
                        (0..PER_OUTAGE)
                            .map(|i| ask(s, (outage * 100 + i) as u16 + 2))
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for master in results {
            for (place, (code, took)) in master.into_iter().enumerate() {
                assert_eq!(code, 0x0B, "outage {outage}, request {place}");
                by_place[place].push(took);
            }
        }
        sim.set_fault(Fault::None);
    }
    println!("{masters} master(s), {OUTAGES} outages, serial timeout 500 ms:");
    summary("first", by_place[0].clone());
    summary("second", by_place[1].clone());
    summary("third", by_place[2].clone());
    summary("later (4-6)", by_place[3..].concat());
    drop(streams);
    service.stop();
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    run(1);
    run(3);
}
