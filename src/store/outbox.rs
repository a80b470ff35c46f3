//! The outbox's SQL: claiming due deliveries, freezing a message's members before it is sent,
//! recording the outcome, postponing what a rate limit holds back, muting flapping repeats,
//! seeding the rate limiter after a restart, poll health, and the `deliveries` / `redeliver`
//! commands.
//!
//! Invariants kept here:
//! - a message's members and idempotency id (`batch_uid`) are written **before** the request
//!   goes out, together with an attempt row marked `sending`; a crash after that point leaves
//!   a pending row whose lease expires and which is sent again with the same id and members;
//! - a row is only ever moved out of `pending` by an attempt outcome, a mute or `redeliver`
//!   (which moves `dead` back to `pending`); nothing is deleted;
//! - a postponement (rate limit, a busy channel) changes `next_attempt_at` only: it is not an
//!   attempt and does not touch the retry count.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use super::{AttemptWrite, DeliveryState, Store, StoreError, chain};
use crate::event::Event;

/// A pending delivery claimed for sending, with what grouping, the retry budget and the
/// idempotency identity need.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The delivery's own idempotency key (the message's id when it is sent alone).
    pub uid: String,
    /// Channel name.
    pub channel: String,
    /// The event.
    pub event: Event,
    /// The message this row is frozen into, when a send of it may have reached the receiver.
    pub batch_uid: Option<String>,
    /// Attempts that count for the backoff (since the last `redeliver`).
    pub backoff_attempts: i64,
    /// When the retry budget started: creation, or the last `redeliver`.
    pub budget_from: i64,
}

/// The moment before a message goes out.
#[derive(Debug, Clone)]
pub struct SendStart<'a> {
    /// The message's idempotency id (DingTalk `msgUuid`, `webhook-id`).
    pub batch_uid: &'a str,
    /// The pending deliveries the message covers.
    pub members: &'a [i64],
    /// Muted repeats the message reports ("N repeats muted").
    pub muted_notes: &'a [i64],
    /// When the request starts, epoch ms.
    pub attempted_at: i64,
    /// Until when the members are ours: a crash leaves them due again at this time.
    pub lease_until: i64,
}

/// The outcome of one message.
#[derive(Debug, Clone)]
pub struct SendFinish<'a> {
    /// The message's idempotency id.
    pub batch_uid: &'a str,
    /// The deliveries it covered.
    pub members: &'a [i64],
    /// The `sending` attempt rows [`Store::begin_send`] wrote.
    pub attempt_ids: &'a [i64],
    /// What happened.
    pub attempt: &'a AttemptWrite,
    /// Where the members stand now.
    pub state: DeliveryState,
    /// The receiver certainly did not take the message (connection refused, 429, a throttle
    /// code): unfreeze the members so the next try may merge them with newer changes under a
    /// new id. Otherwise they stay frozen and the retry carries the same id.
    pub release: bool,
}

/// One attempt, as the `deliveries` command shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// When, epoch ms.
    pub attempted_at_ms: i64,
    /// How long, ms.
    pub duration_ms: i64,
    /// `delivered`, `retryable`, `permanent`, `render_error`, `budget_exhausted`, or `sending`
    /// (no answer recorded: still in flight, or the process stopped during the send).
    pub outcome: String,
    /// HTTP status of the answer.
    pub http_status: Option<i64>,
    /// Vendor code (DingTalk errcode, Slack error string).
    pub vendor_code: Option<String>,
    /// The error, redacted.
    pub error: Option<String>,
    /// The idempotency id that went out.
    pub message_uid: Option<String>,
}

/// One delivery with its attempts, for `dbswatch deliveries`.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryListing {
    /// Row id: what `dbswatch redeliver` takes.
    pub id: i64,
    /// The delivery's idempotency key.
    pub uid: String,
    /// Channel name.
    pub channel: String,
    /// `pending`, `delivered`, `dead` or `muted`.
    pub status: String,
    /// The event's id.
    pub event_id: String,
    /// The event's kind.
    pub kind: String,
    /// The watch.
    pub watch: String,
    /// When the event was seen, epoch ms.
    pub observed_at_ms: i64,
    /// When the delivery was written, epoch ms.
    pub created_at_ms: i64,
    /// When it is (or was last) due, epoch ms.
    pub next_attempt_at_ms: i64,
    /// When the receiver accepted it, epoch ms.
    pub delivered_at_ms: Option<i64>,
    /// Completed attempts.
    pub attempts: i64,
    /// The last error (or why it was muted), redacted.
    pub last_error: Option<String>,
    /// The message it was (or is being) sent in, when several changes were merged or a send
    /// was made.
    pub message_id: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptRecord>,
}

/// Filters for `dbswatch deliveries`.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

/// What `redeliver` did with one id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Redelivery {
    /// Back to `pending`, due now, with a fresh retry budget and the same idempotency key.
    Requeued,
    /// No delivery has this id.
    NotFound,
    /// Only dead deliveries are re-queued; this one is in another state.
    NotDead {
        /// Its status.
        status: String,
    },
}

