//! The view model: what a template sees, built from an [`Event`].
//!
//! Templates never see the DBS response or the event struct directly. This keeps templates
//! stable when the DBS client or the event change shape, and it lets strict mode mean one thing:
//! every field below is always present (`null` or `""` when unknown), so a strict-mode failure
//! is a real typo, never a field that happens to be missing for this kind of event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::event::{Change, Event};
use crate::snapshot::{Item, Scope, Target};

use super::helpers::format_duration;

/// Everything a template can use. The field list is documented in the module docs of
/// [`crate::render`], which is what template authors read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    /// Event id (a UUID), stable across retries.
    pub event_id: String,
    /// Event kind, e.g. `precheck.failed`.
    pub kind: String,
    /// `precheck` or `restore`.
    pub scope: &'static str,
    /// What happened: `started`, `item_changed`, `progress`, `failed`, `passed`, `completed`,
    /// `status_changed`.
    pub change: &'static str,
    /// One-line statement of what happened, e.g. `Pre-check failed`.
    pub headline: String,
    /// `headline: watch`, e.g. `Pre-check failed: orders-db`.
    pub title: String,
    /// The second thing to read, e.g. `2 of 3 checks have problems`.
    pub summary: String,
    /// `failure`, `warning`, `success` or `info`.
    pub severity: &'static str,
    /// An emoji for the severity, for headers.
    pub icon: &'static str,
    /// True when something broke (the run failed, or an item became `failed`/`catched`).
    pub is_failure: bool,
    /// The configured watch name.
    pub watch: String,
    /// `backup_plan` or `restore_task`.
    pub target_type: &'static str,
    /// `Backup plan` or `Restore task`.
    pub target_label: &'static str,
    /// The DBS id of the plan or task.
    pub target_id: String,
    /// Overall Status before, `null` on the first poll.
    pub status_before: Option<String>,
    /// Overall Status now.
    pub status: Option<String>,
    /// `running → failed`, `running`, or `unknown`.
    pub status_text: String,
    /// Progress (0–100) before.
    pub progress_before: Option<i64>,
    /// Progress now.
    pub progress: Option<i64>,
    /// `40% → 100%`, `40%`, or `unknown`.
    pub progress_text: String,
    /// When the poll that saw it finished, RFC 3339 UTC.
    pub observed_at: Option<String>,
    /// The same, epoch milliseconds.
    pub observed_at_ms: i64,
    /// The items that matter for this event (problem items for `failed`, warnings for
    /// `passed`/`completed`, the changed item for `item_changed`).
    pub items: Vec<ItemView>,
    /// How many of `items` are problems (`warning`, `failed`, `catched`).
    pub problem_count: usize,
    /// Number of items in the whole pre-check or restore.
    pub item_total: usize,
    /// For `item_changed`: the item with its `previous_state`; `null` otherwise.
    pub item_change: Option<ItemChangeView>,
    /// `@13800000000 @13900000000` for DingTalk mentions; `""` when none.
    pub mentions: String,
    /// The channel's configured name.
    pub channel: String,
    /// The generic webhook payload, see [`webhook_payload`].
    pub payload: Value,
}

/// One check item as templates see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemView {
    /// The check's code, e.g. `CHECK_BINLOG_ON`.
    pub code: Option<String>,
    /// Its group (`Names`), e.g. `CHECK_BINLOG_ON_DETAIL`.
    pub group: Option<String>,
    /// `OrderNum` as DBS gave it.
    pub order: Option<String>,
    /// `JobId`.
    pub job_id: Option<String>,
    /// `init`, `running`, `finish`, `warning`, `failed`, `catched` or anything new.
    pub state: Option<String>,
    /// The check's error text, `""` when none.
    pub error: String,
    /// True for `warning`, `failed` and `catched`.
    pub is_problem: bool,
    /// Start, RFC 3339 UTC.
    pub boot_time: Option<String>,
    /// End, RFC 3339 UTC.
    pub finish_time: Option<String>,
    /// `1h 0m 2s` when both times are known.
    pub duration: Option<String>,
    /// The same in milliseconds.
    pub duration_ms: Option<i64>,
}

/// An item's transition: the item as it is now plus the state it had.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemChangeView {
    /// The item now.
    #[serde(flatten)]
    pub item: ItemView,
    /// Its State before, `null` when the item is new.
    pub previous_state: Option<String>,
}

