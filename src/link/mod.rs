//! The UPS link thread: the only owner of the serial port to the UPS.
//!
//! Every source (the Modbus TCP sessions, the RS485 port, the control polling) hands it a
//! [`Request`] and waits for the answer. One request is on the wire at a time. Each source
//! has at most one request waiting (a [`Caller`] blocks until its answer comes), so the
//! queue is served round-robin: no session can starve the others or the RS485 port.
//!
//! What it guarantees to a requester:
//! - an answer that is really the UPS's answer to *this* request (CRC, slave, function and
//!   shape checked), ended the moment its last byte arrives;
//! - exception 0x0B when the UPS is silent or answers wrongly, at the serial timeout at the
//!   latest; a genuine exception from the UPS as soon as its 5 bytes are in;
//! - exception 0x0A at once while no baud rate has been found;
//! - no late answer to an earlier request, ever: stale bytes are drained before each
//!   request, and after a timeout the line is listened to for a while so a slow answer is
//!   caught and thrown away rather than taken for the next one's.

pub mod framelog;
mod queue;
pub mod status;

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::modbus::pdu::{Exception, PduBuf};
use crate::modbus::rtu::{self, FrameError, Status};
use crate::serial::{Port, Wait};
use crate::settings::UPS_BAUDS;
use crate::shutdown::Shutdown;
use framelog::{Direction, FrameLog, Note};
use queue::{Pop, Queue, Slot};
use status::bump;
pub use status::{Counters, LinkState, LinkStatus};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The control frame: read one word of the measurement table (output load, 0x1060). It is
/// what baud detection probes with and what polling sends to keep the UPS's port open. Any
/// well-formed answer, an exception included, proves the UPS is there.
pub const CONTROL_PDU: [u8; 5] = [0x03, 0x10, 0x60, 0x00, 0x01];

/// Time the UPS gets to act on a broadcast before the next frame.
const BROADCAST_TURNAROUND: Duration = Duration::from_millis(20);
/// How often a port that failed is opened again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// Shorter waits for the rest of a frame are not worth a sleep.
const MIN_NAP: Duration = Duration::from_micros(300);
/// Consecutive failed gateway requests that declare the UPS lost (one failed poll does).
const FAILURES_TO_LOST: u32 = 3;

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tcp(u8),
    Rs485,
}

/// A request and the slot its answer goes to. Every request is answered exactly once: by
/// [`Request::answer`], or, if it is dropped unanswered (link stopping, or a panic), with
/// exception 0x0A, so no caller ever waits forever.
pub struct Request {
    pub source: Source,
    /// RTU address; 0 is a broadcast, answered with an empty PDU.
    pub slave: u8,
    /// Never empty: [`Caller::call`] refuses an empty PDU.
    pub pdu: PduBuf,
    reply: Arc<Slot>,
    answered: bool,
}

