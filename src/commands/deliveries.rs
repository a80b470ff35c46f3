//! `dbswatch deliveries` (the outbox with each notification's attempts and last error) and
//! `dbswatch redeliver ID...` (put dead notifications back in the queue).
//!
//! Both need only the database the config names: listing opens it read-only, so an auditor
//! without the tokens the config refers to can still see who was told what and why not.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::config;
use crate::store::{DeliveryListing, OutboxFilter, Redelivery, Store, StoreError};

/// Attempts shown under each notification in the table; the rest are counted.
const TABLE_ATTEMPTS: usize = 5;

/// Why the outbox could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveriesError {
    /// The config file does not say where the database is.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// There is no database yet.
    #[error(
        "no database at {} yet: run `dbswatch poll` or `dbswatch run` first",
        .0.display()
    )]
    NoDatabase(PathBuf),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The database of the config at `path`, which must exist.
fn database(path: &Path) -> Result<PathBuf, DeliveriesError> {
    let database = config::database_path(path)?;
    if !database.exists() {
        return Err(DeliveriesError::NoDatabase(database));
    }
    Ok(database)
}

/// The outbox, newest first, filtered.
pub async fn list(
    path: &Path,
    filter: &OutboxFilter,
) -> Result<Vec<DeliveryListing>, DeliveriesError> {
    let store = Store::open_read_only(&database(path)?).await?;
    let rows = store.list_deliveries(filter).await;
    store.close().await;
    Ok(rows?)
}

/// Re-queue dead deliveries: each id's result, in order.
pub async fn redeliver(
    path: &Path,
    ids: &[i64],
    now_ms: i64,
) -> Result<Vec<(i64, Redelivery)>, DeliveriesError> {
    let store = Store::open(&database(path)?).await?;
    let results = store.redeliver(ids, now_ms).await;
    store.close().await;
    Ok(ids.iter().copied().zip(results?).collect())
}

