//! Logging that never makes a real-time thread wait.
//!
//! env_logger filters and formats as usual, but writes each formatted line into a bounded
//! queue without waiting; a thread of its own writes the lines to standard error (a file
//! on flash, under the init script). A serial thread that logs never waits on the disk;
//! if the queue is full the line is dropped and counted, and the count is reported.

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
    let writer = QueueWriter {
        tx,
        counts: counts.clone(),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .target(env_logger::Target::Pipe(Box::new(writer)))
        .init();
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

struct QueueWriter {
    tx: Sender<Vec<u8>>,
    counts: Arc<Counts>,
}

impl Write for QueueWriter {
    /// env_logger hands over one whole formatted line per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tx.try_send(buf.to_vec()) {
            Ok(()) => {
                self.counts.queued.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
