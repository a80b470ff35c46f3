//! Audit queries: events with every filter and a stable cursor, one event with its delivery
//! attempts, deliveries, snapshots, and per-watch summaries.
//!
//! # How an event page is found
//! Listings are newest first by `(observed_at, id)`. Each filter combination reads one index
//! range in that order and stops after `limit + 1` rows, so the cost depends on the page size,
//! not on the table size:
//! - `--watch` walks `events_watch_time (watch, observed_at, kind)`; kinds are checked inside
//!   the index, without reading the row;
//! - `--plan`/`--task` walk `events_target_time (target_id, target_type, observed_at, kind)`;
//! - `--kind` alone walks `events_kind_time (kind, observed_at)` once per matching kind, each
//!   walk stopping after `limit + 1` rows, inside one `UNION ALL` statement that merges them
//!   (a glob stands for at most the twelve kinds there are);
//! - no filter, or only a time range, walks `events_by_time (observed_at)`.
//!
//! `INDEXED BY` pins these choices: without statistics SQLite cannot know that, say, a time
//! range covers the whole table, and a wrong guess costs a full sort. The statements are fixed
//! strings; absent filters are bound as NULL.
//!
//! # The cursor
//! A cursor is the `(observed_at, id)` of the last row of a page; the next page is everything
//! strictly before it. Events that arrive while a client pages are newer than every cursor, so
//! a walk neither repeats nor skips a row.

use base64::Engine;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, TypeInfo, ValueRef};

use super::{DeliverySummary, HistoryEntry, Store, StoreError, delta};
use crate::audit::expand_kinds;
use crate::event::Event;
use crate::snapshot::{Snapshot, Target};

/// Rows returned when a caller asks for no limit: an upper bound on memory, not a page size.
const UNBOUNDED: i64 = 10_000_000;

macro_rules! select_events {
    ($index:literal, $prefix:literal) => {
        concat!(
            "SELECT id, uid, watch, kind, target_type, target_id, status, observed_at, payload, \
             hash FROM events INDEXED BY ",
            $index,
            " WHERE ",
            $prefix,
            " observed_at >= ?2 AND observed_at <= ?3 AND NOT (observed_at = ?4 AND id >= ?5) \
             AND (?1 IS NULL OR watch = ?1) \
             AND (?6 IS NULL OR target_type = ?6) AND (?7 IS NULL OR target_id = ?7) \
             AND (?8 IS NULL OR kind IN (SELECT value FROM json_each(?8))) \
             ORDER BY observed_at DESC, id DESC LIMIT ?9"
        )
    };
}

const BY_TIME: &str = select_events!("events_by_time", "");
const BY_WATCH: &str = select_events!("events_watch_time", "watch = ?1 AND");
const BY_TARGET: &str = select_events!(
    "events_target_time",
    "target_id = ?7 AND target_type = ?6 AND"
);
/// One walk of `events_kind_time` for the kind bound at `$p`, limited like a page.
macro_rules! kind_walk {
    ($p:literal) => {
        concat!(
            "SELECT * FROM (SELECT id, uid, watch, kind, target_type, target_id, status, \
             observed_at, payload, hash FROM events INDEXED BY events_kind_time WHERE kind = ",
            $p,
            " AND observed_at >= ?2 AND observed_at <= ?3 AND NOT (observed_at = ?4 AND id >= ?5) \
             ORDER BY observed_at DESC, id DESC LIMIT ?9)"
        )
    };
}

/// Kinds merged by one [`BY_KINDS`] statement (bound at `?10`..`?21`; unused ones are NULL and
/// match nothing). Every kind the product emits fits in one.
const KINDS_PER_QUERY: usize = 12;

const BY_KINDS: &str = concat!(
    kind_walk!("?10"),
    " UNION ALL ",
    kind_walk!("?11"),
    " UNION ALL ",
    kind_walk!("?12"),
    " UNION ALL ",
    kind_walk!("?13"),
    " UNION ALL ",
    kind_walk!("?14"),
    " UNION ALL ",
    kind_walk!("?15"),
    " UNION ALL ",
    kind_walk!("?16"),
    " UNION ALL ",
    kind_walk!("?17"),
    " UNION ALL ",
    kind_walk!("?18"),
    " UNION ALL ",
    kind_walk!("?19"),
    " UNION ALL ",
    kind_walk!("?20"),
    " UNION ALL ",
    kind_walk!("?21"),
    " ORDER BY observed_at DESC, id DESC LIMIT ?9"
);

