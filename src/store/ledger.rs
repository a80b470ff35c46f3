//! The unchanged-poll ledger: what makes an idle watch nearly free.
//!
//! Almost every poll finds nothing new. Writing each one in its own transaction costs a
//! `BEGIN IMMEDIATE`, a read of the baseline, three updates and a commit (a WAL append of
//! several pages) per watch per cycle. Instead:
//!
//! - the store keeps each watch's **head** in memory (target, content hash, whether its last
//!   poll failed), loaded once from `watch_state` in one query; a poll whose answer hashes to
//!   the head is known to be unchanged without touching the database;
//! - such a poll is **noted** here, merged with any earlier unchanged polls of the same watch
//!   not yet written;
//! - [`Store::flush_unchanged`] writes the noted polls in **one transaction of four
//!   statements**, whatever the number of watches (each statement reads the batch from one
//!   JSON parameter through `json_each`): at the end of each cycle, and on its own whenever
//!   [`FLUSH_AT`] watches are waiting, so no flush holds the writer for long. Each flush then
//!   starts a background checkpoint, so a long cycle never leaves the WAL to be copied inside
//!   a later commit.
//!
//! Changes, first polls and failures are never noted: they take the full per-poll
//! transaction at once (events must not wait), after writing any noted poll of the same watch
//! so its `polls` rows stay in order.
//!
//! Another process sharing the file can move a baseline behind our back. The flush checks each
//! noted poll against `watch_state` in the same statement that updates it: a poll whose hash
//! no longer matches is dropped (it observed a state that is no longer the baseline; nothing
//! was announced from it) and its head is forgotten, so the next poll of that watch diffs
//! against what is really stored.
//!
//! What a crash costs: the noted polls of the cycle in flight (their counts and times), never
//! an event or a delivery.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};
use crate::snapshot::Target;

/// Flush on its own once this many watches have unchanged polls waiting, so a large cycle is
/// written in several short transactions rather than held in memory to its end. Short
/// matters more than few: a flush holds the only write connection, and a change found
/// meanwhile waits for it before its event is stored and sent. In the pipeline bench (10,000
/// watches, saturating cycles) flushes of 1,024 watches took 50-100 ms each and set the
/// detection-to-delivery p99 (82-85 ms on an AMD VM, 67 ms on an Intel one); at 256, with the
/// checkpoint after each flush, it fell to 35-51 ms (20 ms) for the same CPU per poll, and
/// peak memory by 2-3 MB. At 1,024 a 1,000-watch cycle flushes only at its end, which put its
/// peak memory at 24.1-25.2 MB, at or over the 25 MB target.
const FLUSH_AT: usize = 256;

/// What the store knows of a watch without reading the database.
#[derive(Debug, Clone)]
struct Head {
    target_type: &'static str,
    target_id: String,
    content_hash: String,
    /// The watch's last poll failed: its next success may owe a `poll.recovered`.
    last_failed: bool,
}

/// Unchanged polls of one watch not written yet.
#[derive(Debug, Clone)]
struct Noted {
    target_type: &'static str,
    target_id: String,
    content_hash: String,
    count: i64,
    first_started_at: i64,
    last_started_at: i64,
    duration_ms: i64,
    finished_at: i64,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    heads: HashMap<String, Head>,
    noted: HashMap<String, Noted>,
    /// The last flush started by a full ledger failed (the database is locked or failing):
    /// no more of them until a flush succeeds, so a cycle does not wait out the busy timeout
    /// again at every later unchanged poll. The cycle's own flush at its end still tries.
    auto_flush_failed: bool,
}

/// Heads and noted polls, shared by every clone of a [`Store`].
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a committed poll write: the watch's head is now `content_hash`.
    pub(crate) fn set_head(&self, watch: &str, target: &Target, content_hash: &str) {
        let mut state = self.lock();
        if !state.loaded {
            return;
        }
        state.heads.insert(
            watch.to_string(),
            Head {
                target_type: target.type_name(),
                target_id: target.id().to_string(),
                content_hash: content_hash.to_string(),
                last_failed: false,
            },
        );
    }

    /// After a committed failed poll.
    pub(crate) fn set_failed(&self, watch: &str) {
        if let Some(head) = self.lock().heads.get_mut(watch) {
            head.last_failed = true;
        }
    }

    /// After a conflict or anything that makes the cached head doubtful.
    pub(crate) fn forget(&self, watch: &str) {
        self.lock().heads.remove(watch);
    }

    #[cfg(test)]
    fn has_noted(&self, watch: &str) -> bool {
        self.lock().noted.contains_key(watch)
    }
}

