//! The card's SQLite database: settings, the event log and a few facts about the previous
//! start. One [`Store`] owns one connection; the store thread ([`spawn_writer`]) is the only
//! writer of events, so real-time threads never wait on flash.
//!
//! The file must survive power loss and `kill -9` at any moment: WAL journal with
//! `synchronous=FULL` (a commit is on flash when it returns), schema changes applied by
//! versioned migrations each inside its own transaction.

mod writer;

pub use writer::{spawn_closable_writer, spawn_tapped_writer, spawn_writer, Tap, Writer, BATCH};

use crate::event::Stamped;
use crate::settings::{self, Diff, Settings};
use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The database file inside the data folder.
pub const FILE_NAME: &str = "card.db";

/// Schema changes, in order. Entry `i` takes the database from version `i` to `i + 1`
/// (`PRAGMA user_version`). Append only: a released entry is never changed.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../sql/001_init.sql"),
    include_str!("../../sql/002_accounts.sql"),
    include_str!("../../sql/003_history.sql"),
];

/// Events kept; the oldest beyond this are deleted as new ones arrive, so the log can
/// never fill the flash.
pub const EVENT_CAP: usize = 10_000;

/// How long a write waits for a reader (e.g. a web page) to let go before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Key in `meta` of the kernel boot id seen at the previous start.
const META_BOOT_ID: &str = "boot_id";

#[derive(Debug)]
pub enum StoreError {
    /// The data folder cannot be created or written.
    Folder { path: PathBuf, source: io::Error },
    /// The file is not a database, or a damaged one.
    Corrupt { path: PathBuf, detail: String },
    /// The schema version is newer than this build knows.
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A setting was refused; the text says what is allowed.
    Invalid(String),
    /// Any other database error.
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Folder { path, source } => write!(
                f,
                "cannot use the data folder {}: {source}; check that it is on a mounted, \
                 writable file system and that the service may write to it",
                path.display()
            ),
            StoreError::Corrupt { path, detail } => write!(
                f,
                "the database {} is damaged ({detail}); move it away (for example rename it \
                 to {FILE_NAME}.bad, with any {FILE_NAME}-wal and {FILE_NAME}-shm beside it) \
                 and restart: the card then starts with factory settings and an empty event log",
                path.display()
            ),
            StoreError::TooNew {
                path,
                found,
                supported,
            } => write!(
                f,
                "the database {} has schema version {found} but this firmware knows versions \
                 up to {supported}: it was written by a newer firmware; install that firmware \
                 again, or move the file away to start with factory settings",
                path.display()
            ),
            StoreError::Invalid(text) => f.write_str(text),
            StoreError::Sqlite { path, source } => {
                write!(f, "database {}: {source}", path.display())?;
                let hint = match source.sqlite_error_code() {
                    Some(ErrorCode::DiskFull) => "; the storage is full: free some space",
                    Some(
                        ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied,
                    ) => "; check that the folder and the file are writable by the service",
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                        "; another program keeps the database locked: stop it and retry"
                    }
                    Some(ErrorCode::SystemIoFailure) => "; the storage reported an I/O error",
                    _ => "",
                };
                f.write_str(hint)
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Folder { source, .. } => Some(source),
            StoreError::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break. A field that a
/// spreadsheet would take for a formula gets a leading apostrophe.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn write_settings(tx: &Transaction<'_>, diffs: &[Diff]) -> rusqlite::Result<()> {
    let mut put =
        tx.prepare_cached("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)")?;
    for d in diffs {
        put.execute(params![d.key.name(), d.new])?;
    }
    Ok(())
}

/// A database error, told apart: damage is reported as [`StoreError::Corrupt`] wherever
/// it shows up, since the remedy is the same.
fn db_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// One row of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    /// Unix time in milliseconds (negative before 1970, for a board whose clock is unset).
    pub at_ms: i64,
    pub kind: String,
    pub message: String,
}

impl EventRow {
    pub fn at(&self) -> SystemTime {
        crate::clock::from_unix_ms(self.at_ms)
    }
}

/// How the service started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// The board was powered up or rebooted.
    Cold,
    /// Only the service restarted.
    Warm,
}

