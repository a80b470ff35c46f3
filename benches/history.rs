//! How fast `dbswatch history` and `/api/v1/events` answer filtered queries over 1,000,000
//! stored events.
//!
//! ```sh
//! cargo bench --bench history                      # 1,000,000 events (about a minute to seed)
//! DBSWATCH_BENCH_EVENTS=100000 cargo bench --bench history
//! ```
//!
//! It seeds a temporary SQLite file through the real schema (migrations) in one transaction
//! with prepared inserts: 100 watches (half pre-checks, half restores) over a year, realistic
//! event kinds and JSON payloads, chained hashes, deliveries for the headline events. Then it
//! reopens the file with `Store::open` and times `Store::events_page` (the code behind both
//! `history` and `/api/v1/events`) for each filter, plus the HTTP endpoint in-process, and
//! prints median / p95 / max per query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dbswatch::audit::Heartbeat;
use dbswatch::audit::chain::{ChainFields, GENESIS, event_hash};
use dbswatch::event::{Change, Event, ItemChange};
use dbswatch::pipeline::Clock;
use dbswatch::server::{self, ApiState};
use dbswatch::snapshot::{Item, Scope, Target};
use dbswatch::store::{EventFilter, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

const WATCHES: u64 = 100;
const DAY_MS: i64 = 86_400_000;
const RUNS_PER_QUERY: usize = 40;

/// A small deterministic generator (no dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn target(w: u64) -> Target {
    if w.is_multiple_of(2) {
        Target::BackupPlan(format!("dbsplan{w:04}"))
    } else {
        Target::RestoreTask(format!("dbstask{w:04}"))
    }
}

fn change_for(r: u64, scope: Scope) -> Change {
    match r {
        0..=549 => Change::ItemChanged,
        550..=799 => Change::Progress,
        800..=869 => Change::Started,
        870..=919 => Change::Failed,
        920..=998 => match scope {
            Scope::Precheck => Change::Passed,
            Scope::Restore => Change::Completed,
        },
        _ => Change::StatusChanged,
    }
}

fn item(rng: &mut Lcg, state: &str) -> Item {
    let codes = [
        "CHECK_CONN_SRC",
        "CHECK_BINLOG_ON",
        "CHECK_MYSQL_PASSOWRD_FORMAT",
        "CHECK_SRC_PRIVILEGE",
        "FULL_DATA_RESTORE",
    ];
    let code = codes[rng.below(codes.len() as u64) as usize];
    Item {
        job_id: Some("qxwmxh2b1234".into()),
        code: Some(code.into()),
        group: Some(format!("{code}_DETAIL")),
        order: Some(format!("{}", rng.below(50))),
        state: Some(state.into()),
        error: (state == "failed")
            .then(|| "password of user \"dbs\" contains unsupported characters: <&>".into()),
        boot_time: Some(1_764_720_000_000),
        finish_time: Some(1_764_720_003_000),
    }
}