/// One unchanged poll, as the pipeline reports it.
#[derive(Debug, Clone, Copy)]
pub struct UnchangedPoll<'a> {
    /// Watch name.
    pub watch: &'a str,
    /// What it polled.
    pub target: &'a Target,
    /// Hash of the normalised answer.
    pub content_hash: &'a str,
    /// Epoch ms the poll started.
    pub started_at: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// Epoch ms the answer was in.
    pub finished_at: i64,
}

/// One watch's noted polls as the flush statements read them from `json_each`.
#[derive(Debug, Serialize)]
struct BatchRow<'a> {
    w: &'a str,
    tt: &'a str,
    ti: &'a str,
    h: &'a str,
    n: i64,
    s0: i64,
    s1: i64,
    d: i64,
    f: i64,
    sid: i64,
}

/// The batch as one JSON array, written straight from the rows (no value tree).
fn batch_json<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("batch rows always serialise")
}

impl Store {
    /// Note `poll` as unchanged if the watch's known head has the same target and hash and its
    /// last poll did not fail; then nothing is read or written now (see the module doc).
    /// `false` means the caller must take the full path: a first poll, a change, a recovery,
    /// or a head this process does not know.
    pub async fn note_if_unchanged(&self, poll: UnchangedPoll<'_>) -> Result<bool, StoreError> {
        self.load_heads().await?;
        let full = {
            let mut state = self.ledger.lock();
            let matches = state.heads.get(poll.watch).is_some_and(|h| {
                !h.last_failed
                    && h.content_hash == poll.content_hash
                    && h.target_type == poll.target.type_name()
                    && h.target_id == poll.target.id()
            });
            if !matches {
                return Ok(false);
            }
            match state.noted.get_mut(poll.watch) {
                Some(n) if n.content_hash == poll.content_hash => {
                    n.count += 1;
                    n.last_started_at = n.last_started_at.max(poll.started_at);
                    n.duration_ms += poll.duration_ms;
                    n.finished_at = n.finished_at.max(poll.finished_at);
                }
                _ => {
                    state.noted.insert(
                        poll.watch.to_string(),
                        Noted {
                            target_type: poll.target.type_name(),
                            target_id: poll.target.id().to_string(),
                            content_hash: poll.content_hash.to_string(),
                            count: 1,
                            first_started_at: poll.started_at,
                            last_started_at: poll.started_at,
                            duration_ms: poll.duration_ms,
                            finished_at: poll.finished_at,
                        },
                    );
                }
            }
            state.noted.len() >= FLUSH_AT && !state.auto_flush_failed
        };
        if full && let Err(e) = self.flush_unchanged().await {
            // This poll is noted all the same: it is written by a later flush, so it is not
            // reported as lost; the cycle's flush at its end reports the error if it lasts.
            self.ledger.lock().auto_flush_failed = true;
            tracing::warn!(
                error = %e,
                "could not write the noted unchanged polls yet; they are kept in memory and \
                 written at the end of the cycle"
            );
        }
        Ok(true)
    }

    /// Write every noted unchanged poll in one transaction. Returns how many polls were
    /// written. On a database error the noted polls are kept for the next flush.
    pub async fn flush_unchanged(&self) -> Result<usize, StoreError> {
        let noted: Vec<(String, Noted)> = self.ledger.lock().noted.drain().collect();
        if noted.is_empty() {
            return Ok(0);
        }
        let written = self.write_drained(noted).await?;
        // A large cycle flushes many times before it ends: without this the WAL grows until
        // the writer checkpoints inside some later commit (see `WAL_AUTOCHECKPOINT_PAGES`),
        // holding up the change that commit records.
        self.checkpoint_in_background();
        Ok(written)
    }

