-- Schema version 2: the card's accounts (src/accounts). Sessions are not stored: a
-- restart logs everyone out.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'read-write', 'read-only')),
    hash          TEXT    NOT NULL, -- Argon2id PHC string, costs included
    must_change   INTEGER NOT NULL, -- 1: default or reset password, valid for one login
    changed_at_ms INTEGER NOT NULL  -- unix ms of the last change, for password_days
);