/// A run of failed polls, read from the poll log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollStreak {
    /// Failed polls since the last successful one.
    pub failures: u32,
    /// When the first of them started, epoch ms.
    pub since_ms: i64,
    /// The last one's DBS error code.
    pub last_code: Option<String>,
    /// The last one's message (already redacted when it was stored).
    pub last_message: String,
}

/// A failed poll, ready to be written, and how to announce the run of failures if this one
/// crosses the threshold.
pub struct PollFailureWrite<'a> {
    /// Watch name.
    pub watch: &'a str,
    /// When the poll started, epoch ms.
    pub started_at: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// DBS error code, if any.
    pub code: Option<&'a str>,
    /// The error, redacted.
    pub message: &'a str,
    /// Failed polls in a row that make `poll.failed`.
    pub threshold: u32,
    /// When the poll ended: the time new deliveries become due.
    pub now: i64,
    /// Builds the `poll.failed` event (with its channels) from the number of failures and the
    /// start of the first; called only when the event is to be written.
    pub announce: &'a mut (dyn FnMut(u32, i64) -> (Event, Vec<String>) + Send),
    /// Delivery ids, one per channel.
    pub new_uid: &'a mut (dyn FnMut() -> String + Send),
}

/// How a failed poll was recorded.
#[derive(Debug, Clone)]
pub struct PollFailureRecorded {
    /// Failed polls in a row, this one included.
    pub failures: u32,
    /// The `poll.failed` event, when this poll crossed the threshold.
    pub announced: Option<Event>,
}

/// `SELECT` the columns of an [`OutboxRow`] with the given `WHERE` clause (a literal, so the
/// statement stays a compile-time string).
macro_rules! select_outbox {
    ($where:literal) => {
        concat!(
            "SELECT d.id, d.uid, d.channel, d.batch_uid, \
             COALESCE(d.requeued_at, d.created_at) AS budget_from, \
             CASE WHEN d.requeued_at IS NULL THEN d.attempts ELSE \
               (SELECT COUNT(*) FROM delivery_attempts a WHERE a.delivery_id = d.id \
                AND a.attempted_at >= d.requeued_at AND a.outcome <> 'sending') \
             END AS backoff_attempts, e.payload \
             FROM deliveries d JOIN events e ON e.id = d.event_id WHERE ",
            $where
        )
    };
}

