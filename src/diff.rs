//! The diff engine: from (previous snapshot, new snapshot) to events. Pure: no IO, no clock, no
//! randomness (event ids are supplied by the caller through [`DiffContext::next_id`]).
//!
//! Rules:
//! - The first poll of a watch compares against nothing known and emits only the headline for
//!   the current state (`started` when running, `failed`, `passed`/`completed`), never one
//!   `item_changed` per item: a newly added watch must not flood a channel.
//! - Afterwards, a change of overall Status gives the headline event for the new status; each
//!   item whose State changed (keyed by JobId and Item) gives `item_changed`; a change of
//!   Progress gives `progress`.
//! - A Status DBS did not document gives `status_changed`, so nothing new goes unseen.
//! - A restore watch whose snapshot carries the task's own status (`DescribeRestoreTaskList`)
//!   takes its headline from the restore's [`Lifecycle`] instead: `restore.started`,
//!   `restore.paused`, `restore.failed` (`stop`), `restore.completed`, each announced once however
//!   the pre-check list and the task list agree; a change of any phase's progress gives
//!   `restore.progress`. Every such event carries the task's status and phases.

use std::collections::HashMap;

use crate::event::{Change, Event, ItemChange};
use crate::snapshot::{Item, Lifecycle, RestoreTruth, Scope, Snapshot, Target};

/// Who the snapshots belong to and how to stamp the events.
pub struct DiffContext<'a> {
    /// Watch name.
    pub watch: &'a str,
    /// The DBS object.
    pub target: &'a Target,
    /// When the new snapshot was observed, epoch ms.
    pub observed_at_ms: i64,
    /// Source of event ids (UUIDs in production, counters in tests).
    pub next_id: &'a mut (dyn FnMut() -> String + Send),
}

/// The events that `next` means, given what was known before.
pub fn diff(prev: Option<&Snapshot>, next: &Snapshot, ctx: &mut DiffContext<'_>) -> Vec<Event> {
    if ctx.target.scope() == Scope::Restore && next.restore.is_some() {
        return diff_restore(prev, next, ctx);
    }
    let mut events = Vec::new();
    let scope = ctx.target.scope();
    let status_before = prev.and_then(|p| p.status.clone());
    let status_changed = prev.is_none() || status_before != next.status;

    // Item transitions first: they happened before the overall status that summarises them.
    if let Some(prev) = prev {
        item_changes(prev, next, ctx, &mut events);
        if prev.progress != next.progress && next.progress.is_some() {
            events.push(base_event(Some(prev), next, ctx, Change::Progress));
        }
    }

    if status_changed && let Some(change) = headline(scope, next.status.as_deref(), prev.is_none())
    {
        let mut event = base_event(prev, next, ctx, change);
        event.items = match change {
            Change::Failed | Change::Passed | Change::Completed => next.problem_items(),
            _ => Vec::new(),
        };
        events.push(event);
    }
    events
}

/// One `item_changed` event per pre-check item whose State changed.
fn item_changes(
    prev: &Snapshot,
    next: &Snapshot,
    ctx: &mut DiffContext<'_>,
    events: &mut Vec<Event>,
) {
    let before: HashMap<(String, String), &Item> =
        prev.items.iter().map(|i| (i.key(), i)).collect();
    for item in &next.items {
        let previous_state = match before.get(&item.key()) {
            Some(old) if old.state == item.state => continue,
            Some(old) => old.state.clone(),
            // A new item that is still waiting is not news; one that already moved is.
            None if matches!(item.state.as_deref(), None | Some("init")) => continue,
            None => None,
        };
        let mut event = base_event(Some(prev), next, ctx, Change::ItemChanged);
        event.items = vec![item.clone()];
        event.item_change = Some(ItemChange {
            item: item.clone(),
            previous_state,
        });
        events.push(event);
    }
}

