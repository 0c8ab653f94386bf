//! Logging that never makes a real-time thread wait.
//!
//! env_logger's filter (RUST_LOG) decides what is logged; each line is then formatted on
//! the logging thread's own stack, as env_logger's default format does, and put in a
//! bounded queue without waiting; a thread of its own writes the lines to standard error
//! (a file on flash, under the init script). A serial thread that logs never waits on the
//! disk, nor on another thread: env_logger's own output goes through one lock for all
//! threads, which a flood of debug lines from the TCP sessions held for seconds against
//! the RS485 thread (ROBUSTNESS.md, the accelerated soak). If the queue is full the line
//! is dropped and counted, and the count is reported.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines waiting to be written.
const QUEUE: usize = 512;

#[derive(Default)]
struct Counts {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
}

/// Kept by `main` to flush the queue before the process exits.
pub struct Logging {
    counts: Arc<Counts>,
}

/// Installs the logger (filter from RUST_LOG, default `info`) and starts its thread.
pub fn init() -> Logging {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let counts = Arc::new(Counts::default());
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = filter.filter();
    let logger = Queued {
        filter,
        tx,
        counts: counts.clone(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
    let thread_counts = counts.clone();
    let _ = std::thread::Builder::new()
        .name("log".into())
        .stack_size(64 * 1024)
        .spawn(move || write_lines(rx, &thread_counts));
    Logging { counts }
}

impl Logging {
    /// Waits (up to a second) until every queued line is written.
    pub fn flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.counts.written.load(Relaxed) < self.counts.queued.load(Relaxed)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn write_lines(rx: Receiver<Vec<u8>>, counts: &Counts) {
    let mut reported = 0;
    for line in rx {
        let mut err = io::stderr().lock();
        let dropped = counts.dropped.load(Relaxed);
        if dropped > reported {
            let _ = writeln!(
                err,
                "({} log lines dropped: the log could not keep up)",
                dropped - reported
            );
            reported = dropped;
        }
        let _ = err.write_all(&line);
        counts.written.fetch_add(1, Relaxed);
    }
}

struct Queued {
    filter: env_logger::Logger,
    tx: Sender<Vec<u8>>,
    counts: Arc<Counts>,
}

impl log::Log for Queued {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let now = crate::clock::unix_ms(std::time::SystemTime::now());
        match self.tx.try_send(line(now, record).into_bytes()) {
            Ok(()) => {
                self.counts.queued.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    fn flush(&self) {}
}

/// `[2026-12-07T23:51:43.030Z INFO  modbus_card::link] text`: env_logger's default line,
/// which the tests and the field's scripts read.
fn line(unix_ms: i64, record: &log::Record<'_>) -> String {
    format!(
        "[{} {:<5} {}] {}\n",
        crate::calendar::iso8601(unix_ms),
        record.level(),
        record.target(),
        record.args()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_env_loggers_default() {
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("modbus_card::web")
            .args(format_args!("https listening on 127.0.0.1:443"))
            .build();
        assert_eq!(
            line(1_796_687_503_030, &record),
            "[2026-12-07T23:51:43.030Z INFO  modbus_card::web] https listening on 127.0.0.1:443\n"
        );
    }
}
