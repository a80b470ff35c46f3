//! Retention: prune old raw snapshots and poll records (and, with a separate and longer
//! setting, old events) in small batches, then hand freed pages back with incremental vacuum.
//!
//! What is never pruned, so pruning never changes what the product says:
//! - `watch_state` (the diff baseline) and the snapshot it points at: no re-alert, ever;
//! - events younger than `event_retention` (all of them when it is unset), their deliveries and
//!   attempts;
//! - events with a delivery still pending, and everything after them.
//!
//! Events are pruned only as a prefix of the chain (lowest ids first), and the hash of the last
//! pruned event is kept in `chain_anchors`, so `verify` still proves the rest intact.
//! Each batch is its own short transaction: the write lock is never held for long.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// Rows per transaction.
const BATCH: i64 = 500;
/// Batches per table per call: one call (after each poll cycle) does a bounded amount of work;
/// a backlog is worked off over the following cycles.
const MAX_BATCHES: usize = 20;
/// Pages handed back per call (4 MiB with the default page size).
const VACUUM_PAGES: i64 = 1_000;

/// How long to keep what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Raw snapshots and poll records older than this are pruned; `None` keeps them.
    pub retention: Option<Duration>,
    /// Events (with deliveries and attempts) older than this are pruned; `None` keeps them.
    pub event_retention: Option<Duration>,
}

impl RetentionPolicy {
    /// True when nothing is ever pruned.
    pub fn keeps_everything(&self) -> bool {
        self.retention.is_none() && self.event_retention.is_none()
    }
}

/// What one call removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Snapshot rows.
    pub snapshots: u64,
    /// Poll rows.
    pub polls: u64,
    /// Event rows.
    pub events: u64,
    /// Delivery rows (with their events).
    pub deliveries: u64,
    /// Pages returned to the file system.
    pub vacuumed_pages: i64,
    /// False when the batch limit was reached: more is left for the next call.
    pub complete: bool,
}

impl Store {
    /// Prune what `policy` says is too old at `now_ms`. Bounded work per call.
    pub async fn prune(
        &self,
        policy: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport {
            complete: true,
            ..PruneReport::default()
        };
        if let Some(keep) = policy.retention {
            let cutoff = now_ms.saturating_sub(keep.as_millis() as i64);
            let (n, done) = self.prune_polls(cutoff).await?;
            report.polls = n;
            report.complete &= done;
            let (n, done) = self.prune_snapshots(cutoff).await?;
            report.snapshots = n;
            report.complete &= done;
        }
        if let Some(keep) = policy.event_retention {
            let cutoff = now_ms.saturating_sub(keep.as_millis() as i64);
            let (events, deliveries, done) = self.prune_events(cutoff, now_ms).await?;
            report.events = events;
            report.deliveries = deliveries;
            report.complete &= done;
        }
        self.metrics.pruned("snapshots", report.snapshots);
        self.metrics.pruned("polls", report.polls);
        self.metrics.pruned("events", report.events);
        self.metrics.pruned("deliveries", report.deliveries);
        if report.snapshots + report.polls + report.events > 0 {
            report.vacuumed_pages = self.incremental_vacuum().await?;
        }
        Ok(report)
    }

