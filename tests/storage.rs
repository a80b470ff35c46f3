//! Storage growth and retention on a real SQLite file.
//!
//! `cargo test --test storage -- --nocapture` prints the measured bytes per unchanged poll and
//! per change.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use dbswatch::diff::{DiffContext, diff};
use dbswatch::event::{Change, Event};
use dbswatch::snapshot::{Snapshot, Target};
use dbswatch::store::{PollOutcome, PollWrite, RetentionPolicy, Store};
use sqlx::{ConnectOptions, Connection, Row};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// The body of a fixture with a fresh RequestId, as every real answer has.
fn with_request_id(body: &str, n: u64) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut v = v;
    v["RequestId"] = serde_json::Value::String(format!("{n:08X}-3C5F-4A1B-9E2D-7F0A1B2C3D4E"));
    v.to_string()
}

fn parse(body: &str) -> Snapshot {
    dbswatch::dbs::response::interpret(dbswatch::dbs::response::Reply::new(200, body))
        .unwrap()
        .snapshot
}

/// Record one poll the way the pipeline does: diff against the stored baseline, route every
/// event to two channels.
async fn real_poll(store: &Store, target: &Target, at: i64, body: &str) -> PollOutcome {
    let snapshot = parse(body);
    let baseline = store.baseline("orders-db", target).await.unwrap();
    let events: Vec<Event> = if baseline
        .as_ref()
        .is_some_and(|b| b.content_hash == snapshot.content_hash())
    {
        Vec::new()
    } else {
        let mut next_id = || uuid::Uuid::new_v4().to_string();
        let mut ctx = DiffContext {
            watch: "orders-db",
            target,
            observed_at_ms: at,
            next_id: &mut next_id,
        };
        diff(baseline.as_ref().map(|b| &b.snapshot), &snapshot, &mut ctx)
    };
    let routed: Vec<(Event, Vec<String>)> = events
        .into_iter()
        .map(|e| (e, vec!["ops-slack".to_string(), "audit".to_string()]))
        .collect();
    let mut uid = || uuid::Uuid::new_v4().to_string();
    store
        .record_poll(PollWrite {
            watch: "orders-db",
            target,
            started_at: at - 150,
            duration_ms: 150,
            finished_at: at,
            snapshot: &snapshot,
            raw_body: body,
            request_id: Some("R"),
            expected_hash: baseline.as_ref().map(|b| b.content_hash.as_str()),
            events: &routed,
            new_uid: &mut uid,
        })
        .await
        .unwrap()
}

async fn count(store_path: &Path, table: &str) -> i64 {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(store_path)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get("n");
    conn.close().await.unwrap();
    n
}

#[tokio::test]
async fn ten_thousand_unchanged_polls_add_no_rows_and_no_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("growth.db");
    let store = Store::open(&path).await.unwrap();
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let bodies = [
        fixture("precheck-fails/02.json"),
        fixture("precheck-fails/04.json"),
    ];
    let mut at = 1_764_720_000_000i64;
    let mut n = 0u64;
    assert_eq!(
        real_poll(&store, &target, at, &with_request_id(&bodies[0], n)).await,
        PollOutcome::First
    );
    // The first unchanged poll opens the run row; every later one only updates it.
    at += 30_000;
    n += 1;
    real_poll(&store, &target, at, &with_request_id(&bodies[0], n)).await;
    let before = store.database_bytes().await.unwrap();
    let snapshots_before = store.snapshot_count("orders-db").await.unwrap();
    for _ in 0..10_000 {
        at += 30_000;
        n += 1;
        let outcome = real_poll(&store, &target, at, &with_request_id(&bodies[0], n)).await;
        assert_eq!(outcome, PollOutcome::Unchanged);
    }
    let after = store.database_bytes().await.unwrap();
    assert_eq!(
        store.snapshot_count("orders-db").await.unwrap(),
        snapshots_before,
        "no snapshot rows"
    );
    let records = store.poll_records("orders-db").await.unwrap();
    assert_eq!(records.len(), 2, "first + one run row: {records:?}");
    assert_eq!(records[1].count, 10_001, "every poll is counted");
    assert_eq!(records[1].last_at, at - 150);
    let growth = after - before;
    assert!(
        growth <= 4096,
        "10,000 unchanged polls grew the file by {growth} bytes"
    );

    // Changes: alternate between two answers; each change stores a snapshot (with the raw
    // body), its events, two deliveries per event and a poll row.
    let changes = 200u64;
    let events_before = count(&path, "events").await;
    let before_changes = store.database_bytes().await.unwrap();
    for i in 0..changes {
        at += 30_000;
        n += 1;
        let body = &bodies[((i + 1) % 2) as usize];
        let outcome = real_poll(&store, &target, at, &with_request_id(body, n)).await;
        assert_eq!(outcome, PollOutcome::Changed);
    }
    let per_change = (store.database_bytes().await.unwrap() - before_changes) / changes as i64;
    let events_per_change = (count(&path, "events").await - events_before) as f64 / changes as f64;
    println!(
        "storage: 10,000 unchanged polls grew the file by {growth} bytes ({:.3} bytes/poll); \
         one change (snapshot of a {}-byte answer, {events_per_change:.1} events, 2 deliveries \
         each, 1 poll row) costs {per_change} bytes",
        growth as f64 / 10_000.0,
        bodies[1].len(),
    );
    assert!(per_change < 16_384, "{per_change} bytes per change");
    store.close().await;
}

