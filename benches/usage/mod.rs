//! What the benchmarks read of a running service: its CPU time and its memory, from /proc.

use std::time::Duration;

/// CPU time `pid` has used so far (user + system) and its resident memory in KiB.
pub fn of(pid: u32) -> (Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes an integer name and returns an integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let rss = vm(pid, "VmRSS:").expect("the process's VmRSS");
    (Duration::from_millis(ticks * 1000 / hz), rss)
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`); None once the process is gone.
pub fn vm(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}
