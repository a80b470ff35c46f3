-- dbswatch schema, version 4: audit history. Never edit a released migration: add a new file.
-- Times are epoch milliseconds (UTC).

-- Tamper evidence. Every event carries the SHA-256 of its canonical content and of the previous
-- event's hash (one chain per database, in id order). `dbswatch verify` walks it.
ALTER TABLE events ADD COLUMN prev_hash TEXT;
ALTER TABLE events ADD COLUMN hash TEXT;

-- The chain's head (what the next event links to) and the last verification. One row.
-- `backfill_through`: events up to this id were written before the chain existed; they are
-- hashed once, at the first open by this version (SQLite has no SHA-256). Rows above it that
-- have no hash were not written by dbswatch.
CREATE TABLE chain_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    head_id             INTEGER,
    head_hash           TEXT,
    backfill_through    INTEGER,
    backfilled_at       INTEGER,
    verified_at         INTEGER,
    verify_ok           INTEGER,
    verify_events       INTEGER,
    verify_problems     INTEGER,
    verify_first        TEXT
);
INSERT INTO chain_state (id, backfill_through) VALUES (1, (SELECT MAX(id) FROM events));

-- When `event_retention` prunes the oldest events, the hash of the last pruned one is kept here:
-- the first remaining event must link to it, so pruning never breaks the chain.
CREATE TABLE chain_anchors (
    id                  INTEGER PRIMARY KEY,
    through_event_id    INTEGER NOT NULL,
    last_hash           TEXT NOT NULL,
    pruned_count        INTEGER NOT NULL,
    pruned_at           INTEGER NOT NULL
);

-- Polls: consecutive unchanged polls of a watch share one row (`repeat_count` polls, the first
-- started at `started_at`, the last at `last_at`, `duration_ms` their total). Errors, first
-- answers and changes keep one row each.
ALTER TABLE polls ADD COLUMN repeat_count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE polls ADD COLUMN last_at INTEGER NOT NULL DEFAULT 0;
UPDATE polls SET last_at = started_at;
CREATE INDEX polls_by_last_at ON polls(last_at);
CREATE INDEX polls_by_snapshot ON polls(snapshot_id);

-- When the watch last answered successfully: the age gauge in /metrics, kept across restarts.
ALTER TABLE watch_state ADD COLUMN last_ok_at INTEGER;
UPDATE watch_state SET last_ok_at = (
    SELECT MAX(p.started_at) FROM polls p WHERE p.watch = watch_state.watch AND p.outcome <> 'error'
);

-- Indexes for the history filters. Listings are newest first by (observed_at, id); every filter
-- is an equality prefix followed by the time range, so a page is one ordered index range scan:
-- by watch (kind checked inside the index), by target (same), by kind, or by time alone.
DROP INDEX events_by_watch;
CREATE INDEX events_watch_time ON events(watch, observed_at, kind);
CREATE INDEX events_target_time ON events(target_id, target_type, observed_at, kind);
CREATE INDEX events_kind_time ON events(kind, observed_at);
-- Pruning a snapshot clears the references to it: these keep that from scanning.
CREATE INDEX events_by_snapshot ON events(snapshot_id);
CREATE INDEX snapshots_by_last_seen ON snapshots(last_seen_at);
-- /api/v1/deliveries by channel.
CREATE INDEX deliveries_by_channel ON deliveries(channel, id);
