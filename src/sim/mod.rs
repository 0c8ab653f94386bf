//! The simulated UPS on a serial line, for the demo and for every test of the card.
//!
//! [`Ups`] is the device (register tables and state, no I/O); [`Sim`] runs it on its own
//! thread as Modbus RTU slave 1 behind a pseudo-terminal ([`Sim::on_pty`]) or a real serial
//! device ([`Sim::on_device`]), and can misbehave on demand ([`Fault`]) so that the card's
//! timeouts and error paths are tested against real bytes on a real file descriptor.
//!
//! On a pty the bytes of a frame arrive all at once, whatever the speed. Two things keep
//! that honest: the simulator answers only when the speed the card set on its side of the
//! pty equals the simulator's own (so baud detection is really exercised), and *paced* mode
//! delays and spreads the answer as a wire at that speed would, holds back a frame sent
//! inside the silence that must follow every frame, and measures each turnaround.

pub mod ups;

pub use ups::Ups;

use crate::modbus::rtu;
use crate::modbus::{MAX_PDU, MAX_RTU};
use crate::pty::{self, Pty};
use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use parking_lot::Mutex;
use serialport::{SerialPort, TTYPort};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the simulator spoils its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers correctly.
    None,
    /// Never answers.
    Silent,
    /// Answers correctly, this long after the request.
    Late(Duration),
    /// Answers with one CRC byte flipped.
    BadCrc,
    /// Answers as slave 2 (as slave 3 if the simulator itself is slave 2).
    WrongSlave,
    /// Answers with another function code (03 and 04 swap; others become 03).
    WrongFunction,
    /// Sends the first half of the answer only.
    Truncated,
    /// Sends random bytes, as many as the answer has, instead of it.
    Noise,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => write!(f, "none"),
            Fault::Silent => write!(f, "silent"),
            Fault::Late(d) => write!(f, "late {}", d.as_millis()),
            Fault::BadCrc => write!(f, "bad-crc"),
            Fault::WrongSlave => write!(f, "wrong-slave"),
            Fault::WrongFunction => write!(f, "wrong-function"),
            Fault::Truncated => write!(f, "truncated"),
            Fault::Noise => write!(f, "noise"),
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// The spelling of [`Fault`]'s `Display`: "none", "late 800" (milliseconds), "bad-crc" …
    fn from_str(s: &str) -> Result<Fault, String> {
        let mut words = s.split_whitespace();
        let fault = match (words.next(), words.next()) {
            (Some("none"), None) => Fault::None,
            (Some("silent"), None) => Fault::Silent,
            (Some("late"), Some(ms)) => match ms.parse::<u64>() {
                Ok(ms) if ms <= 3_600_000 => Fault::Late(Duration::from_millis(ms)),
                _ => {
                    return Err(format!(
                        "late takes milliseconds (0 to 3600000), not {ms:?}"
                    ))
                }
            },
            (Some("bad-crc"), None) => Fault::BadCrc,
            (Some("wrong-slave"), None) => Fault::WrongSlave,
            (Some("wrong-function"), None) => Fault::WrongFunction,
            (Some("truncated"), None) => Fault::Truncated,
            (Some("noise"), None) => Fault::Noise,
            _ => return Err(format!("unknown fault {s:?}")),
        };
        match words.next() {
            None => Ok(fault),
            Some(extra) => Err(format!("unexpected {extra:?} after the fault")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    pub baud: u32,
    /// The simulator's slave address (the UPS is 1).
    pub slave: u8,
    /// Emulate wire timing on a pty (see [`Sim::set_paced`]).
    pub paced: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            baud: 19200,
            slave: 1,
            paced: false,
        }
    }
}

