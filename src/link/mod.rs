//! The UPS link thread: the only owner of the serial port to the UPS.
//!
//! Every source (the Modbus TCP sessions, the RS485 port) hands it a [`Request`] and waits
//! for the answer; the link's own control frame checks the UPS. One request is on the wire
//! at a time. Each source has at most one request waiting, so the queue is served
//! round-robin: no session can starve the others or the RS485 port.
//!
//! What it guarantees to a requester:
//! - an answer that is really the UPS's answer to *this* request (CRC, slave, function and
//!   shape checked), ended the moment its last byte arrives; never the late answer to an
//!   earlier request, in any state of the link ([`outstanding`] says how);
//! - exception 0x0B when the UPS is silent or answers wrongly, at the serial timeout after
//!   the request went on the line; a genuine exception from the UPS as soon as its 5 bytes
//!   are in;
//! - exception 0x0B at once, without touching the line, while the UPS is known lost or
//!   not found yet (no baud rate answers): to a master, both are a UPS that does not
//!   answer (0x0A would mean a gateway set up wrongly).
//!
//! On the line, every frame keeps the silence after the last byte (3.5 characters, or the
//! `frame_gap_us` setting), counted from the moment that byte was found, and leaves as
//! soon after it as the machine allows: the next request is taken and encoded during the
//! silence, and the thread sleeps to its end with an absolute deadline.
//!
//! Every `poll_every` the link also reads the UPS's tables whole ([`crate::ups::map::CYCLE`]:
//! identification, status, alarms, measurements) into [`LinkStatus::ups`], for Home, the
//! history and the UPS's events. One table read at a time, taking turns with the requests
//! waiting (a read, then a request, then a read ...): a master's request waits at most for
//! the one read on the line, never for the cycle, and the cycle ends under any load. A
//! table refused with exception 02 is asked again at its next smaller size, then left
//! alone (a model with another map) and tried again now and then. Each answer is a sign of
//! life; a read that fails sends the control frame, as a failed request does.
//!
//! "Lost" is decided by the control frame alone, which a healthy UPS always answers: a
//! master asking for something the UPS ignores only fails its own requests. When a request
//! to the UPS fails, the control frame goes next, at once, to find out; when it fails, the
//! UPS is lost, and the control frame checks it about every second until it answers.

pub mod framelog;
// Public for the fuzz targets only (fuzz/): the late-answer guard meets the UPS's bytes.
#[doc(hidden)]
pub mod outstanding;
mod queue;
pub mod status;

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::modbus::pdu::{Exception, PduBuf};
use crate::modbus::rtu::{self, FrameError, Status};
use crate::serial::{Port, Wait};
use crate::settings::UPS_BAUDS;
use crate::shutdown::Shutdown;
use crate::ups::map;
use framelog::{Direction, FrameLog, Note};
use outstanding::{Outstanding, Verdict};
use queue::{Pop, Queue, Slot};
use status::bump;
pub use status::{Counters, LinkState, LinkStatus, UpsTables};
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The control frame: read one word of the measurement table (output load, 0x1060). It is
/// what baud detection probes with, what polling sends to keep the UPS's port open, and
/// what checks the UPS after a failure. Any well-formed answer, an exception included,
/// proves the UPS is there. While an earlier answer may still come, it reads as many words
/// as make its answer unmistakable ([`Outstanding::probe`]).
pub const CONTROL_PDU: [u8; 5] = [0x03, 0x10, 0x60, 0x00, 0x01];

