//! The simulated UPS over real pseudo-terminals, seen from an RTU master's side of the line.

use modbus_card::modbus::rtu::{self, FrameError, Status};
use modbus_card::pty::Pty;
use modbus_card::sim::ups::{reg, status};
use modbus_card::sim::{Fault, Sim, SimConfig};
use serialport::TTYPort;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const READ_IDENT: [u8; 5] = [0x03, 0x10, 0x00, 0x00, 0x0C];
const READ_MEASUREMENTS: [u8; 5] = [0x03, 0x10, 0x60, 0x00, 0x30];

fn sim(config: SimConfig) -> Sim {
    Sim::on_pty(Pty::open().unwrap(), config).unwrap()
}

fn open(path: &Path, baud: u32) -> TTYPort {
    serialport::new(path.to_string_lossy(), baud)
        .timeout(Duration::from_millis(20))
        .open_native()
        .unwrap()
}

fn send(port: &mut impl Write, address: u8, pdu: &[u8]) {
    let mut frame = Vec::new();
    rtu::encode(address, pdu, &mut frame);
    port.write_all(&frame).unwrap();
}

/// Everything that arrives within `window`.
fn collect(port: &mut impl Read, window: Duration) -> Vec<u8> {
    collect_up_to(port, usize::MAX, window)
}

/// What arrives within `window`, stopping early once `want` bytes are in.
fn collect_up_to(port: &mut impl Read, want: usize, window: Duration) -> Vec<u8> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    let mut chunk = [0u8; 300];
    while Instant::now() < end && got.len() < want {
        match port.read(&mut chunk) {
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// Reads until a whole answer from slave 1 to `request` has arrived, or `limit` passes.
fn answer(port: &mut impl Read, request: &[u8], limit: Duration) -> Result<Vec<u8>, String> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut chunk = [0u8; 300];
    while Instant::now() < end {
        match port.read(&mut chunk) {
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
        match rtu::check_response(1, request, &got) {
            Ok(Status::Complete(n)) => {
                got.truncate(n);
                return Ok(got);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{e}: {got:02X?}")),
        }
    }
    Err(format!("no whole answer in {limit:?}: {got:02X?}"))
}

fn exchange(port: &mut TTYPort, pdu: &[u8]) -> Vec<u8> {
    send(port, 1, pdu);
    let frame = answer(port, pdu, Duration::from_secs(2)).unwrap();
    rtu::pdu_of(&frame).to_vec()
}

/// Polls `check` for up to two seconds.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn answers_at_its_speed_and_stays_silent_at_another() {
    let sim = sim(SimConfig::default());
    let path = sim.path().unwrap().to_path_buf();

    let mut port = open(&path, 19200);
    let ident = exchange(&mut port, &READ_IDENT);
    assert_eq!(ident[..2], [0x03, 24]);
    // 0x1003..0x1007, two ASCII characters a word, the first in the low byte.
    let serial: Vec<u8> = ident[8..18].chunks(2).flat_map(|w| [w[1], w[0]]).collect();
    assert_eq!(serial, b"S24A100042", "{serial:02X?}");
    // The master changes speed on the port it holds. (Closing and opening the port again
    // races the other tests' child processes: one forked at that moment holds the port's
    // lock until it execs.)
    serialport::SerialPort::set_baud_rate(&mut port, 9600).unwrap();
    send(&mut port, 1, &READ_IDENT);
    assert!(collect(&mut port, Duration::from_millis(200)).is_empty());
    assert_eq!(sim.stats().wrong_speed, 1);
    assert_eq!(sim.stats().requests, 1);

    sim.set_baud(9600);
    assert_eq!(exchange(&mut port, &READ_IDENT), ident);
    let stats = sim.stats();
    assert_eq!(
        (stats.requests, stats.answered, stats.wrong_speed),
        (2, 2, 1)
    );
}

#[test]
fn genuine_exceptions_come_back_as_frames() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);
    assert_eq!(
        exchange(&mut port, &[0x03, 0x10, 0x00, 0x00, 0x0B]),
        [0x83, 0x02]
    );
    assert_eq!(
        exchange(&mut port, &[0x06, 0x05, 0xB0, 0x00, 0x63]),
        [0x86, 0x03]
    );
    assert_eq!(exchange(&mut port, &[0x07]), [0x87, 0x01]);
    let measurements = exchange(&mut port, &READ_MEASUREMENTS);
    assert_eq!(measurements.len(), 2 + 96);
    assert_eq!(
        exchange(&mut port, &[0x04, 0x10, 0xE4, 0x00, 0x01]),
        [0x04, 2, 0x01, 0x38]
    );
}