impl View {
    /// Build the view of `event` for the channel named `channel` that mentions `at_mobiles`.
    pub fn new(event: &Event, channel: &str, at_mobiles: &[String]) -> View {
        let items: Vec<ItemView> = event.items.iter().map(ItemView::new).collect();
        let problem_count = event.items.iter().filter(|i| i.is_problem()).count();
        let headline = headline(event, problem_count);
        let severity = severity(event, problem_count);
        View {
            event_id: event.id.clone(),
            kind: event.kind(),
            scope: event.scope.as_str(),
            change: event.change.as_str(),
            title: title(event, &headline),
            headline,
            summary: summary(event, problem_count),
            severity,
            icon: icon(severity),
            is_failure: severity == "failure",
            watch: event.watch.clone(),
            target_type: event.target.type_name(),
            target_label: target_label(&event.target),
            target_id: event.target.id().to_string(),
            status_before: event.status_before.clone(),
            status: event.status.clone(),
            status_text: transition(
                event.status_before.as_deref(),
                event.status.as_deref(),
                |s| s.to_string(),
            ),
            progress_before: event.progress_before,
            progress: event.progress,
            progress_text: transition(event.progress_before, event.progress, |p| format!("{p}%")),
            observed_at: rfc3339(event.observed_at_ms),
            observed_at_ms: event.observed_at_ms,
            items,
            problem_count,
            item_total: event.item_total,
            item_change: event.item_change.as_ref().map(|c| ItemChangeView {
                item: ItemView::new(&c.item),
                previous_state: c.previous_state.clone(),
            }),
            mentions: at_mobiles
                .iter()
                .filter(|m| !m.trim().is_empty())
                .map(|m| format!("@{}", m.trim()))
                .collect::<Vec<_>>()
                .join(" "),
            channel: channel.to_string(),
            payload: webhook_payload(event),
        }
    }
}

impl ItemView {
    fn new(item: &Item) -> ItemView {
        let duration_ms = match (item.boot_time, item.finish_time) {
            (Some(boot), Some(finish)) if finish >= boot => Some(finish - boot),
            _ => None,
        };
        ItemView {
            code: item.code.clone(),
            group: item.group.clone(),
            order: item.order.clone(),
            job_id: item.job_id.clone(),
            state: item.state.clone(),
            error: item.error.clone().unwrap_or_default(),
            is_problem: item.is_problem(),
            boot_time: item.boot_time.and_then(rfc3339),
            finish_time: item.finish_time.and_then(rfc3339),
            duration: duration_ms.and_then(format_duration),
            duration_ms,
        }
    }
}

/// The generic webhook's body, version `"1"`. Receivers parse this, so it only grows: fields
/// are added, never renamed or removed, without bumping `version`.
///
/// ```json
/// {"version": "1", "id": "<event uuid>", "type": "precheck.failed", "time": "2025-12-03T00:00:03Z",
///  "data": {"watch": "orders-db", "target": {"type": "backup_plan", "id": "dbstooi01XXXX"},
///           "status_before": "running", "status": "failed", "progress_before": 40, "progress": 100,
///           "items": [{"job_id", "code", "group", "order", "state", "error", "boot_time", "finish_time"}],
///           "item_change": null | {"item": {..as items..}, "previous_state": "running" | null},
///           "item_total": 3}}
/// ```
/// Unknown values are `null` (an item's `error` too); times are RFC 3339 UTC.
pub fn webhook_payload(event: &Event) -> Value {
    json!({
        "version": "1",
        "id": event.id,
        "type": event.kind(),
        "time": rfc3339(event.observed_at_ms),
        "data": {
            "watch": event.watch,
            "target": {"type": event.target.type_name(), "id": event.target.id()},
            "status_before": event.status_before,
            "status": event.status,
            "progress_before": event.progress_before,
            "progress": event.progress,
            "items": event.items.iter().map(payload_item).collect::<Vec<_>>(),
            "item_change": event.item_change.as_ref().map(|c| json!({
                "item": payload_item(&c.item),
                "previous_state": c.previous_state,
            })),
            "item_total": event.item_total,
        }
    })
}

