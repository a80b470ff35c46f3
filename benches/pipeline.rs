//! Whole-pipeline benchmark: `cargo bench --bench pipeline [-- --watches 100,1000,10000]
//! [--cycles N] [--no-paced]`. `--cycles` sets the saturating runs' cycles; the paced run
//! always polls 100 watches for 10 and 30 cycles, and `--no-paced` leaves it out.
//!
//! Three processes, so each figure belongs to dbswatch alone: this one orchestrates; a "peer"
//! (this binary re-executed) runs the DBS double with N plans and the webhook sink; a
//! "measure" process (re-executed too) runs dbswatch's own pipeline against them — signing,
//! HTTP, parsing, normalising, diffing, recording and, beside it exactly as the daemon does, a
//! delivery task woken by each stored change. One measure process per (N, % changed), so its
//! peak RSS is that configuration's alone.
//!
//! For each N: one warm-up cycle (every watch's first poll), then measured cycles with 0% and
//! then 1% of answers changing, at the default concurrency (the request-rate limit is lifted:
//! it is a courtesy to the real API, not a cost of ours). Reported: CPU per poll, cycle wall
//! time, peak RSS, database bytes (used pages) added per unchanged poll and per change, and
//! detection-to-delivery latency (answer received, which is the event's `time`, to the sink
//! receiving the webhook body; millisecond resolution). Table on stdout, same figures in
//! `target/bench/pipeline.json`. The history/API query times over 1,000,000 events are a
//! separate bench: `cargo bench --bench history`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use dbswatch::audit::Heartbeat;
use dbswatch::config;
use dbswatch::pipeline::{App, Clock};
use dbswatch::scheduler::DeliveryTask;
use dbswatch::simulate::{self, Scenario, Step};
use dbswatch::snapshot::Target;

const KEY_ID: &str = "bench-key-id";
const KEY_SECRET: &str = "bench-key-secret";
/// Request rate of the paced latency run: 40 times the default, still far from saturating.
const PACED_RPS: f64 = 200.0;

fn main() {
    match std::env::var("DBSWATCH_BENCH_ROLE").as_deref() {
        Ok("peer") => return peer(),
        Ok("measure") => return measure_child(),
        _ => {}
    }
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<usize> = arg("--watches")
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    let cycles: Option<usize> = arg("--cycles").and_then(|c| c.parse().ok());
    let mut results = Vec::new();
    for n in sizes {
        for changed_pct in [0u32, 1] {
            let r = measure(
                n,
                changed_pct,
                cycles.unwrap_or_else(|| cycles_for(n)),
                None,
            );
            print_row(&r);
            results.push(r);
        }
    }
    // The same pipeline when the poll cycle does not hold both cores: 100 watches, polls paced
    // at PACED_RPS (the default is 5 a second; the cycles above lift the limit and keep the
    // machine saturated for the whole cycle). Detection to delivery with 10% of answers
    // changing (30 cycles: 300 changes), and CPU per poll when each poll wakes the process
    // on its own instead of in a busy cycle.
    let paced = if args.iter().any(|a| a == "--no-paced") {
        &[][..]
    } else {
        println!("\npaced: {PACED_RPS} polls a second");
        &[(0, 10), (10, 30)][..]
    };
    for &(changed_pct, cycles) in paced {
        let r = measure(100, changed_pct, cycles, Some(PACED_RPS));
        print_row(&r);
        results.push(r);
    }
    let json = serde_json::to_string_pretty(&results).expect("results serialise");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(dir.join("pipeline.json"), &json).expect("write results");
    println!("\nwritten: target/bench/pipeline.json");
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Result {
    watches: usize,
    changed_pct: u32,
    /// The DBS request-rate limit; `None`: lifted.
    requests_per_second: Option<f64>,
    cycles: usize,
    polls: usize,
    cpu_ms_per_poll: f64,
    cycle_wall_ms_mean: f64,
    cycle_wall_ms_max: f64,
    peak_rss_mb: f64,
    /// Resident set at the end, after the measured cycles (the peak may come from the warm-up,
    /// which records every watch's first answer and sends its first messages).
    end_rss_mb: f64,
    /// Peak resident set when the warm-up cycle was done.
    warmup_peak_rss_mb: f64,
    db_bytes_per_unchanged_poll: Option<f64>,
    db_bytes_per_change: Option<f64>,
    /// The same growth per change, split by table (each with its indexes).
    db_bytes_per_change_by_table: Option<std::collections::BTreeMap<String, f64>>,
    latency_ms_p50: Option<f64>,
    latency_ms_p99: Option<f64>,
    deliveries: usize,
}

fn print_row(r: &Result) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    if r.changed_pct == 0 {
        println!(
            "\n{:>7} {:>4} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8}",
            "watches",
            "chg%",
            "cycles",
            "cpu/poll",
            "cycle ms",
            "max ms",
            "rss MB",
            "warm-up",
            "end",
            "B/unchg",
            "B/change",
            "p50 ms",
            "p99 ms"
        );
    }
    println!(
        "{:>7} {:>4} {:>6} {:>9.3} {:>10.1} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {:>10} {:>10} {:>8} {:>8}",
        r.watches,
        r.changed_pct,
        r.cycles,
        r.cpu_ms_per_poll,
        r.cycle_wall_ms_mean,
        r.cycle_wall_ms_max,
        r.peak_rss_mb,
        r.warmup_peak_rss_mb,
        r.end_rss_mb,
        opt(r.db_bytes_per_unchanged_poll),
        opt(r.db_bytes_per_change),
        opt(r.latency_ms_p50),
        opt(r.latency_ms_p99),
    );
    if let Some(tables) = &r.db_bytes_per_change_by_table {
        let parts: Vec<String> = tables.iter().map(|(t, b)| format!("{t} {b:.0}")).collect();
        println!("{:>18} B/change by table: {}", "", parts.join(", "));
    }
}

