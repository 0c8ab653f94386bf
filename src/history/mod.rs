//! The UPS's history: its main figures once a minute, in SQLite (tables `ups_minute` and
//! `ups_hour`, sql/003_history.sql), for Home's charts and `/history.csv`.
//!
//! **Bounded.** A row a minute is kept [`MINUTE_DAYS`] days (10 080 rows), a row an hour
//! (the means of its minutes) [`HOUR_DAYS`] days (8 784 rows): about 70 bytes a row, so
//! some 1.3 MiB in all, whatever the running time; older rows are deleted as new ones come.
//!
//! **Few flash writes.** Samples wait in memory and are written [`FLUSH_EVERY`] at a time,
//! in one transaction: 144 commits a day, 614 WAL pages of 4 KiB (2.4 MiB) a day as
//! measured by `a_day_of_samples_writes_a_bounded_number_of_pages`, plus the checkpoints'
//! copy of the pages touched into the file. The samples not yet written are still shown
//! ([`Recent`]); a clean stop writes them; a power cut loses at most the last 10 minutes.
//!
//! **Clock jumps.** Rows are keyed by the card's wall clock. A jump forward leaves a gap
//! (drawn as a gap), and rows older than the bound are deleted as usual. A jump backward
//! deletes the rows stamped later than the new time: they cannot have happened yet by the
//! clock the card now trusts (set by hand or NTP), and kept they would hide new samples.
//!
//! The clock is always passed in, so tests add a year of samples in a moment.

pub mod chart;

use crate::store::{Store, StoreError};
use crate::ups::{Mode, Reading};
use parking_lot::Mutex;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// Days a row a minute is kept.
pub const MINUTE_DAYS: i64 = 7;
/// Days a row an hour is kept.
pub const HOUR_DAYS: i64 = 366;
/// Samples written together.
pub const FLUSH_EVERY: usize = 10;

/// The figures recorded each minute; `None` where the UPS does not give one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    pub load_pct: Option<f64>,
    pub charge_pct: Option<f64>,
    pub runtime_min: Option<f64>,
    pub input_v: Option<f64>,
    pub output_v: Option<f64>,
    pub temp_c: Option<f64>,
    pub on_battery: bool,
}

/// The mean of the phases given; `None` if none is.
fn mean(v: &[Option<f64>]) -> Option<f64> {
    let given: Vec<f64> = v.iter().flatten().copied().collect();
    (!given.is_empty()).then(|| given.iter().sum::<f64>() / given.len() as f64)
}

impl Sample {
    pub fn of(r: &Reading) -> Sample {
        Sample {
            load_pct: r.load_total,
            charge_pct: r.battery_charge,
            runtime_min: r.runtime_min,
            input_v: mean(&r.input_voltage),
            output_v: mean(&r.output_voltage),
            temp_c: r.temperature,
            on_battery: r.mode == Some(Mode::OnBattery),
        }
    }

    /// The figures by column, in the order of [`COLUMNS`].
    pub fn values(&self) -> [Option<f64>; 6] {
        [
            self.load_pct,
            self.charge_pct,
            self.runtime_min,
            self.input_v,
            self.output_v,
            self.temp_c,
        ]
    }
}

/// The columns of the tables and of the CSV, with their units.
pub const COLUMNS: [&str; 6] = [
    "load_pct",
    "charge_pct",
    "runtime_min",
    "input_v",
    "output_v",
    "temp_c",
];

/// A sample and the start of its minute (unix ms).
pub type Row = (i64, Sample);

/// The samples not written yet, shared with the pages.
#[derive(Clone, Default)]
pub struct Recent(Arc<Mutex<Vec<Row>>>);

impl Recent {
    pub fn rows(&self) -> Vec<Row> {
        self.0.lock().clone()
    }
}

/// The writing side, owned by the UPS watch thread.
pub struct History {
    store: Store,
    recent: Recent,
    /// The minute of the last sample taken.
    last_minute: Option<i64>,
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

impl History {
    /// Opens the history in the card's database in `dir`.
    pub fn open(dir: &Path) -> Result<History, StoreError> {
        Ok(History {
            store: Store::open(dir)?,
            recent: Recent::default(),
            last_minute: None,
        })
    }

    /// The samples not written yet, for the pages.
    pub fn recent(&self) -> Recent {
        self.recent.clone()
    }

