//! End-to-end: the real pipeline against the DBS double and mock chat receivers on 127.0.0.1,
//! with a real SQLite file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dbswatch::config;
use dbswatch::pipeline::{App, Clock};
use dbswatch::simulate::{self, Scenario};
use dbswatch::store::{HistoryFilter, OutboxCounts, PollOutcome};
use serde_json::Value;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const DING_SECRET: &str = "SECb90923e19e58b466481e9e7b7a5b4f108a4531abde590ad3967fb29f0eae5c68";
const HOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

struct Harness {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    dbs_url: String,
    chat: MockServer,
    _stop_dbs: tokio::sync::oneshot::Sender<()>,
}

/// Start the DBS double with `scenario` and an empty mock chat server.
async fn harness(scenario: Scenario) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(simulate::serve(listener, scenario, async move {
        let _ = stopped.await;
    }));
    Harness {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        dbs_url: format!("http://{addr}"),
        chat: MockServer::start().await,
        _stop_dbs: stop,
    }
}

impl Harness {
    fn config_text(&self) -> String {
        let chat = self.chat.uri();
        format!(
            r#"
[storage]
database = "{db}"

[aliyun]
access_key_id = "${{ALIBABA_CLOUD_ACCESS_KEY_ID}}"
access_key_secret = "${{ALIBABA_CLOUD_ACCESS_KEY_SECRET}}"
endpoint = "{dbs}"
max_retries = 0
timeout_secs = 5

[delivery]
retry_base_secs = 10
timeout_secs = 2

[[watch]]
name = "orders-db"
backup_plan_id = "dbsdemo0precheck"
schedule = "*/30 * * * * *"
channels = ["ops-dingtalk", "ops-slack", "audit"]

[[watch]]
name = "restore-drill"
restore_task_id = "dbsdemo0restore"
schedule = "*/1 * * * *"
channels = ["ops-slack", "audit"]

[[channel]]
name = "ops-dingtalk"
type = "dingtalk"
url = "{chat}/dingtalk/robot/send?access_token=${{DINGTALK_TOKEN}}"
secret = "${{DINGTALK_SECRET}}"
at_mobiles = ["13800000000"]
events = ["precheck.failed"]

[[channel]]
name = "ops-slack"
type = "slack"
url = "{chat}/slack/services/T000/B000/XXXXSLACKTOKEN"

[[channel]]
name = "audit"
type = "webhook"
url = "{chat}/hook/dbs"
secret = "{HOOK_SECRET}"
"#,
            db = self.dir.join("dbswatch.db").display(),
            dbs = self.dbs_url,
        )
    }

