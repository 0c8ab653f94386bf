//! The LEDs as a user sees them: LED class files in a temporary sysfs, written by the real
//! service while the simulated UPS goes through detection, communication, silence and
//! return (docs/board.md's table), and the network pair following the interface.

use crate::board_fixture;
use crate::common;

use board_fixture::*;
use common::{start, wait_for, Setup, PATIENCE};
use modbus_card::link::LinkState;
use modbus_card::service::{Options, Service};
use modbus_card::sim::Fault;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Long enough to see several flashes of 250 ms.
const LOOK: Duration = Duration::from_millis(1500);

/// Waits until the RS485 pair shows (green, yellow).
fn wait_rs485(sys: &Sysfs, what: &str, green: Seen, yellow: Seen) -> Vec<Seen> {
    let start = Instant::now();
    loop {
        let seen = sys.observe(&[GREEN, YELLOW], LOOK);
        if seen[0].like(&green) && seen[1].like(&yellow) {
            return seen;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "RS485 LEDs never showed {what}: last seen {seen:?}"
        );
    }
}

/// A Modbus TCP master reading the UPS every 300 ms until stopped.
fn master(addr: SocketAddr) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let t = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = [0u8; 11];
        while !flag.load(Ordering::Relaxed) {
            s.write_all(&[0, 1, 0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1])
                .unwrap();
            let _ = s.read_exact(&mut answer);
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    (stop, t)
}

fn flash_period_is_right(seen: &Seen) {
    let Seen::Flash(half) = seen else {
        panic!("not flashing: {seen:?}")
    };
    // 250 ms on, 250 ms off; the median change-to-change time on a loaded machine.
    assert!(
        (Duration::from_millis(180)..=Duration::from_millis(340)).contains(half),
        "flashing with half-period {half:?}, expected 250 ms"
    );
}

#[test]
fn the_rs485_pair_follows_the_ups_link_through_each_state() {
    let dir = tempfile::tempdir().unwrap();
    let sys = Sysfs::new(dir.path());
    let mut setup = Setup {
        sim_fault: Fault::Silent,
        ..Setup::default()
    }
    .set("poll_rate_s", 1);
    setup.settings.extend(sys.settings());
    let mut card = start(setup);

    // Baud search: green off, yellow flashing.
    let seen = wait_rs485(&sys, "detection", Seen::Off, FLASH);
    flash_period_is_right(&seen[1]);

    // Found, nobody talking through it: green on, yellow off.
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    wait_rs485(&sys, "detected", Seen::On, Seen::Off);

    // A master reading: green on, yellow flashing.
    let (stop, talker) = master(card.addr());
    let seen = wait_rs485(&sys, "communicating", Seen::On, FLASH);
    flash_period_is_right(&seen[1]);
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();

    // The UPS falls silent: both on.
    card.sim.set_fault(Fault::Silent);
    card.wait_state(LinkState::Lost);
    wait_rs485(&sys, "communication failed", Seen::On, Seen::On);

    // And returns.
    card.sim.set_fault(Fault::None);
    card.wait_state(LinkState::Up);
    wait_rs485(&sys, "detected again", Seen::On, Seen::Off);

    // A clean stop leaves every LED off.
    card.stop();
    for led in [GREEN, YELLOW, NET_GREEN, NET_YELLOW] {
        assert!(!sys.lit(led), "{led} still lit after stop");
    }
}

#[test]
fn an_unplugged_ups_port_is_a_hardware_error() {
    let dir = tempfile::tempdir().unwrap();
    let sys = Sysfs::new(&dir.path().join("sys"));
    let sim =
        modbus_card::sim::Sim::on_pty(modbus_card::pty::Pty::open().unwrap(), Default::default())
            .unwrap();
    let link = dir.path().join("ttyUSB0");
    std::os::unix::fs::symlink(sim.path().unwrap(), &link).unwrap();
    let options = |ups: &std::path::Path| Options {
        data: dir.path().join("data"),
        ups: ups.to_owned(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        overrides: sys
            .settings()
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .chain([("poll_rate_s".into(), "1".into())])
            .collect(),
        ..Options::default()
    };

    // A port that cannot be opened at start: both off, and the service says why.
    let err = Service::start(options(&dir.path().join("ttyUSB9")))
        .err()
        .expect("started without its UPS port");
    assert!(err.to_string().contains("ttyUSB9"), "{err}");
    assert_eq!(
        (sys.lit(GREEN), sys.lit(YELLOW)),
        (false, false),
        "hardware error"
    );

    // The adapter unplugged while running: its node is gone and the UPS silent.
    let service = Service::start(options(&link)).unwrap();
    wait_for("UPS found", || service.link.status.state() == LinkState::Up);
    wait_rs485(&sys, "detected", Seen::On, Seen::Off);
    std::fs::remove_file(&link).unwrap();
    sim.set_fault(Fault::Silent);
    wait_rs485(&sys, "hardware error", Seen::Off, Seen::Off);
    // Plugged in again.
    std::os::unix::fs::symlink(sim.path().unwrap(), &link).unwrap();
    sim.set_fault(Fault::None);
    wait_rs485(&sys, "detected after replugging", Seen::On, Seen::Off);
    service.stop();
}

#[test]
fn the_network_pair_follows_carrier_speed_and_traffic_with_the_kernel_timer() {
    let dir = tempfile::tempdir().unwrap();
    let sys = Sysfs::new(dir.path());
    let mut setup = Setup::default();
    setup.settings.extend(sys.settings());
    let card = start(setup);
    let state = |led: &str| (sys.read(led, "trigger"), sys.lit(led));
    let wait = |what: &str, green: (&str, bool), yellow: (&str, bool)| {
        wait_for(what, || {
            state(NET_GREEN) == (green.0.into(), green.1)
                && state(NET_YELLOW) == (yellow.0.into(), yellow.1)
        })
    };

    // A gigabit link without traffic: green steady on.
    wait("gigabit link", ("none", true), ("none", false));
    // Traffic: green flashes, by the kernel's timer at 250 ms.
    let mut packets = 0;
    let traffic = |packets: &mut u64| {
        *packets += 7;
        sys.set_net("statistics/rx_packets", &packets.to_string());
    };
    let start = Instant::now();
    while sys.read(NET_GREEN, "trigger") != "timer" {
        assert!(start.elapsed() < PATIENCE, "no flashing with traffic");
        traffic(&mut packets);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sys.read(NET_GREEN, "delay_on"), "250");
    assert_eq!(sys.read(NET_GREEN, "delay_off"), "250");
    // Traffic stops: steady again.
    wait("gigabit, quiet", ("none", true), ("none", false));
    // 100 Mb/s: yellow instead.
    sys.set_net("speed", "100");
    wait("100 Mb/s link", ("none", false), ("none", true));
    // Cable out: both off.
    sys.set_net("carrier", "0");
    wait("no link", ("none", false), ("none", false));
    drop(card);
}