fn payload_item(item: &Item) -> Value {
    json!({
        "job_id": item.job_id,
        "code": item.code,
        "group": item.group,
        "order": item.order,
        "state": item.state,
        "error": item.error,
        "boot_time": item.boot_time.and_then(rfc3339),
        "finish_time": item.finish_time.and_then(rfc3339),
    })
}

fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn target_label(target: &Target) -> &'static str {
    match target {
        Target::BackupPlan(_) => "Backup plan",
        Target::RestoreTask(_) => "Restore task",
    }
}

fn scope_label(scope: Scope) -> &'static str {
    match scope {
        Scope::Precheck => "Pre-check",
        Scope::Restore => "Restore",
    }
}

/// What an item is called in prose: pre-checks run checks, restores run steps.
fn item_noun(scope: Scope, count: usize) -> &'static str {
    match (scope, count == 1) {
        (Scope::Precheck, true) => "check",
        (Scope::Precheck, false) => "checks",
        (Scope::Restore, true) => "step",
        (Scope::Restore, false) => "steps",
    }
}

fn headline(event: &Event, problems: usize) -> String {
    let what = scope_label(event.scope);
    let warnings = if problems > 0 { " with warnings" } else { "" };
    match event.change {
        Change::Started => format!("{what} started"),
        Change::ItemChanged => {
            let noun = match event.scope {
                Scope::Precheck => "Check",
                Scope::Restore => "Step",
            };
            let (code, before, now) = match &event.item_change {
                Some(c) => (
                    c.item.code.as_deref(),
                    c.previous_state.as_deref().unwrap_or("new"),
                    c.item.state.as_deref().unwrap_or("unknown"),
                ),
                None => (None, "unknown", "unknown"),
            };
            format!("{noun} {}: {before} → {now}", code.unwrap_or("(unnamed)"))
        }
        Change::Progress => match event.progress {
            Some(p) => format!("{what} at {p}%"),
            None => format!("{what} progress changed"),
        },
        Change::Failed => format!("{what} failed"),
        Change::Passed => format!("{what} passed{warnings}"),
        Change::Completed => format!("{what} completed{warnings}"),
        Change::StatusChanged => format!(
            "{what} status changed to {}",
            event.status.as_deref().unwrap_or("unknown")
        ),
    }
}

/// `headline: watch`, except for item changes, whose headline already has a colon:
/// `Check CHECK_BINLOG_ON on orders-db: running → warning`.
fn title(event: &Event, headline: &str) -> String {
    match (event.change, headline.split_once(": ")) {
        (Change::ItemChanged, Some((what, transition))) => {
            format!("{what} on {}: {transition}", event.watch)
        }
        _ => format!("{headline}: {}", event.watch),
    }
}

fn summary(event: &Event, problems: usize) -> String {
    let total = event.item_total;
    let noun = item_noun(event.scope, total);
    match event.change {
        Change::Started if total > 0 => format!("{total} {noun} to run"),
        Change::Started | Change::ItemChanged => {
            let what = scope_label(event.scope).to_lowercase();
            let status = event.status.as_deref().unwrap_or("status unknown");
            match event.progress {
                Some(p) => format!("{what} {status}, {p}% done"),
                None => format!("{what} {status}"),
            }
        }
        Change::Progress => format!(
            "progress {}",
            transition(event.progress_before, event.progress, |p| format!("{p}%"))
        ),
        Change::Failed if problems == 0 => {
            format!("no {} reported an error", item_noun(event.scope, 1))
        }
        Change::Failed => {
            let verb = if problems == 1 { "has" } else { "have" };
            format!("{problems} of {total} {noun} {verb} problems")
        }
        Change::Passed | Change::Completed if problems == 0 => {
            let verb = match event.change {
                Change::Passed => "passed",
                _ => "finished",
            };
            format!("{total} of {total} {noun} {verb}")
        }
        Change::Passed | Change::Completed => {
            let verb = if problems == 1 { "has" } else { "have" };
            format!("{problems} of {total} {noun} {verb} warnings")
        }
        Change::StatusChanged => format!(
            "status {}, which DBS does not document",
            transition(
                event.status_before.as_deref(),
                event.status.as_deref(),
                |s| s.to_string()
            )
        ),
    }
}