    async fn prune_polls(&self, cutoff: i64) -> Result<(u64, bool), StoreError> {
        let mut total = 0;
        for _ in 0..MAX_BATCHES {
            let n = sqlx::query(
                "DELETE FROM polls WHERE id IN (SELECT id FROM polls INDEXED BY polls_by_last_at \
                 WHERE last_at < ? ORDER BY last_at LIMIT ?)",
            )
            .bind(cutoff)
            .bind(BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if (n as i64) < BATCH {
                return Ok((total, true));
            }
            tokio::task::yield_now().await;
        }
        Ok((total, false))
    }

    async fn prune_snapshots(&self, cutoff: i64) -> Result<(u64, bool), StoreError> {
        let mut total = 0;
        for _ in 0..MAX_BATCHES {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM snapshots INDEXED BY snapshots_by_last_seen WHERE last_seen_at < ? \
                 AND NOT EXISTS (SELECT 1 FROM watch_state ws WHERE ws.snapshot_id = snapshots.id) \
                 ORDER BY last_seen_at, id LIMIT ?",
            )
            .bind(cutoff)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            if ids.is_empty() {
                return Ok((total, true));
            }
            let json = serde_json::to_string(&ids).expect("ids serialise");
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            // Older snapshots are stored as differences from newer ones (`delta`). A row that
            // a row staying behind still needs is kept: that happens only if the clock went
            // back between two answers; the older one goes first and this one with a later
            // pass. Computed once, in the transaction, for both the unlinking and the delete.
            let links: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT id, delta_base FROM snapshots \
                 WHERE delta_base IN (SELECT value FROM json_each(?1))",
            )
            .bind(&json)
            .fetch_all(&mut *tx)
            .await?;
            let doomed = prunable(&ids, &links);
            let json = serde_json::to_string(&doomed).expect("ids serialise");
            // Events keep everything they say in their payload; only the link to the raw
            // answer goes (`snapshot_id` is not part of the hash chain).
            let mut deleted = 0;
            for sql in [
                "UPDATE events SET snapshot_id = NULL WHERE snapshot_id IN \
                 (SELECT value FROM json_each(?1))",
                "UPDATE polls SET snapshot_id = NULL WHERE snapshot_id IN \
                 (SELECT value FROM json_each(?1))",
                "DELETE FROM snapshots WHERE id IN (SELECT value FROM json_each(?1)) \
                 AND NOT EXISTS (SELECT 1 FROM watch_state ws WHERE ws.snapshot_id = snapshots.id)",
            ] {
                deleted = sqlx::query(sql)
                    .bind(&json)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            total += deleted;
            if deleted == 0 {
                // Only rows held back for a later pass: nothing more to do now.
                return Ok((total, true));
            }
            if (ids.len() as i64) < BATCH {
                return Ok((total, true));
            }
            tokio::task::yield_now().await;
        }
        Ok((total, false))
    }

