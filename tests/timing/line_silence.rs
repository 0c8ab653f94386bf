//! The card never sends inside the line's silence: the simulated UPS, paced, models the
//! half-duplex wire and counts every frame whose first byte comes while the line is busy
//! or within 3.5 characters of the last frame. Three Modbus TCP masters keep the line busy
//! with reads, broadcasts, requests nobody answers (timeouts) and answers spoiled on the
//! way (bad CRC, noise, truncated, wrong slave), thousands of frames at each rate.

use crate::common;

use common::{start_up, Card, Setup, PATIENCE};
use modbus_card::sim::Fault;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Frames on the line at each rate.
const FRAMES: u64 = 2000;
const SPOILED: [Fault; 4] = [
    Fault::BadCrc,
    Fault::Noise,
    Fault::Truncated,
    Fault::WrongSlave,
];

/// One Modbus TCP request; the answer PDU, or None for a broadcast (no answer is due).
fn ask(stream: &mut TcpStream, tid: u16, unit: u8, pdu: &[u8]) -> Option<Vec<u8>> {
    let mut frame = tid.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
    frame.push(unit);
    frame.extend_from_slice(pdu);
    stream.write_all(&frame).unwrap();
    if unit == 0 {
        return None;
    }
    let mut head = [0u8; 7];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(u16::from_be_bytes([head[0], head[1]]), tid);
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes([head[4], head[5]])) - 1];
    stream.read_exact(&mut answer).unwrap();
    Some(answer)
}

/// A master: mostly one-word reads of the UPS; now and then a broadcast write, a read of
/// slave 7 (which nobody is: a timeout), or a read while the UPS spoils its answers.
fn master(card: &Card, which: u8, stop: &AtomicBool) {
    let mut stream = TcpStream::connect(card.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    let read = [0x03, 0x10, 0x60, 0x00, 0x01];
    let mut spoiled = 0;
    let mut k = 0u16;
    while !stop.load(Relaxed) {
        k = k.wrapping_add(1);
        match which {
            0 if k.is_multiple_of(97) => {
                let answer = ask(&mut stream, k, 7, &read).unwrap();
                assert_eq!(answer, [0x83, 0x0B], "slave 7 is silent");
            }
            0 if k.is_multiple_of(151) => {
                card.sim.set_fault(SPOILED[spoiled % SPOILED.len()]);
                spoiled += 1;
                ask(&mut stream, k, 1, &read);
                card.sim.set_fault(Fault::None);
            }
            1 if k.is_multiple_of(23) => {
                let [hi, lo] = k.to_be_bytes();
                ask(&mut stream, k, 0, &[0x06, 0x00, 0x09, hi, lo]);
            }
            _ => {
                let answer = ask(&mut stream, k, 1, &read).unwrap();
                if answer[0] & 0x80 != 0 {
                    // The UPS is lost after a spoiled answer, until the control frame
                    // finds it again: no need to ask hundreds of times meanwhile.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

fn never_inside_the_silence(baud: u32) {
    let card = start_up(
        Setup {
            sim_baud: baud,
            ..Setup::default()
        }
        .set("ups_baud", baud)
        .set("routing", "transparent")
        .set(
            "serial_timeout_ms",
            modbus_card::settings::min_serial_timeout(baud).as_millis(),
        ),
    );
    card.sim.set_paced(true);
    let frames = || {
        let s = card.sim.stats();
        s.requests + s.broadcasts + s.other_slave
    };
    let start_frames = frames();
    // Enough frames, and enough of each kind.
    let done = || {
        let (sim, link) = (card.sim.stats(), card.service().link.status.counters());
        frames() >= start_frames + FRAMES
            && link.timeouts >= 5
            && link.bad_answers >= 3
            && sim.broadcasts >= 20
    };
    let stop = AtomicBool::new(false);
    let limit = Duration::from_secs(300);
    std::thread::scope(|s| {
        for which in 0..3 {
            let (card, stop) = (&card, &stop);
            s.spawn(move || master(card, which, stop));
        }
        let started = Instant::now();
        while !done() && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Relaxed);
        eprintln!(
            "{baud} baud: {} frames in {:.1} s",
            frames() - start_frames,
            started.elapsed().as_secs_f64()
        );
    });
    let sim = card.sim.stats();
    let link = card.service().link.status.counters();
    assert!(done(), "not done in {limit:?}: {sim}; {link:?}");
    assert_eq!(
        sim.early, 0,
        "frames sent inside the silence at {baud} baud: {sim}"
    );
}

#[test]
fn never_inside_the_silence_at_57600() {
    let _turn = crate::turn();
    never_inside_the_silence(57600);
}

#[test]
fn never_inside_the_silence_at_19200() {
    let _turn = crate::turn();
    never_inside_the_silence(19200);
}

#[test]
fn never_inside_the_silence_at_9600() {
    let _turn = crate::turn();
    never_inside_the_silence(9600);
}
