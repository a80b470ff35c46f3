//! Whole-pipeline benchmark: `cargo bench --bench pipeline [-- --watches 100,1000,10000]`.
//!
//! The DBS double and the webhook sink run in a *separate process* (this binary re-executed in
//! the "peer" role), so the CPU time measured here is dbswatch's alone: signing, HTTP, parsing,
//! normalising, diffing, recording and delivering. For each N it runs one warm-up cycle (every
//! watch's first poll) and then measured cycles with 0% and then 1% of responses changing,
//! and reports CPU per poll, cycle wall time, peak RSS, database bytes per unchanged poll and
//! per change, and detection-to-delivery latency. Figures go to stdout as a table and to
//! `target/bench/pipeline.json`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use dbswatch::config;
use dbswatch::pipeline::{App, Clock};
use dbswatch::simulate::{self, Scenario, Step};
use dbswatch::snapshot::Target;

const KEY_ID: &str = "bench-key-id";
const KEY_SECRET: &str = "bench-key-secret";

fn main() {
    if std::env::var("DBSWATCH_BENCH_ROLE").as_deref() == Ok("peer") {
        peer();
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--watches")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    let mut results = Vec::new();
    for n in sizes {
        for changed_pct in [0u32, 1] {
            let r = measure(n, changed_pct);
            print_row(&r);
            results.push(r);
        }
    }
    let json = serde_json::to_string_pretty(&results).expect("results serialise");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(dir.join("pipeline.json"), &json).expect("write results");
    println!("\nwritten: target/bench/pipeline.json");
}

#[derive(serde::Serialize)]
struct Result {
    watches: usize,
    changed_pct: u32,
    cycles: usize,
    polls: usize,
    cpu_ms_per_poll: f64,
    cycle_wall_ms_mean: f64,
    cycle_wall_ms_max: f64,
    peak_rss_mb: f64,
    db_bytes_per_unchanged_poll: Option<f64>,
    db_bytes_per_change: Option<f64>,
    latency_ms_p50: Option<f64>,
    latency_ms_p99: Option<f64>,
    deliveries: usize,
}

fn print_row(r: &Result) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    if r.watches > 0 && r.changed_pct == 0 && r.cycles > 0 {
        println!(
            "\n{:>7} {:>4} {:>6} {:>9} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>8}",
            "watches",
            "chg%",
            "cycles",
            "cpu/poll",
            "cycle ms",
            "max ms",
            "rss MB",
            "B/unchg",
            "B/change",
            "p50 ms",
            "p99 ms"
        );
    }
    println!(
        "{:>7} {:>4} {:>6} {:>9.3} {:>10.1} {:>10.1} {:>8.1} {:>10} {:>10} {:>8} {:>8}",
        r.watches,
        r.changed_pct,
        r.cycles,
        r.cpu_ms_per_poll,
        r.cycle_wall_ms_mean,
        r.cycle_wall_ms_max,
        r.peak_rss_mb,
        opt(r.db_bytes_per_unchanged_poll),
        opt(r.db_bytes_per_change),
        opt(r.latency_ms_p50),
        opt(r.latency_ms_p99),
    );
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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn db_bytes(dir: &std::path::Path) -> u64 {
    ["bench.db", "bench.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn cycles_for(n: usize) -> usize {
    match n {
        0..=100 => 100,
        101..=1_000 => 20,
        _ => 5,
    }
}

fn measure(n: usize, changed_pct: u32) -> Result {
    let cycles = cycles_for(n);
    let changed = (n * changed_pct as usize) / 100;
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env("DBSWATCH_BENCH_ROLE", "peer")
        .env("BENCH_WATCHES", n.to_string())
        .env("BENCH_CHANGED", changed.to_string())
        .env("BENCH_CYCLES", (cycles + 2).to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the peer process");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("peer stdout"))
        .read_line(&mut line)
        .expect("peer announces its ports");
    let mut ports = line.split_whitespace();
    let dbs = ports.next().expect("dbs address").to_string();
    let sink = ports.next().expect("sink address").to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run_cycles(n, changed_pct, changed, cycles, &dbs, &sink));
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.write_all(b"stop\n");
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn run_cycles(
    n: usize,
    changed_pct: u32,
    changed: usize,
    cycles: usize,
    dbs: &str,
    sink: &str,
) -> Result {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = format!(
        "[storage]\ndatabase = \"{}\"\n\n[aliyun]\naccess_key_id = \"{KEY_ID}\"\n\
         access_key_secret = \"{KEY_SECRET}\"\nendpoint = \"http://{dbs}\"\nmax_retries = 0\n\n\
         [[channel]]\nname = \"sink\"\ntype = \"webhook\"\nurl = \"http://{sink}/hook\"\n\
         events = [\"*\"]\n\n[dbs]\nrequests_per_second = 1000000\n\
         max_concurrent_requests = 64\n",
        dir.path().join("bench.db").display()
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[watch]]\nname = \"w{i}\"\nbackup_plan_id = \"plan{i}\"\nschedule = \"*/5 * * * *\"\n"
        ));
    }
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text).expect("write config");
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut app = App::new(config, Clock::system()).await.expect("app");
    app.concurrency = 64;

    // Warm-up: first polls (baselines) and their deliveries.
    app.poll_many(None).await;
    app.deliver_until_idle(1_000).await.expect("deliver");
    let _ = reqwest::get(format!("http://{sink}/reset")).await;

    let bytes_before = db_bytes(dir.path());
    let cpu_before = cpu_seconds();
    let mut walls = Vec::new();
    let mut deliveries = 0;
    for _ in 0..cycles {
        let t = Instant::now();
        let reports = app.poll_many(None).await;
        let d = app.deliver_until_idle(1_000).await.expect("deliver");
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
        deliveries += d.delivered;
        assert!(reports.iter().all(|r| r.error.is_none()), "a poll failed");
    }
    let cpu = cpu_seconds() - cpu_before;
    app.store.close().await;
    let bytes_after = db_bytes(dir.path());
    let polls = n * cycles;
    let changes = changed * cycles;
    let grown = bytes_after.saturating_sub(bytes_before) as f64;

    let latencies: Vec<f64> = reqwest::get(format!("http://{sink}/latencies"))
        .await
        .expect("sink answers")
        .json()
        .await
        .unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
    };
    Result {
        watches: n,
        changed_pct,
        cycles,
        polls,
        cpu_ms_per_poll: cpu * 1000.0 / polls as f64,
        cycle_wall_ms_mean: walls.iter().sum::<f64>() / walls.len() as f64,
        cycle_wall_ms_max: walls.iter().cloned().fold(0.0, f64::max),
        peak_rss_mb: peak_rss_mb(),
        db_bytes_per_unchanged_poll: (changes == 0).then(|| grown / polls as f64),
        db_bytes_per_change: (changes > 0).then(|| grown / changes as f64),
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
        for i in 0..n {
            let steps = if i < changed {
                (0..cycles + 1)
                    .map(|k| if k % 2 == 0 { a.clone() } else { b.clone() })
                    .collect()
            } else {
                vec![a.clone()]
            };
            scenario = scenario.with_target(Target::BackupPlan(format!("plan{i}")), steps);
        }
        let dbs = simulate::spawn_local(scenario).await.expect("dbs double");
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
        let sink = listener.local_addr().expect("sink addr");
        println!("{} {sink}", dbs.addr());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // Run until the parent says stop or goes away.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        drop(dbs);
    });
}

async fn receive(
    State(latencies): State<Arc<Mutex<Vec<f64>>>>,
    _headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = chrono::Utc::now();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(t) = v["time"].as_str()
        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
    {
        let ms = (now - t.with_timezone(&chrono::Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        latencies.lock().expect("lock").push(ms);
    }
    StatusCode::NO_CONTENT
}
