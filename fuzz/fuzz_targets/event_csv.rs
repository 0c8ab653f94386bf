//! The event log's CSV download: `Store::write_events_csv`, which `/log.csv` calls
//! (src/web/pages/event_log.rs), over events whose text came from outside (a user name
//! typed at a login, a reason, a message), read back with an independent CSV reader.
//! Input: the texts of up to 4 events, separated by a 0 byte.
//! Property: the CSV has one record of 4 fields per event, and each message reads back as
//! written (with the leading apostrophe that keeps a spreadsheet from taking it for a
//! formula).
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::event::{Event, Stamped};
use modbus_card::store::Store;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

fn store() -> &'static Mutex<(tempfile::TempDir, Store)> {
    static S: OnceLock<Mutex<(tempfile::TempDir, Store)>> = OnceLock::new();
    S.get_or_init(|| {
        // On tmpfs when there is one: every event is an fsync.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        Mutex::new((dir, store))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts: Vec<&str> = text.split('\0').take(4).collect();
    let events: Vec<Stamped> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Stamped {
            at: UNIX_EPOCH + Duration::from_millis(1_795_507_200_000 + i as u64),
            event: match i % 3 {
                0 => Event::Network {
                    message: t.to_string(),
                },
                1 => Event::LoginFailed {
                    user: t.to_string(),
                    peer: "127.0.0.1".into(),
                    channel: "web",
                },
                _ => Event::TcpClosed {
                    session: 1,
                    reason: t.to_string(),
                },
            },
        })
        .collect();
    let mut guard = store().lock().unwrap();
    let store = &mut guard.1;
    store.clear_events().expect("clear");
    store.add_events(&events).expect("add");
    let mut csv_bytes = Vec::new();
    store.write_events_csv(&mut csv_bytes).expect("csv");

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&csv_bytes[..]);
    let headers = reader.headers().expect("header").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        ["id", "time_utc", "kind", "message"]
    );
    let records: Vec<csv::StringRecord> =
        reader.records().map(|r| r.expect("a CSV record")).collect();
    assert_eq!(
        records.len(),
        events.len(),
        "{:?}",
        String::from_utf8_lossy(&csv_bytes)
    );
    for (r, e) in records.iter().zip(&events) {
        assert_eq!(r.len(), 4);
        assert_eq!(&r[2], e.event.kind());
        let message = e.event.message();
        let expected = if message.starts_with(['=', '+', '-', '@']) {
            format!("'{message}")
        } else {
            message
        };
        assert_eq!(&r[3], expected);
    }
});