/// CPU time of this process (all threads), from /proc: utime + stime in clock ticks.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state(0) ppid(1) ... utime(11) stime(12).
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Bytes in use in the database (pages minus free pages, the WAL included): what the data
/// takes, whatever the file size happens to be.
async fn db_used_bytes(path: &std::path::Path) -> u64 {
    let mut conn = open_for_a_look(path).await;
    let mut pragma = async |name: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(&mut conn)
            .await
            .expect("pragma")
    };
    let pages = pragma("page_count").await - pragma("freelist_count").await;
    (pages * pragma("page_size").await) as u64
}

/// A read-only connection to the bench database for measuring it. A 64 KiB page cache keeps
/// the measuring out of the peak RSS this process reports (`dbstat` reads every page; with the
/// default 2 MiB cache it added ~2 MB).
async fn open_for_a_look(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .pragma("cache_size", "-64")
        .connect()
        .await
        .expect("open the bench database")
}

/// Bytes of used pages per table, its indexes counted with it (SQLite's `dbstat`): where the
/// bytes of a change go.
async fn db_bytes_by_table(path: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    use sqlx::Row;
    let mut conn = open_for_a_look(path).await;
    sqlx::query(
        "SELECT coalesce(m.tbl_name, d.name) AS t, SUM(d.pgsize) AS bytes \
         FROM dbstat d LEFT JOIN sqlite_schema m ON m.name = d.name GROUP BY t",
    )
    .fetch_all(&mut conn)
    .await
    .expect("dbstat")
    .iter()
    .map(|r| (r.get::<String, _>("t"), r.get::<i64, _>("bytes") as u64))
    .collect()
}

fn cycles_for(n: usize) -> usize {
    match n {
        0..=1_000 => 100,
        _ => 10,
    }
}

