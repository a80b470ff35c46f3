//! The audit commands as a user runs them, on a seeded database: every `history` filter and
//! format, `timeline`, `snapshots`, `stats`, and `verify` catching rows changed, inserted and
//! deleted with the sqlite3 CLI.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use dbswatch::store::Store;
use serde_json::Value;

fn dbswatch(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbswatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("DBSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Seeded {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    db: std::path::PathBuf,
    now: i64,
}

async fn seeded() -> Seeded {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_config(&dir, "");
    let db = dir.join("audit.db");
    let store = Store::open(&db).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    seed_scenario(&store, now).await;
    store.close().await;
    Seeded {
        _tmp: tmp,
        dir,
        db,
        now,
    }
}

/// The uids `history --format json` prints for `args`, in order.
fn uids(s: &Seeded, args: &[&str]) -> Vec<String> {
    let mut all = vec!["history", "--format", "json"];
    all.extend_from_slice(args);
    stdout(&dbswatch(&all, &s.dir))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn every_history_filter_narrows_the_answer() {
    let s = seeded().await;
    let all = uids(&s, &[]);
    assert_eq!(
        all,
        [
            "d3", "d2", "d1", "o5", "o4", "b3", "b2", "b1", "o3", "o2", "o1"
        ],
        "newest first"
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--watch", "orders-db"],
            vec!["o5", "o4", "o3", "o2", "o1"],
        ),
        (vec!["--plan", "dbsplan02"], vec!["b3", "b2", "b1"]),
        (vec!["--task", "dbstask01"], vec!["d3", "d2", "d1"]),
        (vec!["--kind", "precheck.failed"], vec!["b3", "o3"]),
        (
            vec!["--kind", "*.failed", "--kind", "restore.completed"],
            vec!["d3", "b3", "o3"],
        ),
        (vec!["--kind", "restore.*"], vec!["d3", "d2", "d1"]),
        (
            vec!["--kind", "*.started,*.passed"],
            vec!["d1", "o5", "o4", "b1", "o1"],
        ),
        (vec!["--since", "7d"], vec!["d3", "d2", "d1", "o5", "o4"]),
        (
            vec!["--since", "15d", "--until", "5d"],
            vec!["b3", "b2", "b1"],
        ),
        (vec!["--until", "15d"], vec!["o3", "o2", "o1"]),
        (vec!["--limit", "2"], vec!["d3", "d2"]),
        (
            vec![
                "--watch",
                "orders-db",
                "--kind",
                "precheck.started",
                "--since",
                "30d",
                "--until",
                "1d",
            ],
            vec!["o4", "o1"],
        ),
        (
            vec!["--plan", "dbsplan01", "--kind", "precheck.passed"],
            vec!["o5"],
        ),
        (vec!["--watch", "nobody"], vec![]),
    ];
    for (args, expected) in cases {
        assert_eq!(uids(&s, &args), expected, "history {}", args.join(" "));
    }
    // RFC 3339 bounds, with an offset, and a local date in the configured zone.
    let since = chrono::DateTime::from_timestamp_millis(s.now - 4 * DAY)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .to_rfc3339();
    assert_eq!(
        uids(&s, &["--since", &since]),
        ["d3", "d2", "d1", "o5", "o4"]
    );
    let tomorrow = chrono::DateTime::from_timestamp_millis(s.now + DAY)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(uids(&s, &["--until", &tomorrow]).len(), 11);
}

#[tokio::test]
async fn history_rejects_filters_that_cannot_match_in_plain_words() {
    let s = seeded().await;
    for (args, says) in [
        (
            vec!["history", "--kind", "precheck.exploded"],
            "matches no event kind",
        ),
        (vec!["history", "--since", "last week"], "is not a time"),
        (
            vec!["history", "--since", "1d", "--until", "2d"],
            "before until",
        ),
    ] {
        let out = dbswatch(&args, &s.dir);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = dbswatch(&["history", "--plan", "a", "--task", "b"], &s.dir);
    assert_eq!(out.status.code(), Some(2), "clap refuses both");
}

#[tokio::test]
async fn history_formats_keep_the_contract_and_show_the_zone() {
    let s = seeded().await;
    // Table: the documented columns, the zone in the header, times with their offset.
    let table = stdout(&dbswatch(&["history", "--watch", "billing-db"], &s.dir));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in [
        "TIME (Asia/Shanghai)",
        "WATCH",
        "EVENT",
        "TARGET",
        "NOTIFIED",
        "DETAIL",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let failed = lines.next().unwrap();
    assert!(
        failed.contains("+08:00  billing-db  precheck.failed"),
        "{failed}"
    );
    assert!(failed.contains("ops-slack:dead(1)"), "{failed}");
    assert!(failed.contains("CHECK_B failed: CHECK_B broke"), "{failed}");

    // JSON: one object per line, every field of the contract, plus the new ones.
    let json = stdout(&dbswatch(
        &["history", "--watch", "orders-db", "--format", "json"],
        &s.dir,
    ));
    assert_eq!(json.lines().count(), 5);
    let v: Value = serde_json::from_str(json.lines().nth(2).unwrap()).unwrap();
    for key in [
        "id",
        "time",
        "watch",
        "kind",
        "target",
        "status",
        "detail",
        "items",
        "deliveries",
        "seq",
        "time_ms",
        "hash",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["kind"], "precheck.failed");
    assert!(v["time"].as_str().unwrap().ends_with("+08:00"), "{v}");
    assert_eq!(v["deliveries"][0]["status"], "delivered");
    assert!(
        v["deliveries"][0]["delivered_at"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);

    // CSV: a header, one row per event, quoting where needed.
    let csv = stdout(&dbswatch(
        &["history", "--kind", "*.failed", "--format", "csv"],
        &s.dir,
    ));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "time,watch,kind,target_type,target_id,status,notified,detail,id"
    );
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(
        rows[1].contains(",billing-db,precheck.failed,backup_plan,dbsplan02,failed,"),
        "{csv}"
    );
    assert!(rows[1].contains(r#"<&> ""q"""#), "quotes doubled: {csv}");
    assert!(rows[1].ends_with(",b3"), "{csv}");

    // The original contract still works: history --watch NAME --format json|table.
    let out = dbswatch(
        &["history", "--watch", "drill", "--format", "table"],
        &s.dir,
    );
    assert!(stdout(&out).contains("restore.completed"));
}

#[tokio::test]
async fn timeline_snapshots_and_stats_answer_the_audit_questions() {
    let s = seeded().await;
    let t = stdout(&dbswatch(&["timeline", "drill"], &s.dir));
    assert!(
        t.starts_with("drill — restore task dbstask01 — run 1 (latest) of 1"),
        "{t}"
    );
    assert!(t.contains("total    1h 30m 0s"), "{t}");
    assert!(t.contains("running    1h 30m 0s"), "{t}");
    assert!(t.contains("finish"), "{t}");

    let json = stdout(&dbswatch(
        &["timeline", "orders-db", "--run", "2", "--format", "json"],
        &s.dir,
    ));
    let v: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["run"], 2);
    assert_eq!(v["runs"], 2);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["total_ms"], 5 * MINUTE);
    let items = v["items"].as_array().unwrap();
    let check_a = items.iter().find(|i| i["code"] == "CHECK_A").unwrap();
    let states: Vec<&str> = check_a["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "finish"], "{v}");
    assert_eq!(check_a["states"][0]["duration_ms"], MINUTE);
    let check_b = items.iter().find(|i| i["code"] == "CHECK_B").unwrap();
    assert!(check_b["error"].as_str().unwrap().contains("CHECK_B broke"));

    let out = dbswatch(&["timeline", "orders-db", "--run", "3"], &s.dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 3"));

    let snaps = stdout(&dbswatch(&["snapshots", "drill", "--raw"], &s.dir));
    assert!(
        snaps.starts_with("ID  FIRST SEEN (Asia/Shanghai)"),
        "{snaps}"
    );
    assert_eq!(
        snaps.matches("--- raw response of snapshot").count(),
        3,
        "{snaps}"
    );
    assert!(
        snaps.contains("\"RequestId\":\"R-"),
        "the exact body: {snaps}"
    );
    let snaps = stdout(&dbswatch(
        &["snapshots", "drill", "--format", "json", "--limit", "1"],
        &s.dir,
    ));
    let v: Value = serde_json::from_str(snaps.trim()).unwrap();
    assert_eq!(v["snapshot"]["status"], "finish");
    assert!(v.get("raw_body").is_none(), "raw only on --raw");

    let stats = stdout(&dbswatch(&["stats"], &s.dir));
    let line = |w: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{w} in {stats}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("orders-db"),
        "orders-db dbsplan01 2 1 1 4m 30s 5m 0s CHECK_B (1)"
    );
    assert_eq!(
        line("billing-db"),
        "billing-db dbsplan02 1 1 0 10m 0s 10m 0s CHECK_B (1), CHECK_C (1)"
    );
    assert_eq!(line("drill"), "drill dbstask01 1 0 1 1h 30m 0s 1h 30m 0s -");
    let json = stdout(&dbswatch(
        &["stats", "--watch", "orders-db", "--format", "json"],
        &s.dir,
    ));
    let v: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["p95_duration_ms"], 5 * MINUTE);
    assert_eq!(v["top_failing_checks"][0]["check"], "CHECK_B");
    let since = stdout(&dbswatch(
        &["stats", "--since", "7d", "--format", "csv"],
        &s.dir,
    ));
    assert!(
        since.contains("\r\norders-db,backup_plan,dbsplan01,1,0,1,240000,240000,\r\n"),
        "{since}"
    );
}

/// Copy the seeded database (main file only: it was closed cleanly).
fn copy_db(s: &Seeded, name: &str) -> std::path::PathBuf {
    let dir = s.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&s.db, dir.join("audit.db")).unwrap();
    write_config(&dir, "");
    dir
}

fn verify(dir: &Path) -> (Option<i32>, String) {
    let out = dbswatch(&["verify"], dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn verify_catches_rows_changed_inserted_and_deleted_with_the_sqlite3_cli() {
    let s = seeded().await;
    let (code, out) = verify(&s.dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("chain intact: 11 events verified"), "{out}");

    // UPDATE: someone softens a failure into a pass.
    let dir = copy_db(&s, "update");
    let how = sqlite3(
        &dir.join("audit.db"),
        "UPDATE events SET status = 'finish', kind = 'precheck.passed' WHERE uid = 'b3';",
    )
    .await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("CHAIN BROKEN: 1 problem in 11 events"),
        "({how}) {out}"
    );
    assert!(out.contains("first: event 8 was CHANGED"), "{out}");

    // INSERT: a delivery confirmation that never happened, as a new event.
    let dir = copy_db(&s, "insert");
    sqlite3(
        &dir.join("audit.db"),
        "INSERT INTO events (uid, watch, kind, target_type, target_id, status, observed_at, \
         payload) SELECT 'forged', watch, 'precheck.passed', target_type, target_id, 'finish', \
         observed_at + 1, payload FROM events WHERE uid = 'o3';",
    )
    .await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("first: event 12 was INSERTED"), "{out}");

    // INSERT with a copied hash in the middle of the chain (an id gap made by hand).
    let dir = copy_db(&s, "insert-middle");
    sqlite3(
        &dir.join("audit.db"),
        "UPDATE events SET id = id + 100 WHERE id > 5; \
         INSERT INTO events (id, uid, watch, kind, target_type, target_id, status, observed_at, \
         payload, prev_hash, hash) SELECT 6, 'forged', watch, kind, target_type, target_id, \
         status, observed_at, payload, prev_hash, hash FROM events WHERE id = 5; \
         UPDATE chain_state SET head_id = head_id + 100;",
    )
    .await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("first: event 6 was INSERTED"), "{out}");

    // DELETE: the failure disappears.
    let dir = copy_db(&s, "delete");
    sqlite3(
        &dir.join("audit.db"),
        "DELETE FROM deliveries WHERE event_id = 3; DELETE FROM events WHERE uid = 'o3';",
    )
    .await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("first: event 4 was DELETED: events 3..3 are missing"),
        "{out}"
    );

    // DELETE of the newest event: the chain head remembers it.
    let dir = copy_db(&s, "delete-newest");
    sqlite3(
        &dir.join("audit.db"),
        "DELETE FROM deliveries WHERE event_id = 11; DELETE FROM events WHERE id = 11;",
    )
    .await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("was DELETED: the newest events are missing"),
        "{out}"
    );

    // JSON for tools.
    let out = dbswatch(&["verify", "--format", "json"], &dir);
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(v["problems"][0]["kind"], "deleted");
}

