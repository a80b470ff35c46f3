//! SQLite persistence: snapshots, polls, events, the delivery outbox and its attempts.
//!
//! All SQL lives here. The invariants the rest of the product relies on:
//! - a poll that produced events writes the snapshot, the new diff baseline, the events and one
//!   pending delivery per (event, channel) in **one transaction**: a crash can never keep the
//!   new state while losing the notification, or the reverse;
//! - an unchanged poll writes no snapshot row, only a poll record and a `last_seen` bump;
//! - a failed poll never touches the baseline, so the last good snapshot survives any bad input;
//! - every event is chained (`prev_hash`, `hash`) in the transaction that writes it, and the
//!   chain head moves with it (see [`crate::audit::chain`]): events are written only by
//!   `chain::append_events`;
//! - consecutive unchanged polls of a watch share one `polls` row (count, first and last time),
//!   so an idle watch adds no rows; errors, first answers and changes get a row each.
//!
//! Audit queries, verification and retention live in the submodules `query`, `chain` and
//! `retention`.

mod chain;
mod delta;
mod ledger;
mod query;
mod retention;

pub use ledger::UnchangedPoll;

pub use chain::VerifyReport;
pub use query::{
    Cursor, DeliveryFilter, DeliveryPage, DeliveryRow, EventFilter, EventPage, SnapshotRow,
    WatchSummary,
};
pub use retention::{PruneReport, RetentionPolicy};

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;

use crate::audit::metrics::Metrics;
use crate::event::Event;
use crate::snapshot::{Snapshot, Target};

mod outbox;

pub use outbox::{
    AttemptRecord, DeliveryListing, OutboxFilter, OutboxRow, PollFailureRecorded, PollFailureWrite,
    PollStreak, Redelivery, SendFinish, SendStart,
};

/// A storage failure, in words that say what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error(
        "cannot open the database {path}: {source}; check that the folder exists and is writable"
    )]
    Open {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot apply the database migrations: {0}; is this file from a newer dbswatch?")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// Another process recorded a poll of the same watch since the baseline was read; the
    /// caller diffs again against the new baseline.
    #[error("another dbswatch process recorded a poll of `{0}` at the same time")]
    Conflict(String),
    /// A stored row could not be read back.
    #[error("corrupt row in {table} (id {id}): {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row id.
        id: i64,
        /// What was wrong.
        reason: String,
    },
}

/// The database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Read-only connections to the same file (file databases only): audit queries, the API
    /// and `verify` read here, so a long read never waits for, or holds up, the writer.
    reader: Option<SqlitePool>,
    /// Counters for `/metrics`, updated after each commit. Shared by every clone.
    metrics: Arc<Metrics>,
    /// Known baselines and unchanged polls not written yet (`ledger`). Shared by every clone.
    ledger: Arc<ledger::Ledger>,
    /// Notified after each commit that queues deliveries, so the daemon's delivery task can
    /// sleep until there is something to send instead of re-reading the outbox on a timer.
    /// Shared by every clone; commits by other processes on the same file do not notify it.
    outbox_signal: Arc<Notify>,
    /// A connection of its own that copies the WAL into the database file after each ledger
    /// flush and each poll cycle (file databases opened for writing only). See
    /// [`Store::checkpoint_in_background`].
    checkpointer: Option<Arc<Checkpointer>>,
    /// Opened read-only on a file an older dbswatch wrote (before migration 6, which the
    /// reader cannot apply): every snapshot row holds its texts whole and the tables for
    /// differences do not exist yet, so snapshot reads use the old form.
    whole_snapshots_only: bool,
}

/// The background checkpoint's connection, and whether a checkpoint is running now.
#[derive(Debug)]
struct Checkpointer {
    pool: SqlitePool,
    running: std::sync::atomic::AtomicBool,
}

/// WAL pages after which the writer checkpoints by itself, inside a commit. Only a safety net:
/// the WAL is copied into the file by [`Store::checkpoint_in_background`] after every ledger
/// flush and every poll cycle, long before this. SQLite's default (1,000 pages) put a
/// checkpoint, and its fsync of the database file, into one commit in a few hundred: several
/// milliseconds added to that change's detection-to-delivery time.
const WAL_AUTOCHECKPOINT_PAGES: &str = "8192";

/// How a successful poll was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollOutcome {
    /// The first answer ever stored for this watch.
    First,
    /// The content differs from the baseline.
    Changed,
    /// Same content as the baseline (only per-request noise differed).
    Unchanged,
}

impl PollOutcome {
    fn as_str(self) -> &'static str {
        match self {
            PollOutcome::First => "first",
            PollOutcome::Changed => "changed",
            PollOutcome::Unchanged => "unchanged",
        }
    }
}

