//! `dbswatch demo`: the offline tour.
//!
//! Starts the DBS double (which checks every request signature) and a chat sink on 127.0.0.1,
//! writes a real config file into a temporary folder, and drives the real pipeline through a
//! few poll cycles: client, store, diff, routing, templates and senders are the production code.
//! The sink plays Slack, DingTalk and a Standard Webhooks receiver, verifies their signatures,
//! and the tour prints each message as the receiver got it, then the audit history.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

use crate::config;
use crate::history;
use crate::notify;
use crate::pipeline::{App, Clock};
use crate::simulate::{self, DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, Scenario};
use crate::store::HistoryFilter;

const DINGTALK_SECRET: &str = "SECdemo0000000000000000000000000000000000000000000000000000000000";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const POLL_CYCLES: usize = 4;

/// Run the tour; exit 0 when every step worked.
pub async fn run() -> ExitCode {
    match tour().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    channel: &'static str,
    path: String,
    body: String,
    check: String,
}

#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().expect("sink lock"))
    }
}

async fn sink_handler(
    State(sink): State<Sink>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    let text = String::from_utf8_lossy(&body).to_string();
    let now = chrono::Utc::now().timestamp();
    let (channel, check, response): (&'static str, String, (StatusCode, String)) =
        if method != Method::POST {
            (
                "?",
                "not a POST".into(),
                (StatusCode::METHOD_NOT_ALLOWED, String::new()),
            )
        } else if path.starts_with("/dingtalk") {
            let query: Vec<(String, String)> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), percent_decode(v)))
                .collect();
            let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let ok = match (get("timestamp"), get("sign")) {
                (Some(ts), Some(sign)) => ts
                    .parse::<i64>()
                    .is_ok_and(|ts| notify::dingtalk_sign(DINGTALK_SECRET, ts) == sign),
                _ => false,
            };
            let check = if ok {
                "timestamp+sign verified".to_string()
            } else {
                "SIGNATURE INVALID".to_string()
            };
            let reply = if ok {
                r#"{"errcode":0,"errmsg":"ok"}"#
            } else {
                r#"{"errcode":310000,"errmsg":"sign not match"}"#
            };
            ("dingtalk", check, (StatusCode::OK, reply.to_string()))
        } else if path.starts_with("/slack") {
            let ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            let reply = if ok { "ok" } else { "invalid_payload" };
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            (
                "slack",
                format!("valid JSON: {ok}"),
                (status, reply.to_string()),
            )
        } else {
            let ok = notify::verify_webhook_headers(WEBHOOK_SECRET, &headers, &body, now);
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let check = if ok {
                format!("Standard Webhooks signature verified, webhook-id {id}")
            } else {
                "SIGNATURE INVALID".to_string()
            };
            let status = if ok {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::UNAUTHORIZED
            };
            ("webhook", check, (status, String::new()))
        };
    sink.received.lock().expect("sink lock").push(Received {
        channel,
        path,
        body: text,
        check,
    });
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn demo_config(dbs: &str, sink: &str, database: &str) -> String {
    format!(
        r#"# Written by `dbswatch demo`: the same file format as a real deployment.
[storage]
database = "{database}"

[aliyun]
access_key_id = "{DEMO_ACCESS_KEY_ID}"
access_key_secret = "{DEMO_ACCESS_KEY_SECRET}"
region = "cn-hangzhou"
endpoint = "{dbs}"          # the DBS double instead of dbs-api.cn-hangzhou.aliyuncs.com
max_retries = 0

[delivery]
retry_base_secs = 1

[[watch]]
name = "orders-db"
backup_plan_id = "dbsdemo0precheck"
schedule = "*/30 * * * * *"
channels = ["ops-dingtalk", "ops-slack", "audit"]

[[watch]]
name = "billing-db"
backup_plan_id = "dbsdemo0passes"
schedule = "*/5 * * * *"
channels = ["ops-slack", "audit"]

[[watch]]
name = "restore-drill"
restore_task_id = "dbsdemo0restore"
schedule = "*/1 * * * *"
channels = ["ops-dingtalk", "ops-slack", "audit"]

[[channel]]
name = "ops-dingtalk"
type = "dingtalk"
url = "{sink}/dingtalk/robot/send?access_token=demo-token"
secret = "{DINGTALK_SECRET}"
at_mobiles = ["13800000000"]
events = ["*.failed", "restore.completed"]

[[channel]]
name = "ops-slack"
type = "slack"
url = "{sink}/slack/services/T000/B000/demo"

[[channel]]
name = "audit"
type = "webhook"
url = "{sink}/webhook/dbs"
secret = "{WEBHOOK_SECRET}"
"#
    )
}

