//! Delivery guarantees end to end: the real pipeline, the DBS double and in-process receivers
//! that fail in every way a receiver fails, a robot that must never see more than 20 messages
//! a minute, flapping plans, and poll health. Store times come from a hand-moved clock and the
//! receivers' hangs and the client's timeouts from paused tokio time: nothing sleeps.

mod outbox_support;

use std::time::Duration;

use dbswatch::config;
use dbswatch::event::{Change, Event};
use dbswatch::pipeline::{App, Clock};
use dbswatch::simulate::{self, Scenario, SimServer, Step};
use dbswatch::snapshot::{Snapshot, Target};
use dbswatch::store::{DeliveryListing, OutboxFilter, PollWrite, Store};
use outbox_support::{Receiver, Reply, closed_port, keep_virtual_time_in_small_steps};

/// 2025-12-03T00:00:00Z.
const T0: i64 = 1_764_720_000_000;
const SEC: i64 = 1_000;
const PLAN: &str = "dbsdemo0precheck";

async fn dbs(steps: Vec<Step>) -> SimServer {
    let scenario = Scenario::new(
        simulate::DEMO_ACCESS_KEY_ID,
        simulate::DEMO_ACCESS_KEY_SECRET,
    )
    .with_target(Target::BackupPlan(PLAN.into()), steps);
    simulate::spawn_local(scenario).await.unwrap()
}

fn fixtures(names: &[&str]) -> Vec<Step> {
    names.iter().map(|n| Step::fixture(n).unwrap()).collect()
}