async fn seed(path: &std::path::Path, events: u64) -> anyhow::Result<()> {
    Store::open(path).await?.close().await;
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Off)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await?;
    let mut tx = conn.begin().await?;
    let mut rng = Lcg(42);
    let start = chrono::Utc::now().timestamp_millis() - 365 * DAY_MS;
    let step = (365 * DAY_MS) / events as i64;
    let mut prev = GENESIS.to_string();
    let mut head = (0i64, prev.clone());
    for i in 0..events {
        let w = rng.below(WATCHES);
        let t = target(w);
        let scope = t.scope();
        let change = change_for(rng.below(1000), scope);
        let status = match change {
            Change::Failed => "failed",
            Change::Passed | Change::Completed => "finish",
            Change::StatusChanged => "paused",
            _ => "running",
        };
        let mut e = Event {
            id: uuid::Uuid::new_v4().to_string(),
            scope,
            change,
            watch: format!("w{w:03}"),
            target: t.clone(),
            status_before: Some("running".into()),
            status: Some(status.into()),
            progress_before: Some(40),
            progress: Some(60),
            items: Vec::new(),
            item_change: None,
            item_total: 5,
            observed_at_ms: start + i as i64 * step,
            job_error: None,
            restore_task: None,
            poll: None,
        };
        match change {
            Change::ItemChanged => {
                let it = item(&mut rng, "finish");
                e.items = vec![it.clone()];
                e.item_change = Some(ItemChange {
                    item: it,
                    previous_state: Some("running".into()),
                });
            }
            Change::Failed => e.items = vec![item(&mut rng, "failed"), item(&mut rng, "warning")],
            _ => {}
        }
        let payload = serde_json::to_string(&e)?;
        let kind = e.kind();
        let hash = event_hash(
            &prev,
            &ChainFields {
                uid: &e.id,
                watch: &e.watch,
                kind: &kind,
                target_type: t.type_name(),
                target_id: t.id(),
                status: e.status.as_deref(),
                observed_at: e.observed_at_ms,
                payload: &payload,
            },
        );
        let id = sqlx::query(
            "INSERT INTO events (uid, watch, kind, target_type, target_id, status, observed_at, \
             snapshot_id, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.watch)
        .bind(&kind)
        .bind(t.type_name())
        .bind(t.id())
        .bind(&e.status)
        .bind(e.observed_at_ms)
        .bind(&payload)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        if !matches!(change, Change::ItemChanged | Change::Progress) {
            for channel in ["ops-slack", "audit"] {
                sqlx::query(
                    "INSERT INTO deliveries (uid, event_id, channel, status, attempts, \
                     next_attempt_at, created_at, delivered_at) \
                     VALUES (?, ?, ?, 'delivered', 1, ?, ?, ?)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(id)
                .bind(channel)
                .bind(e.observed_at_ms)
                .bind(e.observed_at_ms)
                .bind(e.observed_at_ms + 300)
                .execute(&mut *tx)
                .await?;
            }
        }
        prev = hash;
        head = (id, prev.clone());
        if i > 0 && i.is_multiple_of(100_000) {
            eprintln!("  seeded {i} events");
        }
    }
    sqlx::query("UPDATE chain_state SET head_id = ?, head_hash = ? WHERE id = 1")
        .bind(head.0)
        .bind(&head.1)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

struct Timing {
    name: String,
    rows: usize,
    median: Duration,
    p95: Duration,
    max: Duration,
}

fn summarise(name: &str, rows: usize, mut samples: Vec<Duration>) -> Timing {
    samples.sort();
    let p95 = samples[(samples.len() * 95).div_ceil(100) - 1];
    Timing {
        name: name.to_string(),
        rows,
        median: samples[samples.len() / 2],
        p95,
        max: *samples.last().expect("samples"),
    }
}

async fn time_filter(store: &Store, name: &str, filter: EventFilter) -> anyhow::Result<Timing> {
    let mut samples = Vec::with_capacity(RUNS_PER_QUERY);
    let mut rows = 0;
    for _ in 0..RUNS_PER_QUERY {
        let t = Instant::now();
        let page = store.events_page(&filter).await?;
        samples.push(t.elapsed());
        rows = page.entries.len();
    }
    Ok(summarise(name, rows, samples))
}

fn filter(f: impl FnOnce(&mut EventFilter)) -> EventFilter {
    let mut e = EventFilter::default();
    f(&mut e);
    e
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let events: u64 = std::env::var("DBSWATCH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    eprintln!("seeding {events} events into {}", path.display());
    let t = Instant::now();
    seed(&path, events).await?;
    let seeded = t.elapsed();
    let size = std::fs::metadata(&path)?.len();
    eprintln!(
        "seeded in {:.1} s, file {:.0} MiB",
        seeded.as_secs_f64(),
        size as f64 / 1_048_576.0
    );

    let store = Store::open(&path).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut timings = Vec::new();
    let cases: Vec<(&str, EventFilter)> = vec![
        ("no filter (newest 50)", EventFilter::default()),
        ("--watch w042", filter(|f| f.watch = Some("w042".into()))),
        (
            "--watch w042 --kind precheck.failed",
            filter(|f| {
                f.watch = Some("w042".into());
                f.kinds = vec!["precheck.failed".into()];
            }),
        ),
        (
            "--watch w042 --kind '*.status_changed' (rare)",
            filter(|f| {
                f.watch = Some("w042".into());
                f.kinds = vec!["*.status_changed".into()];
            }),
        ),
        (
            "--kind '*.failed'",
            filter(|f| f.kinds = vec!["*.failed".into()]),
        ),
        (
            "--kind restore.status_changed (rare)",
            filter(|f| f.kinds = vec!["restore.status_changed".into()]),
        ),
        (
            "--kind 'precheck.*' --kind 'restore.*'",
            filter(|f| f.kinds = vec!["precheck.*".into(), "restore.*".into()]),
        ),
        (
            "--plan dbsplan0042",
            filter(|f| f.target = Some(Target::BackupPlan("dbsplan0042".into()))),
        ),
        (
            "--task dbstask0043 --kind restore.completed",
            filter(|f| {
                f.target = Some(Target::RestoreTask("dbstask0043".into()));
                f.kinds = vec!["restore.completed".into()];
            }),
        ),
        (
            "--since 7d",
            filter(|f| f.since_ms = Some(now - 7 * DAY_MS)),
        ),
        (
            "--since 200d --until 190d",
            filter(|f| {
                f.since_ms = Some(now - 200 * DAY_MS);
                f.until_ms = Some(now - 190 * DAY_MS);
            }),
        ),
        (
            "--until 300d (old end)",
            filter(|f| f.until_ms = Some(now - 300 * DAY_MS)),
        ),
        (
            "--watch w042 --since 30d --until 20d",
            filter(|f| {
                f.watch = Some("w042".into());
                f.since_ms = Some(now - 30 * DAY_MS);
                f.until_ms = Some(now - 20 * DAY_MS);
            }),
        ),
        (
            "--kind '*.failed' --since 90d --until 60d",
            filter(|f| {
                f.kinds = vec!["*.failed".into()];
                f.since_ms = Some(now - 90 * DAY_MS);
                f.until_ms = Some(now - 60 * DAY_MS);
            }),
        ),
        (
            "--watch nope (no match)",
            filter(|f| f.watch = Some("nope".into())),
        ),
        (
            "--limit 1000 (largest API page)",
            filter(|f| f.limit = 1000),
        ),
    ];
    for (name, f) in cases {
        timings.push(time_filter(&store, name, f).await?);
    }

    // Page 21 of --watch w042 (1,000 rows deep) through the cursor.
    let mut f = filter(|f| f.watch = Some("w042".into()));
    for _ in 0..20 {
        f.cursor = store.events_page(&f).await?.next;
    }
    timings.push(time_filter(&store, "--watch w042, page 21 via cursor", f).await?);

    // The same query over HTTP, in-process: routing, JSON, redaction included.
    let config = dbswatch::config::parse("", std::path::Path::new("bench.toml"), &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = ApiState::new(
        store.clone(),
        Arc::new(config),
        Arc::new(Heartbeat::new()),
        Clock::system(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server::serve(listener, state, std::future::pending()));
    let client = reqwest::Client::new();
    for (name, query) in [
        (
            "HTTP /api/v1/events?watch=w042&kind=precheck.*&since=30d",
            "watch=w042&kind=precheck.*&since=30d",
        ),
        (
            "HTTP /api/v1/events?kind=*.failed&limit=50",
            "kind=*.failed&limit=50",
        ),
    ] {
        let url = format!("http://{addr}/api/v1/events?{query}");
        let mut samples = Vec::new();
        let mut rows = 0;
        for _ in 0..RUNS_PER_QUERY {
            let t = Instant::now();
            let body: serde_json::Value = client.get(&url).send().await?.json().await?;
            samples.push(t.elapsed());
            rows = body["events"].as_array().map_or(0, Vec::len);
        }
        timings.push(summarise(name, rows, samples));
    }

    println!();
    println!(
        "{events} events, {} watches, file {:.0} MiB; {RUNS_PER_QUERY} runs per query, limit 50 unless said",
        WATCHES,
        size as f64 / 1_048_576.0
    );
    println!(
        "{:<58} {:>5} {:>9} {:>9} {:>9}",
        "query", "rows", "median", "p95", "max"
    );
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    for t in &timings {
        println!(
            "{:<58} {:>5} {:>9} {:>9} {:>9}",
            t.name,
            t.rows,
            ms(t.median),
            ms(t.p95),
            ms(t.max)
        );
    }
    store.close().await;
    Ok(())
}