/// Rows and a baseline from long ago, a recent run, and an idle watch whose only state is old.
async fn aged_store(path: &Path, now: i64) -> Store {
    let store = Store::open(path).await.unwrap();
    let o = orders();
    let old = now - 200 * DAY;
    poll(
        &store,
        "orders-db",
        &o,
        old,
        "a",
        vec![event(
            "old1",
            "orders-db",
            &o,
            Change::Started,
            old,
            "running",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    poll(
        &store,
        "orders-db",
        &o,
        old + MINUTE,
        "b",
        vec![event(
            "old2",
            "orders-db",
            &o,
            Change::Failed,
            old + MINUTE,
            "failed",
            vec![item("CHECK_B", "failed")],
        )],
        &["ops-slack"],
    )
    .await;
    // 1,200 failed polls back then: more than two batches.
    for i in 0..1_200 {
        store
            .record_poll_error("orders-db", old + 2 * MINUTE + i, 10, None, "HTTP 502")
            .await
            .unwrap();
    }
    let recent = now - 10 * DAY;
    poll(
        &store,
        "orders-db",
        &o,
        recent,
        "c",
        vec![event(
            "new1",
            "orders-db",
            &o,
            Change::Started,
            recent,
            "running",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    poll(
        &store,
        "orders-db",
        &o,
        recent + MINUTE,
        "d",
        vec![event(
            "new2",
            "orders-db",
            &o,
            Change::Passed,
            recent + MINUTE,
            "finish",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    let b = billing();
    poll(
        &store,
        "billing-db",
        &b,
        now - 300 * DAY,
        "z",
        vec![event(
            "idle1",
            "billing-db",
            &b,
            Change::Passed,
            now - 300 * DAY,
            "finish",
            vec![],
        )],
        &[],
    )
    .await;
    store
}

#[tokio::test]
async fn retention_prunes_raw_history_but_never_meaning() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("aged.db");
    let now = chrono::Utc::now().timestamp_millis();
    let store = aged_store(&path, now).await;
    // Deliveries of the old events went out long ago.
    for d in store.due_deliveries(i64::MAX, 100).await.unwrap() {
        store
            .record_attempt(
                d.id,
                &dbswatch::store::AttemptWrite {
                    attempted_at: d.event.observed_at_ms,
                    duration_ms: 5,
                    outcome: "delivered".into(),
                    http_status: Some(200),
                    vendor_code: None,
                    error: None,
                },
                &dbswatch::store::DeliveryState::Delivered,
            )
            .await
            .unwrap();
    }
    let billing_baseline = store
        .baseline("billing-db", &billing())
        .await
        .unwrap()
        .unwrap();
    let orders_baseline = store
        .baseline("orders-db", &orders())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.snapshot_count("orders-db").await.unwrap(), 4);

    let policy = RetentionPolicy {
        retention: Some(Duration::from_secs(180 * 86_400)),
        event_retention: None,
    };
    let report = store.prune(&policy, now).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(
        report.polls,
        1_202 + 1,
        "the old polls of both watches: {report:?}"
    );
    assert_eq!(
        report.snapshots, 2,
        "orders-db's two old answers: {report:?}"
    );
    assert_eq!(report.events, 0, "events are kept");
    assert!(report.vacuumed_pages > 0, "{report:?}");
    assert_eq!(store.snapshot_count("orders-db").await.unwrap(), 2);
    assert_eq!(
        store.snapshot_count("billing-db").await.unwrap(),
        1,
        "an old baseline is kept"
    );
    assert!(
        store.prune(&policy, now).await.unwrap()
            == dbswatch::store::PruneReport {
                complete: true,
                ..Default::default()
            }
    );

    // Nothing changes meaning: the same answers are still "unchanged", no event is re-made.
    let again = poll_snapshot(
        &store,
        "billing-db",
        &billing(),
        now,
        &billing_baseline.snapshot,
        vec![],
        &[],
    )
    .await;
    assert_eq!(again, PollOutcome::Unchanged);
    let again = poll_snapshot(
        &store,
        "orders-db",
        &orders(),
        now,
        &orders_baseline.snapshot,
        vec![],
        &[],
    )
    .await;
    assert_eq!(again, PollOutcome::Unchanged);
    let history = store.history(&Default::default()).await.unwrap();
    assert_eq!(history.len(), 5, "every event is still there");
    assert!(store.verify_chain(now).await.unwrap().verdict.ok());

    // Events older than `event_retention` go, with their deliveries; the chain is anchored.
    let policy = RetentionPolicy {
        retention: Some(Duration::from_secs(180 * 86_400)),
        event_retention: Some(Duration::from_secs(190 * 86_400)),
    };
    let report = store.prune(&policy, now).await.unwrap();
    assert_eq!(
        report.events, 2,
        "old1 and old2; idle1 is later in the chain: {report:?}"
    );
    assert_eq!(report.deliveries, 2);
    let verdict = store.verify_chain(now).await.unwrap();
    assert!(verdict.verdict.ok(), "{verdict:?}");
    assert_ne!(verdict.anchor_hash, dbswatch::audit::chain::GENESIS);
    let uids: Vec<String> = store
        .history(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(uids, ["new2", "new1", "idle1"]);
    store.close().await;

    // Deleting the first remaining event by hand is still caught after the anchor.
    sqlite3(
        &path,
        "DELETE FROM deliveries WHERE event_id = 3; DELETE FROM events WHERE id = 3;",
    )
    .await;
    let store = Store::open(&path).await.unwrap();
    let verdict = store.verify_chain(now).await.unwrap().verdict;
    assert_eq!(verdict.problems.len(), 1, "{verdict:?}");
    assert_eq!(
        verdict.problems[0].kind,
        dbswatch::audit::chain::ProblemKind::Deleted
    );
    store.close().await;
}

#[tokio::test]
async fn event_retention_stops_at_an_event_still_waiting_to_be_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pending.db");
    let now = chrono::Utc::now().timestamp_millis();
    let store = aged_store(&path, now).await;
    // Nothing was delivered: the oldest event's message is still pending.
    let policy = RetentionPolicy {
        retention: None,
        event_retention: Some(Duration::from_secs(190 * 86_400)),
    };
    let report = store.prune(&policy, now).await.unwrap();
    assert_eq!(report.events, 0, "{report:?}");
    assert_eq!(store.history(&Default::default()).await.unwrap().len(), 5);
    store.close().await;
}

#[tokio::test]
async fn a_file_without_auto_vacuum_is_converted_once_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("old.db");
    Store::open(&path).await.unwrap().close().await;
    let mode = |path: std::path::PathBuf, set_none: bool| async move {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        if set_none {
            sqlx::query("PRAGMA auto_vacuum = NONE")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("VACUUM").execute(&mut conn).await.unwrap();
        }
        let m: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        m
    };
    assert_eq!(
        mode(path.clone(), false).await,
        2,
        "new files start incremental"
    );
    assert_eq!(mode(path.clone(), true).await, 0, "an old-style file");
    Store::open(&path).await.unwrap().close().await;
    assert_eq!(mode(path.clone(), false).await, 2, "converted at open");
}

/// The `precheck-fails` fixtures named, in order, each with its own RequestId (1, 2, ...).
fn precheck_bodies(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .zip(1..)
        .map(|(f, i)| with_request_id(&fixture(&format!("precheck-fails/{f}.json")), i))
        .collect()
}

/// The snapshot rows of `orders-db` as stored: (id, typeof content, typeof raw_body,
/// delta_base, stored bytes).
async fn stored_forms(path: &Path) -> Vec<(i64, String, String, Option<i64>, i64)> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT id, typeof(content) AS c, typeof(raw_body) AS r, delta_base, \
         length(CAST(content AS BLOB)) + length(CAST(raw_body AS BLOB)) AS n \
         FROM snapshots WHERE watch = 'orders-db' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get("id"),
            r.get("c"),
            r.get("r"),
            r.get("delta_base"),
            r.get("n"),
        )
    })
    .collect();
    conn.close().await.unwrap();
    rows
}

#[tokio::test]
async fn older_snapshots_are_stored_as_differences_and_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("deltas.db");
    let store = Store::open(&path).await.unwrap();
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let start = 1_764_720_000_000i64;
    // A pre-check that fails, then runs again: four distinct answers.
    let bodies = precheck_bodies(&["01", "02", "04", "01"]);
    for (i, body) in bodies.iter().enumerate() {
        real_poll(&store, &target, start + i as i64 * DAY, body).await;
    }

    // The newest is whole; each older one is a difference from the one that replaced it.
    let forms = stored_forms(&path).await;
    println!("stored forms (id, content, raw_body, delta_base, bytes): {forms:?}");
    assert_eq!(forms.len(), 4);
    for pair in forms.windows(2) {
        let (older, newer) = (&pair[0], &pair[1]);
        assert_eq!(
            (older.1.as_str(), older.2.as_str()),
            ("blob", "blob"),
            "{forms:?}"
        );
        assert_eq!(older.3, Some(newer.0), "{forms:?}");
    }
    let newest = forms.last().unwrap();
    assert_eq!(
        (newest.1.as_str(), newest.2.as_str(), newest.3),
        ("text", "text", None)
    );
    // Both texts of an older row weigh about what changed: a fraction of the answer for a
    // progress step (01 -> 02 -> 04 are steps; 04 -> 01 rewrites every item and its error).
    for (i, (form, body)) in forms.iter().zip(&bodies).take(3).enumerate() {
        let share = if i < 2 { 4 } else { 1 };
        assert!(
            form.4 * share < body.len() as i64,
            "a difference of {} bytes for a {}-byte answer",
            form.4,
            body.len()
        );
    }

    // Every reader gets the exact texts back: the listing, a limited listing, one by id.
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed.len(), 4);
    for (row, body) in listed.iter().rev().zip(&bodies) {
        assert_eq!(&row.raw_body, body, "the exact response body");
        assert_eq!(row.snapshot, parse(body));
        assert_eq!(row.content_hash, parse(body).content_hash());
    }
    let two = store.snapshots("orders-db", 2).await.unwrap();
    assert_eq!(
        two.iter().map(|r| r.id).collect::<Vec<_>>(),
        [forms[3].0, forms[2].0]
    );
    assert_eq!(two[1].raw_body, bodies[2]);
    for (form, body) in forms.iter().zip(&bodies) {
        assert_eq!(
            store.snapshot_content(form.0).await.unwrap(),
            Some(parse(body)),
            "snapshot {}",
            form.0
        );
    }

    // Retention deletes the oldest; the rest still read back, the chain just got shorter.
    let policy = RetentionPolicy {
        retention: Some(Duration::from_secs(DAY as u64 / 1000)),
        event_retention: None,
    };
    let now = start + 2 * DAY + DAY / 2;
    let report = store.prune(&policy, now).await.unwrap();
    assert_eq!(report.snapshots, 2, "{report:?}");
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].raw_body, bodies[2]);
    assert_eq!(
        store.snapshot_content(forms[2].0).await.unwrap(),
        Some(parse(&bodies[2]))
    );
    assert_eq!(store.snapshot_content(forms[0].0).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn retention_keeps_a_snapshot_an_older_kept_one_is_stored_against() {
    // A clock that went back: the older answer was last seen after its successor, so the
    // successor is older by `last_seen_at` though the older answer is stored against it.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("skew.db");
    let store = Store::open(&path).await.unwrap();
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let start = 1_764_720_000_000i64;
    let bodies = precheck_bodies(&["01", "02", "04"]);
    real_poll(&store, &target, start + 10 * DAY, &bodies[0]).await;
    real_poll(&store, &target, start, &bodies[1]).await;
    real_poll(&store, &target, start + 20 * DAY, &bodies[2]).await;
    let forms = stored_forms(&path).await;
    assert_eq!(forms[0].3, Some(forms[1].0), "{forms:?}");

    // Cutoff between: the second answer is old, the first is not and needs the second.
    let policy = RetentionPolicy {
        retention: Some(Duration::from_secs(DAY as u64 / 1000)),
        event_retention: None,
    };
    let report = store.prune(&policy, start + 5 * DAY).await.unwrap();
    assert_eq!(report.snapshots, 0, "{report:?}");
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].raw_body, bodies[0]);

    // Once the first is old too, both go in one pass.
    let report = store.prune(&policy, start + 15 * DAY).await.unwrap();
    assert_eq!(report.snapshots, 2, "{report:?}");
    assert_eq!(store.snapshots("orders-db", 10).await.unwrap().len(), 1);
    store.close().await;
}

