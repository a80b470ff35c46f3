//! One pre-check or restore run as it unfolded, rebuilt from stored events.
//!
//! Events are kept longer than raw snapshots, so a timeline is built from them: item
//! transitions (`item_changed`, which carries the previous State), progress changes and the
//! overall status of every event. When the snapshot the run's first event was stored with is
//! still kept, it seeds the state of every item at the start, so items that never changed during
//! the run appear too. Times are when dbswatch observed each state (accurate to one poll
//! interval); the DBS-reported `BootTime`/`FinishTime` of the items are shown beside them.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;

use crate::event::{Change, Event};
use crate::snapshot::{Item, Snapshot, Target};

/// Split a watch's events (oldest first) into runs. A run starts with a `started` event (or the
/// first event), and a terminal status seen again after another terminal status starts one too.
/// Events observed in the same poll as a run's first event belong to that run (item
/// transitions are stored before the headline of their poll).
pub fn split_runs(events: &[Event]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0usize;
    let mut ended = false;
    for (i, e) in events.iter().enumerate() {
        let terminal = is_terminal(e);
        let begins = e.change == Change::Started || (ended && terminal);
        if i > start && begins {
            let mut cut = i;
            while cut > start + 1 && events[cut - 1].observed_at_ms == e.observed_at_ms {
                cut -= 1;
            }
            runs.push(start..cut);
            start = cut;
            ended = false;
        }
        if terminal {
            ended = true;
        }
    }
    if start < events.len() {
        runs.push(start..events.len());
    }
    runs
}

/// A headline that ends a run: failed, passed, completed, or an undocumented non-running status.
pub fn is_terminal(e: &Event) -> bool {
    match e.change {
        Change::Failed | Change::Passed | Change::Completed => true,
        Change::StatusChanged => e.status.as_deref() != Some("running"),
        _ => false,
    }
}

/// A state held for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// The state (item State, or overall Status).
    pub state: String,
    /// When dbswatch first saw it, epoch ms.
    pub entered_at_ms: i64,
    /// How long it was held until the next state; for the last state of a run still going, up
    /// to now; `None` for the final state of an ended run.
    pub duration_ms: Option<i64>,
    /// True when the state was already held when the run was first seen (it began earlier).
    pub already: bool,
}

/// One check item over the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemTimeline {
    /// `Item` code.
    pub code: Option<String>,
    /// `Names` group.
    pub group: Option<String>,
    /// `JobId`.
    pub job_id: Option<String>,
    /// `OrderNum`.
    pub order: Option<String>,
    /// Its states, in order.
    pub states: Vec<Segment>,
    /// The last error DBS gave for it.
    pub error: Option<String>,
    /// DBS `BootTime`, epoch ms.
    pub boot_time_ms: Option<i64>,
    /// DBS `FinishTime`, epoch ms.
    pub finish_time_ms: Option<i64>,
}

/// One progress reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProgressPoint {
    /// When, epoch ms.
    pub at_ms: i64,
    /// Percent.
    pub progress: i64,
}

/// One run of one watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Watch name.
    pub watch: String,
    /// The DBS object.
    pub target: Target,
    /// `precheck` or `restore`.
    pub scope: String,
    /// Which run: 1 is the latest.
    pub run: usize,
    /// How many runs the stored events hold, when all were read (`None`: more than `run`).
    pub runs: Option<usize>,
    /// First observation of the run, epoch ms.
    pub started_at_ms: i64,
    /// When its final status was observed, if it ended.
    pub ended_at_ms: Option<i64>,
    /// The final (or current) overall status.
    pub status: Option<String>,
    /// Observed duration: end (or now) minus start.
    pub total_ms: i64,
    /// True while the run has not ended.
    pub ongoing: bool,
    /// Earliest `BootTime` and latest `FinishTime` DBS reported for the items seen.
    pub dbs_span_ms: Option<(i64, i64)>,
    /// Overall status over time.
    pub status_history: Vec<Segment>,
    /// Progress over time.
    pub progress: Vec<ProgressPoint>,
    /// Every item seen, in DBS order.
    pub items: Vec<ItemTimeline>,
    /// Said when items that never changed cannot be shown (the start snapshot was pruned).
    pub note: Option<String>,
}