/// A restore watch that knows the task's own status: headlines follow the restore's lifecycle,
/// progress follows the phases.
fn diff_restore(prev: Option<&Snapshot>, next: &Snapshot, ctx: &mut DiffContext<'_>) -> Vec<Event> {
    let mut events = Vec::new();
    if let Some(prev) = prev {
        item_changes(prev, next, ctx, &mut events);
        let phases_before = prev.restore.as_ref().map(|r| &r.phases);
        let phases_now = next.restore.as_ref().map(|r| &r.phases);
        // The first time the task list is seen it is a baseline, not a change.
        if phases_before.is_some() && phases_before != phases_now {
            events.push(restore_event(Some(prev), next, ctx, Change::Progress));
        } else if prev.progress != next.progress && next.progress.is_some() {
            events.push(base_event(Some(prev), next, ctx, Change::Progress));
        }
    }
    let now = next.lifecycle();
    if prev.map(Snapshot::lifecycle).as_ref() != Some(&now) {
        let change = match now {
            Lifecycle::Running => Some(Change::Started),
            Lifecycle::Paused => Some(Change::Paused),
            Lifecycle::Failed => Some(Change::Failed),
            Lifecycle::Finished => Some(Change::Completed),
            Lifecycle::Other(_) if prev.is_some() => Some(Change::StatusChanged),
            Lifecycle::Other(_) | Lifecycle::Waiting | Lifecycle::Unknown => None,
        };
        if let Some(change) = change {
            let mut event = restore_event(prev, next, ctx, change);
            if matches!(change, Change::Failed | Change::Completed) {
                event.items = next.problem_items();
            }
            events.push(event);
        }
    }
    for event in &mut events {
        event.restore_task = next.restore.clone();
    }
    events
}

/// An event whose status is the task's `RestoreStatus` (the pre-check Status when the task list
/// did not say) and whose progress is the phases' mean.
fn restore_event(
    prev: Option<&Snapshot>,
    next: &Snapshot,
    ctx: &mut DiffContext<'_>,
    change: Change,
) -> Event {
    let status = |s: &Snapshot| {
        s.restore
            .as_ref()
            .and_then(|r| r.status.clone())
            .or_else(|| s.status.clone())
    };
    let progress = |s: &Snapshot| {
        s.restore
            .as_ref()
            .and_then(RestoreTruth::overall_progress)
            .or(s.progress)
    };
    let mut event = base_event(prev, next, ctx, change);
    event.status_before = prev.and_then(status);
    event.status = status(next);
    event.progress_before = prev.and_then(progress);
    event.progress = progress(next);
    event
}

/// The headline change for a status, or none when the status says nothing worth announcing
/// (absent, or an undocumented value seen on the very first poll).
fn headline(scope: Scope, status: Option<&str>, first_poll: bool) -> Option<Change> {
    match status? {
        "running" => Some(Change::Started),
        "failed" => Some(Change::Failed),
        "finish" => Some(match scope {
            Scope::Precheck => Change::Passed,
            Scope::Restore => Change::Completed,
        }),
        _ if first_poll => None,
        _ => Some(Change::StatusChanged),
    }
}

fn base_event(
    prev: Option<&Snapshot>,
    next: &Snapshot,
    ctx: &mut DiffContext<'_>,
    change: Change,
) -> Event {
    Event {
        id: (ctx.next_id)(),
        scope: ctx.target.scope(),
        change,
        watch: ctx.watch.to_string(),
        target: ctx.target.clone(),
        status_before: prev.and_then(|p| p.status.clone()),
        status: next.status.clone(),
        progress_before: prev.and_then(|p| p.progress),
        progress: next.progress,
        items: Vec::new(),
        item_change: None,
        item_total: next.items.len(),
        observed_at_ms: ctx.observed_at_ms,
        job_error: None,
        restore_task: None,
        poll: None,
    }
}