impl Store {
    /// Claim the pending deliveries whose time has come, oldest first: they are pushed
    /// `lease_ms` into the future in the same transaction, so another pass or process does
    /// not send them too. A process that dies mid-send leaves the lease to expire; the row is
    /// then claimed again and, being frozen into its message, sent with the same identity.
    pub async fn claim_outbox(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(select_outbox!(
            "d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.id LIMIT ?"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>("id")).collect();
        if !ids.is_empty() {
            sqlx::query(
                "UPDATE deliveries SET next_attempt_at = ? \
                 WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(now + lease_ms)
            .bind(id_list(&ids))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        rows.into_iter().map(outbox_row).collect()
    }

    /// Every pending member of a frozen message, oldest first, whether or not it was in the
    /// current claim: a resend must cover exactly what the first send covered.
    pub async fn batch_members(&self, batch_uid: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(select_outbox!(
            "d.batch_uid = ? AND d.status = 'pending' ORDER BY d.id"
        ))
        .bind(batch_uid)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(outbox_row).collect()
    }

    /// The oldest frozen message of a watch still waiting on a channel: (its id, when it is
    /// due). Newer changes of the watch wait behind it, so a retry of an older message never
    /// lands after a newer one.
    pub async fn frozen_message_of_watch(
        &self,
        channel: &str,
        watch: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        Ok(self.frozen_messages(channel).await?.remove(watch))
    }

    /// [`Store::frozen_message_of_watch`] for every watch at once, by watch: one query for a
    /// delivery pass, not one per watch in it.
    pub async fn frozen_messages(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, (String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.watch, d.batch_uid, MIN(d.next_attempt_at) AS due FROM deliveries d \
             JOIN events e ON e.id = d.event_id \
             WHERE d.channel = ? AND d.status = 'pending' AND d.batch_uid IS NOT NULL \
             GROUP BY d.batch_uid ORDER BY MIN(d.id)",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await?;
        let mut oldest = HashMap::new();
        for r in rows {
            oldest
                .entry(r.get::<String, _>("watch"))
                .or_insert_with(|| (r.get("batch_uid"), r.get("due")));
        }
        Ok(oldest)
    }

    /// Move pending deliveries to `at` without counting an attempt: a rate-limit wait, a
    /// channel that is backing off, a message of the same watch that must go first, or a
    /// lease extended while the channel's queue is worked through.
    pub async fn reschedule(&self, ids: &[i64], at: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // One statement however many rows: a backlog's lease is extended in one write.
        sqlx::query(
            "UPDATE deliveries SET next_attempt_at = ? \
             WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'",
        )
        .bind(at)
        .bind(id_list(ids))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Earlier deliveries of `watch` on `channel` that the receiver accepted, whose event was
    /// seen at or after `since_observed`: what a new change is compared with to decide whether
    /// it is a flapping repeat. Pending ones do not count: changes that wait together are
    /// merged into one message, and muting one of them could hide the newest state.
    pub async fn earlier_sends(
        &self,
        channel: &str,
        watch: &str,
        since_observed: i64,
        before_id: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.channel = ? AND e.watch = ? AND d.id < ? \
             AND d.status = 'delivered' AND e.observed_at >= ? ORDER BY d.id",
        )
        .bind(channel)
        .bind(watch)
        .bind(before_id)
        .bind(since_observed)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| event_from(r.get("id"), r.get("payload")))
            .collect()
    }

    /// Mark a pending delivery muted: recorded, never sent. `reason` is kept as its last error
    /// so `deliveries` and `history` say why.
    pub async fn mute(&self, id: i64, reason: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET status = 'muted', last_error = ?, next_attempt_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(reason)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Muted repeats of `watch` on `channel` that no message has reported yet.
    pub async fn unreported_muted(
        &self,
        channel: &str,
        watch: &str,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .unreported_muted_by_watch(channel)
            .await?
            .remove(watch)
            .unwrap_or_default())
    }

    /// [`Store::unreported_muted`] for every watch at once, by watch: one query for a delivery
    /// pass, not one per message in it.
    pub async fn unreported_muted_by_watch(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, Vec<i64>>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.watch, d.id FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.channel = ? AND d.status = 'muted' AND d.batch_uid IS NULL ORDER BY d.id",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await?;
        let mut by_watch: HashMap<String, Vec<i64>> = HashMap::new();
        for r in rows {
            by_watch
                .entry(r.get("watch"))
                .or_default()
                .push(r.get("id"));
        }
        Ok(by_watch)
    }

    /// The muted repeats a frozen message reports.
    pub async fn muted_in_message(&self, batch_uid: &str) -> Result<Vec<i64>, StoreError> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE batch_uid = ? AND status = 'muted' ORDER BY id",
        )
        .bind(batch_uid)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Freeze a message before it goes out: its members and the muted repeats it reports get
    /// its id, the members' lease runs from now, and each member gets a `sending` attempt row
    /// (completed by [`Store::finish_send`]). Returns the attempt row ids.
    pub async fn begin_send(&self, s: &SendStart<'_>) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut attempt_ids = Vec::with_capacity(s.members.len());
        for id in s.members {
            sqlx::query(
                "UPDATE deliveries SET batch_uid = ?, next_attempt_at = ? \
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(s.batch_uid)
            .bind(s.lease_until)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let attempt = sqlx::query(
                "INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, outcome, \
                 message_uid) VALUES (?, ?, 0, 'sending', ?)",
            )
            .bind(id)
            .bind(s.attempted_at)
            .bind(s.batch_uid)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
            attempt_ids.push(attempt);
        }
        for id in s.muted_notes {
            sqlx::query(
                "UPDATE deliveries SET batch_uid = ? WHERE id = ? AND status = 'muted' \
                 AND (batch_uid IS NULL OR batch_uid = ?)",
            )
            .bind(s.batch_uid)
            .bind(id)
            .bind(s.batch_uid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(attempt_ids)
    }

    /// Record how a message went: every member gets the same attempt and the same new state,
    /// atomically.
    pub async fn finish_send(&self, s: &SendFinish<'_>) -> Result<(), StoreError> {
        let a = s.attempt;
        let mut tx = self.begin_write().await?;
        for id in s.attempt_ids {
            sqlx::query(
                "UPDATE delivery_attempts SET duration_ms = ?, outcome = ?, http_status = ?, \
                 vendor_code = ?, error = ? WHERE id = ?",
            )
            .bind(a.duration_ms)
            .bind(&a.outcome)
            .bind(a.http_status.map(i64::from))
            .bind(&a.vendor_code)
            .bind(&a.error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done_at = a.attempted_at + a.duration_ms;
        let (status, next, delivered_at) = match s.state {
            DeliveryState::Delivered => ("delivered", done_at, Some(done_at)),
            DeliveryState::RetryAt(at) => ("pending", at, None),
            DeliveryState::Dead => ("dead", done_at, None),
        };
        let release = s.release && matches!(s.state, DeliveryState::RetryAt(_));
        for id in s.members {
            sqlx::query(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
                 last_error = ?, delivered_at = ?, \
                 batch_uid = CASE WHEN ? THEN NULL ELSE batch_uid END WHERE id = ?",
            )
            .bind(status)
            .bind(next)
            .bind(&a.error)
            .bind(delivered_at)
            .bind(release)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        if release {
            sqlx::query(
                "UPDATE deliveries SET batch_uid = NULL WHERE batch_uid = ? AND status = 'muted'",
            )
            .bind(s.batch_uid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When messages went to any of `channels` after `since` (one time per message, however
    /// many deliveries it covered; interrupted sends included): what a rate-limit window is
    /// seeded with after a restart, so the new process cannot burst past a robot's limit.
    pub async fn recent_sends(
        &self,
        channels: &[String],
        since: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut sends: Vec<(i64, Option<String>)> = Vec::new();
        for channel in channels {
            let rows = sqlx::query(
                "SELECT DISTINCT a.attempted_at, a.message_uid FROM delivery_attempts a \
                 JOIN deliveries d ON d.id = a.delivery_id \
                 WHERE a.attempted_at > ? AND a.outcome <> 'render_error' AND d.channel = ?",
            )
            .bind(since)
            .bind(channel)
            .fetch_all(&self.pool)
            .await?;
            sends.extend(
                rows.iter()
                    .map(|r| (r.get("attempted_at"), r.get("message_uid"))),
            );
        }
        sends.sort();
        sends.dedup();
        Ok(sends.into_iter().map(|(at, _)| at).collect())
    }

    /// Deliveries newest first, each with its attempts, for `dbswatch deliveries`.
    pub async fn list_deliveries(
        &self,
        filter: &OutboxFilter,
    ) -> Result<Vec<DeliveryListing>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.uid, d.channel, d.status, d.attempts, d.next_attempt_at, \
             d.last_error, d.created_at, d.delivered_at, d.batch_uid, \
             e.uid AS event_uid, e.kind, e.watch, e.observed_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.channel = ?2) \
             ORDER BY d.id DESC LIMIT ?3",
        )
        .bind(&filter.status)
        .bind(&filter.channel)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get("id");
            let attempt_log = sqlx::query(
                "SELECT attempted_at, duration_ms, outcome, http_status, vendor_code, error, \
                 message_uid FROM delivery_attempts WHERE delivery_id = ? ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|a| AttemptRecord {
                attempted_at_ms: a.get("attempted_at"),
                duration_ms: a.get("duration_ms"),
                outcome: a.get("outcome"),
                http_status: a.get("http_status"),
                vendor_code: a.get("vendor_code"),
                error: a.get("error"),
                message_uid: a.get("message_uid"),
            })
            .collect();
            out.push(DeliveryListing {
                id,
                uid: r.get("uid"),
                channel: r.get("channel"),
                status: r.get("status"),
                event_id: r.get("event_uid"),
                kind: r.get("kind"),
                watch: r.get("watch"),
                observed_at_ms: r.get("observed_at"),
                created_at_ms: r.get("created_at"),
                next_attempt_at_ms: r.get("next_attempt_at"),
                delivered_at_ms: r.get("delivered_at"),
                attempts: r.get("attempts"),
                last_error: r.get("last_error"),
                message_id: r.get("batch_uid"),
                attempt_log,
            });
        }
        Ok(out)
    }

    /// Put dead deliveries back in the queue, due `now`, with a fresh retry budget and their
    /// own idempotency key (a receiver that did get an earlier attempt still drops the copy).
    /// Anything not dead is left alone and reported.
    pub async fn redeliver(&self, ids: &[i64], now: i64) -> Result<Vec<Redelivery>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM deliveries WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            out.push(match status.as_deref() {
                None => Redelivery::NotFound,
                Some("dead") => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, \
                         requeued_at = ?, batch_uid = NULL WHERE id = ?",
                    )
                    .bind(now)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Redelivery::Requeued
                }
                Some(other) => Redelivery::NotDead {
                    status: other.to_string(),
                },
            });
        }
        tx.commit().await?;
        self.wake_delivery_if(out.contains(&Redelivery::Requeued));
        Ok(out)
    }

    /// Muted deliveries (repeats of a flapping transition, recorded and not sent), which
    /// [`Store::outbox_counts`] leaves out.
    pub async fn muted_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'muted'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The current run of failed polls of a watch, `None` when its last poll succeeded (or it
    /// was never polled).
    pub async fn poll_streak(&self, watch: &str) -> Result<Option<PollStreak>, StoreError> {
        streak(&self.pool, watch).await
    }

    /// Whether the watch's poll failures were announced and not yet followed by
    /// `poll.recovered`: the last poll-health event of the watch is `poll.failed`.
    pub async fn poll_failure_announced(&self, watch: &str) -> Result<bool, StoreError> {
        announced(&self.pool, watch).await
    }

    /// Record a failed poll. When it makes `threshold` failures in a row and the run was not
    /// announced yet, `poll.failed` and its deliveries are written in the same transaction:
    /// announced once per run of failures, and never lost.
    pub async fn record_poll_failure(
        &self,
        w: PollFailureWrite<'_>,
    ) -> Result<PollFailureRecorded, StoreError> {
        self.flush_noted_of(w.watch).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO polls (watch, started_at, duration_ms, outcome, error_code, error_message) \
             VALUES (?, ?, ?, 'error', ?, ?)",
        )
        .bind(w.watch)
        .bind(w.started_at)
        .bind(w.duration_ms)
        .bind(w.code)
        .bind(w.message)
        .execute(&mut *tx)
        .await?;
        let run = streak(&mut *tx, w.watch).await?;
        let failures = run.as_ref().map_or(1, |s| s.failures);
        let since = run.as_ref().map_or(w.started_at, |s| s.since_ms);
        let mut announced_event = None;
        if failures >= w.threshold && !announced(&mut *tx, w.watch).await? {
            let written = [(w.announce)(failures, since)];
            chain::append_events(&mut tx, &written, None, w.now, w.new_uid).await?;
            let [(event, _)] = written;
            announced_event = Some(event);
        }
        tx.commit().await?;
        self.ledger.set_failed(w.watch);
        self.wake_delivery_if(announced_event.is_some());
        Ok(PollFailureRecorded {
            failures,
            announced: announced_event,
        })
    }
}

async fn streak<'e, E>(executor: E, watch: &str) -> Result<Option<PollStreak>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    // Errors after the last successful poll row. Poll rows are only ever appended (an
    // unchanged poll may extend the newest row, never an older one), so id order is time order.
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(started_at) AS since, \
         (SELECT error_code FROM polls WHERE watch = ?1 ORDER BY id DESC LIMIT 1) AS code, \
         (SELECT error_message FROM polls WHERE watch = ?1 ORDER BY id DESC LIMIT 1) AS message \
         FROM polls WHERE watch = ?1 AND outcome = 'error' AND id > \
         COALESCE((SELECT MAX(id) FROM polls WHERE watch = ?1 AND outcome <> 'error'), 0)",
    )
    .bind(watch)
    .fetch_one(executor)
    .await?;
    let n: i64 = row.get("n");
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(PollStreak {
        failures: u32::try_from(n).unwrap_or(u32::MAX),
        since_ms: row.get("since"),
        last_code: row.get("code"),
        last_message: row.get::<Option<String>, _>("message").unwrap_or_default(),
    }))
}