#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating the folder and file if missing) `dir/card.db`, checks it and applies
    /// migrations.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let folder = |source: io::Error| StoreError::Folder {
            path: dir.to_path_buf(),
            source,
        };
        // Its name synced too: on a card's first start the service makes it, and a commit
        // in a folder whose name a power cut drops is lost with it.
        crate::files::create_dir_durable(dir).map_err(folder)?;
        // SQLite's own error for an unwritable folder is "unable to open database file",
        // which names neither the folder nor the cause; WAL also needs to create files there.
        use nix::unistd::{access, AccessFlags};
        access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| folder(e.into()))?;

        let path = dir.join(FILE_NAME);
        if let Err(e) = private(dir, &path) {
            // Not fatal (a folder of another owner, a file system without modes); SQLite
            // says so itself if the file cannot be opened at all.
            log::warn!("data folder {}: cannot make it private: {e}", dir.display());
        }
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        configure(&conn, &path)?;
        check(&conn, &path)?;
        migrate(&conn, &path, MIGRATIONS)?;
        Ok(Store { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        db_error(&self.path, e)
    }

    /// The connection, for modules that keep their own tables (accounts).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A database error of this store, told apart as [`StoreError`] is.
    pub fn error(&self, e: rusqlite::Error) -> StoreError {
        self.err(e)
    }

    /// A write transaction that takes the write lock at once: a deferred one that upgrades
    /// later can fail with SQLITE_BUSY without waiting for a reader to finish.
    fn write_tx(&self) -> Result<Transaction<'_>, StoreError> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))
    }

    /// Settings, with the factory default for every key not stored. A stored value that no
    /// longer validates (written by another firmware, or edited by hand) is logged and the
    /// default used instead; the row itself is left for someone to look at.
    pub fn load_settings(&self) -> Result<Settings, StoreError> {
        self.load_settings_over(Settings::default())
    }

    /// The stored settings over `base` (the factory values) instead of the card's own
    /// defaults.
    pub fn load_settings_over(&self, base: Settings) -> Result<Settings, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM settings")
            .map_err(|e| self.err(e))?;
        let stored = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        let mut s = base.clone();
        for (name, value) in &stored {
            match s.set(name, value) {
                Ok(()) => {}
                Err(settings::SetError::Unknown(_)) => {
                    log::warn!("stored setting '{name}' is unknown to this firmware and ignored")
                }
                Err(e @ settings::SetError::Refused { key, .. }) => {
                    let default = base.get(key);
                    log::warn!("stored setting ignored, using the default {key}={default}: {e}");
                }
            }
        }
        // Values that are fine alone but not together: the ones named go back to their
        // defaults.
        if let Err(refused) = s.check() {
            for r in refused {
                let Some(key) = settings::Key::named(&r.key) else {
                    continue;
                };
                let default = base.get(key);
                log::warn!(
                    "stored setting ignored, using the default {}={default}: {r}",
                    r.key
                );
                let _ = s.set(key, &default);
            }
            if s.check().is_err() {
                s = base;
            }
        }
        Ok(s)
    }

    /// Makes `changes` to the stored settings, all or nothing: checked as a whole against
    /// the stored ones ([`Settings::change`]), then written in one transaction. Returns
    /// what changed; a refusal gives [`StoreError::Invalid`] naming every refused value.
    pub fn change_settings(
        &self,
        changes: &[(impl AsRef<str>, &str)],
    ) -> Result<Vec<Diff>, StoreError> {
        let tx = self.write_tx()?;
        let (_, diffs) = self.load_settings()?.change(changes).map_err(|refused| {
            StoreError::Invalid(
                refused
                    .iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        write_settings(&tx, &diffs).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(diffs)
    }

    /// Writes settings already checked as a whole, in one transaction.
    pub fn save_settings(&self, diffs: &[Diff]) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        write_settings(&tx, diffs).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Stores one setting; see [`Store::change_settings`].
    pub fn save_setting(&self, key: impl AsRef<str>, value: &str) -> Result<(), StoreError> {
        self.change_settings(&[(key, value)]).map(|_| ())
    }

    /// Appends `events` in one transaction, trimming the log to [`EVENT_CAP`] rows.
    pub fn add_events(&mut self, events: &[Stamped]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(path, e))?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (at_ms, kind, message) VALUES (?1, ?2, ?3)")
                .map_err(|e| db_error(path, e))?;
            for s in events {
                insert
                    .execute(params![
                        crate::clock::unix_ms(s.at),
                        s.event.kind(),
                        s.event.message()
                    ])
                    .map_err(|e| db_error(path, e))?;
            }
            // Ids only grow, so the cap keeps the newest rows; NULL (fewer rows than the
            // cap) deletes nothing.
            tx.prepare_cached(
                "DELETE FROM events WHERE id < \
                 (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            )
            .and_then(|mut del| del.execute([EVENT_CAP as i64 - 1]))
            .map_err(|e| db_error(path, e))?;
        }
        tx.commit().map_err(|e| db_error(path, e))
    }

    /// The newest events first, at most `limit`. Newest means last written: the wall clock
    /// may step back (NTP, a user setting the time), the order of arrival does not.
    pub fn events(&self, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.events_page(None, limit, &[])
    }

    /// A page of the event log, newest first: at most `limit` events older than
    /// `before` (an id; `None`: from the newest), of the given kinds (empty: all).
    pub fn events_page(
        &self,
        before: Option<i64>,
        limit: usize,
        kinds: &[&str],
    ) -> Result<Vec<EventRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = before.unwrap_or(i64::MAX);
        // The kinds as one text, so the statement stays the same whatever the filter.
        let kinds = kinds.join(",");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at_ms, kind, message FROM events \
                 WHERE id < ?1 AND (?2 = '' OR instr(',' || ?2 || ',', ',' || kind || ',') > 0) \
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![before, kinds, limit], |r| {
            Ok(EventRow {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                message: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Empties the event log. Ids go on from where they were.
    pub fn clear_events(&self) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM events", [])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Empties the event log and writes `cleared` (who did it) as its first event, in one
    /// transaction: the log never shows as empty without saying why.
    pub fn clear_events_with(&mut self, cleared: &Stamped) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(path, e))?;
        tx.execute("DELETE FROM events", [])
            .map_err(|e| db_error(path, e))?;
        tx.execute(
            "INSERT INTO events (at_ms, kind, message) VALUES (?1, ?2, ?3)",
            params![
                crate::clock::unix_ms(cleared.at),
                cleared.event.kind(),
                cleared.event.message()
            ],
        )
        .map_err(|e| db_error(path, e))?;
        tx.commit().map_err(|e| db_error(path, e))
    }

    /// Every event, oldest first, as CSV (RFC 4180): id, time (UTC, ISO 8601), kind,
    /// message.
    pub fn write_events_csv(&self, out: &mut impl std::io::Write) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, at_ms, kind, message FROM events ORDER BY id")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let io = |e: std::io::Error| StoreError::Invalid(format!("writing the CSV: {e}"));
        out.write_all(b"id,time_utc,kind,message\r\n").map_err(io)?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let (id, at_ms, kind, message): (i64, i64, String, String) = (
                r.get(0).map_err(|e| self.err(e))?,
                r.get(1).map_err(|e| self.err(e))?,
                r.get(2).map_err(|e| self.err(e))?,
                r.get(3).map_err(|e| self.err(e))?,
            );
            write!(
                out,
                "{id},{},{},{}\r\n",
                crate::calendar::iso8601(at_ms),
                csv_field(&kind),
                csv_field(&message)
            )
            .map_err(io)?;
        }
        Ok(())
    }

    /// Tells a cold boot from a warm one: `boot_id` is the kernel's
    /// `/proc/sys/kernel/random/boot_id`, new at every boot. The same id as at the previous
    /// start means only the service restarted. An empty id (unreadable) counts as cold and is
    /// not stored.
    pub fn boot(&self, boot_id: &str) -> Result<Boot, StoreError> {
        let boot_id = boot_id.trim();
        if boot_id.is_empty() {
            return Ok(Boot::Cold);
        }
        let tx = self.write_tx()?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [META_BOOT_ID],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            [META_BOOT_ID, boot_id],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(if previous.as_deref() == Some(boot_id) {
            Boot::Warm
        } else {
            Boot::Cold
        })
    }
}