async fn tour() -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;

    let dbs_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the DBS double")?;
    let dbs_addr = dbs_listener.local_addr()?;
    let (stop_dbs, dbs_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(simulate::serve(
        dbs_listener,
        Scenario::builtin_demo(),
        async move {
            let _ = dbs_stopped.await;
        },
    ));

    let sink = Sink::default();
    let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the chat sink")?;
    let sink_addr = sink_listener.local_addr()?;
    let app_router = Router::new()
        .fallback(sink_handler)
        .with_state(sink.clone());
    tokio::spawn(async move {
        let _ = axum::serve(sink_listener, app_router).await;
    });

    let db_path = dir.path().join("dbswatch.db");
    let config_path = dir.path().join("dbswatch.toml");
    std::fs::write(
        &config_path,
        demo_config(
            &format!("http://{dbs_addr}"),
            &format!("http://{sink_addr}"),
            &db_path.display().to_string().replace('\\', "/"),
        ),
    )?;
    let config = config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config_text = std::fs::read_to_string(&config_path)?;

    println!("dbswatch demo — the whole pipeline, offline");
    println!("  DBS double (verifies every signature): http://{dbs_addr}");
    println!("  chat sink (Slack, DingTalk, webhook):  http://{sink_addr}");
    println!("  config:   {}", config_path.display());
    println!("  database: {}", db_path.display());
    println!(
        "  watches:  orders-db (pre-check that fails), billing-db (pre-check that passes), \
         restore-drill (restore that completes)"
    );
    println!(
        "  clock:    simulated, 30 s per poll cycle (times shown are that clock's; the tour \
         itself takes a few seconds)"
    );

    println!();
    println!("─── the config file it runs with ───");
    for line in config_text.lines() {
        println!("  {line}");
    }
    // The tour runs on its own clock, half a minute per cycle, so Slack's one message a second
    // is kept without making anyone wait.
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let app = App::new(config, clock.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut problems = Vec::new();
    for cycle in 1..=POLL_CYCLES {
        println!();
        println!("═══ poll cycle {cycle} of {POLL_CYCLES} ═══");
        for r in app.poll_many(None).await {
            match (&r.outcome, &r.error) {
                (_, Some(e)) => {
                    println!("  {:<14} poll failed: {e}", r.watch);
                    problems.push(format!("{}: {e}", r.watch));
                }
                (Some(outcome), None) => {
                    let outcome = serde_json::to_value(outcome)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let kinds: Vec<String> = r.events.iter().map(|e| e.kind()).collect();
                    println!(
                        "  {:<14} {:<9} {}",
                        r.watch,
                        outcome,
                        if kinds.is_empty() {
                            "no events".to_string()
                        } else {
                            kinds.join(", ")
                        }
                    );
                }
                (None, None) => {}
            }
        }
        let mut waited = 0;
        loop {
            let delivered = app
                .deliver_due()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            problems.extend(delivered.failures.iter().cloned());
            if delivered.postponed == 0 {
                break;
            }
            // A receiver's rate limit held messages back: they wait in the outbox.
            waited += 1;
            clock.advance(std::time::Duration::from_secs(1));
        }
        if waited > 0 {
            println!(
                "  (for {waited} s some messages waited in the outbox for a receiver's rate \
                 limit: Slack takes about one message a second)"
            );
        }
        clock.advance(std::time::Duration::from_secs(30));
        for msg in sink.take() {
            println!();
            println!(
                "  ▶ {} received POST {} [{}]",
                msg.channel, msg.path, msg.check
            );
            if msg.check.contains("INVALID") {
                problems.push(format!("{}: {}", msg.channel, msg.check));
            }
            let pretty = serde_json::from_str::<serde_json::Value>(&msg.body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(msg.body.clone());
            for line in pretty.lines() {
                println!("    {line}");
            }
        }
    }

    println!();
    println!("═══ dbswatch history ═══");
    let entries = app
        .store
        .history(&HistoryFilter::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{}", history::table(&entries));
    app.store.close().await;
    let _ = stop_dbs.send(());

    println!();
    if problems.is_empty() {
        println!(
            "Demo finished: {} events stored, every message delivered and its signature verified.",
            entries.len()
        );
        println!(
            "Next: start from the config printed above: drop `endpoint`, set your AccessKey and \
             your channels' URLs, run `dbswatch check-config`, then `dbswatch run`."
        );
        Ok(())
    } else {
        anyhow::bail!("{} problem(s): {}", problems.len(), problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_signs() {
        assert_eq!(percent_decode("a%2Bb%3D"), "a+b=");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn the_demo_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            demo_config("http://127.0.0.1:1", "http://127.0.0.1:2", "x.db"),
        )
        .unwrap();
        let c = config::load(&path).unwrap();
        assert_eq!(c.watches.len(), 3);
        assert_eq!(c.channels.len(), 3);
    }
}
