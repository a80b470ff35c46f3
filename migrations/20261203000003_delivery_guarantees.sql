-- dbswatch schema, version 3: delivery guarantees. Never edit a released migration: add a new
-- file. Times are epoch milliseconds (UTC).
--
-- deliveries
--   status       gains 'muted': a repeat of a transition the channel was told about within its
--                `repeat_interval` (a flapping plan). Recorded, never sent; the next message for
--                that watch says how many were muted.
--   batch_uid    the idempotency id of the message this row is (being) sent in. Set just before
--                the request; kept while a send may have reached the receiver (timeout, 5xx,
--                crash), so the resend carries the same DingTalk msgUuid / webhook-id with the
--                same members. Cleared when the receiver certainly did not take it (connection
--                refused, 429, a throttle code), so a backlog can be merged into one summary.
--                On a muted row: the message that reported it.
--   requeued_at  set by `dbswatch redeliver`: the retry budget and the backoff start again here.
-- delivery_attempts
--   message_uid  the idempotency id that went out, so the rate limiter counts messages (not
--                rows: a merged message is one attempt row per member) when it is seeded after
--                a restart. An attempt row is written as 'sending' before the request and
--                completed after it, so a send cut short by a crash still counts.
--
-- SQLite cannot change a CHECK constraint in place, so both tables are rebuilt. This runs with
-- foreign keys on: the new tables are filled first, the old ones dropped child first, and the
-- renames re-point delivery_attempts' reference at the new deliveries table.

CREATE TABLE deliveries_v3 (
    id              INTEGER PRIMARY KEY,
    uid             TEXT NOT NULL UNIQUE,
    event_id        INTEGER NOT NULL REFERENCES events(id),
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'muted')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    batch_uid       TEXT,
    requeued_at     INTEGER,
    UNIQUE (event_id, channel)
);
INSERT INTO deliveries_v3 (id, uid, event_id, channel, status, attempts, next_attempt_at,
                           last_error, created_at, delivered_at)
    SELECT id, uid, event_id, channel, status, attempts, next_attempt_at, last_error, created_at,
           delivered_at
    FROM deliveries;

CREATE TABLE delivery_attempts_v3 (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL REFERENCES deliveries_v3(id),
    attempted_at    INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    vendor_code     TEXT,
    error           TEXT,
    message_uid     TEXT
);
INSERT INTO delivery_attempts_v3 (id, delivery_id, attempted_at, duration_ms, outcome,
                                  http_status, vendor_code, error, message_uid)
    SELECT a.id, a.delivery_id, a.attempted_at, a.duration_ms, a.outcome, a.http_status,
           a.vendor_code, a.error, (SELECT d.uid FROM deliveries d WHERE d.id = a.delivery_id)
    FROM delivery_attempts a;

DROP TABLE delivery_attempts;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries;
ALTER TABLE delivery_attempts_v3 RENAME TO delivery_attempts;

CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_by_event ON deliveries(event_id);
CREATE INDEX deliveries_by_batch ON deliveries(batch_uid);
CREATE INDEX attempts_by_delivery ON delivery_attempts(delivery_id);
CREATE INDEX attempts_by_time ON delivery_attempts(attempted_at);