/// Run a sequence of snapshots through the engine as successive polls would, starting from
/// `baseline`. Identical consecutive snapshots produce nothing, like unchanged polls.
pub fn replay(
    watch: &str,
    target: &Target,
    baseline: Option<Snapshot>,
    snapshots: impl IntoIterator<Item = (Snapshot, i64)>,
    next_id: &mut (dyn FnMut() -> String + Send),
) -> Vec<Event> {
    let mut prev = baseline;
    let mut events = Vec::new();
    for (snapshot, observed_at_ms) in snapshots {
        if prev.as_ref() == Some(&snapshot) {
            continue;
        }
        let mut ctx = DiffContext {
            watch,
            target,
            observed_at_ms,
            next_id,
        };
        events.extend(diff(prev.as_ref(), &snapshot, &mut ctx));
        prev = Some(snapshot);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(code: &str, state: &str) -> Item {
        Item {
            job_id: Some("job1".into()),
            code: Some(code.into()),
            group: Some(format!("{code}_DETAIL")),
            order: Some("10".into()),
            state: Some(state.into()),
            error: (state == "failed" || state == "warning").then(|| format!("{code} broke")),
            ..Item::default()
        }
    }

    fn snap(status: &str, progress: i64, items: &[(&str, &str)]) -> Snapshot {
        Snapshot::new(
            Some(status.into()),
            Some(progress),
            items.iter().map(|(c, s)| item(c, s)).collect(),
        )
    }

    /// Diff and describe each event as "kind[ detail]" for compact expectations.
    fn check(target: Target, prev: Option<Snapshot>, next: Snapshot, expected: &[&str]) {
        let mut n = 0;
        let mut next_id = || {
            n += 1;
            format!("e{n}")
        };
        let mut ctx = DiffContext {
            watch: "w",
            target: &target,
            observed_at_ms: 1,
            next_id: &mut next_id,
        };
        let events = diff(prev.as_ref(), &next, &mut ctx);
        let got: Vec<String> = events.iter().map(describe).collect();
        assert_eq!(got, expected);
    }

    fn describe(e: &Event) -> String {
        match &e.item_change {
            Some(c) => format!(
                "{} {} {}->{}",
                e.kind(),
                c.item.code.as_deref().unwrap_or("?"),
                c.previous_state.as_deref().unwrap_or("none"),
                c.item.state.as_deref().unwrap_or("none")
            ),
            None if !e.items.is_empty() => {
                let codes: Vec<_> = e.items.iter().filter_map(|i| i.code.clone()).collect();
                format!("{} [{}]", e.kind(), codes.join(","))
            }
            None => e.kind(),
        }
    }

    fn plan() -> Target {
        Target::BackupPlan("p".into())
    }
    fn task() -> Target {
        Target::RestoreTask("t".into())
    }

    #[test]
    fn first_poll_emits_only_the_headline() {
        let running = snap("running", 10, &[("A", "running"), ("B", "init")]);
        check(plan(), None, running.clone(), &["precheck.started"]);
        check(task(), None, running, &["restore.started"]);
        let failed = snap("failed", 100, &[("A", "finish"), ("B", "failed")]);
        check(plan(), None, failed, &["precheck.failed [B]"]);
        let done = snap("finish", 100, &[("A", "finish"), ("B", "warning")]);
        check(plan(), None, done.clone(), &["precheck.passed [B]"]);
        check(task(), None, done, &["restore.completed [B]"]);
    }

    #[test]
    fn first_poll_with_unknown_or_missing_status_is_a_silent_baseline() {
        check(
            plan(),
            None,
            snap("paused_by_ops", 5, &[("A", "init")]),
            &[],
        );
        check(plan(), None, Snapshot::new(None, None, vec![]), &[]);
    }

    #[test]
    fn same_snapshot_emits_nothing() {
        let s = snap("running", 40, &[("A", "finish"), ("B", "running")]);
        check(plan(), Some(s.clone()), s, &[]);
    }

    #[test]
    fn item_state_changes_and_progress() {
        let a = snap("running", 10, &[("A", "running"), ("B", "init")]);
        let b = snap("running", 40, &[("A", "finish"), ("B", "running")]);
        check(
            plan(),
            Some(a),
            b,
            &[
                "precheck.item_changed A running->finish",
                "precheck.item_changed B init->running",
                "precheck.progress",
            ],
        );
    }

    #[test]
    fn failure_carries_every_problem_item() {
        let a = snap(
            "running",
            40,
            &[("A", "finish"), ("B", "running"), ("C", "init")],
        );
        let b = snap(
            "failed",
            100,
            &[("A", "finish"), ("B", "warning"), ("C", "failed")],
        );
        check(
            plan(),
            Some(a),
            b,
            &[
                "precheck.item_changed B running->warning",
                "precheck.item_changed C init->failed",
                "precheck.progress",
                "precheck.failed [B,C]",
            ],
        );
    }

    #[test]
    fn restore_finish_is_completed() {
        let a = snap("running", 80, &[("R", "running")]);
        let b = snap("finish", 100, &[("R", "finish")]);
        check(
            task(),
            Some(a),
            b,
            &[
                "restore.item_changed R running->finish",
                "restore.progress",
                "restore.completed",
            ],
        );
    }

    #[test]
    fn rerun_after_failure_is_started_again_and_second_failure_is_announced() {
        let failed = snap("failed", 100, &[("A", "failed")]);
        let running = snap("running", 0, &[("A", "running")]);
        check(
            plan(),
            Some(failed.clone()),
            running.clone(),
            &[
                "precheck.item_changed A failed->running",
                "precheck.progress",
                "precheck.started",
            ],
        );
        check(
            plan(),
            Some(running),
            failed,
            &[
                "precheck.item_changed A running->failed",
                "precheck.progress",
                "precheck.failed [A]",
            ],
        );
    }

    #[test]
    fn unknown_states_are_kept_and_reported() {
        let a = snap("running", 10, &[("A", "running")]);
        let b = snap("suspended", 10, &[("A", "frozen")]);
        check(
            plan(),
            Some(a),
            b,
            &[
                "precheck.item_changed A running->frozen",
                "precheck.status_changed",
            ],
        );
    }

    #[test]
    fn new_items_count_only_once_they_move() {
        let a = snap("running", 10, &[("A", "running")]);
        let b = snap(
            "running",
            10,
            &[("A", "running"), ("B", "init"), ("C", "finish")],
        );
        check(
            plan(),
            Some(a),
            b,
            &["precheck.item_changed C none->finish"],
        );
    }

    #[test]
    fn missing_fields_do_not_break_the_diff() {
        let a = Snapshot::new(
            Some("running".into()),
            None,
            vec![Item {
                code: Some("A".into()),
                ..Item::default()
            }],
        );
        let b = Snapshot::new(
            Some("failed".into()),
            None,
            vec![Item {
                code: Some("A".into()),
                state: Some("failed".into()),
                ..Item::default()
            }],
        );
        check(
            plan(),
            Some(a),
            b,
            &[
                "precheck.item_changed A none->failed",
                "precheck.failed [A]",
            ],
        );
    }

    #[test]
    fn replay_skips_identical_consecutive_snapshots() {
        let a = snap("running", 10, &[("A", "running")]);
        let b = snap("failed", 100, &[("A", "failed")]);
        let mut n = 0;
        let mut next_id = || {
            n += 1;
            format!("e{n}")
        };
        let events = replay(
            "w",
            &plan(),
            None,
            vec![(a.clone(), 1), (a, 2), (b, 3)],
            &mut next_id,
        );
        let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            [
                "precheck.started",
                "precheck.item_changed",
                "precheck.progress",
                "precheck.failed"
            ]
        );
        assert_eq!(events[3].observed_at_ms, 3);
        let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    }

    fn truth(status: &str, phases: &[(&str, i64)]) -> RestoreTruth {
        RestoreTruth {
            status: Some(status.into()),
            phases: phases
                .iter()
                .map(|(n, p)| crate::snapshot::RestorePhase {
                    name: (*n).into(),
                    progress: *p,
                })
                .collect(),
            error: None,
        }
    }

    fn restore(precheck: &str, status: &str, data: i64) -> Snapshot {
        snap(precheck, 100, &[("RESTORE_PRECHECK", "finish")]).with_restore(Some(truth(
            status,
            &[("structure_before_data", 100), ("full_data", data)],
        )))
    }

    #[test]
    fn restore_status_transitions_give_one_headline_each() {
        let running = restore("finish", "running", 20);
        check(task(), None, running.clone(), &["restore.started"]);
        let paused = restore("finish", "pause", 20);
        check(
            task(),
            Some(running.clone()),
            paused.clone(),
            &["restore.paused"],
        );
        check(task(), Some(paused), running.clone(), &["restore.started"]);
        let stopped = restore("finish", "stop", 20);
        check(task(), Some(running.clone()), stopped, &["restore.failed"]);
        let finished = restore("finish", "finish", 100);
        check(
            task(),
            Some(restore("finish", "running", 100)),
            finished,
            &["restore.completed"],
        );
        check(
            task(),
            Some(restore("finish", "running", 100)),
            restore("finish", "quantum", 100),
            &["restore.status_changed"],
        );
    }

    #[test]
    fn phase_progress_is_reported_with_the_task() {
        let mut n = 0;
        let mut next_id = || {
            n += 1;
            format!("e{n}")
        };
        let target = task();
        let mut ctx = DiffContext {
            watch: "w",
            target: &target,
            observed_at_ms: 1,
            next_id: &mut next_id,
        };
        let events = diff(
            Some(&restore("finish", "running", 20)),
            &restore("finish", "running", 60),
            &mut ctx,
        );
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind(), "restore.progress");
        assert_eq!((e.progress_before, e.progress), (Some(60), Some(80)));
        assert_eq!(e.status.as_deref(), Some("running"));
        let task = e.restore_task.as_ref().unwrap();
        assert_eq!(task.phases[1].progress, 60);
    }

    #[test]
    fn a_passed_precheck_of_a_waiting_restore_is_not_a_completion() {
        // The pre-check list says finish, the task has not started: nothing is done yet.
        let waiting = restore("finish", "check_pass", 0);
        check(task(), None, waiting.clone(), &[]);
        check(
            task(),
            Some(waiting),
            restore("finish", "running", 0),
            &["restore.started"],
        );
        // A waiting task whose pre-check failed has failed.
        check(
            task(),
            None,
            snap("failed", 100, &[("RESTORE_PRECHECK", "failed")])
                .with_restore(Some(truth("init", &[]))),
            &["restore.failed [RESTORE_PRECHECK]"],
        );
    }

    #[test]
    fn the_task_list_appearing_later_repeats_nothing() {
        // Stored before dbswatch read the task list: the pre-check said finish.
        let old = snap("finish", 100, &[("RESTORE_PRECHECK", "finish")]);
        check(task(), Some(old), restore("finish", "finish", 100), &[]);
        // A running restore whose pre-check list still says running: no second `started`.
        let old = snap("running", 40, &[("RESTORE_PRECHECK", "finish")]);
        let now = snap("running", 40, &[("RESTORE_PRECHECK", "finish")])
            .with_restore(Some(truth("running", &[("full_data", 10)])));
        check(task(), Some(old), now, &[]);
    }

    #[test]
    fn backup_plans_ignore_restore_truth_and_keep_old_hashes() {
        let plain = snap("running", 10, &[("A", "running")]);
        let hash = plain.content_hash();
        assert!(!plain.canonical_json().contains("restore"));
        assert_eq!(plain.clone().with_restore(None).content_hash(), hash);
    }
}
