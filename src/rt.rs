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

/// Locks the pages of the files the program runs from (its own code and data, and its
/// libraries') as they are touched, so a serial thread never waits for the kernel to read
/// code back from flash; warns if not permitted. On fault: code never run does not become
/// resident.
///
/// Anonymous memory (the heap, the allocator's arenas, thread stacks) is left unlocked: the
/// card has no swap, so those pages never leave anyway, and locked they could never be
/// given back (`madvise` refuses locked pages), so the peak of one flood of connections
/// would stay resident for good. See [`give_back_memory`].
pub fn lock_memory() {
    let maps = match std::fs::read_to_string("/proc/self/maps") {
        Ok(maps) => maps,
        Err(e) => return log::warn!("memory not locked (/proc/self/maps: {e})"),
    };
    let mut refused = None;
    for (start, end) in maps.lines().filter_map(file_mapping) {
        // SAFETY: locks an existing mapping of this process; no memory is touched.
        let rc = unsafe {
            libc::mlock2(
                start as *const libc::c_void,
                end - start,
                libc::MLOCK_ONFAULT,
            )
        };
        if rc != 0 {
            refused.get_or_insert_with(std::io::Error::last_os_error);
        }
    }
    match refused {
        None => log::info!("memory locked"),
        Some(e) => log::warn!("memory not locked ({e}); running with pageable memory"),
    }
}

/// The address range of a line of `/proc/self/maps` ("start-end perms offset dev inode
/// path") that maps a file; None for anonymous memory (inode 0).
fn file_mapping(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let inode = fields.nth(3)?;
    if inode == "0" {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

/// Hands the allocator's free pages back to the system. glibc returns only the top of a heap
/// by itself; what a burst freed below blocks still in use stays resident until asked.
/// A walk of the free lists under each arena's lock: tens of microseconds for the card's
/// few megabytes, twice a minute (`cli::serve`).
pub fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes an integer and touches only the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
        if log::log_enabled!(log::Level::Debug) {
            // Live blocks against free space the allocator keeps: growth of the first is
            // data held, of the second fragmentation.
            let m = libc::mallinfo2();
            log::debug!(
                "allocator: {} KiB in use, {} KiB free, {} KiB mapped",
                m.uordblks / 1024,
                m.fordblks / 1024,
                (m.arena + m.hblkhd) / 1024
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_mappings_are_taken() {
        // Addresses that fit the card's 32-bit usize too.
        let code = "00400000-00923000 r-xp 00155000 fd:01 1837 /usr/bin/modbus-card";
        assert_eq!(file_mapping(code), Some((0x0040_0000, 0x0092_3000)));
        let heap = "01e4a000-021ab000 rw-p 00000000 00:00 0          [heap]";
        assert_eq!(file_mapping(heap), None);
        let arena = "b6d00000-b6dc5000 rw-p 00000000 00:00 0";
        assert_eq!(file_mapping(arena), None);
        assert_eq!(file_mapping(""), None);
    }

    /// What a flood allocates can be given back: the heap is never locked, the code is
    /// (where the process may lock memory: root here, as on the card).
    #[test]
    fn the_code_is_locked_and_the_heap_is_not() {
        lock_memory();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut locked = std::collections::HashMap::<&str, u64>::new();
        let mut name = "";
        for line in smaps.lines() {
            if file_mapping(line).is_some() || line.contains("[heap]") {
                name = if line.contains("[heap]") {
                    "heap"
                } else {
                    "file"
                };
            } else if line.split_whitespace().nth(3) == Some("0") && line.contains('-') {
                name = "anon";
            } else if let Some(kib) = line.strip_prefix("Locked:") {
                let kib: u64 = kib.trim().trim_end_matches(" kB").parse().unwrap();
                *locked.entry(name).or_default() += kib;
            }
        }
        assert_eq!(locked.get("heap").copied().unwrap_or(0), 0, "{locked:?}");
        assert_eq!(locked.get("anon").copied().unwrap_or(0), 0, "{locked:?}");
        // SAFETY: geteuid has no arguments and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert!(locked.get("file").copied().unwrap_or(0) > 0, "{locked:?}");
        }
    }
}
