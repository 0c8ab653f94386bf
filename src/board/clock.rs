//! The card's clock: the system's time plus an offset that NTP and the user set.
//!
//! It stamps the event log (and the pages). Keeping it as an offset means the service
//! never needs to set the system clock to follow NTP or the user, so tests and the demo
//! never touch the machine they run on; on the board, `system_clock` makes it step the
//! system clock instead (the offset then stays zero).
//!
//! The NTP thread polls `ntp_server` (SNTP, [`super::sntp`]) and follows it with care:
//! - a reply that fails any check of RFC 4330 is logged and ignored;
//! - a time before this firmware was written or decades after it is never followed;
//! - once the clock has been set by NTP, a jump of more than [`PANIC`] needs
//!   [`CONFIRMATIONS`] replies in a row that agree, so one lying answer cannot move it;
//! - steps of a second or more are logged as "Time changed by server (NTP)", smaller
//!   corrections are applied silently.

use super::sntp::{self, Refusal};
use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::poll::wait_any;
use crate::poll::Update;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

const NANOS: i64 = 1_000_000_000;
/// No time before this is right: 2026-01-01, before this firmware existed.
pub const FLOOR_UNIX_S: i64 = 1_767_225_600;
/// Nor more than this after it.
const SPAN_S: i64 = 40 * 365 * 86_400;
/// Corrections up to this are silent.
const QUIET_NS: i64 = NANOS;
/// A bigger jump of a clock already set by NTP needs confirmation (ntpd's panic threshold).
pub const PANIC: Duration = Duration::from_secs(1000);
/// Replies in a row, agreeing within [`AGREE_NS`], that confirm a big jump.
pub const CONFIRMATIONS: u32 = 3;
const AGREE_NS: i64 = 5 * NANOS;
/// How long to wait for a reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(3);

pub use crate::clock::{from_unix_ns, unix_ns, CardClock};

/// A time as an operator reads it: `2026-11-24 08:00:00 UTC`.
pub fn utc(unix_ns: i64) -> String {
    crate::calendar::utc(unix_ns.div_euclid(1_000_000))
}

/// What to do with a good reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply without an event: a correction under a second.
    Adjust(i64),
    /// Apply and log the step.
    Step(i64),
    /// A big jump not yet confirmed: this many replies of [`CONFIRMATIONS`] so far.
    Hold(u32),
    /// Never followed: the text says why.
    Refuse(String),
}

/// The rules of the module doc, as a small state machine.
#[derive(Debug, Default)]
pub struct Policy {
    /// The clock has been set by NTP in this run.
    synced: bool,
    /// A big jump waiting for confirmation: its offset and how many replies agreed.
    pending: Option<(i64, u32)>,
}

impl Policy {
    pub fn decide(&mut self, offset_ns: i64, card_now_ns: i64) -> Decision {
        let server = card_now_ns.saturating_add(offset_ns);
        let floor = FLOOR_UNIX_S * NANOS;
        if server < floor || server > floor + SPAN_S * NANOS {
            self.pending = None;
            return Decision::Refuse(format!(
                "the server says it is {}, which cannot be right",
                utc(server)
            ));
        }
        if self.synced && offset_ns.unsigned_abs() > PANIC.as_nanos() as u64 {
            let count = match self.pending {
                Some((o, n)) if (o - offset_ns).abs() <= AGREE_NS => n + 1,
                _ => 1,
            };
            if count < CONFIRMATIONS {
                self.pending = Some((offset_ns, count));
                return Decision::Hold(count);
            }
        }
        self.pending = None;
        self.synced = true;
        if offset_ns.abs() < QUIET_NS {
            Decision::Adjust(offset_ns)
        } else {
            Decision::Step(offset_ns)
        }
    }
}

/// What the pages show about NTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NtpStatus {
    pub server: String,
    /// When the clock last followed the server (card time).
    pub last_sync: Option<SystemTime>,
    /// The last problem, cleared by the next good reply.
    pub last_error: Option<String>,
}

/// The card's time keeping: its clock, and NTP's status. It holds no event sender, so
/// a page or test that keeps a clone never holds up the store thread's end.
#[derive(Clone)]
pub struct Clock {
    pub card: Arc<CardClock>,
    system_clock: bool,
    status: Arc<Mutex<NtpStatus>>,
}

