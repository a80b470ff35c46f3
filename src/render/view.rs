//! The view model: what a template sees, built from an [`Event`].
//!
//! Templates never see the DBS response or the event struct directly. This keeps templates
//! stable when the DBS client or the event change shape, and it lets strict mode mean one thing:
//! every field below is always present (`null` or `""` when unknown), so a strict-mode failure
//! is a real typo, never a field that happens to be missing for this kind of event.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Value, json};

use crate::event::{Change, Event, JobError, PollHealth};
use crate::snapshot::Item;

use super::i18n::{self, HeadlineFacts, Labels, Language, SummaryFacts, format_duration};

/// What the view needs to know about the channel it is rendered for.
#[derive(Debug, Clone)]
pub struct ViewOptions<'a> {
    /// The channel's configured name.
    pub channel: &'a str,
    /// Language of every generated word.
    pub language: Language,
    /// Time zone people read times in.
    pub timezone: Tz,
    /// DBS region, for console links.
    pub region: &'a str,
    /// DingTalk mobiles to mention.
    pub at_mobiles: &'a [String],
    /// The robot's security keyword, if any.
    pub keyword: Option<&'a str>,
    /// DingTalk: render an actionCard with a console button.
    pub action_card: bool,
    /// How many items chat layouts show before `… and N more`.
    pub item_cap: usize,
    /// A note for readers (the fallback or test note), if any.
    pub notice: Option<String>,
    /// This is a `test-channel` message.
    pub test: bool,
}

impl ViewOptions<'_> {
    /// Plain English, UTC, no extras: what tests and previews start from.
    pub fn plain(channel: &str) -> ViewOptions<'_> {
        ViewOptions {
            channel,
            language: Language::En,
            timezone: chrono_tz::UTC,
            region: "cn-hangzhou",
            at_mobiles: &[],
            keyword: None,
            action_card: false,
            item_cap: usize::MAX,
            notice: None,
            test: false,
        }
    }
}

/// Everything a template can use. The field list is documented in `docs/templates.md`, which
/// is what template authors read.
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
    /// `en` or `zh-CN`.
    pub lang: &'static str,
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
    /// A colour name for the severity: `red`, `orange`, `green`, `blue` (Feishu card headers).
    pub color: &'static str,
    /// True when something broke (the run failed, or an item became `failed`/`catched`).
    pub is_failure: bool,
    /// The configured watch name.
    pub watch: String,
    /// `backup_plan` or `restore_task`.
    pub target_type: &'static str,
    /// `Backup plan` or `Restore task` (`备份计划`, `恢复任务`).
    pub target_label: &'static str,
    /// The DBS id of the plan or task.
    pub target_id: String,
    /// The DBS region, for `console_url`.
    pub region: String,
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
    /// The IANA name of the channel's time zone (`time` uses it).
    pub timezone: String,
    /// Span from the earliest start to the latest finish of this event's items, e.g. `1h 0m
    /// 2s`; `null` when the items carry no times.
    pub run_duration: Option<String>,
    /// The same in milliseconds.
    pub run_duration_ms: Option<i64>,
    /// The items that matter for this event (problem items for `failed`, warnings for
    /// `passed`/`completed`, the changed item for `item_changed`).
    pub items: Vec<ItemView>,
    /// The first items, as many as the channel's layout shows (10 for Slack, DingTalk and
    /// Feishu, 5 for WeCom, all for the webhook).
    pub shown_items: Vec<ItemView>,
    /// How many items `shown_items` leaves out.
    pub hidden_count: usize,
    /// `… and 4 more checks`, or `""` when nothing was left out.
    pub more_text: String,
    /// How many of `items` are problems (`warning`, `failed`, `catched`).
    pub problem_count: usize,
    /// Number of items in the whole pre-check or restore.
    pub item_total: usize,
    /// For `item_changed`: the item with its `previous_state`; `null` otherwise.
    pub item_change: Option<ItemChangeView>,
    /// `@13800000000 @13900000000` for DingTalk mentions; `""` when none.
    pub mentions: String,
    /// The robot's security keyword, `""` when none.
    pub keyword: String,
    /// DingTalk: the channel wants an actionCard with a console button.
    pub action_card: bool,
    /// A note for readers, `""` when none: the built-in template stood in for a failed custom
    /// one, or this is a test message.
    pub notice: String,
    /// True for `dbswatch test-channel` messages.
    pub is_test: bool,
    /// Fixed words in the channel's language: `{{labels.watch}}`.
    pub labels: Labels,
    /// The channel's configured name.
    pub channel: String,
    /// The generic webhook payload, see [`webhook_payload`]; with a `notice` field when
    /// `notice` is set, `muted_repeats` when repeats were muted and `digest` for a merged
    /// message.
    pub payload: Value,
    /// For failures: `DescribeJobErrorCode`'s `task_id`, `code`, `message`, `job_state`,
    /// `job_type`; `null` when DBS gave none.
    pub job_error: Option<JobError>,
    /// For `poll.failed` / `poll.recovered`: the failed polls and the last error; `null` for
    /// every other event.
    pub poll_error: Option<PollErrorView>,
    /// How many changes this message covers: 1, or more when several due changes of one watch
    /// were merged into one message (one poll's changes, or a backlog after an outage).
    pub group_count: usize,
    /// The other changes of a merged message, oldest first, as many as the layout shows; empty
    /// for a single change. The view's own fields describe the headline change.
    pub group: Vec<GroupEntryView>,
    /// `This message covers 4 changes; the earlier ones:`, or `""` for a single change.
    pub group_text: String,
    /// How many of the merged changes `group` leaves out.
    pub group_hidden: usize,
    /// `… and 3 more changes`, or `""`.
    pub group_more_text: String,
    /// Repeats of a flapping transition that were muted (recorded, not sent) since the last
    /// message of this watch on this channel.
    pub muted_count: usize,
    /// `🔇 2 repeats muted: …`, or `""`.
    pub muted_text: String,
}

