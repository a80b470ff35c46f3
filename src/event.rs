//! Events: the state transitions the diff engine finds, and what routes and templates consume.
//!
//! An event is plain data with a stable id, so the same transition keeps the same identity from
//! detection through storage, rendering and every delivery attempt.

use serde::{Deserialize, Serialize};

use crate::snapshot::{Item, RestoreTruth, Scope, Target};

/// What happened, without the scope. Combined with a [`Scope`] it gives the event kind string,
/// e.g. `precheck.failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// First seen running, or running again after it had ended.
    Started,
    /// One item's State changed.
    ItemChanged,
    /// Progress changed.
    Progress,
    /// Status became `failed`.
    Failed,
    /// A pre-check's Status became `finish`.
    Passed,
    /// A restore's Status became `finish`.
    Completed,
    /// Status became a value DBS did not document; reported rather than ignored.
    StatusChanged,
    /// A restore task was paused (`RestoreStatus` `pause`).
    Paused,
    /// A discovered backup plan or restore task is no longer listed (or no longer matches its
    /// `[[discover]]` filter): reported once, then no longer polled.
    Retired,
    /// Polling the watch failed several times in a row (`poll.failed`): nobody would otherwise
    /// notice that dbswatch has gone blind. Emitted once per run of failures.
    PollFailed,
    /// The first successful poll after a `poll.failed` (`poll.recovered`).
    PollRecovered,
}

impl Change {
    /// The suffix used in event kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Started => "started",
            Change::ItemChanged => "item_changed",
            Change::Progress => "progress",
            Change::Failed => "failed",
            Change::Passed => "passed",
            Change::Completed => "completed",
            Change::StatusChanged => "status_changed",
            Change::Paused => "paused",
            Change::Retired => "retired",
            Change::PollFailed => "poll_failed",
            Change::PollRecovered => "poll_recovered",
        }
    }

    /// True for the poll-health changes, whose kinds are `poll.*` whatever the target.
    pub fn is_poll_health(self) -> bool {
        matches!(self, Change::PollFailed | Change::PollRecovered)
    }
}

/// Every event kind the product can emit, for validation of channel filters and for samples.
pub const ALL_KINDS: &[&str] = &[
    "precheck.started",
    "precheck.item_changed",
    "precheck.progress",
    "precheck.failed",
    "precheck.passed",
    "precheck.status_changed",
    "restore.started",
    "restore.item_changed",
    "restore.progress",
    "restore.failed",
    "restore.completed",
    "restore.status_changed",
    "restore.paused",
    "precheck.retired",
    "restore.retired",
    "poll.failed",
    "poll.recovered",
];

/// Kinds a channel receives when it names no `events`: everything but the chatty ones.
pub fn is_default_kind(kind: &str) -> bool {
    !(kind.ends_with(".item_changed") || kind.ends_with(".progress"))
}

/// Does `kind` match the filter `pattern`? Patterns are exact kinds or globs with `*`
/// (`precheck.*`, `*.failed`, `*`).
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    glob_match(pattern.as_bytes(), kind.as_bytes())
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// One item's state transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemChange {
    /// The item as it is now.
    pub item: Item,
    /// Its State before, or `None` when the item was not there before.
    pub previous_state: Option<String>,
}

/// A state transition of one watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable identity (a UUID) used as idempotency key towards receivers.
    pub id: String,
    /// `precheck` or `restore`.
    pub scope: Scope,
    /// What happened.
    pub change: Change,
    /// The configured watch name.
    pub watch: String,
    /// The DBS object.
    pub target: Target,
    /// Overall Status before, `None` on the first poll.
    pub status_before: Option<String>,
    /// Overall Status now.
    pub status: Option<String>,
    /// Progress before.
    pub progress_before: Option<i64>,
    /// Progress now.
    pub progress: Option<i64>,
    /// The items that matter for this event: problem items for `failed`, warnings for
    /// `passed`/`completed`, the changed item for `item_changed`.
    pub items: Vec<Item>,
    /// For `item_changed`: the transition.
    pub item_change: Option<ItemChange>,
    /// Total number of items in the snapshot, for "3 of 12 checks failed".
    pub item_total: usize,
    /// When the poll that saw it finished, epoch milliseconds.
    pub observed_at_ms: i64,
    /// For failures: why, in DBS's words, from `DescribeJobErrorCode`. Absent when DBS had no
    /// answer (and in events stored before dbswatch asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_error: Option<JobError>,
    /// For restore watches: the task's status and phase progress from `DescribeRestoreTaskList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_task: Option<RestoreTruth>,
    /// For `poll.failed` / `poll.recovered`: the failed polls and the last error. Absent on
    /// every other event (and in events stored before poll health existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollHealth>,
}

/// `DescribeJobErrorCode`'s answer about a failed backup or restore job: the richest reason DBS
/// gives, attached to `*.failed` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// The task or job id that was asked about.
    pub task_id: String,
    /// `ErrorCode`.
    pub code: Option<String>,
    /// `ErrorMessage`.
    pub message: Option<String>,
    /// `JobState`.
    pub job_state: Option<String>,
    /// `JobType`.
    pub job_type: Option<String>,
}

/// Why polling a watch failed, carried by `poll.failed` and `poll.recovered` events so the
/// message can say what went wrong and what to do without anyone reading logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollHealth {
    /// Failed polls in a row (for `poll.recovered`: how many failed before this success).
    pub failures: u32,
    /// When the first of those failed polls started, epoch milliseconds.
    pub since_ms: i64,
    /// The classification of the last error (`throttled`, `signature`, `credentials`, ...).
    pub error_kind: Option<String>,
    /// The DBS error code of the last error, when it had one (`Throttling.User`).
    pub code: Option<String>,
    /// The last error in plain words, secrets removed; it ends with what to do.
    pub message: String,
    /// What to do about it, on its own (also part of `message`).
    pub hint: String,
}
impl Event {
    /// The kind string, e.g. `precheck.failed`; `poll.failed` and `poll.recovered` for poll
    /// health, whatever the watch's target.
    pub fn kind(&self) -> String {
        match self.change {
            Change::PollFailed => "poll.failed".to_string(),
            Change::PollRecovered => "poll.recovered".to_string(),
            _ => format!("{}.{}", self.scope.as_str(), self.change.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_kinds() {
        assert!(kind_matches("precheck.*", "precheck.failed"));
        assert!(kind_matches("*.failed", "restore.failed"));
        assert!(kind_matches("*", "restore.progress"));
        assert!(kind_matches("precheck.failed", "precheck.failed"));
        assert!(!kind_matches("precheck.failed", "precheck.failed2"));
        assert!(!kind_matches("precheck.*", "restore.failed"));
        assert!(!kind_matches("*.failed", "precheck.passed"));
    }

    #[test]
    fn default_kinds_leave_out_item_changes_and_progress() {
        let defaults: Vec<_> = ALL_KINDS.iter().filter(|k| is_default_kind(k)).collect();
        assert_eq!(defaults.len(), 13);
        assert!(is_default_kind("poll.failed"));
        assert!(!is_default_kind("precheck.item_changed"));
        assert!(!is_default_kind("restore.progress"));
    }
}