/// A config with the DBS double, one watch of the pre-check and the given `[delivery]` and
/// `[[channel]]` text.
fn app_config(
    dir: &std::path::Path,
    sim: &SimServer,
    delivery: &str,
    channels: &str,
) -> config::Config {
    let text = format!(
        r#"
[storage]
database = "{db}"

[aliyun]
access_key_id = "{id}"
access_key_secret = "{secret}"
endpoint = "{endpoint}"
max_retries = 0

[delivery]
{delivery}

[[watch]]
name = "orders-db"
backup_plan_id = "{PLAN}"
schedule = "*/10 * * * * *"

{channels}
"#,
        db = dir.join("dbswatch.db").display(),
        id = simulate::DEMO_ACCESS_KEY_ID,
        secret = simulate::DEMO_ACCESS_KEY_SECRET,
        endpoint = sim.endpoint(),
    );
    config::parse(&text, &dir.join("dbswatch.toml"), &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

async fn listing(store: &Store, channel: &str) -> DeliveryListing {
    store
        .list_deliveries(&OutboxFilter {
            channel: Some(channel.into()),
            ..OutboxFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no delivery for {channel}"))
}

#[tokio::test]
async fn receivers_that_fail_in_each_way_get_the_right_retry_decision_and_wait() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let sim = dbs(fixtures(&["precheck-fails/04.json"])).await;
    let rx = Receiver::start(clock.clone()).await;
    let retry_at = (chrono::Utc::now() + chrono::Duration::seconds(90))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    rx.script("/500", vec![Reply::new(500, "internal error")]);
    rx.script(
        "/429",
        vec![
            Reply::new(429, "").header("Retry-After", "120"),
            Reply::new(200, "ok"),
        ],
    );
    rx.script(
        "/429-date",
        vec![
            Reply::new(429, "slow down").header("Retry-After", &retry_at),
            Reply::new(204, ""),
        ],
    );
    rx.script(
        "/hang",
        vec![
            Reply::new(204, "").after(Duration::from_secs(2)),
            Reply::new(204, ""),
        ],
    );
    rx.script(
        "/ding",
        vec![
            Reply::new(200, r#"{"errcode":410100,"errmsg":"send too fast"}"#),
            Reply::ding_ok(),
        ],
    );
    rx.script("/invalid", vec![Reply::new(400, "invalid_payload")]);
    let r = rx.url();
    let channels = format!(
        r#"
[[channel]]
name = "hook-500"
type = "webhook"
url = "{r}/500"

[[channel]]
name = "slack-429"
type = "slack"
url = "{r}/429"

[[channel]]
name = "hook-429-date"
type = "webhook"
url = "{r}/429-date"

[[channel]]
name = "hook-hang"
type = "webhook"
url = "{r}/hang"

[[channel]]
name = "hook-refused"
type = "webhook"
url = "http://127.0.0.1:{port}/hook"

[[channel]]
name = "ding-410100"
type = "dingtalk"
url = "{r}/ding?access_token=secrettoken123"

[[channel]]
name = "slack-invalid"
type = "slack"
url = "{r}/invalid"
"#,
        port = closed_port()
    );
    let config = app_config(
        dir.path(),
        &sim,
        "timeout_secs = 1\nretry_base_secs = 10\nretry_budget = \"2h\"",
        &channels,
    );
    let app = App::new(config, clock.clone()).await.unwrap();
    // From here on tokio's time is virtual: the receiver's 2 s hang and the client's 1 s
    // timeout take no real time.
    tokio::time::pause();
    let _tick = keep_virtual_time_in_small_steps();
    let watch = app.config.watch("orders-db").unwrap().clone();
    let poll = app.poll_watch(&watch).await;
    assert_eq!(poll.events.len(), 1, "{:?}", poll.error);

    let d = app.deliver_due().await.unwrap();
    assert_eq!(
        (d.delivered, d.retrying, d.dead),
        (0, 6, 1),
        "{:?}",
        d.failures
    );
    let store = &app.store;

    // 500: retried after the backoff (10 s plus up to 20% jitter).
    let l = listing(store, "hook-500").await;
    assert_eq!(l.status, "pending");
    assert_eq!(l.attempt_log[0].http_status, Some(500));
    assert_eq!(l.attempt_log[0].outcome, "retryable");
    assert!(
        (T0 + 10 * SEC..=T0 + 12 * SEC).contains(&l.next_attempt_at_ms),
        "{l:?}"
    );

    // 429 with Retry-After in seconds and as an HTTP date: never sooner.
    let l = listing(store, "slack-429").await;
    assert_eq!(l.attempt_log[0].http_status, Some(429));
    assert!(l.next_attempt_at_ms >= T0 + 120 * SEC, "{l:?}");
    let l = listing(store, "hook-429-date").await;
    assert!(l.next_attempt_at_ms >= T0 + 85 * SEC, "{l:?}");

    // A 2 s hang past the 1 s timeout: retryable, and the message stays frozen under its id.
    let l = listing(store, "hook-hang").await;
    let hang = &l.attempt_log[0];
    assert_eq!(hang.http_status, None);
    assert!(
        hang.error.as_deref().unwrap().contains("timeout"),
        "{hang:?}"
    );
    assert_eq!(l.message_id.as_deref(), Some(l.uid.as_str()));

    // Connection refused: retryable; nothing reached the receiver, so nothing is frozen.
    let l = listing(store, "hook-refused").await;
    let refused = l.attempt_log[0].error.as_deref().unwrap();
    assert!(refused.contains("could not connect"), "{refused}");
    assert_eq!(l.message_id, None);

    // DingTalk 410100 in an HTTP 200: the robot is throttled for ten minutes.
    let l = listing(store, "ding-410100").await;
    assert_eq!(l.attempt_log[0].http_status, Some(200));
    assert_eq!(l.attempt_log[0].vendor_code.as_deref(), Some("410100"));
    assert!(l.next_attempt_at_ms >= T0 + 600 * SEC, "{l:?}");
    assert!(!l.last_error.as_deref().unwrap().contains("secrettoken123"));

    // Slack invalid_payload: dead at once, in Slack's words, with what to fix.
    let l = listing(store, "slack-invalid").await;
    assert_eq!(l.status, "dead");
    assert_eq!(
        l.attempt_log[0].vendor_code.as_deref(),
        Some("invalid_payload")
    );
    let why = l.last_error.as_deref().unwrap();
    assert!(
        why.contains("invalid_payload") && why.contains("template"),
        "{why}"
    );

    // 15 s later: the 500 and the hang are retried, the 429s and the robot are left alone.
    clock.advance(Duration::from_secs(15));
    app.deliver_due().await.unwrap();
    assert_eq!(rx.received("/500").len(), 2);
    assert_eq!(rx.received("/429").len(), 1, "Retry-After: 120 is honoured");
    assert_eq!(
        rx.received("/429-date").len(),
        1,
        "the HTTP-date Retry-After too"
    );
    assert_eq!(
        rx.received("/ding").len(),
        1,
        "the robot is left alone for 10 minutes"
    );
    let hang = rx.received("/hang");
    assert_eq!(hang.len(), 2);
    assert_eq!(
        hang[0].id, hang[1].id,
        "the resend after a timeout carries the same id"
    );
    assert_eq!(
        rx.shown("/hang").len(),
        1,
        "a deduplicating receiver shows it once"
    );
    assert_eq!(listing(store, "hook-hang").await.status, "delivered");

    clock.advance(Duration::from_secs(110));
    app.deliver_due().await.unwrap();
    assert_eq!(listing(store, "slack-429").await.status, "delivered");
    assert_eq!(listing(store, "hook-429-date").await.status, "delivered");
    assert_eq!(rx.received("/ding").len(), 1);

    clock.advance(Duration::from_secs(480));
    app.deliver_due().await.unwrap();
    let l = listing(store, "ding-410100").await;
    assert_eq!(l.status, "delivered");
    assert_eq!(l.attempt_log.len(), 2);
    let ding = rx.received("/ding");
    assert_eq!(ding[0].id, ding[1].id, "msgUuid is stable across retries");

    // The 500 keeps failing: after the 2 h budget it is dead, every attempt on record.
    for _ in 0..300 {
        clock.advance(Duration::from_secs(60));
        app.deliver_due().await.unwrap();
        if listing(store, "hook-500").await.status == "dead"
            && listing(store, "hook-refused").await.status == "dead"
        {
            break;
        }
    }
    let l = listing(store, "hook-500").await;
    assert_eq!(l.status, "dead");
    let why = l.last_error.as_deref().unwrap();
    assert!(why.contains("gave up after 2h of retries"), "{why}");
    assert!(why.contains("dbswatch redeliver"), "{why}");
    let last = l.attempt_log.last().unwrap().attempted_at_ms;
    assert!(last >= l.created_at_ms + 2 * 3_600 * SEC, "{l:?}");
    assert!(
        l.attempt_log.len() >= 8,
        "doubling from 10 s to the hour: {l:?}"
    );
    assert!(l.attempt_log.iter().all(|a| a.http_status == Some(500)));
    assert_eq!(rx.received("/500").len(), l.attempt_log.len());
    let refused = listing(store, "hook-refused").await;
    assert_eq!(
        refused.status, "dead",
        "the refused one ran out of budget too"
    );
}

/// Write `events` of `watch` as one poll at `now`, routed to `channel`.
async fn write_events(store: &Store, watch: &str, events: &[Event], now: i64, channel: &str) {
    let target = Target::BackupPlan(format!("plan-{watch}"));
    let base = store.baseline(watch, &target).await.unwrap();
    let routed: Vec<(Event, Vec<String>)> = events
        .iter()
        .map(|e| (e.clone(), vec![channel.to_string()]))
        .collect();
    let mut uid = || uuid::Uuid::new_v4().to_string();
    let snapshot = Snapshot::new(Some("running".into()), Some(10), Vec::new());
    store
        .record_poll(PollWrite {
            watch,
            target: &target,
            started_at: now,
            duration_ms: 1,
            finished_at: now,
            snapshot: &snapshot,
            raw_body: "{}",
            request_id: None,
            expected_hash: base.as_ref().map(|b| b.content_hash.as_str()),
            events: &routed,
            new_uid: &mut uid,
        })
        .await
        .unwrap();
}

/// How many changes a DingTalk message covers: its "covers N changes" line, else one.
fn covered(text: &str) -> usize {
    text.split("This message covers ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[tokio::test]
async fn a_hundred_changes_to_one_robot_never_cross_twenty_a_minute_and_all_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let sim = dbs(fixtures(&["precheck-fails/04.json"])).await;
    let rx = Receiver::start(clock.clone()).await;
    rx.script("/robot/send", vec![Reply::ding_ok()]);
    let channels = format!(
        r#"
[[channel]]
name = "ops-ding"
type = "dingtalk"
url = "{}/robot/send?access_token=tok"
"#,
        rx.url()
    );
    let config = app_config(dir.path(), &sim, "timeout_secs = 5", &channels);
    let mut app = App::new(config.clone(), clock.clone()).await.unwrap();
    let kinds = [
        Change::Started,
        Change::Failed,
        Change::Started,
        Change::Passed,
    ];
    let sample = dbswatch::render::sample_events()
        .into_iter()
        .find(|e| e.kind() == "precheck.failed")
        .unwrap();

    // One change every 2 seconds across 20 watches (5 each), delivery passes every second, and
    // a restart (a new process: fresh in-memory limiter) in the middle of the burst.
    let mut written = 0;
    for second in 0..1_800 {
        if second % 2 == 0 && written < 100 {
            let watch = format!("w{:02}", written % 20);
            let event = Event {
                id: format!("event-{written:03}"),
                change: kinds[(written / 20) % kinds.len()],
                watch: watch.clone(),
                target: Target::BackupPlan(format!("plan-{watch}")),
                observed_at_ms: clock.now_ms(),
                ..sample.clone()
            };
            write_events(&app.store, &watch, &[event], clock.now_ms(), "ops-ding").await;
            written += 1;
        }
        if second == 45 {
            app.store.close().await;
            app = App::new(config.clone(), clock.clone()).await.unwrap();
        }
        app.deliver_due().await.unwrap();
        clock.advance(Duration::from_secs(1));
        if written == 100 && app.store.outbox_counts().await.unwrap().pending == 0 {
            break;
        }
    }

    let got = rx.received("/robot/send");
    let counts = app.store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (0, 100, 0));
    // No 60-second window, wherever it starts, holds more than 20 messages.
    for (i, first) in got.iter().enumerate() {
        let in_window = got[i..]
            .iter()
            .take_while(|r| r.at_ms < first.at_ms + 60 * SEC)
            .count();
        assert!(
            in_window <= 20,
            "{in_window} messages in the minute from {}",
            first.at_ms
        );
    }
    // Every change is announced: merged messages say how many they cover.
    let texts: Vec<String> = got
        .iter()
        .map(|r| r.body["markdown"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.iter().map(|t| covered(t)).sum::<usize>(), 100);
    assert!(
        got.len() < 100,
        "the backlog was merged: {} messages",
        got.len()
    );
    assert!(texts.iter().any(|t| covered(t) > 1));
    assert_eq!(
        rx.shown("/robot/send").len(),
        got.len(),
        "no message id repeats"
    );
    // And every delivery went out in the message the robot saw.
    let ids: std::collections::HashSet<String> = got.iter().filter_map(|r| r.id.clone()).collect();
    for d in app
        .store
        .list_deliveries(&OutboxFilter::default())
        .await
        .unwrap()
    {
        assert!(ids.contains(d.message_id.as_deref().unwrap()), "{d:?}");
    }
}

#[tokio::test]
async fn a_flapping_plan_is_muted_within_repeat_interval_and_the_next_message_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let steps = [
        "precheck-fails/01.json",
        "precheck-fails/04.json",
        "precheck-fails/01.json",
        "precheck-fails/04.json",
        "precheck-fails/01.json",
        "precheck-fails/04.json",
        "precheck-fails/01.json",
    ];
    let sim = dbs(fixtures(&steps)).await;
    let rx = Receiver::start(clock.clone()).await;
    rx.script("/slack", vec![Reply::new(200, "ok")]);
    rx.script("/hook", vec![Reply::new(204, "")]);
    let channels = format!(
        r#"
[[channel]]
name = "ops-slack"
type = "slack"
url = "{r}/slack"
repeat_interval = "30m"

[[channel]]
name = "audit"
type = "webhook"
url = "{r}/hook"
"#,
        r = rx.url()
    );
    let config = app_config(dir.path(), &sim, "", &channels);
    let app = App::new(config, clock.clone()).await.unwrap();
    let watch = app.config.watch("orders-db").unwrap().clone();
    let mut muted = 0;
    for n in 0..steps.len() {
        // Six polls two minutes apart, then the last one after more than half an hour.
        clock.advance(if n == 6 {
            Duration::from_secs(31 * 60)
        } else {
            Duration::from_secs(120)
        });
        let poll = app.poll_watch(&watch).await;
        assert!(poll.error.is_none(), "{:?}", poll.error);
        muted += app.deliver_due().await.unwrap().muted;
    }
    assert_eq!(muted, 4);
    let slack = rx.received("/slack");
    let titles: Vec<&str> = slack
        .iter()
        .map(|r| r.body["blocks"][0]["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "ℹ️ Pre-check started: orders-db",
            "❌ Pre-check failed: orders-db",
            "ℹ️ Pre-check started: orders-db"
        ]
    );
    assert!(!slack[1].text.contains("muted"));
    assert!(
        slack[2].text.contains("🔇 4 repeats muted"),
        "{}",
        slack[2].text
    );
    // The webhook has no repeat_interval: it hears every transition.
    assert_eq!(rx.received("/hook").len(), 7);
    let muted_rows = app
        .store
        .list_deliveries(&OutboxFilter {
            status: Some("muted".into()),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(muted_rows.len(), 4);
    assert!(muted_rows.iter().all(|d| {
        d.channel == "ops-slack"
            && d.attempt_log.is_empty()
            && d.last_error
                .as_deref()
                .unwrap()
                .contains("repeat_interval (30m)")
    }));
}

#[tokio::test]
async fn failing_polls_are_announced_once_with_what_to_do_and_recovery_too() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let throttled = Step::fixture("errors/http400-throttling-user.json")
        .unwrap()
        .with_header("x-acs-retry-after", "90000");
    let mut steps = fixtures(&["precheck-fails/01.json"]);
    steps.push(throttled);
    steps.extend(fixtures(&[
        "errors/http404-access-key-not-found.json",
        "errors/http404-access-key-not-found.json",
        "errors/http404-access-key-not-found.json",
        "precheck-fails/01.json",
    ]));
    let sim = dbs(steps).await;
    let rx = Receiver::start(clock.clone()).await;
    rx.script("/hook", vec![Reply::new(204, "")]);
    rx.script("/ding", vec![Reply::ding_ok()]);
    let channels = format!(
        r#"
[[channel]]
name = "audit"
type = "webhook"
url = "{r}/hook"

[[channel]]
name = "ops-ding"
type = "dingtalk"
url = "{r}/ding?access_token=t"
language = "zh-CN"
"#,
        r = rx.url()
    );
    let config = app_config(dir.path(), &sim, "poll_failure_threshold = 3", &channels);
    let app = App::new(config, clock.clone()).await.unwrap();
    let watch = app.config.watch("orders-db").unwrap().clone();
    let mut reports = Vec::new();
    for _ in 0..6 {
        clock.advance(Duration::from_secs(60));
        reports.push(app.poll_watch(&watch).await);
        app.deliver_due().await.unwrap();
    }
    let kinds: Vec<Vec<String>> = reports
        .iter()
        .map(|r| r.events.iter().map(Event::kind).collect())
        .collect();
    assert_eq!(kinds[0], ["precheck.started"]);
    assert!(kinds[1].is_empty() && kinds[2].is_empty());
    assert_eq!(kinds[3], ["poll.failed"], "the third failure in a row");
    assert!(kinds[4].is_empty(), "announced once");
    assert_eq!(kinds[5], ["poll.recovered"]);

    // Throttling honours x-acs-retry-after; a bad AccessKey waits ten minutes.
    let at = |n: usize| T0 + (n as i64 + 1) * 60 * SEC;
    assert!(reports[1].not_before_ms.unwrap() >= at(1) + 90 * SEC);
    assert_eq!(reports[2].not_before_ms, Some(at(2) + 600 * SEC));
    assert_eq!(reports[5].not_before_ms, None);

    let hooks = rx.received("/hook");
    let failed = hooks
        .iter()
        .find(|r| r.body["type"] == "poll.failed")
        .unwrap();
    let poll = &failed.body["data"]["poll"];
    assert_eq!(poll["failures"], 3);
    assert_eq!(poll["code"], "InvalidAccessKeyId.NotFound");
    assert_eq!(poll["error_kind"], "credentials");
    assert!(
        poll["hint"]
            .as_str()
            .unwrap()
            .contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
    );
    let recovered = hooks
        .iter()
        .find(|r| r.body["type"] == "poll.recovered")
        .unwrap();
    assert_eq!(recovered.body["data"]["poll"]["failures"], 4);
    let ding: Vec<String> = rx
        .received("/ding")
        .iter()
        .map(|r| r.body["markdown"]["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ding.iter()
            .any(|t| t.contains("DBS 查询失败") && t.contains("连续 3 次查询失败"))
    );
    assert!(ding.iter().any(|t| t.contains("DBS 查询已恢复")));

    // poll.failed is written by the failure path, not by record_poll: it must be chained like
    // every other event, or `verify` reports it as inserted behind dbswatch's back.
    let report = app.store.verify_chain(clock.now_ms()).await.unwrap();
    assert!(report.verdict.ok(), "{:?}", report.verdict.problems);
    assert_eq!(report.verdict.events, 3, "started, failed, recovered");
}

#[tokio::test]
async fn the_daemon_backs_off_a_throttled_watch_and_does_not_hammer_a_bad_key() {
    // (DBS answer, virtual minutes of a watch scheduled every second, most polls allowed):
    // throttling waits 15-30 s, then 30-60 s, then 60-120 s; a bad AccessKey ten minutes.
    for (fixture, minutes, most) in [
        ("errors/http400-throttling-user.json", 4, 5),
        ("errors/http404-access-key-not-found.json", 11, 2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sim = dbs(fixtures(&[fixture])).await;
        let mut config = app_config(dir.path(), &sim, "", "");
        config.watches[0].schedule =
            dbswatch::schedule::CronSchedule::parse("* * * * * *").unwrap();
        let app = App::new(config, Clock::tokio(T0)).await.unwrap();
        tokio::time::pause();
        let tick = keep_virtual_time_in_small_steps();
        let stop = tokio_util::sync::CancellationToken::new();
        let daemon = tokio::spawn(dbswatch::scheduler::run(app, stop.clone()));
        tokio::time::sleep(Duration::from_secs(minutes * 60)).await;
        stop.cancel();
        daemon.await.unwrap();
        tick.abort();
        tokio::time::resume();
        let served = sim.served(&Target::BackupPlan(PLAN.into()));
        assert!(
            (2..=most).contains(&served),
            "{fixture}: {served} polls in {minutes} minutes of a watch scheduled every second"
        );
    }
}

#[tokio::test]
async fn a_receiver_down_for_an_hour_gets_a_short_catch_up_not_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let sim = dbs(fixtures(&["precheck-fails/04.json"])).await;
    let rx = Receiver::start(clock.clone()).await;
    rx.script("/slack", vec![Reply::new(503, "upstream unavailable")]);
    let channels = format!(
        r#"
[[channel]]
name = "ops-slack"
type = "slack"
url = "{}/slack"
"#,
        rx.url()
    );
    let config = app_config(dir.path(), &sim, "", &channels);
    let app = App::new(config, clock.clone()).await.unwrap();
    let sample = dbswatch::render::sample_events()
        .into_iter()
        .find(|e| e.kind() == "precheck.failed")
        .unwrap();
    let kinds = [Change::Failed, Change::Started, Change::Failed];

    // An hour of Slack answering 503 while two watches change every ten minutes; the delivery
    // pass runs every 10 seconds, as the daemon would wake for it.
    let mut n = 0;
    for second in (0..3_600).step_by(10) {
        if second % 600 == 0 {
            for watch in ["orders-db", "billing-db"] {
                let event = Event {
                    id: format!("event-{n}"),
                    change: kinds[n % kinds.len()],
                    watch: watch.to_string(),
                    target: Target::BackupPlan(format!("plan-{watch}")),
                    observed_at_ms: clock.now_ms(),
                    ..sample.clone()
                };
                write_events(&app.store, watch, &[event], clock.now_ms(), "ops-slack").await;
                n += 1;
            }
        }
        app.deliver_due().await.unwrap();
        clock.advance(Duration::from_secs(10));
    }
    let attempts_while_down = rx.received("/slack").len();
    assert!(
        attempts_while_down <= 12,
        "backoff, not one request per message and pass: {attempts_while_down}"
    );
    let pending = app
        .store
        .list_deliveries(&OutboxFilter::default())
        .await
        .unwrap();
    assert_eq!(pending.len(), 12);
    assert!(pending.iter().all(|d| d.status == "pending"));
    // Only the first message tested the receiver; the others waited without an attempt.
    let tried: Vec<_> = pending
        .iter()
        .filter(|d| !d.attempt_log.is_empty())
        .collect();
    assert_eq!(tried.len(), 1, "{pending:?}");
    assert_eq!(tried[0].attempt_log.len(), attempts_while_down);
    assert!(tried[0].last_error.as_deref().unwrap().contains("HTTP 503"));

    // Slack is back. Within the hour's last backoff step everything is out: per watch, the one
    // message whose send may have arrived (resent under its id) and one summary of the rest.
    rx.script("/slack", vec![Reply::new(200, "ok")]);
    for _ in 0..(75 * 6) {
        app.deliver_due().await.unwrap();
        if app.store.outbox_counts().await.unwrap().pending == 0 {
            break;
        }
        clock.advance(Duration::from_secs(10));
    }
    let counts = app.store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered), (0, 12));
    let after: Vec<_> = rx.received("/slack")[attempts_while_down..].to_vec();
    // orders-db: its first message (the send that may have arrived) under the same id, then one
    // summary of its other five changes; billing-db: one summary of its six.
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(
        after[0].text,
        rx.received("/slack")[0].text,
        "resent as it was"
    );
    let covered: usize = after.iter().map(|r| covered(&r.text)).sum();
    assert_eq!(covered, 12, "the catch-up covers every change of the hour");
    assert!(after.iter().any(|r| r.text.contains("This message covers")));
}

#[tokio::test]
async fn a_long_queue_stays_leased_while_it_is_worked_through() {
    // A webhook receiver that takes 1.5 s per message and a 2 s send timeout (so a 5 s lease):
    // eight queued messages take over 12 s, far past the lease they were claimed with. A second pass
    // started meanwhile (another process, a restart) must find nothing to take, and each
    // message reaches the receiver once.
    let dir = tempfile::tempdir().unwrap();
    let sim = dbs(fixtures(&["precheck-fails/04.json"])).await;
    let clock = Clock::tokio(T0);
    let rx = Receiver::start(clock.clone()).await;
    rx.script(
        "/hook",
        vec![Reply::new(204, "").after(Duration::from_millis(1_500))],
    );
    let channels = format!(
        "[[channel]]\nname = \"audit\"\ntype = \"webhook\"\nurl = \"{}/hook\"\n",
        rx.url()
    );
    let config = app_config(dir.path(), &sim, "timeout_secs = 2", &channels);
    let app = App::new(config, clock.clone()).await.unwrap();
    let sample = dbswatch::render::sample_events()
        .into_iter()
        .find(|e| e.kind() == "precheck.failed")
        .unwrap();
    // Eight watches, so no message waits behind an older one of its own watch.
    for n in 0..8 {
        let watch = format!("db-{n}");
        let event = Event {
            id: format!("event-{n}"),
            watch: watch.clone(),
            target: Target::BackupPlan(format!("plan-{watch}")),
            observed_at_ms: clock.now_ms(),
            ..sample.clone()
        };
        write_events(&app.store, &watch, &[event], clock.now_ms(), "audit").await;
    }

    tokio::time::pause();
    let tick = keep_virtual_time_in_small_steps();
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.deliver_due().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_secs(7)).await;
    let second = app.deliver_due().await.unwrap();
    assert_eq!(second.delivered, 0, "{second:?}");
    let first = first.await.unwrap();
    tick.abort();
    tokio::time::resume();
    assert_eq!(first.delivered, 8, "{first:?}");
    let mut ids: Vec<String> = rx
        .received("/hook")
        .into_iter()
        .filter_map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 8);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "each message once");
}