/// The poll failure a `poll.failed` / `poll.recovered` message reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollErrorView {
    /// Failed polls in a row (for `poll.recovered`: before the success).
    pub failures: u32,
    /// When the first of them started, RFC 3339 UTC.
    pub since: Option<String>,
    /// The same, epoch milliseconds (show it with `{{time poll_error.since_ms}}`).
    pub since_ms: i64,
    /// `throttled`, `server`, `signature`, `credentials`, `permission`, `clock_skew`, ...
    pub kind: Option<String>,
    /// The DBS error code, e.g. `SignatureDoesNotMatch`; `null` when there was none.
    pub code: Option<String>,
    /// The last error in plain words, ending with what to do.
    pub message: String,
    /// What to do, on its own.
    pub hint: String,
    /// `Error` (`Last error` once polls work again), in the channel's language.
    pub label: &'static str,
    /// `Failing since` (`Failed since` once polls work again), in the channel's language.
    pub since_label: &'static str,
}

/// One of the other changes in a merged message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupEntryView {
    /// Event id.
    pub event_id: String,
    /// Event kind.
    pub kind: String,
    /// `Pre-check started`, `Check CHECK_BINLOG_ON: running → warning`.
    pub headline: String,
    /// `3 checks to run`.
    pub summary: String,
    /// The severity's emoji.
    pub icon: &'static str,
    /// `failure`, `warning`, `success` or `info`.
    pub severity: &'static str,
    /// When it was seen, epoch milliseconds (`{{time this.observed_at_ms}}`).
    pub observed_at_ms: i64,
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
    /// Build the view of `event` for the channel described by `options`.
    pub fn new(event: &Event, options: &ViewOptions<'_>) -> View {
        let lang = options.language;
        let items: Vec<ItemView> = event.items.iter().map(|i| ItemView::new(i, lang)).collect();
        let problem_count = event.items.iter().filter(|i| i.is_problem()).count();
        let status_text = transition(
            lang,
            event.status_before.as_deref(),
            event.status.as_deref(),
            |s| s.to_string(),
        );
        let progress_text = transition(lang, event.progress_before, event.progress, |p| {
            format!("{p}%")
        });
        let mut headline = i18n::headline(
            lang,
            &HeadlineFacts {
                scope: event.scope,
                change: event.change,
                problems: problem_count,
                status: event.status.as_deref(),
                progress: event.progress,
                item: event.item_change.as_ref().map(|c| {
                    (
                        c.item.code.as_deref(),
                        c.previous_state.as_deref(),
                        c.item.state.as_deref(),
                    )
                }),
            },
        );
        let mut title = i18n::title(lang, event.change, &headline, &event.watch);
        if options.test {
            headline.insert_str(0, i18n::test_prefix(lang));
            title.insert_str(0, i18n::test_prefix(lang));
        }
        let mut summary = i18n::summary(
            lang,
            &SummaryFacts {
                scope: event.scope,
                change: event.change,
                problems: problem_count,
                total: event.item_total,
                status: event.status.as_deref(),
                progress: event.progress,
                progress_text: &progress_text,
                status_text: &status_text,
            },
        );
        if let Some(poll) = &event.poll {
            summary = i18n::poll_summary(lang, event.change, poll.failures);
        }
        let severity = severity(event, problem_count);
        let shown_items: Vec<ItemView> = items.iter().take(options.item_cap).cloned().collect();
        let hidden_count = items.len() - shown_items.len();
        let run_duration_ms = run_span(&event.items);
        let notice = options.notice.clone().unwrap_or_default();
        let mut payload = webhook_payload(event);
        if !notice.is_empty() {
            payload["notice"] = Value::String(notice.clone());
        }
        View {
            event_id: event.id.clone(),
            kind: event.kind(),
            scope: event.scope.as_str(),
            change: event.change.as_str(),
            lang: lang.as_str(),
            headline,
            title,
            summary,
            severity,
            icon: icon(severity),
            color: color(severity),
            is_failure: severity == "failure",
            watch: event.watch.clone(),
            target_type: event.target.type_name(),
            target_label: i18n::target_label(lang, event.scope),
            target_id: event.target.id().to_string(),
            region: options.region.to_string(),
            status_before: event.status_before.clone(),
            status: event.status.clone(),
            status_text,
            progress_before: event.progress_before,
            progress: event.progress,
            progress_text,
            observed_at: rfc3339(event.observed_at_ms),
            observed_at_ms: event.observed_at_ms,
            timezone: options.timezone.name().to_string(),
            run_duration: run_duration_ms.and_then(|ms| format_duration(lang, ms)),
            run_duration_ms,
            more_text: i18n::more_items(lang, event.scope, hidden_count),
            hidden_count,
            shown_items,
            items,
            problem_count,
            item_total: event.item_total,
            item_change: event.item_change.as_ref().map(|c| ItemChangeView {
                item: ItemView::new(&c.item, lang),
                previous_state: c.previous_state.clone(),
            }),
            mentions: options
                .at_mobiles
                .iter()
                .filter(|m| !m.trim().is_empty())
                .map(|m| format!("@{}", m.trim()))
                .collect::<Vec<_>>()
                .join(" "),
            keyword: options.keyword.unwrap_or_default().to_string(),
            action_card: options.action_card,
            notice,
            is_test: options.test,
            labels: Labels::new(lang, event.scope),
            channel: options.channel.to_string(),
            payload,
            job_error: event.job_error.clone(),
            poll_error: event
                .poll
                .as_ref()
                .map(|p| PollErrorView::new(p, lang, event.change)),
            group_count: 1,
            group: Vec::new(),
            group_text: String::new(),
            group_hidden: 0,
            group_more_text: String::new(),
            muted_count: 0,
            muted_text: String::new(),
        }
    }

    /// Make this view (of the headline change) the view of a merged message: `others` are the
    /// other changes it covers, oldest first, of which the first `cap` are listed; `muted` is
    /// how many flapping repeats were muted since the last message. With no others and nothing
    /// muted the view is unchanged, so a single change renders exactly as before.
    pub fn with_group(
        mut self,
        others: &[Event],
        muted: usize,
        options: &ViewOptions<'_>,
        cap: usize,
    ) -> View {
        let lang = options.language;
        if !others.is_empty() {
            let entry_options = ViewOptions {
                item_cap: 0,
                notice: None,
                ..options.clone()
            };
            self.group_count = others.len() + 1;
            self.group = others
                .iter()
                .take(cap)
                .map(|e| GroupEntryView::new(&View::new(e, &entry_options)))
                .collect();
            self.group_hidden = others.len() - self.group.len();
            self.group_text = i18n::group_text(lang, self.group_count);
            self.group_more_text = i18n::group_more(lang, self.group_hidden);
            self.payload["digest"] = json!({
                "count": self.group_count,
                "events": others.iter().map(webhook_payload).collect::<Vec<_>>(),
            });
        }
        if muted > 0 {
            self.muted_count = muted;
            self.muted_text = i18n::muted_text(lang, muted);
            self.payload["muted_repeats"] = json!(muted);
        }
        self
    }
}

