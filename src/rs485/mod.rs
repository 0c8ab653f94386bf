//! The RS485 port: the card as an RTU slave, relaying to the UPS.
//!
//! Frames for the card's slave number are relayed and answered; frames for other
//! addresses are ignored; a broadcast write is relayed to the UPS as a broadcast, with no
//! answer. Frames are cut as [`rtu::next_request`] says: at their last byte when the
//! function tells the length, otherwise at the silence; bytes that make no valid frame
//! (CRC error, noise) are counted and dropped at the next silence.

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::link::{Caller, Link, Source};
use crate::modbus::pdu;
use crate::modbus::rtu::{self, Framing, BROADCAST};
use crate::serial::{Port, Wait};
use crate::shutdown::Shutdown;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Rs485Config {
    pub path: PathBuf,
    pub baud: u32,
    /// The card's own slave number on this port (1..=174).
    pub slave: u8,
    /// The UPS's address on the link.
    pub ups_slave: u8,
    /// No valid frame for this long: "RTU communication lost". Zero: never.
    pub lost_after: Duration,
    /// Progress for the watchdog: idle while waiting for bytes.
    pub heartbeat: Heartbeat,
}

#[derive(Default)]
pub struct Rs485Status {
    pub communicating: AtomicBool,
    pub frames: AtomicU64,
    pub broadcasts: AtomicU64,
    pub other_slave: AtomicU64,
    pub bad_frames: AtomicU64,
}

pub fn spawn(
    config: Rs485Config,
    link: &Link,
    events: Events,
    shutdown: Shutdown,
) -> io::Result<(Arc<Rs485Status>, JoinHandle<()>)> {
    let port = Port::open(&config.path, config.baud)?;
    match enable_rs485_mode(&port) {
        Ok(()) => log::info!("{}: kernel RS485 mode on", config.path.display()),
        Err(e) => log::info!(
            "{}: no kernel RS485 mode ({e}); a plain serial port, as on a pseudo-terminal or an adapter that switches by itself",
            config.path.display()
        ),
    }
    let status = Arc::new(Rs485Status::default());
    let slave = Slave {
        port,
        caller: link.caller(Source::Rs485),
        status: status.clone(),
        events,
        shutdown,
        config,
    };
    let thread = std::thread::Builder::new()
        .name("rs485".into())
        .stack_size(256 * 1024)
        .spawn(move || slave.run())?;
    Ok((status, thread))
}

/// Linux's `struct serial_rs485`.
#[repr(C)]
#[derive(Default)]
struct SerialRs485 {
    flags: u32,
    delay_rts_before_send: u32,
    delay_rts_after_send: u32,
    padding: [u32; 5],
}

const SER_RS485_ENABLED: u32 = 1 << 0;
const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;

