-- Schema version 1 of the card's database (card.db).
-- Applied once, in one transaction with the bump of PRAGMA user_version, by
-- src/store/mod.rs. A released file is never edited: later changes go in a new
-- file (002_*.sql) added to MIGRATIONS.

-- Settings as text under the stable keys of src/settings.rs; a key that is absent
-- takes its factory default.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The event log. AUTOINCREMENT so an id is never reused, even after the log is
-- cleared: an id someone noted down keeps meaning one event.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL, -- unix time in milliseconds
    kind    TEXT    NOT NULL, -- Event::kind(), for filtering
    message TEXT    NOT NULL  -- the line an operator reads
);
CREATE INDEX events_at_ms ON events (at_ms);

-- Facts the service keeps about itself between starts (e.g. the kernel boot id).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