/// What the simulator has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Valid frames addressed to this slave, heard at the right speed.
    pub requests: u64,
    /// Answers sent whole, spoiled ones included (not those a fault withheld).
    pub answered: u64,
    /// Valid frames the card sent at another speed than the simulator's (pty only).
    pub wrong_speed: u64,
    /// Bytes dropped at a silence because they were not a valid frame.
    pub bad_frames: u64,
    /// Broadcast frames (address 0), acted on without an answer.
    pub broadcasts: u64,
    /// Valid frames for another slave address, ignored.
    pub other_slave: u64,
    /// Paced: frames whose first byte came while the line was busy or inside the silence
    /// after the frame before; a correct master never sends one.
    pub early: u64,
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests {}, answered {}, wrong speed {}, bad frames {}, broadcasts {}, other slave {}, early {}",
            self.requests,
            self.answered,
            self.wrong_speed,
            self.bad_frames,
            self.broadcasts,
            self.other_slave,
            self.early
        )
    }
}

/// A frame that followed an answer on the paced line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turnaround {
    /// When the answer's last byte was written (taken just before the write).
    pub last_byte: Instant,
    /// When the frame's first byte came (taken as the wait for it ended).
    pub arrival: Instant,
    /// The silence the line requires between them: 3.5 characters.
    pub silence: Duration,
}

impl Turnaround {
    /// How long after the end of the silence the frame came; `None` if it came inside it
    /// (an early frame).
    pub fn overshoot(&self) -> Option<Duration> {
        self.arrival
            .checked_duration_since(self.last_byte + self.silence)
    }
}

const HELP: &str = "commands:
  fault none|silent|late MS|bad-crc|wrong-slave|wrong-function|truncated|noise
  mains on|off
  alarm NAME on|off   (NAME: overload, over-temperature, battery, charger, ... see 'alarm list')
  temperature C
  tables full|short|other   (other: a unit with another map, refusing these tables)
  model CODE
  paced on|off
  baud N
  status
  stats
  help";

/// How long the thread waits for bytes before it looks at its stop flag again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often the UPS model moves on while the line is idle.
const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes that keep coming without a silence are dropped past this many.
const MAX_BUFFERED: usize = 4 * MAX_RTU;
/// Answers waiting for their time (late or paced) beyond this many are dropped.
const MAX_PENDING: usize = 64;
/// Turnarounds kept until someone takes them; later ones are not recorded.
const MAX_TURNAROUNDS: usize = 100_000;

struct State {
    ups: Ups,
    fault: Fault,
    baud: u32,
    paced: bool,
    stats: SimStats,
    /// Paced: each frame that followed an answer (see [`Sim::take_turnarounds`]).
    turnarounds: Vec<Turnaround>,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
}

/// A running simulated UPS. Dropping it stops and joins its thread.
pub struct Sim {
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    thread: Option<JoinHandle<()>>,
}

impl Sim {
    /// The simulator holding the master side of a pty; it answers only when the speed the
    /// card set on the slave side (pty::slave_speed, checked per request) equals its own
    /// baud, otherwise it stays silent and counts wrong_speed: so the card's baud detection
    /// is tested for real.
    pub fn on_pty(pty: Pty, config: SimConfig) -> io::Result<Sim> {
        set_nonblocking(pty.master.as_raw_fd())?;
        let path = pty.path.clone();
        Sim::start(Port::Pty(pty), config, Some(path))
    }

