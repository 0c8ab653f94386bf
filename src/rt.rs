//! Real-time priority, exact sleeps and locked memory, where the process may have them.
//!
//! On the card the service runs as root and the serial threads get SCHED_FIFO so a busy web
//! page never delays a Modbus answer. Tests and the demo run unprivileged: one warning
//! line, then normal priority.

use nix::sys::time::TimeSpec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static WARNED: AtomicBool = AtomicBool::new(false);

/// Priority of the serial threads: above ordinary work, below the kernel's own threads.
const PRIORITY: libc::c_int = 40;

/// Gives the calling thread SCHED_FIFO, or warns once that it cannot.
pub fn make_realtime(thread: &str) {
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        log::info!("{thread} thread runs with real-time priority {PRIORITY}");
    } else if !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "no real-time priority for the serial threads ({}); running at normal priority",
            std::io::Error::last_os_error()
        );
    }
    // Wake-ups on time matter more than power here: tighten timer slack from 50 µs.
    // SAFETY: prctl with an integer argument, no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Linux's value on x86 and Arm (the libc crate lacks it for glibc targets).
const MCL_ONFAULT: libc::c_int = 4;

/// Locks the process's memory so a page fault never stalls a serial thread; warns if not
/// permitted. MCL_ONFAULT locks pages as they are touched, so reserved but unused address
/// space (thread stacks, allocator arenas) does not become resident.
pub fn lock_memory() {
    // SAFETY: plain syscall with flag arguments.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | MCL_ONFAULT) };
    if rc == 0 {
        log::info!("memory locked");
    } else {
        log::warn!(
            "memory not locked ({}); running with pageable memory",
            std::io::Error::last_os_error()
        );
    }
}

/// Keeps the allocator to two arenas: each thread otherwise may get its own, and resident
/// memory then grows with the thread count on a board with little of it.
///
/// Also fixes the size above which blocks get their own mapping, returned to the system
/// when freed. glibc otherwise raises that size to the largest block freed so far, so
/// after the first login the password hash's 19 MiB would stay resident (and, with
/// memory locked, locked) for good.
pub fn limit_allocator_arenas() {
    // SAFETY: mallopt takes two integers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Sleeps until `deadline`, given as an absolute time on the monotonic clock, so nothing
/// is lost between reading the clock and starting the sleep and an interrupted sleep
/// resumes towards the same instant. Returns at once if the deadline has passed.
pub fn sleep_until(deadline: Instant) {
    use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};
    if deadline <= Instant::now() {
        return;
    }
    let Some(at) = on_clock(deadline) else {
        return std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    };
    while let Err(nix::errno::Errno::EINTR) = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &at,
    ) {}
}

/// `t` on the monotonic clock, in nanoseconds since its origin: timestamps of different
/// processes (the link's trace, a simulator's records) line up on it.
// The conversions widen on 32-bit targets and do nothing on 64-bit ones.
#[allow(clippy::useless_conversion)]
pub fn monotonic_ns(t: Instant) -> i64 {
    // i64 from either width of time_t (32 bits on 32-bit Arm).
    on_clock(t).map_or(0, |c| {
        i64::from(c.tv_sec()) * 1_000_000_000 + i64::from(c.tv_nsec())
    })
}

/// `t` as a CLOCK_MONOTONIC time. An Instant has no public timespec: it is paired with a
/// reading of the clock, the Instant first, so a future `t` is never placed before itself
/// (at most the nanoseconds between the two readings after it).
fn on_clock(t: Instant) -> Option<TimeSpec> {
    let now = Instant::now();
    let clock = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(match t.checked_duration_since(now) {
        Some(ahead) => clock + TimeSpec::from_duration(ahead),
        None => clock - TimeSpec::from_duration(now - t),
    })
}