/// The data folder (password hashes, keys, the event log) is the service's alone: the
/// folder 0700, the database and its journal files 0600. Made so before SQLite first
/// creates the file (it gives its journals the database's mode), and again at every
/// start, so a folder made by an older firmware or by hand is closed too.
fn private(dir: &Path, db: &Path) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    // Only a file that is not there yet is opened here: closing a descriptor of a database
    // that SQLite has open in this process would drop SQLite's POSIX locks on it. The
    // modes of existing files are set by path.
    if !db.exists() {
        let created = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(db);
        match created {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Connection settings that make every commit durable and let readers and the writer share
/// the file.
fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| db_error(path, e))?;
    // The first statement that reads the file: a file that is not a database fails here.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| db_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still safe (rollback journal), only readers block the writer.
        log::warn!(
            "database {}: WAL journal refused by the file system, using '{mode}'",
            path.display()
        );
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| db_error(path, e))?;
    // SQLite's default page cache is 2 MiB per connection, resident once filled, and the
    // service holds several; the file's pages stay in the kernel's cache, which gives
    // them back under pressure. 256 KiB holds the tables' upper levels and a page of the log.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(|e| db_error(path, e))?;
    Ok(())
}

/// Each connection's page cache, in KiB.
const CACHE_KIB: i64 = 256;