/// One line per id: what `redeliver` did.
pub fn redelivery_lines(results: &[(i64, Redelivery)]) -> String {
    let mut out = String::new();
    for (id, r) in results {
        let line = match r {
            Redelivery::Requeued => format!(
                "{id}: re-queued; the running daemon sends it after its next poll (or run \
                 `dbswatch poll` now), with the same idempotency id and a fresh retry budget"
            ),
            Redelivery::NotFound => {
                format!("{id}: no such delivery (see `dbswatch deliveries` for the ids)")
            }
            Redelivery::NotDead { status } => {
                format!("{id}: not re-queued: it is {status}; only dead deliveries are re-queued")
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn time(ms: i64) -> String {
    crate::history::format_time(ms)
}

fn rfc3339(ms: i64) -> Option<String> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339())
}

/// When it is due, or when it was settled: `next 08:00:05`, `done 08:00:06`.
fn when(d: &DeliveryListing) -> String {
    match (d.status.as_str(), d.delivered_at_ms) {
        ("pending", _) => format!("next {}", time(d.next_attempt_at_ms)),
        (_, Some(at)) => format!("done {}", time(at)),
        _ => format!("done {}", time(d.next_attempt_at_ms)),
    }
}

/// A fixed-width table: one row per notification, then its attempts (the newest
/// [`TABLE_ATTEMPTS`]) and last error, indented.
pub fn table(rows: &[DeliveryListing]) -> String {
    let header = [
        "ID",
        "STATUS",
        "CHANNEL",
        "EVENT",
        "WATCH",
        "ATTEMPTS",
        "WHEN (UTC)",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|d| {
            [
                d.id.to_string(),
                d.status.clone(),
                d.channel.clone(),
                d.kind.clone(),
                d.watch.clone(),
                d.attempt_log.len().to_string(),
                when(d),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    for (d, row) in rows.iter().zip(&cells) {
        out.push_str(&line(row));
        out.push('\n');
        let skipped = d.attempt_log.len().saturating_sub(TABLE_ATTEMPTS);
        if skipped > 0 {
            out.push_str(&format!("    ({skipped} earlier attempts)\n"));
        }
        for a in d.attempt_log.iter().skip(skipped) {
            let answer = match (&a.http_status, &a.vendor_code) {
                (Some(s), Some(c)) => format!("HTTP {s}, code {c}"),
                (Some(s), None) => format!("HTTP {s}"),
                (None, Some(c)) => format!("code {c}"),
                (None, None) => "no answer".to_string(),
            };
            let outcome = if a.outcome == "sending" {
                "interrupted (no answer recorded: in flight, or the process stopped)".to_string()
            } else {
                a.outcome.clone()
            };
            out.push_str(&format!(
                "    {}  {outcome}  {answer}  {} ms\n",
                time(a.attempted_at_ms),
                a.duration_ms
            ));
        }
        if let Some(e) = d.last_error.as_deref().filter(|e| !e.is_empty()) {
            out.push_str(&format!("    last error: {}\n", one_line(e)));
        }
    }
    if rows.is_empty() {
        out.push_str("(no deliveries match)\n");
    }
    out
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One JSON object per notification, every attempt included.
pub fn json_lines(rows: &[DeliveryListing]) -> String {
    let mut out = String::new();
    for d in rows {
        let value = json!({
            "id": d.id,
            "uid": d.uid,
            "channel": d.channel,
            "status": d.status,
            "event": {"id": d.event_id, "kind": d.kind, "watch": d.watch,
                      "time": rfc3339(d.observed_at_ms)},
            "created_at": rfc3339(d.created_at_ms),
            "next_attempt_at": (d.status == "pending").then(|| rfc3339(d.next_attempt_at_ms)),
            "delivered_at": d.delivered_at_ms.and_then(rfc3339),
            "message_id": d.message_id,
            "last_error": d.last_error,
            "attempts": d.attempt_log.iter().map(|a| json!({
                "time": rfc3339(a.attempted_at_ms),
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "http_status": a.http_status,
                "vendor_code": a.vendor_code,
                "error": a.error,
                "message_id": a.message_uid,
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
    use crate::store::AttemptRecord;

    fn listing(status: &str, attempts: usize) -> DeliveryListing {
        DeliveryListing {
            id: 7,
            uid: "u7".into(),
            channel: "ops-slack".into(),
            status: status.into(),
            event_id: "e1".into(),
            kind: "precheck.failed".into(),
            watch: "orders-db".into(),
            observed_at_ms: 1_764_720_005_000,
            created_at_ms: 1_764_720_005_000,
            next_attempt_at_ms: 1_764_720_065_000,
            delivered_at_ms: None,
            attempts: attempts as i64,
            last_error: Some("Slack answered HTTP 500 with `rollup_error`\nretried".into()),
            message_id: Some("u7".into()),
            attempt_log: (0..attempts)
                .map(|n| AttemptRecord {
                    attempted_at_ms: 1_764_720_005_000 + n as i64 * 1000,
                    duration_ms: 12,
                    outcome: if n == 0 { "sending" } else { "retryable" }.into(),
                    http_status: (n > 0).then_some(500),
                    vendor_code: None,
                    error: Some("HTTP 500".into()),
                    message_uid: Some("u7".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn the_table_shows_attempts_and_the_last_error_on_one_line() {
        let text = table(&[listing("pending", 8)]);
        assert!(text.starts_with("ID  STATUS "), "{text}");
        assert!(
            text.contains("7   pending  ops-slack  precheck.failed"),
            "{text}"
        );
        assert!(text.contains("next 2025-12-03 00:01:05+00:00"), "{text}");
        assert!(text.contains("(3 earlier attempts)"), "{text}");
        assert!(text.contains("retryable  HTTP 500  12 ms"), "{text}");
        assert!(
            text.contains("last error: Slack answered HTTP 500 with `rollup_error` retried"),
            "{text}"
        );
        let first = table(&[listing("pending", 1)]);
        assert!(first.contains("interrupted (no answer recorded"), "{first}");
        assert!(table(&[]).contains("(no deliveries match)"));
    }

    #[test]
    fn json_lines_carry_every_attempt() {
        let line = json_lines(&[listing("dead", 3)]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["status"], "dead");
        assert_eq!(v["attempts"].as_array().unwrap().len(), 3);
        assert_eq!(v["attempts"][1]["http_status"], 500);
        assert_eq!(v["next_attempt_at"], serde_json::Value::Null);
        assert_eq!(v["event"]["kind"], "precheck.failed");
    }

    #[test]
    fn redelivery_lines_say_what_happened_to_each_id() {
        let text = redelivery_lines(&[
            (1, Redelivery::Requeued),
            (2, Redelivery::NotFound),
            (
                3,
                Redelivery::NotDead {
                    status: "delivered".into(),
                },
            ),
        ]);
        assert!(text.contains("1: re-queued"), "{text}");
        assert!(text.contains("2: no such delivery"), "{text}");
        assert!(text.contains("3: not re-queued: it is delivered"), "{text}");
    }
}