impl Request {
    fn answer(mut self, pdu: PduBuf) {
        self.reply.put(pdu);
        self.answered = true;
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            let function = self.pdu.first().copied().unwrap_or(0);
            self.reply.put(PduBuf::exception(
                function,
                Exception::GatewayPathUnavailable,
            ));
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub path: PathBuf,
    /// 0: detect among [`UPS_BAUDS`]; otherwise only this rate.
    pub baud: u32,
    pub ups_slave: u8,
    pub timeout: Duration,
    /// Zero: no polling.
    pub poll_every: Duration,
    /// Silence kept between frames; `None`: 3.5 characters at the current rate.
    pub frame_gap: Option<Duration>,
    /// Progress for the watchdog: busy during an exchange, idle waiting for requests.
    pub heartbeat: Heartbeat,
}

/// The handle everyone else holds.
#[derive(Clone)]
pub struct Link {
    queue: Arc<Queue>,
    pub status: Arc<LinkStatus>,
    pub frames: Arc<FrameLog>,
}

impl Link {
    /// Opens the port and starts the thread. The port is opened here so that a wrong path
    /// is an error at start, not a silent thread.
    pub fn spawn(
        config: LinkConfig,
        events: Events,
        shutdown: Shutdown,
    ) -> io::Result<(Link, JoinHandle<()>)> {
        let first = if config.baud == 0 {
            UPS_BAUDS[0]
        } else {
            config.baud
        };
        let port = Port::open(&config.path, first)?;
        let queue = Arc::new(Queue::new());
        let status = Arc::new(LinkStatus::default());
        let frames = Arc::new(FrameLog::new());
        let engine = Engine {
            port,
            config,
            status: status.clone(),
            frames: frames.clone(),
            events,
            shutdown,
            rx_buf: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
            tx_buf: Vec::with_capacity(crate::modbus::MAX_RTU),
            quiet_until: Instant::now(),
            last_good: None,
            last_poll: Instant::now(),
            failures: 0,
            lost: false,
            last_reopen: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("ups-link".into())
            .stack_size(256 * 1024)
            .spawn({
                let queue = queue.clone();
                move || engine.run(&queue)
            })?;
        Ok((
            Link {
                queue,
                status,
                frames,
            },
            thread,
        ))
    }

    /// Ends the link thread's wait for requests; with [`Shutdown::fire`], stops it.
    pub fn close(&self) {
        self.queue.close();
    }

    /// A caller for one source, with its own reply slot reused for every request.
    pub fn caller(&self, source: Source) -> Caller {
        Caller {
            link: self.clone(),
            source,
            slot: Arc::new(Slot::default()),
        }
    }
}

pub struct Caller {
    link: Link,
    source: Source,
    slot: Arc<Slot>,
}

impl Caller {
    /// Sends `pdu` to `slave` and waits for the answer PDU (empty for a broadcast).
    pub fn call(&self, slave: u8, pdu: &[u8]) -> PduBuf {
        let function = pdu.first().copied().unwrap_or(0);
        let unavailable = PduBuf::exception(function, Exception::GatewayPathUnavailable);
        if matches!(
            self.link.status.state(),
            LinkState::Detecting | LinkState::Stopped
        ) {
            return unavailable;
        }
        let Some(pdu) = PduBuf::new(pdu).filter(|p| !p.is_empty()) else {
            return unavailable;
        };
        // Function 0 and codes with the high bit (exception answers) are never requests:
        // answered here, they never take the line.
        if function == 0 || function & 0x80 != 0 {
            return PduBuf::exception(function, Exception::IllegalFunction);
        }
        let request = Request {
            source: self.source,
            slave,
            pdu,
            reply: self.slot.clone(),
            answered: false,
        };
        if !self.link.queue.push(request) {
            return unavailable;
        }
        // The link thread answers every request it takes, even while stopping.
        self.slot.take()
    }
}

/// Why an exchange gave no answer.
#[derive(Debug)]
enum Failure {
    /// Nothing (whole) before the timeout; how many bytes had come.
    Timeout(usize),
    Invalid(FrameError),
    Io(io::Error),
    Shutdown,
}

struct Engine {
    port: Port,
    config: LinkConfig,
    status: Arc<LinkStatus>,
    frames: Arc<FrameLog>,
    events: Events,
    shutdown: Shutdown,
    rx_buf: Vec<u8>,
    scratch: Vec<u8>,
    tx_buf: Vec<u8>,
    /// No frame goes out before this: the inter-frame silence after the last byte.
    quiet_until: Instant,
    last_good: Option<Instant>,
    last_poll: Instant,
    failures: u32,
    lost: bool,
    last_reopen: Instant,
}

impl Engine {
    fn run(mut self, queue: &Queue) {
        crate::rt::make_realtime("ups link");
        if self.detect(queue) {
            self.serve_loop(queue);
        }
        self.status.set_state(LinkState::Stopped);
        // Requests still queued are answered 0x0A as they are dropped.
        queue.close();
        while queue.try_pop().is_some() {}
        log::info!("ups link stopped");
    }