/// Time the UPS gets to act on a broadcast before the next frame.
const BROADCAST_TURNAROUND: Duration = Duration::from_millis(20);
/// How often a port that failed is opened again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// Shorter waits for the rest of a frame are not worth a sleep.
const MIN_NAP: Duration = Duration::from_micros(300);
/// Waits for the line longer than this watch for shutdown until this much is left.
const WATCHED_WAIT: Duration = Duration::from_millis(5);
/// How often the control frame checks a UPS that is lost.
const PROBE_WHILE_LOST: Duration = Duration::from_secs(1);
/// Requests whose answer did not come are forgotten after this many serial timeouts
/// (see [`outstanding`]).
const LATE_WINDOW_TIMEOUTS: u32 = 4;
/// Every this many cycles a table refused at every size is asked again (a UPS replaced,
/// or its firmware updated, on the same card).
const REREAD_EVERY_CYCLES: u64 = 60;

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tcp(u8),
    /// A Modbus/TCP Security (TLS) session, by number.
    Mbtls(u8),
    Rs485,
    /// The link itself: baud detection, polling, checking the UPS.
    Control,
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
    /// The reply slot's generation when the request was made: an answer is only kept if
    /// the caller has not moved on to a newer request since.
    generation: u64,
    answered: bool,
}

impl Request {
    fn answer(mut self, pdu: PduBuf) {
        self.reply.put(self.generation, pdu);
        self.answered = true;
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            let function = self.pdu.first().copied().unwrap_or(0);
            self.reply.put(
                self.generation,
                PduBuf::exception(function, Exception::GatewayPathUnavailable),
            );
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// is an error at start, not a silent thread. `heartbeat` tells the watchdog it is
    /// busy during an exchange, idle waiting for requests.
    pub fn spawn(
        config: LinkConfig,
        events: Events,
        shutdown: Shutdown,
        heartbeat: Heartbeat,
    ) -> io::Result<(Link, JoinHandle<()>)> {
        let first = if config.baud == 0 {
            UPS_BAUDS[0]
        } else {
            config.baud
        };
        let port = Port::open(&config.path, first)?;
        let queue = Arc::new(Queue::new());
        let status = Arc::new(LinkStatus::default());
        status.set_config(config.timeout, config.ups_slave);
        status.ups.lock().polling_off = config.poll_every.is_zero();
        let frames = Arc::new(FrameLog::new());
        let engine = Engine {
            port,
            config,
            status: status.clone(),
            frames: frames.clone(),
            events,
            shutdown,
            heartbeat,
            rx_buf: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
            tx_buf: Vec::with_capacity(crate::modbus::MAX_RTU),
            quiet_until: Instant::now(),
            last_good: None,
            last_probe: Instant::now(),
            check_now: false,
            lost: false,
            not_found_logged: false,
            outstanding: Outstanding::default(),
            last_reopen: Instant::now(),
            cycle_step: None,
            cycle_ran: false,
            last_cycle: None,
            size_index: [0; map::CYCLE.len()],
            master_fresh: [None; map::CYCLE.len()],
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
            slot: Arc::new(Slot::new(false).expect("a slot without a descriptor")),
        }
    }

    /// A caller whose answers also wake a descriptor ([`Caller::wake_fd`]), for a thread
    /// that waits on its port and its answer at once.
    pub fn waking_caller(&self, source: Source) -> io::Result<Caller> {
        Ok(Caller {
            link: self.clone(),
            source,
            slot: Arc::new(Slot::new(true)?),
        })
    }

    /// The serial timeout the link waits for an answer.
    pub fn timeout(&self) -> Duration {
        self.status.timeout()
    }

    /// A new configuration, applied by the link thread between two exchanges. A new baud
    /// rate (or going back to detection) makes it look for the UPS again.
    pub fn reconfigure(&self, config: LinkConfig) {
        self.queue.reconfigure(config);
    }
}

pub struct Caller {
    link: Link,
    source: Source,
    slot: Arc<Slot>,
}

/// What [`Caller::submit`] did with a request.
#[derive(Debug)]
pub struct Submitted {
    /// The answer, when it was given at once without the line (no baud rate yet, UPS
    /// lost, a function code that is never a request); otherwise it comes later.
    pub answer: Option<PduBuf>,
    /// The caller's previous request was still waiting for its answer, which will now
    /// never be delivered.
    pub superseded: bool,
}

impl Caller {
    /// Sends `pdu` to `slave` and waits for the answer PDU (empty for a broadcast).
    pub fn call(&self, slave: u8, pdu: &[u8]) -> PduBuf {
        match self.submit(slave, pdu).answer {
            Some(answer) => answer,
            // The link thread answers every request it takes, even while stopping.
            None => self.slot.take(),
        }
    }