/// Where a page ends: the `(observed_at, id)` of its last row. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Epoch ms of the last row.
    pub observed_at: i64,
    /// Its id.
    pub id: i64,
}

impl Cursor {
    /// The opaque text form (URL-safe base64).
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}", self.observed_at, self.id))
    }

    /// Parse what [`Cursor::encode`] produced.
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.split_once('.')?;
        Some(Cursor {
            observed_at: at.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// Every filter of `dbswatch history` and `/api/v1/events`.
#[derive(Debug, Clone)]
pub struct EventFilter {
    /// Only this watch.
    pub watch: Option<String>,
    /// Only this backup plan or restore task.
    pub target: Option<Target>,
    /// Kinds or globs (`precheck.*`); empty means every kind.
    pub kinds: Vec<String>,
    /// Observed at or after, epoch ms.
    pub since_ms: Option<i64>,
    /// Observed before, epoch ms.
    pub until_ms: Option<i64>,
    /// At most this many events.
    pub limit: i64,
    /// Continue after this row.
    pub cursor: Option<Cursor>,
}

impl Default for EventFilter {
    fn default() -> EventFilter {
        EventFilter {
            watch: None,
            target: None,
            kinds: Vec::new(),
            since_ms: None,
            until_ms: None,
            limit: 50,
            cursor: None,
        }
    }
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Newest first.
    pub entries: Vec<HistoryEntry>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// One delivery with its event, for `/api/v1/deliveries` and `/api/v1/events/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// Row id.
    pub id: i64,
    /// Idempotency key sent to the receiver (`msgUuid`, `webhook-id`).
    pub delivery_uid: String,
    /// The event's uid.
    pub event_id: Option<String>,
    /// The event's kind.
    pub kind: Option<String>,
    /// The event's watch.
    pub watch: Option<String>,
    /// Channel name.
    pub channel: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error, redacted when it was stored.
    pub last_error: Option<String>,
    /// When the delivery was queued, epoch ms.
    pub created_at_ms: i64,
    /// When it was delivered, epoch ms.
    pub delivered_at_ms: Option<i64>,
    /// When a pending delivery is tried next, epoch ms.
    pub next_attempt_at_ms: Option<i64>,
    /// Every attempt, oldest first (filled by [`Store::event_detail`] only).
    pub attempt_log: Vec<AttemptRow>,
}

/// One recorded send attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    /// When, epoch ms.
    pub attempted_at_ms: i64,
    /// How long, ms.
    pub duration_ms: i64,
    /// `delivered`, `retryable`, `permanent` or `render_error`.
    pub outcome: String,
    /// HTTP status.
    pub http_status: Option<i64>,
    /// Vendor code.
    pub vendor_code: Option<String>,
    /// Error text, redacted when it was stored.
    pub error: Option<String>,
}

/// Filters for the deliveries listing.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    /// Only this channel.
    pub channel: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// At most this many.
    pub limit: i64,
    /// Continue below this delivery id.
    pub before_id: Option<i64>,
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    /// The rows.
    pub rows: Vec<DeliveryRow>,
    /// The id to continue below; `None` on the last page.
    pub next_before: Option<i64>,
}

/// One stored snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    /// Row id.
    pub id: i64,
    /// Content hash (the change detector).
    pub content_hash: String,
    /// The normalised content.
    pub snapshot: Snapshot,
    /// The exact response body.
    pub raw_body: String,
    /// DBS RequestId of the first answer with this content.
    pub request_id: Option<String>,
    /// First seen, epoch ms.
    pub first_seen_at_ms: i64,
    /// Last seen, epoch ms.
    pub last_seen_at_ms: i64,
    /// Polls that returned this content in a row.
    pub seen_count: i64,
    /// Why this row's texts could not be read back (a damaged or tampered difference); its
    /// `snapshot` is then empty and `raw_body` blank. The other rows are listed as usual.
    pub unreadable: Option<String>,
}

/// What the store knows about one watch.
#[derive(Debug, Clone, Serialize)]
pub struct WatchSummary {
    /// Watch name.
    pub watch: String,
    /// The DBS object.
    pub target: Option<Target>,
    /// Status in the current baseline.
    pub status: Option<String>,
    /// Progress in the current baseline.
    pub progress: Option<i64>,
    /// When the baseline last changed, epoch ms.
    pub changed_at_ms: Option<i64>,
    /// When the last successful poll was recorded, epoch ms.
    pub last_ok_at_ms: Option<i64>,
    /// The newest poll row: outcome and, for errors, the message.
    pub last_poll_outcome: Option<String>,
    /// Its error, redacted when stored.
    pub last_poll_error: Option<String>,
    /// When the newest poll started, epoch ms.
    pub last_poll_at_ms: Option<i64>,
    /// The newest event's kind.
    pub last_event_kind: Option<String>,
    /// When it was observed, epoch ms.
    pub last_event_at_ms: Option<i64>,
}