    /// Probes each candidate rate with the control frame until the UPS answers. Returns
    /// false on shutdown.
    fn detect(&mut self, queue: &Queue) -> bool {
        self.status.set_state(LinkState::Detecting);
        let candidates: Vec<u32> = if self.config.baud == 0 {
            UPS_BAUDS.to_vec()
        } else {
            vec![self.config.baud]
        };
        log::info!(
            "looking for the UPS on {} at {:?} baud",
            self.config.path.display(),
            candidates
        );
        let mut rounds = 0u64;
        loop {
            for &baud in &candidates {
                self.config.heartbeat.busy();
                if let Err(e) = self.port.set_baud(baud) {
                    log::error!(
                        "cannot set {} to {baud} baud: {e}",
                        self.config.path.display()
                    );
                }
                let _ = self.port.discard_input();
                self.quiet_until = Instant::now();
                match self.exchange(self.config.ups_slave, &CONTROL_PDU) {
                    Ok(_) => {
                        self.status.set_baud(baud);
                        self.status.set_state(LinkState::Up);
                        self.alive(Instant::now());
                        self.last_poll = Instant::now();
                        self.events.emit(Event::UpsDetected { baud });
                        return true;
                    }
                    Err(Failure::Shutdown) => return false,
                    Err(Failure::Io(e)) => {
                        log::error!("ups link: {e}");
                        if self.shutdown.sleep(REOPEN_EVERY) {
                            return false;
                        }
                        self.reopen();
                    }
                    Err(_) => {}
                }
                // Requests that came in meanwhile: no path to the UPS yet (dropping a
                // request answers it 0x0A).
                while queue.try_pop().is_some() {}
                if self.shutdown.is_fired() {
                    return false;
                }
            }
            rounds += 1;
            if rounds == 1 {
                log::warn!("no answer from the UPS at {candidates:?} baud; still trying");
            }
        }
    }

    fn serve_loop(&mut self, queue: &Queue) {
        loop {
            self.config.heartbeat.idle();
            let next = queue.pop(Instant::now() + self.until_poll());
            self.config.heartbeat.busy();
            match next {
                Pop::Request(request) => self.serve(request),
                Pop::Timeout if !self.config.poll_every.is_zero() => self.poll(),
                Pop::Timeout => {}
                Pop::Closed => return,
            }
            if self.shutdown.is_fired() {
                return;
            }
        }
    }

    fn until_poll(&self) -> Duration {
        if self.config.poll_every.is_zero() {
            return Duration::from_secs(3600);
        }
        let since = self
            .last_good
            .map_or(self.last_poll, |g| g.max(self.last_poll));
        (since + self.config.poll_every).saturating_duration_since(Instant::now())
    }

    fn poll(&mut self) {
        bump(&self.status.polls, 1);
        self.last_poll = Instant::now();
        let was_lost = self.lost;
        match self.exchange(self.config.ups_slave, &CONTROL_PDU) {
            Ok(_) => self.alive(Instant::now()),
            Err(Failure::Shutdown) => {}
            Err(failure) => {
                log::debug!("control poll failed: {failure:?}");
                if let Failure::Io(e) = &failure {
                    self.port_failed(e);
                }
                self.declare_lost();
                self.after_failure(&failure, was_lost);
            }
        }
    }

    fn serve(&mut self, request: Request) {
        let function = request.pdu[0];
        let was_lost = self.lost;
        let result = self.exchange(request.slave, &request.pdu);
        let answer = match &result {
            Ok(pdu) => *pdu,
            Err(_) => PduBuf::exception(function, Exception::GatewayTargetFailedToRespond),
        };
        let to_ups = request.slave == self.config.ups_slave;
        request.answer(answer);
        match result {
            Ok(_) if to_ups => self.alive(Instant::now()),
            Ok(_) => {}
            Err(Failure::Shutdown) => {}
            Err(failure) => {
                if let Failure::Io(e) = &failure {
                    self.port_failed(e);
                }
                if to_ups {
                    self.failures += 1;
                    if self.failures >= FAILURES_TO_LOST {
                        self.declare_lost();
                    }
                }
                self.after_failure(&failure, was_lost);
            }
        }
    }