fn severity(event: &Event, problems: usize) -> &'static str {
    match event.change {
        Change::Failed => "failure",
        Change::ItemChanged => {
            let state = event
                .item_change
                .as_ref()
                .and_then(|c| c.item.state.as_deref());
            match state {
                Some("failed") | Some("catched") => "failure",
                Some("warning") => "warning",
                _ => "info",
            }
        }
        Change::Passed | Change::Completed if problems > 0 => "warning",
        Change::Passed | Change::Completed => "success",
        Change::StatusChanged => "warning",
        Change::Started | Change::Progress => "info",
    }
}

fn icon(severity: &str) -> &'static str {
    match severity {
        "failure" => "❌",
        "warning" => "⚠️",
        "success" => "✅",
        _ => "ℹ️",
    }
}

/// `before → now` when both are known and differ, else whichever is known, else `unknown`.
fn transition<T: PartialEq + Copy>(
    before: Option<T>,
    now: Option<T>,
    show: impl Fn(T) -> String,
) -> String {
    match (before, now) {
        (Some(b), Some(n)) if b != n => format!("{} → {}", show(b), show(n)),
        (_, Some(n)) => show(n),
        (Some(b), None) => format!("{} → unknown", show(b)),
        (None, None) => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ItemChange;
    use crate::render::samples::sample_events;

    fn sample(kind: &str) -> Event {
        sample_events()
            .into_iter()
            .find(|e| e.kind() == kind)
            .unwrap_or_else(|| panic!("no sample for {kind}"))
    }

    #[test]
    fn failed_precheck_view_names_plan_checks_and_errors() {
        let view = View::new(&sample("precheck.failed"), "ops", &[]);
        assert_eq!(view.kind, "precheck.failed");
        assert_eq!(view.headline, "Pre-check failed");
        assert_eq!(view.title, "Pre-check failed: orders-db");
        assert_eq!(view.summary, "2 of 3 checks have problems");
        assert!(view.is_failure);
        assert_eq!(view.severity, "failure");
        assert_eq!(view.target_type, "backup_plan");
        assert_eq!(view.target_label, "Backup plan");
        assert_eq!(view.target_id, "dbstooi01XXXX");
        assert_eq!(view.status_text, "running → failed");
        assert_eq!(view.progress_text, "40% → 100%");
        assert_eq!(view.observed_at.as_deref(), Some("2025-12-03T00:00:05Z"));
        assert_eq!(view.problem_count, 2);
        assert_eq!(view.item_total, 3);
        let codes: Vec<_> = view.items.iter().map(|i| i.code.as_deref()).collect();
        assert_eq!(
            codes,
            [Some("CHECK_BINLOG_ON"), Some("CHECK_MYSQL_PASSOWRD_FORMAT")]
        );
        let pw = &view.items[1];
        assert_eq!(
            pw.error,
            "password of user \"dbs\" contains unsupported characters: <&>"
        );
        assert_eq!(pw.finish_time.as_deref(), Some("2025-12-03T00:00:03Z"));
        assert_eq!(pw.duration.as_deref(), Some("1s"));
        assert!(view.item_change.is_none());
        assert_eq!(view.mentions, "");
    }

    #[test]
    fn item_change_view_carries_the_transition() {
        let view = View::new(&sample("precheck.item_changed"), "ops", &[]);
        assert_eq!(view.headline, "Check CHECK_BINLOG_ON: running → warning");
        assert_eq!(
            view.title,
            "Check CHECK_BINLOG_ON on orders-db: running → warning"
        );
        assert_eq!(view.summary, "pre-check running, 40% done");
        assert_eq!(view.severity, "warning");
        assert!(!view.is_failure);
        let change = view.item_change.expect("item_change set");
        assert_eq!(change.previous_state.as_deref(), Some("running"));
        assert_eq!(change.item.state.as_deref(), Some("warning"));
        let json =
            serde_json::to_value(View::new(&sample("precheck.item_changed"), "ops", &[])).unwrap();
        assert_eq!(json["item_change"]["code"], "CHECK_BINLOG_ON");
        assert_eq!(json["item_change"]["previous_state"], "running");
    }

    #[test]
    fn headlines_and_summaries_per_kind() {
        let cases = [
            ("precheck.started", "Pre-check started", "3 checks to run"),
            (
                "precheck.progress",
                "Pre-check at 70%",
                "progress 40% → 70%",
            ),
            (
                "precheck.passed",
                "Pre-check passed",
                "2 of 2 checks passed",
            ),
            (
                "restore.completed",
                "Restore completed",
                "2 of 2 steps finished",
            ),
            (
                "restore.failed",
                "Restore failed",
                "1 of 2 steps has problems",
            ),
            (
                "restore.item_changed",
                "Step FULL_DATA_RESTORE: running → finish",
                "restore running, 100% done",
            ),
            (
                "restore.status_changed",
                "Restore status changed to paused",
                "status running → paused, which DBS does not document",
            ),
        ];
        for (kind, headline, summary) in cases {
            let view = View::new(&sample(kind), "ops", &[]);
            assert_eq!(view.headline, headline, "{kind}");
            assert_eq!(view.summary, summary, "{kind}");
        }
    }

    #[test]
    fn unknown_values_stay_present_as_null_or_empty() {
        let event = Event {
            id: "e".into(),
            scope: Scope::Precheck,
            change: Change::ItemChanged,
            watch: "w".into(),
            target: Target::BackupPlan("p".into()),
            status_before: None,
            status: None,
            progress_before: None,
            progress: None,
            items: vec![Item::default()],
            item_change: Some(ItemChange {
                item: Item::default(),
                previous_state: None,
            }),
            item_total: 0,
            observed_at_ms: 0,
        };
        let view = View::new(&event, "ops", &[]);
        assert_eq!(view.headline, "Check (unnamed): new → unknown");
        assert_eq!(view.summary, "pre-check status unknown");
        assert_eq!(view.status_text, "unknown");
        assert_eq!(view.progress_text, "unknown");
        let json = serde_json::to_value(&view).unwrap();
        let item = &json["items"][0];
        for field in [
            "code",
            "group",
            "order",
            "job_id",
            "state",
            "boot_time",
            "finish_time",
            "duration",
            "duration_ms",
        ] {
            assert_eq!(item[field], Value::Null, "{field}");
        }
        assert_eq!(item["error"], "");
        assert_eq!(json["item_change"]["previous_state"], Value::Null);
    }

    #[test]
    fn clock_skew_gives_no_duration() {
        let item = Item {
            boot_time: Some(2000),
            finish_time: Some(1000),
            ..Item::default()
        };
        let view = ItemView::new(&item);
        assert_eq!(view.duration, None);
        assert_eq!(view.duration_ms, None);
    }

    #[test]
    fn mentions_are_at_prefixed_and_blank_entries_dropped() {
        let mobiles = vec!["13800000000".to_string(), " ".into(), "13900000000 ".into()];
        let view = View::new(&sample("precheck.failed"), "ding", &mobiles);
        assert_eq!(view.mentions, "@13800000000 @13900000000");
        assert_eq!(view.channel, "ding");
    }

    #[test]
    fn webhook_payload_follows_the_documented_schema() {
        let payload = webhook_payload(&sample("precheck.item_changed"));
        assert_eq!(payload["version"], "1");
        assert_eq!(payload["type"], "precheck.item_changed");
        assert_eq!(payload["time"], "2025-12-03T00:00:02Z");
        let data = &payload["data"];
        assert_eq!(data["watch"], "orders-db");
        assert_eq!(
            data["target"],
            json!({"type": "backup_plan", "id": "dbstooi01XXXX"})
        );
        assert_eq!(data["items"][0]["code"], "CHECK_BINLOG_ON");
        assert_eq!(data["items"][0]["boot_time"], "2025-12-03T00:00:01Z");
        assert_eq!(data["item_change"]["previous_state"], "running");
        assert_eq!(data["item_change"]["item"]["state"], "warning");
        assert_eq!(data["item_total"], 3);
        let keys: Vec<_> = data.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "watch",
                "target",
                "status_before",
                "status",
                "progress_before",
                "progress",
                "items",
                "item_change",
                "item_total"
            ]
        );
        let started = webhook_payload(&sample("restore.started"));
        assert_eq!(started["data"]["item_change"], Value::Null);
        assert_eq!(started["data"]["status_before"], Value::Null);
        assert_eq!(started["data"]["target"]["type"], "restore_task");
    }
}