/// Record one answer for `watch` against `target`, diffing against its baseline.
async fn poll_body(store: &Store, watch: &str, target: &Target, at: i64, body: &str) {
    let snapshot = parse(body);
    let baseline = store.baseline(watch, target).await.unwrap();
    let mut uid = || uuid::Uuid::new_v4().to_string();
    store
        .record_poll(PollWrite {
            watch,
            target,
            started_at: at - 100,
            duration_ms: 100,
            finished_at: at,
            snapshot: &snapshot,
            raw_body: body,
            request_id: Some("R"),
            expected_hash: baseline.as_ref().map(|b| b.content_hash.as_str()),
            events: &[],
            new_uid: &mut uid,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_watch_moved_to_another_plan_keeps_its_old_answer_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("moved.db");
    let store = Store::open(&path).await.unwrap();
    let first = with_request_id(&fixture("precheck-fails/02.json"), 1);
    let second = with_request_id(&fixture("restore-completes/01.json"), 2);
    let at = 1_764_720_000_000i64;
    poll_body(
        &store,
        "orders-db",
        &Target::BackupPlan("a".into()),
        at,
        &first,
    )
    .await;
    poll_body(
        &store,
        "orders-db",
        &Target::BackupPlan("b".into()),
        at + 1,
        &second,
    )
    .await;
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].raw_body, second);
    assert_eq!(listed[1].raw_body, first, "the old plan's last answer");
    assert_eq!(listed[1].snapshot, parse(&first));
    store.close().await;
}