    /// On a real serial device (or a pty slave path), opened at config.baud 8N1 with the
    /// serialport crate (no speed check: on a wire a wrong speed is garbage).
    pub fn on_device(path: &Path, config: SimConfig) -> io::Result<Sim> {
        let port = serialport::new(path.to_string_lossy(), config.baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .open_native()
            .map_err(io::Error::from)?;
        set_nonblocking(port.as_raw_fd())?;
        Sim::start(
            Port::Device {
                port,
                baud: config.baud,
            },
            config,
            None,
        )
    }

    fn start(port: Port, config: SimConfig, path: Option<PathBuf>) -> io::Result<Sim> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                ups: Ups::new(),
                fault: Fault::None,
                baud: config.baud.max(1),
                paced: config.paced,
                stats: SimStats::default(),
                turnarounds: Vec::new(),
            }),
        });
        let worker = Worker::new(port, shared.clone(), config.slave);
        let thread = std::thread::Builder::new()
            .name("ups-sim".into())
            .spawn(move || worker.run())?;
        Ok(Sim {
            shared,
            path,
            thread: Some(thread),
        })
    }

    /// The pty slave path the card must open (on_pty).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn set_fault(&self, fault: Fault) {
        self.shared.state.lock().fault = fault;
    }

    /// The simulator's speed; on a device the port is set to it too.
    pub fn set_baud(&self, baud: u32) {
        self.shared.state.lock().baud = baud.max(1);
    }

    /// Paced mode emulates the wire on a pty: the answer starts when the request would have
    /// ended on a wire plus a 3.5-character silence, and goes out byte by byte at line speed.
    ///
    /// The line is half-duplex, and after each frame it must stay silent for 3.5
    /// characters. A frame whose first byte comes while the line is busy or inside that
    /// silence waits for the line to be free, and is counted in [`SimStats::early`]. For a
    /// frame that follows an answer, the turnaround is recorded
    /// ([`Sim::take_turnarounds`]).
    pub fn set_paced(&self, paced: bool) {
        self.shared.state.lock().paced = paced;
    }

    pub fn set_mains(&self, present: bool) {
        self.shared.state.lock().ups.set_mains(present);
    }

    /// Raises or clears one of the UPS's alarms by hand.
    pub fn set_alarm(&self, bit: ups::Bit, on: bool) {
        self.shared.state.lock().ups.set_alarm(bit, on);
    }

    /// The UPS's ambient temperature, °C.
    pub fn set_temperature(&self, celsius: u16) {
        self.shared.state.lock().ups.set_temperature(celsius);
    }

    /// Which tables the UPS answers.
    pub fn set_tables(&self, tables: ups::Tables) {
        self.shared.state.lock().ups.set_tables(tables);
    }

    /// The model code the UPS gives in its identification.
    pub fn set_model_code(&self, code: u16) {
        self.shared.state.lock().ups.set_model_code(code);
    }

    pub fn stats(&self) -> SimStats {
        self.shared.state.lock().stats
    }

    /// The turnarounds recorded since the last call, in order (paced only).
    pub fn take_turnarounds(&self) -> Vec<Turnaround> {
        std::mem::take(&mut self.shared.state.lock().turnarounds)
    }

    /// The UPS's register at `addr` (see [`Ups::register`]).
    pub fn register(&self, addr: u16) -> Option<u16> {
        self.shared.state.lock().ups.register(addr)
    }

    /// Text commands for a person at a terminal (the demo and `simulate-ups` feed stdin
    /// lines here): "fault none|silent|late MS|bad-crc|wrong-slave|wrong-function|truncated|
    /// noise", "mains on|off", "alarm NAME on|off", "alarm list", "temperature C",
    /// "paced on|off", "baud N", "status", "stats", "help". Returns
    /// the reply text, or an error text that lists the commands.
    pub fn command(&self, line: &str) -> Result<String, String> {
        let line = line.trim();
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let on_off = |what: &str| match rest {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(format!("{what} takes on or off, not {rest:?}\n{HELP}")),
        };
        match verb {
            "" => Ok(String::new()),
            "help" => Ok(HELP.to_string()),
            "fault" => {
                let fault: Fault = rest.parse().map_err(|e| format!("{e}\n{HELP}"))?;
                self.set_fault(fault);
                Ok(format!("fault: {fault}"))
            }
            "mains" => {
                let present = on_off("mains")?;
                self.set_mains(present);
                Ok(if present {
                    "mains: on"
                } else {
                    "mains: off (on battery)"
                }
                .to_string())
            }
            "alarm" if rest == "list" => Ok(crate::ups::map::alarm::WORDS
                .iter()
                .map(|(_, name, words)| format!("{name}: {words}"))
                .collect::<Vec<_>>()
                .join("\n")),
            "alarm" => {
                let (name, state) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let bit = crate::ups::map::alarm::by_name(name)
                    .ok_or_else(|| format!("unknown alarm {name:?}: 'alarm list' names them"))?;
                let on = match state.trim() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("alarm {name} takes on or off, not {other:?}")),
                };
                self.set_alarm(bit, on);
                Ok(format!("alarm {name}: {}", if on { "on" } else { "off" }))
            }
            "tables" => {
                let tables = match rest {
                    "full" => ups::Tables::Full,
                    "short" => ups::Tables::Short,
                    "other" => ups::Tables::Other,
                    _ => return Err(format!("tables takes full, short or other\n{HELP}")),
                };
                self.set_tables(tables);
                Ok(format!("tables: {rest}"))
            }
            "model" => match rest.parse::<u16>() {
                Ok(code) => {
                    self.set_model_code(code);
                    Ok(format!("model code: {code}"))
                }
                _ => Err(format!("model takes a code, 0 to 65535\n{HELP}")),
            },
            "temperature" => match rest.parse::<u16>() {
                Ok(c) if c <= 100 => {
                    self.set_temperature(c);
                    Ok(format!("temperature: {c} °C"))
                }
                _ => Err(format!(
                    "temperature takes degrees Celsius, 0 to 100\n{HELP}"
                )),
            },
            "paced" => {
                let paced = on_off("paced")?;
                self.set_paced(paced);
                Ok(format!("paced: {}", if paced { "on" } else { "off" }))
            }
            "baud" => match rest.parse::<u32>() {
                Ok(baud) if (50..=4_000_000).contains(&baud) => {
                    self.set_baud(baud);
                    Ok(format!("baud: {baud}"))
                }
                _ => Err(format!(
                    "baud takes a speed such as 9600, 19200, 57600\n{HELP}"
                )),
            },
            "stats" => Ok(self.stats().to_string()),
            "status" => Ok(self.status()),
            _ => Err(format!("unknown command {line:?}\n{HELP}")),
        }
    }

    fn status(&self) -> String {
        let state = self.shared.state.lock();
        let ups = &state.ups;
        let runtime = match ups.register(ups::reg::RUNTIME) {
            Some(0xFFFF) | None => "on line".to_string(),
            Some(minutes) => format!("{minutes} min"),
        };
        format!(
            "mains {}, battery {:.0} %, runtime {runtime}, temperature {} °C, fault {}, baud {}, paced {}",
            if ups.mains() { "on" } else { "off" },
            ups.charge(),
            ups.temperature(),
            state.fault,
            state.baud,
            if state.paced { "on" } else { "off" },
        )
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The simulator's end of the line.
enum Port {
    /// The master side; the card's speed is read from the slave side per request.
    Pty(Pty),
    /// A serial device at `baud`.
    Device { port: TTYPort, baud: u32 },
}

impl Port {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Port::Pty(pty) => pty.master.as_fd(),
            // SAFETY: the port owns this fd and outlives the borrow.
            Port::Device { port, .. } => unsafe { BorrowedFd::borrow_raw(port.as_raw_fd()) },
        }
    }

    /// Follows a change of the simulator's speed on a device.
    fn apply_baud(&mut self, wanted: u32) {
        if let Port::Device { port, baud } = self {
            if *baud != wanted {
                if let Err(e) = port.set_baud_rate(wanted) {
                    log::warn!("simulated UPS: cannot set {wanted} baud: {e}");
                }
                *baud = wanted;
            }
        }
    }

    /// False when the card talks at another speed than `baud` (a pty only knows).
    fn speed_matches(&self, baud: u32) -> bool {
        match self {
            Port::Pty(pty) => pty::slave_speed(&pty.master).is_ok_and(|s| s == baud),
            Port::Device { .. } => true,
        }
    }

    /// Silence that ends a frame. A device gets some slack: USB serial adapters deliver
    /// bytes in bursts, with gaps longer than 3.5 characters inside one frame.
    fn silence(&self, baud: u32) -> Duration {
        match self {
            Port::Pty(_) => rtu::t35(baud),
            Port::Device { .. } => rtu::t35(baud).max(Duration::from_millis(5)),
        }
    }

    /// Writes what the line takes now; the rest is lost, as on a wire whose receiver
    /// does not read.
    fn send(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match nix::unistd::write(self.fd(), bytes) {
                Ok(0) => return,
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// An answer waiting for its time.
struct Pending {
    /// When the answer's first byte starts on the line.
    at: Instant,
    /// Paced: each byte is written once it would have been received whole.
    char_time: Option<Duration>,
    /// Paced: the silence the line keeps after the answer.
    silence: Duration,
    bytes: Vec<u8>,
    sent: usize,
}

impl Pending {
    /// When the next unsent byte is due.
    fn next_due(&self) -> Instant {
        match self.char_time {
            None => self.at,
            Some(ct) => self.at + ct * (self.sent as u32 + 1),
        }
    }

    /// How many bytes are due by `now`.
    fn due_by(&self, now: Instant) -> usize {
        match self.char_time {
            _ if now < self.at => 0,
            None => self.bytes.len(),
            Some(ct) => {
                let chars = (now - self.at).as_nanos() / ct.as_nanos().max(1);
                self.bytes
                    .len()
                    .min(usize::try_from(chars).unwrap_or(usize::MAX))
            }
        }
    }
}

/// The line in paced mode, as the master must use it: half-duplex, and silent for 3.5
/// characters after every frame.
#[derive(Default)]
struct Line {
    /// No frame may start before this.
    free_at: Option<Instant>,
    /// When the last answer's last byte was written, if no frame has come since.
    answered_at: Option<Instant>,
}

impl Line {
    /// A frame whose first byte came at `arrival`: when it starts on the line. One that
    /// follows an answer is recorded; one that came too early waits for the line and is
    /// counted.
    fn frame_in(&mut self, arrival: Instant, silence: Duration, state: &mut State) -> Instant {
        if let Some(last_byte) = self.answered_at.take() {
            if state.turnarounds.len() < MAX_TURNAROUNDS {
                state.turnarounds.push(Turnaround {
                    last_byte,
                    arrival,
                    silence,
                });
            }
        }
        match self.free_at {
            Some(free) if arrival < free => {
                state.stats.early += 1;
                free
            }
            _ => arrival,
        }
    }
}

/// The shared settings, copied once per request.
#[derive(Clone, Copy)]
struct Settings {
    fault: Fault,
    baud: u32,
    paced: bool,
}

struct Worker {
    port: Port,
    shared: Arc<Shared>,
    slave: u8,
    /// Bytes received and not yet framed.
    rx: Vec<u8>,
    /// When the first of them arrived.
    rx_first: Instant,
    /// When the last bytes arrived.
    last_rx: Instant,
    line: Line,
    last_tick: Instant,
    /// Reused for every answer, so the unpaced path does not allocate.
    answer: Vec<u8>,
    frame: Vec<u8>,
    pending: VecDeque<Pending>,
    rng: ups::XorShift,
}

impl Worker {
    fn new(port: Port, shared: Arc<Shared>, slave: u8) -> Worker {
        let now = Instant::now();
        Worker {
            port,
            shared,
            slave,
            rx: Vec::with_capacity(MAX_BUFFERED),
            rx_first: now,
            last_rx: now,
            line: Line::default(),
            last_tick: now,
            answer: Vec::with_capacity(MAX_PDU),
            frame: Vec::with_capacity(MAX_RTU),
            pending: VecDeque::new(),
            rng: ups::XorShift(0x9E37_79B9),
        }
    }

    fn baud(&self) -> u32 {
        self.shared.state.lock().baud
    }

    fn run(mut self) {
        // Wake-ups within microseconds of the deadline, as a device's would be: paced bytes
        // and the timestamps of the line's frames are only as exact as the thread's timing.
        crate::rt::make_realtime("simulated UPS");
        let mut chunk = [0u8; 512];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut deadline = now + POLL_INTERVAL;
            if !self.rx.is_empty() {
                deadline = deadline.min(self.last_rx + self.port.silence(self.baud()));
            }
            if let Some(p) = self.pending.front() {
                deadline = deadline.min(p.next_due());
            }
            if self.wait_readable(deadline.saturating_duration_since(now)) {
                // The bytes were there by the time the wait ended: the closest upper bound
                // of their arrival.
                let woke = Instant::now();
                self.receive(&mut chunk, woke);
            }

            // Settings may have changed during the wait: a request that arrives right after
            // a change gets the new speed and fault.
            let baud = self.baud();
            self.port.apply_baud(baud);
            let now = Instant::now();
            if now - self.last_tick >= TICK_INTERVAL {
                self.tick(now);
            }
            self.frames(now, self.port.silence(baud));
            self.send_due();
        }
    }

    /// Waits up to `timeout` for bytes to read.
    fn wait_readable(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(self.port.fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(timeout)), None) {
            Ok(n) if n > 0 => true,
            Ok(_) | Err(Errno::EINTR) => false,
            Err(e) => {
                log::warn!("simulated UPS: poll failed: {e}");
                std::thread::sleep(POLL_INTERVAL);
                false
            }
        }
    }

    fn receive(&mut self, chunk: &mut [u8], woke: Instant) {
        match nix::unistd::read(self.port.fd().as_raw_fd(), chunk) {
            Ok(0) => {
                // End of file: a device that went away. Do not spin on it.
                std::thread::sleep(POLL_INTERVAL);
            }
            Ok(n) => {
                if self.rx.is_empty() {
                    self.rx_first = woke;
                }
                self.rx.extend_from_slice(&chunk[..n]);
                self.last_rx = woke;
                if self.rx.len() > MAX_BUFFERED {
                    self.rx.clear();
                    self.shared.state.lock().stats.bad_frames += 1;
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }

    fn tick(&mut self, now: Instant) {
        let elapsed = now - self.last_tick;
        self.last_tick = now;
        self.shared.state.lock().ups.tick(elapsed);
    }

    /// Takes every whole frame off the front of the buffer, as [`rtu::next_request`] cuts
    /// them; garbage goes at the silence.
    fn frames(&mut self, now: Instant, silence: Duration) {
        loop {
            match rtu::next_request(&self.rx, now >= self.last_rx + silence) {
                rtu::Framing::Frame(len) => {
                    self.on_frame(len);
                    self.rx.drain(..len);
                }
                // The UPS's own receiver, as simple as a UPS's may be: all of it goes.
                rtu::Framing::Garbage(_) => return self.drop_garbage(),
                rtu::Framing::Wait => return,
            }
        }
    }

    fn drop_garbage(&mut self) {
        self.rx.clear();
        self.shared.state.lock().stats.bad_frames += 1;
    }

    /// Acts on the valid frame of `len` bytes at the front of the buffer.
    fn on_frame(&mut self, len: usize) {
        let address = self.rx[0];
        let (settings, start) = {
            let mut state = self.shared.state.lock();
            let settings = Settings {
                fault: state.fault,
                baud: state.baud,
                paced: state.paced,
            };
            // The request reached the UPS when its last byte did. Paced, it starts on the
            // line when its first byte came, or when the line was free if that was later:
            // every frame takes the line, whoever it is for.
            let start = if settings.paced {
                let silence = rtu::t35(settings.baud);
                let start = self.line.frame_in(self.rx_first, silence, &mut state);
                self.line.free_at = Some(start + rtu::wire_time(settings.baud, len) + silence);
                start
            } else {
                self.last_rx
            };
            if !self.port.speed_matches(settings.baud) {
                state.stats.wrong_speed += 1;
                return;
            }
            if address != rtu::BROADCAST && address != self.slave {
                state.stats.other_slave += 1;
                return;
            }
            // Readings reflect the moment of the request.
            let now = Instant::now();
            state.ups.tick(now - self.last_tick);
            self.last_tick = now;
            state
                .ups
                .handle_into(rtu::pdu_of(&self.rx[..len]), &mut self.answer);
            if address == rtu::BROADCAST {
                state.stats.broadcasts += 1;
                return;
            }
            state.stats.requests += 1;
            (settings, start)
        };
        if !self.build_answer(settings.fault) {
            return;
        }

        // Paced, the UPS answers after the silence that ends the request on the wire.
        let mut at = start;
        let char_time = rtu::char_time(settings.baud);
        let silence = rtu::t35(settings.baud);
        if settings.paced {
            at += char_time * len as u32 + silence;
        }
        if let Fault::Late(delay) = settings.fault {
            at += delay;
        }
        let now = Instant::now();
        if !settings.paced && at <= now && self.pending.is_empty() {
            // Counted first, so whoever has read the answer sees it counted.
            self.shared.state.lock().stats.answered += 1;
            self.port.send(&self.frame);
        } else if self.pending.len() < MAX_PENDING {
            if settings.paced {
                // The answer takes the line; the time its last byte is written sets the
                // end of the silence after it (see send_due).
                let end = at + char_time * self.frame.len() as u32;
                self.line.free_at = Some(end + silence);
            }
            self.pending.push_back(Pending {
                at,
                char_time: settings.paced.then_some(char_time),
                silence,
                bytes: self.frame.clone(),
                sent: 0,
            });
        }
    }

    /// Puts the answer frame, spoiled as `fault` says, in `self.frame`; false for none.
    fn build_answer(&mut self, fault: Fault) -> bool {
        let mut address = self.slave;
        match fault {
            Fault::Silent => return false,
            Fault::WrongSlave => address = if self.slave == 2 { 3 } else { 2 },
            Fault::WrongFunction => {
                let fc = self.answer[0];
                let other = if fc & 0x7F == 0x03 { 0x04 } else { 0x03 };
                self.answer[0] = (fc & 0x80) | other;
            }
            _ => {}
        }
        rtu::encode(address, &self.answer, &mut self.frame);
        match fault {
            Fault::BadCrc => {
                if let Some(last) = self.frame.last_mut() {
                    *last ^= 0xFF;
                }
            }
            Fault::Truncated => {
                let half = self.frame.len() / 2;
                self.frame.truncate(half);
            }
            Fault::Noise => {
                for i in 0..self.frame.len() {
                    self.frame[i] = self.next_random() as u8;
                }
                // Never the slave's own address, so noise cannot pass for its answer.
                if self.frame[0] == self.slave {
                    self.frame[0] ^= 0x80;
                }
            }
            _ => {}
        }
        true
    }

    fn next_random(&mut self) -> u32 {
        self.rng.next()
    }

    /// Writes the bytes of waiting answers whose time has come.
    fn send_due(&mut self) {
        while let Some(p) = self.pending.front_mut() {
            let now = Instant::now();
            let due = p.due_by(now);
            if due > p.sent {
                if due == p.bytes.len() {
                    self.shared.state.lock().stats.answered += 1;
                    if p.char_time.is_some() {
                        // Taken just before the write: the master cannot have the last
                        // byte sooner, so its silence cannot end sooner either.
                        let last_byte = Instant::now();
                        let end = last_byte + p.silence;
                        self.line.free_at = Some(self.line.free_at.map_or(end, |f| f.max(end)));
                        self.line.answered_at = Some(last_byte);
                    }
                }
                self.port.send(&p.bytes[p.sent..due]);
                p.sent = due;
            }
            if p.sent < p.bytes.len() {
                return;
            }
            self.pending.pop_front();
            if !self.pending.is_empty() {
                // A frame came while this answer was on its way: the next turnaround is
                // not from this answer.
                self.line.answered_at = None;
            }
            // An answer never overlaps the one before it on the line.
            if let Some(next) = self.pending.front_mut() {
                next.at = next.at.max(now);
            }
        }
    }
}
