//! The RS485 port: the card as an RTU slave, relaying to the UPS.
//!
//! Frames for the card's slave number are relayed and answered; frames for other
//! addresses are ignored; a broadcast write is relayed to the UPS as a broadcast, with no
//! answer. Frames are cut as [`rtu::next_request`] says: at their last byte when the
//! function tells the length, otherwise at the silence; bytes that make no valid frame
//! (CRC error, noise) are counted and dropped at the next silence.
//!
//! An RTU master has no transaction id: it takes whatever frame comes next for the answer
//! to its last request. So an answer is only ever sent while the master still waits for
//! it:
//! - within the serial timeout of the request's first byte (a master's timeout is
//!   usually the same as the card's): an answer ready later is not sent, and when the UPS
//!   did not answer in time the card stays silent, as a slave that did not answer;
//! - only for the newest request: a new request while an earlier one is still being
//!   relayed means the master gave up on the earlier one, whose answer is then never
//!   sent;
//! - never while the master is sending.
//!
//! While the UPS is known lost the link answers 0x0B at once, and so does the port.

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::link::framelog::{Direction, FrameLog, Note};
use crate::link::{Caller, Link, Source};
use crate::modbus::pdu::{self, PduBuf};
use crate::modbus::rtu::{self, Framing, BROADCAST};
use crate::poll::wait_any;
use crate::poll::Update;
use crate::serial::Port;
use crate::shutdown::Shutdown;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rs485Config {
    pub path: PathBuf,
    pub baud: u32,
    /// The card's own slave number on this port (1..=174).
    pub slave: u8,
    /// The UPS's address on the link.
    pub ups_slave: u8,
    /// No valid frame for this long: "RTU communication lost". Zero: never.
    pub lost_after: Duration,
}

#[derive(Default)]
pub struct Rs485Status {
    pub communicating: AtomicBool,
    pub frames: AtomicU64,
    pub broadcasts: AtomicU64,
    pub other_slave: AtomicU64,
    pub bad_frames: AtomicU64,
    /// Answers not sent because the master had sent a newer request.
    pub superseded: AtomicU64,
    /// Answers not sent because they came after the master's time (the UPS was slow or
    /// silent).
    pub too_late: AtomicU64,
}

/// The running port, for whoever changes its settings.
#[derive(Clone)]
pub struct Rs485 {
    pub status: Arc<Rs485Status>,
    update: Arc<Update<Rs485Config>>,
}

impl Rs485 {
    /// A new slave number, baud rate or silence limit, taken between two frames.
    pub fn reconfigure(&self, config: Rs485Config) {
        self.update.put(config);
    }
}

/// Starts the port's thread; `heartbeat` tells the watchdog it is idle while it waits.
pub fn spawn(
    config: Rs485Config,
    link: &Link,
    events: Events,
    shutdown: Shutdown,
    heartbeat: Heartbeat,
) -> io::Result<(Rs485, JoinHandle<()>)> {
    let port = Port::open(&config.path, config.baud)?;
    match enable_rs485_mode(&port) {
        Ok(()) => log::info!("{}: kernel RS485 mode on", config.path.display()),
        Err(e) => log::info!(
            "{}: no kernel RS485 mode ({e}); a plain serial port, as on a pseudo-terminal or an adapter that switches by itself",
            config.path.display()
        ),
    }
    let status = Arc::new(Rs485Status::default());
    let update = Arc::new(Update::new()?);
    let slave = Slave {
        update: update.clone(),
        port,
        caller: link.waking_caller(Source::Rs485)?,
        frames: link.frames.clone(),
        answer_within: link.timeout(),
        status: status.clone(),
        events,
        shutdown,
        heartbeat,
        config,
    };
    let thread = std::thread::Builder::new()
        .name("rs485".into())
        .stack_size(256 * 1024)
        .spawn(move || slave.run())?;
    Ok((Rs485 { status, update }, thread))
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
    heartbeat: Heartbeat,
    port: Port,
    update: Arc<Update<Rs485Config>>,
    caller: Caller,
    frames: Arc<FrameLog>,
    /// The serial timeout: how long a master waits for an answer.
    answer_within: Duration,
    status: Arc<Rs485Status>,
    events: Events,
    shutdown: Shutdown,
    config: Rs485Config,
}

