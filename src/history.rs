//! Presenting the audit history: what happened to which plan when, and who was told.
//!
//! Pure formatting over rows the store returns; secrets never reach these rows (delivery errors
//! are redacted before they are stored). Times are shown in the configured time zone with their
//! offset; the `*_in` functions take the zone, the others use UTC.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::json;

use crate::audit::when;
use crate::store::HistoryEntry;

/// A one-line summary of what the event says.
pub fn detail(entry: &HistoryEntry) -> String {
    let e = &entry.event;
    if let Some(p) = &e.poll {
        return format!(
            "{} failed poll(s): {}",
            p.failures,
            one_line(&p.message, 120)
        );
    }
    if let Some(change) = &e.item_change {
        let code = change.item.code.as_deref().unwrap_or("?");
        let before = change.previous_state.as_deref().unwrap_or("new");
        let after = change.item.state.as_deref().unwrap_or("?");
        return format!("{code}: {before} -> {after}");
    }
    let problems: Vec<String> = e
        .items
        .iter()
        .map(|i| {
            let code = i.code.as_deref().unwrap_or("?");
            let state = i.state.as_deref().unwrap_or("?");
            match i.error.as_deref() {
                Some(err) if !err.is_empty() => format!("{code} {state}: {}", one_line(err, 80)),
                _ => format!("{code} {state}"),
            }
        })
        .collect();
    let progress = e.progress.map(|p| format!("{p}%")).unwrap_or_default();
    match (problems.is_empty(), e.change) {
        (false, _) => problems.join("; "),
        (true, crate::event::Change::Progress) => format!(
            "{} -> {progress}",
            e.progress_before
                .map(|p| format!("{p}%"))
                .unwrap_or_else(|| "?".into())
        ),
        (true, _) => format!(
            "status {} {progress}",
            e.status.as_deref().unwrap_or("unknown")
        ),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat.to_string()
    }
}

/// Epoch ms as an RFC 3339 UTC time with its offset.
pub fn format_time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S+00:00").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Who was told: `channel:status` for each delivery, with the attempt count when it took more
/// than one.
pub fn notified(entry: &HistoryEntry) -> String {
    if entry.deliveries.is_empty() {
        return "-".into();
    }
    entry
        .deliveries
        .iter()
        .map(|d| {
            if d.attempts > 1 || (d.status != "delivered" && d.attempts > 0) {
                format!("{}:{}({})", d.channel, d.status, d.attempts)
            } else {
                format!("{}:{}", d.channel, d.status)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fixed-width table in UTC, newest first as given.
pub fn table(entries: &[HistoryEntry]) -> String {
    table_in(entries, chrono_tz::UTC)
}

/// A fixed-width table with times in `tz` (the header names the zone), newest first as given.
pub fn table_in(entries: &[HistoryEntry], tz: Tz) -> String {
    let time_header = format!("TIME ({})", tz.name());
    let header = [
        time_header.as_str(),
        "WATCH",
        "EVENT",
        "TARGET",
        "NOTIFIED",
        "DETAIL",
    ];
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                when::format_time(e.observed_at_ms, tz),
                e.watch.clone(),
                e.kind.clone(),
                e.target_id.clone(),
                notified(e),
                detail(e),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(5) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == cells.len() - 1 {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no events recorded yet)\n");
    }
    out
}

/// One JSON object per line, times in UTC.
pub fn json_lines(entries: &[HistoryEntry]) -> String {
    json_lines_in(entries, chrono_tz::UTC)
}

/// One JSON object per line, times in `tz`.
pub fn json_lines_in(entries: &[HistoryEntry], tz: Tz) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&json_value(e, tz).to_string());
        out.push('\n');
    }
    out
}

/// The JSON form of one entry, shared by `history --format json` and `/api/v1/events`.
/// Fields are only ever added, never renamed: it is a contract.
pub fn json_value(e: &HistoryEntry, tz: Tz) -> serde_json::Value {
    json!({
        "id": e.id,
        "time": when::rfc3339(e.observed_at_ms, tz),
        "watch": e.watch,
        "kind": e.kind,
        "target": {"type": e.target_type, "id": e.target_id},
        "status": e.status,
        "detail": detail(e),
        "items": e.event.items,
        "deliveries": e.deliveries.iter().map(|d| json!({
            "channel": d.channel,
            "status": d.status,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "delivered_at": d.delivered_at_ms.and_then(|ms| when::rfc3339(ms, tz)),
        })).collect::<Vec<_>>(),
        "seq": e.seq,
        "time_ms": e.observed_at_ms,
        "status_before": e.event.status_before,
        "progress": e.event.progress,
        "progress_before": e.event.progress_before,
        "item_change": e.event.item_change,
        "item_total": e.event.item_total,
        "hash": e.hash,
    })
}