    async fn prune_events(&self, cutoff: i64, now_ms: i64) -> Result<(u64, u64, bool), StoreError> {
        let (mut events, mut deliveries) = (0u64, 0u64);
        let mut anchor: Option<(i64, String, u64)> = None;
        // After every cycle: one row read when nothing is old enough yet.
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT observed_at FROM events ORDER BY id LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        if oldest.is_none_or(|at| at >= cutoff) {
            return Ok((0, 0, true));
        }
        let mut complete = false;
        for _ in 0..MAX_BATCHES {
            let rows = sqlx::query(
                "SELECT e.id, e.hash, e.observed_at, EXISTS (SELECT 1 FROM deliveries d \
                 WHERE d.event_id = e.id AND d.status = 'pending') AS pending \
                 FROM events e ORDER BY e.id LIMIT ?",
            )
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            // The oldest events, in chain order, up to the first one that must stay.
            let mut prefix: Vec<(i64, Option<String>)> = Vec::new();
            let mut stopped = rows.len() < BATCH as usize;
            for r in &rows {
                let observed_at: i64 = r.try_get("observed_at").unwrap_or(i64::MAX);
                let pending: bool = r.get("pending");
                if observed_at >= cutoff || pending {
                    stopped = true;
                    break;
                }
                prefix.push((r.get("id"), r.try_get("hash").ok().flatten()));
            }
            let Some((last_id, last_hash)) = prefix.last().cloned() else {
                complete = true;
                break;
            };
            let Some(last_hash) = last_hash else {
                // A row without a hash was not written by dbswatch: leave it for `verify`.
                tracing::warn!(
                    event = last_id,
                    "event retention stopped at an event without a chain hash; run `dbswatch verify`"
                );
                complete = true;
                break;
            };
            let json = serde_json::to_string(&prefix.iter().map(|p| p.0).collect::<Vec<_>>())
                .expect("ids serialise");
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries \
                 WHERE event_id IN (SELECT value FROM json_each(?1)))",
            )
            .bind(&json)
            .execute(&mut *tx)
            .await?;
            deliveries += sqlx::query(
                "DELETE FROM deliveries WHERE event_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let n = sqlx::query("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(&json)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let count = anchor.as_ref().map_or(0, |a| a.2) + n;
            self.write_anchor(&mut tx, last_id, &last_hash, n, now_ms)
                .await?;
            tx.commit().await?;
            events += n;
            anchor = Some((last_id, last_hash, count));
            if stopped {
                complete = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        if let Some((id, _, count)) = anchor {
            tracing::info!(
                through = id,
                events = count,
                "pruned events; chain anchored"
            );
        }
        Ok((events, deliveries, complete))
    }

    /// Record that events up to `through` are gone and the next one links to `hash`. One
    /// anchor row per UTC day: today's row is moved forward, an older one is left as it was.
    async fn write_anchor(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        through: i64,
        hash: &str,
        count: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let day_start = now_ms - now_ms.rem_euclid(86_400_000);
        let moved = sqlx::query(
            "UPDATE chain_anchors SET through_event_id = ?1, last_hash = ?2, \
             pruned_count = pruned_count + ?3, pruned_at = ?4 \
             WHERE id = (SELECT MAX(id) FROM chain_anchors) AND pruned_at >= ?5",
        )
        .bind(through)
        .bind(hash)
        .bind(count as i64)
        .bind(now_ms)
        .bind(day_start)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if moved == 0 {
            sqlx::query(
                "INSERT INTO chain_anchors (through_event_id, last_hash, pruned_count, pruned_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(through)
            .bind(hash)
            .bind(count as i64)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Return up to [`VACUUM_PAGES`] free pages to the file system (no-op without
    /// incremental auto-vacuum).
    async fn incremental_vacuum(&self) -> Result<i64, StoreError> {
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&self.pool)
            .await?;
        let pages = free.min(VACUUM_PAGES);
        if pages > 0 {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA incremental_vacuum({pages})"
            )))
            .execute(&self.pool)
            .await?;
        }
        Ok(pages)
    }

    /// File size in bytes as SQLite sees it (pages in use and free), after a WAL checkpoint.
    pub async fn database_bytes(&self) -> Result<i64, StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.pool)
            .await?;
        let size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&self.pool)
            .await?;
        Ok(pages * size)
    }
}

/// Of `batch`, the snapshots retention may delete: not one that a row staying behind is
/// stored against, directly or through rows held back for the same reason (a chain of
/// differences is only as readable as its newest link). `links` holds (row, the row it is
/// stored against) for every row stored against one in `batch`.
fn prunable(batch: &[i64], links: &[(i64, i64)]) -> Vec<i64> {
    use std::collections::HashSet;
    let in_batch: HashSet<i64> = batch.iter().copied().collect();
    let mut held: HashSet<i64> = HashSet::new();
    loop {
        let before = held.len();
        for &(row, base) in links {
            if in_batch.contains(&base) && (!in_batch.contains(&row) || held.contains(&row)) {
                held.insert(base);
            }
        }
        if held.len() == before {
            break;
        }
    }
    batch
        .iter()
        .copied()
        .filter(|id| !held.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::prunable;

    #[test]
    fn a_chain_is_pruned_only_from_its_old_end() {
        // 1 -> 2 -> 3 -> 4 (each stored against the next); all in the batch but 1.
        let links = [(1, 2), (2, 3), (3, 4)];
        assert_eq!(prunable(&[2, 3, 4], &links), Vec::<i64>::new());
        // All of it: everything goes.
        assert_eq!(prunable(&[1, 2, 3, 4], &links), vec![1, 2, 3, 4]);
        // The usual case, the oldest rows: 1 and 2 go, 3 stays for nobody but is not in it.
        assert_eq!(prunable(&[1, 2], &links), vec![1, 2]);
        // A second watch's chain beside it is judged on its own.
        let links = [(1, 2), (2, 3), (10, 11)];
        assert_eq!(prunable(&[2, 3, 10, 11], &links), vec![10, 11]);
        assert_eq!(prunable(&[], &links), Vec::<i64>::new());
    }
}
