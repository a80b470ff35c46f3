//! The normalised state of one watch at one moment: what the diff engine compares.
//!
//! A DBS response carries per-request noise (`RequestId`, `HttpStatusCode`, `Success`) and item
//! order that is not guaranteed. [`Snapshot`] keeps only the content that means something, in a
//! stable order, so two responses that say the same thing hash the same and store no new row.
//! Pure data: no IO, no clock.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which DBS object a watch follows. It decides the event prefix (`precheck.*` or `restore.*`)
/// and which request parameter carries the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Target {
    /// A backup plan's pre-check, polled with `BackupPlanId`.
    BackupPlan(String),
    /// A restore task, polled with `RestoreTaskId`.
    RestoreTask(String),
}

impl Target {
    /// The id DBS knows the object by.
    pub fn id(&self) -> &str {
        match self {
            Target::BackupPlan(id) | Target::RestoreTask(id) => id,
        }
    }

    /// The DBS request parameter that names this object.
    pub fn param_name(&self) -> &'static str {
        match self {
            Target::BackupPlan(_) => "BackupPlanId",
            Target::RestoreTask(_) => "RestoreTaskId",
        }
    }

    /// The event-kind prefix for this object.
    pub fn scope(&self) -> Scope {
        match self {
            Target::BackupPlan(_) => Scope::Precheck,
            Target::RestoreTask(_) => Scope::Restore,
        }
    }

    /// Stable machine name of the target type, as stored and shown.
    pub fn type_name(&self) -> &'static str {
        match self {
            Target::BackupPlan(_) => "backup_plan",
            Target::RestoreTask(_) => "restore_task",
        }
    }

    /// Rebuild a target from its stored type name and id.
    pub fn from_parts(type_name: &str, id: &str) -> Option<Target> {
        match type_name {
            "backup_plan" => Some(Target::BackupPlan(id.to_string())),
            "restore_task" => Some(Target::RestoreTask(id.to_string())),
            _ => None,
        }
    }
}

/// The family of events a watch produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A backup plan's pre-check.
    Precheck,
    /// A restore task.
    Restore,
}

impl Scope {
    /// The prefix used in event kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Precheck => "precheck",
            Scope::Restore => "restore",
        }
    }
}

/// One check item as DBS reported it. Every field is optional because DBS omits them freely
/// (an `init` item has no `FinishTime` and no `ErrMsg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Item {
    /// `JobId`: the job the check belongs to.
    pub job_id: Option<String>,
    /// `Item`: the check's code, e.g. `CHECK_BINLOG_ON`.
    pub code: Option<String>,
    /// `Names`: the group the check belongs to.
    pub group: Option<String>,
    /// `OrderNum`: a string in DBS, kept as given.
    pub order: Option<String>,
    /// `State`: `init`, `running`, `finish`, `warning`, `failed`, `catched` or anything new.
    pub state: Option<String>,
    /// `ErrMsg`: the check's error text.
    pub error: Option<String>,
    /// `BootTime`, epoch milliseconds.
    pub boot_time: Option<i64>,
    /// `FinishTime`, epoch milliseconds.
    pub finish_time: Option<i64>,
}

impl Item {
    /// Identity of an item across polls: (JobId, Item), unique whether or not JobId is shared.
    pub fn key(&self) -> (String, String) {
        (
            self.job_id.clone().unwrap_or_default(),
            self.code.clone().unwrap_or_default(),
        )
    }

    /// True when the item's state says something went wrong (`warning`, `failed`, `catched`).
    pub fn is_problem(&self) -> bool {
        matches!(
            self.state.as_deref(),
            Some("warning") | Some("failed") | Some("catched")
        )
    }
}

/// The meaningful content of one successful DBS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Overall `Status`: `running`, `failed`, `finish` or anything new.
    pub status: Option<String>,
    /// Overall `Progress`, 0 to 100.
    pub progress: Option<i64>,
    /// The check items, in a stable order.
    pub items: Vec<Item>,
    /// For restore watches: what `DescribeRestoreTaskList` says about the task. Absent for
    /// backup plans and when DBS did not list the task; left out of the JSON when absent, so the
    /// content hash of every snapshot without it is what it always was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreTruth>,
}

