//! The HTTP side of `dbswatch run --listen`: `/healthz`, `/metrics` and a read-only JSON API.
//!
//! - `/healthz`: 200 when the scheduler is not late for the wake-up it announced (an idle
//!   loop may sleep for hours) and the database answers, else 503 with the reason. It does not depend on the hash chain (a broken chain is an audit finding,
//!   not a reason to restart the process).
//! - `/metrics`: Prometheus text format (see [`metrics`]).
//! - `/api/v1/watches`, `/api/v1/events` (the CLI's filters, cursor pagination),
//!   `/api/v1/events/{id}`, `/api/v1/watches/{name}/timeline`, `/api/v1/deliveries`.
//!
//! `/api/*` needs `Authorization: Bearer <token>` when a token is configured; the token is
//! compared in constant time. Nothing here writes. Every response body passes through the
//! configuration's [`Redactor`], on top of secrets never being stored in the first place.

pub mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::Heartbeat;
use crate::audit::when;
use crate::commands::queries::{self, FilterInput};
use crate::config::Config;
use crate::history;
use crate::pipeline::Clock;
use crate::secret::{Redactor, Secret};
use crate::store::{Cursor, DeliveryFilter, Store};

/// Page size when a client names none.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page a client can ask for.
pub const MAX_LIMIT: i64 = 1_000;
/// How long `/healthz` waits for the database before calling it unhealthy.
const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The database (the daemon's own handle).
    pub store: Store,
    /// The configuration (watches, time zone).
    pub config: Arc<Config>,
    /// The scheduler's heartbeat.
    pub heartbeat: Arc<Heartbeat>,
    /// Required bearer token for `/api/*`, if any.
    pub token: Option<Secret>,
    /// Scrubs secrets from every body.
    pub redactor: Redactor,
    /// The time source.
    pub clock: Clock,
}

impl ApiState {
    /// State for `config`, with the token from `[server] token`.
    pub fn new(store: Store, config: Arc<Config>, heartbeat: Arc<Heartbeat>, clock: Clock) -> Self {
        ApiState {
            token: config.server.token.clone(),
            redactor: config.redactor(),
            store,
            config,
            heartbeat,
            clock,
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding a non-loopback address without a token.
    #[error("{0}")]
    Exposed(String),
    /// The socket.
    #[error("cannot serve HTTP on {addr}: {source}; is another process using the port?")]
    Io {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The routes. Public so tests can drive them in-process.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/watches", get(watches))
        .route("/api/v1/watches/{name}/timeline", get(timeline))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{id}", get(event))
        .route("/api/v1/deliveries", get(deliveries))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .merge(api)
        .fallback(not_found)
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves. Refuses a non-loopback address without a
/// token: the API shows what happened to which database, which is not for everyone.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: "?".into(),
        source,
    })?;
    if let Some(problem) = crate::config::server_exposure_problem(&addr, state.token.as_ref()) {
        return Err(ServeError::Exposed(problem));
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io {
            addr: addr.to_string(),
            source,
        })
}

/// A JSON answer, scrubbed of any known secret.
fn json_response(state: &ApiState, status: StatusCode, value: &Value) -> Response {
    let body = state.redactor.redact(&value.to_string());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error(state: &ApiState, status: StatusCode, message: impl Into<String>) -> Response {
    json_response(state, status, &json!({ "error": message.into() }))
}

fn internal(state: &ApiState, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %state.redactor.redact(&e.to_string()), "API query failed");
    error(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the query failed: {e}"),
    )
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| same_secret(g, token.expose()));
        if !ok {
            let mut response = error(
                &state,
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token: send Authorization: Bearer <[server] token>",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dbswatch\""),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Constant-time comparison (over digests, so lengths do not leak either).
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn not_found(State(state): State<ApiState>) -> Response {
    error(
        &state,
        StatusCode::NOT_FOUND,
        "no such endpoint; see /healthz, /metrics and /api/v1/{watches,events,deliveries}",
    )
}

async fn healthz(State(state): State<ApiState>) -> Response {
    let now = state.clock.now_ms();
    let scheduler = state.heartbeat.check(now);
    let database = match tokio::time::timeout(DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the database does not answer: {e}")),
        Err(_) => Err(format!(
            "the database did not answer within {} s",
            DB_TIMEOUT.as_secs()
        )),
    };
    let reasons: Vec<String> = [&scheduler, &database]
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        &state,
        status,
        &json!({
            "status": if reasons.is_empty() { "ok" } else { "unhealthy" },
            "reasons": reasons,
            "scheduler_last_tick": state.heartbeat.last_tick_ms()
                .and_then(|ms| when::rfc3339(ms, state.config.timezone)),
            "scheduler_next_wake": state.heartbeat.next_wake_ms()
                .and_then(|ms| when::rfc3339(ms, state.config.timezone)),
        }),
    )
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    match metrics::render(&state).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            state.redactor.redact(&text),
        )
            .into_response(),
        Err(e) => internal(&state, e),
    }
}