    /// Before a direct poll write for `watch`: write its noted polls first, so its `polls`
    /// rows keep the order the polls happened in. Only this watch's: the change waiting on
    /// this write should not also wait for every other watch's noted polls.
    pub(crate) async fn flush_noted_of(&self, watch: &str) -> Result<(), StoreError> {
        let noted: Vec<(String, Noted)> = self
            .ledger
            .lock()
            .noted
            .remove_entry(watch)
            .into_iter()
            .collect();
        self.write_drained(noted).await.map(drop)
    }

    /// Write polls taken out of the ledger; on a database error put them back, so the next
    /// flush retries them.
    async fn write_drained(&self, noted: Vec<(String, Noted)>) -> Result<usize, StoreError> {
        if noted.is_empty() {
            return Ok(0);
        }
        match self.write_noted(&noted).await {
            Ok(written) => {
                self.ledger.lock().auto_flush_failed = false;
                Ok(written)
            }
            Err(e) => {
                let mut state = self.ledger.lock();
                for (watch, n) in noted {
                    state.noted.entry(watch).or_insert(n);
                }
                Err(e)
            }
        }
    }

    async fn write_noted(&self, noted: &[(String, Noted)]) -> Result<usize, StoreError> {
        let rows = |sid: &dyn Fn(&str) -> Option<i64>| -> Vec<BatchRow<'_>> {
            noted
                .iter()
                .filter_map(|(watch, n)| {
                    Some(BatchRow {
                        w: watch,
                        tt: n.target_type,
                        ti: &n.target_id,
                        h: &n.content_hash,
                        n: n.count,
                        s0: n.first_started_at,
                        s1: n.last_started_at,
                        d: n.duration_ms,
                        f: n.finished_at,
                        sid: sid(watch)?,
                    })
                })
                .collect()
        };
        let batch = batch_json(&rows(&|_| Some(0)));
        let mut tx = self.begin_write().await?;
        // Only watches whose stored baseline is still the one they were compared with.
        let matched: HashMap<String, i64> = sqlx::query(
            "UPDATE watch_state SET last_ok_at = max(coalesce(last_ok_at, 0), j.f) \
             FROM (SELECT value->>'w' AS w, value->>'tt' AS tt, value->>'ti' AS ti, \
                   value->>'h' AS h, value->>'f' AS f FROM json_each(?1)) AS j \
             WHERE watch_state.watch = j.w AND watch_state.target_type = j.tt \
               AND watch_state.target_id = j.ti AND watch_state.content_hash = j.h \
             RETURNING watch_state.watch, watch_state.snapshot_id",
        )
        .bind(&batch)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
        .collect();
        let kept_rows = rows(&|watch| matched.get(watch).copied());
        let kept = batch_json(&kept_rows);
        sqlx::query(
            "UPDATE snapshots SET last_seen_at = max(last_seen_at, j.f), \
             seen_count = seen_count + j.n \
             FROM (SELECT value->>'sid' AS sid, value->>'n' AS n, value->>'f' AS f \
                   FROM json_each(?1)) AS j \
             WHERE snapshots.id = j.sid",
        )
        .bind(&kept)
        .execute(&mut *tx)
        .await?;
        // Extend each watch's newest poll row when it is a run of unchanged polls of the same
        // snapshot; the rest start a new row.
        let extended: Vec<String> = sqlx::query_scalar(
            "UPDATE polls SET repeat_count = repeat_count + j.n, last_at = max(last_at, j.s1), \
             duration_ms = duration_ms + j.d \
             FROM (SELECT value->>'sid' AS sid, value->>'n' AS n, value->>'s1' AS s1, \
                   value->>'d' AS d, \
                   (SELECT p.id FROM polls p WHERE p.watch = value->>'w' \
                    ORDER BY p.id DESC LIMIT 1) AS pid \
                   FROM json_each(?1)) AS j \
             WHERE polls.id = j.pid AND polls.outcome = 'unchanged' \
               AND polls.snapshot_id = j.sid \
             RETURNING polls.watch",
        )
        .bind(&kept)
        .fetch_all(&mut *tx)
        .await?;
        let extended: std::collections::HashSet<String> = extended.into_iter().collect();
        let fresh: Vec<&BatchRow<'_>> = kept_rows
            .iter()
            .filter(|row| !extended.contains(row.w))
            .collect();
        if !fresh.is_empty() {
            sqlx::query(
                "INSERT INTO polls (watch, started_at, duration_ms, outcome, snapshot_id, \
                 last_at, repeat_count) \
                 SELECT value->>'w', value->>'s0', value->>'d', 'unchanged', value->>'sid', \
                 value->>'s1', value->>'n' FROM json_each(?1)",
            )
            .bind(batch_json(&fresh))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        let mut written = 0;
        for (watch, n) in noted {
            if matched.contains_key(watch) {
                written += n.count as usize;
                for _ in 0..n.count {
                    self.metrics
                        .poll(watch, "unchanged", n.duration_ms / n.count.max(1));
                }
            } else {
                tracing::info!(
                    watch = %watch,
                    "another process recorded a newer state of this watch; this process's \
                     unchanged polls of the older one are not counted"
                );
                self.ledger.forget(watch);
            }
        }
        Ok(written)
    }