impl PollErrorView {
    fn new(p: &PollHealth, lang: Language, change: Change) -> PollErrorView {
        let (label, since_label) = i18n::poll_labels(lang, change);
        PollErrorView {
            label,
            since_label,
            failures: p.failures,
            since: rfc3339(p.since_ms),
            since_ms: p.since_ms,
            kind: p.error_kind.clone(),
            code: p.code.clone(),
            message: p.message.clone(),
            hint: p.hint.clone(),
        }
    }
}

impl GroupEntryView {
    fn new(view: &View) -> GroupEntryView {
        GroupEntryView {
            event_id: view.event_id.clone(),
            kind: view.kind.clone(),
            headline: view.headline.clone(),
            summary: view.summary.clone(),
            icon: view.icon,
            severity: view.severity,
            observed_at_ms: view.observed_at_ms,
        }
    }
}

impl ItemView {
    fn new(item: &Item, lang: Language) -> ItemView {
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
            duration: duration_ms.and_then(|ms| format_duration(lang, ms)),
            duration_ms,
        }
    }
}

/// From the earliest BootTime to the latest FinishTime among `items`, when both exist and are
/// in order.
fn run_span(items: &[Item]) -> Option<i64> {
    let start = items.iter().filter_map(|i| i.boot_time).min()?;
    let end = items.iter().filter_map(|i| i.finish_time).max()?;
    (end >= start).then(|| end - start)
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
/// Unknown values are `null` (an item's `error` too); times are RFC 3339 UTC. `poll.failed` and
/// `poll.recovered` add `data.poll`: `{"failures", "since", "error_kind", "code", "message",
/// "hint"}`.
pub fn webhook_payload(event: &Event) -> Value {
    let mut payload = webhook_payload_v1(event);
    if let Some(p) = &event.poll {
        payload["data"]["poll"] = json!({
            "failures": p.failures,
            "since": rfc3339(p.since_ms),
            "error_kind": p.error_kind,
            "code": p.code,
            "message": p.message,
            "hint": p.hint,
        });
    }
    payload
}

fn webhook_payload_v1(event: &Event) -> Value {
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
        Change::StatusChanged | Change::Paused => "warning",
        Change::Started | Change::Progress | Change::Retired => "info",
        Change::PollFailed => "failure",
        Change::PollRecovered => "success",
    }
}

