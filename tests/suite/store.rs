//! The store on real files: damaged and too-new databases give errors that say what to do,
//! the store thread writes everything it is sent, and a `kill -9` in the middle of writing
//! loses no event whose commit had returned.

use modbus_card::event::{Event, Events, Stamped};
use modbus_card::store::{self, Store, StoreError, FILE_NAME};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};
use tempfile::TempDir;

/// Bytes that are not a database, the same on every run.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn join_within(handle: JoinHandle<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "store thread still running after {limit:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    handle.join().expect("store thread panicked");
}

fn assert_corrupt_message(err: &StoreError, path: &Path) {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("damaged"), "{text}");
    assert!(text.contains("move it away"), "{text}");
    assert!(text.contains("factory settings"), "{text}");
}

#[test]
fn a_file_of_garbage_is_reported_as_damaged() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(FILE_NAME);
    let bytes = garbage(8192, 0x9E37_79B9_7F4A_7C15);
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::Corrupt { path: p, .. } => assert_eq!(p, &path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_corrupt_message(&err, &path);
    // The file is left as it was, for whoever looks into it.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_database_with_damaged_pages_is_reported_as_damaged() {
    let dir = TempDir::new().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let batch: Vec<_> = (0..3000)
            .map(|_| Stamped {
                at: SystemTime::now(),
                event: Event::UpsLost,
            })
            .collect();
        store.add_events(&batch).unwrap();
    }
    // Closing the last connection moved everything into the main file.
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    let middle = bytes.len() / 2 / 4096 * 4096;
    bytes[middle..middle + 2 * 4096].copy_from_slice(&garbage(2 * 4096, 42));
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_corrupt_message(&err, &path);
}

#[test]
fn a_database_from_a_newer_firmware_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = Store::open(dir.path()).unwrap().path().to_path_buf();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, 99);
            assert_eq!(*supported, store::MIGRATIONS.len() as i64);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("newer firmware"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    let version: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99, "left untouched");
}

#[test]
fn a_folder_that_cannot_be_created_is_named_in_the_error() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let wanted = file.join("data");
    let err = Store::open(&wanted).unwrap_err();
    assert!(
        matches!(err, StoreError::Folder { .. }),
        "expected Folder, got {err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&wanted.display().to_string()), "{text}");
    assert!(text.to_lowercase().contains("not a directory"), "{text}");
}

#[test]
fn a_folder_that_cannot_be_written_is_named_in_the_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_ok() {
        eprintln!("skipped: this user (root) may write to a read-only folder");
        return;
    }
    let err = Store::open(&ro).unwrap_err();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        matches!(err, StoreError::Folder { .. }),
        "expected Folder, got {err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&ro.display().to_string()), "{text}");
    assert!(text.to_lowercase().contains("permission denied"), "{text}");
}