/// What the diff engine compares against.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The last stored snapshot.
    pub snapshot: Snapshot,
    /// Its content hash.
    pub content_hash: String,
}

/// One successful poll, ready to be written.
pub struct PollWrite<'a> {
    /// Watch name.
    pub watch: &'a str,
    /// The DBS object.
    pub target: &'a Target,
    /// When the poll started, epoch ms.
    pub started_at: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// When the result was in, epoch ms: the time new deliveries become due.
    pub finished_at: i64,
    /// The new snapshot.
    pub snapshot: &'a Snapshot,
    /// The exact body received.
    pub raw_body: &'a str,
    /// DBS RequestId.
    pub request_id: Option<&'a str>,
    /// Content hash of the baseline the events were computed against (`None`: no baseline).
    /// When the stored baseline moved meanwhile, nothing is written and `Conflict` is returned.
    pub expected_hash: Option<&'a str>,
    /// Events the diff produced, each with the channels it is routed to.
    pub events: &'a [(Event, Vec<String>)],
    /// Delivery ids, one per (event, channel), generated by the caller.
    pub new_uid: &'a mut (dyn FnMut() -> String + Send),
}

/// A delivery that is due.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Row id.
    pub id: i64,
    /// Idempotency key sent to the receiver.
    pub uid: String,
    /// Channel name.
    pub channel: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// The event to send.
    pub event: Event,
}

/// One send attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptWrite {
    /// When, epoch ms.
    pub attempted_at: i64,
    /// How long, ms.
    pub duration_ms: i64,
    /// `delivered`, `retryable`, `permanent` or `render_error`.
    pub outcome: String,
    /// HTTP status.
    pub http_status: Option<u16>,
    /// Vendor code.
    pub vendor_code: Option<String>,
    /// Error text, already redacted.
    pub error: Option<String>,
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// Done.
    Delivered,
    /// Try again at this time (epoch ms).
    RetryAt(i64),
    /// Will not be retried.
    Dead,
}

/// The simple history filter (`dbswatch history --watch`); [`EventFilter`] has every filter.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only this watch.
    pub watch: Option<String>,
    /// At most this many events.
    pub limit: Option<i64>,
}

/// One event with where it went.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Row id: the position in the hash chain.
    pub seq: i64,
    /// Event uid.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Watch name.
    pub watch: String,
    /// `backup_plan` or `restore_task`.
    pub target_type: String,
    /// Plan or task id.
    pub target_id: String,
    /// Status after the event.
    pub status: Option<String>,
    /// Epoch ms.
    pub observed_at_ms: i64,
    /// The whole event.
    pub event: Event,
    /// One per channel.
    pub deliveries: Vec<DeliverySummary>,
    /// The event's chain hash (`None` only for rows not written by dbswatch).
    pub hash: Option<String>,
}

/// Where one notification stands.
#[derive(Debug, Clone, Serialize)]
pub struct DeliverySummary {
    /// Channel name.
    pub channel: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error, redacted.
    pub last_error: Option<String>,
    /// When it was delivered, epoch ms.
    pub delivered_at_ms: Option<i64>,
}

/// One `polls` row: a single poll, or a run of unchanged polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollRecord {
    /// `first`, `changed`, `unchanged` or `error`.
    pub outcome: String,
    /// Polls this row stands for (more than one only for `unchanged`).
    pub count: i64,
    /// When the first of them started, epoch ms.
    pub first_at: i64,
    /// When the last of them started, epoch ms.
    pub last_at: i64,
    /// Their total duration, ms.
    pub total_duration_ms: i64,
    /// DBS error code, for errors.
    pub error_code: Option<String>,
    /// Error text, redacted, for errors.
    pub error_message: Option<String>,
}

/// Counts of deliveries by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting to be sent or retried.
    pub pending: i64,
    /// Sent.
    pub delivered: i64,
    /// Given up.
    pub dead: i64,
}

/// Pool settings for a database file on this machine: `max` connections, opened when first
/// needed and then kept for the life of the process. No liveness ping before each use (a
/// local file cannot hang up, and the ping is one more round trip to the connection's thread
/// for every statement), and no idle or lifetime reaping (no maintenance timer waking an idle
/// daemon, and no connection thread re-created later from a lower-priority poll worker, see
/// `crate::priority`).
fn local_pool(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
}