/// RFC 4180 CSV with a header row, times in `tz`.
pub fn csv(entries: &[HistoryEntry], tz: Tz) -> String {
    let mut out =
        String::from("time,watch,kind,target_type,target_id,status,notified,detail,id\r\n");
    for e in entries {
        let cells = [
            when::rfc3339(e.observed_at_ms, tz).unwrap_or_default(),
            e.watch.clone(),
            e.kind.clone(),
            e.target_type.clone(),
            e.target_id.clone(),
            e.status.clone().unwrap_or_default(),
            if e.deliveries.is_empty() {
                String::new()
            } else {
                notified(e)
            },
            detail(e),
            e.id.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(text: &str) -> String {
    // A leading = + - @ would be run as a formula by spreadsheet programs.
    let guarded = if text.len() > 1 && text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) || guarded != text {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, Event};
    use crate::snapshot::{Item, Scope, Target};
    use crate::store::DeliverySummary;

    fn entry() -> HistoryEntry {
        let event = Event {
            id: "e1".into(),
            scope: Scope::Precheck,
            change: Change::Failed,
            watch: "orders-db".into(),
            target: Target::BackupPlan("dbstooi01XXXX".into()),
            status_before: Some("running".into()),
            status: Some("failed".into()),
            progress_before: Some(40),
            progress: Some(100),
            items: vec![Item {
                code: Some("CHECK_MYSQL_PASSOWRD_FORMAT".into()),
                state: Some("failed".into()),
                error: Some("password of user \"dbs\"\ncontains <&>".into()),
                ..Item::default()
            }],
            item_change: None,
            item_total: 3,
            observed_at_ms: 1_764_720_003_000,
            job_error: None,
            restore_task: None,
            poll: None,
        };
        HistoryEntry {
            seq: 7,
            hash: Some("ab".into()),
            id: "e1".into(),
            kind: event.kind(),
            watch: "orders-db".into(),
            target_type: "backup_plan".into(),
            target_id: "dbstooi01XXXX".into(),
            status: Some("failed".into()),
            observed_at_ms: event.observed_at_ms,
            event,
            deliveries: vec![
                DeliverySummary {
                    channel: "ops-slack".into(),
                    status: "delivered".into(),
                    attempts: 1,
                    last_error: None,
                    delivered_at_ms: Some(1_764_720_004_000),
                },
                DeliverySummary {
                    channel: "audit".into(),
                    status: "pending".into(),
                    attempts: 2,
                    last_error: Some("HTTP 500".into()),
                    delivered_at_ms: None,
                },
            ],
        }
    }

    #[test]
    fn table_says_what_happened_and_who_was_told() {
        let t = table(&[entry()]);
        let row = t.lines().nth(1).unwrap();
        assert!(
            row.starts_with("2025-12-03 00:00:03+00:00  orders-db  precheck.failed"),
            "{t}"
        );
        assert!(row.contains("ops-slack:delivered audit:pending(2)"), "{t}");
        assert!(
            row.contains(
                "CHECK_MYSQL_PASSOWRD_FORMAT failed: password of user \"dbs\" contains <&>"
            ),
            "{t}"
        );
        assert_eq!(
            t.lines().count(),
            2,
            "newline in the error must not break the row"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let out = json_lines(&[entry(), entry()]);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["kind"], "precheck.failed");
        assert_eq!(v["deliveries"][1]["last_error"], "HTTP 500");
        assert_eq!(v["time"], "2025-12-03T00:00:03+00:00");
    }

    #[test]
    fn times_are_shown_in_the_configured_zone_with_the_offset() {
        let tz = chrono_tz::Asia::Shanghai;
        let t = table_in(&[entry()], tz);
        assert!(t.starts_with("TIME (Asia/Shanghai)"), "{t}");
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("2025-12-03 08:00:03+08:00"),
            "{t}"
        );
        let v: serde_json::Value =
            serde_json::from_str(json_lines_in(&[entry()], tz).trim()).unwrap();
        assert_eq!(v["time"], "2025-12-03T08:00:03+08:00");
        assert_eq!(
            v["deliveries"][0]["delivered_at"],
            "2025-12-03T08:00:04+08:00"
        );
        assert_eq!(v["seq"], 7);
        assert_eq!(v["time_ms"], 1_764_720_003_000i64);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let out = csv(&[entry()], chrono_tz::UTC);
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap(),
            "time,watch,kind,target_type,target_id,status,notified,detail,id"
        );
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("2025-12-03T00:00:03+00:00,orders-db,precheck.failed,"),
            "{row}"
        );
        assert!(
            row.contains(
                r#""CHECK_MYSQL_PASSOWRD_FORMAT failed: password of user ""dbs"" contains <&>""#
            ),
            "{row}"
        );
        assert_eq!(csv_cell("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("-"), "-");
    }

    #[test]
    fn empty_history_says_so() {
        assert!(table(&[]).contains("no events recorded yet"));
    }
}