/// Has the driver switch the transceiver's direction (RTS as transmit enable), so no byte
/// of an answer is cut by a direction switched too late from user space.
fn enable_rs485_mode(port: &Port) -> io::Result<()> {
    let conf = SerialRs485 {
        flags: SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND,
        ..Default::default()
    };
    // SAFETY: TIOCSRS485 reads a serial_rs485 struct, which `conf` is, for the call only.
    let rc = unsafe { libc::ioctl(port.fd().as_raw_fd(), libc::TIOCSRS485, &conf) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

struct Slave {
    port: Port,
    caller: Caller,
    status: Arc<Rs485Status>,
    events: Events,
    shutdown: Shutdown,
    config: Rs485Config,
}

impl Slave {
    fn run(mut self) {
        crate::rt::make_realtime("rs485");
        let t35 = rtu::t35(self.config.baud);
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let mut out: Vec<u8> = Vec::with_capacity(crate::modbus::MAX_RTU);
        let mut last_byte = Instant::now();
        let mut master = Presence::default();
        loop {
            let silent = Instant::now() >= last_byte + t35;
            match rtu::next_request(&buf, silent) {
                Framing::Frame(n) => {
                    if self.handle(&buf[..n], last_byte, &mut out) {
                        self.heard(&mut master);
                    }
                    buf.drain(..n);
                    continue;
                }
                Framing::Garbage => {
                    log::debug!("rs485: no valid frame in {buf:02X?}");
                    self.status.bad_frames.fetch_add(1, Relaxed);
                    buf.clear();
                    continue;
                }
                Framing::Wait => {}
            }
            // Bytes in hand: wait for the rest, or the silence that decides. None: wait
            // until the master counts as lost.
            let deadline = match master.last_valid {
                _ if !buf.is_empty() => last_byte + t35,
                Some(t) if !master.lost && !self.config.lost_after.is_zero() => {
                    t + self.config.lost_after
                }
                _ => Instant::now() + Duration::from_secs(3600),
            };
            self.config.heartbeat.idle();
            let read = self.port.read_until(&mut buf, deadline, &self.shutdown);
            self.config.heartbeat.busy();
            match read {
                Ok(Wait::Data(_)) => {
                    last_byte = Instant::now();
                    if buf.len() >= buf.capacity() {
                        self.status.bad_frames.fetch_add(1, Relaxed);
                        buf.clear();
                    }
                }
                Ok(Wait::Shutdown) => return,
                Ok(Wait::Timeout) if buf.is_empty() => self.check_lost(&mut master),
                // The silence: the next turn frames or drops what is in hand.
                Ok(Wait::Timeout) => {}
                Err(e) => {
                    log::error!("rs485: {e}");
                    if self.shutdown.sleep(Duration::from_secs(1)) {
                        return;
                    }
                    self.reopen();
                    buf.clear();
                }
            }
        }
    }

    fn check_lost(&self, master: &mut Presence) {
        let silent_for = master.last_valid.map(|t| t.elapsed());
        let enabled = !self.config.lost_after.is_zero();
        if enabled && !master.lost && silent_for >= Some(self.config.lost_after) {
            master.lost = true;
            self.status.communicating.store(false, Relaxed);
            self.events.emit(Event::RtuLost);
        }
    }

    /// The port failed (adapter unplugged, say): open it again, each second until it is
    /// back.
    fn reopen(&mut self) {
        self.port.release();
        match Port::open(&self.config.path, self.config.baud) {
            Ok(port) => {
                self.port = port;
                let _ = enable_rs485_mode(&self.port);
                log::warn!("rs485: {} opened again", self.config.path.display());
            }
            Err(e) => log::warn!("rs485: {e}"),
        }
    }

    /// A valid frame for this card came from the master.
    fn heard(&self, master: &mut Presence) {
        master.last_valid = Some(Instant::now());
        if master.lost {
            master.lost = false;
            self.events.emit(Event::RtuRestored);
        }
        self.status.communicating.store(true, Relaxed);
    }

    /// Relays one whole frame. Returns true if it was for this card (or a broadcast).
    fn handle(&mut self, frame: &[u8], ended: Instant, out: &mut Vec<u8>) -> bool {
        let address = frame[0];
        let pdu = rtu::pdu_of(frame);
        if address == BROADCAST {
            self.status.broadcasts.fetch_add(1, Relaxed);
            if pdu::may_broadcast(pdu[0]) {
                self.caller.call(BROADCAST, pdu);
            }
            return true;
        }
        if address != self.config.slave {
            self.status.other_slave.fetch_add(1, Relaxed);
            return false;
        }
        self.status.frames.fetch_add(1, Relaxed);
        let answer = self.caller.call(self.config.ups_slave, pdu);
        rtu::encode(self.config.slave, &answer, out);
        // The master needs its 3.5 characters of silence before our answer.
        let ready = ended + rtu::t35(self.config.baud);
        let now = Instant::now();
        if now < ready {
            std::thread::sleep(ready - now);
        }
        if let Err(e) = self.port.write_all(out) {
            log::error!("rs485 {}: {e}", self.config.path.display());
        }
        true
    }
}

/// Whether the RTU master is heard from.
#[derive(Default)]
struct Presence {
    last_valid: Option<Instant>,
    lost: bool,
}