async fn announced<'e, E>(executor: E, watch: &str) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM events WHERE watch = ? AND kind IN ('poll.failed', 'poll.recovered') \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(watch)
    .fetch_optional(executor)
    .await?;
    Ok(kind.as_deref() == Some("poll.failed"))
}

fn event_from(id: i64, payload: String) -> Result<Event, StoreError> {
    serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
        table: "events",
        id,
        reason: e.to_string(),
    })
}

fn outbox_row(row: sqlx::sqlite::SqliteRow) -> Result<OutboxRow, StoreError> {
    let id: i64 = row.get("id");
    Ok(OutboxRow {
        id,
        uid: row.get("uid"),
        channel: row.get("channel"),
        event: event_from(id, row.get("payload"))?,
        batch_uid: row.get("batch_uid"),
        backoff_attempts: row.get("backoff_attempts"),
        budget_from: row.get("budget_from"),
    })
}

/// Row ids as the JSON array that `json_each(?)` reads: one bound parameter for any number.
fn id_list(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8 + 2);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, PollHealth};
    use crate::snapshot::{Item, Scope, Snapshot, Target};
    use crate::store::tests::signalled;
    use crate::store::{PollOutcome, PollWrite};

    fn snap() -> Snapshot {
        Snapshot::new(
            Some("running".into()),
            Some(10),
            vec![Item {
                code: Some("A".into()),
                state: Some("running".into()),
                ..Item::default()
            }],
        )
    }

    fn event(id: &str, change: Change, at: i64) -> Event {
        Event {
            id: id.into(),
            scope: Scope::Precheck,
            change,
            watch: "w".into(),
            target: Target::BackupPlan("p".into()),
            status_before: None,
            status: Some("running".into()),
            progress_before: None,
            progress: Some(10),
            items: vec![],
            item_change: None,
            item_total: 1,
            observed_at_ms: at,
            job_error: None,
            restore_task: None,
            poll: None,
        }
    }

    /// Write `events`, each to channel `a`, as one poll at `now`.
    async fn write(store: &Store, events: &[Event], now: i64) -> PollOutcome {
        let target = Target::BackupPlan("p".into());
        let base = store
            .baseline("w", &target)
            .await
            .unwrap()
            .map(|b| b.content_hash);
        let routed: Vec<(Event, Vec<String>)> = events
            .iter()
            .map(|e| (e.clone(), vec!["a".to_string()]))
            .collect();
        let mut uid = || uuid::Uuid::new_v4().to_string();
        store
            .record_poll(PollWrite {
                watch: "w",
                target: &target,
                started_at: now,
                duration_ms: 1,
                finished_at: now,
                snapshot: &snap(),
                raw_body: "{}",
                request_id: None,
                expected_hash: base.as_deref(),
                events: &routed,
                new_uid: &mut uid,
            })
            .await
            .unwrap()
    }

    fn attempt(outcome: &str, at: i64) -> AttemptWrite {
        AttemptWrite {
            attempted_at: at,
            duration_ms: 5,
            outcome: outcome.into(),
            http_status: Some(500),
            vendor_code: None,
            error: Some("HTTP 500".into()),
        }
    }

    #[tokio::test]
    async fn a_message_interrupted_by_a_crash_is_claimed_again_frozen() {
        let store = Store::open_in_memory().await.unwrap();
        write(
            &store,
            &[
                event("e1", Change::Started, 10),
                event("e2", Change::Failed, 10),
            ],
            10,
        )
        .await;
        let claimed = store.claim_outbox(10, 1_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(claimed.iter().all(|r| r.batch_uid.is_none()));
        let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
        let attempts = store
            .begin_send(&SendStart {
                batch_uid: "m1",
                members: &ids,
                muted_notes: &[],
                attempted_at: 20,
                lease_until: 1_020,
            })
            .await
            .unwrap();
        assert_eq!(attempts.len(), 2);
        // The process dies here. Nothing is due until the lease ends...
        assert!(
            store
                .claim_outbox(1_019, 1_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // ...then the same members come back under the same id.
        let again = store.claim_outbox(1_020, 1_000, 10).await.unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|r| r.batch_uid.as_deref() == Some("m1")));
        assert_eq!(store.batch_members("m1").await.unwrap().len(), 2);
        let listed = store
            .list_deliveries(&OutboxFilter::default())
            .await
            .unwrap();
        assert_eq!(listed[0].attempt_log[0].outcome, "sending");
        assert_eq!(listed[0].attempt_log[0].message_uid.as_deref(), Some("m1"));
        assert_eq!(
            listed[0].attempts, 0,
            "an interrupted send is not a completed attempt"
        );
    }

    #[tokio::test]
    async fn a_refused_message_is_unfrozen_and_an_ambiguous_one_stays_frozen() {
        let store = Store::open_in_memory().await.unwrap();
        write(&store, &[event("e1", Change::Failed, 10)], 10).await;
        let id = store.claim_outbox(10, 1_000, 10).await.unwrap()[0].id;
        for (release, frozen) in [(false, Some("m1")), (true, None)] {
            let attempt_ids = store
                .begin_send(&SendStart {
                    batch_uid: "m1",
                    members: &[id],
                    muted_notes: &[],
                    attempted_at: 20,
                    lease_until: 1_020,
                })
                .await
                .unwrap();
            store
                .finish_send(&SendFinish {
                    batch_uid: "m1",
                    members: &[id],
                    attempt_ids: &attempt_ids,
                    attempt: &attempt("retryable", 20),
                    state: DeliveryState::RetryAt(500),
                    release,
                })
                .await
                .unwrap();
            let row = &store.claim_outbox(500, 1_000, 10).await.unwrap()[0];
            assert_eq!(row.batch_uid.as_deref(), frozen, "release = {release}");
        }
        let listed = store
            .list_deliveries(&OutboxFilter::default())
            .await
            .unwrap();
        assert_eq!(listed[0].attempts, 2);
        assert_eq!(listed[0].attempt_log[1].outcome, "retryable");
        assert_eq!(listed[0].attempt_log[1].http_status, Some(500));
    }

    #[tokio::test]
    async fn muted_repeats_are_reported_by_exactly_one_message() {
        let store = Store::open_in_memory().await.unwrap();
        write(
            &store,
            &[
                event("e1", Change::Failed, 10),
                event("e2", Change::Failed, 11),
            ],
            10,
        )
        .await;
        let rows = store.claim_outbox(10, 1_000, 10).await.unwrap();
        let earlier = store.earlier_sends("a", "w", 0, rows[1].id).await.unwrap();
        assert!(
            earlier.is_empty(),
            "a pending change is merged with the new one, not compared"
        );
        store.mute(rows[1].id, "muted: repeat", 10).await.unwrap();
        assert_eq!(store.muted_count().await.unwrap(), 1);
        assert_eq!(
            store.unreported_muted("a", "w").await.unwrap(),
            [rows[1].id]
        );
        let attempt_ids = store
            .begin_send(&SendStart {
                batch_uid: "m1",
                members: &[rows[0].id],
                muted_notes: &[rows[1].id],
                attempted_at: 20,
                lease_until: 1_020,
            })
            .await
            .unwrap();
        assert!(store.unreported_muted("a", "w").await.unwrap().is_empty());
        assert_eq!(store.muted_in_message("m1").await.unwrap(), [rows[1].id]);
        // Refused: the note goes back to the pool, for the next message to report.
        store
            .finish_send(&SendFinish {
                batch_uid: "m1",
                members: &[rows[0].id],
                attempt_ids: &attempt_ids,
                attempt: &attempt("retryable", 20),
                state: DeliveryState::RetryAt(30),
                release: true,
            })
            .await
            .unwrap();
        assert_eq!(
            store.unreported_muted("a", "w").await.unwrap(),
            [rows[1].id]
        );
        let counts = store.outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.dead), (1, 0), "muted is neither");
    }

    #[tokio::test]
    async fn the_rate_limiter_is_seeded_with_messages_not_rows() {
        let store = Store::open_in_memory().await.unwrap();
        write(
            &store,
            &[
                event("e1", Change::Started, 10),
                event("e2", Change::Failed, 10),
                event("e3", Change::Passed, 10),
            ],
            10,
        )
        .await;
        let ids: Vec<i64> = store
            .claim_outbox(10, 1_000, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        store
            .begin_send(&SendStart {
                batch_uid: "m1",
                members: &ids,
                muted_notes: &[],
                attempted_at: 100,
                lease_until: 1_100,
            })
            .await
            .unwrap();
        assert_eq!(store.recent_sends(&["a".into()], 0).await.unwrap(), [100]);
        assert!(
            store
                .recent_sends(&["a".into()], 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .recent_sends(&["b".into()], 0)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn redeliver_requeues_only_dead_ones_with_a_fresh_budget() {
        let store = Store::open_in_memory().await.unwrap();
        write(
            &store,
            &[
                event("e1", Change::Failed, 10),
                event("e2", Change::Started, 10),
            ],
            10,
        )
        .await;
        let rows = store.claim_outbox(10, 1_000, 10).await.unwrap();
        for (row, state) in rows
            .iter()
            .zip([DeliveryState::Dead, DeliveryState::Delivered])
        {
            let attempt_ids = store
                .begin_send(&SendStart {
                    batch_uid: &row.uid,
                    members: &[row.id],
                    muted_notes: &[],
                    attempted_at: 20,
                    lease_until: 1_020,
                })
                .await
                .unwrap();
            store
                .finish_send(&SendFinish {
                    batch_uid: &row.uid,
                    members: &[row.id],
                    attempt_ids: &attempt_ids,
                    attempt: &attempt("permanent", 20),
                    state,
                    release: false,
                })
                .await
                .unwrap();
        }
        let signal = store.outbox_signal();
        while signalled(&signal) {}
        assert_eq!(
            store.redeliver(&[rows[1].id, 999], 5_000).await.unwrap(),
            [
                Redelivery::NotDead {
                    status: "delivered".into()
                },
                Redelivery::NotFound
            ]
        );
        assert!(!signalled(&signal), "nothing was re-queued");
        let results = store
            .redeliver(&[rows[0].id, rows[1].id, 999], 5_000)
            .await
            .unwrap();
        assert!(
            signalled(&signal),
            "a re-queued row wakes the delivery task"
        );
        assert_eq!(
            results,
            [
                Redelivery::Requeued,
                Redelivery::NotDead {
                    status: "delivered".into()
                },
                Redelivery::NotFound
            ]
        );
        let again = store.claim_outbox(5_000, 1_000, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].uid, rows[0].uid, "the same idempotency key");
        assert_eq!(again[0].budget_from, 5_000);
        assert_eq!(again[0].backoff_attempts, 0);
        assert_eq!(again[0].batch_uid, None);
    }

    #[tokio::test]
    async fn a_run_of_failed_polls_is_announced_once() {
        let store = Store::open_in_memory().await.unwrap();
        write(&store, &[], 1).await;
        let signal = store.outbox_signal();
        let mut announced = Vec::new();
        let mut woken = Vec::new();
        for n in 0..5i64 {
            let mut announce = |failures: u32, since: i64| {
                let mut e = event(&format!("pf{n}"), Change::PollFailed, 100 + n);
                e.poll = Some(PollHealth {
                    failures,
                    since_ms: since,
                    error_kind: Some("throttled".into()),
                    code: Some("Throttling.User".into()),
                    message: "slow down".into(),
                    hint: "wait".into(),
                });
                (e, vec!["a".to_string()])
            };
            let mut uid = || uuid::Uuid::new_v4().to_string();
            let recorded = store
                .record_poll_failure(PollFailureWrite {
                    watch: "w",
                    started_at: 100 + n,
                    duration_ms: 1,
                    code: Some("Throttling.User"),
                    message: "slow down",
                    threshold: 3,
                    now: 100 + n,
                    announce: &mut announce,
                    new_uid: &mut uid,
                })
                .await
                .unwrap();
            assert_eq!(recorded.failures, n as u32 + 1);
            announced.extend(recorded.announced);
            woken.push(signalled(&signal));
        }
        assert_eq!(announced.len(), 1, "{announced:?}");
        assert_eq!(
            woken,
            [false, false, true, false, false],
            "only the failure that queued poll.failed wakes the delivery task"
        );
        let health = announced[0].poll.as_ref().unwrap();
        assert_eq!((health.failures, health.since_ms), (3, 100));
        assert!(store.poll_failure_announced("w").await.unwrap());
        let run = store.poll_streak("w").await.unwrap().unwrap();
        assert_eq!(run.failures, 5);
        assert_eq!(run.last_code.as_deref(), Some("Throttling.User"));
        // A success ends the run (the pipeline writes poll.recovered with it).
        write(&store, &[event("pr", Change::PollRecovered, 200)], 200).await;
        assert_eq!(store.poll_streak("w").await.unwrap(), None);
        assert!(!store.poll_failure_announced("w").await.unwrap());
        let due = store.claim_outbox(1_000, 1, 10).await.unwrap();
        let kinds: Vec<String> = due.iter().map(|r| r.event.kind()).collect();
        assert_eq!(kinds, ["poll.failed", "poll.recovered"]);
    }

    /// `poll.failed` is written by `record_poll_failure`, not `record_poll`: it must be chained
    /// all the same, or `verify` calls it a forgery and the events after it skip over it.
    #[tokio::test]
    async fn poll_failed_and_poll_recovered_are_chained_like_every_event() {
        let store = Store::open_in_memory().await.unwrap();
        write(&store, &[event("s1", Change::Started, 1)], 1).await;
        for n in 0..3i64 {
            let mut announce = |failures: u32, since: i64| {
                let mut e = event("pf", Change::PollFailed, 100 + n);
                e.poll = Some(PollHealth {
                    failures,
                    since_ms: since,
                    error_kind: Some("throttled".into()),
                    code: Some("Throttling.User".into()),
                    message: "slow down".into(),
                    hint: "wait".into(),
                });
                (e, vec!["a".to_string()])
            };
            let mut uid = || uuid::Uuid::new_v4().to_string();
            let recorded = store
                .record_poll_failure(PollFailureWrite {
                    watch: "w",
                    started_at: 100 + n,
                    duration_ms: 1,
                    code: Some("Throttling.User"),
                    message: "slow down",
                    threshold: 3,
                    now: 100 + n,
                    announce: &mut announce,
                    new_uid: &mut uid,
                })
                .await
                .unwrap();
            assert_eq!(recorded.announced.is_some(), n == 2);
        }
        write(&store, &[event("pr", Change::PollRecovered, 200)], 200).await;

        let rows: Vec<(i64, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT id, kind, prev_hash, hash FROM events ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let kinds: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(kinds, ["precheck.started", "poll.failed", "poll.recovered"]);
        for pair in rows.windows(2) {
            assert!(pair[1].2.is_some(), "{} has no prev_hash", pair[1].1);
            assert_eq!(pair[1].2, pair[0].3, "{} links to {}", pair[1].1, pair[0].1);
        }
        let report = store.verify_chain(300).await.unwrap();
        assert!(report.verdict.ok(), "{:?}", report.verdict.problems);
        assert_eq!(report.verdict.events, 3);
        let (last_id, _, _, last_hash) = rows.last().unwrap();
        assert_eq!(report.head_id, Some(*last_id), "the head is the last event");
        assert_eq!(Some(&report.verdict.head_hash), last_hash.as_ref());
        let stored: (Option<i64>, Option<String>) =
            sqlx::query_as("SELECT head_id, head_hash FROM chain_state WHERE id = 1")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(stored, (Some(*last_id), last_hash.clone()));
    }

    #[tokio::test]
    async fn migration_3_keeps_every_delivery_and_attempt_of_a_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("v1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/20261203000001_init.sql"
            ),
            v1.join("20261203000001_init.sql"),
        )
        .unwrap();
        let file = dir.path().join("old.db");
        {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::migrate::Migrator::new(v1.as_path())
                .await
                .unwrap()
                .run(&pool)
                .await
                .unwrap();
            for sql in [
                "INSERT INTO events (id, uid, watch, kind, target_type, target_id, observed_at, \
                 payload) VALUES (1, 'e1', 'w', 'precheck.failed', 'backup_plan', 'p', 5, \
                 '{\"id\":\"e1\",\"scope\":\"precheck\",\"change\":\"failed\",\"watch\":\"w\",\
                 \"target\":{\"backup_plan\":\"p\"},\"status_before\":null,\"status\":\"failed\",\
                 \"progress_before\":null,\"progress\":100,\"items\":[],\"item_change\":null,\
                 \"item_total\":1,\"observed_at_ms\":5}')",
                "INSERT INTO deliveries (id, uid, event_id, channel, status, attempts, \
                 next_attempt_at, last_error, created_at) \
                 VALUES (1, 'd1', 1, 'a', 'pending', 1, 50, 'HTTP 500', 5)",
                "INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, outcome, \
                 http_status, error) VALUES (1, 6, 3, 'retryable', 500, 'HTTP 500')",
            ] {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let store = Store::open(&file).await.unwrap();
        let listed = store
            .list_deliveries(&OutboxFilter::default())
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].uid, "d1");
        assert_eq!(listed[0].last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(listed[0].attempt_log.len(), 1);
        assert_eq!(listed[0].attempt_log[0].message_uid.as_deref(), Some("d1"));
        let problems: Vec<String> =
            sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        store.mute(1, "muted: test", 60).await.unwrap();
        assert_eq!(
            store.muted_count().await.unwrap(),
            1,
            "the new status is allowed"
        );
        let claimed = store.claim_outbox(1_000, 10, 10).await.unwrap();
        assert!(claimed.is_empty());
    }
}
