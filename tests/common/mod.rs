//! Seeding helpers shared by the audit, API and storage tests: a real SQLite file written
//! through the real store, with events at known times.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;

use dbswatch::event::{Change, Event, ItemChange};
use dbswatch::snapshot::{Item, Snapshot, Target};
use dbswatch::store::{AttemptWrite, DeliveryState, PollOutcome, PollWrite, Store};

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

pub fn item(code: &str, state: &str) -> Item {
    Item {
        job_id: Some("job1".into()),
        code: Some(code.into()),
        group: Some(format!("{code}_DETAIL")),
        order: Some(match code {
            "CHECK_A" => "1".into(),
            "CHECK_B" => "2".into(),
            _ => "3".into(),
        }),
        state: Some(state.into()),
        error: matches!(state, "failed" | "catched").then(|| format!("{code} broke: <&> \"q\"")),
        boot_time: None,
        finish_time: None,
    }
}

/// An event as the diff engine would make it.
pub fn event(
    uid: &str,
    watch: &str,
    target: &Target,
    change: Change,
    at: i64,
    status: &str,
    items: Vec<Item>,
) -> Event {
    let mut e = Event {
        id: uid.to_string(),
        scope: target.scope(),
        change,
        watch: watch.to_string(),
        target: target.clone(),
        status_before: Some("running".into()),
        status: Some(status.into()),
        progress_before: None,
        progress: Some(match status {
            "running" => 50,
            _ => 100,
        }),
        items: items.clone(),
        item_change: None,
        item_total: 3,
        observed_at_ms: at,
        job_error: None,
        restore_task: None,
        poll: None,
    };
    if change == Change::ItemChanged {
        e.item_change = Some(ItemChange {
            item: items[0].clone(),
            previous_state: Some("running".into()),
        });
    }
    if change == Change::Started {
        e.status_before = None;
    }
    e
}

/// Record one successful poll with `events`, each routed to `channels`; `salt` makes the
/// snapshot differ from the previous one (so the poll counts as a change).
pub async fn poll(
    store: &Store,
    watch: &str,
    target: &Target,
    at: i64,
    salt: &str,
    events: Vec<Event>,
    channels: &[&str],
) -> PollOutcome {
    let snapshot = Snapshot::new(
        events.last().and_then(|e| e.status.clone()),
        Some(50),
        vec![item("CHECK_A", "running"), item(salt, "init")],
    );
    poll_snapshot(store, watch, target, at, &snapshot, events, channels).await
}

pub async fn poll_snapshot(
    store: &Store,
    watch: &str,
    target: &Target,
    at: i64,
    snapshot: &Snapshot,
    events: Vec<Event>,
    channels: &[&str],
) -> PollOutcome {
    let routed: Vec<(Event, Vec<String>)> = events
        .into_iter()
        .map(|e| (e, channels.iter().map(|c| c.to_string()).collect()))
        .collect();
    let mut uid = || uuid::Uuid::new_v4().to_string();
    let expected = store
        .baseline(watch, target)
        .await
        .expect("baseline readable")
        .map(|b| b.content_hash);
    let raw = format!(
        "{{\"RequestId\":\"R-{at}\",\"Success\":true,\"Status\":\"{}\"}}",
        snapshot.status.clone().unwrap_or_default()
    );
    store
        .record_poll(PollWrite {
            watch,
            target,
            started_at: at - 120,
            duration_ms: 120,
            finished_at: at,
            snapshot,
            raw_body: &raw,
            request_id: Some("R"),
            expected_hash: expected.as_deref(),
            events: &routed,
            new_uid: &mut uid,
        })
        .await
        .expect("poll recorded")
}

pub fn orders() -> Target {
    Target::BackupPlan("dbsplan01".into())
}
pub fn billing() -> Target {
    Target::BackupPlan("dbsplan02".into())
}
pub fn drill() -> Target {
    Target::RestoreTask("dbstask01".into())
}