/// One configuration: start the peer, run the measure process against it, stop the peer.
fn measure(n: usize, changed_pct: u32, cycles: usize, rps: Option<f64>) -> Result {
    let changed = (n * changed_pct as usize) / 100;
    let exe = std::env::current_exe().expect("current exe");
    let mut peer = Command::new(&exe)
        .env("DBSWATCH_BENCH_ROLE", "peer")
        .env("BENCH_WATCHES", n.to_string())
        .env("BENCH_CHANGED", changed.to_string())
        .env("BENCH_CYCLES", (cycles + 2).to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the peer process");
    let mut line = String::new();
    BufReader::new(peer.stdout.as_mut().expect("peer stdout"))
        .read_line(&mut line)
        .expect("peer announces its ports");
    let mut ports = line.split_whitespace();
    let dbs = ports.next().expect("dbs address").to_string();
    let sink = ports.next().expect("sink address").to_string();

    let output = Command::new(&exe)
        .env("DBSWATCH_BENCH_ROLE", "measure")
        .env("BENCH_WATCHES", n.to_string())
        .env("BENCH_CHANGED_PCT", changed_pct.to_string())
        .env("BENCH_RPS", rps.map(|r| r.to_string()).unwrap_or_default())
        .env("BENCH_CHANGED", changed.to_string())
        .env("BENCH_CYCLES", cycles.to_string())
        .env("BENCH_DBS", &dbs)
        .env("BENCH_SINK", &sink)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the measure process");
    if let Some(stdin) = peer.stdin.as_mut() {
        let _ = stdin.write_all(b"stop\n");
    }
    let _ = peer.kill();
    let _ = peer.wait();
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the measure process failed ({e}): {text}"))
}

fn env_num(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not set"))
}

fn measure_child() {
    // The runtime `dbswatch run` builds: poll workers at a lower CPU priority.
    let runtime = dbswatch::priority::daemon_runtime().expect("runtime");
    let result = runtime.block_on(run_cycles(
        env_num("BENCH_WATCHES"),
        env_num("BENCH_CHANGED_PCT") as u32,
        env_num("BENCH_CHANGED"),
        env_num("BENCH_CYCLES"),
        &std::env::var("BENCH_DBS").expect("BENCH_DBS"),
        &std::env::var("BENCH_SINK").expect("BENCH_SINK"),
        std::env::var("BENCH_RPS").ok().and_then(|r| r.parse().ok()),
    ));
    println!(
        "{}",
        serde_json::to_string(&result).expect("results serialise")
    );
}

/// Wait until nothing is pending in the outbox.
async fn drained(app: &App) {
    while app
        .store
        .next_delivery_at()
        .await
        .expect("outbox")
        .is_some()
    {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

async fn run_cycles(
    n: usize,
    changed_pct: u32,
    changed: usize,
    cycles: usize,
    dbs: &str,
    sink: &str,
    rps: Option<f64>,
) -> Result {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bench.db");
    // Default concurrency; the request-rate courtesy limit is lifted unless `rps` is given.
    let mut text = format!(
        "[storage]\ndatabase = \"{}\"\n\n[aliyun]\naccess_key_id = \"{KEY_ID}\"\n\
         access_key_secret = \"{KEY_SECRET}\"\nendpoint = \"http://{dbs}\"\nmax_retries = 0\n\n\
         [[channel]]\nname = \"sink\"\ntype = \"webhook\"\nurl = \"http://{sink}/hook\"\n\
         events = [\"*\"]\n\n[dbs]\nrequests_per_second = {}\n",
        db.display(),
        rps.unwrap_or(1_000_000.0)
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[watch]]\nname = \"w{i}\"\nbackup_plan_id = \"plan{i}\"\nschedule = \"*/5 * * * *\"\n"
        ));
    }
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text).expect("write config");
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let app = App::new(config, Clock::system()).await.expect("app");
    // The daemon's own delivery task, started the way `dbswatch run` starts it.
    let delivery = DeliveryTask::start(&app, &Arc::new(Heartbeat::new()));

    // Warm-up: first polls (baselines) and their deliveries.
    app.poll_many(None).await;
    drained(&app).await;
    let warmup_peak_rss_mb = peak_rss_mb();
    let _ = reqwest::get(format!("http://{sink}/reset")).await;

    let bytes_before = db_used_bytes(&db).await;
    // Only where there are changes to split: at 0% the peak RSS is left entirely alone.
    let tables_before = if changed > 0 {
        db_bytes_by_table(&db).await
    } else {
        Default::default()
    };
    let cpu_before = cpu_seconds();
    let mut walls = Vec::new();
    for _ in 0..cycles {
        let t = Instant::now();
        let reports = app.poll_many(None).await;
        if changed > 0 {
            drained(&app).await;
        }
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(reports.iter().all(|r| r.error.is_none()), "a poll failed");
    }
    let cpu = cpu_seconds() - cpu_before;
    delivery.stop(std::time::Duration::from_secs(5)).await;

    let bytes_after = db_used_bytes(&db).await;
    let peak_rss_mb = peak_rss_mb();
    let tables_after = if changed > 0 {
        db_bytes_by_table(&db).await
    } else {
        Default::default()
    };
    app.store.close().await;
    let polls = n * cycles;
    let changes = changed * cycles;
    let grown = bytes_after.saturating_sub(bytes_before) as f64;

    let latencies: Vec<f64> = reqwest::get(format!("http://{sink}/latencies"))
        .await
        .expect("sink answers")
        .json()
        .await
        .unwrap_or_default();
    let deliveries = latencies.len();
    let mut sorted = latencies;
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
    };
    if std::env::var_os("BENCH_KEEP_DB").is_some() {
        // For a look inside (sqlite3's dbstat): where the bytes of a change go.
        eprintln!("database kept: {}", dir.keep().join("bench.db").display());
    }
    Result {
        watches: n,
        changed_pct,
        requests_per_second: rps,
        cycles,
        polls,
        cpu_ms_per_poll: cpu * 1000.0 / polls as f64,
        cycle_wall_ms_mean: walls.iter().sum::<f64>() / walls.len() as f64,
        cycle_wall_ms_max: walls.iter().cloned().fold(0.0, f64::max),
        peak_rss_mb,
        end_rss_mb: status_mb("VmRSS:"),
        warmup_peak_rss_mb,
        db_bytes_per_unchanged_poll: (changes == 0).then(|| grown / polls as f64),
        db_bytes_per_change: (changes > 0).then(|| grown / changes as f64),
        db_bytes_per_change_by_table: (changes > 0).then(|| {
            tables_after
                .iter()
                .map(|(t, after)| {
                    let before = tables_before.get(t).copied().unwrap_or(0);
                    (t.clone(), (*after as f64 - before as f64) / changes as f64)
                })
                .filter(|(_, b)| *b != 0.0)
                .collect()
        }),
        latency_ms_p50: pct(0.5),
        latency_ms_p99: pct(0.99),
        deliveries,
    }
}