/// A request being relayed, whose master still waits for the answer.
struct Waiting {
    /// The answer must have started by then, or the master has given up.
    due_by: Instant,
    /// When the request ended: the answer waits 3.5 characters after it.
    ended: Instant,
    /// The request, for the frame log if its answer is never sent.
    frame: Vec<u8>,
}

impl Slave {
    fn run(mut self) {
        crate::rt::make_realtime("rs485");
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let mut out: Vec<u8> = Vec::with_capacity(crate::modbus::MAX_RTU);
        let mut last_byte = Instant::now();
        let mut first_byte = Instant::now();
        let mut waiting: Option<Waiting> = None;
        let mut master = Presence::default();
        loop {
            let t35 = rtu::t35(self.config.baud);
            let silent = Instant::now() >= last_byte + t35;
            match rtu::next_request(&buf, silent) {
                Framing::Frame(n) => {
                    let handled = self.handle(&buf[..n], first_byte, last_byte, &mut waiting);
                    buf.drain(..n);
                    first_byte = last_byte;
                    match handled {
                        Handled::NotForUs => {}
                        Handled::Relayed => self.heard(&mut master),
                        Handled::Answered(answer) => {
                            self.heard(&mut master);
                            let w = waiting.take().expect("waiting");
                            if self.reply(&answer, w, &mut buf, &mut out) {
                                first_byte = Instant::now();
                                last_byte = first_byte;
                            }
                        }
                    }
                    continue;
                }
                Framing::Garbage(n) => {
                    log::debug!("rs485: no valid frame in {:02X?}", &buf[..n]);
                    self.status.bad_frames.fetch_add(1, Relaxed);
                    buf.drain(..n);
                    continue;
                }
                Framing::Wait => {}
            }
            if waiting.is_some() && buf.is_empty() {
                if let Some(answer) = self.caller.answer() {
                    let w = waiting.take().expect("waiting");
                    if self.reply(&answer, w, &mut buf, &mut out) {
                        first_byte = Instant::now();
                        last_byte = first_byte;
                    }
                    continue;
                }
            }
            // Bytes in hand: wait for the rest, or the silence that decides. None: wait
            // for an answer, or until the master counts as lost.
            let deadline = match master.last_valid {
                _ if !buf.is_empty() => last_byte + t35,
                Some(t) if !master.lost && !self.config.lost_after.is_zero() => {
                    t + self.config.lost_after
                }
                _ => Instant::now() + Duration::from_secs(3600),
            };
            // The answer is only looked at between the master's frames.
            let wake = self.caller.wake_fd().filter(|_| buf.is_empty());
            let timeout = deadline.saturating_duration_since(Instant::now());
            let fds = [Some(self.port.fd()), wake, Some(self.update.fd())];
            self.heartbeat.idle();
            let woken = wait_any(fds, &self.shutdown, Some(timeout));
            self.heartbeat.busy();
            let ([port_ready, answer_ready, updated], stop) = match woken {
                Ok(woken) => woken,
                Err(e) => {
                    log::error!("rs485: {e}");
                    return;
                }
            };
            if stop {
                return;
            }
            if updated {
                if let Some(config) = self.update.take() {
                    self.apply(config);
                }
                continue;
            }
            if port_ready {
                let was_empty = buf.is_empty();
                match self.port.read_ready(&mut buf) {
                    Ok(0) => {}
                    Ok(_) => {
                        last_byte = Instant::now();
                        if was_empty {
                            first_byte = last_byte;
                        }
                        if buf.len() >= buf.capacity() {
                            self.status.bad_frames.fetch_add(1, Relaxed);
                            buf.clear();
                        }
                    }
                    Err(e) => {
                        log::error!("rs485: {e}");
                        if self.shutdown.sleep(Duration::from_secs(1)) {
                            return;
                        }
                        self.reopen();
                        buf.clear();
                    }
                }
            } else if !answer_ready && buf.is_empty() {
                self.check_lost(&mut master);
            }
        }
    }

