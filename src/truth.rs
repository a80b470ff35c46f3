//! What DBS knows beyond the pre-check list, asked for during a poll:
//!
//! - **restore truth**: for restore watches, the task's own `RestoreStatus` and phase progress
//!   from `DescribeRestoreTaskList`, so completion, failure (`stop`), pauses and phase progress
//!   are seen even when the pre-check list has nothing more to say;
//! - **job errors**: for every `*.failed` event, `DescribeJobErrorCode`'s code and message;
//! - **done**: a restore that stayed finished or failed for `[dbs] stop_restore_after_polls`
//!   polls is not polled again. Backup plans are never done: their pre-checks can run again.
//!
//! When DBS refuses the pre-check list for a restore task it still lists, the poll goes on with
//! the task list alone.
//!
//! None of these can fail a poll. When the task list cannot be read, the last known task state
//! is kept (a missing answer must not look like a change); when the job error cannot be read,
//! the event goes out without it.

use std::collections::HashSet;

use crate::config::WatchConfig;
use crate::dbs::{DbsClient, DbsError, ErrorKind, PrecheckResponse};
use crate::event::{Change, Event};
use crate::pipeline::App;
use crate::snapshot::{RestoreTruth, Target};
use crate::store::Baseline;

/// At most this many job ids are asked about per failure: enough to find the one with an answer.
const MAX_JOB_LOOKUPS: usize = 3;

impl App {
    /// The task's status and phases for a restore watch, `None` for backup plans. Falls back to
    /// what the baseline knew when DBS does not list the task or the call fails.
    pub(crate) async fn restore_truth(
        &self,
        client: &DbsClient,
        watch: &WatchConfig,
        baseline: Option<&Baseline>,
    ) -> Option<RestoreTruth> {
        let Target::RestoreTask(id) = &watch.target else {
            return None;
        };
        let known = || baseline.and_then(|b| b.snapshot.restore.clone());
        match client.restore_task(id).await {
            Ok(Some(task)) => Some(task.truth),
            Ok(None) => {
                tracing::debug!(watch = %watch.name, "DescribeRestoreTaskList does not list the task");
                known()
            }
            Err(e) => {
                tracing::warn!(
                    watch = %watch.name,
                    error = %self.redactor.redact(&e.to_string()),
                    "could not read the restore task's status; keeping the last known one"
                );
                known()
            }
        }
    }

    /// A restore task whose pre-check list DBS no longer answers (it refuses the id, as it does
    /// once the pre-check is gone) but whose task list does: the last known pre-check content
    /// with the task's current state, so completion and failure are still seen. `None` (the
    /// poll fails with the original error) for backup plans, other errors, and unknown tasks.
    pub(crate) async fn precheck_gone(
        &self,
        client: &DbsClient,
        watch: &WatchConfig,
        error: &DbsError,
    ) -> Option<PrecheckResponse> {
        let Target::RestoreTask(id) = &watch.target else {
            return None;
        };
        if error.kind() != ErrorKind::Api {
            return None;
        }
        let task = client.restore_task(id).await.ok()??;
        let known = self
            .store
            .baseline(&watch.name, &watch.target)
            .await
            .ok()
            .flatten()
            .map(|b| b.snapshot)
            .unwrap_or_default();
        tracing::debug!(
            watch = %watch.name,
            "the pre-check list refuses the task; using DescribeRestoreTaskList alone"
        );
        Some(PrecheckResponse {
            body: serde_json::to_string(&task).unwrap_or_default(),
            snapshot: known.with_restore(Some(task.truth)),
            request_id: None,
        })
    }

    /// Attaches `DescribeJobErrorCode`'s answer to every failure event. The task id is the
    /// restore task's, or for a pre-check the `JobId`s of its failed items.
    pub(crate) async fn explain_failures(&self, client: &DbsClient, events: &mut [Event]) {
        for event in events.iter_mut().filter(|e| e.change == Change::Failed) {
            let mut ids: Vec<String> = match &event.target {
                Target::RestoreTask(id) => vec![id.clone()],
                Target::BackupPlan(_) => event
                    .items
                    .iter()
                    .filter(|i| i.is_problem())
                    .filter_map(|i| i.job_id.clone())
                    .collect(),
            };
            let mut seen = HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            for id in ids.into_iter().take(MAX_JOB_LOOKUPS) {
                match client.job_error(&id).await {
                    Ok(Some(job_error)) => {
                        event.job_error = Some(job_error);
                        break;
                    }
                    Ok(None) => {}
                    // DBS does not know the id as a job: it has no error code to give.
                    Err(e) if e.kind() == ErrorKind::Api => tracing::debug!(
                        watch = %event.watch,
                        task_id = %id,
                        error = %self.redactor.redact(&e.to_string()),
                        "DescribeJobErrorCode has nothing for this id"
                    ),
                    Err(e) => tracing::warn!(
                        watch = %event.watch,
                        task_id = %id,
                        error = %self.redactor.redact(&e.to_string()),
                        "DescribeJobErrorCode failed; the failure is reported without DBS's error code"
                    ),
                }
            }
        }
    }

    /// Whether a restore watch is finished with: its stored state is finished or failed and
    /// has been seen by `[dbs] stop_restore_after_polls` successful polls in a row. Read from the
    /// store, so it holds across restarts.
    pub async fn is_done(&self, watch: &WatchConfig) -> bool {
        let after = self.config.dbs.stop_restore_after_polls;
        if after == 0 || !matches!(watch.target, Target::RestoreTask(_)) {
            return false;
        }
        if self.runtime.is_done(&watch.name) {
            return true;
        }
        let terminal = match self.store.baseline(&watch.name, &watch.target).await {
            Ok(Some(b)) => b.snapshot.lifecycle().is_terminal(),
            _ => false,
        };
        if !terminal {
            return false;
        }
        // Unchanged polls are stored collapsed, one row with a count per run of them.
        let Ok(polls) = self.store.poll_records(&watch.name).await else {
            return false;
        };
        let mut seen = 0u32;
        for record in polls.iter().rev() {
            match record.outcome.as_str() {
                "unchanged" => seen += u32::try_from(record.count).unwrap_or(u32::MAX),
                "first" | "changed" => {
                    seen += 1;
                    break;
                }
                _ => {}
            }
        }
        if seen >= after {
            tracing::info!(
                watch = %watch.name,
                polls = seen,
                "the restore task has finished; it is not polled any more"
            );
            self.runtime.mark_done(&watch.name);
            return true;
        }
        false
    }
}
