//! Audit answers assembled from the store and the pure builders, shared by the CLI and the HTTP
//! API so both say the same thing.

use chrono_tz::Tz;

use crate::audit::stats::{self, HEADLINE_KINDS, WatchStats};
use crate::audit::timeline::{self, Timeline};
use crate::audit::{check_kind_patterns, when};
use crate::event::Event;
use crate::snapshot::Target;
use crate::store::{EventFilter, Store, StoreError};

/// Events read per query while looking for a run's start.
const TIMELINE_PAGE: i64 = 500;

/// Filter values as typed by a person or a client, before validation.
#[derive(Debug, Clone, Default)]
pub struct FilterInput {
    /// `--watch`.
    pub watch: Option<String>,
    /// `--plan`.
    pub plan: Option<String>,
    /// `--task`.
    pub task: Option<String>,
    /// `--kind`, repeatable; a value may hold several kinds separated by commas.
    pub kinds: Vec<String>,
    /// `--since`.
    pub since: Option<String>,
    /// `--until`.
    pub until: Option<String>,
}

/// Why typed filters were refused: a sentence for the person (or client) who typed them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Both a plan and a task.
    #[error("give --plan or --task, not both (one watch follows one thing)")]
    PlanAndTask,
    /// A kind filter that matches no kind.
    #[error("{0}")]
    Kind(String),
    /// `since` does not parse.
    #[error("since: {0}")]
    Since(String),
    /// `until` does not parse.
    #[error("until: {0}")]
    Until(String),
    /// An empty window.
    #[error("since must be before until")]
    EmptyWindow,
}

/// Validate typed filters into an [`EventFilter`] (limit and cursor left at their defaults).
pub fn parse_filter(input: &FilterInput, now_ms: i64, tz: Tz) -> Result<EventFilter, FilterError> {
    let target = match (&input.plan, &input.task) {
        (Some(_), Some(_)) => return Err(FilterError::PlanAndTask),
        (Some(p), None) => Some(Target::BackupPlan(p.clone())),
        (None, Some(t)) => Some(Target::RestoreTask(t.clone())),
        (None, None) => None,
    };
    let kinds: Vec<String> = input
        .kinds
        .iter()
        .flat_map(|k| k.split(','))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect();
    check_kind_patterns(&kinds).map_err(FilterError::Kind)?;
    let since_ms = input
        .since
        .as_deref()
        .map(|s| when::parse_instant(s, now_ms, tz))
        .transpose()
        .map_err(FilterError::Since)?;
    let until_ms = input
        .until
        .as_deref()
        .map(|s| when::parse_instant(s, now_ms, tz))
        .transpose()
        .map_err(FilterError::Until)?;
    if let (Some(s), Some(u)) = (since_ms, until_ms)
        && s >= u
    {
        return Err(FilterError::EmptyWindow);
    }
    Ok(EventFilter {
        watch: input.watch.clone(),
        target,
        kinds,
        since_ms,
        until_ms,
        ..EventFilter::default()
    })
}

/// Run `run` of `watch` (1 = the latest), or `None` when it has no such run.
pub async fn timeline_of(
    store: &Store,
    watch: &str,
    run: usize,
    now_ms: i64,
) -> Result<Option<Timeline>, StoreError> {
    let run = run.max(1);
    let mut newest_first: Vec<(i64, Event)> = Vec::new();
    let mut filter = EventFilter {
        watch: Some(watch.to_string()),
        limit: TIMELINE_PAGE,
        ..EventFilter::default()
    };
    let (events, seqs, ranges, exhausted) = loop {
        let page = store.events_page(&filter).await?;
        newest_first.extend(page.entries.into_iter().map(|e| (e.seq, e.event)));
        let exhausted = page.next.is_none();
        let ascending: Vec<&(i64, Event)> = newest_first.iter().rev().collect();
        let events: Vec<Event> = ascending.iter().map(|(_, e)| e.clone()).collect();
        let ranges = timeline::split_runs(&events);
        // The oldest loaded run may have begun before the loaded events: only a run with an
        // older one before it is known complete.
        if exhausted || ranges.len() > run {
            let seqs: Vec<i64> = ascending.iter().map(|(s, _)| *s).collect();
            break (events, seqs, ranges, exhausted);
        }
        filter.cursor = page.next;
    };
    if ranges.len() < run {
        return Ok(None);
    }
    let range = ranges[ranges.len() - run].clone();
    let seed = match store.event_snapshot_id(seqs[range.start]).await? {
        // The answer before the run only fills in where each check started; a damaged one is
        // treated like a pruned one rather than hiding the whole run.
        Some(id) => match store.snapshot_content(id).await {
            Err(StoreError::Corrupt { reason, .. }) => {
                tracing::warn!(snapshot = id, %reason, "the run's first answer cannot be read back");
                None
            }
            other => other?,
        },
        None => None,
    };
    Ok(timeline::build(
        &events[range],
        seed.as_ref(),
        run,
        exhausted.then_some(ranges.len()),
        now_ms,
    ))
}

/// Stats of each watch in `watches`, over events observed in `[since, until)`.
pub async fn stats_of(
    store: &Store,
    watches: &[String],
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Vec<WatchStats>, StoreError> {
    let mut out = Vec::with_capacity(watches.len());
    for watch in watches {
        let page = store
            .events_page(&EventFilter {
                watch: Some(watch.clone()),
                kinds: HEADLINE_KINDS.iter().map(|k| k.to_string()).collect(),
                since_ms,
                until_ms,
                limit: -1,
                cursor: None,
                target: None,
            })
            .await?;
        let events: Vec<Event> = page.entries.into_iter().rev().map(|e| e.event).collect();
        out.push(stats::compute(watch, &events));
    }
    Ok(out)
}

/// Watch names to report on: the configured ones first, then any the database still knows.
pub async fn known_watches(
    store: &Store,
    configured: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = configured.to_vec();
    for s in store.watch_summaries().await? {
        if !names.contains(&s.watch) {
            names.push(s.watch);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_720_000_000;

    #[test]
    fn filters_are_validated_in_plain_words() {
        let f = parse_filter(
            &FilterInput {
                watch: Some("w".into()),
                kinds: vec!["precheck.*,restore.failed".into(), "*.passed".into()],
                since: Some("7d".into()),
                until: Some("2025-12-03".into()),
                ..FilterInput::default()
            },
            NOW,
            chrono_tz::UTC,
        )
        .unwrap();
        assert_eq!(f.kinds, ["precheck.*", "restore.failed", "*.passed"]);
        assert_eq!(f.since_ms, Some(NOW - 7 * 86_400_000));
        assert_eq!(f.until_ms, Some(NOW));

        let bad = |input: FilterInput| {
            parse_filter(&input, NOW, chrono_tz::UTC)
                .unwrap_err()
                .to_string()
        };
        assert!(
            bad(FilterInput {
                plan: Some("p".into()),
                task: Some("t".into()),
                ..FilterInput::default()
            })
            .contains("not both")
        );
        assert!(
            bad(FilterInput {
                kinds: vec!["precheck.exploded".into()],
                ..FilterInput::default()
            })
            .contains("matches no event kind")
        );
        assert!(
            bad(FilterInput {
                since: Some("last tuesday".into()),
                ..FilterInput::default()
            })
            .starts_with("since:")
        );
        assert!(
            bad(FilterInput {
                since: Some("1d".into()),
                until: Some("2d".into()),
                ..FilterInput::default()
            })
            .contains("before")
        );
    }
}