/// A restore task as `DescribeRestoreTaskList` reports it: the task's own status and the
/// progress of each restore phase, which say more than the pre-check list once the restore runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RestoreTruth {
    /// `RestoreStatus`: `init`, `running`, `stop` (failed), `pause`, `check_pass`, or a value
    /// DBS did not document (kept as given).
    pub status: Option<String>,
    /// Progress of each phase DBS reported, in the order the phases run.
    pub phases: Vec<RestorePhase>,
    /// `ErrMessage`, without DBS's `"NULL"` placeholder.
    pub error: Option<String>,
}

/// One restore phase's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePhase {
    /// Stable phase name, e.g. `full_data`; see [`RESTORE_PHASES`].
    pub name: String,
    /// 0 to 100.
    pub progress: i64,
}

/// The restore phases: (stable name, DescribeRestoreTaskList field), in the order DBS runs them.
pub const RESTORE_PHASES: &[(&str, &str)] = &[
    ("structure_before_data", "FullStruforeRestoreProgress"),
    ("full_data", "FullDataRestoreProgress"),
    ("structure_after_data", "FullStruAfterRestoreProgress"),
    ("incremental", "ContinuousRestoreProgress"),
    ("physical_full", "PhysicalFullBackupRecoverProgress"),
    (
        "physical_increment",
        "PhysicalIncrementBackupRecoverProgress",
    ),
    (
        "physical_full_and_increment",
        "PhysicalFullAndIncrementBackupRecoverProgress",
    ),
    ("physical_recover", "PhysicalBackupRecoverProgress"),
    ("physical_online", "PhysicalDatabaseOnlineProgress"),
];

/// Where a restore stands, all sources considered: what restore events are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Nothing known yet.
    Unknown,
    /// Created or pre-checked, not started (`init`, `check_pass`).
    Waiting,
    /// Running.
    Running,
    /// Paused (`pause`).
    Paused,
    /// Failed (`stop`, or a failed pre-check).
    Failed,
    /// Finished.
    Finished,
    /// A status DBS did not document.
    Other(String),
}

impl Lifecycle {
    /// True for states a task does not leave on its own: finished or failed.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Lifecycle::Finished | Lifecycle::Failed)
    }
}

impl RestoreTruth {
    /// Mean progress of the phases DBS reported, or `None` when it reported none.
    pub fn overall_progress(&self) -> Option<i64> {
        if self.phases.is_empty() {
            return None;
        }
        let sum: i64 = self.phases.iter().map(|p| p.progress.clamp(0, 100)).sum();
        Some(sum / self.phases.len() as i64)
    }
}

impl Snapshot {
    /// Build a snapshot and put its items in the stable order that hashing relies on. Values
    /// that carry no meaning are dropped rather than announced: an empty Status or State is
    /// unknown, and a Progress outside 0..=100 is not a progress.
    pub fn new(status: Option<String>, progress: Option<i64>, mut items: Vec<Item>) -> Snapshot {
        let status = status.filter(|s| !s.trim().is_empty());
        let progress = progress.filter(|p| (0..=100).contains(p));
        for item in &mut items {
            if item.state.as_deref().is_some_and(|s| s.trim().is_empty()) {
                item.state = None;
            }
        }
        items.sort_by_cached_key(order_key);
        Snapshot {
            status,
            progress,
            items,
            restore: None,
        }
    }

    /// The same snapshot with what `DescribeRestoreTaskList` said about the task.
    pub fn with_restore(mut self, restore: Option<RestoreTruth>) -> Snapshot {
        self.restore = restore;
        self
    }

    /// Where the restore (or pre-check) stands. The task's `RestoreStatus` wins when DBS listed
    /// the task, because the pre-check list stops changing once the restore itself runs; the
    /// pre-check `Status` decides otherwise. A restore still waiting after a failed pre-check
    /// counts as failed (DBS documents `init` as "not started or pre-check failed").
    pub fn lifecycle(&self) -> Lifecycle {
        let precheck = match self.status.as_deref() {
            None => Lifecycle::Unknown,
            Some("running") => Lifecycle::Running,
            Some("failed") => Lifecycle::Failed,
            Some("finish") => Lifecycle::Finished,
            Some(other) => Lifecycle::Other(other.to_string()),
        };
        let Some(truth) = &self.restore else {
            return precheck;
        };
        match truth.status.as_deref().map(str::trim) {
            Some("running") => Lifecycle::Running,
            Some("stop") | Some("failed") => Lifecycle::Failed,
            Some("pause") | Some("paused") => Lifecycle::Paused,
            Some("finish") | Some("finished") | Some("success") | Some("completed") => {
                Lifecycle::Finished
            }
            Some("init") | Some("check_pass") | None | Some("") => match precheck {
                Lifecycle::Failed => Lifecycle::Failed,
                Lifecycle::Running => Lifecycle::Running,
                _ => Lifecycle::Waiting,
            },
            Some(other) => Lifecycle::Other(other.to_string()),
        }
    }