    fn alive(&mut self, now: Instant) {
        self.last_good = Some(now);
        self.failures = 0;
        if self.lost {
            self.lost = false;
            self.status.set_state(LinkState::Up);
            self.events.emit(Event::UpsRestored);
        }
    }

    fn declare_lost(&mut self) {
        if !self.lost {
            self.lost = true;
            self.status.set_state(LinkState::Lost);
            self.events.emit(Event::UpsLost);
        }
    }

    /// After a timeout, keep listening for up to one more timeout: a slow answer then
    /// arrives here, is logged and thrown away, and cannot be taken for the answer to the
    /// next request. Once the UPS has been declared lost (before this exchange), a silent
    /// line costs no more than the timeout itself.
    fn after_failure(&mut self, failure: &Failure, was_lost: bool) {
        let Failure::Timeout(_) = failure else { return };
        if was_lost {
            return;
        }
        let deadline = Instant::now() + self.config.timeout;
        self.rx_buf.clear();
        let mut settle = deadline;
        while let Ok(Wait::Data(_)) =
            self.port
                .read_until(&mut self.rx_buf, settle.min(deadline), &self.shutdown)
        {
            settle = Instant::now() + self.gap();
            if self.rx_buf.len() >= self.rx_buf.capacity() {
                break;
            }
        }
        if !self.rx_buf.is_empty() {
            bump(&self.status.late_answers, 1);
            self.frames
                .push(Direction::FromUps, &self.rx_buf, Note::Late);
            log::debug!("late answer discarded: {:02X?}", self.rx_buf);
            self.quiet_until = Instant::now() + self.gap();
        }
    }

    /// The port itself failed: open it again, at most every [`REOPEN_EVERY`], so a
    /// device that comes back (a USB adapter plugged in again, a udev link renewed) is
    /// used again without a restart. Logged once per attempt, not per request.
    fn port_failed(&mut self, error: &io::Error) {
        if self.last_reopen.elapsed() >= REOPEN_EVERY {
            log::error!("ups link: {error}");
            self.reopen();
        }
    }

    fn reopen(&mut self) {
        self.last_reopen = Instant::now();
        self.port.release();
        match Port::open(&self.config.path, self.port.baud()) {
            Ok(port) => {
                log::warn!("ups link: {} opened again", self.config.path.display());
                self.port = port;
                self.quiet_until = Instant::now();
            }
            Err(e) => log::warn!("ups link: {e}"),
        }
    }

    fn gap(&self) -> Duration {
        self.config
            .frame_gap
            .unwrap_or_else(|| rtu::t35(self.port.baud()))
    }

