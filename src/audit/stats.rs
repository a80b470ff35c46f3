//! Per-watch summary over stored events: runs, failures, how long runs take (mean and p95), and
//! the checks that fail most. Built from headline events only (`started`, `failed`, `passed`,
//! `completed`, `status_changed`), which events retention keeps far longer than snapshots.

use std::collections::BTreeMap;

use serde::Serialize;

use super::timeline::{is_terminal, split_runs};
use crate::event::{Change, Event};
use crate::snapshot::Target;

/// The headline kinds stats read.
pub const HEADLINE_KINDS: [&str; 5] = [
    "*.started",
    "*.failed",
    "*.passed",
    "*.completed",
    "*.status_changed",
];

/// How many failing checks to list per watch.
pub const TOP_CHECKS: usize = 3;

/// The summary of one watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchStats {
    /// Watch name.
    pub watch: String,
    /// The DBS object (of its newest event).
    pub target: Option<Target>,
    /// `precheck` or `restore`.
    pub scope: Option<String>,
    /// Runs seen (ended or not).
    pub runs: usize,
    /// Runs that ended `failed`.
    pub failures: usize,
    /// Runs that ended `finish` (passed or completed).
    pub succeeded: usize,
    /// A run is going on now.
    pub ongoing: bool,
    /// Runs whose start and end were both observed: the ones with a duration.
    pub measured: usize,
    /// Mean duration of measured runs, ms.
    pub mean_ms: Option<i64>,
    /// 95th percentile (nearest rank) of measured runs, ms.
    pub p95_ms: Option<i64>,
    /// The checks most often failed (`failed` or `catched`) in failed runs, with counts.
    pub top_failing: Vec<(String, usize)>,
}

/// Summarise one watch from its headline events, oldest first.
pub fn compute(watch: &str, events: &[Event]) -> WatchStats {
    let runs = split_runs(events);
    let mut failures = 0;
    let mut succeeded = 0;
    let mut ongoing = false;
    let mut durations: Vec<i64> = Vec::new();
    let mut checks: BTreeMap<String, usize> = BTreeMap::new();
    for range in &runs {
        let run = &events[range.clone()];
        let Some(end) = run.iter().rev().find(|e| is_terminal(e)) else {
            ongoing = true;
            continue;
        };
        match end.change {
            Change::Failed => {
                failures += 1;
                for item in &end.items {
                    if matches!(item.state.as_deref(), Some("failed") | Some("catched")) {
                        let code = item.code.clone().unwrap_or_else(|| "?".into());
                        *checks.entry(code).or_default() += 1;
                    }
                }
            }
            Change::Passed | Change::Completed => succeeded += 1,
            _ => {}
        }
        if let Some(start) = run.iter().find(|e| e.change == Change::Started) {
            durations.push(end.observed_at_ms - start.observed_at_ms);
        }
    }
    // The last run is the only one that can still be going.
    ongoing &= runs
        .last()
        .is_some_and(|r| !events[r.clone()].iter().any(is_terminal));
    durations.sort_unstable();
    let mean_ms =
        (!durations.is_empty()).then(|| durations.iter().sum::<i64>() / durations.len() as i64);
    let p95_ms = percentile(&durations, 95);
    let mut top: Vec<(String, usize)> = checks.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP_CHECKS);
    let newest = events.last();
    WatchStats {
        watch: watch.to_string(),
        target: newest.map(|e| e.target.clone()),
        scope: newest.map(|e| e.scope.as_str().to_string()),
        runs: runs.len(),
        failures,
        succeeded,
        ongoing,
        measured: durations.len(),
        mean_ms,
        p95_ms,
        top_failing: top,
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], pct: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * pct as usize).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Item, Scope};

    fn ev(change: Change, at: i64, failing: &[&str]) -> Event {
        Event {
            id: format!("{at}"),
            scope: Scope::Restore,
            change,
            watch: "drill".into(),
            target: Target::RestoreTask("t".into()),
            status_before: None,
            status: Some(
                match change {
                    Change::Failed => "failed",
                    Change::Completed => "finish",
                    _ => "running",
                }
                .into(),
            ),
            progress_before: None,
            progress: None,
            items: failing
                .iter()
                .map(|c| Item {
                    code: Some(c.to_string()),
                    state: Some("failed".into()),
                    ..Item::default()
                })
                .chain(std::iter::once(Item {
                    code: Some("WARN_ONLY".into()),
                    state: Some("warning".into()),
                    ..Item::default()
                }))
                .collect(),
            item_change: None,
            item_total: 3,
            observed_at_ms: at,
            job_error: None,
            restore_task: None,
            poll: None,
        }
    }

    #[test]
    fn runs_failures_durations_and_top_checks() {
        let events = vec![
            // Seen for the first time already failed: a run, a failure, no duration.
            ev(Change::Failed, 0, &["CHECK_A"]),
            ev(Change::Started, 1_000, &[]),
            ev(Change::Completed, 61_000, &[]),
            ev(Change::Started, 100_000, &[]),
            ev(Change::Failed, 220_000, &["CHECK_A", "CHECK_B"]),
            ev(Change::Started, 300_000, &[]),
        ];
        let s = compute("drill", &events);
        assert_eq!(s.runs, 4);
        assert_eq!(s.failures, 2);
        assert_eq!(s.succeeded, 1);
        assert!(s.ongoing);
        assert_eq!(s.measured, 2);
        assert_eq!(s.mean_ms, Some(90_000));
        assert_eq!(s.p95_ms, Some(120_000));
        assert_eq!(
            s.top_failing,
            [("CHECK_A".to_string(), 2), ("CHECK_B".to_string(), 1)],
            "warnings are not failures"
        );
    }

    #[test]
    fn nearest_rank_percentile() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&v, 100), Some(20));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 95), None);
    }

    #[test]
    fn no_events_no_runs() {
        let s = compute("x", &[]);
        assert_eq!((s.runs, s.failures, s.mean_ms), (0, 0, None));
        assert!(!s.ongoing);
    }
}
