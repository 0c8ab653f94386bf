use modbus_card::modbus::rtu;
use modbus_card::pty::Pty;
use modbus_card::sim::{Sim, SimConfig};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
#[test]
fn dbg() {
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let mut port = serialport::new(sim.path().unwrap().to_string_lossy(), 19200).timeout(Duration::from_millis(20)).open_native().unwrap();
    let mut f = Vec::new();
    rtu::encode(1, &[0x03, 0x10, 0x00, 0x00, 0x0C], &mut f);
    port.write_all(&f).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 100];
    for _ in 0..10 {
        let r = port.read(&mut buf);
        eprintln!("{:?} read {:?} stats {:?}", t.elapsed(), r, sim.stats());
    }
}