    /// Hands `pdu` for `slave` to the link without waiting for the answer, which
    /// [`Caller::answer`] then gives. A previous request of this caller that is still
    /// waiting is abandoned: taken out of the queue, or, if it is on the line, its answer
    /// is thrown away when it comes.
    pub fn submit(&self, slave: u8, pdu: &[u8]) -> Submitted {
        let (generation, superseded) = self.slot.begin();
        if superseded {
            self.link.queue.remove(self.source);
        }
        let function = pdu.first().copied().unwrap_or(0);
        let at_once = |exception: Exception| {
            log::debug!(
                "{:?} to slave {slave} answered at once: {exception:?} ({:02X?})",
                self.source,
                pdu
            );
            self.slot.end();
            Submitted {
                answer: Some(PduBuf::exception(function, exception)),
                superseded,
            }
        };
        let state = self.link.status.state();
        if state == LinkState::Stopped {
            return at_once(Exception::GatewayPathUnavailable);
        }
        if state == LinkState::Detecting {
            return at_once(Exception::GatewayTargetFailedToRespond);
        }
        let Some(pdu) = PduBuf::new(pdu).filter(|p| !p.is_empty()) else {
            return at_once(Exception::GatewayPathUnavailable);
        };
        // Function 0 and codes with the high bit (exception answers) are never requests:
        // answered here, they never take the line.
        if function == 0 || function & 0x80 != 0 {
            return at_once(Exception::IllegalFunction);
        }
        if state == LinkState::Lost && slave == self.link.status.ups_slave() {
            return at_once(Exception::GatewayTargetFailedToRespond);
        }
        let request = Request {
            source: self.source,
            slave,
            pdu,
            reply: self.slot.clone(),
            generation,
            answered: false,
        };
        if !self.link.queue.push(request) {
            return at_once(Exception::GatewayPathUnavailable);
        }
        Submitted {
            answer: None,
            superseded,
        }
    }

    /// The answer to the last request submitted, once it has come.
    pub fn answer(&self) -> Option<PduBuf> {
        self.slot.try_take()
    }

    /// Readable when an answer has come; only for a [`Link::waking_caller`].
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.slot.wake_fd()
    }