#[test]
fn scratch_bank_over_the_line() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);
    let write = [0x10, 0x00, 0x08, 0x00, 0x02, 0x04, 0x12, 0x34, 0x56, 0x78];
    assert_eq!(exchange(&mut port, &write), write[..5]);
    let rw = [
        0x17, 0x00, 0x08, 0x00, 0x03, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x9A, 0xBC,
    ];
    assert_eq!(
        exchange(&mut port, &rw),
        [0x17, 6, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC]
    );
    let coils = [0x0F, 0x00, 0x00, 0x00, 0x09, 0x02, 0xFF, 0x01];
    assert_eq!(exchange(&mut port, &coils), coils[..5]);
    assert_eq!(
        exchange(&mut port, &[0x01, 0x00, 0x00, 0x00, 0x0A]),
        [0x01, 2, 0xFF, 0x01]
    );
    assert_eq!(sim.register(0x000A), Some(0x9ABC));
}

#[test]
fn each_fault_spoils_the_answer_as_it_says() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);
    let good_len = 5 + 24;

    sim.set_fault(Fault::Silent);
    send(&mut port, 1, &READ_IDENT);
    assert!(collect(&mut port, Duration::from_millis(150)).is_empty());

    let mut got = |fault: Fault| {
        sim.set_fault(fault);
        send(&mut port, 1, &READ_IDENT);
        let want = if fault == Fault::Truncated {
            good_len / 2
        } else {
            good_len
        };
        let bytes = collect_up_to(&mut port, want, Duration::from_secs(2));
        // Nothing more follows.
        assert!(
            collect(&mut port, Duration::from_millis(30)).is_empty(),
            "{fault:?}"
        );
        bytes
    };

    let bad_crc = got(Fault::BadCrc);
    assert_eq!(
        rtu::check_response(1, &READ_IDENT, &bad_crc),
        Err(FrameError::BadCrc)
    );

    let wrong_slave = got(Fault::WrongSlave);
    assert_eq!(
        rtu::check_response(1, &READ_IDENT, &wrong_slave),
        Err(FrameError::WrongSlave {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        rtu::check_response(2, &READ_IDENT, &wrong_slave),
        Ok(Status::Complete(good_len))
    );

    let wrong_function = got(Fault::WrongFunction);
    assert_eq!(
        rtu::check_response(1, &READ_IDENT, &wrong_function),
        Err(FrameError::WrongFunction {
            expected: 3,
            got: 4
        })
    );

    let truncated = got(Fault::Truncated);
    assert_eq!(truncated.len(), good_len / 2);
    assert!(matches!(
        rtu::check_response(1, &READ_IDENT, &truncated),
        Ok(Status::Incomplete(_))
    ));

    let noise = got(Fault::Noise);
    assert_eq!(noise.len(), good_len);
    assert!(
        rtu::check_response(1, &READ_IDENT, &noise).is_err(),
        "{noise:02X?}"
    );

    let good = got(Fault::None);
    assert_eq!(
        rtu::check_response(1, &READ_IDENT, &good),
        Ok(Status::Complete(good_len))
    );

    let stats = sim.stats();
    assert_eq!(stats.requests, 7);
    assert_eq!(stats.answered, 6, "all but the silent one");
}

#[test]
fn a_late_answer_arrives_late_and_whole() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);
    sim.set_fault(Fault::Late(Duration::from_millis(300)));
    let start = Instant::now();
    send(&mut port, 1, &READ_IDENT);
    // A master with a 150 ms timeout gives up with nothing received...
    assert!(collect(&mut port, Duration::from_millis(150)).is_empty());
    // ...and the answer comes afterwards all the same.
    let frame = answer(&mut port, &READ_IDENT, Duration::from_secs(3)).unwrap();
    assert_eq!(frame.len(), 5 + 24);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn broadcasts_act_without_an_answer_and_other_slaves_are_ignored() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);

    send(&mut port, 0, &[0x06, 0x00, 0x10, 0xBE, 0xEF]);
    send_after_silence(&mut port, 0, &[0x06, 0x05, 0xB0, 0x00, 0x03]);
    assert!(collect(&mut port, Duration::from_millis(150)).is_empty());
    assert!(eventually(|| sim.register(0x0010) == Some(0xBEEF)));
    assert!(eventually(|| sim.stats().broadcasts == 2));
    assert_ne!(
        sim.register(status::ECO_MODE.addr).unwrap() & status::ECO_MODE.mask,
        0
    );

    send(&mut port, 5, &READ_IDENT);
    assert!(collect(&mut port, Duration::from_millis(150)).is_empty());
    let stats = sim.stats();
    assert_eq!(
        (stats.other_slave, stats.requests, stats.answered),
        (1, 0, 0)
    );
}