#[test]
fn the_store_thread_writes_everything_sent_then_ends() {
    const THREADS: u8 = 4;
    const EACH: usize = 600;
    let dir = TempDir::new().unwrap();
    // Bounded like the service's queue, so the senders outrun the writer and it drains
    // full batches.
    let (tx, rx) = crossbeam_channel::bounded(modbus_card::event::QUEUE);
    let writer = store::spawn_writer(
        Store::open(dir.path()).unwrap(),
        rx,
        modbus_card::health::Heartbeat::unwatched("store"),
    );
    let senders: Vec<_> = (0..THREADS)
        .map(|session| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    let event = Event::TcpClosed {
                        session,
                        reason: i.to_string(),
                    };
                    tx.send(Stamped {
                        at: SystemTime::now(),
                        event,
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        s.join().unwrap();
    }
    join_within(writer, Duration::from_secs(30));

    let rows = Store::open(dir.path()).unwrap().events(usize::MAX).unwrap();
    assert_eq!(rows.len(), THREADS as usize * EACH);
    for session in 0..THREADS {
        // Oldest first, each sender's events in the order it sent them.
        let mine: Vec<_> = rows
            .iter()
            .rev()
            .filter(|r| {
                r.message
                    .starts_with(&format!("TCP session {session} closed"))
            })
            .map(|r| r.message.clone())
            .collect();
        let expected: Vec<_> = (0..EACH)
            .map(|i| format!("TCP session {session} closed ({i})"))
            .collect();
        assert_eq!(mine, expected);
    }
}

#[test]
fn the_store_thread_ends_with_the_service_events_channel() {
    let dir = TempDir::new().unwrap();
    let (events, rx) = Events::channel();
    let writer = store::spawn_writer(
        Store::open(dir.path()).unwrap(),
        rx,
        modbus_card::health::Heartbeat::unwatched("store"),
    );
    events.emit(Event::ColdBoot);
    events.emit(Event::Stopped);
    drop(events);
    join_within(writer, Duration::from_secs(10));
    let kinds: Vec<_> = Store::open(dir.path())
        .unwrap()
        .events(10)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["stopped", "cold_boot"]);
}

/// Set in the child of [`a_kill_9_loses_no_committed_event`]: the folder to write in.
const CHILD_DIR: &str = "MODBUS_CARD_STORE_KILL_CHILD_DIR";
/// Its name as the test binary knows it (module path without the crate's name).
const KILL_TEST: &str = "store::a_kill_9_loses_no_committed_event";
const ROUNDS: usize = 3;
const IDS_PER_ROUND: usize = 200;
const ROUND_TIME: Duration = Duration::from_secs(5);

/// The child: one event per transaction, and the id of each printed only once its commit
/// has returned. Bounded in case the parent never kills it (a broken pipe also ends it).
fn child_writer(dir: &Path) {
    let mut store = Store::open(dir).unwrap();
    let start = Instant::now();
    for i in 0..100_000u32 {
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
        let event = Event::TcpClosed {
            session: 1,
            reason: format!("n{i}"),
        };
        store
            .add_events(&[Stamped {
                at: SystemTime::now(),
                event,
            }])
            .unwrap();
        let id = store.events(1).unwrap()[0].id;
        println!("id {id}");
    }
}

#[test]
fn a_kill_9_loses_no_committed_event() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child_writer(Path::new(&dir));
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut printed = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([KILL_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader = thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match out.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut short by the kill was not printed in full: not counted.
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(_) => {
                        if let Some(id) = line.trim().strip_prefix("id ") {
                            tx.send(id.parse::<i64>().unwrap()).unwrap();
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + ROUND_TIME;
        let mut seen = 0;
        while seen < IDS_PER_ROUND {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(id) => {
                    printed.insert(id);
                    seen += 1;
                }
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Ids still in the pipe at the kill were printed after their commit too.
        printed.extend(rx.try_iter());
        assert!(
            seen >= 10,
            "round {round}: the child printed only {seen} ids in {ROUND_TIME:?}"
        );

        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let check: String = Connection::open(store.path())
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let stored: BTreeSet<i64> = store
            .events(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let missing: Vec<_> = printed.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "round {round}: committed ids lost: {missing:?}"
        );
    }
}

#[test]
fn the_event_log_pages_filters_clears_with_a_trace_and_exports_csv() {
    let dir = TempDir::new().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_478_400_000);
    let stamped = |event| Stamped { at, event };
    let mut events = vec![];
    for i in 0..25u8 {
        events.push(stamped(if i % 5 == 0 {
            Event::UpsLost
        } else {
            Event::TcpClosed {
                session: 1,
                reason: format!("closed, \"by\" client {i}"),
            }
        }));
    }
    store.add_events(&events).unwrap();
    // Newest first, 10 a page, the next page from the last id seen.
    let first = store.events_page(None, 10, &[]).unwrap();
    assert_eq!(first.len(), 10);
    assert!(first[0].message.contains("client 24"));
    let second = store.events_page(Some(first[9].id), 10, &[]).unwrap();
    assert_eq!(second[0].id, first[9].id - 1);
    let lost = store.events_page(None, 100, &["ups_lost"]).unwrap();
    assert_eq!(lost.len(), 5);
    let both = store
        .events_page(None, 100, &["ups_lost", "tcp_closed"])
        .unwrap();
    assert_eq!(both.len(), 25);

    // CSV: a header, a row each, quotes doubled, time in UTC.
    let mut csv = vec![];
    store.write_events_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "id,time_utc,kind,message");
    assert_eq!(lines.len(), 26);
    assert!(lines[1].contains(",2026-11-24T00:00:00.000Z,ups_lost,UPS communication lost"));
    assert!(
        lines[2].ends_with(",\"TCP session 1 closed (closed, \"\"by\"\" client 1)\""),
        "{}",
        lines[2]
    );

    // Cleared: only the event that says who cleared it is left.
    store
        .clear_events_with(&stamped(Event::LogCleared {
            by: "admin, web 127.0.0.1".into(),
        }))
        .unwrap();
    let left = store.events(100).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message, "Event log cleared (admin, web 127.0.0.1)");
    assert!(left[0].id > first[0].id, "ids go on");
}
