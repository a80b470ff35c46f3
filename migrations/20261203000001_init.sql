-- dbswatch schema, version 1. Never edit a released migration: add a new file.
-- Times are epoch milliseconds (UTC).

-- What the diff engine compares against, one row per watch. Kept apart from the snapshot
-- history so pruning history can never cause a re-announcement.
CREATE TABLE watch_state (
    watch           TEXT PRIMARY KEY,
    target_type     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    snapshot_id     INTEGER NOT NULL REFERENCES snapshots(id),
    content_hash    TEXT NOT NULL,
    content         TEXT NOT NULL,          -- canonical JSON of the normalised snapshot
    updated_at      INTEGER NOT NULL
);

-- Distinct states seen, written only when the normalised content changed.
CREATE TABLE snapshots (
    id              INTEGER PRIMARY KEY,
    watch           TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    content         TEXT NOT NULL,          -- canonical JSON of the normalised snapshot
    raw_body        TEXT NOT NULL,          -- the exact response body
    request_id      TEXT,
    first_seen_at   INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    seen_count      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX snapshots_by_watch ON snapshots(watch, id);

-- Every poll: when, how it went, and what it produced.
CREATE TABLE polls (
    id              INTEGER PRIMARY KEY,
    watch           TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('first', 'changed', 'unchanged', 'error')),
    snapshot_id     INTEGER REFERENCES snapshots(id),
    error_code      TEXT,
    error_message   TEXT
);
CREATE INDEX polls_by_watch ON polls(watch, id);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    uid             TEXT NOT NULL UNIQUE,
    watch           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    target_type     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    status          TEXT,
    observed_at     INTEGER NOT NULL,
    snapshot_id     INTEGER REFERENCES snapshots(id),
    payload         TEXT NOT NULL           -- the event as JSON
);
CREATE INDEX events_by_watch ON events(watch, id);
CREATE INDEX events_by_time ON events(observed_at);

-- The outbox: one row per (event, channel), written in the same transaction as the event.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    uid             TEXT NOT NULL UNIQUE,   -- idempotency key sent to the receiver
    event_id        INTEGER NOT NULL REFERENCES events(id),
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (event_id, channel)
);
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_by_event ON deliveries(event_id);

-- Every send attempt, for the audit trail.
CREATE TABLE delivery_attempts (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL REFERENCES deliveries(id),
    attempted_at    INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    vendor_code     TEXT,
    error           TEXT
);
CREATE INDEX attempts_by_delivery ON delivery_attempts(delivery_id);
