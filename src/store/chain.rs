//! The event hash chain in SQL: [`append_events`], the one writer of `events` rows (each row
//! chained in the transaction that writes it), the one-time backfill of rows that predate the
//! chain, the walk behind `dbswatch verify`, and the stored result that `/metrics` exports.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};
use crate::audit::chain::{ChainFields, ChainRow, GENESIS, Head, Verdict, Verifier, event_hash};
use crate::event::Event;

/// Rows read per query during a walk: big enough to be fast, small enough to stay light.
const VERIFY_BATCH: i64 = 5_000;

/// The result of one verification, as stored and shown.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// When it ran, epoch ms.
    pub verified_at: i64,
    /// The walk's findings.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The hash the first remaining event must link to (an anchor, or the genesis).
    pub anchor_hash: String,
    /// The recorded head: the last event dbswatch wrote.
    pub head_id: Option<i64>,
}

/// The last stored verification, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastVerification {
    /// When, epoch ms.
    pub at: i64,
    /// Intact?
    pub ok: bool,
    /// Rows read.
    pub events: i64,
    /// Findings.
    pub problems: i64,
}

/// Write `events` in order inside `tx`, each with one pending delivery per channel (due at
/// `now`), chain each to the one before it (the first to the recorded head) and move the head
/// to the last.
///
/// Every `events` row dbswatch writes goes through here (`record_poll` and
/// `record_poll_failure`): a writer of its own would leave rows that `verify` reports as
/// inserted behind dbswatch's back. `tx` must be a write transaction (`BEGIN IMMEDIATE`), so
/// the head read here is still the head at commit and two processes cannot fork the chain.
pub(super) async fn append_events(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    events: &[(Event, Vec<String>)],
    snapshot_id: Option<i64>,
    now: i64,
    new_uid: &mut (dyn FnMut() -> String + Send),
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let stored: Option<String> =
        sqlx::query_scalar("SELECT head_hash FROM chain_state WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
    let mut prev = stored.unwrap_or_else(|| GENESIS.to_string());
    let mut head_id: Option<i64> = None;
    for (event, channels) in events {
        let payload = serde_json::to_string(event).expect("events always serialise");
        let kind = event.kind();
        let hash = event_hash(
            &prev,
            &ChainFields {
                uid: &event.id,
                watch: &event.watch,
                kind: &kind,
                target_type: event.target.type_name(),
                target_id: event.target.id(),
                status: event.status.as_deref(),
                observed_at: event.observed_at_ms,
                payload: &payload,
            },
        );
        let event_id = sqlx::query(
            "INSERT INTO events (uid, watch, kind, target_type, target_id, status, observed_at, \
             snapshot_id, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.watch)
        .bind(&kind)
        .bind(event.target.type_name())
        .bind(event.target.id())
        .bind(&event.status)
        .bind(event.observed_at_ms)
        .bind(snapshot_id)
        .bind(payload)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await?
        .last_insert_rowid();
        for channel in channels {
            sqlx::query(
                "INSERT INTO deliveries (uid, event_id, channel, status, next_attempt_at, \
                 created_at) VALUES (?, ?, ?, 'pending', ?, ?)",
            )
            .bind(new_uid())
            .bind(event_id)
            .bind(channel)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        prev = hash;
        head_id = Some(event_id);
    }
    sqlx::query("UPDATE chain_state SET head_id = ?, head_hash = ? WHERE id = 1")
        .bind(head_id)
        .bind(&prev)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Hash, once, the events written before the chain existed (see the migration). Runs at
    /// open; rows above `backfill_through` are never hashed here, so a row slipped in later
    /// stays visible to `verify`.
    pub(super) async fn backfill_chain(&self) -> Result<(), StoreError> {
        let state =
            sqlx::query("SELECT backfill_through, backfilled_at FROM chain_state WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let Some(state) = state else { return Ok(()) };
        let through: Option<i64> = state.get("backfill_through");
        let done: Option<i64> = state.get("backfilled_at");
        let (Some(through), None) = (through, done) else {
            return Ok(());
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut prev = GENESIS.to_string();
        let mut head: Option<i64> = None;
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, uid, watch, kind, target_type, target_id, status, observed_at, payload \
                 FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(through)
            .bind(VERIFY_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let id: i64 = row.get("id");
                let hash = hash_row(&prev, &row).ok_or_else(|| StoreError::Corrupt {
                    table: "events",
                    id,
                    reason: "a column has the wrong type; the row cannot be chained".into(),
                })?;
                sqlx::query("UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?")
                    .bind(&prev)
                    .bind(&hash)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                prev = hash;
                head = Some(id);
                after = id;
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        sqlx::query(
            "UPDATE chain_state SET backfilled_at = ?, head_id = COALESCE(?, head_id), \
             head_hash = CASE WHEN ? IS NULL THEN head_hash ELSE ? END WHERE id = 1",
        )
        .bind(now)
        .bind(head)
        .bind(head)
        .bind(&prev)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(id) = head {
            tracing::info!(
                through = id,
                "chained the events written before this version"
            );
        }
        Ok(())
    }

    /// Walk the whole chain in one consistent read and store the result.
    ///
    /// The walk is one read transaction on the read-only connection: rows written meanwhile are
    /// not seen, and the head it compares with is the one of the same snapshot. Writers are not
    /// blocked (WAL), so polls go on while a large chain is walked.
    pub async fn verify_chain(&self, now_ms: i64) -> Result<VerifyReport, StoreError> {
        let mut tx = self.reader().begin().await?;
        let head_row = sqlx::query("SELECT head_id, head_hash FROM chain_state WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        let head = head_row.and_then(|r| {
            let id: Option<i64> = r.get("head_id");
            let hash: Option<String> = r.get("head_hash");
            id.zip(hash).map(|(id, hash)| Head { id, hash })
        });
        let first_id: Option<i64> = sqlx::query_scalar("SELECT MIN(id) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        // The anchor of the latest pruning that is below the first remaining row.
        let anchor = sqlx::query(
            "SELECT through_event_id, last_hash FROM chain_anchors WHERE through_event_id < ? \
             ORDER BY through_event_id DESC LIMIT 1",
        )
        .bind(first_id.unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        let anchor_id: Option<i64> = anchor.as_ref().map(|r| r.get("through_event_id"));
        let anchor_hash = anchor
            .map(|r| r.get::<String, _>("last_hash"))
            .unwrap_or_else(|| GENESIS.to_string());
        let head_id = head.as_ref().map(|h| h.id);
        let mut verifier = Verifier::new(&anchor_hash, anchor_id, head);
        let mut after = i64::MIN;
        loop {
            let rows = sqlx::query(
                "SELECT id, uid, watch, kind, target_type, target_id, status, observed_at, payload, \
                 prev_hash, hash FROM events WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(VERIFY_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let id: i64 = row.get("id");
                let prev_hash: Option<String> = row.try_get("prev_hash").ok().flatten();
                // A column edited to the wrong type cannot be what dbswatch wrote.
                let computed = prev_hash
                    .as_deref()
                    .map(|p| hash_row(p, &row).unwrap_or_else(|| "undecodable".into()));
                verifier.push(ChainRow {
                    id,
                    uid: row.try_get("uid").unwrap_or_default(),
                    prev_hash,
                    hash: row.try_get("hash").ok().flatten(),
                    computed,
                });
                after = id;
            }
        }
        tx.commit().await?;
        let verdict = verifier.finish();
        let report = VerifyReport {
            verified_at: now_ms,
            anchor_hash,
            head_id,
            verdict,
        };
        let first = report
            .verdict
            .problems
            .first()
            .map(|p| format!("event {} {}: {}", p.event_id, p.kind.as_str(), p.detail));
        let recorded = sqlx::query(
            "UPDATE chain_state SET verified_at = ?, verify_ok = ?, verify_events = ?, \
             verify_problems = ?, verify_first = ? WHERE id = 1",
        )
        .bind(now_ms)
        .bind(report.verdict.ok())
        .bind(report.verdict.events as i64)
        .bind(report.verdict.problems.len() as i64)
        .bind(first)
        .execute(&self.pool)
        .await;
        // A read-only open (an auditor's) cannot record the result; the report still stands.
        if let Err(e) = recorded {
            tracing::debug!(error = %e, "verification result not recorded");
        }
        Ok(report)
    }

    /// The result of the last `verify`, if one ever ran.
    pub async fn last_verification(&self) -> Result<Option<LastVerification>, StoreError> {
        let row = sqlx::query(
            "SELECT verified_at, verify_ok, verify_events, verify_problems FROM chain_state \
             WHERE id = 1 AND verified_at IS NOT NULL",
        )
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|r| LastVerification {
            at: r.get("verified_at"),
            ok: r.get::<i64, _>("verify_ok") != 0,
            events: r.get("verify_events"),
            problems: r.get("verify_problems"),
        }))
    }
}

/// The chain hash of a stored `events` row with the given link; `None` when a column does not
/// decode as the type dbswatch writes.
fn hash_row(prev: &str, row: &sqlx::sqlite::SqliteRow) -> Option<String> {
    let uid: String = row.try_get("uid").ok()?;
    let watch: String = row.try_get("watch").ok()?;
    let kind: String = row.try_get("kind").ok()?;
    let target_type: String = row.try_get("target_type").ok()?;
    let target_id: String = row.try_get("target_id").ok()?;
    let status: Option<String> = row.try_get("status").ok()?;
    let observed_at: i64 = row.try_get("observed_at").ok()?;
    let payload: String = row.try_get("payload").ok()?;
    Some(event_hash(
        prev,
        &ChainFields {
            uid: &uid,
            watch: &watch,
            kind: &kind,
            target_type: &target_type,
            target_id: &target_id,
            status: status.as_deref(),
            observed_at,
            payload: &payload,
        },
    ))
}
