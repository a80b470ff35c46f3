//! Discovery, restore truth and job errors through the real pipeline, against the DBS double
//! (which verifies every request's signature) or wiremock with an independent signature check;
//! everything on 127.0.0.1 with an in-memory store.

mod support;

use std::path::Path;
use std::time::Duration;

use dbswatch::config;
use dbswatch::dbs::lists::{PlanQuery, RestoreQuery};
use dbswatch::dbs::{ClientOptions, Credentials, DbsClient};
use dbswatch::pipeline::{App, Clock};
use dbswatch::simulate::{Scenario, SimServer, Step, spawn_local};
use dbswatch::snapshot::Target;
use dbswatch::store::{HistoryFilter, Store};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const ID: &str = "LTAIdiscovery01";
const SECRET: &str = "discovery-secret";

fn plan(id: &str, name: &str, status: &str, db: &str) -> Value {
    json!({"BackupPlanId": id, "BackupPlanName": name, "BackupPlanStatus": status,
           "DatabaseType": db, "SourceEndpointRegion": "cn-hangzhou", "BackupMethod": "logical"})
}

fn options(endpoint: String) -> ClientOptions {
    ClientOptions {
        endpoint,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 0,
        retry_base: Duration::from_millis(5),
    }
}

/// An app on an in-memory store whose `[aliyun]` points at `endpoint`, with `extra` config.
async fn app(endpoint: &str, extra: &str) -> App {
    let text = format!(
        r#"
[aliyun]
access_key_id = "{ID}"
access_key_secret = "{SECRET}"
endpoint = "{endpoint}"
max_retries = 0

[dbs]
requests_per_second = 200

[[channel]]
name = "audit"
type = "webhook"
url = "http://127.0.0.1:9/hook"
events = ["*"]
{extra}"#
    );
    let config =
        config::parse(&text, Path::new("test.toml"), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open_in_memory().await.unwrap();
    App::with_store(config, store, Clock::system()).unwrap()
}

async fn kinds_of(app: &App, watch: &str) -> Vec<String> {
    let mut entries = app
        .store
        .history(&HistoryFilter {
            watch: Some(watch.into()),
            limit: Some(100),
        })
        .await
        .unwrap();
    entries.reverse();
    entries.into_iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn three_pages_of_plans_are_followed() {
    let plans: Vec<Value> = (1..=7)
        .map(|i| {
            plan(
                &format!("dbsplan{i:04}"),
                &format!("db-{i}"),
                "running",
                "MySQL",
            )
        })
        .collect();
    let sim = spawn_local(Scenario::new(ID, SECRET).with_backup_plan_listings(vec![plans]))
        .await
        .unwrap();
    let client = DbsClient::new(Credentials::new(ID, SECRET), options(sim.endpoint())).unwrap();
    let found = client
        .list_backup_plans(&PlanQuery {
            page_size: 3,
            ..PlanQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 7);
    assert_eq!(ids[0], "dbsplan0001");
    assert_eq!(ids[6], "dbsplan0007");
    assert_eq!(sim.calls("DescribeBackupPlanList"), 3);
    assert_eq!(sim.rejected(), 0);

    // The same against wiremock, checking each page request's parameters and signature.
    let server = MockServer::start().await;
    let all: Vec<Value> = (1..=7)
        .map(|i| plan(&format!("dbsplan{i:04}"), "x", "running", "MySQL"))
        .collect();
    let dbs = support::SignedDbs::new(&[(ID, SECRET)], move |params| {
        let page: usize = params["PageNum"].parse().unwrap();
        let size: usize = params["PageSize"].parse().unwrap();
        let items: Vec<Value> = all.iter().skip(page * size).take(size).cloned().collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "RequestId": format!("R-{page}"), "Success": true, "PageNum": page, "PageSize": size,
            "TotalElements": 7, "TotalPages": 3, "Items": {"BackupPlanDetail": items}}))
    });
    Mock::given(method("POST"))
        .respond_with(dbs.clone())
        .mount(&server)
        .await;
    let client = DbsClient::new(Credentials::new(ID, SECRET), options(server.uri())).unwrap();
    let found = client
        .list_backup_plans(&PlanQuery {
            region: Some("cn-hangzhou".into()),
            page_size: 3,
            ..PlanQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 7);
    assert_eq!(dbs.rejected(), 0);
    let seen = dbs.seen();
    let pages: Vec<&str> = seen.iter().map(|p| p["PageNum"].as_str()).collect();
    assert_eq!(pages, vec!["0", "1", "2"]);
    assert!(seen.iter().all(|p| p["Action"] == "DescribeBackupPlanList"
        && p["Region"] == "cn-hangzhou"
        && p["PageSize"] == "3"));
    // Every page had its own nonce.
    let mut nonces: Vec<&str> = seen.iter().map(|p| p["SignatureNonce"].as_str()).collect();
    nonces.dedup();
    assert_eq!(nonces.len(), 3);
}

#[tokio::test]
async fn restore_tasks_are_listed_in_a_window_and_by_id() {
    let sim = spawn_local(
        Scenario::new(ID, SECRET)
            .with_restore_task(
                "r-old",
                vec![json!({"RestoreStatus": "finish", "RestoreTaskCreateTime": 1_000})],
            )
            .with_restore_task(
                "r-new",
                vec![
                    json!({"RestoreStatus": "running", "RestoreTaskCreateTime": 5_000,
                            "FullDataRestoreProgress": 30}),
                ],
            ),
    )
    .await
    .unwrap();
    let client = DbsClient::new(Credentials::new(ID, SECRET), options(sim.endpoint())).unwrap();
    let tasks = client
        .list_restore_tasks(&RestoreQuery {
            start_ms: Some(2_000),
            end_ms: Some(10_000),
            ..RestoreQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].id, "r-new");
    let task = client.restore_task("r-old").await.unwrap().unwrap();
    assert_eq!(task.truth.status.as_deref(), Some("finish"));
    assert!(client.restore_task("r-none").await.unwrap().is_none());
    assert_eq!(sim.rejected(), 0);
}

fn precheck_steps() -> Vec<Step> {
    vec![Step::fixture("precheck-passes/02.json").unwrap()]
}

#[tokio::test]
async fn discovery_adds_watches_and_retires_vanished_ones_once() {
    let scenario = Scenario::new(ID, SECRET)
        .with_backup_plan_listings(vec![
            vec![
                plan("dbsp1", "orders-prod", "running", "MySQL"),
                plan("dbsp2", "orders-eu", "running", "MySQL"),
                plan("dbsx9", "billing", "running", "MySQL"),
                plan("dbspg", "orders-pg", "running", "PostgreSQL"),
            ],
            vec![
                plan("dbsp1", "orders-prod", "running", "MySQL"),
                plan("dbsp2", "orders-eu", "running", "MySQL"),
                plan("dbsp3", "orders-new", "running", "MySQL"),
            ],
            // dbsp2 is gone; dbsp3 is paused, so it no longer matches.
            vec![
                plan("dbsp1", "orders-prod", "running", "MySQL"),
                plan("dbsp3", "orders-new", "pause", "MySQL"),
            ],
        ])
        .with_target(Target::BackupPlan("dbsp1".into()), precheck_steps())
        .with_target(Target::BackupPlan("dbsp2".into()), precheck_steps())
        .with_target(Target::BackupPlan("dbsp3".into()), precheck_steps());
    let sim = spawn_local(scenario).await.unwrap();
    let app = app(
        &sim.endpoint(),
        r#"
[[discover]]
name = "orders"
kind = "backup_plans"
match_name = "orders-*"
status = ["running", "check_pass"]
database_type = ["mysql"]
schedule = "*/5 * * * *"
channels = ["audit"]
"#,
    )
    .await;

    let first = app.discover().await;
    assert_eq!(first.added, vec!["orders/dbsp1", "orders/dbsp2"]);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let watch = app.find_watch("orders/dbsp2").unwrap();
    assert_eq!(watch.target, Target::BackupPlan("dbsp2".into()));
    assert_eq!(watch.schedule.expr(), "*/5 * * * *");
    assert_eq!(watch.channels, vec!["audit".to_string()]);
    let reports = app.poll_many(None).await;
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");

    let second = app.discover().await;
    assert_eq!(second.added, vec!["orders/dbsp3"]);
    assert!(second.retired.is_empty());
    app.poll_many(None).await;

    let third = app.discover().await;
    assert_eq!(third.retired, vec!["orders/dbsp2", "orders/dbsp3"]);
    assert_eq!(third.watching, 1);
    assert!(app.find_watch("orders/dbsp2").is_none());
    assert_eq!(
        kinds_of(&app, "orders/dbsp2").await,
        vec!["precheck.passed", "precheck.retired"]
    );
    let history = app
        .store
        .history(&HistoryFilter {
            watch: Some("orders/dbsp2".into()),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(history[0].deliveries[0].channel, "audit");
    assert_eq!(history[0].event.status.as_deref(), Some("finish"));

    // Reported once: the next pass has nothing more to say, and only dbsp1 is polled.
    let fourth = app.discover().await;
    assert!(fourth.retired.is_empty() && fourth.added.is_empty());
    assert_eq!(kinds_of(&app, "orders/dbsp2").await.len(), 2);
    let polled: Vec<String> = app
        .poll_many(None)
        .await
        .into_iter()
        .map(|r| r.watch)
        .collect();
    assert_eq!(polled, vec!["orders/dbsp1"]);
    assert_eq!(sim.rejected(), 0);
}

#[tokio::test]
async fn a_failed_listing_keeps_the_watches_and_a_configured_watch_is_not_doubled() {
    let server = MockServer::start().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let dbs = support::SignedDbs::new(&[(ID, SECRET)], move |params| {
        if params["Action"] != "DescribeBackupPlanList" {
            return ResponseTemplate::new(200).set_body_raw(
                dbswatch::simulate::fixtures::fixture("precheck-passes/02.json").unwrap(),
                "application/json",
            );
        }
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return ResponseTemplate::new(503).set_body_json(json!({
                "RequestId": "R503", "Code": "ServiceUnavailable",
                "Message": "The request has failed due to a temporary failure of the server."}));
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "RequestId": "R", "Success": true, "TotalElements": 2,
            "Items": {"BackupPlanDetail": [plan("dbsp1", "a", "running", "MySQL"),
                                           plan("dbsmine", "b", "running", "MySQL")]}}))
    });
    Mock::given(method("POST"))
        .respond_with(dbs.clone())
        .mount(&server)
        .await;
    let app = app(
        &server.uri(),
        r#"
[[watch]]
name = "mine"
backup_plan_id = "dbsmine"
schedule = "*/5 * * * *"

[[discover]]
name = "all"
kind = "backup_plans"
schedule = "*/5 * * * *"
"#,
    )
    .await;
    let first = app.discover().await;
    assert_eq!(
        first.added,
        vec!["all/dbsp1"],
        "dbsmine has its own [[watch]]"
    );
    let second = app.discover().await;
    assert_eq!(second.errors.len(), 1);
    assert!(
        second.errors[0].contains("ServiceUnavailable"),
        "{:?}",
        second.errors
    );
    assert!(second.retired.is_empty());
    assert!(app.find_watch("all/dbsp1").is_some());
    let names: Vec<String> = app.watches().into_iter().map(|w| w.name).collect();
    assert_eq!(names, vec!["mine", "all/dbsp1"]);
    assert_eq!(dbs.rejected(), 0);
}