    /// Called often (every look of the watch thread): takes one sample a minute of the
    /// card's clock `now`, the first the UPS gives in that minute (`None`: none yet; a
    /// minute without any is a gap).
    pub fn tick(&mut self, now: SystemTime, sample: Option<Sample>) -> Result<(), StoreError> {
        let minute = unix_ms(now).div_euclid(MINUTE_MS) * MINUTE_MS;
        if self.last_minute == Some(minute) {
            return Ok(());
        }
        // A minute without a reading stays open: the first reading in it is its sample.
        let Some(s) = sample else { return Ok(()) };
        self.last_minute = Some(minute);
        self.record(now, s)
    }

    /// Records `sample` at `at` (in its minute; a second sample in the same minute
    /// replaces the first). The store's own way in, for the watch thread and for tests.
    pub fn record(&mut self, at: SystemTime, sample: Sample) -> Result<(), StoreError> {
        let t = unix_ms(at).div_euclid(MINUTE_MS) * MINUTE_MS;
        let newest = {
            let recent = self.recent.0.lock();
            recent.last().map(|r| r.0)
        };
        let stored_newest = match newest {
            Some(n) => Some(n),
            None => self.newest_stored()?,
        };
        if stored_newest.is_some_and(|n| t < n) {
            log::warn!("history: the clock went back; samples stamped after it are dropped");
            self.recent.0.lock().retain(|r| r.0 < t);
            let conn = self.store.connection();
            let e = |e| self.store.error(e);
            conn.execute("DELETE FROM ups_minute WHERE t_ms >= ?1", [t])
                .map_err(e)?;
            conn.execute(
                "DELETE FROM ups_hour WHERE t_ms >= ?1",
                [t.div_euclid(HOUR_MS) * HOUR_MS],
            )
            .map_err(e)?;
        }
        let full = {
            let mut recent = self.recent.0.lock();
            recent.retain(|r| r.0 != t);
            recent.push((t, sample));
            recent.len() >= FLUSH_EVERY
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    fn newest_stored(&self) -> Result<Option<i64>, StoreError> {
        self.store
            .connection()
            .query_row("SELECT max(t_ms) FROM ups_minute", [], |r| r.get(0))
            .map_err(|e| self.store.error(e))
    }

    /// Writes the samples waiting, brings the hours they fall in up to date and deletes
    /// the rows past the bound, in one transaction.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let rows = self.recent.rows();
        let Some(&(newest, _)) = rows.last() else {
            return Ok(());
        };
        let conn = self.store.connection();
        let e = |e| self.store.error(e);
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
                .map_err(e)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO ups_minute (t_ms, load_pct, charge_pct, \
                     runtime_min, input_v, output_v, temp_c, on_battery) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(e)?;
            for (t, s) in &rows {
                let v = s.values();
                insert
                    .execute(params![t, v[0], v[1], v[2], v[3], v[4], v[5], s.on_battery])
                    .map_err(e)?;
            }
            let first_hour = rows[0].0.div_euclid(HOUR_MS) * HOUR_MS;
            tx.execute(
                "INSERT OR REPLACE INTO ups_hour SELECT t_ms / 3600000 * 3600000, \
                 avg(load_pct), avg(charge_pct), avg(runtime_min), avg(input_v), \
                 avg(output_v), avg(temp_c), max(on_battery) FROM ups_minute \
                 WHERE t_ms >= ?1 GROUP BY t_ms / 3600000",
                [first_hour],
            )
            .map_err(e)?;
            tx.execute(
                "DELETE FROM ups_minute WHERE t_ms < ?1",
                [newest - MINUTE_DAYS * DAY_MS],
            )
            .map_err(e)?;
            tx.execute(
                "DELETE FROM ups_hour WHERE t_ms < ?1",
                [newest - HOUR_DAYS * DAY_MS],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        self.recent.0.lock().clear();
        Ok(())
    }
}

/// Which table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

/// The rows of `res` from `from_ms` on (unix ms), oldest first, with the samples not
/// written yet when reading minutes.
pub fn rows(
    conn: &Connection,
    recent: Option<&Recent>,
    res: Resolution,
    from_ms: i64,
) -> rusqlite::Result<Vec<Row>> {
    let table = match res {
        Resolution::Minute => "ups_minute",
        Resolution::Hour => "ups_hour",
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT t_ms, load_pct, charge_pct, runtime_min, input_v, output_v, temp_c, \
         on_battery FROM {table} WHERE t_ms >= ?1 ORDER BY t_ms"
    ))?;
    let mut out: Vec<Row> = stmt
        .query_map([from_ms], |r| {
            Ok((
                r.get(0)?,
                Sample {
                    load_pct: r.get(1)?,
                    charge_pct: r.get(2)?,
                    runtime_min: r.get(3)?,
                    input_v: r.get(4)?,
                    output_v: r.get(5)?,
                    temp_c: r.get(6)?,
                    on_battery: r.get::<_, i64>(7)? != 0,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if res == Resolution::Minute {
        if let Some(recent) = recent {
            let newest = out.last().map(|r| r.0);
            out.extend(
                recent
                    .rows()
                    .into_iter()
                    .filter(|r| r.0 >= from_ms && newest.is_none_or(|n| r.0 > n)),
            );
        }
    }
    Ok(out)
}

/// The rows as CSV: a header, then one line a row (time in UTC, ISO 8601; an empty field
/// where the UPS gave no figure).
pub fn write_csv(rows: &[Row], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "time_utc,{},on_battery", COLUMNS.join(","))?;
    for (t, s) in rows {
        let secs = t.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (y, m, d) = crate::calendar::civil_from_days(days);
        write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:00Z",
            of_day / 3600,
            of_day / 60 % 60
        )?;
        for v in s.values() {
            match v {
                Some(v) => write!(out, ",{v:.1}")?,
                None => write!(out, ",")?,
            }
        }
        writeln!(out, ",{}", u8::from(s.on_battery))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    fn sample(load: f64) -> Sample {
        Sample {
            load_pct: Some(load),
            charge_pct: Some(100.0),
            temp_c: None,
            ..Sample::default()
        }
    }

    const START: i64 = 1_800_000_000_000;

    #[test]
    fn samples_wait_in_memory_then_go_in_one_write_and_hours_follow() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        for i in 0..(FLUSH_EVERY as i64 - 1) {
            h.record(at(START + i * MINUTE_MS), sample(i as f64))
                .unwrap();
        }
        let conn = Store::open(dir.path()).unwrap();
        let stored = rows(conn.connection(), None, Resolution::Minute, 0).unwrap();
        assert!(
            stored.is_empty(),
            "nothing written before {FLUSH_EVERY} samples"
        );
        let seen = rows(conn.connection(), Some(&h.recent()), Resolution::Minute, 0).unwrap();
        assert_eq!(seen.len(), FLUSH_EVERY - 1, "but the pages see them");
        h.record(at(START + 9 * MINUTE_MS), sample(9.0)).unwrap();
        let stored = rows(conn.connection(), None, Resolution::Minute, 0).unwrap();
        assert_eq!(stored.len(), FLUSH_EVERY);
        let hours = rows(conn.connection(), None, Resolution::Hour, 0).unwrap();
        assert!(!hours.is_empty());
        assert_eq!(
            hours.iter().map(|r| r.0).collect::<Vec<_>>().len(),
            hours.len()
        );
    }

    #[test]
    fn a_clock_jump_back_drops_the_samples_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        for i in 0..20 {
            h.record(at(START + i * MINUTE_MS), sample(1.0)).unwrap();
        }
        h.record(at(START + 5 * MINUTE_MS), sample(2.0)).unwrap();
        h.flush().unwrap();
        let all = rows(h.store.connection(), None, Resolution::Minute, 0).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all.last().unwrap().1.load_pct, Some(2.0));
    }

    #[test]
    fn the_csv_has_a_header_and_empty_fields_for_absent_figures() {
        let mut out = Vec::new();
        write_csv(&[(0, sample(40.0))], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "time_utc,load_pct,charge_pct,runtime_min,input_v,output_v,temp_c,on_battery\n\
             1970-01-01T00:00:00Z,40.0,100.0,,,,,0\n"
        );
    }

    /// Flash writes a day: the WAL frames (4 KiB pages) a day of samples appends, with
    /// figures that change every minute as real ones do.
    #[test]
    fn a_day_of_samples_writes_a_bounded_number_of_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        let conn = h.store.connection();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        // A week first, so the deletes past the bound happen too.
        for day in 0..8i64 {
            for m in 0..1440i64 {
                let x = (day * 1440 + m) as f64;
                let s = Sample {
                    load_pct: Some(40.0 + (x / 37.0).sin() * 3.3),
                    charge_pct: Some(99.5),
                    runtime_min: None,
                    input_v: Some(229.0 + (x / 11.0).sin()),
                    output_v: Some(230.1),
                    temp_c: Some(24.0 + (x / 300.0).sin()),
                    on_battery: false,
                };
                h.record(at(START + (day * 1440 + m) * MINUTE_MS), s)
                    .unwrap();
            }
            if day == 6 {
                h.store
                    .connection()
                    .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                    .unwrap();
            }
        }
        // The frames of the 8th day alone.
        let frames: i64 = h
            .store
            .connection()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        eprintln!(
            "a day of history: {frames} WAL pages of 4 KiB ({} KiB)",
            frames * 4
        );
        assert!(frames < 1500, "{frames} pages a day");
    }
}