#[tokio::test]
async fn a_snapshot_stored_whole_by_an_older_version_becomes_a_difference_at_the_next_change() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("legacy.db");
    let store = Store::open(&path).await.unwrap();
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let bodies = precheck_bodies(&["01", "02"]);
    let at = 1_764_720_000_000i64;
    poll_body(&store, "orders-db", &target, at, &bodies[0]).await;
    // What a database written before migration 6 holds: the texts in the snapshot row, no
    // `current_bodies` row.
    sqlite3(
        &path,
        "UPDATE snapshots SET content = (SELECT content FROM watch_state), \
         raw_body = (SELECT raw_body FROM current_bodies); DELETE FROM current_bodies;",
    )
    .await;
    assert_eq!(
        store.snapshots("orders-db", 1).await.unwrap()[0].raw_body,
        bodies[0]
    );

    poll_body(&store, "orders-db", &target, at + 1, &bodies[1]).await;
    let forms = stored_forms(&path).await;
    assert_eq!(forms[0].1, "blob", "{forms:?}");
    assert_eq!(forms[0].3, Some(forms[1].0), "{forms:?}");
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed[0].raw_body, bodies[1]);
    assert_eq!(listed[1].raw_body, bodies[0]);
    assert_eq!(listed[1].snapshot, parse(&bodies[0]));
    store.close().await;
}

