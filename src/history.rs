//! Presenting the audit history: what happened to which plan when, and who was told.
//!
//! Pure formatting over rows the store returns; secrets never reach these rows (delivery errors
//! are redacted before they are stored).

use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::store::HistoryEntry;

/// A one-line summary of what the event says.
pub fn detail(entry: &HistoryEntry) -> String {
    let e = &entry.event;
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

/// A fixed-width table, newest first as given.
pub fn table(entries: &[HistoryEntry]) -> String {
    let header = [
        "TIME (UTC)",
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
                format_time(e.observed_at_ms),
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

/// One JSON object per line.
pub fn json_lines(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let value = json!({
            "id": e.id,
            "time": Utc.timestamp_millis_opt(e.observed_at_ms).single().map(|t| t.to_rfc3339()),
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
                "delivered_at": d.delivered_at_ms
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                    .map(|t| t.to_rfc3339()),
            })).collect::<Vec<_>>(),
        });
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
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
        };
        HistoryEntry {
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
    fn empty_history_says_so() {
        assert!(table(&[]).contains("no events recorded yet"));
    }
}