fn corrupt(table: &'static str, id: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        id,
        reason: e.to_string(),
    }
}

/// A snapshot's two texts, with `s` the snapshot row and `ws` its watch's `watch_state` row
/// when it is the current answer: a current answer's row holds empty texts and the whole ones
/// are in `watch_state` and `current_bodies` (migration 6).
macro_rules! snapshot_texts {
    () => {
        "CASE WHEN s.content = '' AND ws.snapshot_id IS NOT NULL THEN ws.content \
         ELSE s.content END AS content, \
         CASE WHEN s.content = '' AND ws.snapshot_id IS NOT NULL \
         THEN (SELECT cb.raw_body FROM current_bodies cb \
               WHERE cb.watch = s.watch AND cb.snapshot_id = s.id) \
         ELSE s.raw_body END AS raw_body"
    };
}

/// A snapshot row's texts as stored: TEXT whole, BLOB a difference from `delta_base`'s.
fn stored_row(r: &SqliteRow) -> Result<delta::StoredRow, StoreError> {
    let id: i64 = r.get("id");
    let column = |name: &str| -> Result<delta::Stored, StoreError> {
        let value = r.try_get_raw(name)?;
        if value.is_null() {
            return Ok(delta::Stored::Missing);
        }
        if value.type_info().name() == "BLOB" {
            Ok(delta::Stored::Delta(r.try_get::<Vec<u8>, _>(name)?))
        } else {
            Ok(delta::Stored::Whole(r.try_get::<String, _>(name)?))
        }
    };
    Ok(delta::StoredRow {
        id,
        delta_base: r.get("delta_base"),
        content_hash: r.get("content_hash"),
        content: column("content")?,
        raw_body: column("raw_body")?,
    })
}

