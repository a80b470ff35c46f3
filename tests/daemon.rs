//! `dbswatch run` as a process: it polls on schedule, delivers, and stops cleanly on SIGTERM.

#![cfg(unix)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbswatch::simulate::{self, Scenario};
use dbswatch::store::{HistoryFilter, Store};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_polls_on_schedule_delivers_and_stops_cleanly_on_sigterm() {
    let sim = simulate::spawn_local(Scenario::builtin_demo())
        .await
        .unwrap();
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
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

[[watch]]
name = "orders-db"
backup_plan_id = "dbsdemo0precheck"
schedule = "* * * * * *"

[[channel]]
name = "audit"
type = "webhook"
url = "{hook}/dbs"
"#,
            db = db.display(),
            endpoint = sim.endpoint(),
            hook = hook.uri(),
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_dbswatch"))
        .arg("run")
        .current_dir(dir.path())
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", simulate::DEMO_ACCESS_KEY_ID)
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            simulate::DEMO_ACCESS_KEY_SECRET,
        )
        .env_remove("DBSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The scenario reaches its final state (failed) on the 4th poll; one poll per second.
    let target = dbswatch::snapshot::Target::BackupPlan("dbsdemo0precheck".into());
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.served(&target) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sim.served(&target) >= 5, "the daemon polls every second");
    let delivered_deadline = Instant::now() + Duration::from_secs(10);
    while hook.received_requests().await.unwrap().len() < 2 && Instant::now() < delivered_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit_deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < exit_deadline,
            "run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(exit.code(), Some(0), "{stderr}");
    assert!(stderr.contains("dbswatch stopped"), "{stderr}");
    assert!(
        !stderr.contains(simulate::DEMO_ACCESS_KEY_SECRET),
        "{stderr}"
    );

    let store = Store::open(&db).await.unwrap();
    let history = store.history(&HistoryFilter::default()).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"precheck.started"), "{kinds:?}");
    assert!(kinds.contains(&"precheck.failed"), "{kinds:?}");
    let failed = history
        .iter()
        .find(|e| e.kind == "precheck.failed")
        .unwrap();
    assert_eq!(failed.deliveries[0].status, "delivered");
    let received = hook.received_requests().await.unwrap();
    assert_eq!(received.len(), 2, "started and failed, each once");
}
