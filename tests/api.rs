//! The HTTP API of `dbswatch run --listen`, in-process on 127.0.0.1 with a real SQLite file:
//! the token, every endpoint, cursor pagination while events arrive, `/metrics` through a strict
//! Prometheus text parser, `/healthz`, and secrets never leaving.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use common::*;
use dbswatch::audit::Heartbeat;
use dbswatch::config;
use dbswatch::event::Change;
use dbswatch::pipeline::{App, Clock};
use dbswatch::server::{self, ApiState, ServeError};
use dbswatch::store::{AttemptWrite, DeliveryState, Store};
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";

struct Api {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    base: String,
    store: Store,
    heartbeat: Arc<Heartbeat>,
    now: i64,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn load(dir: &Path, extra: &str) -> config::Config {
    let path = write_config(dir, extra);
    config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A seeded database served with (or without) a token.
async fn api(token: Option<&str>) -> Api {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let extra = match token {
        Some(t) => format!("[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"{t}\"\n"),
        None => String::new(),
    };
    let config = load(&dir, &extra);
    let store = Store::open(&config.storage.database).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    seed_scenario(&store, now).await;
    let heartbeat = Arc::new(Heartbeat::new());
    heartbeat.tick(now);
    let state = ApiState::new(
        store.clone(),
        Arc::new(config),
        heartbeat.clone(),
        Clock::system(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Api {
        _tmp: tmp,
        dir,
        base: format!("http://{addr}"),
        store,
        heartbeat,
        now,
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn uids(&self, query: &str) -> Vec<String> {
        let v = self.json(&format!("/api/v1/events?{query}")).await;
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn the_api_needs_the_token_when_one_is_configured() {
    let a = api(Some(TOKEN)).await;
    for path in [
        "/api/v1/watches",
        "/api/v1/events",
        "/api/v1/events/o3",
        "/api/v1/watches/drill/timeline",
        "/api/v1/deliveries",
    ] {
        let url = format!("{}{path}", a.base);
        let none = a.client.get(&url).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            none.headers()["www-authenticate"],
            "Bearer realm=\"dbswatch\""
        );
        let body = none.text().await.unwrap();
        assert!(!body.contains(TOKEN), "{body}");
        let wrong = a
            .client
            .get(&url)
            .bearer_auth("test-token-0123456789abcdeX")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let basic = a
            .client
            .get(&url)
            .basic_auth("x", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = a.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Probes and scrapers need no token.
    for path in ["/healthz", "/metrics"] {
        let r = a
            .client
            .get(format!("{}{path}", a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn without_a_token_the_api_is_open_on_loopback_and_refused_elsewhere() {
    let a = api(None).await;
    let r = a
        .client
        .get(format!("{}/api/v1/events", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let config = load(&a.dir, "");
    let state = ApiState::new(
        a.store.clone(),
        Arc::new(config),
        a.heartbeat.clone(),
        Clock::system(),
    );
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = server::serve(listener, state, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::Exposed(_)), "{err}");
    assert!(err.to_string().contains("without a token"), "{err}");
}

#[tokio::test]
async fn events_take_the_cli_filters() {
    let a = api(Some(TOKEN)).await;
    assert_eq!(a.uids("").await.len(), 11);
    let cases = [
        ("watch=orders-db", vec!["o5", "o4", "o3", "o2", "o1"]),
        ("plan=dbsplan02", vec!["b3", "b2", "b1"]),
        ("task=dbstask01&kind=restore.completed", vec!["d3"]),
        (
            "kind=*.failed&kind=restore.completed",
            vec!["d3", "b3", "o3"],
        ),
        (
            "kind=precheck.started,precheck.passed&since=7d",
            vec!["o5", "o4"],
        ),
        ("since=15d&until=5d", vec!["b3", "b2", "b1"]),
        ("limit=3", vec!["d3", "d2", "d1"]),
    ];
    for (query, expected) in cases {
        assert_eq!(a.uids(query).await, expected, "{query}");
    }
    for (query, says) in [
        ("kind=precheck.exploded", "matches no event kind"),
        ("since=whenever", "not a time"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=garbage", "cursor"),
        ("plan=a&task=b", "not both"),
        ("wacth=orders-db", "unknown parameter `wacth`"),
    ] {
        let (status, body) = a.get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    let v = a.json("/api/v1/events?watch=billing-db&limit=1").await;
    let e = &v["events"][0];
    assert_eq!(e["kind"], "precheck.failed");
    assert!(e["time"].as_str().unwrap().ends_with("+08:00"), "{e}");
    assert_eq!(e["deliveries"][0]["status"], "dead");
    assert!(v["next_cursor"].is_string());
}

#[tokio::test]
async fn pagination_neither_skips_nor_repeats_while_events_arrive() {
    let a = api(Some(TOKEN)).await;
    // 60 more events for one watch, several per poll (equal times), to page through.
    let t = drill();
    for i in 0..20 {
        let at = a.now - DAY + i * MINUTE;
        let events = (0..3)
            .map(|j| {
                event(
                    &format!("p{i}-{j}"),
                    "drill",
                    &t,
                    Change::ItemChanged,
                    at,
                    "running",
                    vec![item("CHECK_A", "finish")],
                )
            })
            .collect();
        poll(&a.store, "drill", &t, at, &format!("p{i}"), events, &[]).await;
    }
    let expected: Vec<String> = a.uids("limit=1000").await;
    assert_eq!(expected.len(), 71);

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=7&cursor={c}"),
            None => "limit=7".to_string(),
        };
        let v = a.json(&format!("/api/v1/events?{query}")).await;
        let page: Vec<String> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        seen.extend(page);
        pages += 1;
        // New events arrive between pages: one now, and one stamped with the time of the
        // last row served (a slow poll committing late). Neither belongs to this walk.
        let last_at = v["events"].as_array().unwrap().last().unwrap()["time_ms"]
            .as_i64()
            .unwrap();
        for (n, at) in [chrono::Utc::now().timestamp_millis(), last_at]
            .into_iter()
            .enumerate()
        {
            let uid = format!("new{pages}-{n}");
            poll(
                &a.store,
                "drill",
                &t,
                at,
                &uid,
                vec![event(
                    &uid,
                    "drill",
                    &t,
                    Change::Progress,
                    at,
                    "running",
                    vec![],
                )],
                &[],
            )
            .await;
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 11);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    assert_eq!(seen, expected, "every row once, in order");

    // Deliveries page the same way.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/deliveries?limit=2&cursor={c}"),
            None => "/api/v1/deliveries?limit=2".to_string(),
        };
        let v = a.json(&q).await;
        for d in v["deliveries"].as_array().unwrap() {
            ids.push(d["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 9);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 9);
}

#[tokio::test]
async fn one_event_watches_timeline_and_deliveries() {
    let a = api(Some(TOKEN)).await;
    let e = a.json("/api/v1/events/o3").await;
    assert_eq!(e["kind"], "precheck.failed");
    assert_eq!(e["prev_hash"].as_str().unwrap().len(), 64);
    let d = &e["deliveries"][0];
    assert_eq!(d["channel"], "ops-slack");
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempt_log"][0]["outcome"], "delivered");
    assert_eq!(d["attempt_log"][0]["http_status"], 200);
    assert!(
        d["attempt_log"][0]["at"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
    let (status, body) = a.get("/api/v1/events/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let w = a.json("/api/v1/watches").await;
    let list = w["watches"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders-db", "billing-db", "drill"]);
    let orders = &list[0];
    assert_eq!(orders["status"], "finish");
    assert_eq!(orders["last_event"]["kind"], "precheck.passed");
    assert_eq!(orders["target"]["id"], "dbsplan01");
    assert_eq!(orders["schedule"], "*/5 * * * *");

    let t = a.json("/api/v1/watches/orders-db/timeline?run=2").await;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["total_ms"], 5 * MINUTE);
    assert_eq!(t["runs"], 2);
    let (status, _) = a.get("/api/v1/watches/nobody/timeline").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = a.get("/api/v1/watches/drill/timeline?run=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let dead = a.json("/api/v1/deliveries?status=dead").await;
    let rows = dead["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["event_id"], "b3");
    assert_eq!(rows[0]["last_error"], "channel_not_found");
    let pending = a
        .json("/api/v1/deliveries?status=pending&channel=ops-slack")
        .await;
    assert_eq!(
        pending["deliveries"].as_array().unwrap().len(),
        4,
        "the started ones"
    );
    let (status, _) = a.get("/api/v1/deliveries?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = a.get("/api/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn secrets_never_appear_in_a_response() {
    let a = api(Some(TOKEN)).await;
    // A receiver error that quoted the webhook URL, stored without redaction (as an older
    // version or a bug might have): the API still scrubs it.
    let due = a.store.due_deliveries(i64::MAX, 10).await.unwrap();
    a.store
        .record_attempt(
            due[0].id,
            &AttemptWrite {
                attempted_at: a.now,
                duration_ms: 5,
                outcome: "retryable".into(),
                http_status: Some(500),
                vendor_code: None,
                error: Some(
                    "POST https://hooks.slack.com/services/T000/B000/SLACKSECRETTOKEN: 500".into(),
                ),
            },
            &DeliveryState::RetryAt(a.now + 1000),
        )
        .await
        .unwrap();
    let uid = due[0].event.id.clone();
    for path in [
        format!("/api/v1/events/{uid}"),
        "/api/v1/events".to_string(),
        "/api/v1/deliveries".to_string(),
        "/api/v1/watches".to_string(),
        "/metrics".to_string(),
        "/healthz".to_string(),
    ] {
        let (_, body) = a.get(&path).await;
        assert!(!body.contains("SLACKSECRETTOKEN"), "{path}: {body}");
        assert!(!body.contains(TOKEN), "{path}");
    }
    let (_, body) = a.get(&format!("/api/v1/events/{uid}")).await;
    assert!(
        body.contains("POST https://hooks.slack.com/services/T000/B000/***: 500")
            || body.contains("POST ***: 500"),
        "{body}"
    );
}

#[tokio::test]
async fn healthz_says_why_it_is_unhealthy() {
    let a = api(Some(TOKEN)).await;
    let health = |a: &Api| {
        let url = format!("{}/healthz", a.base);
        let client = a.client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = health(&a).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");

    // The scheduler stopped ticking six minutes ago.
    a.heartbeat
        .tick(chrono::Utc::now().timestamp_millis() - 6 * MINUTE);
    let (status, v) = health(&a).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("scheduler last ticked"),
        "{v}"
    );

    // Same last tick, but the loop said it sleeps until its next poll in two hours: idle, not
    // dead. Once that wake-up is more than five minutes overdue, it is dead again.
    let now = chrono::Utc::now().timestamp_millis();
    a.heartbeat.sleeping_until(Some(now + 120 * MINUTE));
    let (status, v) = health(&a).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["scheduler_next_wake"].is_string(), "{v}");
    // Announced after the last tick (which was six minutes ago), and now overdue.
    a.heartbeat.sleeping_until(Some(now - 6 * MINUTE + 30_000));
    let (status, v) = health(&a).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("was due to wake"),
        "{v}"
    );

    // The database stopped answering.
    a.heartbeat.tick(chrono::Utc::now().timestamp_millis());
    a.store.close().await;
    let (status, v) = health(&a).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["reasons"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["reasons"][0].as_str().unwrap().contains("database"),
        "{v}"
    );
}

#[tokio::test]
async fn the_scheduler_ticks_the_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let config = load(tmp.path(), "");
    let store = Store::open(&config.storage.database).await.unwrap();
    let app = App::with_store(config, store, Clock::manual(5_000)).unwrap();
    let heartbeat = Arc::new(Heartbeat::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(dbswatch::scheduler::run_observed(
        app,
        shutdown.clone(),
        heartbeat.clone(),
    ));
    for _ in 0..100 {
        if heartbeat.last_tick_ms().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(heartbeat.last_tick_ms(), Some(5_000));
    shutdown.cancel();
    task.await.unwrap();
}

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser for the Prometheus text format 0.0.4: every line is a `# HELP`, a `# TYPE`
/// or a sample; names and label names match the grammar; label values are quoted with only
/// `\\`, `\"` and `\n` escapes; values are floats, `+Inf`, `-Inf` or `NaN`; each family has one
/// HELP and one TYPE, before its samples, and its samples are contiguous; histogram series have
/// cumulative buckets ending in `+Inf` equal to `_count`. Returns the samples by family.
fn parse_prometheus(text: &str) -> BTreeMap<String, (String, Vec<Sample>)> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn is_label(s: &str) -> bool {
        is_name(s) && !s.contains(':') && !s.starts_with("__")
    }
    fn value(s: &str) -> f64 {
        match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => s.parse().unwrap_or_else(|_| panic!("bad value `{s}`")),
        }
    }
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut families: BTreeMap<String, (String, Vec<Sample>)> = BTreeMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut closed: HashSet<String> = HashSet::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').expect("HELP has text");
            assert!(is_name(name), "{line}");
            assert!(helped.insert(name.to_string()), "second HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(is_name(name), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(!families.contains_key(name), "second TYPE: {line}");
            if let Some(c) = current.replace(name.to_string()) {
                closed.insert(c);
            }
            families.insert(name.to_string(), (kind.to_string(), Vec::new()));
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        // name{labels} value
        let (series, val) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(is_label(&key), "label name `{key}` in {line}");
                    assert_eq!(chars.next(), Some('"'), "quoted value in {line}");
                    let mut v = String::new();
                    loop {
                        match chars.next().expect("unterminated label value") {
                            '\\' => match chars.next() {
                                Some('\\') => v.push('\\'),
                                Some('"') => v.push('"'),
                                Some('n') => v.push('\n'),
                                other => panic!("bad escape {other:?} in {line}"),
                            },
                            '"' => break,
                            '\n' => panic!("raw newline in {line}"),
                            c => v.push(c),
                        }
                    }
                    assert!(labels.insert(key, v).is_none(), "duplicate label in {line}");
                    match chars.next() {
                        Some(',') | None => {}
                        other => panic!("expected , got {other:?} in {line}"),
                    }
                }
                (n, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(is_name(name), "{line}");
        let family = current.clone().expect("sample after a TYPE");
        let kind = &families[&family].0;
        let ok_name = if kind == "histogram" {
            [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_string())
        } else {
            name == family
        };
        assert!(ok_name, "sample {name} outside its family {family}");
        assert!(!closed.contains(&family));
        if name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "bucket without le: {line}");
        }
        let sample = Sample {
            name: name.to_string(),
            labels,
            value: value(val),
        };
        families.get_mut(&family).unwrap().1.push(sample);
    }
    for (family, (kind, samples)) in &families {
        if kind == "counter" {
            assert!(samples.iter().all(|s| s.value >= 0.0), "{family}");
        }
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
        for s in samples {
            let key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push(s);
        }
        for (key, samples) in series {
            let buckets: Vec<&&Sample> = samples
                .iter()
                .filter(|s| s.name.ends_with("_bucket"))
                .collect();
            let mut last = 0.0;
            let mut last_le = f64::NEG_INFINITY;
            for b in &buckets {
                let le = value(&b.labels["le"]);
                assert!(le > last_le, "buckets in order: {key:?}");
                assert!(b.value >= last, "cumulative: {key:?}");
                last = b.value;
                last_le = le;
            }
            assert!(last_le.is_infinite(), "+Inf bucket: {key:?}");
            let count = samples.iter().find(|s| s.name.ends_with("_count")).unwrap();
            assert_eq!(count.value, last, "+Inf equals _count: {key:?}");
            assert!(samples.iter().any(|s| s.name.ends_with("_sum")));
        }
    }
    families
}

/// The value of the sample called `name` (a family, or a histogram's `_bucket`, `_sum`,
/// `_count`) with these labels.
fn value_of(
    f: &BTreeMap<String, (String, Vec<Sample>)>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    f.values()
        .flat_map(|(_, samples)| samples.iter())
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let a = api(Some(TOKEN)).await;
    a.store
        .record_poll_error(
            "orders-db",
            a.now,
            12_000,
            Some("Throttling.User"),
            "slow down",
        )
        .await
        .unwrap();
    let r = a
        .client
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let f = parse_prometheus(&text);
    for family in [
        "dbswatch_polls_total",
        "dbswatch_poll_duration_seconds",
        "dbswatch_events_total",
        "dbswatch_deliveries_total",
        "dbswatch_outbox_depth",
        "dbswatch_last_successful_poll_age_seconds",
        "dbswatch_chain_verify_ok",
        "dbswatch_scheduler_last_tick_age_seconds",
    ] {
        assert!(f.contains_key(family), "{family} missing:\n{text}");
    }
    assert_eq!(
        value_of(
            &f,
            "dbswatch_polls_total",
            &[("watch", "orders-db"), ("outcome", "changed")]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &f,
            "dbswatch_polls_total",
            &[("watch", "orders-db"), ("outcome", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &f,
            "dbswatch_polls_total",
            &[("watch", "drill"), ("outcome", "unchanged")]
        ),
        Some(0.0),
        "every configured watch has every outcome"
    );
    assert_eq!(
        value_of(
            &f,
            "dbswatch_poll_duration_seconds_bucket",
            &[("watch", "orders-db"), ("le", "10")]
        ),
        Some(5.0),
        "four 0.12 s polls and one 12 s error under 10 s: {text}"
    );
    assert_eq!(
        value_of(
            &f,
            "dbswatch_poll_duration_seconds_count",
            &[("watch", "orders-db")]
        ),
        Some(6.0)
    );
    assert_eq!(
        value_of(&f, "dbswatch_events_total", &[("kind", "precheck.failed")]),
        Some(2.0)
    );
    assert_eq!(
        value_of(
            &f,
            "dbswatch_deliveries_total",
            &[("channel", "ops-slack"), ("outcome", "permanent")]
        ),
        Some(1.0)
    );
    assert_eq!(value_of(&f, "dbswatch_outbox_depth", &[]), Some(4.0));
    assert_eq!(value_of(&f, "dbswatch_outbox_dead", &[]), Some(1.0));
    let age = value_of(
        &f,
        "dbswatch_last_successful_poll_age_seconds",
        &[("watch", "drill")],
    )
    .unwrap();
    assert!(
        (1790.0..1900.0).contains(&age),
        "the drill last answered 30 minutes ago: {age}"
    );
    assert!(
        value_of(&f, "dbswatch_chain_verify_ok", &[]).is_none(),
        "no verification yet"
    );

    // After a verification that finds tampering, /metrics says so.
    let db = a.dir.join("audit.db");
    sqlite3(&db, "UPDATE events SET status = 'finish' WHERE uid = 'o3';").await;
    let report = a.store.verify_chain(a.now).await.unwrap();
    assert!(!report.verdict.ok());
    let text = a
        .client
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let f = parse_prometheus(&text);
    assert_eq!(value_of(&f, "dbswatch_chain_verify_ok", &[]), Some(0.0));
    assert_eq!(
        value_of(&f, "dbswatch_chain_verify_problems", &[]),
        Some(1.0)
    );
    assert_eq!(
        value_of(&f, "dbswatch_chain_verify_events", &[]),
        Some(11.0)
    );
}

#[test]
fn the_parser_rejects_what_prometheus_rejects() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{w=\"a\\\"b\"} 1\n";
    assert_eq!(parse_prometheus(good)["a_total"].1[0].labels["w"], "a\"b");
    for bad in [
        "a_total 1\n",                                   // no TYPE
        "# HELP a x\n# TYPE a counter\na{w=\"x} 1\n",    // unterminated
        "# HELP a x\n# TYPE a counter\na{1w=\"x\"} 1\n", // bad label name
        "# HELP a x\n# TYPE a counter\na one\n",         // bad value
        "# HELP a x\n# TYPE a counter\nb 1\n",           // outside its family
        "# HELP a x\n# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\na_sum 1\na_count 1\n",
    ] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted: {bad}");
    }
}
