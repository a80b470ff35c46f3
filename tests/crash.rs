//! The real binary, killed with SIGKILL while deliveries are in flight and right after DBS
//! answered a poll (so the poll is being written), restarted on the same database each time:
//! every change still reaches every receiver, and a receiver that drops repeated idempotency
//! ids (`webhook-id`, DingTalk `msgUuid`) shows each message exactly once.

#![cfg(unix)]

mod outbox_support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbswatch::pipeline::Clock;
use dbswatch::simulate::{self, Scenario};
use dbswatch::snapshot::Target;
use dbswatch::store::{HistoryFilter, OutboxFilter, Store};
use outbox_support::{Receiver, Reply};

fn start(dir: &Path, run: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("run-{run}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dbswatch"))
        .arg("run")
        .current_dir(dir)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", simulate::DEMO_ACCESS_KEY_ID)
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            simulate::DEMO_ACCESS_KEY_SECRET,
        )
        .env_remove("DBSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn signal(child: &mut Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_send_and_mid_poll_every_change_reaches_every_receiver_exactly_once() {
    let sim = simulate::spawn_local(Scenario::builtin_demo())
        .await
        .unwrap();
    let rx = Receiver::start(Clock::system()).await;
    // First the receivers take the message and answer too late (a timeout for us).
    rx.script(
        "/hook",
        vec![Reply::new(204, "").after(Duration::from_secs(3))],
    );
    rx.script(
        "/ding",
        vec![Reply::ding_ok().after(Duration::from_secs(3))],
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dbswatch.db");
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        format!(
            r#"
[storage]
database = "{db}"

[aliyun]
endpoint = "{endpoint}"
max_retries = 0

[delivery]
timeout_secs = 1
retry_base_secs = 1

[[watch]]
name = "orders-db"
backup_plan_id = "dbsdemo0precheck"
schedule = "* * * * * *"

[[watch]]
name = "orders-restore"
restore_task_id = "dbsdemo0restore"
schedule = "* * * * * *"

[[watch]]
name = "billing-db"
backup_plan_id = "dbsdemo0passes"
schedule = "* * * * * *"

[[channel]]
name = "audit"
type = "webhook"
url = "{rx}/hook"

[[channel]]
name = "ops-ding"
type = "dingtalk"
url = "{rx}/ding?access_token=robot-token"
events = ["*"]
"#,
            db = db.display(),
            endpoint = sim.endpoint(),
            rx = rx.url(),
        ),
    )
    .unwrap();
    let sent = |rx: &Receiver| rx.received("/hook").len() + rx.received("/ding").len();

    // 1. Killed while a message is in flight.
    let mut run = 0;
    let mut child = start(dir.path(), run);
    wait_until("a message is in flight", Duration::from_secs(5), || {
        sent(&rx) >= 1
    })
    .await;
    signal(&mut child, "-KILL");

    // 2. Killed right after DBS answered a poll, while the answer is being written; the
    //    receivers now answer within the timeout, slowly enough to be caught mid-send too.
    rx.script(
        "/hook",
        vec![Reply::new(204, "").after(Duration::from_millis(300))],
    );
    rx.script(
        "/ding",
        vec![Reply::ding_ok().after(Duration::from_millis(300))],
    );
    for _ in 0..3 {
        run += 1;
        let before = sim.requests();
        let mut child = start(dir.path(), run);
        wait_until("DBS answers a poll", Duration::from_secs(5), || {
            sim.requests() > before
        })
        .await;
        signal(&mut child, "-KILL");
    }

    // 3. A last run with healthy receivers, until every state was seen and the outbox is empty.
    rx.script("/hook", vec![Reply::new(204, "")]);
    rx.script("/ding", vec![Reply::ding_ok()]);
    run += 1;
    let mut child = start(dir.path(), run);
    let finished = |sim: &simulate::SimServer| {
        sim.served(&Target::BackupPlan("dbsdemo0precheck".into())) >= 5
            && sim.served(&Target::RestoreTask("dbsdemo0restore".into())) >= 4
            && sim.served(&Target::BackupPlan("dbsdemo0passes".into())) >= 3
    };
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        assert!(Instant::now() < deadline, "the outbox never emptied");
        if finished(&sim)
            && let Ok(store) = Store::open_read_only(&db).await
        {
            let counts = store.outbox_counts().await.unwrap();
            store.close().await;
            if counts.pending == 0 && counts.delivered > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&mut child, "-TERM");

    let store = Store::open(&db).await.unwrap();
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.dead), (0, 0));
    let history = store.history(&HistoryFilter::default()).await.unwrap();
    let kinds: Vec<(String, String)> = history
        .iter()
        .map(|e| (e.watch.clone(), e.kind.clone()))
        .collect();
    for final_state in [
        ("orders-db", "precheck.failed"),
        ("orders-restore", "restore.completed"),
        ("billing-db", "precheck.passed"),
    ] {
        let n = kinds
            .iter()
            .filter(|(w, k)| (w.as_str(), k.as_str()) == final_state)
            .count();
        assert_eq!(n, 1, "{final_state:?} announced once: {kinds:?}");
    }

    // Every event reached every channel it was routed to.
    let deliveries = store
        .list_deliveries(&OutboxFilter::default())
        .await
        .unwrap();
    for e in &history {
        let channels: HashSet<&str> = e.deliveries.iter().map(|d| d.channel.as_str()).collect();
        assert!(channels.contains("ops-ding"), "{} {}", e.watch, e.kind);
        assert!(e.deliveries.iter().all(|d| d.status == "delivered"));
    }

    // Webhook: one request per event, the same webhook-id and event id on every resend, and a
    // deduplicating receiver shows each event exactly once.
    let hooks = rx.received("/hook");
    let shown = rx.shown("/hook");
    let mut body_of: HashMap<String, String> = HashMap::new();
    for r in &hooks {
        let body_id = r.body["id"].as_str().unwrap().to_string();
        let first = body_of
            .entry(r.id.clone().unwrap())
            .or_insert_with(|| body_id.clone());
        assert_eq!(
            *first, body_id,
            "a webhook-id always carries the same event"
        );
    }
    let shown_events: Vec<String> = shown
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_string())
        .collect();
    let expected: HashSet<String> = deliveries
        .iter()
        .filter(|d| d.channel == "audit")
        .map(|d| d.event_id.clone())
        .collect();
    assert_eq!(shown_events.len(), expected.len(), "each event shown once");
    assert_eq!(shown_events.into_iter().collect::<HashSet<_>>(), expected);
    assert!(
        hooks.len() > shown.len(),
        "the kills forced resends ({} requests, {} shown)",
        hooks.len(),
        shown.len()
    );

    // DingTalk: every change went out in a message the robot saw under the id it is recorded
    // with, and no message the robot saw was later sent again under another id.
    let ding_ids: HashSet<String> = rx
        .received("/ding")
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    let recorded: HashSet<String> = deliveries
        .iter()
        .filter(|d| d.channel == "ops-ding")
        .map(|d| d.message_id.clone().unwrap())
        .collect();
    assert_eq!(ding_ids, recorded);
    assert_eq!(rx.shown("/ding").len(), recorded.len());
    for text in rx.received("/ding").iter().map(|r| r.text.clone()) {
        assert!(!text.contains("robot-token"), "{text}");
    }
}