fn color(severity: &str) -> &'static str {
    match severity {
        "failure" => "red",
        "warning" => "orange",
        "success" => "green",
        _ => "blue",
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
    lang: Language,
    before: Option<T>,
    now: Option<T>,
    show: impl Fn(T) -> String,
) -> String {
    let unknown = i18n::unknown(lang);
    match (before, now) {
        (Some(b), Some(n)) if b != n => format!("{} → {}", show(b), show(n)),
        (_, Some(n)) => show(n),
        (Some(b), None) => format!("{} → {unknown}", show(b)),
        (None, None) => unknown.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ItemChange;
    use crate::render::samples::sample_events;
    use crate::snapshot::{Scope, Target};

    fn sample(kind: &str) -> Event {
        sample_events()
            .into_iter()
            .find(|e| e.kind() == kind)
            .unwrap_or_else(|| panic!("no sample for {kind}"))
    }

    #[test]
    fn failed_precheck_view_names_plan_checks_and_errors() {
        let view = View::new(&sample("precheck.failed"), &ViewOptions::plain("ops"));
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
        let view = View::new(&sample("precheck.item_changed"), &ViewOptions::plain("ops"));
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
        let json = serde_json::to_value(View::new(
            &sample("precheck.item_changed"),
            &ViewOptions::plain("ops"),
        ))
        .unwrap();
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
            let view = View::new(&sample(kind), &ViewOptions::plain("ops"));
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
            job_error: None,
            restore_task: None,
            poll: None,
        };
        let view = View::new(&event, &ViewOptions::plain("ops"));
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
        let view = ItemView::new(&item, Language::En);
        assert_eq!(view.duration, None);
        assert_eq!(view.duration_ms, None);
    }

    #[test]
    fn mentions_are_at_prefixed_and_blank_entries_dropped() {
        let mobiles = vec!["13800000000".to_string(), " ".into(), "13900000000 ".into()];
        let options = ViewOptions {
            at_mobiles: &mobiles,
            ..ViewOptions::plain("ding")
        };
        let view = View::new(&sample("precheck.failed"), &options);
        assert_eq!(view.mentions, "@13800000000 @13900000000");
        assert_eq!(view.channel, "ding");
    }

    #[test]
    fn chinese_view_translates_words_but_not_dbs_values() {
        let options = ViewOptions {
            language: Language::ZhCn,
            timezone: chrono_tz::Asia::Shanghai,
            ..ViewOptions::plain("ops")
        };
        let view = View::new(&sample("precheck.failed"), &options);
        assert_eq!(view.lang, "zh-CN");
        assert_eq!(view.headline, "预检查失败");
        assert_eq!(view.title, "预检查失败：orders-db");
        assert_eq!(view.summary, "3 项检查中 2 项有问题");
        assert_eq!(view.target_label, "备份计划");
        assert_eq!(view.labels.watch, "监控");
        assert_eq!(view.timezone, "Asia/Shanghai");
        assert_eq!(view.items[0].state.as_deref(), Some("warning"));
        assert_eq!(view.items[0].duration.as_deref(), Some("1秒"));
        assert_eq!(view.run_duration.as_deref(), Some("2秒"));
        let restore = View::new(&sample("restore.completed"), &options);
        assert_eq!(restore.summary, "2 个步骤全部完成");
        let unknown = Event {
            status: None,
            status_before: None,
            ..sample("precheck.progress")
        };
        assert_eq!(View::new(&unknown, &options).status_text, "未知");
    }

    #[test]
    fn shown_items_stop_at_the_cap_and_say_how_many_are_left() {
        let mut event = sample("precheck.failed");
        event.items = (0..7)
            .map(|n| Item {
                code: Some(format!("CHECK_{n}")),
                state: Some("failed".into()),
                ..Item::default()
            })
            .collect();
        let options = ViewOptions {
            item_cap: 5,
            ..ViewOptions::plain("ops")
        };
        let view = View::new(&event, &options);
        assert_eq!(view.items.len(), 7);
        assert_eq!(view.shown_items.len(), 5);
        assert_eq!(view.hidden_count, 2);
        assert_eq!(view.more_text, "… and 2 more checks");
        let all = View::new(&event, &ViewOptions::plain("ops"));
        assert_eq!(all.shown_items.len(), 7);
        assert_eq!(all.more_text, "");
    }

    #[test]
    fn notices_and_test_messages_are_marked() {
        let options = ViewOptions {
            notice: Some("note".into()),
            test: true,
            keyword: Some("告警"),
            ..ViewOptions::plain("ops")
        };
        let view = View::new(&sample("precheck.failed"), &options);
        assert_eq!(view.notice, "note");
        assert!(view.is_test);
        assert_eq!(view.title, "[TEST] Pre-check failed: orders-db");
        assert_eq!(view.keyword, "告警");
        assert_eq!(view.payload["notice"], "note");
        let plain = View::new(&sample("precheck.failed"), &ViewOptions::plain("ops"));
        assert_eq!(plain.notice, "");
        assert!(plain.payload.get("notice").is_none());
        assert_eq!(plain.keyword, "");
        assert_eq!(plain.color, "red");
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