/// Sends a frame after a pause longer than a 3.5-character silence.
fn send_after_silence(port: &mut impl Write, address: u8, pdu: &[u8]) {
    std::thread::sleep(Duration::from_millis(10));
    send(port, address, pdu);
}

#[test]
fn garbage_is_dropped_at_the_silence_and_the_next_request_answered() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);
    let garbage: [&[u8]; 4] = [
        &[0xAA, 0x55, 0x00, 0xFF, 0x13, 0x37, 0x42, 0x99, 0x01],
        // A write of 123 registers that never comes whole.
        &[0x01, 0x10, 0x00, 0x00, 0x00, 0x7B, 0xF6, 0x00],
        // An unknown function with a bad CRC.
        &[0x01, 0x41, 0x01, 0x02, 0x03],
        &[0x01],
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        port.write_all(bytes).unwrap();
        // Over a pty the request could join the garbage in one read if the simulator were
        // slow to run: wait until it has dropped the garbage.
        assert!(
            eventually(|| sim.stats().bad_frames == i as u64 + 1),
            "garbage {i}: {:?}",
            sim.stats()
        );
        send(&mut port, 1, &READ_IDENT);
        let frame = answer(&mut port, &READ_IDENT, Duration::from_secs(2));
        assert!(frame.is_ok(), "garbage {i}: {frame:?}");
    }
    assert_eq!(sim.stats().requests, 4);

    // A long stream of noise with no silence never stalls the simulator: once the line
    // falls silent, a request (retried, as a master would) is answered.
    let noise: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    port.write_all(&noise).unwrap();
    let answered = (0..5).any(|_| {
        send_after_silence(&mut port, 1, &READ_IDENT);
        answer(&mut port, &READ_IDENT, Duration::from_millis(300)).is_ok()
    });
    assert!(answered, "{:?}", sim.stats());
    assert!(sim.stats().bad_frames > 4);
}