impl Store {
    /// Open (creating when missing) and migrate the database file.
    ///
    /// A new file is created with incremental auto-vacuum, so retention can hand freed pages
    /// back to the file system a few at a time. A file created by an older version (no
    /// auto-vacuum) is converted once, here, with one `VACUUM` (which rewrites the file and
    /// needs it to itself for a moment); if another process holds it, the conversion is retried
    /// at the next open and pruning still works, only without shrinking the file.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-512")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES);
        let mut store = Self::connect(options, &path.display().to_string()).await?;
        store.ensure_incremental_vacuum().await;
        // Opened after the writer, so the WAL and its index exist for read-only connections.
        // No pragmas: a read-only connection must not try to change the file's settings.
        let read_options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let reader = local_pool(2)
            .connect_with(read_options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        // Both connections now, from the opening thread, and kept (see `local_pool`).
        let open_error = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let first = reader.acquire().await.map_err(open_error)?;
        let second = reader.acquire().await.map_err(open_error)?;
        drop((first, second));
        store.reader = Some(reader);
        // Read-write, no pragmas of its own but a small cache: a checkpoint reads the WAL and
        // writes the file, it hardly uses the page cache.
        let checkpoint_options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-64");
        let pool = local_pool(1)
            .connect_with(checkpoint_options)
            .await
            .map_err(open_error)?;
        store.checkpointer = Some(Arc::new(Checkpointer {
            pool,
            running: std::sync::atomic::AtomicBool::new(false),
        }));
        Ok(store)
    }