impl Store {
    /// One page of events matching `filter`, newest first, each with its deliveries.
    pub async fn events_page(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        let limit = if filter.limit < 0 {
            UNBOUNDED
        } else {
            filter.limit.min(UNBOUNDED)
        };
        if limit == 0 {
            return Ok(EventPage {
                entries: Vec::new(),
                next: None,
            });
        }
        let kinds = (!filter.kinds.is_empty()).then(|| expand_kinds(&filter.kinds));
        if kinds.as_ref().is_some_and(Vec::is_empty) {
            return Ok(EventPage {
                entries: Vec::new(),
                next: None,
            });
        }
        let since = filter.since_ms.unwrap_or(i64::MIN);
        let mut hi = filter.until_ms.map_or(i64::MAX, |u| u.saturating_sub(1));
        let (tie_at, tie_id) = match filter.cursor {
            Some(c) => {
                hi = hi.min(c.observed_at);
                (c.observed_at, c.id)
            }
            None => (i64::MAX, i64::MAX),
        };
        let (target_type, target_id) = match &filter.target {
            Some(t) => (Some(t.type_name()), Some(t.id().to_string())),
            None => (None, None),
        };
        let fetch = limit.saturating_add(1);

        let run = |sql: &'static str, kinds_json: Option<String>, each: &[String]| {
            let mut q = sqlx::query(sql)
                .bind(filter.watch.clone())
                .bind(since)
                .bind(hi)
                .bind(tie_at)
                .bind(tie_id)
                .bind(target_type)
                .bind(target_id.clone())
                .bind(kinds_json)
                .bind(fetch);
            for i in 0..KINDS_PER_QUERY {
                q = q.bind(each.get(i).cloned());
            }
            q.fetch_all(self.reader())
        };
        let kinds_json = kinds
            .as_ref()
            .map(|k| serde_json::to_string(k).expect("strings serialise"));
        let mut rows: Vec<SqliteRow> = if filter.watch.is_some() {
            run(BY_WATCH, kinds_json, &[]).await?
        } else if filter.target.is_some() {
            run(BY_TARGET, kinds_json, &[]).await?
        } else if let Some(kinds) = &kinds {
            let chunks: Vec<&[String]> = kinds.chunks(KINDS_PER_QUERY).collect();
            let mut all = Vec::new();
            for chunk in &chunks {
                all.extend(run(BY_KINDS, None, chunk).await?);
            }
            if chunks.len() > 1 {
                all.sort_by_key(|r| {
                    std::cmp::Reverse((r.get::<i64, _>("observed_at"), r.get::<i64, _>("id")))
                });
            }
            all
        } else {
            run(BY_TIME, None, &[]).await?
        };
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(entry_from_row(row)?);
        }
        self.attach_deliveries(&mut entries).await?;
        let next = if more {
            entries.last().map(|e| Cursor {
                observed_at: e.observed_at_ms,
                id: e.seq,
            })
        } else {
            None
        };
        Ok(EventPage { entries, next })
    }

    async fn attach_deliveries(&self, entries: &mut [HistoryEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        let rows = sqlx::query(
            "SELECT event_id, channel, status, attempts, last_error, delivered_at FROM deliveries \
             WHERE event_id IN (SELECT value FROM json_each(?1)) ORDER BY event_id, id",
        )
        .bind(serde_json::to_string(&ids).expect("ids serialise"))
        .fetch_all(self.reader())
        .await?;
        let index: std::collections::HashMap<i64, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.seq, i))
            .collect();
        for d in rows {
            let event_id: i64 = d.get("event_id");
            if let Some(entry) = index.get(&event_id).map(|i| &mut entries[*i]) {
                entry.deliveries.push(DeliverySummary {
                    channel: d.get("channel"),
                    status: d.get("status"),
                    attempts: d.get("attempts"),
                    last_error: d.get("last_error"),
                    delivered_at_ms: d.get("delivered_at"),
                });
            }
        }
        Ok(())
    }

    /// One event by uid, with its chain link and every delivery and attempt.
    pub async fn event_detail(
        &self,
        uid: &str,
    ) -> Result<Option<(HistoryEntry, Option<String>, Vec<DeliveryRow>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, uid, watch, kind, target_type, target_id, status, observed_at, payload, \
             hash, prev_hash FROM events WHERE uid = ?",
        )
        .bind(uid)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut entry = entry_from_row(&row)?;
        let prev_hash: Option<String> = row.try_get("prev_hash").ok().flatten();
        self.attach_deliveries(std::slice::from_mut(&mut entry))
            .await?;
        let mut deliveries: Vec<DeliveryRow> = sqlx::query(
            "SELECT d.id, d.uid, d.channel, d.status, d.attempts, d.last_error, d.created_at, \
             d.delivered_at, d.next_attempt_at, e.uid AS event_uid, e.kind, e.watch \
             FROM deliveries d LEFT JOIN events e ON e.id = d.event_id \
             WHERE d.event_id = ? ORDER BY d.id",
        )
        .bind(entry.seq)
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(delivery_from_row)
        .collect();
        for d in &mut deliveries {
            d.attempt_log = sqlx::query(
                "SELECT attempted_at, duration_ms, outcome, http_status, vendor_code, error \
                 FROM delivery_attempts WHERE delivery_id = ? ORDER BY id",
            )
            .bind(d.id)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(|a| AttemptRow {
                attempted_at_ms: a.get("attempted_at"),
                duration_ms: a.get("duration_ms"),
                outcome: a.get("outcome"),
                http_status: a.get("http_status"),
                vendor_code: a.get("vendor_code"),
                error: a.get("error"),
            })
            .collect();
        }
        Ok(Some((entry, prev_hash, deliveries)))
    }

    /// Deliveries, newest first.
    pub async fn deliveries_page(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<DeliveryPage, StoreError> {
        let limit = filter.limit.clamp(0, UNBOUNDED);
        let mut rows: Vec<DeliveryRow> = sqlx::query(
            "SELECT d.id, d.uid, d.channel, d.status, d.attempts, d.last_error, d.created_at, \
             d.delivered_at, d.next_attempt_at, e.uid AS event_uid, e.kind, e.watch \
             FROM deliveries d LEFT JOIN events e ON e.id = d.event_id \
             WHERE d.id < ?1 AND (?2 IS NULL OR d.channel = ?2) AND (?3 IS NULL OR d.status = ?3) \
             ORDER BY d.id DESC LIMIT ?4",
        )
        .bind(filter.before_id.unwrap_or(i64::MAX))
        .bind(&filter.channel)
        .bind(&filter.status)
        .bind(limit.saturating_add(1))
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(delivery_from_row)
        .collect();
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_before = if more {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(DeliveryPage { rows, next_before })
    }

    /// Stored snapshots of a watch, newest first. Older snapshots are stored as differences
    /// from the ones that replaced them (`delta`); they are rebuilt here, newest first, so
    /// every row this lists has its base in the same listing.
    pub async fn snapshots(&self, watch: &str, limit: i64) -> Result<Vec<SnapshotRow>, StoreError> {
        let sql = if self.whole_snapshots_only {
            "SELECT id, content_hash, content, raw_body, NULL AS delta_base, request_id, \
             first_seen_at, last_seen_at, seen_count FROM snapshots \
             WHERE watch = ? ORDER BY id DESC LIMIT ?"
        } else {
            concat!(
                "SELECT s.id, s.content_hash, ",
                snapshot_texts!(),
                ", s.delta_base, s.request_id, s.first_seen_at, s.last_seen_at, s.seen_count \
                 FROM snapshots s LEFT JOIN watch_state ws ON ws.snapshot_id = s.id \
                 WHERE s.watch = ? ORDER BY s.id DESC LIMIT ?"
            )
        };
        let rows = sqlx::query(sql)
            .bind(watch)
            .bind(limit.clamp(0, UNBOUNDED))
            .fetch_all(self.reader())
            .await?;
        let stored = rows.iter().map(stored_row).collect::<Result<Vec<_>, _>>()?;
        let mut texts = delta::rebuild(stored);
        Ok(rows
            .iter()
            .map(|r| {
                let id: i64 = r.get("id");
                let read = texts
                    .remove(&id)
                    .expect("every listed row is rebuilt")
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        serde_json::from_str::<Snapshot>(&t.content)
                            .map(|snapshot| (snapshot, t.raw_body))
                            .map_err(|e| format!("the stored content is not a snapshot: {e}"))
                    });
                let (snapshot, raw_body, unreadable) = match read {
                    Ok((snapshot, raw_body)) => (snapshot, raw_body, None),
                    Err(reason) => (
                        Snapshot::new(None, None, Vec::new()),
                        String::new(),
                        Some(reason),
                    ),
                };
                SnapshotRow {
                    id,
                    content_hash: r.get("content_hash"),
                    snapshot,
                    raw_body,
                    request_id: r.get("request_id"),
                    first_seen_at_ms: r.get("first_seen_at"),
                    last_seen_at_ms: r.get("last_seen_at"),
                    seen_count: r.get("seen_count"),
                    unreadable,
                }
            })
            .collect())
    }

    /// The snapshot with this id, if still stored: the row and the newer ones its differences
    /// lead to, up to the first stored whole (its watch's newest at most).
    pub async fn snapshot_content(&self, id: i64) -> Result<Option<Snapshot>, StoreError> {
        let sql = if self.whole_snapshots_only {
            "SELECT id, content_hash, content, raw_body, NULL AS delta_base FROM snapshots \
             WHERE id = ?1"
        } else {
            concat!(
                // UNION, not UNION ALL: a tampered `delta_base` that loops ends the walk
                // instead of running forever (the row then reports its base as unusable).
                "WITH RECURSIVE chain(id) AS (SELECT ?1 UNION \
                   SELECT s.delta_base FROM snapshots s JOIN chain c ON s.id = c.id \
                   WHERE s.delta_base IS NOT NULL) \
                 SELECT s.id, s.content_hash, ",
                snapshot_texts!(),
                ", s.delta_base FROM chain c JOIN snapshots s ON s.id = c.id \
                 LEFT JOIN watch_state ws ON ws.snapshot_id = s.id"
            )
        };
        let rows = sqlx::query(sql).bind(id).fetch_all(self.reader()).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let stored = rows.iter().map(stored_row).collect::<Result<Vec<_>, _>>()?;
        let rebuilt = delta::rebuild(stored)
            .remove(&id)
            .expect("the asked-for row is rebuilt")
            .map_err(|e| corrupt("snapshots", id, e))?;
        serde_json::from_str(&rebuilt.content)
            .map(Some)
            .map_err(|e| corrupt("snapshots", id, e))
    }

    /// The snapshot an event was stored with, if it is still kept.
    pub async fn event_snapshot_id(&self, event_seq: i64) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT snapshot_id FROM events WHERE id = ?")
                .bind(event_seq)
                .fetch_optional(self.reader())
                .await?
                .flatten(),
        )
    }

    /// What the store knows about each watch it has seen answer, by name.
    pub async fn watch_summaries(&self) -> Result<Vec<WatchSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT watch, target_type, target_id, content, updated_at, last_ok_at FROM watch_state \
             ORDER BY watch",
        )
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let watch: String = r.get("watch");
            let content: String = r.get("content");
            let snapshot: Option<Snapshot> = serde_json::from_str(&content).ok();
            let mut summary = WatchSummary {
                target: Target::from_parts(
                    &r.get::<String, _>("target_type"),
                    &r.get::<String, _>("target_id"),
                ),
                status: snapshot.as_ref().and_then(|s| s.status.clone()),
                progress: snapshot.as_ref().and_then(|s| s.progress),
                changed_at_ms: r.get("updated_at"),
                last_ok_at_ms: r.get("last_ok_at"),
                last_poll_outcome: None,
                last_poll_error: None,
                last_poll_at_ms: None,
                last_event_kind: None,
                last_event_at_ms: None,
                watch: watch.clone(),
            };
            self.fill_latest(&mut summary).await?;
            out.push(summary);
        }
        Ok(out)
    }

    /// Latest poll and event of a watch, into `summary`.
    pub async fn fill_latest(&self, summary: &mut WatchSummary) -> Result<(), StoreError> {
        if let Some(p) = sqlx::query(
            "SELECT outcome, error_message, last_at FROM polls WHERE watch = ? \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(&summary.watch)
        .fetch_optional(self.reader())
        .await?
        {
            summary.last_poll_outcome = p.get("outcome");
            summary.last_poll_error = p.get("error_message");
            summary.last_poll_at_ms = p.get("last_at");
        }
        if let Some(e) = sqlx::query(
            "SELECT kind, observed_at FROM events INDEXED BY events_watch_time WHERE watch = ? \
             ORDER BY observed_at DESC, id DESC LIMIT 1",
        )
        .bind(&summary.watch)
        .fetch_optional(self.reader())
        .await?
        {
            summary.last_event_kind = e.get("kind");
            summary.last_event_at_ms = e.get("observed_at");
        }
        Ok(())
    }

    /// Pending and dead deliveries: the outbox depth (index counts, cheap at any size).
    pub async fn outbox_depth(&self) -> Result<(i64, i64), StoreError> {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
                .fetch_one(self.reader())
                .await?;
        let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'dead'")
            .fetch_one(self.reader())
            .await?;
        Ok((pending, dead))
    }

    /// When each watch last polled successfully, epoch ms.
    pub async fn last_ok_polls(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT watch, last_ok_at FROM watch_state WHERE last_ok_at IS NOT NULL ORDER BY watch",
        )
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("watch"), r.get("last_ok_at")))
            .collect())
    }

    /// Does the database answer?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn entry_from_row(row: &SqliteRow) -> Result<HistoryEntry, StoreError> {
    let id: i64 = row.try_get("id")?;
    let get_text = |col: &str| -> Result<String, StoreError> {
        row.try_get::<String, _>(col)
            .map_err(|e| corrupt("events", id, e))
    };
    let payload = get_text("payload")?;
    let event: Event = serde_json::from_str(&payload).map_err(|e| corrupt("events", id, e))?;
    Ok(HistoryEntry {
        seq: id,
        id: get_text("uid")?,
        kind: get_text("kind")?,
        watch: get_text("watch")?,
        target_type: get_text("target_type")?,
        target_id: get_text("target_id")?,
        status: row
            .try_get("status")
            .map_err(|e| corrupt("events", id, e))?,
        observed_at_ms: row
            .try_get("observed_at")
            .map_err(|e| corrupt("events", id, e))?,
        event,
        deliveries: Vec::new(),
        hash: row.try_get("hash").ok().flatten(),
    })
}

fn delivery_from_row(d: &SqliteRow) -> DeliveryRow {
    let status: String = d.get("status");
    DeliveryRow {
        id: d.get("id"),
        delivery_uid: d.get("uid"),
        event_id: d.get("event_uid"),
        kind: d.get("kind"),
        watch: d.get("watch"),
        channel: d.get("channel"),
        next_attempt_at_ms: (status == "pending").then(|| d.get("next_attempt_at")),
        status,
        attempts: d.get("attempts"),
        last_error: d.get("last_error"),
        created_at_ms: d.get("created_at"),
        delivered_at_ms: d.get("delivered_at"),
        attempt_log: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let c = Cursor {
            observed_at: 1_764_720_000_000,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for junk in ["", "abc", "MTIz", "!!", "eC55"] {
            assert_eq!(Cursor::decode(junk), None, "{junk}");
        }
    }
}