#[tokio::test]
async fn a_tampered_difference_is_reported_never_a_hang_or_a_wrong_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tampered.db");
    let store = Store::open(&path).await.unwrap();
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let at = 1_764_720_000_000i64;
    for (i, body) in precheck_bodies(&["01", "02", "04"]).iter().enumerate() {
        poll_body(&store, "orders-db", &target, at + i as i64, body).await;
    }
    let forms = stored_forms(&path).await;
    let (oldest, middle) = (forms[0].0, forms[1].0);

    // A loop in the chain: the walk ends, the row says its base is missing.
    sqlite3(
        &path,
        &format!("UPDATE snapshots SET delta_base = {middle} WHERE id = {middle}"),
    )
    .await;
    let err = store
        .snapshot_content(oldest)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("snapshot {middle}")), "{err}");
    let err = store
        .snapshot_content(middle)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a newer snapshot"), "{err}");
    // The listing shows every row; the ones that cannot be rebuilt say why.
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].unreadable, None, "the current answer reads");
    assert!(
        listed[1]
            .unreadable
            .as_deref()
            .unwrap()
            .contains("not a newer snapshot"),
        "{listed:?}"
    );
    assert!(listed[2].unreadable.is_some(), "its base cannot be read");

    // Bytes flipped inside a difference: an error, or caught by the content hash.
    sqlite3(
        &path,
        &format!(
            "UPDATE snapshots SET delta_base = {} WHERE id = {middle}",
            forms[2].0
        ),
    )
    .await;
    assert!(store.snapshot_content(oldest).await.is_ok());
    sqlite3(
        &path,
        &format!(
            "UPDATE snapshots SET content = CAST(substr(content, 1, 10) || x'00ff00ff' || \
         substr(content, 15) AS BLOB) WHERE id = {oldest}"
        ),
    )
    .await;
    let err = store
        .snapshot_content(oldest)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("id {oldest}")), "{err}");

    // A raw body has no stored hash: the delta's own check catches a changed byte.
    sqlite3(
        &path,
        &format!(
            "UPDATE snapshots SET raw_body = CAST(substr(raw_body, 1, 30) || 'X' || \
         substr(raw_body, 32) AS BLOB) WHERE id = {middle}"
        ),
    )
    .await;
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert!(listed[1].unreadable.is_some(), "{listed:?}");
    // A current answer whose body row is gone says so instead of showing nothing.
    sqlite3(&path, "DELETE FROM current_bodies").await;
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert!(
        listed[0].unreadable.as_deref().unwrap().contains("missing"),
        "{listed:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn a_file_from_before_snapshot_differences_reads_read_only_and_upgrades_when_written() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v5.db");
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let bodies = precheck_bodies(&["01", "02"]);
    let at = 1_764_720_000_000i64;
    {
        let store = Store::open(&path).await.unwrap();
        poll_body(&store, "orders-db", &target, at, &bodies[0]).await;
        store.close().await;
    }
    // Take the file back to schema 5, as an older dbswatch left it: texts whole in the row.
    sqlite3(
        &path,
        "UPDATE snapshots SET content = (SELECT content FROM watch_state), \
         raw_body = (SELECT raw_body FROM current_bodies); \
         DROP TABLE current_bodies; DROP INDEX snapshots_by_delta_base; \
         ALTER TABLE snapshots DROP COLUMN delta_base; \
         DELETE FROM _sqlx_migrations WHERE version = 20261204000006;",
    )
    .await;

    // An auditor with read access only: the old rows read as they are.
    let reader = Store::open_read_only(&path).await.unwrap();
    let listed = reader.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].raw_body, bodies[0]);
    assert_eq!(listed[0].unreadable, None);
    assert_eq!(
        reader.snapshot_content(listed[0].id).await.unwrap(),
        Some(parse(&bodies[0]))
    );
    reader.close().await;

    // The next writer applies migration 6; the old row becomes a difference at the next change.
    let store = Store::open(&path).await.unwrap();
    poll_body(&store, "orders-db", &target, at + 1, &bodies[1]).await;
    let listed = store.snapshots("orders-db", 10).await.unwrap();
    assert_eq!(listed[0].raw_body, bodies[1]);
    assert_eq!(listed[1].raw_body, bodies[0]);
    assert_eq!(stored_forms(&path).await[0].1, "blob");
    store.close().await;
}