/// The audit scenario, relative to `now`:
/// - orders-db (plan dbsplan01): a run 20 days ago that failed on CHECK_B, and one 3 days ago
///   that passed;
/// - billing-db (plan dbsplan02): a run 10 days ago that failed on CHECK_B and CHECK_C;
/// - drill (task dbstask01): a restore 2 hours ago that completed in 90 minutes.
///
/// Headline events go to `ops-slack`; every delivery of a failure to `ops-slack` is delivered,
/// the `started` ones stay pending, and billing's failure is dead.
/// Uids: o1..o5 (orders), b1..b3 (billing), d1..d3 (drill): 11 events.
pub async fn seed_scenario(store: &Store, now: i64) {
    let o = orders();
    let t0 = now - 20 * DAY;
    poll(
        store,
        "orders-db",
        &o,
        t0,
        "s1",
        vec![event(
            "o1",
            "orders-db",
            &o,
            Change::Started,
            t0,
            "running",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    poll(
        store,
        "orders-db",
        &o,
        t0 + MINUTE,
        "s2",
        vec![event(
            "o2",
            "orders-db",
            &o,
            Change::ItemChanged,
            t0 + MINUTE,
            "running",
            vec![item("CHECK_A", "finish")],
        )],
        &[],
    )
    .await;
    poll(
        store,
        "orders-db",
        &o,
        t0 + 5 * MINUTE,
        "s3",
        vec![event(
            "o3",
            "orders-db",
            &o,
            Change::Failed,
            t0 + 5 * MINUTE,
            "failed",
            vec![item("CHECK_B", "failed")],
        )],
        &["ops-slack"],
    )
    .await;
    let t1 = now - 3 * DAY;
    poll(
        store,
        "orders-db",
        &o,
        t1,
        "s4",
        vec![event(
            "o4",
            "orders-db",
            &o,
            Change::Started,
            t1,
            "running",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    poll(
        store,
        "orders-db",
        &o,
        t1 + 4 * MINUTE,
        "s5",
        vec![event(
            "o5",
            "orders-db",
            &o,
            Change::Passed,
            t1 + 4 * MINUTE,
            "finish",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;

    let b = billing();
    let t2 = now - 10 * DAY;
    poll(
        store,
        "billing-db",
        &b,
        t2,
        "s1",
        vec![event(
            "b1",
            "billing-db",
            &b,
            Change::Started,
            t2,
            "running",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    poll(
        store,
        "billing-db",
        &b,
        t2 + 10 * MINUTE,
        "s2",
        vec![
            event(
                "b2",
                "billing-db",
                &b,
                Change::ItemChanged,
                t2 + 10 * MINUTE,
                "failed",
                vec![item("CHECK_C", "catched")],
            ),
            event(
                "b3",
                "billing-db",
                &b,
                Change::Failed,
                t2 + 10 * MINUTE,
                "failed",
                vec![item("CHECK_B", "failed"), item("CHECK_C", "catched")],
            ),
        ],
        &["ops-slack"],
    )
    .await;

    let d = drill();
    let t3 = now - 2 * HOUR;
    poll(
        store,
        "drill",
        &d,
        t3,
        "s1",
        vec![event(
            "d1",
            "drill",
            &d,
            Change::Started,
            t3,
            "running",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;
    poll(
        store,
        "drill",
        &d,
        t3 + 45 * MINUTE,
        "s2",
        vec![event(
            "d2",
            "drill",
            &d,
            Change::Progress,
            t3 + 45 * MINUTE,
            "running",
            vec![],
        )],
        &[],
    )
    .await;
    poll(
        store,
        "drill",
        &d,
        t3 + 90 * MINUTE,
        "s3",
        vec![event(
            "d3",
            "drill",
            &d,
            Change::Completed,
            t3 + 90 * MINUTE,
            "finish",
            vec![],
        )],
        &["ops-slack"],
    )
    .await;

    // Who was told: failures and completions delivered, billing's failure dead.
    for d in store.due_deliveries(i64::MAX, 1000).await.unwrap() {
        let (state, outcome, error) = match (d.event.id.as_str(), d.event.change) {
            ("b3", _) => (
                DeliveryState::Dead,
                "permanent",
                Some("channel_not_found".to_string()),
            ),
            ("b2", _) => (DeliveryState::Delivered, "delivered", None),
            (_, Change::Started) => continue,
            _ => (DeliveryState::Delivered, "delivered", None),
        };
        store
            .record_attempt(
                d.id,
                &AttemptWrite {
                    attempted_at: d.event.observed_at_ms + 1_000,
                    duration_ms: 80,
                    outcome: outcome.into(),
                    http_status: Some(if error.is_some() { 404 } else { 200 }),
                    vendor_code: None,
                    error,
                },
                &state,
            )
            .await
            .unwrap();
    }
}

/// A config file for the seeded database.
pub fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("dbswatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"timezone = "Asia/Shanghai"
{extra}
[storage]
database = "{db}"

[[watch]]
name = "orders-db"
backup_plan_id = "dbsplan01"
schedule = "*/5 * * * *"

[[watch]]
name = "billing-db"
backup_plan_id = "dbsplan02"
schedule = "*/5 * * * *"

[[watch]]
name = "drill"
restore_task_id = "dbstask01"
schedule = "*/5 * * * *"

[[channel]]
name = "ops-slack"
type = "slack"
url = "https://hooks.slack.com/services/T000/B000/SLACKSECRETTOKEN"
"#,
            db = dir.join("audit.db").display()
        ),
    )
    .unwrap();
    path
}

/// Run SQL against the file the way an operator with the sqlite3 CLI would (foreign keys off,
/// a separate connection): with the `sqlite3` program when it is installed, otherwise through
/// a raw connection executing the same text.
pub async fn sqlite3(db: &Path, sql: &str) -> String {
    if let Ok(out) = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
    {
        assert!(
            out.status.success(),
            "sqlite3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return "sqlite3".into();
    }
    use sqlx::{ConnectOptions, Connection, Executor};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .foreign_keys(false)
        .connect()
        .await
        .unwrap();
    conn.execute(sqlx::AssertSqlSafe(sql.to_string()))
        .await
        .unwrap();
    conn.close().await.unwrap();
    "raw connection".into()
}