/// A quick check of the whole file, so damage is reported at start with what to do,
/// rather than as a failed write later.
fn check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    conn.pragma_query(None, "quick_check", |r| {
        problems.push(r.get::<_, String>(0)?);
        Ok(())
    })
    .map_err(|e| db_error(path, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    let mut detail = problems
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > 3 {
        detail.push_str(&format!("; and {} more", problems.len() - 3));
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    })
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Brings the schema to `migrations.len()`. Each step runs in its own transaction together
/// with its bump of `user_version`, so a crash leaves the previous version whole.
fn migrate(conn: &Connection, path: &Path, migrations: &[&str]) -> Result<(), StoreError> {
    let supported = migrations.len() as i64;
    let found = user_version(conn).map_err(|e| db_error(path, e))?;
    if found > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        let target = i as i64 + 1;
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| db_error(path, e))?;
        // Read again under the write lock: another process may have migrated meanwhile.
        if user_version(&tx).map_err(|e| db_error(path, e))? >= target {
            continue;
        }
        tx.execute_batch(sql).map_err(|e| db_error(path, e))?;
        tx.pragma_update(None, "user_version", target)
            .map_err(|e| db_error(path, e))?;
        tx.commit().map_err(|e| db_error(path, e))?;
        log::info!(
            "database {}: schema now at version {target}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use std::time::UNIX_EPOCH;
    use tempfile::TempDir;

    fn stamped(event: Event, ms: u64) -> Stamped {
        Stamped {
            at: UNIX_EPOCH + Duration::from_millis(ms),
            event,
        }
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_new_database_gets_the_whole_schema() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("nested/data")).unwrap();
        assert_eq!(store.path(), dir.path().join("nested/data").join(FILE_NAME));
        assert_eq!(user_version(&store.conn).unwrap(), MIGRATIONS.len() as i64);
        let names = tables(&store.conn);
        for t in ["events", "meta", "settings"] {
            assert!(names.iter().any(|n| n == t), "{t} missing from {names:?}");
        }
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        drop(store);
        // Reopening applies nothing twice.
        let store = Store::open(dir.path().join("nested/data").as_path()).unwrap();
        assert_eq!(user_version(&store.conn).unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_failed_migration_leaves_the_previous_version_whole() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(FILE_NAME);
        let conn = Connection::open(&path).unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER);",
            "CREATE TABLE b (x INTEGER); SELECT * FROM nowhere;",
        ];
        let err = migrate(&conn, &path, &steps).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
        assert_eq!(user_version(&conn).unwrap(), 1);
        assert_eq!(tables(&conn), ["a"]);
        // Once fixed, the next start goes on from version 1.
        migrate(&conn, &path, &[steps[0], "CREATE TABLE b (x INTEGER);"]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
        assert_eq!(tables(&conn), ["a", "b"]);
    }

    #[test]
    fn too_new_a_schema_is_refused_without_touching_it() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(FILE_NAME);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        match migrate(&conn, &path, MIGRATIONS) {
            Err(StoreError::TooNew {
                found: 7,
                supported,
                ..
            }) => assert_eq!(supported, MIGRATIONS.len() as i64),
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert!(tables(&conn).is_empty());
    }

    #[test]
    fn an_empty_database_gives_the_factory_settings() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load_settings().unwrap(), Settings::default());
    }

    #[test]
    fn a_saved_setting_survives_a_reopen() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save_setting("ups_baud", "57600").unwrap();
        store.save_setting("serial_timeout_ms", " 100 ").unwrap();
        store.save_setting("routing", "transparent").unwrap();
        store.save_setting("routing", "ups").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let s = store.load_settings().unwrap();
        assert_eq!(s.ups_baud, 57600);
        assert_eq!(s.serial_timeout_ms, 100);
        assert_eq!(s.routing, settings::Routing::Ups);
        let stored: String = store
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'serial_timeout_ms'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, "100", "stored in canonical form");
    }

    #[test]
    fn a_refused_setting_keeps_the_check_text_and_stores_nothing() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store.save_setting("rs485_slave", "175").unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)));
        assert!(err.to_string().contains("174"), "{err}");
        // Checked against the current settings: 100 ms is too short at the default baud.
        let err = store.save_setting("serial_timeout_ms", "100").unwrap_err();
        assert!(err.to_string().contains("310 ms"), "{err}");
        assert!(store
            .save_setting("nope", "1")
            .unwrap_err()
            .to_string()
            .contains("unknown"));
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn an_invalid_stored_setting_falls_back_to_the_default() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save_setting("modbus_port", "1502").unwrap();
        for (k, v) in [
            ("rs485_baud", "4800"),
            ("ups_slave", "zero"),
            ("retired_key", "1"),
        ] {
            store
                .conn
                .execute("INSERT OR REPLACE INTO settings VALUES (?1, ?2)", [k, v])
                .unwrap();
        }
        let s = store.load_settings().unwrap();
        assert_eq!(s.modbus_port, 1502);
        assert_eq!(s.rs485_baud, Settings::default().rs485_baud);
        assert_eq!(s.ups_slave, Settings::default().ups_slave);
        // Saving another key still works on top of the fallback.
        store.save_setting("rs485_slave", "5").unwrap();
        assert_eq!(store.load_settings().unwrap().rs485_slave, 5);
    }

    #[test]
    fn events_come_newest_first_and_limited() {
        let dir = TempDir::new().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.events(10).unwrap().is_empty());
        store
            .add_events(&[
                stamped(Event::ColdBoot, 1_000),
                stamped(Event::UpsDetected { baud: 9600 }, 2_000),
            ])
            .unwrap();
        // A clock stepped back does not reorder the log.
        store.add_events(&[stamped(Event::UpsLost, 500)]).unwrap();
        store.add_events(&[]).unwrap();
        let all = store.events(100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["ups_lost", "ups_detected", "cold_boot"]
        );
        assert_eq!(all[1].message, "UPS detected at 9600 baud");
        assert_eq!(all[1].at_ms, 2_000);
        assert_eq!(all[1].at(), UNIX_EPOCH + Duration::from_millis(2_000));
        assert!(all[0].id > all[1].id && all[1].id > all[2].id);
        assert_eq!(store.events(2).unwrap(), all[..2]);
        assert!(store.events(0).unwrap().is_empty());
        assert_eq!(store.events(usize::MAX).unwrap().len(), 3);
    }

    #[test]
    fn times_before_1970_are_kept() {
        let dir = TempDir::new().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let at = UNIX_EPOCH - Duration::from_millis(1_500);
        store
            .add_events(&[Stamped {
                at,
                event: Event::Stopped,
            }])
            .unwrap();
        let row = &store.events(1).unwrap()[0];
        assert_eq!(row.at_ms, -1_500);
        assert_eq!(row.at(), at);
    }

    #[test]
    fn clear_empties_the_log_and_ids_go_on() {
        let dir = TempDir::new().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .add_events(&[stamped(Event::ColdBoot, 1), stamped(Event::Stopped, 2)])
            .unwrap();
        let last = store.events(1).unwrap()[0].id;
        store.clear_events().unwrap();
        assert!(store.events(10).unwrap().is_empty());
        store.add_events(&[stamped(Event::WarmBoot, 3)]).unwrap();
        assert!(
            store.events(1).unwrap()[0].id > last,
            "an id is never reused"
        );
    }

    #[test]
    fn the_log_keeps_only_the_newest_events() {
        let dir = TempDir::new().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let batch: Vec<_> = (0..EVENT_CAP as u64 + 50)
            .map(|i| stamped(Event::UpsLost, i))
            .collect();
        store.add_events(&batch).unwrap();
        store
            .add_events(&[stamped(Event::UpsRestored, 1_000_000)])
            .unwrap();
        let all = store.events(usize::MAX).unwrap();
        assert_eq!(all.len(), EVENT_CAP);
        assert_eq!(all[0].kind, "ups_restored");
        // The 51 oldest went: 0..=50.
        assert_eq!(all.last().unwrap().at_ms, 51);
    }

    #[test]
    fn the_same_boot_id_is_a_warm_boot() {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = "3f1c5a0e-8d2b-4f6a-9c1e-2b7d4e5f6a70\n";
        let b = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\n";
        assert_eq!(store.boot(a).unwrap(), Boot::Cold, "nothing stored yet");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.boot(a).unwrap(), Boot::Warm);
        assert_eq!(store.boot(b).unwrap(), Boot::Cold);
        assert_eq!(store.boot(b.trim()).unwrap(), Boot::Warm);
        assert_eq!(store.boot("").unwrap(), Boot::Cold);
        assert_eq!(
            store.boot(b).unwrap(),
            Boot::Warm,
            "an unreadable id is not stored"
        );
    }
}
