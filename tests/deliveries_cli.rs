//! `dbswatch deliveries` and `dbswatch redeliver` as a user runs them: a message Slack refused
//! is listed as dead with Slack's words and what to fix, re-queued once the channel is fixed,
//! and delivered by the next run.

mod outbox_support;

use std::path::Path;
use std::process::{Command, Output};

use dbswatch::pipeline::Clock;
use dbswatch::simulate::{self, Scenario};
use outbox_support::{Receiver, Reply};
use serde_json::Value;

fn dbswatch(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbswatch"))
        .args(args)
        .current_dir(dir)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", simulate::DEMO_ACCESS_KEY_ID)
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            simulate::DEMO_ACCESS_KEY_SECRET,
        )
        .env_remove("DBSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_message_is_listed_with_why_requeued_and_delivered() {
    let sim = simulate::spawn_local(Scenario::builtin_demo())
        .await
        .unwrap();
    let rx = Receiver::start(Clock::system()).await;
    rx.script("/slack", vec![Reply::new(400, "invalid_payload")]);
    rx.script("/hook", vec![Reply::new(204, "")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        format!(
            r#"
[aliyun]
endpoint = "{endpoint}"
max_retries = 0

[[watch]]
name = "orders-db"
backup_plan_id = "dbsdemo0precheck"
schedule = "*/5 * * * *"

[[channel]]
name = "ops-slack"
type = "slack"
url = "{rx}/slack"

[[channel]]
name = "audit"
type = "webhook"
url = "{rx}/hook"
"#,
            endpoint = sim.endpoint(),
            rx = rx.url(),
        ),
    )
    .unwrap();

    let out = dbswatch(&["deliveries"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));

    let out = dbswatch(&["poll"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("invalid_payload"), "{}", stdout(&out));

    let out = dbswatch(&["deliveries", "--status", "dead"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let table = stdout(&out);
    assert!(table.starts_with("ID  STATUS"), "{table}");
    assert!(
        table.contains("dead    ops-slack  precheck.started  orders-db  1"),
        "{table}"
    );
    assert!(
        table.contains("permanent  HTTP 400, code invalid_payload"),
        "{table}"
    );
    assert!(
        table.contains("last error: Slack refused the message"),
        "{table}"
    );
    assert!(!table.contains("audit"), "{table}");

    let out = dbswatch(
        &["deliveries", "--format", "json", "--channel", "ops-slack"],
        dir.path(),
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "dead");
    assert_eq!(rows[0]["attempts"][0]["http_status"], 400);
    let id = rows[0]["id"].as_i64().unwrap().to_string();

    // The channel is fixed; the message is re-queued and goes out on the next run.
    rx.script("/slack", vec![Reply::new(200, "ok")]);
    let out = dbswatch(&["redeliver", &id, "99999"], dir.path());
    assert_eq!(out.status.code(), Some(1), "one id was not re-queued");
    let text = stdout(&out);
    assert!(text.contains(&format!("{id}: re-queued")), "{text}");
    assert!(text.contains("99999: no such delivery"), "{text}");
    let out = dbswatch(&["redeliver", &id], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("not re-queued: it is pending"),
        "{}",
        stdout(&out)
    );

    // A new process knows Slack was sent to less than a second ago (the attempt log seeds its
    // rate limiter), so it waits instead of bursting; a second later it goes out.
    let first_send = rx.received("/slack")[0].at_ms;
    let out = dbswatch(&["poll"], dir.path());
    if chrono::Utc::now().timestamp_millis() < first_send + 1_000 {
        assert!(stdout(&out).contains("pending"), "{}", stdout(&out));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let out = dbswatch(&["poll"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = dbswatch(
        &[
            "deliveries",
            "--format",
            "json",
            "--status",
            "delivered",
            "--channel",
            "ops-slack",
        ],
        dir.path(),
    );
    let rows = json_lines(&out);
    let redelivered = rows
        .iter()
        .find(|r| r["id"].as_i64().unwrap().to_string() == id)
        .expect("the re-queued message was delivered");
    assert_eq!(redelivered["attempts"].as_array().unwrap().len(), 2);
    let out = dbswatch(&["deliveries", "--status", "dead"], dir.path());
    assert!(
        stdout(&out).contains("(no deliveries match)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(rx.received("/slack").len(), 2);
}