    /// Canonical JSON of the content; equal snapshots give equal bytes.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot always serialises")
    }

    /// Hex SHA-256 of the canonical JSON: the change detector.
    pub fn content_hash(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hasher = Sha256::new();
        // Straight into the hasher: no intermediate JSON string.
        serde_json::to_writer(&mut HashWriter(&mut hasher), self)
            .expect("a snapshot always serialises");
        let mut hex = String::with_capacity(64);
        for b in hasher.finalize() {
            hex.push(HEX[usize::from(b >> 4)] as char);
            hex.push(HEX[usize::from(b & 0x0f)] as char);
        }
        hex
    }

    /// Items whose state says something went wrong.
    pub fn problem_items(&self) -> Vec<Item> {
        self.items
            .iter()
            .filter(|i| i.is_problem())
            .cloned()
            .collect()
    }
}

/// Sort by OrderNum as a number when it is one (so "9" sorts before "10"), then by the key.
fn order_key(item: &Item) -> (i64, String, String, String) {
    let order = item.order.as_deref().unwrap_or("");
    let numeric = order.trim().parse::<i64>().unwrap_or(i64::MAX);
    let (job, code) = item.key();
    (numeric, order.to_string(), job, code)
}

/// Feeds serialised bytes to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(code: &str, order: &str, state: &str) -> Item {
        Item {
            job_id: Some("j".into()),
            code: Some(code.into()),
            order: Some(order.into()),
            state: Some(state.into()),
            ..Item::default()
        }
    }

    #[test]
    fn item_order_does_not_change_the_hash() {
        let a = Snapshot::new(
            Some("running".into()),
            Some(10),
            vec![item("A", "10", "init"), item("B", "9", "running")],
        );
        let b = Snapshot::new(
            Some("running".into()),
            Some(10),
            vec![item("B", "9", "running"), item("A", "10", "init")],
        );
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.items[0].code.as_deref(), Some("B"), "9 sorts before 10");
    }

    #[test]
    fn the_hash_is_the_hex_sha256_of_the_canonical_json() {
        // Stored hashes must stay comparable across versions: a different spelling would make
        // every watch look changed after an upgrade.
        let a = Snapshot::new(
            Some("running".into()),
            Some(40),
            vec![item("A", "1", "init")],
        );
        let digest = Sha256::digest(a.canonical_json().as_bytes());
        let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a.content_hash(), expected);
        assert_eq!(a.content_hash().len(), 64);
    }

    #[test]
    fn a_state_change_changes_the_hash() {
        let a = Snapshot::new(Some("running".into()), None, vec![item("A", "1", "init")]);
        let b = Snapshot::new(
            Some("running".into()),
            None,
            vec![item("A", "1", "running")],
        );
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn meaningless_values_are_dropped() {
        let s = Snapshot::new(Some("  ".into()), Some(-5), vec![item("A", "1", "")]);
        assert_eq!(s.status, None);
        assert_eq!(s.progress, None);
        assert_eq!(s.items[0].state, None);
        assert_eq!(Snapshot::new(None, Some(101), vec![]).progress, None);
        assert_eq!(Snapshot::new(None, Some(100), vec![]).progress, Some(100));
    }

    #[test]
    fn problem_states_are_warning_failed_and_catched() {
        for (state, problem) in [
            ("warning", true),
            ("failed", true),
            ("catched", true),
            ("finish", false),
            ("running", false),
            ("init", false),
            ("something_new", false),
        ] {
            assert_eq!(item("A", "1", state).is_problem(), problem, "{state}");
        }
    }
}
