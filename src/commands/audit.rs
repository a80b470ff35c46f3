//! The audit commands as a person runs them: `history`, `timeline`, `snapshots`, `stats` and
//! `verify`. Each opens the database the config names, asks the store, prints, and returns the
//! exit code (0 fine, 1 the database could not answer or `verify` found tampering, 2 usage).

use std::path::Path;
use std::process::ExitCode;

use chrono_tz::Tz;
use serde_json::json;

use super::queries::{self, FilterInput};
use crate::audit::stats::WatchStats;
use crate::audit::timeline::{Segment, Timeline};
use crate::audit::when::{self, format_time, human_duration};
use crate::cli::Format;
use crate::config::{self, Config};
use crate::history;
use crate::store::{SnapshotRow, Store, VerifyReport};

/// `dbswatch history` arguments.
#[derive(Debug, Clone)]
pub struct HistoryArgs {
    /// Filters as typed.
    pub filter: FilterInput,
    /// Output format.
    pub format: Format,
    /// At most this many events.
    pub limit: i64,
}

/// Load the config and open its existing database; a missing file says what to run.
async fn open(path: &Path) -> Result<(Config, Store), ExitCode> {
    open_with(path, false).await
}

/// `writable`: `verify` opens the file for writing so a database from before the hash chain is
/// chained once (at open) and the result is recorded for `/metrics`; every other audit command
/// only reads.
async fn open_with(path: &Path, writable: bool) -> Result<(Config, Store), ExitCode> {
    // Reading history needs only the database: no secrets, no receiver URLs.
    let config = config::load_for_reading(path).map_err(|e| {
        eprint!("error: {e}{}", e.next_step());
        ExitCode::from(2)
    })?;
    if !config.storage.database.exists() {
        eprintln!(
            "no database at {} yet: run `dbswatch poll` or `dbswatch run` first",
            config.storage.database.display()
        );
        return Err(ExitCode::from(1));
    }
    // Read-only: an auditor may read the file without being able to write it.
    let opened = if writable {
        Store::open(&config.storage.database).await
    } else {
        Store::open_read_only(&config.storage.database).await
    };
    match opened {
        Ok(s) => Ok((config, s)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(1)
}

/// `dbswatch history`: stored events, newest first, filtered.
pub async fn history(path: &Path, args: HistoryArgs) -> ExitCode {
    let (config, store) = match open(path).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let tz = config.timezone;
    let mut filter = match queries::parse_filter(&args.filter, now_ms(), tz) {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    filter.limit = args.limit;
    let page = match store.events_page(&filter).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    store.close().await;
    match args.format {
        Format::Table => print!("{}", history::table_in(&page.entries, tz)),
        Format::Json => print!("{}", history::json_lines_in(&page.entries, tz)),
        Format::Csv => print!("{}", history::csv(&page.entries, tz)),
    }
    ExitCode::SUCCESS
}

/// `dbswatch timeline WATCH [--run N]`.
pub async fn timeline(path: &Path, watch: &str, run: usize, format: Format) -> ExitCode {
    if format == Format::Csv {
        return usage("timeline prints as table or json");
    }
    let (config, store) = match open(path).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let result = queries::timeline_of(&store, watch, run, now_ms()).await;
    store.close().await;
    match result {
        Ok(Some(t)) => {
            match format {
                Format::Json => println!("{}", crate::server::timeline_json(&t, config.timezone)),
                _ => print!("{}", timeline_text(&t, config.timezone)),
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!(
                "no run {run} stored for watch `{watch}`{}",
                if config.watch(watch).is_none() {
                    " (and no watch of that name is configured)"
                } else {
                    ""
                }
            );
            ExitCode::from(1)
        }
        Err(e) => failed(e),
    }
}

/// The timeline for people.
pub fn timeline_text(t: &Timeline, tz: Tz) -> String {
    let mut out = String::new();
    let what = match t.scope.as_str() {
        "restore" => format!("restore task {}", t.target.id()),
        _ => format!("pre-check of backup plan {}", t.target.id()),
    };
    let which = match (t.run, t.runs) {
        (1, Some(n)) => format!("run 1 (latest) of {n}"),
        (1, None) => "run 1 (latest)".to_string(),
        (r, Some(n)) => format!("run {r} of {n}"),
        (r, None) => format!("run {r}"),
    };
    out.push_str(&format!("{} — {what} — {which}\n", t.watch));
    out.push_str(&format!("started  {}\n", format_time(t.started_at_ms, tz)));
    match t.ended_at_ms {
        Some(end) => out.push_str(&format!(
            "ended    {}  {}\n",
            format_time(end, tz),
            t.status.as_deref().unwrap_or("?")
        )),
        None => out.push_str(&format!(
            "ended    (still {})\n",
            t.status.as_deref().unwrap_or("unknown")
        )),
    }
    out.push_str(&format!(
        "total    {}{}",
        human_duration(t.total_ms),
        if t.ongoing { " so far" } else { "" }
    ));
    if let Some((boot, finish)) = t.dbs_span_ms {
        out.push_str(&format!(
            "  (DBS item times: {} to {}, {})",
            format_time(boot, tz),
            format_time(finish, tz),
            human_duration(finish - boot)
        ));
    }
    out.push_str("\n\nSTATUS\n");
    for s in &t.status_history {
        out.push_str(&segment_line(s, tz, "  "));
    }
    if !t.progress.is_empty() {
        out.push_str("\nPROGRESS\n");
        for p in &t.progress {
            out.push_str(&format!(
                "  {}  {:>3}%\n",
                format_time(p.at_ms, tz),
                p.progress
            ));
        }
    }
    out.push_str("\nITEMS\n");
    if t.items.is_empty() {
        out.push_str("  (no item changes stored for this run)\n");
    }
    for item in &t.items {
        let code = item.code.as_deref().unwrap_or("?");
        match &item.group {
            Some(g) => out.push_str(&format!("  {code}  [{g}]\n")),
            None => out.push_str(&format!("  {code}\n")),
        }
        for s in &item.states {
            out.push_str(&segment_line(s, tz, "    "));
        }
        if let Some(e) = &item.error {
            out.push_str(&format!("    error: {}\n", e.replace(['\n', '\r'], " ")));
        }
    }
    if let Some(note) = &t.note {
        out.push_str(&format!("\nnote: {note}\n"));
    }
    out
}

fn segment_line(s: &Segment, tz: Tz, indent: &str) -> String {
    let held = match s.duration_ms {
        Some(ms) => human_duration(ms),
        None => "-".to_string(),
    };
    let already = if s.already {
        "  (already so when first seen)"
    } else {
        ""
    };
    format!(
        "{indent}{}  {:<10} {held}{already}\n",
        format_time(s.entered_at_ms, tz),
        s.state
    )
}

/// `dbswatch snapshots WATCH [--raw]`.
pub async fn snapshots(
    path: &Path,
    watch: &str,
    raw: bool,
    limit: i64,
    format: Format,
) -> ExitCode {
    if format == Format::Csv {
        return usage("snapshots prints as table or json");
    }
    let (config, store) = match open(path).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let rows = store.snapshots(watch, limit).await;
    store.close().await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let tz = config.timezone;
    match format {
        Format::Json => {
            for r in &rows {
                let mut v = json!({
                    "id": r.id,
                    "first_seen": when::rfc3339(r.first_seen_at_ms, tz),
                    "last_seen": when::rfc3339(r.last_seen_at_ms, tz),
                    "seen_count": r.seen_count,
                    "content_hash": r.content_hash,
                    "request_id": r.request_id,
                    "snapshot": r.snapshot,
                });
                if raw {
                    v["raw_body"] = json!(r.raw_body);
                }
                if let Some(reason) = &r.unreadable {
                    v["unreadable"] = json!(reason);
                }
                println!("{v}");
            }
        }
        _ => print!("{}", snapshots_text(watch, &rows, raw, tz)),
    }
    // Every readable row was listed; a damaged one still fails the command, so a script or a
    // person notices.
    let damaged: Vec<String> = rows
        .iter()
        .filter_map(|r| r.unreadable.as_ref().map(|why| format!("{} ({why})", r.id)))
        .collect();
    if damaged.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "error: {} snapshot(s) of `{watch}` cannot be read back: {}. The file was changed \
         outside dbswatch or is damaged; `dbswatch verify` checks the event history, and a \
         backup of the database file has the answers.",
        damaged.len(),
        damaged.join("; ")
    );
    ExitCode::from(1)
}

/// The snapshot listing for people; with `raw`, each exact response body follows its row.
pub fn snapshots_text(watch: &str, rows: &[SnapshotRow], raw: bool, tz: Tz) -> String {
    if rows.is_empty() {
        return format!("(no snapshots stored for `{watch}`)\n");
    }
    let mut out = String::new();
    let time_header = format!("FIRST SEEN ({})", tz.name());
    let header = [
        "ID".to_string(),
        time_header,
        "LAST SEEN".to_string(),
        "POLLS".to_string(),
        "STATUS".to_string(),
        "ITEMS".to_string(),
        "HASH".to_string(),
    ];
    let lines: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                format_time(r.first_seen_at_ms, tz),
                format_time(r.last_seen_at_ms, tz),
                r.seen_count.to_string(),
                if r.unreadable.is_some() {
                    "UNREADABLE".to_string()
                } else {
                    format!(
                        "{} {}",
                        r.snapshot.status.as_deref().unwrap_or("?"),
                        r.snapshot
                            .progress
                            .map(|p| format!("{p}%"))
                            .unwrap_or_default()
                    )
                    .trim()
                    .to_string()
                },
                item_summary(r),
                r.content_hash.chars().take(12).collect(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&fmt(&header));
    for (r, l) in rows.iter().zip(lines.iter()) {
        out.push_str(&fmt(l));
        if let Some(why) = &r.unreadable {
            out.push_str(&format!(
                "    snapshot {} cannot be read back: {why}\n",
                r.id
            ));
        } else if raw {
            out.push_str(&format!(
                "--- raw response of snapshot {} (RequestId {}) ---\n{}\n--- end ---\n",
                r.id,
                r.request_id.as_deref().unwrap_or("?"),
                r.raw_body
            ));
        }
    }
    out
}

fn item_summary(r: &SnapshotRow) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for i in &r.snapshot.items {
        let s = i.state.clone().unwrap_or_else(|| "?".into());
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `dbswatch stats [--watch NAME] [--since] [--until]`.
pub async fn stats(path: &Path, filter: FilterInput, format: Format) -> ExitCode {
    let (config, store) = match open(path).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let parsed = match queries::parse_filter(&filter, now_ms(), config.timezone) {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let configured: Vec<String> = config.watches.iter().map(|w| w.name.clone()).collect();
    let names = match &filter.watch {
        Some(w) => vec![w.clone()],
        None => match queries::known_watches(&store, &configured).await {
            Ok(n) => n,
            Err(e) => return failed(e),
        },
    };
    let result = queries::stats_of(&store, &names, parsed.since_ms, parsed.until_ms).await;
    store.close().await;
    let stats = match result {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    match format {
        Format::Json => {
            for s in &stats {
                println!("{}", stats_json(s));
            }
        }
        Format::Csv => print!("{}", stats_csv(&stats)),
        Format::Table => print!("{}", stats_text(&stats)),
    }
    ExitCode::SUCCESS
}

fn stats_json(s: &WatchStats) -> serde_json::Value {
    json!({
        "watch": s.watch,
        "target": s.target.as_ref().map(|t| json!({"type": t.type_name(), "id": t.id()})),
        "scope": s.scope,
        "runs": s.runs,
        "failures": s.failures,
        "succeeded": s.succeeded,
        "ongoing": s.ongoing,
        "measured_runs": s.measured,
        "mean_duration_ms": s.mean_ms,
        "p95_duration_ms": s.p95_ms,
        "top_failing_checks": s.top_failing.iter()
            .map(|(c, n)| json!({"check": c, "failures": n})).collect::<Vec<_>>(),
    })
}

fn stats_csv(stats: &[WatchStats]) -> String {
    let mut out = String::from(
        "watch,target_type,target_id,runs,failures,succeeded,mean_ms,p95_ms,top_failing\r\n",
    );
    for s in stats {
        let top = s
            .top_failing
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\r\n",
            s.watch,
            s.target.as_ref().map_or("", |t| t.type_name()),
            s.target.as_ref().map_or("", |t| t.id()),
            s.runs,
            s.failures,
            s.succeeded,
            s.mean_ms.map_or(String::new(), |v| v.to_string()),
            s.p95_ms.map_or(String::new(), |v| v.to_string()),
            top
        ));
    }
    out
}

/// Per-watch stats for people.
pub fn stats_text(stats: &[WatchStats]) -> String {
    let header = [
        "WATCH",
        "TARGET",
        "RUNS",
        "FAILED",
        "OK",
        "MEAN",
        "P95",
        "MOST FAILED CHECKS",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = stats
        .iter()
        .map(|s| {
            let dur = |v: Option<i64>| v.map_or("-".to_string(), human_duration);
            [
                s.watch.clone(),
                s.target
                    .as_ref()
                    .map_or("-".to_string(), |t| t.id().to_string()),
                format!("{}{}", s.runs, if s.ongoing { "*" } else { "" }),
                s.failures.to_string(),
                s.succeeded.to_string(),
                dur(s.mean_ms),
                dur(s.p95_ms),
                if s.top_failing.is_empty() {
                    "-".to_string()
                } else {
                    s.top_failing
                        .iter()
                        .map(|(c, n)| format!("{c} ({n})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = fmt(&header);
    for r in &rows {
        out.push_str(&fmt(r));
    }
    if stats.is_empty() {
        out.push_str("(no watches)\n");
    } else if stats.iter().any(|s| s.ongoing) {
        out.push_str("* a run is in progress (counted in RUNS, not in the durations)\n");
    }
    out
}

/// `dbswatch verify`: walk the hash chain; exit 1 when anything was changed, inserted or
/// deleted behind dbswatch's back.
pub async fn verify(path: &Path, format: Format) -> ExitCode {
    if format == Format::Csv {
        return usage("verify prints as table or json");
    }
    let (_config, store) = match open_with(path, true).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let result = store.verify_chain(now_ms()).await;
    store.close().await;
    let report = match result {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string(&report).expect("reports serialise")
        ),
        _ => print!("{}", verify_text(&report)),
    }
    if report.verdict.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The verification for people: the first problem first.
pub fn verify_text(r: &VerifyReport) -> String {
    let v = &r.verdict;
    let mut out = String::new();
    if v.ok() {
        out.push_str(&format!(
            "chain intact: {} event{} verified\n",
            v.events,
            if v.events == 1 { "" } else { "s" }
        ));
    } else {
        out.push_str(&format!(
            "CHAIN BROKEN: {} problem{} in {} events\n",
            v.problems.len(),
            if v.problems.len() == 1 { "" } else { "s" },
            v.events
        ));
        let first = &v.problems[0];
        out.push_str(&format!(
            "first: event {} was {}: {}\n",
            first.event_id,
            first.kind.as_str().to_uppercase(),
            first.detail
        ));
        for p in v.problems.iter().skip(1).take(50) {
            out.push_str(&format!(
                "  event {} {}: {}\n",
                p.event_id,
                p.kind.as_str(),
                p.detail
            ));
        }
        if v.problems.len() > 51 {
            out.push_str(&format!("  ... and {} more\n", v.problems.len() - 51));
        }
    }
    out.push_str(&format!(
        "head: {} {}\n",
        r.head_id
            .map_or("(no events yet)".to_string(), |id| format!("event {id}")),
        v.head_hash
    ));
    if r.anchor_hash != crate::audit::chain::GENESIS {
        out.push_str(&format!(
            "starts from the retention anchor {}\n",
            r.anchor_hash
        ));
    }
    out
}