#[tokio::test]
async fn a_database_from_before_the_chain_is_chained_once_at_open() {
    let s = seeded().await;
    // Make the file look like one written before this version: no hashes, backfill pending.
    sqlite3(
        &s.db,
        "UPDATE events SET prev_hash = NULL, hash = NULL; \
         UPDATE chain_state SET head_id = NULL, head_hash = NULL, backfilled_at = NULL, \
         backfill_through = (SELECT MAX(id) FROM events);",
    )
    .await;
    let (code, out) = verify(&s.dir);
    assert_eq!(code, Some(0), "backfilled at open: {out}");
    // A row slipped in afterwards is not laundered by a later open.
    sqlite3(
        &s.db,
        "INSERT INTO events (uid, watch, kind, target_type, target_id, status, observed_at, \
         payload) SELECT 'late', watch, kind, target_type, target_id, status, observed_at, \
         payload FROM events WHERE id = 1;",
    )
    .await;
    let (code, out) = verify(&s.dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("event 12 was INSERTED"), "{out}");
}

#[tokio::test]
async fn snapshots_lists_every_row_and_names_the_one_it_cannot_read_back() {
    let s = seeded().await;
    let dir = copy_db(&s, "damaged");
    let db = dir.join("audit.db");
    // The oldest stored difference of orders-db, one byte of its raw body changed.
    sqlite3(
        &db,
        "UPDATE snapshots SET raw_body = CAST(substr(raw_body, 1, 12) || 'X' || \
         substr(raw_body, 14) AS BLOB) WHERE id = (SELECT min(id) FROM snapshots \
         WHERE watch = 'orders-db' AND typeof(raw_body) = 'blob')",
    )
    .await;
    let before = stdout(&dbswatch(&["snapshots", "drill"], &dir));
    assert!(
        !before.contains("UNREADABLE"),
        "other watches untouched: {before}"
    );
    let out = dbswatch(&["snapshots", "orders-db", "--raw"], &dir);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("UNREADABLE"), "{text}");
    assert!(text.contains("cannot be read back"), "{text}");
    assert!(
        text.contains("--- raw response of snapshot"),
        "the readable rows are still listed: {text}"
    );
    assert!(err.contains("cannot be read back"), "{err}");
}

#[tokio::test]
async fn timeline_still_shows_a_run_whose_first_answer_cannot_be_read_back() {
    let s = seeded().await;
    let dir = copy_db(&s, "damaged-seed");
    // Every stored difference of orders-db damaged: the answers before its runs included.
    sqlite3(
        &dir.join("audit.db"),
        "UPDATE snapshots SET content = CAST(substr(content, 1, 12) || 'X' || \
         substr(content, 14) AS BLOB) WHERE watch = 'orders-db' AND typeof(content) = 'blob'",
    )
    .await;
    for run in ["1", "2"] {
        let out = stdout(&dbswatch(&["timeline", "orders-db", "--run", run], &dir));
        assert!(out.contains("orders-db"), "run {run}: {out}");
    }
}
