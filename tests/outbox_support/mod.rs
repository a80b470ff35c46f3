//! A chat receiver for delivery tests: an in-process axum server on 127.0.0.1 that answers each
//! path from a script (status, body, headers, a delay) and records what it got, with the time on
//! the product's clock and the idempotency id (`webhook-id` header or DingTalk `msgUuid`), so a
//! test can play a receiver that deduplicates.
//!
//! It runs on the test's own runtime, so under paused tokio time its delays are virtual too.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dbswatch::pipeline::Clock;
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with `body`, at once.
    pub fn new(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer with a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same answer, after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// DingTalk's success.
    pub fn ding_ok() -> Reply {
        Reply::new(200, r#"{"errcode":0,"errmsg":"ok"}"#)
    }
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path.
    pub path: String,
    /// When, on the product's clock (epoch ms).
    pub at_ms: i64,
    /// `webhook-id`, else the body's `msgUuid`.
    pub id: Option<String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

#[derive(Default)]
struct Inner {
    /// Path -> answers in order; the last one repeats.
    scripts: HashMap<String, Vec<Reply>>,
    served: HashMap<String, usize>,
    log: Vec<Received>,
}

/// The receiver. Dropping it does not stop the server; it lives as long as the runtime.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Listen on 127.0.0.1:0; `clock` stamps what arrives.
    pub async fn start(clock: Clock) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .fallback(handle)
            .with_state((inner.clone(), clock));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `path` with `replies`, one per request; the last one repeats.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        let mut inner = self.inner.lock().unwrap();
        inner.scripts.insert(path.to_string(), replies);
        inner.served.remove(path);
    }

    /// Everything received on `path`, in order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        let inner = self.inner.lock().unwrap();
        inner
            .log
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// What a receiver that drops repeated idempotency ids shows: the first request of each id.
    pub fn shown(&self, path: &str) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.received(path)
            .into_iter()
            .filter(|r| seen.insert(r.id.clone()))
            .collect()
    }
}

async fn handle(
    State((inner, clock)): State<(Arc<Mutex<Inner>>, Clock)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let text = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| json["msgUuid"].as_str().map(String::from));
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.log.push(Received {
            path: path.clone(),
            at_ms: clock.now_ms(),
            id,
            body: json,
            text,
        });
        let n = *inner.served.entry(path.clone()).or_insert(0);
        inner.served.insert(path.clone(), n + 1);
        match inner.scripts.get(&path) {
            Some(replies) if !replies.is_empty() => replies[n.min(replies.len() - 1)].clone(),
            _ => Reply::new(404, "no script for this path"),
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        reply.body.clone(),
    )
        .into_response();
    for (name, value) in &reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}

/// Lets paused tokio time run in 50 ms steps, each paced by a short real pause.
///
/// Why: SQLite work happens on sqlx's own worker thread. While the runtime waits for it, it is
/// idle, and paused time would jump straight to the next timer, which can be the pool's
/// 30-second acquire timeout. With this tick pending, virtual time moves in small steps that
/// each cost a little real time, so every timer fires in order, a database wait of a few real
/// milliseconds is a fraction of a virtual second, and a receiver's 2-second hang still
/// outlasts the client's 1-second timeout. Open the store before pausing time: running the
/// migrations takes long enough to matter.
pub fn keep_virtual_time_in_small_steps() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Deliberately blocking: this is what paces virtual time against real time.
            std::thread::sleep(Duration::from_micros(50));
        }
    })
}

/// A port on 127.0.0.1 where nothing listens: connections are refused.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}