    /// Load every watch's head in one query, the first time any poll asks.
    async fn load_heads(&self) -> Result<(), StoreError> {
        if self.ledger.lock().loaded {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT ws.watch, ws.target_type, ws.target_id, ws.content_hash, \
             (SELECT p.outcome = 'error' FROM polls p WHERE p.watch = ws.watch \
              ORDER BY p.id DESC LIMIT 1) AS last_failed \
             FROM watch_state ws",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut state = self.ledger.lock();
        if state.loaded {
            return Ok(());
        }
        for row in rows {
            let target_type = match row.get::<String, _>(1).as_str() {
                "backup_plan" => "backup_plan",
                "restore_task" => "restore_task",
                // An unknown kind never matches a poll: that watch takes the full path.
                _ => continue,
            };
            let last_failed: Option<bool> = row.get(4);
            state.heads.insert(
                row.get(0),
                Head {
                    target_type,
                    target_id: row.get(2),
                    content_hash: row.get(3),
                    last_failed: last_failed.unwrap_or(false),
                },
            );
        }
        state.loaded = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Item, Snapshot};
    use crate::store::{PollOutcome, PollWrite};

    fn snap(state: &str) -> Snapshot {
        Snapshot::new(
            Some(state.into()),
            Some(10),
            vec![Item {
                job_id: Some("j".into()),
                state: Some(state.into()),
                ..Item::default()
            }],
        )
    }

    fn plan() -> Target {
        Target::BackupPlan("p".into())
    }

    async fn write(store: &Store, watch: &str, snapshot: &Snapshot, at: i64) -> PollOutcome {
        let mut uid = || uuid::Uuid::new_v4().to_string();
        let base = store
            .baseline(watch, &plan())
            .await
            .unwrap()
            .map(|b| b.content_hash);
        store
            .record_poll(PollWrite {
                watch,
                target: &plan(),
                started_at: at,
                duration_ms: 2,
                finished_at: at + 2,
                snapshot,
                raw_body: "{}",
                request_id: None,
                expected_hash: base.as_deref(),
                events: &[],
                new_uid: &mut uid,
            })
            .await
            .unwrap()
    }

    async fn note(store: &Store, watch: &str, snapshot: &Snapshot, at: i64) -> bool {
        store
            .note_if_unchanged(UnchangedPoll {
                watch,
                target: &plan(),
                content_hash: &snapshot.content_hash(),
                started_at: at,
                duration_ms: 3,
                finished_at: at + 3,
            })
            .await
            .unwrap()
    }

    /// Each of the watch's `polls` rows, oldest first, by outcome.
    async fn outcomes(store: &Store, watch: &str) -> Vec<String> {
        let records = store.poll_records(watch).await.unwrap();
        records.into_iter().map(|r| r.outcome).collect()
    }

    /// `n` watches with a first poll stored, so their unchanged polls can be noted.
    async fn first_polls(store: &Store, n: usize) -> Vec<String> {
        let watches: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
        for w in &watches {
            write(store, w, &snap("running"), 100).await;
        }
        watches
    }

    async fn file_store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("w.db")).await.unwrap()
    }

    #[tokio::test]
    async fn a_cycle_of_unchanged_polls_is_one_write_that_extends_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        for w in ["a", "b", "c"] {
            assert_eq!(
                write(&store, w, &snap("running"), 100).await,
                PollOutcome::First
            );
        }
        // A first poll is never noted; an unknown watch neither.
        assert!(!note(&store, "d", &snap("running"), 200).await);
        for cycle in 0..3 {
            for w in ["a", "b", "c"] {
                assert!(note(&store, w, &snap("running"), 200 + cycle * 100).await);
            }
            // Nothing is written until the flush.
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM polls")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            assert_eq!(rows, if cycle == 0 { 3 } else { 6 });
            assert_eq!(store.flush_unchanged().await.unwrap(), 3);
        }
        let records = store.poll_records("b").await.unwrap();
        let shape: Vec<(&str, i64, i64, i64)> = records
            .iter()
            .map(|r| (r.outcome.as_str(), r.count, r.first_at, r.last_at))
            .collect();
        assert_eq!(shape, [("first", 1, 100, 100), ("unchanged", 3, 200, 400)]);
        assert_eq!(records[1].total_duration_ms, 9);
        let (seen, last): (i64, i64) =
            sqlx::query_as("SELECT seen_count, last_seen_at FROM snapshots WHERE watch = 'b'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!((seen, last), (4, 403));
        assert_eq!(store.snapshot_count("b").await.unwrap(), 1);
        // The next unchanged run after a change starts a new row.
        write(&store, "b", &snap("failed"), 500).await;
        assert!(note(&store, "b", &snap("failed"), 600).await);
        assert!(
            !note(&store, "b", &snap("running"), 700).await,
            "a change is not noted"
        );
        store.flush_unchanged().await.unwrap();
        let shape: Vec<(String, i64)> = store
            .poll_records("b")
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.outcome, r.count))
            .collect();
        assert_eq!(
            shape,
            [
                ("first".to_string(), 1),
                ("unchanged".to_string(), 3),
                ("changed".to_string(), 1),
                ("unchanged".to_string(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn a_direct_write_first_writes_the_noted_polls_of_its_watch() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        write(&store, "w", &snap("running"), 100).await;
        assert!(note(&store, "w", &snap("running"), 200).await);
        assert!(note(&store, "w", &snap("running"), 300).await);
        store
            .record_poll_error("w", 400, 1, Some("Throttling"), "slow down")
            .await
            .unwrap();
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
                ("error".to_string(), 1)
            ]
        );
        // After a failure the next success takes the full path (it may owe poll.recovered).
        assert!(!note(&store, "w", &snap("running"), 500).await);
        assert_eq!(
            write(&store, "w", &snap("running"), 500).await,
            PollOutcome::Unchanged
        );
        assert!(note(&store, "w", &snap("running"), 600).await);
    }

    #[tokio::test]
    async fn a_baseline_moved_by_another_process_drops_the_stale_polls_and_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let ours = file_store(&dir).await;
        let theirs = file_store(&dir).await;
        write(&ours, "w", &snap("running"), 100).await;
        write(&ours, "v", &snap("running"), 100).await;
        assert!(note(&ours, "w", &snap("running"), 200).await);
        assert!(note(&ours, "v", &snap("running"), 200).await);
        // The other process sees `w` change in between.
        assert_eq!(
            write(&theirs, "w", &snap("failed"), 250).await,
            PollOutcome::Changed
        );
        assert_eq!(
            ours.flush_unchanged().await.unwrap(),
            1,
            "only `v` is counted"
        );
        assert_eq!(outcomes(&ours, "w").await, ["first", "changed"]);
        // Our head of `w` is forgotten: its next poll is judged against the stored baseline.
        assert!(!note(&ours, "w", &snap("running"), 300).await);
        assert!(note(&ours, "v", &snap("running"), 300).await);
    }

    #[tokio::test]
    async fn a_change_writes_only_its_own_watchs_noted_polls_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        write(&store, "w", &snap("running"), 100).await;
        write(&store, "v", &snap("running"), 100).await;
        assert!(note(&store, "w", &snap("running"), 200).await);
        assert!(note(&store, "v", &snap("running"), 200).await);
        assert_eq!(
            write(&store, "w", &snap("failed"), 300).await,
            PollOutcome::Changed
        );
        // `w`'s unchanged poll is stored before its change, in the order they happened.
        assert_eq!(
            outcomes(&store, "w").await,
            ["first", "unchanged", "changed"]
        );
        // `v`'s waits for the cycle's flush: the change did not carry it.
        assert!(store.ledger.has_noted("v"));
        assert_eq!(outcomes(&store, "v").await, ["first"]);
        assert_eq!(store.flush_unchanged().await.unwrap(), 1);
        assert_eq!(outcomes(&store, "v").await, ["first", "unchanged"]);
    }

    #[tokio::test]
    async fn a_failed_flush_of_a_full_ledger_keeps_the_polls_and_is_not_retried_at_every_poll() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let watches = first_polls(&store, FLUSH_AT + 2).await;
        // Every write to watch_state fails on the store's one writing connection.
        sqlx::query(
            "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON watch_state \
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        // The note that fills the ledger starts a flush that fails: the poll is still noted,
        // not reported as lost, and nothing is written.
        for w in &watches[..FLUSH_AT] {
            assert!(note(&store, w, &snap("running"), 200).await);
        }
        assert!(store.ledger.has_noted("w0") && store.ledger.lock().auto_flush_failed);
        // Later notes in the same cycle do not try again.
        for w in &watches[FLUSH_AT..] {
            assert!(note(&store, w, &snap("running"), 200).await);
        }
        assert_eq!(store.ledger.lock().noted.len(), FLUSH_AT + 2);
        // The cycle's own flush reports the error and keeps every poll.
        assert!(store.flush_unchanged().await.is_err());
        assert_eq!(store.ledger.lock().noted.len(), FLUSH_AT + 2);
        // Once the database takes writes again, the next flush writes them all and full
        // ledgers flush on their own again.
        sqlx::query("DROP TRIGGER temp.refuse")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(store.flush_unchanged().await.unwrap(), FLUSH_AT + 2);
        assert!(!store.ledger.lock().auto_flush_failed);
        let unchanged: i64 =
            sqlx::query_scalar("SELECT count(*) FROM polls WHERE outcome = 'unchanged'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(unchanged, (FLUSH_AT + 2) as i64);
    }

    #[tokio::test]
    async fn heads_survive_a_restart_and_a_failed_last_poll_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = file_store(&dir).await;
            write(&store, "ok", &snap("running"), 100).await;
            write(&store, "bad", &snap("running"), 100).await;
            store
                .record_poll_error("bad", 200, 1, None, "timeout")
                .await
                .unwrap();
            assert!(note(&store, "ok", &snap("running"), 300).await);
            store.close().await;
        }
        let store = file_store(&dir).await;
        // Closing wrote the noted poll.
        assert_eq!(outcomes(&store, "ok").await, ["first", "unchanged"]);
        assert!(note(&store, "ok", &snap("running"), 400).await);
        assert!(!note(&store, "bad", &snap("running"), 400).await);
        // Another target under the same name is not the same watch.
        let other = Target::BackupPlan("q".into());
        let noted = store
            .note_if_unchanged(UnchangedPoll {
                watch: "ok",
                target: &other,
                content_hash: &snap("running").content_hash(),
                started_at: 500,
                duration_ms: 1,
                finished_at: 501,
            })
            .await
            .unwrap();
        assert!(!noted);
    }

    #[tokio::test]
    async fn a_flush_in_the_middle_of_a_large_cycle_starts_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let watches = first_polls(&store, FLUSH_AT).await;
        // Every first poll is still in the WAL, well short of the writer's own checkpoint.
        let file = dir.path().join("w.db");
        let before = std::fs::metadata(&file).unwrap().len();
        // The cycle's last note fills the ledger: it flushes on its own, and nothing here
        // starts a checkpoint but that flush.
        for w in &watches {
            assert!(note(&store, w, &snap("running"), 200).await);
        }
        assert!(!store.ledger.has_noted("w0"), "the ledger flushed");
        let mut after = before;
        for _ in 0..500 {
            after = std::fs::metadata(&file).unwrap().len();
            if after > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            after > before,
            "the flush's checkpoint copied the WAL into the file ({before} -> {after} bytes)"
        );
    }
}