#[test]
fn paced_exchange_takes_the_wire_time() {
    let sim = sim(SimConfig {
        baud: 9600,
        slave: 1,
        paced: true,
    });
    let mut port = open(sim.path().unwrap(), 9600);
    let start = Instant::now();
    send(&mut port, 1, &READ_MEASUREMENTS);
    let frame = answer(&mut port, &READ_MEASUREMENTS, Duration::from_secs(3)).unwrap();
    let took = start.elapsed();
    let wire = rtu::wire_time(9600, 8 + frame.len()) + rtu::t35(9600);
    assert_eq!(frame.len(), 5 + 96);
    assert!(took >= wire, "{took:?} < {wire:?}");
    assert!(took < wire + Duration::from_secs(1), "{took:?}");

    // Unpaced, the same exchange is not held back by the wire.
    sim.set_paced(false);
    let start = Instant::now();
    send(&mut port, 1, &READ_MEASUREMENTS);
    answer(&mut port, &READ_MEASUREMENTS, Duration::from_secs(3)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn paced_line_holds_back_a_frame_sent_too_early_and_counts_it() {
    let sim = sim(SimConfig {
        baud: 9600,
        slave: 1,
        paced: true,
    });
    let mut port = open(sim.path().unwrap(), 9600);
    let (t35, exchange) = (rtu::t35(9600), rtu::wire_time(9600, 8 + 5 + 96));

    // The second request goes while the first answer is still on the line (it takes
    // 105 ms): it waits for the line to be free and the silence after it.
    let start = Instant::now();
    send(&mut port, 1, &READ_MEASUREMENTS);
    std::thread::sleep(Duration::from_millis(5));
    send(&mut port, 1, &READ_IDENT);
    let both = collect_up_to(&mut port, 101 + 29, Duration::from_secs(3));
    let took = start.elapsed();
    assert_eq!(
        rtu::check_response(1, &READ_MEASUREMENTS, &both),
        Ok(Status::Complete(101))
    );
    assert_eq!(
        rtu::check_response(1, &READ_IDENT, &both[101..]),
        Ok(Status::Complete(29))
    );
    let least = exchange + rtu::wire_time(9600, 8 + 5 + 24) + t35 * 3;
    assert!(took >= least, "{took:?} < {least:?}");
    assert_eq!(sim.stats().early, 1);
    // It came before the first answer ended: no turnaround.
    assert!(sim.take_turnarounds().is_empty());

    // A master that keeps the silence (and 10 ms more) is not early; its turnaround is
    // measured from the answer's last byte.
    std::thread::sleep(Duration::from_millis(10));
    send(&mut port, 1, &READ_IDENT);
    answer(&mut port, &READ_IDENT, Duration::from_secs(3)).unwrap();
    assert_eq!(sim.stats().early, 1);
    let turnarounds = sim.take_turnarounds();
    assert_eq!(turnarounds.len(), 1);
    assert_eq!(turnarounds[0].silence, t35);
    let overshoot = turnarounds[0].overshoot().unwrap();
    let floor = Duration::from_millis(10) - t35;
    assert!(
        overshoot >= floor && overshoot < Duration::from_secs(5),
        "{turnarounds:?}"
    );
    assert!(sim.command("stats").unwrap().ends_with("early 1"));
}

#[test]
fn mains_failure_shows_on_the_line() {
    let sim = sim(SimConfig::default());
    let mut port = open(sim.path().unwrap(), 19200);
    let runtime = [0x03, 0x10, 0x77, 0x00, 0x01];
    assert_eq!(exchange(&mut port, &runtime), [0x03, 2, 0xFF, 0xFF]);
    sim.set_mains(false);
    let minutes = exchange(&mut port, &runtime);
    assert_ne!(minutes, [0x03, 2, 0xFF, 0xFF]);
    let status_words = exchange(&mut port, &[0x03, 0x10, 0x20, 0x00, 0x06]);
    let word0 = u16::from_be_bytes([status_words[2], status_words[3]]);
    assert_ne!(word0 & status::ON_BATTERY.mask, 0);
    assert_ne!(sim.register(reg::BATTERY_CURRENT), Some(0));
}

#[test]
fn text_commands_for_a_person() {
    // The demo drives the simulator from a stdin thread.
    fn shareable<T: Send + Sync>() {}
    shareable::<Sim>();

    let sim = sim(SimConfig::default());
    assert_eq!(sim.command("fault late 250"), Ok("fault: late 250".into()));
    assert_eq!(
        sim.command("  fault   bad-crc "),
        Ok("fault: bad-crc".into())
    );
    assert!(sim
        .command("fault late")
        .unwrap_err()
        .contains("mains on|off"));
    assert!(sim.command("fault sometimes").is_err());
    assert!(sim
        .command("launch rockets")
        .unwrap_err()
        .contains("paced on|off"));
    assert_eq!(
        sim.command("mains off"),
        Ok("mains: off (on battery)".into())
    );
    assert_ne!(
        sim.register(status::ON_BATTERY.addr).unwrap() & status::ON_BATTERY.mask,
        0
    );
    assert!(sim.command("mains maybe").is_err());
    assert_eq!(sim.command("paced on"), Ok("paced: on".into()));
    assert_eq!(sim.command("baud 9600"), Ok("baud: 9600".into()));
    assert!(sim.command("baud fast").is_err());
    assert!(sim.command("stats").unwrap().contains("wrong speed 0"));
    assert!(sim.command("status").unwrap().contains("mains off"));
    assert!(sim.command("help").unwrap().contains("fault none"));
    assert_eq!(sim.command(""), Ok(String::new()));
    assert_eq!(
        "late 800".parse::<Fault>(),
        Ok(Fault::Late(Duration::from_millis(800)))
    );
    assert_eq!(
        Fault::WrongFunction.to_string().parse::<Fault>(),
        Ok(Fault::WrongFunction)
    );
}

#[test]
fn on_a_device_path() {
    let mut pty = Pty::open().unwrap();
    let sim = Sim::on_device(&pty.path, SimConfig::default()).unwrap();
    assert!(sim.path().is_none());
    send(&mut pty.master, 1, &READ_IDENT);
    // The master side of a pty blocks on read: wait for the bytes first.
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&pty.master),
        nix::poll::PollFlags::POLLIN,
    )];
    let mut got = Vec::new();
    for _ in 0..100 {
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(20u16)).unwrap() > 0 {
            let mut chunk = [0u8; 64];
            let n = (&pty.master).read(&mut chunk).unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        if matches!(
            rtu::check_response(1, &READ_IDENT, &got),
            Ok(Status::Complete(_)) | Err(_)
        ) {
            break;
        }
    }
    assert_eq!(
        rtu::check_response(1, &READ_IDENT, &got),
        Ok(Status::Complete(29))
    );
    assert_eq!(sim.stats().answered, 1);
}