/// The peer process: DBS double with N plans and a webhook sink that records, per delivery,
/// the time from the event's observation (its `time` field) to receipt.
fn peer() {
    let n: usize = std::env::var("BENCH_WATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let changed: usize = std::env::var("BENCH_CHANGED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let a = Step::fixture("restore-completes/01.json").expect("fixture");
        let b = Step::fixture("restore-completes/02.json").expect("fixture");
        let mut scenario = Scenario::new(KEY_ID, KEY_SECRET);
        // The changing watches are spread evenly over the cycle (every (n / changed)th), as
        // real changes are, rather than bunched at its start.
        let every = n.checked_div(changed).unwrap_or(usize::MAX);
        for i in 0..n {
            let steps = if changed > 0 && i % every == 0 && i / every < changed {
                (0..cycles + 1)
                    .map(|k| if k % 2 == 0 { a.clone() } else { b.clone() })
                    .collect()
            } else {
                vec![a.clone()]
            };
            scenario = scenario.with_target(Target::BackupPlan(format!("plan{i}")), steps);
        }
        let dbs = simulate::spawn_local(scenario).await.expect("dbs double");
        let sink = start_sink();
        println!("{} {sink}", dbs.addr());
        // Run until the parent says stop or goes away.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        drop(dbs);
    });
}

/// The webhook sink, on a thread and runtime of its own: a chat service is not queued behind
/// the DBS double's requests, so neither is the sink that stands in for it.
fn start_sink() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("sink runtime");
        runtime.block_on(async move {
            let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
            let app = Router::new()
                .route("/hook", post(receive))
                .route(
                    "/reset",
                    get(|State(l): State<Arc<Mutex<Vec<f64>>>>| async move {
                        l.lock().expect("lock").clear();
                        "ok"
                    }),
                )
                .route(
                    "/latencies",
                    get(|State(l): State<Arc<Mutex<Vec<f64>>>>| async move {
                        axum::Json(l.lock().expect("lock").clone())
                    }),
                )
                .with_state(latencies);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind sink");
            tx.send(listener.local_addr().expect("sink addr"))
                .expect("peer waits for the sink");
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("the sink starts")
}

async fn receive(
    State(latencies): State<Arc<Mutex<Vec<f64>>>>,
    _headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = chrono::Utc::now();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(t) = first_time(&v)
        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(&t)
    {
        let ms = (now - t.with_timezone(&chrono::Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        latencies.lock().expect("lock").push(ms);
    }
    StatusCode::NO_CONTENT
}

/// The first event `time` in a body: the top level of one event, or inside a merged message.
fn first_time(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(map) => map
            .get("time")
            .and_then(|t| t.as_str().map(str::to_string))
            .or_else(|| map.values().find_map(first_time)),
        serde_json::Value::Array(items) => items.iter().find_map(first_time),
        _ => None,
    }
}