/// Build the timeline of `events` (one run, oldest first). `seed` is the full snapshot stored
/// with the run's first event, when still kept. `now_ms` measures a run still going.
pub fn build(
    events: &[Event],
    seed: Option<&Snapshot>,
    run: usize,
    runs: Option<usize>,
    now_ms: i64,
) -> Option<Timeline> {
    let first = events.first()?;
    let last = events.last()?;
    let start = first.observed_at_ms;
    let ended_at = events
        .iter()
        .rev()
        .find(|e| is_terminal(e))
        .map(|e| e.observed_at_ms);
    let ongoing = ended_at.is_none();
    let end = ended_at.unwrap_or(now_ms.max(last.observed_at_ms));

    // Overall status: the status after each event; a run begins in the status before its first
    // event only when that is the same run (never for `started`).
    let mut status_history: Vec<Segment> = Vec::new();
    let mut progress: Vec<ProgressPoint> = Vec::new();
    if let Some(p) = first
        .progress_before
        .filter(|_| first.change == Change::Progress)
    {
        progress.push(ProgressPoint {
            at_ms: start,
            progress: p,
        });
    }
    let mut items: BTreeMap<(String, String), ItemTimeline> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    if let Some(seed) = seed {
        for item in &seed.items {
            track(&mut items, &mut order, item, None, start, true);
        }
    }

    for e in events {
        let status = e.status.clone().unwrap_or_else(|| "unknown".into());
        if status_history.last().is_none_or(|s| s.state != status) {
            status_history.push(Segment {
                state: status,
                entered_at_ms: e.observed_at_ms,
                duration_ms: None,
                already: false,
            });
        }
        if let Some(p) = e.progress
            && progress.last().is_none_or(|l| l.progress != p)
        {
            progress.push(ProgressPoint {
                at_ms: e.observed_at_ms,
                progress: p,
            });
        }
        match &e.item_change {
            Some(change) => track(
                &mut items,
                &mut order,
                &change.item,
                Some((change.previous_state.as_deref(), start)),
                e.observed_at_ms,
                false,
            ),
            None => {
                for item in &e.items {
                    track(&mut items, &mut order, item, None, e.observed_at_ms, false);
                }
            }
        }
    }

    close(&mut status_history, end, ongoing);
    let mut out_items: Vec<ItemTimeline> = order
        .iter()
        .filter_map(|k| items.remove(k))
        .map(|mut it| {
            close(&mut it.states, end, ongoing);
            it
        })
        .collect();
    out_items.sort_by_cached_key(|it| {
        let n = it
            .order
            .as_deref()
            .and_then(|o| o.trim().parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        (n, it.code.clone().unwrap_or_default())
    });
    let boots = out_items.iter().filter_map(|i| i.boot_time_ms).min();
    let finishes = out_items.iter().filter_map(|i| i.finish_time_ms).max();
    let note = seed.is_none().then(|| {
        "items that never changed during the run are not shown: the snapshot of its start is no \
         longer stored"
            .to_string()
    });
    Some(Timeline {
        watch: first.watch.clone(),
        target: first.target.clone(),
        scope: first.scope.as_str().to_string(),
        run,
        runs,
        started_at_ms: start,
        ended_at_ms: ended_at,
        status: last.status.clone(),
        total_ms: end - start,
        ongoing,
        dbs_span_ms: boots.zip(finishes).filter(|(b, f)| f >= b),
        status_history,
        progress,
        items: out_items,
        note,
    })
}

/// Record that `item` is in its state at `at`. `previous` is an item_changed's previous state
/// (`None` inside: the item is new) and the run's start: an item not tracked yet held that
/// state since the run was first seen, or a transition would have been stored earlier.
fn track(
    items: &mut BTreeMap<(String, String), ItemTimeline>,
    order: &mut Vec<(String, String)>,
    item: &Item,
    previous: Option<(Option<&str>, i64)>,
    at: i64,
    already: bool,
) {
    let key = item.key();
    let state = item.state.clone().unwrap_or_else(|| "unknown".into());
    let entry = items.entry(key.clone()).or_insert_with(|| {
        order.push(key);
        let mut states = Vec::new();
        if let Some((Some(prev), since)) = previous {
            states.push(Segment {
                state: prev.to_string(),
                entered_at_ms: since,
                duration_ms: None,
                already: true,
            });
        }
        ItemTimeline {
            code: item.code.clone(),
            group: item.group.clone(),
            job_id: item.job_id.clone(),
            order: item.order.clone(),
            states,
            error: None,
            boot_time_ms: None,
            finish_time_ms: None,
        }
    });
    if entry.states.last().is_none_or(|s| s.state != state) {
        entry.states.push(Segment {
            state,
            entered_at_ms: at,
            duration_ms: None,
            already,
        });
    }
    if item.error.as_deref().is_some_and(|e| !e.is_empty()) {
        entry.error = item.error.clone();
    }
    entry.boot_time_ms = item.boot_time.or(entry.boot_time_ms);
    entry.finish_time_ms = item.finish_time.or(entry.finish_time_ms);
    entry.group = item.group.clone().or(entry.group.take());
    entry.order = item.order.clone().or(entry.order.take());
}

/// Fill durations: each state lasts until the next; the last one until `end` when the run is
/// still going, and has no duration when the run ended.
fn close(segments: &mut [Segment], end: i64, ongoing: bool) {
    let n = segments.len();
    for i in 0..n {
        segments[i].duration_ms = if i + 1 < n {
            Some(segments[i + 1].entered_at_ms - segments[i].entered_at_ms)
        } else if ongoing {
            Some(end - segments[i].entered_at_ms)
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ItemChange;
    use crate::snapshot::Scope;

    fn item(code: &str, state: &str) -> Item {
        Item {
            job_id: Some("j".into()),
            code: Some(code.into()),
            order: Some(if code == "A" { "1" } else { "2" }.into()),
            state: Some(state.into()),
            error: (state == "failed").then(|| format!("{code} broke")),
            ..Item::default()
        }
    }

    fn ev(change: Change, at: i64, status: &str, progress: i64) -> Event {
        Event {
            id: format!("e{at}{}", change.as_str()),
            scope: Scope::Precheck,
            change,
            watch: "w".into(),
            target: Target::BackupPlan("p".into()),
            status_before: None,
            status: Some(status.into()),
            progress_before: None,
            progress: Some(progress),
            items: vec![],
            item_change: None,
            item_total: 2,
            observed_at_ms: at,
            job_error: None,
            restore_task: None,
            poll: None,
        }
    }

    fn changed(at: i64, code: &str, from: &str, to: &str, progress: i64) -> Event {
        let mut e = ev(Change::ItemChanged, at, "running", progress);
        e.items = vec![item(code, to)];
        e.item_change = Some(ItemChange {
            item: item(code, to),
            previous_state: Some(from.into()),
        });
        e
    }

    fn two_runs() -> Vec<Event> {
        let mut failed = ev(Change::Failed, 40_000, "failed", 100);
        failed.items = vec![item("B", "failed")];
        vec![
            ev(Change::Started, 0, "running", 0),
            changed(10_000, "A", "init", "running", 10),
            ev(Change::Progress, 10_000, "running", 10),
            changed(30_000, "A", "running", "finish", 50),
            changed(30_000, "B", "init", "running", 50),
            changed(40_000, "B", "running", "failed", 100),
            failed,
            // A second run: items reset in the same poll as the `started` headline.
            changed(100_000, "A", "finish", "init", 0),
            changed(100_000, "B", "failed", "init", 0),
            ev(Change::Started, 100_000, "running", 0),
        ]
    }

    #[test]
    fn runs_split_at_starts_keeping_same_poll_events_together() {
        let events = two_runs();
        let runs = split_runs(&events);
        assert_eq!(runs, [0..7, 7..10]);
        let only_terminals = vec![
            ev(Change::Failed, 1, "failed", 100),
            ev(Change::Passed, 2, "finish", 100),
        ];
        assert_eq!(split_runs(&only_terminals), [0..1, 1..2]);
        assert!(split_runs(&[]).is_empty());
    }

    #[test]
    fn a_run_shows_each_item_state_with_entry_time_and_stay() {
        let events = two_runs();
        let t = build(&events[0..7], None, 2, Some(2), 999_999).unwrap();
        assert_eq!(t.total_ms, 40_000);
        assert!(!t.ongoing);
        assert_eq!(t.status.as_deref(), Some("failed"));
        let status: Vec<(&str, i64, Option<i64>)> = t
            .status_history
            .iter()
            .map(|s| (s.state.as_str(), s.entered_at_ms, s.duration_ms))
            .collect();
        assert_eq!(
            status,
            [("running", 0, Some(40_000)), ("failed", 40_000, None)]
        );
        let a = &t.items[0];
        assert_eq!(a.code.as_deref(), Some("A"));
        let a_states: Vec<(&str, i64, Option<i64>, bool)> = a
            .states
            .iter()
            .map(|s| (s.state.as_str(), s.entered_at_ms, s.duration_ms, s.already))
            .collect();
        assert_eq!(
            a_states,
            [
                ("init", 0, Some(10_000), true),
                ("running", 10_000, Some(20_000), false),
                ("finish", 30_000, None, false)
            ]
        );
        let b = &t.items[1];
        assert_eq!(b.states.last().unwrap().state, "failed");
        assert_eq!(b.error.as_deref(), Some("B broke"));
        let p: Vec<i64> = t.progress.iter().map(|p| p.progress).collect();
        assert_eq!(p, [0, 10, 50, 100]);
        assert!(t.note.is_some(), "no seed: the note says what is missing");
    }

    #[test]
    fn a_seed_snapshot_shows_items_that_never_changed_and_a_running_run_is_measured_to_now() {
        let events = two_runs();
        let seed = Snapshot::new(
            Some("running".into()),
            Some(0),
            vec![item("A", "init"), item("B", "init")],
        );
        let t = build(&events[7..10], Some(&seed), 1, Some(2), 160_000).unwrap();
        assert!(t.ongoing);
        assert_eq!(t.total_ms, 60_000);
        assert_eq!(t.items.len(), 2);
        assert_eq!(t.items[0].states.len(), 1, "{:?}", t.items[0]);
        assert_eq!(t.items[0].states[0].duration_ms, Some(60_000));
        assert!(t.note.is_none());
    }
}