    /// One request on the wire and its answer.
    fn exchange(&mut self, slave: u8, pdu: &[u8]) -> Result<PduBuf, Failure> {
        let now = Instant::now();
        if now < self.quiet_until && self.shutdown.sleep(self.quiet_until - now) {
            return Err(Failure::Shutdown);
        }
        let stale = self.port.drain(&mut self.scratch).map_err(Failure::Io)?;
        if stale > 0 {
            bump(&self.status.stale_bytes, stale as u64);
            self.frames
                .push(Direction::FromUps, &self.scratch, Note::Stale);
        }

        rtu::encode(slave, pdu, &mut self.tx_buf);
        self.port.write_all(&self.tx_buf).map_err(Failure::Io)?;
        let sent = Instant::now();
        bump(&self.status.requests, 1);
        let baud = self.port.baud();
        if slave == rtu::BROADCAST {
            self.frames
                .push(Direction::ToUps, &self.tx_buf, Note::Broadcast);
            self.quiet_until =
                sent + rtu::wire_time(baud, self.tx_buf.len()) + self.gap() + BROADCAST_TURNAROUND;
            return Ok(PduBuf::EMPTY);
        }
        self.frames
            .push(Direction::ToUps, &self.tx_buf, Note::Request);

        let deadline = sent + self.config.timeout;
        self.rx_buf.clear();
        let mut last_byte = sent;
        let result = loop {
            let silent_by = match rtu::check_response(slave, pdu, &self.rx_buf) {
                Ok(Status::Complete(n)) => break Ok(n),
                Err(e) => break Err(Failure::Invalid(e)),
                Ok(Status::Incomplete(need)) => {
                    // Part of a frame of known length is in: the rest cannot come sooner
                    // than the wire brings it, so sleep until then instead of waking up
                    // for every byte (a 101-byte answer at 9600 baud trickles for 105 ms).
                    let missing = need.saturating_sub(self.rx_buf.len());
                    if !self.rx_buf.is_empty() && missing > 1 {
                        let due = Instant::now() + rtu::wire_time(baud, missing - 1);
                        let nap = due.min(deadline).saturating_duration_since(Instant::now());
                        if nap >= MIN_NAP && self.shutdown.sleep(nap) {
                            break Err(Failure::Shutdown);
                        }
                    }
                    deadline
                }
                Ok(Status::UntilSilence) => (last_byte + rtu::t35(baud)).min(deadline),
            };
            match self
                .port
                .read_until(&mut self.rx_buf, silent_by, &self.shutdown)
            {
                Ok(Wait::Data(_)) => last_byte = Instant::now(),
                Ok(Wait::Shutdown) => break Err(Failure::Shutdown),
                Ok(Wait::Timeout) if Instant::now() < deadline => {
                    // Silence ended a frame of unknown length.
                    break rtu::check_silent(&self.rx_buf).map_err(Failure::Invalid);
                }
                Ok(Wait::Timeout) => break Err(Failure::Timeout(self.rx_buf.len())),
                Err(e) => break Err(Failure::Io(e)),
            }
            if self.rx_buf.len() >= self.rx_buf.capacity() {
                break Err(Failure::Invalid(FrameError::TooLong));
            }
        };

        match result {
            Ok(n) => {
                let answer = PduBuf::new(rtu::pdu_of(&self.rx_buf[..n])).expect("frame ≤ 256");
                let exception = crate::modbus::pdu::is_exception(&answer);
                self.frames.push(
                    Direction::FromUps,
                    &self.rx_buf[..n],
                    if exception {
                        Note::Exception
                    } else {
                        Note::Answer
                    },
                );
                bump(
                    if exception {
                        &self.status.exceptions
                    } else {
                        &self.status.answers
                    },
                    1,
                );
                if self.rx_buf.len() > n {
                    bump(&self.status.stale_bytes, (self.rx_buf.len() - n) as u64);
                    self.frames
                        .push(Direction::FromUps, &self.rx_buf[n..], Note::Stale);
                }
                self.quiet_until = Instant::now() + self.gap();
                Ok(answer)
            }
            Err(Failure::Invalid(e)) => {
                bump(&self.status.bad_answers, 1);
                // Let the rest of the bad frame pass so it does not spoil the next one.
                let mut settle = Instant::now() + self.gap();
                while let Ok(Wait::Data(_)) =
                    self.port
                        .read_until(&mut self.rx_buf, settle.min(deadline), &self.shutdown)
                {
                    settle = Instant::now() + self.gap();
                    if self.rx_buf.len() >= self.rx_buf.capacity() {
                        self.rx_buf.clear();
                    }
                }
                self.frames
                    .push(Direction::FromUps, &self.rx_buf, Note::Invalid(e));
                log::debug!("ups answer refused: {e}: {:02X?}", self.rx_buf);
                self.quiet_until = Instant::now() + self.gap();
                Err(Failure::Invalid(e))
            }
            Err(Failure::Timeout(n)) => {
                bump(&self.status.timeouts, 1);
                self.frames
                    .push(Direction::FromUps, &self.rx_buf, Note::Timeout);
                if n > 0 {
                    log::debug!("ups answer truncated: {:02X?}", self.rx_buf);
                }
                self.quiet_until = Instant::now() + self.gap();
                Err(Failure::Timeout(n))
            }
            Err(other) => Err(other),
        }
    }
}