    fn apply(&mut self, config: Rs485Config) {
        if config.baud != self.config.baud {
            if let Err(e) = self.port.set_baud(config.baud) {
                log::error!("rs485: cannot set {} baud: {e}", config.baud);
                return;
            }
        }
        log::info!("rs485: slave {} at {} baud", config.slave, config.baud);
        self.config = config;
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

    /// A request is no longer waited for: its answer will never be sent.
    fn superseded(&self, w: Waiting) {
        self.status.superseded.fetch_add(1, Relaxed);
        self.frames.push(
            Source::Rs485,
            Direction::FromRs485,
            &w.frame,
            Note::Superseded,
        );
        log::debug!("rs485: a newer request supersedes {:02X?}", w.frame);
    }

    /// Relays one whole frame that began at `first` and ended at `ended`.
    fn handle(
        &mut self,
        frame: &[u8],
        first: Instant,
        ended: Instant,
        waiting: &mut Option<Waiting>,
    ) -> Handled {
        let address = frame[0];
        let pdu = rtu::pdu_of(frame);
        if address != BROADCAST && address != self.config.slave {
            self.status.other_slave.fetch_add(1, Relaxed);
            return Handled::NotForUs;
        }
        // The master moved on: whatever it asked before is no longer waited for.
        if let Some(w) = waiting.take() {
            self.superseded(w);
        }
        if address == BROADCAST {
            self.status.broadcasts.fetch_add(1, Relaxed);
            if pdu::may_broadcast(pdu[0]) {
                self.caller.call(BROADCAST, pdu);
            }
            return Handled::Relayed;
        }
        self.status.frames.fetch_add(1, Relaxed);
        // A master's clock starts when it sends the request's first byte; the answer's
        // first byte must reach it before that plus the timeout. A UART hands bytes over
        // in bursts, so the start is also reckoned back from the end by the frame's wire
        // time; a few characters (the UART's receive delay, our first byte out) and a
        // little slack come off.
        let baud = self.config.baud;
        let started = ended
            .checked_sub(rtu::wire_time(baud, frame.len()))
            .map_or(first, |s| s.min(first));
        let margin = rtu::char_time(baud) * 5 + Duration::from_millis(2);
        let w = Waiting {
            due_by: started + self.answer_within.saturating_sub(margin),
            ended,
            frame: frame.to_vec(),
        };
        *waiting = Some(w);
        match self.caller.submit(self.config.ups_slave, pdu).answer {
            Some(answer) => Handled::Answered(answer),
            None => Handled::Relayed,
        }
    }

    /// Sends `answer` if the master still waits for it. Bytes from the master that arrived
    /// meanwhile are appended to `buf` (and the answer is not sent): returns true then.
    fn reply(&mut self, answer: &PduBuf, w: Waiting, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
        rtu::encode(self.config.slave, answer, out);
        // The master needs its 3.5 characters of silence before our answer.
        let ready = w.ended + rtu::t35(self.config.baud);
        let now = Instant::now();
        if now < ready && ready <= w.due_by {
            std::thread::sleep(ready - now);
        }
        if Instant::now() > w.due_by {
            self.status.too_late.fetch_add(1, Relaxed);
            self.frames
                .push(Source::Rs485, Direction::ToRs485, out, Note::TooLate);
            log::debug!("rs485: answer not sent, after the master's time: {out:02X?}");
            return false;
        }
        // Never transmit over a master that has started its next request.
        match self.port.drain_into(buf) {
            Ok(0) => {}
            Ok(_) => {
                self.superseded(w);
                return true;
            }
            Err(e) => log::error!("rs485 {}: {e}", self.config.path.display()),
        }
        if let Err(e) = self.port.write_all(out) {
            log::error!("rs485 {}: {e}", self.config.path.display());
        }
        false
    }
}

/// What became of a frame. Moved by value, like the link's requests: no allocation.
#[allow(clippy::large_enum_variant)]
enum Handled {
    /// For another slave.
    NotForUs,
    /// Handed to the link (or a broadcast, done).
    Relayed,
    /// Answered at once without the line (UPS lost, no baud rate yet).
    Answered(PduBuf),
}

/// Whether the RTU master is heard from.
#[derive(Default)]
struct Presence {
    last_valid: Option<Instant>,
    lost: bool,
}