    pub fn link(&self) -> &Link {
        &self.link
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
    heartbeat: Heartbeat,
    rx_buf: Vec<u8>,
    scratch: Vec<u8>,
    tx_buf: Vec<u8>,
    /// No frame goes out before this: the inter-frame silence after the last byte on the
    /// line, counted from when that byte was found.
    quiet_until: Instant,
    /// When the UPS last answered (a request or the control frame).
    last_good: Option<Instant>,
    /// When the control frame last went out.
    last_probe: Instant,
    /// A request to the UPS failed: the control frame goes next, at once.
    check_now: bool,
    lost: bool,
    /// "UPS not found" was logged: once per start.
    not_found_logged: bool,
    /// Requests whose answers may still come.
    outstanding: Outstanding,
    last_reopen: Instant,
    /// The table of [`map::CYCLE`] the polling cycle reads next; `None` between cycles.
    cycle_step: Option<usize>,
    /// The last exchange was the cycle's: a request waiting goes next.
    cycle_ran: bool,
    /// When the last cycle began.
    last_cycle: Option<Instant>,
    /// Per table of the cycle, which of its sizes is asked.
    size_index: [usize; map::CYCLE.len()],
    /// Per table of the cycle, when a master's answer last brought it whole.
    master_fresh: [Option<Instant>; map::CYCLE.len()],
}

impl Engine {
    fn run(mut self, queue: &Queue) {
        crate::rt::make_realtime("ups link");
        // Serves until stopped; a new baud rate sends it back to detection.
        while self.detect(queue) && self.serve_loop(queue) {}
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
        self.status.set_baud(0);
        self.lost = false;
        self.forget_tables();
        let mut rounds = 0u64;
        'rounds: loop {
            let candidates: Vec<u32> = if self.config.baud == 0 {
                UPS_BAUDS.to_vec()
            } else {
                vec![self.config.baud]
            };
            if rounds == 0 {
                log::info!(
                    "looking for the UPS on {} at {:?} baud",
                    self.config.path.display(),
                    candidates
                );
            }
            for &baud in &candidates {
                self.heartbeat.busy();
                if let Some(config) = queue.take_config() {
                    self.apply(config);
                    continue 'rounds;
                }
                if let Err(e) = self.port.set_baud(baud) {
                    log::error!(
                        "cannot set {} to {baud} baud: {e}",
                        self.config.path.display()
                    );
                }
                let _ = self.port.discard_input();
                self.quiet_until = Instant::now();
                let probe = self.outstanding.probe(self.config.ups_slave);
                match self.exchange(Source::Control, self.config.ups_slave, &probe) {
                    Ok(_) => {
                        self.status.set_not_found(false);
                        self.status.set_baud(baud);
                        self.status.set_state(LinkState::Up);
                        self.alive(Instant::now());
                        self.last_probe = Instant::now();
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
                // Requests that came in just before detection began: the UPS is not
                // found yet, as if it did not answer.
                while let Some(request) = queue.try_pop() {
                    let function = request.pdu.first().copied().unwrap_or(0);
                    request.answer(PduBuf::exception(
                        function,
                        Exception::GatewayTargetFailedToRespond,
                    ));
                }
                if self.shutdown.is_fired() {
                    return false;
                }
            }
            rounds += 1;
            if rounds == 1 {
                log::warn!("no answer from the UPS at {candidates:?} baud; still trying");
                self.status.set_not_found(true);
                if !self.not_found_logged {
                    self.not_found_logged = true;
                    self.events.emit(Event::UpsNotFound {
                        bauds: candidates.clone(),
                        slave: self.config.ups_slave,
                    });
                }
            }
        }
    }

    /// Takes a new configuration; true if the UPS must be looked for again (its rate
    /// changed, or detection asked for).
    fn apply(&mut self, config: LinkConfig) -> bool {
        let found = self.status.baud();
        let redetect =
            config.baud != self.config.baud && (config.baud == 0 || config.baud != found);
        log::info!(
            "ups link: serial timeout {:?}, polling every {:?}, baud {}",
            config.timeout,
            config.poll_every,
            if config.baud == 0 {
                "detected".to_string()
            } else {
                config.baud.to_string()
            }
        );
        self.status.set_config(config.timeout, config.ups_slave);
        let off = config.poll_every.is_zero();
        self.status.ups.lock().polling_off = off;
        if off {
            self.cycle_step = None;
            self.forget_tables();
        }
        self.config = config;
        redetect
    }

    /// Serves requests; false when the link stops, true to look for the UPS again.
    fn serve_loop(&mut self, queue: &Queue) -> bool {
        loop {
            let now = Instant::now();
            self.start_cycle_if_due(now);
            if std::mem::take(&mut self.check_now) {
                self.probe();
            } else if self.cycle_step.is_some() && !self.cycle_ran {
                // The cycle's turn: one read, even with requests waiting; then theirs.
                // So the cycle ends under any load, and puts at most one exchange in a
                // master's way.
                self.due();
            } else {
                self.heartbeat.idle();
                // A cycle under way goes on at once when no request waits.
                let deadline = if self.cycle_step.is_some() {
                    now
                } else {
                    self.next_probe().min(self.next_cycle(now))
                };
                let next = queue.pop(deadline);
                self.heartbeat.busy();
                match next {
                    Pop::Request(request) => self.serve(request),
                    Pop::Reconfigure(config) => {
                        if self.apply(config) {
                            return true;
                        }
                    }
                    Pop::Timeout => self.due(),
                    Pop::Closed => return false,
                }
            }
            if self.shutdown.is_fired() {
                return false;
            }
        }
    }

    /// When the control frame is due: about every second while the UPS is lost, else
    /// after `poll_every` without a sign of life.
    fn next_probe(&self) -> Instant {
        if self.lost {
            return self.last_probe + PROBE_WHILE_LOST;
        }
        if self.config.poll_every.is_zero() {
            return Instant::now() + Duration::from_secs(3600);
        }
        let since = self
            .last_good
            .map_or(self.last_probe, |g| g.max(self.last_probe));
        since + self.config.poll_every
    }

    /// When the next polling cycle begins (never while polling is off or the UPS lost).
    fn next_cycle(&self, now: Instant) -> Instant {
        if self.config.poll_every.is_zero() || self.lost {
            return now + Duration::from_secs(3600);
        }
        self.last_cycle.map_or(now, |t| t + self.config.poll_every)
    }

    /// The line is free and nothing waits: the control frame if it is due, else the next
    /// read of the polling cycle.
    fn due(&mut self) {
        let now = Instant::now();
        let polling = !self.config.poll_every.is_zero();
        if (self.lost || polling) && now >= self.next_probe() {
            self.probe();
            return;
        }
        if self.lost || !polling {
            return;
        }
        if let Some(step) = self.cycle_step {
            self.cycle_read(step);
        }
    }

    /// A new cycle begins when it is due, whatever waits: its reads then take turns with
    /// the requests.
    fn start_cycle_if_due(&mut self, now: Instant) {
        if !self.lost
            && !self.config.poll_every.is_zero()
            && self.cycle_step.is_none()
            && now >= self.next_cycle(now)
        {
            self.cycle_step = Some(0);
            self.last_cycle = Some(now);
        }
    }

    /// One table of the polling cycle: read it whole, or skip it.
    fn cycle_read(&mut self, step: usize) {
        self.cycle_ran = true;
        let table = map::CYCLE[step];
        // Every table is read every cycle, the identification too (12 words: a UPS swapped
        // on the same card is seen at once), except a table a master read whole since this
        // cycle began: it is fresh already (monitoring tools read these very tables).
        let by_master = self.master_fresh[step]
            .zip(self.last_cycle)
            .is_some_and(|(fresh, began)| fresh >= began);
        // One look at the shared status: a table refused at every size is asked again,
        // from its largest size, once every REREAD_EVERY_CYCLES cycles.
        let (skip, reread) = {
            let mut ups = self.status.ups.lock();
            let rereading = ups.cycles.is_multiple_of(REREAD_EVERY_CYCLES);
            let skip = by_master || (ups.refused[step] && !rereading);
            if !skip {
                ups.reads += 1;
            }
            (skip, rereading && ups.refused[step])
        };
        if skip {
            self.cycle_next(step);
            return;
        }
        if reread {
            self.size_index[step] = 0;
        }
        let size = table.sizes[self.size_index[step].min(table.sizes.len() - 1)];
        let [a_hi, a_lo] = table.start.to_be_bytes();
        let [n_hi, n_lo] = size.to_be_bytes();
        let pdu = [0x03, a_hi, a_lo, n_hi, n_lo];
        // The card's own polling, as the control frame: not a master's traffic (the LEDs).
        bump(&self.status.polls, 1);
        match self.exchange(Source::Control, self.config.ups_slave, &pdu) {
            Ok(answer) => {
                self.alive(Instant::now());
                if answer.as_ref() == [0x83, Exception::IllegalDataAddress as u8] {
                    if self.size_index[step] + 1 < table.sizes.len() {
                        // The same table again, smaller, as the next step.
                        self.size_index[step] += 1;
                        return;
                    }
                    let mut ups = self.status.ups.lock();
                    ups.refused[step] = true;
                    *ups.tables.slot(step) = None;
                } else {
                    let words = words_of(&answer, size);
                    let mut ups = self.status.ups.lock();
                    ups.refused[step] = false;
                    *ups.tables.slot(step) = words;
                }
                self.cycle_next(step);
            }
            Err(Failure::Shutdown) => {}
            Err(failure) => {
                if let Failure::Io(e) = &failure {
                    self.port_failed(e);
                }
                // The control frame says whether the UPS is there; this cycle is over.
                self.cycle_step = None;
                self.check_now = true;
            }
        }
    }

    fn cycle_next(&mut self, step: usize) {
        if step + 1 < map::CYCLE.len() {
            self.cycle_step = Some(step + 1);
        } else {
            self.cycle_step = None;
            let mut ups = self.status.ups.lock();
            ups.cycles += 1;
            ups.at = Some(self.events.clock().now());
        }
    }

    /// A master read a whole table of the cycle, at the size the cycle asks: its answer
    /// refreshes the figures too.
    fn master_read(&mut self, request: &[u8], answer: &[u8]) {
        let (Some(&fc), Some(start), Some(qty)) = (
            request.first(),
            crate::modbus::pdu::word(request, 1),
            crate::modbus::pdu::word(request, 3),
        ) else {
            return;
        };
        if fc != 0x03 && fc != 0x04 {
            return;
        }
        for (i, table) in map::CYCLE.iter().enumerate() {
            if table.start == start && table.sizes.get(self.size_index[i]) == Some(&qty) {
                if let Some(words) = words_of(answer, qty) {
                    *self.status.ups.lock().tables.slot(i) = Some(words);
                    self.master_fresh[i] = Some(Instant::now());
                }
            }
        }
    }

    /// The tables' words are no longer the UPS's (lost, looked for again, polling off).
    fn forget_tables(&mut self) {
        self.cycle_step = None;
        self.last_cycle = None;
        let mut ups = self.status.ups.lock();
        ups.tables = Default::default();
    }

    /// The control frame: the UPS answers, or it is lost.
    fn probe(&mut self) {
        bump(&self.status.polls, 1);
        self.last_probe = Instant::now();
        let probe = self.outstanding.probe(self.config.ups_slave);
        match self.exchange(Source::Control, self.config.ups_slave, &probe) {
            Ok(_) => self.alive(Instant::now()),
            Err(Failure::Shutdown) => {}
            Err(failure) => {
                log::debug!("control frame failed: {failure:?}");
                if let Failure::Io(e) = &failure {
                    self.port_failed(e);
                }
                self.declare_lost();
            }
        }
    }

    fn serve(&mut self, request: Request) {
        self.cycle_ran = false;
        let function = request.pdu[0];
        let to_ups = request.slave == self.config.ups_slave;
        if self.lost && to_ups {
            // Queued just before the UPS was declared lost.
            request.answer(PduBuf::exception(
                function,
                Exception::GatewayTargetFailedToRespond,
            ));
            return;
        }
        let result = self.exchange(request.source, request.slave, &request.pdu);
        let answer = match &result {
            Ok(pdu) => *pdu,
            Err(_) => PduBuf::exception(function, Exception::GatewayTargetFailedToRespond),
        };
        // Before the answer goes: whoever has it may look at the figures at once.
        if result.is_ok() && to_ups && !self.config.poll_every.is_zero() {
            self.master_read(&request.pdu, &answer);
        }
        request.answer(answer);
        match result {
            Ok(_) if to_ups => self.alive(Instant::now()),
            Ok(_) | Err(Failure::Shutdown) => {}
            Err(failure) => {
                if let Failure::Io(e) = &failure {
                    self.port_failed(e);
                }
                self.check_now = to_ups;
            }
        }
    }

    fn alive(&mut self, now: Instant) {
        self.last_good = Some(now);
        if self.lost {
            self.lost = false;
            self.status.set_state(LinkState::Up);
            self.events.emit(Event::UpsRestored);
        }
    }

    fn declare_lost(&mut self) {
        if !self.lost {
            self.lost = true;
            self.forget_tables();
            self.status.set_state(LinkState::Lost);
            self.events.emit(Event::UpsLost);
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

    /// Bytes found on the line before a request: a late answer, or noise.
    fn drain_stale(&mut self) -> Result<(), Failure> {
        let stale = self.port.drain(&mut self.scratch).map_err(Failure::Io)?;
        if stale > 0 {
            bump(&self.status.stale_bytes, stale as u64);
            let note = if self.outstanding.take_late(&self.scratch) {
                bump(&self.status.late_answers, 1);
                Note::Late
            } else {
                Note::Stale
            };
            self.frames
                .push(Source::Control, Direction::FromUps, &self.scratch, note);
        }
        Ok(())
    }

    /// Waits out the silence after the last frame, to the instant it ends, so the next
    /// frame loses no line time. True on shutdown.
    fn wait_quiet(&self) -> bool {
        let left = self.quiet_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if left > WATCHED_WAIT && self.shutdown.sleep(left - WATCHED_WAIT) {
            return true;
        }
        crate::rt::sleep_until(self.quiet_until);
        self.shutdown.is_fired()
    }

    /// One request on the wire and its answer.
    fn exchange(&mut self, source: Source, slave: u8, pdu: &[u8]) -> Result<PduBuf, Failure> {
        // All that can be done before the line is free is done during the silence.
        let taken = Instant::now();
        rtu::encode(slave, pdu, &mut self.tx_buf);
        self.outstanding
            .expire(taken, self.config.timeout * LATE_WINDOW_TIMEOUTS);
        if self.wait_quiet() {
            return Err(Failure::Shutdown);
        }
        let woke = Instant::now();
        self.drain_stale()?;
        self.port.write_all(&self.tx_buf).map_err(Failure::Io)?;
        let sent = Instant::now();
        // Where the turnaround's time goes, on the monotonic clock (for the benchmark).
        log::trace!(
            "turnaround (monotonic ns): silence ends {} ({} ns), request taken {}, woke {}, sent {}",
            crate::rt::monotonic_ns(self.quiet_until),
            self.gap().as_nanos(),
            crate::rt::monotonic_ns(taken),
            crate::rt::monotonic_ns(woke),
            crate::rt::monotonic_ns(sent)
        );
        bump(&self.status.requests, 1);
        let baud = self.port.baud();
        if slave == rtu::BROADCAST {
            self.frames
                .push(source, Direction::ToUps, &self.tx_buf, Note::Broadcast);
            self.quiet_until =
                sent + rtu::wire_time(baud, self.tx_buf.len()) + self.gap() + BROADCAST_TURNAROUND;
            return Ok(PduBuf::EMPTY);
        }
        self.frames
            .push(source, Direction::ToUps, &self.tx_buf, Note::Request);

        let deadline = sent + self.config.timeout;
        self.rx_buf.clear();
        let mut last_byte = sent;
        let result = loop {
            let silent_by = match self.outstanding.judge(slave, pdu, &self.rx_buf) {
                Verdict::Answer(n) => break Ok(n),
                Verdict::Late { index, len } => {
                    self.late(source, index, len);
                    continue;
                }
                Verdict::Invalid(e) => break Err(Failure::Invalid(e)),
                Verdict::Wait(Status::Incomplete(need)) => {
                    // Part of a frame of known length is in: the rest cannot come sooner
                    // than the wire brings it, so sleep until then instead of waking up
                    // for every byte (a 101-byte answer at 9600 baud trickles for 105 ms).
                    // The wait for the last byte starts half a character before it can
                    // come, so the time it is found is the time it came, which the
                    // silence after it counts from.
                    let missing = need.saturating_sub(self.rx_buf.len());
                    if !self.rx_buf.is_empty() && missing > 1 {
                        let due = last_byte + rtu::wire_time(baud, missing - 1)
                            - rtu::char_time(baud) / 2;
                        let nap = due.min(deadline).saturating_duration_since(Instant::now());
                        if nap >= MIN_NAP && self.shutdown.sleep(nap) {
                            break Err(Failure::Shutdown);
                        }
                    }
                    deadline
                }
                Verdict::Wait(_) => (last_byte + rtu::t35(baud)).min(deadline),
            };
            match self
                .port
                .read_until(&mut self.rx_buf, silent_by, &self.shutdown)
            {
                Ok(Wait::Data(_)) => last_byte = self.port.data_at(),
                Ok(Wait::Shutdown) => break Err(Failure::Shutdown),
                Ok(Wait::Timeout) if Instant::now() < deadline && !self.rx_buf.is_empty() => {
                    // Silence ended a frame of unknown length.
                    match self.outstanding.judge_silent(slave, pdu, &self.rx_buf) {
                        Verdict::Answer(n) => break Ok(n),
                        Verdict::Late { index, len } => self.late(source, index, len),
                        Verdict::Invalid(e) => break Err(Failure::Invalid(e)),
                        Verdict::Wait(_) => {}
                    }
                }
                Ok(Wait::Timeout) if Instant::now() < deadline => {}
                Ok(Wait::Timeout) => break Err(Failure::Timeout(self.rx_buf.len())),
                Err(e) => break Err(Failure::Io(e)),
            }
            if self.rx_buf.len() >= self.rx_buf.capacity() {
                break Err(Failure::Invalid(FrameError::TooLong));
            }
        };

        match result {
            Ok(n) => {
                self.outstanding.settle(slave);
                let answer = PduBuf::new(rtu::pdu_of(&self.rx_buf[..n])).expect("frame ≤ 256");
                let exception = crate::modbus::pdu::is_exception(&answer);
                self.frames.push(
                    source,
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
                        .push(source, Direction::FromUps, &self.rx_buf[n..], Note::Stale);
                }
                self.quiet_until = last_byte + self.gap();
                Ok(answer)
            }
            Err(Failure::Invalid(e)) => {
                bump(&self.status.bad_answers, 1);
                self.outstanding.add(slave, pdu, sent);
                // Let the rest of the bad frame pass so it does not spoil the next one.
                let gap = self.gap();
                while let Ok(Wait::Data(_)) = self.port.read_until(
                    &mut self.rx_buf,
                    (last_byte + gap).min(deadline),
                    &self.shutdown,
                ) {
                    last_byte = self.port.data_at();
                    if self.rx_buf.len() >= self.rx_buf.capacity() {
                        self.rx_buf.clear();
                    }
                }
                self.frames
                    .push(source, Direction::FromUps, &self.rx_buf, Note::Invalid(e));
                log::debug!("ups answer refused: {e}: {:02X?}", self.rx_buf);
                self.quiet_until = last_byte + gap;
                Err(Failure::Invalid(e))
            }
            Err(Failure::Timeout(n)) => {
                bump(&self.status.timeouts, 1);
                self.outstanding.add(slave, pdu, sent);
                self.frames
                    .push(source, Direction::FromUps, &self.rx_buf, Note::Timeout);
                if n > 0 {
                    log::debug!("ups answer truncated: {:02X?}", self.rx_buf);
                }
                // The request itself may be the last frame on the line.
                let request_end = sent + rtu::wire_time(baud, self.tx_buf.len());
                self.quiet_until = last_byte.max(request_end) + self.gap();
                Err(Failure::Timeout(n))
            }
            Err(other) => Err(other),
        }
    }

    /// The first `len` bytes received are the late answer to outstanding request `index`:
    /// logged and thrown away.
    fn late(&mut self, source: Source, index: usize, len: usize) {
        bump(&self.status.late_answers, 1);
        self.frames
            .push(source, Direction::FromUps, &self.rx_buf[..len], Note::Late);
        log::debug!("late answer discarded: {:02X?}", &self.rx_buf[..len]);
        self.outstanding.retire(index);
        self.rx_buf.drain(..len);
    }
}

/// The words of a read answer of `qty` registers; `None` for an exception or a short one.
fn words_of(answer: &[u8], qty: u16) -> Option<Vec<u16>> {
    let n = usize::from(qty);
    if answer.len() != 2 + 2 * n || usize::from(answer[1]) != 2 * n || answer[0] & 0x80 != 0 {
        return None;
    }
    Some(
        answer[2..]
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect(),
    )
}