#[tokio::test]
async fn the_wal_is_copied_into_the_file_after_a_cycle_not_inside_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wal.db");
    let wal = tmp.path().join("wal.db-wal");
    let store = Store::open(&path).await.unwrap();
    let target = Target::BackupPlan("dbsdemo0precheck".into());
    let bodies = [
        fixture("precheck-fails/02.json"),
        fixture("precheck-fails/04.json"),
    ];
    let mut at = 1_764_720_000_000i64;
    for i in 0..150u64 {
        at += 30_000;
        real_poll(
            &store,
            &target,
            at,
            &with_request_id(&bodies[(i % 2) as usize], i),
        )
        .await;
    }
    // SQLite's default would have checkpointed inside a commit at 1,000 WAL pages.
    let wal_pages = std::fs::metadata(&wal).unwrap().len() / 4096;
    assert!(wal_pages > 2_000, "the WAL holds {wal_pages} pages");
    let file_before = std::fs::metadata(&path).unwrap().len();

    store.checkpoint_in_background();
    let mut file_after = file_before;
    for _ in 0..500 {
        file_after = std::fs::metadata(&path).unwrap().len();
        if file_after > file_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        file_after > file_before,
        "the checkpoint copied the WAL into the file ({file_before} -> {file_after} bytes)"
    );
    // Everything still reads, through the file now.
    assert_eq!(store.snapshots("orders-db", 1000).await.unwrap().len(), 150);
    store.close().await;
}