async fn watches(State(state): State<ApiState>) -> Response {
    let summaries = match state.store.watch_summaries().await {
        Ok(s) => s,
        Err(e) => return internal(&state, e),
    };
    let tz = state.config.timezone;
    let time = |ms: Option<i64>| ms.and_then(|ms| when::rfc3339(ms, tz));
    let mut out: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for w in &state.config.watches {
        seen.push(&w.name);
        let s = summaries.iter().find(|s| s.watch == w.name);
        out.push(json!({
            "name": w.name,
            "configured": true,
            "target": {"type": w.target.type_name(), "id": w.target.id()},
            "schedule": w.schedule.expr(),
            "channels": w.channels,
            "status": s.and_then(|s| s.status.clone()),
            "progress": s.and_then(|s| s.progress),
            "changed_at": time(s.and_then(|s| s.changed_at_ms)),
            "last_ok_poll_at": time(s.and_then(|s| s.last_ok_at_ms)),
            "last_poll": s.map(|s| json!({
                "outcome": s.last_poll_outcome,
                "at": time(s.last_poll_at_ms),
                "error": s.last_poll_error,
            })),
            "last_event": s.and_then(|s| s.last_event_kind.as_ref().map(|k| json!({
                "kind": k,
                "at": time(s.last_event_at_ms),
            }))),
        }));
    }
    for s in summaries
        .iter()
        .filter(|s| !seen.contains(&s.watch.as_str()))
    {
        out.push(json!({
            "name": s.watch,
            "configured": false,
            "target": s.target.as_ref().map(|t| json!({"type": t.type_name(), "id": t.id()})),
            "status": s.status,
            "progress": s.progress,
            "changed_at": time(s.changed_at_ms),
            "last_ok_poll_at": time(s.last_ok_at_ms),
        }));
    }
    json_response(&state, StatusCode::OK, &json!({ "watches": out }))
}