impl Clock {
    /// The clock that stamps `events`. `system_clock`: set the system's clock too (on the
    /// board), not only the card's.
    pub fn new(events: &Events, system_clock: bool) -> Clock {
        Clock {
            card: events.clock().clone(),
            system_clock,
            status: Arc::default(),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.card.now()
    }

    pub fn status(&self) -> NtpStatus {
        self.status.lock().clone()
    }

    /// Sets the time by hand (the Date and time page, the console); logged with the step.
    pub fn set_by_user(&self, to: SystemTime, by: &str, events: &Events) -> Result<(), String> {
        let to_ns = unix_ns(to);
        let floor = FLOOR_UNIX_S * NANOS;
        if to_ns < floor || to_ns > floor + SPAN_S * NANOS {
            return Err(format!(
                "{} is not a time this card can have: set a date after {}",
                utc(to_ns),
                &utc(floor)[..10]
            ));
        }
        let step = to_ns - self.card.now_ns();
        self.apply(step)?;
        events.emit(Event::TimeChangedByUser {
            step_ms: step / 1_000_000,
            by: by.to_owned(),
        });
        Ok(())
    }

    /// Moves the card's clock by `step_ns` (and the system's, where configured).
    fn apply(&self, step_ns: i64) -> Result<(), String> {
        if self.system_clock {
            let target = unix_ns(SystemTime::now()).saturating_add(step_ns);
            set_system_clock(target).map_err(|e| format!("cannot set the system clock: {e}"))?;
        } else {
            self.card.shift(step_ns);
        }
        self.card.mark_set();
        Ok(())
    }
}

/// Sets CLOCK_REALTIME to `unix_ns`. On 32-bit Arm the Rust bindings' `time_t` has 32 bits
/// (README, "Building for the board"), so the clock is set with the kernel's 64-bit call
/// (Linux 5.1 and later), right after 2038-01-19; an older kernel takes the classic call
/// for dates it can hold and a clear refusal for the others.
// The conversions to time_t and c_long do nothing on 64-bit targets, and narrow on 32-bit.
#[allow(clippy::useless_conversion)]
pub fn set_system_clock(unix_ns: i64) -> Result<(), String> {
    let (secs, nanos) = (unix_ns.div_euclid(NANOS), unix_ns.rem_euclid(NANOS));
    #[cfg(all(target_os = "linux", any(target_arch = "arm", target_arch = "x86")))]
    {
        /// The kernel's `struct __kernel_timespec`: 64-bit fields on every architecture.
        #[repr(C)]
        struct KernelTimespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        /// `clock_settime64` (Linux 5.1) on 32-bit Arm and x86; MIPS, say, offsets it.
        const SYS_CLOCK_SETTIME64: libc::c_long = 404;
        let ts = KernelTimespec {
            tv_sec: secs,
            tv_nsec: nanos,
        };
        // SAFETY: the syscall reads one __kernel_timespec from a valid pointer.
        let rc = unsafe {
            libc::syscall(
                SYS_CLOCK_SETTIME64,
                libc::CLOCK_REALTIME,
                &ts as *const KernelTimespec,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::ENOSYS {
            return Err(e.to_string());
        }
    }
    let secs: libc::time_t = secs.try_into().map_err(|_| {
        format!(
            "{} is past what this kernel's clock can hold (64-bit time needs Linux 5.1)",
            utc(unix_ns)
        )
    })?;
    let nanos: libc::c_long = nanos.try_into().map_err(|_| "bad nanoseconds".to_owned())?;
    let ts = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(|e| e.to_string())
}

/// How the NTP thread polls.
#[derive(Debug, Clone)]
pub struct NtpConfig {
    /// `host` or `host:port`; empty: no NTP until one is set.
    pub server: String,
    /// Between good replies (RFC 4330 asks for no less than 15 s; 1024 s is usual).
    pub poll: Duration,
    /// After a failure, or while a jump waits for confirmation.
    pub retry: Duration,
}

impl NtpConfig {
    pub fn new(server: &str) -> NtpConfig {
        NtpConfig {
            server: server.to_owned(),
            poll: Duration::from_secs(1024),
            retry: Duration::from_secs(64),
        }
    }
}

/// The running NTP client: a new server takes effect at once.
#[derive(Clone)]
pub struct Ntp {
    server: Arc<Update<String>>,
}

impl Ntp {
    /// Polls `server` from now on (empty: stops polling).
    pub fn set_server(&self, server: String) {
        self.server.put(server);
    }
}

/// Starts the NTP thread; with a server, the first query goes out at once. `heartbeat`
/// is idle between queries.
pub fn spawn_ntp(
    mut config: NtpConfig,
    clock: Clock,
    events: Events,
    shutdown: Shutdown,
    heartbeat: Heartbeat,
) -> std::io::Result<(Ntp, JoinHandle<()>)> {
    let update = Arc::new(Update::new()?);
    let ntp = Ntp {
        server: update.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("ntp".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut policy = Policy::default();
            loop {
                heartbeat.busy();
                clock.status.lock().server = config.server.clone();
                let wait = if config.server.is_empty() {
                    None
                } else {
                    Some(
                        match poll_once(
                            &config,
                            &clock,
                            &events,
                            &mut policy,
                            &heartbeat,
                            &shutdown,
                        ) {
                            Ok(true) => config.poll,
                            Ok(false) => config.retry,
                            Err(Failure::Stopping) => return,
                            Err(Failure::Error(e)) => {
                                log::warn!("ntp {}: {e}", config.server);
                                clock.status.lock().last_error = Some(e);
                                config.retry
                            }
                        },
                    )
                };
                heartbeat.idle();
                match wait_any([Some(update.fd())], &shutdown, wait) {
                    Ok((_, true)) => return,
                    Ok(([true], _)) => {
                        if let Some(server) = update.take() {
                            log::info!("ntp: server now '{server}'");
                            config.server = server;
                            policy = Policy::default();
                            *clock.status.lock() = NtpStatus::default();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::error!("ntp: {e}");
                        return;
                    }
                }
            }
        })?;
    Ok((ntp, thread))
}

/// Why a query gave no time: the service stops (the thread ends quietly), or an error the
/// Date and time page shows.
enum Failure {
    Stopping,
    Error(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Error(e)
    }
}

/// One query and what follows from it. Ok(false): poll again soon (a jump on hold, a
/// refused time).
fn poll_once(
    config: &NtpConfig,
    clock: &Clock,
    events: &Events,
    policy: &mut Policy,
    heartbeat: &Heartbeat,
    shutdown: &Shutdown,
) -> Result<bool, Failure> {
    heartbeat.idle(); // name resolution may wait on a slow DNS server
    let server = resolve(&config.server)?;
    heartbeat.busy();
    let offset = query(server, &clock.card, shutdown)?;
    match policy.decide(offset, clock.card.now_ns()) {
        Decision::Adjust(step) => {
            clock.apply(step)?;
            log::debug!("ntp: clock corrected by {} ms", step / 1_000_000);
        }
        Decision::Step(step) => {
            clock.apply(step)?;
            events.emit(Event::TimeChangedByServer {
                step_ms: step / 1_000_000,
            });
        }
        Decision::Hold(n) => {
            let e = format!(
                "the server's time is {} s from the card's: not followed until {CONFIRMATIONS} replies in a row agree ({n} so far)",
                offset / NANOS
            );
            log::warn!("ntp {}: {e}", config.server);
            clock.status.lock().last_error = Some(e);
            return Ok(false);
        }
        Decision::Refuse(e) => return Err(Failure::Error(e)),
    }
    let mut status = clock.status.lock();
    status.last_sync = Some(clock.card.now());
    status.last_error = None;
    Ok(true)
}

fn resolve(server: &str) -> Result<SocketAddr, String> {
    let with_port = if server.contains(':') {
        server.to_owned()
    } else {
        format!("{server}:{}", sntp::PORT)
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{server} has no IPv4 address"))
}

/// Sends one request and returns the server's offset from the card's clock, in ns.
fn query(server: SocketAddr, card: &CardClock, shutdown: &Shutdown) -> Result<i64, Failure> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
    // Connected: the kernel drops datagrams from any other address.
    socket
        .connect(server)
        .map_err(|e| format!("cannot reach {server}: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let t1 = card.now_ns();
    let started = Instant::now();
    let sent = sntp::to_ntp(t1);
    socket
        .send(&sntp::request(sent))
        .map_err(|e| format!("cannot send to {server}: {e}"))?;
    let mut buf = [0u8; 512];
    let mut last: Option<Refusal> = None;
    loop {
        let left = REPLY_WAIT.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Failure::Error(match last {
                Some(r) => format!("no usable reply from {server}: {r}"),
                None => format!("no reply from {server} in {} s", REPLY_WAIT.as_secs()),
            }));
        }
        match crate::poll::wait_readable(socket.as_fd(), shutdown, Some(left)) {
            Ok(crate::poll::Ready::Readable) => {}
            Ok(crate::poll::Ready::Timeout) => continue,
            Ok(crate::poll::Ready::Shutdown) => return Err(Failure::Stopping),
            Err(e) => return Err(e.to_string().into()),
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("{server}: {e}").into()),
        };
        // Our clock at receipt, measured on the monotonic clock so nothing can step it.
        let t4 = t1 + started.elapsed().as_nanos() as i64;
        match sntp::parse_reply(&buf[..n], sent, t1, t4) {
            Ok(sample) => return Ok(sample.offset_ns),
            // A stray or forged datagram: keep waiting for the real reply.
            Err(Refusal::NotOurs) => last = Some(Refusal::NotOurs),
            Err(r) => return Err(format!("reply refused: {r}").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const NOW: i64 = 1_795_507_200 * NANOS; // 2026-11-24 08:00:00 UTC
    const YEAR: i64 = 365 * 86_400 * NANOS;

    #[test]
    fn utc_formats_dates() {
        assert_eq!(utc(NOW), "2026-11-24 08:00:00 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 * NANOS + 1), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(-NANOS), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn the_first_sane_answer_is_followed_even_from_1970() {
        let mut p = Policy::default();
        // A board without a battery clock starts in 1970.
        assert_eq!(p.decide(NOW, 0), Decision::Step(NOW));
        assert_eq!(p.decide(300_000_000, NOW), Decision::Adjust(300_000_000));
        assert_eq!(p.decide(-2 * NANOS, NOW), Decision::Step(-2 * NANOS));
    }

    #[test]
    fn times_outside_the_firmware_s_life_are_refused() {
        let mut p = Policy::default();
        let Decision::Refuse(why) = p.decide(-30 * YEAR, NOW) else {
            panic!("followed a server in 1996")
        };
        assert!(why.contains("1996"), "{why}");
        assert!(matches!(p.decide(60 * YEAR, NOW), Decision::Refuse(_)));
        assert!(matches!(p.decide(-NOW, NOW), Decision::Refuse(_)));
    }

    #[test]
    fn a_big_jump_of_a_synced_clock_needs_replies_that_agree() {
        let mut p = Policy::default();
        assert_eq!(p.decide(0, NOW), Decision::Adjust(0));
        // One liar, then the truth: never followed.
        assert_eq!(p.decide(10 * YEAR, NOW), Decision::Hold(1));
        assert_eq!(p.decide(10_000_000, NOW), Decision::Adjust(10_000_000));
        assert_eq!(p.decide(10 * YEAR, NOW), Decision::Hold(1));
        // Replies that disagree start the count again.
        assert_eq!(p.decide(2 * YEAR, NOW), Decision::Hold(1));
        assert_eq!(p.decide(2 * YEAR + NANOS, NOW), Decision::Hold(2));
        assert_eq!(
            p.decide(2 * YEAR - NANOS, NOW),
            Decision::Step(2 * YEAR - NANOS)
        );
        // Jumps under the threshold are followed at once.
        assert_eq!(p.decide(900 * NANOS, NOW), Decision::Step(900 * NANOS));
    }

    #[test]
    fn the_user_sets_the_card_clock_and_the_step_is_logged() {
        let (events, rx) = Events::channel();
        let clock = Clock::new(&events, false);
        let target = from_unix_ns(NOW + 10 * YEAR);
        clock.set_by_user(target, "admin", &events).unwrap();
        let e = rx.try_recv().unwrap();
        let Event::TimeChangedByUser { step_ms, ref by } = e.event else {
            panic!("{e:?}")
        };
        assert_eq!(by, "admin");
        let expected_ms = (NOW + 10 * YEAR - unix_ns(SystemTime::now())) / 1_000_000;
        assert!(
            (step_ms - expected_ms).abs() < 5_000,
            "{step_ms} vs {expected_ms}"
        );
        assert!(e
            .event
            .message()
            .starts_with("Time changed by user (admin): +"));
        let diff = unix_ns(clock.now()) - (NOW + 10 * YEAR);
        assert!(diff.abs() < 5 * NANOS, "{diff}");
        // The system clock was not touched.
        assert!((unix_ns(SystemTime::now()) - unix_ns(clock.now())).abs() > YEAR);
        let err = clock.set_by_user(UNIX_EPOCH, "admin", &events).unwrap_err();
        assert!(err.contains("1970-01-01"), "{err}");
    }
}