    /// Copy the WAL into the database file now, from the checkpoint's own connection, without
    /// waiting for it. A PASSIVE checkpoint takes no write lock: commits go on meanwhile, so a
    /// change recorded during it is not held up. One at a time; a call while one runs is
    /// dropped: the WAL it would have copied waits for the next flush's or cycle's call, or
    /// at worst for the writer's own threshold (`WAL_AUTOCHECKPOINT_PAGES`).
    pub fn checkpoint_in_background(&self) {
        use std::sync::atomic::Ordering;
        let Some(checkpointer) = &self.checkpointer else {
            return;
        };
        if checkpointer.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let checkpointer = Arc::clone(checkpointer);
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&checkpointer.pool)
                .await
            {
                // The writer's own checkpoint (WAL_AUTOCHECKPOINT_PAGES) is the fallback.
                tracing::debug!(error = %e, "background checkpoint failed");
            }
            checkpointer.running.store(false, Ordering::Release);
        });
    }

    /// Open an existing database for reading only (history for auditors without write access).
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = local_pool(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let whole_snapshots_only: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM sqlite_schema \
             WHERE type = 'table' AND name = 'current_bodies')",
        )
        .fetch_one(&pool)
        .await?;
        Ok(Store {
            pool,
            metrics: Arc::new(Metrics::default()),
            reader: None,
            ledger: Arc::default(),
            outbox_signal: Arc::new(Notify::new()),
            checkpointer: None,
            whole_snapshots_only,
        })
    }

    /// A private in-memory database, for tests and `replay`.
    pub async fn open_in_memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Open {
                path: ":memory:".into(),
                source,
            })?
            .foreign_keys(true);
        Self::connect(options, ":memory:").await
    }

    async fn connect(options: SqliteConnectOptions, label: &str) -> Result<Store, StoreError> {
        // One connection: SQLite has one writer anyway, and a single connection makes every
        // transaction strictly serial, so concurrent polls can never interleave their diffs.
        let pool = local_pool(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: label.to_string(),
                source,
            })?;
        // Two processes opening a new file at once race to create the schema; the loser sees
        // "table already exists". Trying again finds the migrations applied.
        let mut tries = 0;
        loop {
            match sqlx::migrate!("./migrations").run(&pool).await {
                Ok(()) => break,
                Err(_) if tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let store = Store {
            pool,
            reader: None,
            metrics: Arc::new(Metrics::default()),
            ledger: Arc::default(),
            outbox_signal: Arc::new(Notify::new()),
            checkpointer: None,
            whole_snapshots_only: false,
        };
        store.backfill_chain().await?;
        Ok(store)
    }

    /// Where reads go: the read-only pool when there is one.
    fn reader(&self) -> &SqlitePool {
        self.reader.as_ref().unwrap_or(&self.pool)
    }

    /// The process's counters (polls, latency, events, deliveries, pruned rows).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Woken (`notify_one`, so a wake-up sent while nobody waits is kept for the next wait)
    /// right after a commit that queued deliveries: a change is sent as soon as it is stored,
    /// not at the next timer tick or the end of a poll cycle. Writes by other processes on the
    /// same file do not wake it.
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox_signal.clone()
    }

    /// Called right after a commit; one line at each call site, so the writes stay readable.
    fn wake_delivery_if(&self, queued: bool) {
        if queued {
            self.outbox_signal.notify_one();
        }
    }

    /// Switch a file made without auto-vacuum to incremental auto-vacuum (once).
    async fn ensure_incremental_vacuum(&self) {
        let mode: i64 = match sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&self.pool)
            .await
        {
            Ok(m) => m,
            Err(_) => return,
        };
        if mode == 2 {
            return;
        }
        tracing::info!("converting the database to incremental auto-vacuum (one VACUUM)");
        let result = async {
            sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                .execute(&self.pool)
                .await?;
            sqlx::query("VACUUM").execute(&self.pool).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not convert the database to incremental \
                auto-vacuum now; retried at the next start");
        }
    }

    /// Write transactions take the write lock up front (`BEGIN IMMEDIATE`), so two processes
    /// on one file queue on the busy timeout instead of failing with "database is locked" when a
    /// read transaction tries to upgrade.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The snapshot the next poll of `watch` is compared with. A watch that now points at a
    /// different plan or task has no baseline: its first poll is a first poll.
    pub async fn baseline(
        &self,
        watch: &str,
        target: &Target,
    ) -> Result<Option<Baseline>, StoreError> {
        let row = sqlx::query(
            "SELECT content, content_hash FROM watch_state \
             WHERE watch = ? AND target_type = ? AND target_id = ?",
        )
        .bind(watch)
        .bind(target.type_name())
        .bind(target.id())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let content: String = row.get("content");
        let snapshot = serde_json::from_str(&content).map_err(|e| StoreError::Corrupt {
            table: "watch_state",
            id: 0,
            reason: e.to_string(),
        })?;
        Ok(Some(Baseline {
            snapshot,
            content_hash: row.get("content_hash"),
        }))
    }

    /// Record a successful poll with everything it caused, atomically.
    pub async fn record_poll(&self, w: PollWrite<'_>) -> Result<PollOutcome, StoreError> {
        let hash = w.snapshot.content_hash();
        let now = w.finished_at;
        self.flush_noted_of(w.watch).await?;
        let mut tx = self.begin_write().await?;
        let state = sqlx::query(
            "SELECT snapshot_id, content_hash FROM watch_state \
             WHERE watch = ? AND target_type = ? AND target_id = ?",
        )
        .bind(w.watch)
        .bind(w.target.type_name())
        .bind(w.target.id())
        .fetch_optional(&mut *tx)
        .await?;
        let current: Option<String> = state.as_ref().map(|r| r.get("content_hash"));
        if current.as_deref() != w.expected_hash {
            self.ledger.forget(w.watch);
            return Err(StoreError::Conflict(w.watch.to_string()));
        }
        let outcome = match &state {
            None => PollOutcome::First,
            Some(row) if row.get::<String, _>("content_hash") == hash => PollOutcome::Unchanged,
            Some(_) => PollOutcome::Changed,
        };

        let snapshot_id: i64 = if outcome == PollOutcome::Unchanged {
            let id: i64 = state.as_ref().map(|r| r.get("snapshot_id")).unwrap_or(0);
            sqlx::query(
                "UPDATE snapshots SET last_seen_at = ?, seen_count = seen_count + 1 WHERE id = ?",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            id
        } else {
            let content = w.snapshot.canonical_json();
            // The answer this one replaces (for this watch, whatever its target) is still
            // stored only in `watch_state`: turn it into a difference from this one first.
            // Usually it is the baseline read above; only a first answer (or a watch moved to
            // another target) needs the by-watch lookup.
            let previous: Option<i64> = match &state {
                Some(row) => Some(row.get("snapshot_id")),
                None => {
                    sqlx::query_scalar("SELECT snapshot_id FROM watch_state WHERE watch = ?")
                        .bind(w.watch)
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
            // Empty texts: this answer's own are in `watch_state` and `current_bodies`
            // (migration 6).
            let id = sqlx::query(
                "INSERT INTO snapshots (watch, content_hash, content, raw_body, request_id, \
                 first_seen_at, last_seen_at) VALUES (?, ?, '', '', ?, ?, ?)",
            )
            .bind(w.watch)
            .bind(&hash)
            .bind(w.request_id)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
            if let Some(previous) = previous {
                store_as_delta(&mut tx, previous, id, &content, w.raw_body).await?;
            }
            sqlx::query(
                "INSERT INTO watch_state (watch, target_type, target_id, snapshot_id, content_hash, \
                 content, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT(watch) DO UPDATE SET target_type = excluded.target_type, \
                 target_id = excluded.target_id, snapshot_id = excluded.snapshot_id, \
                 content_hash = excluded.content_hash, content = excluded.content, \
                 updated_at = excluded.updated_at",
            )
            .bind(w.watch)
            .bind(w.target.type_name())
            .bind(w.target.id())
            .bind(id)
            .bind(&hash)
            .bind(&content)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO current_bodies (watch, snapshot_id, raw_body) VALUES (?, ?, ?) \
                 ON CONFLICT(watch) DO UPDATE SET snapshot_id = excluded.snapshot_id, \
                 raw_body = excluded.raw_body",
            )
            .bind(w.watch)
            .bind(id)
            .bind(w.raw_body)
            .execute(&mut *tx)
            .await?;
            id
        };

        sqlx::query("UPDATE watch_state SET last_ok_at = ? WHERE watch = ?")
            .bind(now)
            .bind(w.watch)
            .execute(&mut *tx)
            .await?;

        chain::append_events(&mut tx, w.events, Some(snapshot_id), now, w.new_uid).await?;

        // An unchanged poll extends the watch's current run of unchanged polls, if its newest
        // poll row is one for the same snapshot; anything else starts a new row.
        let extended = if outcome == PollOutcome::Unchanged {
            sqlx::query(
                "UPDATE polls SET repeat_count = repeat_count + 1, last_at = ?1, \
                 duration_ms = duration_ms + ?2 \
                 WHERE id = (SELECT id FROM polls WHERE watch = ?3 ORDER BY id DESC LIMIT 1) \
                 AND outcome = 'unchanged' AND snapshot_id = ?4",
            )
            .bind(w.started_at)
            .bind(w.duration_ms)
            .bind(w.watch)
            .bind(snapshot_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            false
        };
        if !extended {
            sqlx::query(
                "INSERT INTO polls (watch, started_at, duration_ms, outcome, snapshot_id, last_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(w.watch)
            .bind(w.started_at)
            .bind(w.duration_ms)
            .bind(outcome.as_str())
            .bind(snapshot_id)
            .bind(w.started_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.ledger.set_head(w.watch, w.target, &hash);
        self.wake_delivery_if(w.events.iter().any(|(_, channels)| !channels.is_empty()));
        self.metrics.poll(w.watch, outcome.as_str(), w.duration_ms);
        for (event, _) in w.events {
            self.metrics.event(&event.kind());
        }
        Ok(outcome)
    }

    /// Record a failed poll. The baseline is not touched.
    pub async fn record_poll_error(
        &self,
        watch: &str,
        started_at: i64,
        duration_ms: i64,
        code: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        self.flush_noted_of(watch).await?;
        sqlx::query(
            "INSERT INTO polls (watch, started_at, duration_ms, outcome, error_code, error_message, \
             last_at) VALUES (?, ?, ?, 'error', ?, ?, ?)",
        )
        .bind(watch)
        .bind(started_at)
        .bind(duration_ms)
        .bind(code)
        .bind(message)
        .bind(started_at)
        .execute(&self.pool)
        .await?;
        self.ledger.set_failed(watch);
        self.metrics.poll(watch, "error", duration_ms);
        Ok(())
    }

    /// Pending deliveries whose time has come, oldest first (read only: the delivery pass
    /// freezes and sends through `store::outbox`).
    pub async fn due_deliveries(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.uid, d.channel, d.attempts, e.payload FROM deliveries d \
             JOIN events e ON e.id = d.event_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.id LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(due_from_row).collect()
    }

    /// When the next pending delivery is due, if any.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(at)
    }

    /// Record one attempt and move the delivery to its new state, atomically.
    pub async fn record_attempt(
        &self,
        delivery_id: i64,
        attempt: &AttemptWrite,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, outcome, \
             http_status, vendor_code, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(delivery_id)
        .bind(attempt.attempted_at)
        .bind(attempt.duration_ms)
        .bind(&attempt.outcome)
        .bind(attempt.http_status.map(i64::from))
        .bind(&attempt.vendor_code)
        .bind(&attempt.error)
        .execute(&mut *tx)
        .await?;
        let done_at = attempt.attempted_at + attempt.duration_ms;
        let (status, next, delivered_at) = match state {
            DeliveryState::Delivered => ("delivered", done_at, Some(done_at)),
            DeliveryState::RetryAt(at) => ("pending", *at, None),
            DeliveryState::Dead => ("dead", done_at, None),
        };
        let channel: Option<String> = sqlx::query_scalar(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
             last_error = ?, delivered_at = ? WHERE id = ? RETURNING channel",
        )
        .bind(status)
        .bind(next)
        .bind(&attempt.error)
        .bind(delivered_at)
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(channel) = channel {
            self.metrics.delivery(&channel, &attempt.outcome);
        }
        Ok(())
    }

    /// Stored events, newest first, each with its deliveries.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>, StoreError> {
        let page = self
            .events_page(&EventFilter {
                watch: filter.watch.clone(),
                limit: filter.limit.unwrap_or(i64::MAX),
                ..EventFilter::default()
            })
            .await?;
        Ok(page.entries)
    }

    /// Deliveries by status.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut c = OutboxCounts::default();
        for row in rows {
            let n: i64 = row.get("n");
            match row.get::<String, _>("status").as_str() {
                "pending" => c.pending = n,
                "delivered" => c.delivered = n,
                "dead" => c.dead = n,
                // `muted`: see `Store::muted_count`.
                _ => {}
            }
        }
        Ok(c)
    }

    /// Number of stored snapshots of a watch.
    pub async fn snapshot_count(&self, watch: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM snapshots WHERE watch = ?")
                .bind(watch)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Poll records of a watch: (outcome, error_code, error_message), oldest first.
    pub async fn polls(
        &self,
        watch: &str,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT outcome, error_code, error_message FROM polls WHERE watch = ? ORDER BY id",
        )
        .bind(watch)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get("outcome"),
                    r.get("error_code"),
                    r.get("error_message"),
                )
            })
            .collect())
    }

    /// Poll rows of a watch, oldest first, with how many polls each stands for.
    pub async fn poll_records(&self, watch: &str) -> Result<Vec<PollRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT outcome, repeat_count, started_at, last_at, duration_ms, error_code, \
             error_message FROM polls WHERE watch = ? ORDER BY id",
        )
        .bind(watch)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PollRecord {
                outcome: r.get("outcome"),
                count: r.get("repeat_count"),
                first_at: r.get("started_at"),
                last_at: r.get("last_at"),
                total_duration_ms: r.get("duration_ms"),
                error_code: r.get("error_code"),
                error_message: r.get("error_message"),
            })
            .collect())
    }

    /// Close the pool, flushing the WAL.
    pub async fn close(&self) {
        if let Err(e) = self.flush_unchanged().await {
            tracing::warn!(error = %e, "could not write the last unchanged polls before closing");
        }
        if let Some(reader) = &self.reader {
            reader.close().await;
        }
        // Before the writer: the last connection to close checkpoints and removes the WAL.
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.pool.close().await;
        }
        self.pool.close().await;
    }
}