#[tokio::test]
async fn restore_status_transitions_are_reported_and_a_finished_restore_stops_being_polled() {
    let task = Target::RestoreTask("dbsrestore01".into());
    let phases = |before: i64, data: i64, after: i64| {
        json!({"FullStruforeRestoreProgress": before, "FullDataRestoreProgress": data,
               "FullStruAfterRestoreProgress": after, "ContinuousRestoreProgress": 0,
               "BackupPlanId": "dbsp1", "RestoreTaskName": "drill"})
    };
    let with = |status: &str, p: Value| {
        let mut v = p;
        v["RestoreStatus"] = json!(status);
        v
    };
    // The pre-check list says "finish" throughout: it is silent about the restore itself.
    let scenario = Scenario::new(ID, SECRET)
        .with_target(
            task.clone(),
            vec![Step::fixture("restore-completes/03.json").unwrap()],
        )
        .with_restore_task(
            "dbsrestore01",
            vec![
                with("running", phases(100, 20, 0)),
                with("running", phases(100, 60, 0)),
                with("pause", phases(100, 60, 0)),
                with("running", phases(100, 60, 0)),
                with("finish", phases(100, 100, 100)),
            ],
        );
    let sim = spawn_local(scenario).await.unwrap();
    let app = app(
        &sim.endpoint(),
        r#"
[[watch]]
name = "drill"
restore_task_id = "dbsrestore01"
schedule = "*/1 * * * *"
"#,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let report = app.poll_watch(&app.find_watch("drill").unwrap()).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        seen.push(
            report
                .events
                .iter()
                .map(|e| e.kind())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    assert_eq!(
        seen,
        vec![
            "restore.started",
            "restore.progress",
            "restore.paused",
            "restore.started",
            "restore.progress,restore.completed",
        ]
    );
    let history = app
        .store
        .history(&HistoryFilter {
            watch: Some("drill".into()),
            limit: Some(1),
        })
        .await
        .unwrap();
    let completed = &history[0].event;
    assert_eq!(completed.status_before.as_deref(), Some("running"));
    assert_eq!(completed.status.as_deref(), Some("finish"));
    let truth = completed.restore_task.as_ref().unwrap();
    assert_eq!(truth.phases.len(), 4);
    assert_eq!(truth.phases[1].progress, 100);

    // Finished: seen once; two more polls and it is done (stop_restore_after_polls = 3).
    assert!(!app.is_done(&app.find_watch("drill").unwrap()).await);
    for _ in 0..2 {
        assert_eq!(app.poll_many(None).await.len(), 1);
    }
    assert!(app.is_done(&app.find_watch("drill").unwrap()).await);
    assert!(app.poll_many(None).await.is_empty(), "no longer polled");
    let served = sim.calls("DescribeRestoreTaskList");
    assert_eq!(served, 7);

    // A restart (a new app on the same store) remembers it.
    let again = App::with_store((*app.config).clone(), app.store.clone(), Clock::system()).unwrap();
    assert!(again.poll_many(None).await.is_empty());
    assert_eq!(sim.rejected(), 0);
}

#[tokio::test]
async fn failures_carry_describe_job_error_code() {
    let task = Target::RestoreTask("dbsrestore02".into());
    let plan = Target::BackupPlan("dbsplanfail".into());
    let scenario = Scenario::new(ID, SECRET)
        .with_target(task.clone(), vec![Step::fixture("restore-completes/01.json").unwrap()])
        .with_restore_task(
            "dbsrestore02",
            vec![
                json!({"RestoreStatus": "running", "FullDataRestoreProgress": 10}),
                json!({"RestoreStatus": "stop", "FullDataRestoreProgress": 10,
                       "ErrMessage": "restore stopped"}),
            ],
        )
        .with_job_error(
            "dbsrestore02",
            json!({"ErrorCode": "RESTORE_DISK_FULL", "ErrorMessage": "The destination disk is full.",
                   "JobState": "failed", "JobType": "restore"}),
        )
        .with_target(
            plan.clone(),
            vec![
                Step::fixture("precheck-fails/02.json").unwrap(),
                Step::fixture("precheck-fails/04.json").unwrap(),
            ],
        )
        // The failed items' JobId.
        .with_job_error(
            "qxwmxh2b1234",
            json!({"ErrorCode": "PRECHECK_PASSWORD", "ErrorMessage": "Unsupported characters in the password."}),
        );
    let sim = spawn_local(scenario).await.unwrap();
    let app = app(
        &sim.endpoint(),
        r#"
[[watch]]
name = "drill"
restore_task_id = "dbsrestore02"
schedule = "*/1 * * * *"

[[watch]]
name = "orders"
backup_plan_id = "dbsplanfail"
schedule = "*/1 * * * *"
"#,
    )
    .await;
    app.poll_many(None).await;
    let reports = app.poll_many(None).await;
    let failed: Vec<_> = reports
        .iter()
        .flat_map(|r| r.events.iter())
        .filter(|e| e.kind().ends_with(".failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{reports:?}");
    let restore = failed.iter().find(|e| e.watch == "drill").unwrap();
    let je = restore.job_error.as_ref().unwrap();
    assert_eq!(je.task_id, "dbsrestore02");
    assert_eq!(je.code.as_deref(), Some("RESTORE_DISK_FULL"));
    assert_eq!(je.message.as_deref(), Some("The destination disk is full."));
    assert_eq!(restore.status.as_deref(), Some("stop"));
    assert_eq!(
        restore.restore_task.as_ref().unwrap().error.as_deref(),
        Some("restore stopped")
    );
    let precheck = failed.iter().find(|e| e.watch == "orders").unwrap();
    let je = precheck.job_error.as_ref().unwrap();
    assert_eq!(je.task_id, "qxwmxh2b1234");
    assert_eq!(je.code.as_deref(), Some("PRECHECK_PASSWORD"));
    // Stored with the event, so deliveries and history carry it.
    let stored = app
        .store
        .history(&HistoryFilter {
            watch: Some("orders".into()),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(
        stored[0].event.job_error.as_ref().unwrap().code.as_deref(),
        Some("PRECHECK_PASSWORD")
    );
    assert_eq!(sim.calls("DescribeJobErrorCode"), 2);
    assert_eq!(sim.rejected(), 0);
}

#[tokio::test]
async fn a_job_error_lookup_that_fails_does_not_fail_the_poll() {
    let task = Target::RestoreTask("dbsrestore03".into());
    let sim: SimServer = spawn_local(
        Scenario::new(ID, SECRET)
            .with_target(
                task,
                vec![Step::fixture("restore-completes/01.json").unwrap()],
            )
            .with_restore_task(
                "dbsrestore03",
                vec![json!({"RestoreStatus": "stop", "FullDataRestoreProgress": 0})],
            ),
    )
    .await
    .unwrap();
    let app = app(
        &sim.endpoint(),
        r#"
[[watch]]
name = "drill"
restore_task_id = "dbsrestore03"
schedule = "*/1 * * * *"
"#,
    )
    .await;
    let report = app.poll_watch(&app.find_watch("drill").unwrap()).await;
    assert!(report.error.is_none());
    assert_eq!(report.events[0].kind(), "restore.failed");
    assert!(report.events[0].job_error.is_none());
    assert_eq!(sim.calls("DescribeJobErrorCode"), 1);
}

#[tokio::test]
async fn watches_poll_with_their_own_account() {
    let plan = Target::BackupPlan("dbsshared".into());
    let prod = spawn_local(Scenario::new("LTAIprodKey0001", "prod-secret").with_target(
        plan.clone(),
        vec![Step::fixture("precheck-passes/02.json").unwrap()],
    ))
    .await
    .unwrap();
    let staging = spawn_local(
        Scenario::new("LTAIstagingKey1", "staging-secret").with_target(
            plan.clone(),
            vec![Step::fixture("precheck-fails/04.json").unwrap()],
        ),
    )
    .await
    .unwrap();
    let text = format!(
        r#"
[aliyun]
access_key_id = "LTAIprodKey0001"
access_key_secret = "prod-secret"
endpoint = "{prod}"

[[account]]
name = "staging"
access_key_id = "LTAIstagingKey1"
access_key_secret = "${{STAGING_SECRET}}"
endpoint = "{staging}"

[[watch]]
name = "prod-orders"
backup_plan_id = "dbsshared"
schedule = "*/1 * * * *"

[[watch]]
name = "staging-orders"
backup_plan_id = "dbsshared"
account = "staging"
schedule = "*/1 * * * *"
"#,
        prod = prod.endpoint(),
        staging = staging.endpoint()
    );
    let env = |name: &str| (name == "STAGING_SECRET").then(|| "staging-secret".to_string());
    let config = config::parse(&text, Path::new("multi.toml"), &env).unwrap();
    assert!(!format!("{config:?}").contains("staging-secret"));
    let app = App::with_store(
        config,
        Store::open_in_memory().await.unwrap(),
        Clock::system(),
    )
    .unwrap();
    let reports = app.poll_many(None).await;
    let kinds: Vec<(String, String)> = reports
        .iter()
        .map(|r| (r.watch.clone(), r.events[0].kind()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("prod-orders".to_string(), "precheck.passed".to_string()),
            ("staging-orders".to_string(), "precheck.failed".to_string())
        ]
    );
    assert_eq!((prod.served(&plan), staging.served(&plan)), (1, 1));
    assert_eq!(prod.rejected() + staging.rejected(), 0);
}

#[tokio::test]
async fn a_restore_is_followed_when_the_precheck_list_no_longer_answers() {
    let task = Target::RestoreTask("dbsrestore04".into());
    let sim = spawn_local(
        Scenario::new(ID, SECRET)
            .with_target(
                task,
                vec![
                    Step::fixture("restore-completes/01.json").unwrap(),
                    // DBS forgets the pre-check once the restore runs.
                    Step::fixture("errors/http200-success-false.json").unwrap(),
                ],
            )
            .with_restore_task(
                "dbsrestore04",
                vec![
                    json!({"RestoreStatus": "running", "FullDataRestoreProgress": 20}),
                    json!({"RestoreStatus": "running", "FullDataRestoreProgress": 70}),
                    json!({"RestoreStatus": "finish", "FullDataRestoreProgress": 100}),
                ],
            ),
    )
    .await
    .unwrap();
    let app = app(
        &sim.endpoint(),
        r#"
[[watch]]
name = "drill"
restore_task_id = "dbsrestore04"
schedule = "*/1 * * * *"
"#,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let report = app.poll_watch(&app.find_watch("drill").unwrap()).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        seen.push(
            report
                .events
                .iter()
                .map(|e| e.kind())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    assert_eq!(
        seen,
        vec![
            "restore.started",
            "restore.progress",
            "restore.progress,restore.completed"
        ]
    );
    assert_eq!(sim.rejected(), 0);
}