/// Read `limit` and `cursor`-style parameters shared by the listings.
fn limit_param(params: &[(String, String)]) -> Result<i64, String> {
    match params.iter().rev().find(|(k, _)| k == "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some((_, v)) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!("limit must be a number from 1 to {MAX_LIMIT}")),
        },
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

const EVENT_PARAMS: [&str; 8] = [
    "watch", "plan", "task", "kind", "since", "until", "limit", "cursor",
];

async fn events(
    State(state): State<ApiState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some((k, _)) = params
        .iter()
        .find(|(k, _)| !EVENT_PARAMS.contains(&k.as_str()))
    {
        return error(
            &state,
            StatusCode::BAD_REQUEST,
            format!(
                "unknown parameter `{k}`; known: {}",
                EVENT_PARAMS.join(", ")
            ),
        );
    }
    let input = FilterInput {
        watch: param(&params, "watch").map(String::from),
        plan: param(&params, "plan").map(String::from),
        task: param(&params, "task").map(String::from),
        kinds: params
            .iter()
            .filter(|(k, _)| k == "kind")
            .map(|(_, v)| v.clone())
            .collect(),
        since: param(&params, "since").map(String::from),
        until: param(&params, "until").map(String::from),
    };
    let tz = state.config.timezone;
    let mut filter = match queries::parse_filter(&input, state.clock.now_ms(), tz) {
        Ok(f) => f,
        Err(e) => return error(&state, StatusCode::BAD_REQUEST, e.to_string()),
    };
    filter.limit = match limit_param(&params) {
        Ok(n) => n,
        Err(e) => return error(&state, StatusCode::BAD_REQUEST, e),
    };
    if let Some(c) = param(&params, "cursor") {
        match Cursor::decode(c) {
            Some(c) => filter.cursor = Some(c),
            None => {
                return error(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "cursor is not one this server gave out; start again without it",
                );
            }
        }
    }
    match state.store.events_page(&filter).await {
        Ok(page) => json_response(
            &state,
            StatusCode::OK,
            &json!({
                "events": page.entries.iter().map(|e| history::json_value(e, tz)).collect::<Vec<_>>(),
                "next_cursor": page.next.map(|c| c.encode()),
            }),
        ),
        Err(e) => internal(&state, e),
    }
}

async fn event(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let tz = state.config.timezone;
    match state.store.event_detail(&id).await {
        Ok(Some((entry, prev_hash, deliveries))) => {
            let mut value = history::json_value(&entry, tz);
            value["prev_hash"] = json!(prev_hash);
            value["deliveries"] = json!(
                deliveries
                    .iter()
                    .map(|d| delivery_json(d, tz))
                    .collect::<Vec<_>>()
            );
            json_response(&state, StatusCode::OK, &value)
        }
        Ok(None) => error(&state, StatusCode::NOT_FOUND, format!("no event `{id}`")),
        Err(e) => internal(&state, e),
    }
}

fn delivery_json(d: &crate::store::DeliveryRow, tz: chrono_tz::Tz) -> Value {
    let time = |ms: Option<i64>| ms.and_then(|ms| when::rfc3339(ms, tz));
    json!({
        "id": d.delivery_uid,
        "event_id": d.event_id,
        "kind": d.kind,
        "watch": d.watch,
        "channel": d.channel,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": time(Some(d.created_at_ms)),
        "delivered_at": time(d.delivered_at_ms),
        "next_attempt_at": time(d.next_attempt_at_ms),
        "attempt_log": d.attempt_log.iter().map(|a| json!({
            "at": time(Some(a.attempted_at_ms)),
            "duration_ms": a.duration_ms,
            "outcome": a.outcome,
            "http_status": a.http_status,
            "vendor_code": a.vendor_code,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

async fn deliveries(
    State(state): State<ApiState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let limit = match limit_param(&params) {
        Ok(n) => n,
        Err(e) => return error(&state, StatusCode::BAD_REQUEST, e),
    };
    let status = param(&params, "status").map(String::from);
    if let Some(s) = &status
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return error(
            &state,
            StatusCode::BAD_REQUEST,
            "status must be pending, delivered or dead",
        );
    }
    let before_id = match param(&params, "cursor") {
        None => None,
        Some(c) => match c.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return error(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "cursor is not one this server gave out; start again without it",
                );
            }
        },
    };
    let filter = DeliveryFilter {
        channel: param(&params, "channel").map(String::from),
        status,
        limit,
        before_id,
    };
    let tz = state.config.timezone;
    match state.store.deliveries_page(&filter).await {
        Ok(page) => json_response(
            &state,
            StatusCode::OK,
            &json!({
                "deliveries": page.rows.iter().map(|d| delivery_json(d, tz)).collect::<Vec<_>>(),
                "next_cursor": page.next_before.map(|id| id.to_string()),
            }),
        ),
        Err(e) => internal(&state, e),
    }
}

async fn timeline(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let run = match param(&params, "run").map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            return error(
                &state,
                StatusCode::BAD_REQUEST,
                "run must be 1 (the latest), 2 (the one before), ...",
            );
        }
    };
    let tz = state.config.timezone;
    match queries::timeline_of(&state.store, &name, run, state.clock.now_ms()).await {
        Ok(Some(t)) => json_response(&state, StatusCode::OK, &timeline_json(&t, tz)),
        Ok(None) => error(
            &state,
            StatusCode::NOT_FOUND,
            format!("no run {run} stored for watch `{name}`"),
        ),
        Err(e) => internal(&state, e),
    }
}

/// The JSON form of a timeline: the struct, plus times in the configured zone.
pub fn timeline_json(t: &crate::audit::timeline::Timeline, tz: chrono_tz::Tz) -> Value {
    let time = |ms: i64| when::rfc3339(ms, tz);
    let segments = |s: &[crate::audit::timeline::Segment]| -> Vec<Value> {
        s.iter()
            .map(|s| {
                json!({
                    "state": s.state,
                    "entered_at": time(s.entered_at_ms),
                    "duration_ms": s.duration_ms,
                    "already": s.already,
                })
            })
            .collect()
    };
    json!({
        "watch": t.watch,
        "target": {"type": t.target.type_name(), "id": t.target.id()},
        "scope": t.scope,
        "run": t.run,
        "runs": t.runs,
        "started_at": time(t.started_at_ms),
        "ended_at": t.ended_at_ms.and_then(time),
        "status": t.status,
        "ongoing": t.ongoing,
        "total_ms": t.total_ms,
        "dbs_span": t.dbs_span_ms.map(|(b, f)| json!({
            "boot": time(b), "finish": time(f), "duration_ms": f - b,
        })),
        "status_history": segments(&t.status_history),
        "progress": t.progress.iter().map(|p| json!({"at": time(p.at_ms), "progress": p.progress}))
            .collect::<Vec<_>>(),
        "items": t.items.iter().map(|i| json!({
            "code": i.code,
            "group": i.group,
            "job_id": i.job_id,
            "order": i.order,
            "error": i.error,
            "boot_time": i.boot_time_ms.and_then(time),
            "finish_time": i.finish_time_ms.and_then(time),
            "states": segments(&i.states),
        })).collect::<Vec<_>>(),
        "note": t.note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!same_secret("abcdefghijklmnoq", "abcdefghijklmnop"));
        assert!(!same_secret("abc", "abcdefghijklmnop"));
        assert!(!same_secret("", "abcdefghijklmnop"));
    }

    #[test]
    fn limits_are_bounded() {
        let p = |v: &str| vec![("limit".to_string(), v.to_string())];
        assert_eq!(limit_param(&[]), Ok(DEFAULT_LIMIT));
        assert_eq!(limit_param(&p("5")), Ok(5));
        assert!(limit_param(&p("0")).is_err());
        assert!(limit_param(&p("1001")).is_err());
        assert!(limit_param(&p("x")).is_err());
    }
}