fn due_from_row(row: sqlx::sqlite::SqliteRow) -> Result<DueDelivery, StoreError> {
    let id: i64 = row.get("id");
    let payload: String = row.get("payload");
    let event = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
        table: "events",
        id,
        reason: e.to_string(),
    })?;
    Ok(DueDelivery {
        id,
        uid: row.get("uid"),
        channel: row.get("channel"),
        attempts: row.get("attempts"),
        event,
    })
}

/// Store the texts of snapshot `older`, until now its watch's current answer, as reverse
/// deltas against `newer`'s (each kept whole when a delta would not be smaller). Its texts
/// come from `watch_state` and `current_bodies` (a current answer's row holds empty texts) or,
/// for a row written before migration 6, from the row itself. Runs in the poll's transaction,
/// before `watch_state` is overwritten: the change and the rewrite land together or not at
/// all.
async fn store_as_delta(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    older: i64,
    newer: i64,
    newer_content: &str,
    newer_raw_body: &str,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT s.content AS content, s.raw_body AS raw_body, ws.content AS ws_content, \
         cb.raw_body AS ws_raw_body FROM snapshots s \
         LEFT JOIN watch_state ws ON ws.snapshot_id = s.id \
         LEFT JOIN current_bodies cb ON cb.watch = s.watch AND cb.snapshot_id = s.id \
         WHERE s.id = ? AND s.delta_base IS NULL \
         AND typeof(s.content) = 'text' AND typeof(s.raw_body) = 'text'",
    )
    .bind(older)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let (own_content, own_raw_body): (String, String) = (row.get("content"), row.get("raw_body"));
    let held_in_state = own_content.is_empty();
    let (content, raw_body) = if held_in_state {
        let content: Option<String> = row.get("ws_content");
        let raw_body: Option<String> = row.get("ws_raw_body");
        (content.unwrap_or_default(), raw_body.unwrap_or_default())
    } else {
        (own_content, own_raw_body)
    };
    let content_delta = delta::encode(&content, newer_content);
    let raw_delta = delta::encode(&raw_body, newer_raw_body);
    if content_delta.is_none() && raw_delta.is_none() && !held_in_state {
        return Ok(()); // whole already, and nothing smaller to put there
    }
    let delta_base = (content_delta.is_some() || raw_delta.is_some()).then_some(newer);
    let mut update =
        sqlx::query("UPDATE snapshots SET content = ?, raw_body = ?, delta_base = ? WHERE id = ?");
    update = match content_delta {
        Some(d) => update.bind(d),
        None => update.bind(content),
    };
    update = match raw_delta {
        Some(d) => update.bind(d),
        None => update.bind(raw_body),
    };
    update
        .bind(delta_base)
        .bind(older)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Change;
    use crate::snapshot::{Item, Scope};

    fn snap(state: &str) -> Snapshot {
        Snapshot::new(
            Some("running".into()),
            Some(10),
            vec![Item {
                job_id: Some("j".into()),
                code: Some("A".into()),
                state: Some(state.into()),
                ..Item::default()
            }],
        )
    }

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            scope: Scope::Precheck,
            change: Change::Started,
            watch: "w".into(),
            target: Target::BackupPlan("p".into()),
            status_before: None,
            status: Some("running".into()),
            progress_before: None,
            progress: Some(10),
            items: vec![],
            item_change: None,
            item_total: 1,
            observed_at_ms: 5,
            job_error: None,
            restore_task: None,
            poll: None,
        }
    }

    async fn write(
        store: &Store,
        snapshot: &Snapshot,
        events: &[(Event, Vec<String>)],
    ) -> PollOutcome {
        let mut uid = || uuid::Uuid::new_v4().to_string();
        let base = store
            .baseline("w", &Target::BackupPlan("p".into()))
            .await
            .unwrap()
            .map(|b| b.content_hash);
        store
            .record_poll(PollWrite {
                watch: "w",
                target: &Target::BackupPlan("p".into()),
                started_at: 1,
                duration_ms: 2,
                finished_at: 3,
                snapshot,
                raw_body: "{}",
                request_id: Some("r"),
                expected_hash: base.as_deref(),
                events,
                new_uid: &mut uid,
            })
            .await
            .unwrap()
    }

    /// Whether a wake-up is waiting on `signal`; takes it, and never waits.
    pub(super) fn signalled(signal: &Notify) -> bool {
        use std::future::Future;
        let notified = std::pin::pin!(signal.notified());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        notified.poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn a_commit_that_queues_deliveries_wakes_the_delivery_task_once() {
        let store = Store::open_in_memory().await.unwrap();
        let signal = store.outbox_signal();
        write(&store, &snap("running"), &[(event("e1"), vec![])]).await;
        assert!(
            !signalled(&signal),
            "an event routed to no channel queues nothing"
        );
        let events = vec![(event("e2"), vec!["a".to_string(), "b".to_string()])];
        write(&store, &snap("failed"), &events).await;
        assert!(signalled(&signal), "kept until the delivery task waits");
        assert!(!signalled(&signal), "one wake-up per commit");
        write(&store, &snap("failed"), &[]).await;
        assert!(!signalled(&signal), "an unchanged poll queues nothing");
    }

    #[tokio::test]
    async fn unchanged_polls_add_no_snapshot_rows() {
        let store = Store::open_in_memory().await.unwrap();
        assert_eq!(
            write(&store, &snap("running"), &[]).await,
            PollOutcome::First
        );
        for _ in 0..5 {
            assert_eq!(
                write(&store, &snap("running"), &[]).await,
                PollOutcome::Unchanged
            );
        }
        assert_eq!(store.snapshot_count("w").await.unwrap(), 1);
        assert_eq!(
            write(&store, &snap("finish"), &[]).await,
            PollOutcome::Changed
        );
        assert_eq!(store.snapshot_count("w").await.unwrap(), 2);
        let records = store.poll_records("w").await.unwrap();
        let shape: Vec<(&str, i64)> = records
            .iter()
            .map(|r| (r.outcome.as_str(), r.count))
            .collect();
        assert_eq!(
            shape,
            [("first", 1), ("unchanged", 5), ("changed", 1)],
            "unchanged polls share one row"
        );
        assert_eq!(records[1].total_duration_ms, 10);
        let base = store
            .baseline("w", &Target::BackupPlan("p".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(base.snapshot, snap("finish"));
    }

    #[tokio::test]
    async fn an_error_ends_a_run_of_unchanged_polls() {
        let store = Store::open_in_memory().await.unwrap();
        for _ in 0..3 {
            write(&store, &snap("running"), &[]).await;
        }
        store
            .record_poll_error("w", 9, 1, None, "timeout")
            .await
            .unwrap();
        write(&store, &snap("running"), &[]).await;
        let shape: Vec<(String, i64)> = store
            .poll_records("w")
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.outcome, r.count))
            .collect();
        assert_eq!(
            shape,
            [
                ("first".to_string(), 1),
                ("unchanged".to_string(), 2),
                ("error".to_string(), 1),
                ("unchanged".to_string(), 1)
            ]
        );
        let c = store.metrics().snapshot();
        assert_eq!(c.polls[&("w".to_string(), "unchanged".to_string())], 3);
        assert_eq!(c.polls[&("w".to_string(), "error".to_string())], 1);
    }

    #[tokio::test]
    async fn events_are_chained_as_they_are_written() {
        let store = Store::open_in_memory().await.unwrap();
        let events = vec![(event("e1"), vec![]), (event("e2"), vec!["a".to_string()])];
        write(&store, &snap("running"), &events).await;
        write(&store, &snap("failed"), &[(event("e3"), vec![])]).await;
        let report = store.verify_chain(100).await.unwrap();
        assert!(report.verdict.ok(), "{report:?}");
        assert_eq!(report.verdict.events, 3);
        assert_eq!(report.head_id, Some(3));
        let last = store.last_verification().await.unwrap().unwrap();
        assert_eq!((last.at, last.ok, last.events), (100, true, 3));
        let c = store.metrics().snapshot();
        assert_eq!(c.events["precheck.started"], 3);
    }

    #[tokio::test]
    async fn errors_keep_the_baseline() {
        let store = Store::open_in_memory().await.unwrap();
        write(&store, &snap("running"), &[]).await;
        store
            .record_poll_error("w", 3, 1, Some("Throttling.User"), "slow down")
            .await
            .unwrap();
        let base = store
            .baseline("w", &Target::BackupPlan("p".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(base.snapshot, snap("running"));
        let polls = store.polls("w").await.unwrap();
        assert_eq!(polls[1].0, "error");
        assert_eq!(polls[1].1.as_deref(), Some("Throttling.User"));
    }

    #[tokio::test]
    async fn events_and_deliveries_are_written_with_the_snapshot() {
        let store = Store::open_in_memory().await.unwrap();
        let events = vec![(event("e1"), vec!["a".to_string(), "b".to_string()])];
        write(&store, &snap("running"), &events).await;
        let due = store.due_deliveries(10, 100).await.unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event, event("e1"));
        assert_ne!(due[0].uid, due[1].uid);
        assert!(
            store.due_deliveries(0, 100).await.unwrap().is_empty(),
            "not due before now"
        );

        let attempt = AttemptWrite {
            attempted_at: 10,
            duration_ms: 1,
            outcome: "retryable".into(),
            http_status: Some(500),
            vendor_code: None,
            error: Some("HTTP 500".into()),
        };
        store
            .record_attempt(due[0].id, &attempt, &DeliveryState::RetryAt(100))
            .await
            .unwrap();
        store
            .record_attempt(
                due[1].id,
                &AttemptWrite {
                    outcome: "delivered".into(),
                    error: None,
                    ..attempt.clone()
                },
                &DeliveryState::Delivered,
            )
            .await
            .unwrap();
        assert!(store.due_deliveries(50, 100).await.unwrap().is_empty());
        let again = store.due_deliveries(100, 100).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].uid, due[0].uid, "same identity on retry");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(store.next_delivery_at().await.unwrap(), Some(100));

        let history = store.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(history.len(), 1);
        let d = &history[0].deliveries;
        assert_eq!(
            (d[0].channel.as_str(), d[0].status.as_str()),
            ("a", "pending")
        );
        assert_eq!(d[0].last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(
            (d[1].channel.as_str(), d[1].status.as_str()),
            ("b", "delivered")
        );
        assert_eq!(
            store.outbox_counts().await.unwrap(),
            OutboxCounts {
                pending: 1,
                delivered: 1,
                dead: 0
            }
        );
    }

    #[tokio::test]
    async fn a_stale_baseline_is_a_conflict_and_writes_nothing() {
        let store = Store::open_in_memory().await.unwrap();
        write(&store, &snap("running"), &[]).await;
        let target = Target::BackupPlan("p".into());
        let mut uid = || uuid::Uuid::new_v4().to_string();
        let events = vec![(event("e9"), vec!["a".to_string()])];
        let result = store
            .record_poll(PollWrite {
                watch: "w",
                target: &target,
                started_at: 1,
                duration_ms: 1,
                finished_at: 2,
                snapshot: &snap("finish"),
                raw_body: "{}",
                request_id: None,
                expected_hash: Some("not-the-current-hash"),
                events: &events,
                new_uid: &mut uid,
            })
            .await;
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        assert!(store.due_deliveries(10, 10).await.unwrap().is_empty());
        assert_eq!(store.snapshot_count("w").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_watch_moved_to_another_plan_starts_over() {
        let store = Store::open_in_memory().await.unwrap();
        write(&store, &snap("running"), &[]).await;
        let other = Target::BackupPlan("other".into());
        assert!(store.baseline("w", &other).await.unwrap().is_none());
        let mut uid = || uuid::Uuid::new_v4().to_string();
        let outcome = store
            .record_poll(PollWrite {
                watch: "w",
                target: &other,
                started_at: 1,
                duration_ms: 1,
                finished_at: 2,
                snapshot: &snap("running"),
                raw_body: "{}",
                request_id: None,
                expected_hash: None,
                events: &[],
                new_uid: &mut uid,
            })
            .await
            .unwrap();
        assert_eq!(outcome, PollOutcome::First);
        assert!(store.baseline("w", &other).await.unwrap().is_some());
    }
}
