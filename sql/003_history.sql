-- Schema version 3: the UPS's history (src/history). One row a minute for 7 days, one
-- an hour for a year; older rows are deleted as new ones come, so the history stays
-- within its bound (about 1.5 MiB). NULL: the UPS does not give the figure.
CREATE TABLE ups_minute (
    t_ms        INTEGER PRIMARY KEY, -- unix time in ms, the start of the minute (UTC)
    load_pct    REAL,
    charge_pct  REAL,
    runtime_min REAL,
    input_v     REAL,
    output_v    REAL,
    temp_c      REAL,
    on_battery  INTEGER NOT NULL     -- 1 while the load ran on battery
);

-- The means of each hour's minutes (on_battery: 1 if any minute was).
CREATE TABLE ups_hour (
    t_ms        INTEGER PRIMARY KEY, -- unix time in ms, the start of the hour (UTC)
    load_pct    REAL,
    charge_pct  REAL,
    runtime_min REAL,
    input_v     REAL,
    output_v    REAL,
    temp_c      REAL,
    on_battery  INTEGER NOT NULL
);