    fn config(&self) -> config::Config {
        let env = |name: &str| -> Option<String> {
            match name {
                "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some(simulate::DEMO_ACCESS_KEY_ID.into()),
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some(simulate::DEMO_ACCESS_KEY_SECRET.into()),
                "DINGTALK_TOKEN" => Some("dingtoken123".into()),
                "DINGTALK_SECRET" => Some(DING_SECRET.into()),
                _ => None,
            }
        };
        config::parse(&self.config_text(), &self.dir.join("dbswatch.toml"), &env)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn app(&self, clock: Clock) -> App {
        App::new(self.config(), clock).await.unwrap()
    }

    async fn receivers_answer(
        &self,
        slack: ResponseTemplate,
        ding: ResponseTemplate,
        hook: ResponseTemplate,
    ) {
        self.chat.reset().await;
        Mock::given(method("POST"))
            .and(path_regex("^/slack/"))
            .respond_with(slack)
            .mount(&self.chat)
            .await;
        Mock::given(method("POST"))
            .and(path_regex("^/dingtalk/"))
            .respond_with(ding)
            .mount(&self.chat)
            .await;
        Mock::given(method("POST"))
            .and(path_regex("^/hook/"))
            .respond_with(hook)
            .mount(&self.chat)
            .await;
    }

    async fn receivers_ok(&self) {
        self.receivers_answer(
            ResponseTemplate::new(200).set_body_string("ok"),
            ResponseTemplate::new(200).set_body_string(r#"{"errcode":0,"errmsg":"ok"}"#),
            ResponseTemplate::new(204),
        )
        .await;
    }

    async fn received(&self, prefix: &str) -> Vec<Request> {
        self.chat
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().starts_with(prefix))
            .collect()
    }
}

fn json(r: &Request) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

fn kinds(app_reports: &[dbswatch::pipeline::PollReport], watch: &str) -> Vec<String> {
    app_reports
        .iter()
        .find(|r| r.watch == watch)
        .map(|r| r.events.iter().map(|e| e.kind()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failing_precheck_and_a_completed_restore_reach_every_channel_exactly_as_sent() {
    let h = harness(Scenario::builtin_demo()).await;
    h.receivers_ok().await;
    // Cycles two seconds apart on the product's clock, so Slack's one message a second leaves
    // room for each cycle's message (the rate limit itself is tested elsewhere).
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let app = h.app(clock.clone()).await;

    let mut all_kinds = Vec::new();
    for _ in 0..4 {
        clock.advance(Duration::from_secs(2));
        let reports = app.poll_many(None).await;
        for r in &reports {
            assert!(r.error.is_none(), "{:?}", r.error);
        }
        all_kinds.push((
            kinds(&reports, "orders-db"),
            kinds(&reports, "restore-drill"),
        ));
        let d = app.deliver_due().await.unwrap();
        assert!(d.failures.is_empty(), "{:?}", d.failures);
        // The two watches' first messages leave one second apart on Slack.
        clock.advance(Duration::from_secs(1));
        app.deliver_due().await.unwrap();
    }
    assert_eq!(all_kinds[0].0, ["precheck.started"]);
    assert_eq!(
        all_kinds[1].0,
        [
            "precheck.item_changed",
            "precheck.item_changed",
            "precheck.progress"
        ]
    );
    assert!(
        all_kinds[2].0.is_empty(),
        "03 differs from 02 only in RequestId"
    );
    assert_eq!(all_kinds[3].0.last().unwrap(), "precheck.failed");
    assert_eq!(all_kinds[0].1, ["restore.started"]);
    assert_eq!(all_kinds[1].1, ["restore.progress"]);
    assert_eq!(all_kinds[2].1.last().unwrap(), "restore.completed");

    // DingTalk: only precheck.failed, signed, with the mention in both places.
    let ding = h.received("/dingtalk/").await;
    assert_eq!(ding.len(), 1, "dingtalk filters to precheck.failed");
    let q: Vec<(String, String)> = ding[0]
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("access_token"), "dingtoken123");
    let ts: i64 = get("timestamp").parse().unwrap();
    assert_eq!(
        get("sign"),
        dbswatch::notify::dingtalk_sign(DING_SECRET, ts)
    );
    let body = json(&ding[0]);
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("@13800000000"), "{text}");
    // Markdown characters in DBS values are backslash-escaped, so `_` shows as written.
    assert!(text.contains(r"CHECK\_MYSQL\_PASSOWRD\_FORMAT"), "{text}");
    assert!(
        text.contains(r#"password of user "dbs" contains unsupported characters: <&>"#),
        "{text}"
    );
    assert!(text.contains("dbsdemo0precheck"), "{text}");
    assert!(body["msgUuid"].as_str().is_some_and(|s| !s.is_empty()));

    // Slack: default kinds only (no item_changed / progress), & < > escaped in values.
    let slack = h.received("/slack/").await;
    let slack_texts: Vec<String> = slack
        .iter()
        .map(|r| json(r)["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        slack.len(),
        4,
        "started x2, failed, completed: {slack_texts:?}"
    );
    let failed = slack
        .iter()
        .map(json)
        .find(|b| b.to_string().contains("CHECK_MYSQL_PASSOWRD_FORMAT"))
        .expect("the failure reached Slack");
    let failed_text = failed.to_string();
    assert!(failed_text.contains("&lt;&amp;&gt;"), "{failed_text}");
    assert!(!failed_text.contains("<&>"), "{failed_text}");
    assert!(failed["blocks"].is_array());

    // Webhook: Standard Webhooks signature over the exact bytes, the event as JSON.
    let hooks = h.received("/hook/").await;
    assert_eq!(hooks.len(), 4);
    let now = chrono::Utc::now().timestamp();
    for r in &hooks {
        let headers: reqwest::header::HeaderMap = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(
            dbswatch::notify::verify_webhook_headers(HOOK_SECRET, &headers, &r.body, now),
            "signature must verify"
        );
    }
    let types: Vec<String> = hooks
        .iter()
        .map(|r| json(r)["type"].as_str().unwrap().to_string())
        .collect();
    assert!(types.contains(&"precheck.failed".to_string()), "{types:?}");
    assert!(
        types.contains(&"restore.completed".to_string()),
        "{types:?}"
    );
    let failed = hooks
        .iter()
        .map(json)
        .find(|b| b["type"] == "precheck.failed")
        .unwrap();
    let items = failed["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the warning and the failure: {failed}");
    assert!(
        failed
            .to_string()
            .contains(r#"password of user \"dbs\" contains unsupported characters: <&>"#)
    );

    // History: every event, who was told.
    let history = app.store.history(&HistoryFilter::default()).await.unwrap();
    let failed = history
        .iter()
        .find(|e| e.kind == "precheck.failed")
        .unwrap();
    let channels: Vec<(&str, &str)> = failed
        .deliveries
        .iter()
        .map(|d| (d.channel.as_str(), d.status.as_str()))
        .collect();
    assert_eq!(
        channels,
        [
            ("ops-dingtalk", "delivered"),
            ("ops-slack", "delivered"),
            ("audit", "delivered")
        ]
    );
    assert_eq!(
        app.store.snapshot_count("orders-db").await.unwrap(),
        3,
        "01, 02, 04"
    );
}

#[tokio::test]
async fn a_restart_on_the_same_database_announces_nothing_twice() {
    let h = harness(Scenario::builtin_demo()).await;
    h.receivers_ok().await;
    {
        let app = h.app(Clock::system()).await;
        for _ in 0..4 {
            app.poll_many(None).await;
            app.deliver_due().await.unwrap();
        }
        // Slack's 1-per-second limit holds some messages back: let them all go out first, so
        // the second process has nothing legitimately left to send.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while app.store.outbox_counts().await.unwrap().pending > 0 {
            assert!(std::time::Instant::now() < deadline, "outbox did not drain");
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.deliver_due().await.unwrap();
        }
        app.store.close().await;
    }
    let before = h.chat.received_requests().await.unwrap().len();
    // A new process: new App, same file; DBS keeps answering the final state.
    let app = h.app(Clock::system()).await;
    for _ in 0..2 {
        let reports = app.poll_many(None).await;
        for r in reports {
            assert_eq!(r.outcome, Some(PollOutcome::Unchanged), "{}", r.watch);
            assert!(r.events.is_empty());
        }
        let d = app.deliver_due().await.unwrap();
        assert_eq!(d.delivered, 0);
    }
    assert_eq!(h.chat.received_requests().await.unwrap().len(), before);
}

/// Write a scenario file and load it the way `dbswatch simulate --scenario` does.
fn scenario(dir: &Path, steps: Value) -> Scenario {
    let file = dir.join("scenario.json");
    let doc = serde_json::json!({
        "access_key_id": simulate::DEMO_ACCESS_KEY_ID,
        "access_key_secret": simulate::DEMO_ACCESS_KEY_SECRET,
        "targets": [
            {"backup_plan_id": "dbsdemo0precheck", "steps": steps},
            {"restore_task_id": "dbsdemo0restore", "steps": [{"fixture": "restore-completes/01.json"}]}
        ]
    });
    std::fs::write(&file, doc.to_string()).unwrap();
    Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn bad_dbs_answers_are_recorded_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = serde_json::json!([
        {"fixture": "precheck-fails/02.json"},
        {"status": 502, "fixture": "errors/http502-gateway.html"},
        {"status": 400, "fixture": "errors/http400-throttling-user.json"},
        {"status": 200, "fixture": "errors/http200-truncated.json"},
        {"status": 200, "fixture": "errors/http200-success-false.json"},
        {"fixture": "precheck-fails/04.json"}
    ]);
    let h = harness(scenario(tmp.path(), steps)).await;
    // Slack is down: the first notification must wait in the outbox through the bad polls.
    h.receivers_answer(
        ResponseTemplate::new(500).set_body_string("rollup_error"),
        ResponseTemplate::new(200).set_body_string(r#"{"errcode":0,"errmsg":"ok"}"#),
        ResponseTemplate::new(204),
    )
    .await;
    let clock = Clock::manual(1_764_720_000_000);
    let app = h.app(clock.clone()).await;
    let one = |app: &App| {
        let app = app.clone();
        async move { app.poll_watch(app.config.watch("orders-db").unwrap()).await }
    };

    let first = one(&app).await;
    assert_eq!(first.outcome, Some(PollOutcome::First));
    let d = app.deliver_due().await.unwrap();
    assert_eq!((d.delivered, d.retrying), (1, 1), "webhook ok, slack 500");
    assert!(d.failures[0].contains("ops-slack"), "{:?}", d.failures);

    let expect_errors = ["502", "Throttling.User", "cut off", "InvalidParameterValid"];
    for (n, expected) in expect_errors.into_iter().enumerate() {
        let r = one(&app).await;
        let err = r
            .error
            .unwrap_or_else(|| panic!("expected an error for {expected}"));
        assert!(
            err.to_lowercase().contains(&expected.to_lowercase()),
            "{expected} not in: {err}"
        );
        // The third failure in a row is announced, once.
        let kinds: Vec<String> = r.events.iter().map(|e| e.kind()).collect();
        if n == 2 {
            assert_eq!(kinds, ["poll.failed"]);
        } else {
            assert!(kinds.is_empty(), "{kinds:?}");
        }
        let base = app
            .store
            .baseline("orders-db", &app.config.watch("orders-db").unwrap().target)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            base.snapshot.progress,
            Some(40),
            "the last good snapshot is kept"
        );
    }
    let polls = app.store.polls("orders-db").await.unwrap();
    assert_eq!(polls.iter().filter(|p| p.0 == "error").count(), 4);
    for (_, _, message) in polls.iter().filter(|p| p.0 == "error") {
        let m = message.as_deref().unwrap();
        assert!(!m.contains(simulate::DEMO_ACCESS_KEY_SECRET), "{m}");
    }

    // Slack recovers; time passes past the backoff; the kept message goes out, then one
    // message with the failure, which also covers the poll trouble and its end.
    h.receivers_ok().await;
    clock.advance(Duration::from_secs(60));
    let last = one(&app).await;
    assert_eq!(last.events.first().unwrap().kind(), "poll.recovered");
    assert_eq!(last.events.last().unwrap().kind(), "precheck.failed");
    let d = app.deliver_due().await.unwrap();
    assert!(d.failures.is_empty(), "{:?}", d.failures);
    clock.advance(Duration::from_secs(1));
    let d = app.deliver_due().await.unwrap();
    assert!(d.failures.is_empty(), "{:?}", d.failures);
    let slack = h.received("/slack/").await;
    assert_eq!(slack.len(), 2, "the started message (kept) and the failure");
    let merged = json(&slack[1]).to_string();
    assert!(merged.contains("Pre-check failed"), "{merged}");
    assert!(merged.contains("This message covers 3 changes"), "{merged}");
    assert!(merged.contains("Polling DBS failed"), "{merged}");
    // started, poll.failed and poll.recovered to Slack and the webhook; the failure to all three.
    assert_eq!(
        app.store.outbox_counts().await.unwrap(),
        OutboxCounts {
            pending: 0,
            delivered: 9,
            dead: 0
        }
    );
    let history = app.store.history(&HistoryFilter::default()).await.unwrap();
    let started = history
        .iter()
        .find(|e| e.kind == "precheck.started")
        .unwrap();
    let slack_delivery = started
        .deliveries
        .iter()
        .find(|d| d.channel == "ops-slack")
        .unwrap();
    assert_eq!(slack_delivery.attempts, 2);
    assert_eq!(slack_delivery.status, "delivered");
}

#[tokio::test]
async fn a_robot_that_rejects_the_message_is_reported_with_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(scenario(
        tmp.path(),
        serde_json::json!([{"fixture": "precheck-fails/04.json"}]),
    ))
    .await;
    h.receivers_answer(
        ResponseTemplate::new(200).set_body_string("ok"),
        ResponseTemplate::new(200)
            .set_body_string(r#"{"errcode":310000,"errmsg":"keywords not in content"}"#),
        ResponseTemplate::new(204),
    )
    .await;
    let app = h.app(Clock::system()).await;
    let r = app.poll_watch(app.config.watch("orders-db").unwrap()).await;
    assert_eq!(r.events.last().unwrap().kind(), "precheck.failed");
    let d = app.deliver_due().await.unwrap();
    assert_eq!(d.dead, 1);
    let failure = d.failures.join("\n");
    assert!(failure.contains("310000"), "{failure}");
    assert!(failure.contains("keyword"), "{failure}");
    assert!(!failure.contains("dingtoken123"), "token leaked: {failure}");
    let history = app.store.history(&HistoryFilter::default()).await.unwrap();
    let ding = history[0]
        .deliveries
        .iter()
        .find(|d| d.channel == "ops-dingtalk")
        .unwrap();
    assert_eq!(ding.status, "dead");
    assert!(ding.last_error.as_deref().unwrap().contains("310000"));
}

#[tokio::test]
async fn a_wrong_secret_is_named_as_such() {
    let h = harness(Scenario::builtin_demo()).await;
    let text = h
        .config_text()
        .replace("${ALIBABA_CLOUD_ACCESS_KEY_SECRET}", "not-the-secret");
    let env = |name: &str| -> Option<String> {
        match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some(simulate::DEMO_ACCESS_KEY_ID.into()),
            "DINGTALK_TOKEN" => Some("t".into()),
            "DINGTALK_SECRET" => Some(DING_SECRET.into()),
            _ => None,
        }
    };
    let config = config::parse(&text, &h.dir.join("c.toml"), &env).unwrap();
    let app = App::new(config, Clock::system()).await.unwrap();
    let r = app.poll_watch(app.config.watch("orders-db").unwrap()).await;
    let err = r.error.unwrap();
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.to_lowercase().contains("secret"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
}
