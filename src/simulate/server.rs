//! The HTTP side of the double: the gateway's checks in the gateway's order, then the script.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::debug;

use super::scenario::{Scenario, Step};
use crate::dbs::lists::{JOB_ERROR_CODE, LIST_BACKUP_PLANS, LIST_RESTORE_TASKS};
use crate::dbs::response::SERVER_STRING_TO_SIGN_MARKER;
use crate::dbs::sign::{Verification, parse_query, verify};
use crate::dbs::{ACTION, API_VERSION};
use crate::snapshot::Target;

/// How far a request's `Timestamp` may be from the server clock, as on the real gateway.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// The parameters the gateway insists on, in the order it reports them missing.
const REQUIRED: [&str; 8] = [
    "Action",
    "Version",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
];

/// The actions the double answers.
pub const ACTIONS: [&str; 4] = [
    ACTION,
    LIST_BACKUP_PLANS,
    LIST_RESTORE_TASKS,
    JOB_ERROR_CODE,
];

/// Shared by the handlers and by [`SimServer`]'s counters.
#[derive(Debug)]
struct SimState {
    scenario: Scenario,
    served: Mutex<HashMap<Target, usize>>,
    nonces: Mutex<NonceLog>,
    /// Each target's replies, ready to send (looked up by hash, not by scanning the scenario).
    replies: HashMap<Target, Vec<Prepared>>,
    requests: AtomicUsize,
    rejected: AtomicUsize,
    calls: Mutex<HashMap<String, usize>>,
    /// `DescribeBackupPlanList` listings started (requests for page 0).
    listings: AtomicUsize,
    /// How many times each restore task was queried by id.
    task_plays: Mutex<HashMap<String, usize>>,
}

impl SimState {
    fn new(scenario: Scenario) -> SimState {
        let replies = scenario
            .targets()
            .into_iter()
            .filter_map(|(target, _)| {
                let steps = scenario.steps(&target)?;
                let prepared = steps.iter().map(Prepared::new).collect();
                Some((target, prepared))
            })
            .collect();
        SimState {
            scenario,
            served: Mutex::new(HashMap::new()),
            nonces: Mutex::new(NonceLog::default()),
            replies,
            requests: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            calls: Mutex::new(HashMap::new()),
            listings: AtomicUsize::new(0),
            task_plays: Mutex::new(HashMap::new()),
        }
    }
}

/// Serve the scenario on the listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    scenario: Scenario,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_state(listener, Arc::new(SimState::new(scenario)), shutdown).await
}

async fn serve_state(
    listener: TcpListener,
    state: Arc<SimState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(handle).post(handle))
        .fallback(not_found)
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A simulator running on a background task, for tests and the demo.
///
/// Dropping it stops the server; [`SimServer::shutdown`] does so gracefully and reports errors.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Binds `127.0.0.1:0` and serves the scenario in the background.
pub async fn spawn_local(scenario: Scenario) -> std::io::Result<SimServer> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(SimState::new(scenario));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_state(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(SimServer {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

impl SimServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to use as the client's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The scenario being served.
    pub fn scenario(&self) -> &Scenario {
        &self.state.scenario
    }

    /// How many requests reached this target's script (after every gateway check passed).
    pub fn served(&self, target: &Target) -> usize {
        lock(&self.state.served).get(target).copied().unwrap_or(0)
    }

    /// How many requests arrived at all, rejected ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many requests the gateway checks refused (bad signature, unknown key, old timestamp,
    /// reused nonce, ...). Tests assert it is zero: every request they sent was signed right.
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// How many requests of `action` passed the gateway checks.
    pub fn calls(&self, action: &str) -> usize {
        lock(&self.state.calls).get(action).copied().unwrap_or(0)
    }

    /// Stops accepting, lets in-flight requests finish, and returns the server's result.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Idle keep-alive connections would otherwise hold a graceful shutdown open.
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking handler cannot leave these maps inconsistent; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn not_found(headers: HeaderMap) -> Response {
    gateway_error(
        &headers,
        StatusCode::NOT_FOUND,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )
}

async fn handle(
    State(state): State<Arc<SimState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut params = parse_query(query.as_deref().unwrap_or(""));
    if is_form(&headers) && !body.is_empty() {
        params.extend(parse_query(&String::from_utf8_lossy(&body)));
    }
    match check_gateway(&state, &method, &params) {
        Err(rejection) => {
            state.rejected.fetch_add(1, Ordering::SeqCst);
            debug!(code = rejection.code, "simulator rejects the request");
            gateway_error(
                &headers,
                rejection.status,
                rejection.code,
                &rejection.message,
            )
        }
        Ok(()) => {
            let action = param(&params, "Action").unwrap_or_default().to_string();
            *lock(&state.calls).entry(action.clone()).or_insert(0) += 1;
            match action.as_str() {
                LIST_BACKUP_PLANS => list_backup_plans(&state, &params),
                LIST_RESTORE_TASKS => list_restore_tasks(&state, &params),
                JOB_ERROR_CODE => job_error_code(&state, &params),
                _ => answer(&state, &params),
            }
        }
    }
}

/// A body is read as form parameters when it says so, or says nothing (as old SDKs do).
fn is_form(headers: &HeaderMap) -> bool {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(ct) => ct
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded"),
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Why the gateway refuses a request: what goes into its error body.
struct Rejection {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The gateway's checks, in the gateway's order.
fn check_gateway(
    state: &SimState,
    method: &Method,
    params: &[(String, String)],
) -> Result<(), Rejection> {
    let scenario = &state.scenario;
    let fail = |status, code: &'static str, message: &str| {
        Err(Rejection {
            status,
            code,
            message: message.to_string(),
        })
    };
    if let Some(missing) = REQUIRED.iter().find(|p| param(params, p).is_none()) {
        return fail(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            &format!(
                "The input parameter \"{missing}\" that is mandatory for processing this request is not supplied."
            ),
        );
    }
    let get = |name| param(params, name).unwrap_or_default();
    if get("AccessKeyId") != scenario.access_key_id() {
        return fail(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    if get("SignatureMethod") != "HMAC-SHA1" || get("SignatureVersion") != "1.0" {
        return fail(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "The request signature does not conform to Alibaba Cloud standards.",
        );
    }
    let Some(timestamp) = parse_timestamp(get("Timestamp")) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "IllegalTimestamp",
            "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied.",
        );
    };
    let now = Utc::now();
    if (now - timestamp).abs() > MAX_CLOCK_SKEW {
        return fail(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    match verify(
        method.as_str(),
        params,
        scenario.access_key_secret().expose(),
    ) {
        Verification::Valid => {}
        Verification::Missing => unreachable!("Signature is in REQUIRED"),
        Verification::Mismatch {
            server_string_to_sign,
        } => {
            return fail(
                StatusCode::BAD_REQUEST,
                "SignatureDoesNotMatch",
                &format!(
                    "Specified signature is not matched with our calculation. {SERVER_STRING_TO_SIGN_MARKER}{server_string_to_sign}"
                ),
            );
        }
    }
    if let Some(token) = scenario.security_token()
        && param(params, "SecurityToken") != Some(token.expose())
    {
        return fail(
            StatusCode::FORBIDDEN,
            "InvalidSecurityToken.Mismatch",
            "Specified SecurityToken mismatch with the AccessKey.",
        );
    }
    {
        let fresh = lock(&state.nonces).insert(get("SignatureNonce"), now);
        if !fresh {
            return fail(
                StatusCode::BAD_REQUEST,
                "SignatureNonceUsed",
                "The request signature nonce has been used.",
            );
        }
    }
    if !ACTIONS.contains(&get("Action")) {
        return fail(
            StatusCode::BAD_REQUEST,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    if get("Version") != API_VERSION {
        return fail(
            StatusCode::BAD_REQUEST,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    Ok(())
}

/// `2016-02-23T12:46:24Z` as the SDKs send it; RFC 3339 with fractions is tolerated.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
        .map(|t| t.and_utc())
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

/// DBS's part: find the target and play its next step.
fn answer(state: &SimState, params: &[(String, String)]) -> Response {
    let target = match (
        param(params, "BackupPlanId").filter(|v| !v.is_empty()),
        param(params, "RestoreTaskId").filter(|v| !v.is_empty()),
    ) {
        (Some(id), None) => Target::BackupPlan(id.to_string()),
        (None, Some(id)) => Target::RestoreTask(id.to_string()),
        (Some(_), Some(_)) => {
            return dbs_error(
                "InvalidParameterValid",
                "Specify either BackupPlanId or RestoreTaskId, not both.",
            );
        }
        (None, None) => {
            return dbs_error(
                "InvalidParameterValid",
                "The specified parameter BackupPlanId or RestoreTaskId value is not valid.",
            );
        }
    };
    let Some(steps) = state.replies.get(&target) else {
        debug!(id = target.id(), "simulator does not know the target");
        return dbs_error(
            "InvalidParameterValid",
            &format!(
                "The specified parameter {} value is not valid.",
                target.param_name()
            ),
        );
    };
    let index = {
        let mut served = lock(&state.served);
        let count = served.entry(target.clone()).or_insert(0);
        *count += 1;
        *count - 1
    };
    let step = &steps[index.min(steps.len() - 1)];
    debug!(
        id = target.id(),
        step = index + 1,
        status = step.status,
        "simulator plays a step"
    );
    step.respond()
}

/// The nonces seen within the replay window, in arrival order so expiry is a pop from the
/// front, not a pass over every nonce on every request.
#[derive(Debug, Default)]
struct NonceLog {
    seen: std::collections::HashSet<String>,
    order: std::collections::VecDeque<(DateTime<Utc>, String)>,
}

impl NonceLog {
    /// Records `nonce`; `false` if it was already used within the window.
    fn insert(&mut self, nonce: &str, now: DateTime<Utc>) -> bool {
        // A nonce older than the skew window can no longer be replayed: its Timestamp expired.
        while let Some((at, _)) = self.order.front() {
            if now - *at <= MAX_CLOCK_SKEW * 2 {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if !self.seen.insert(nonce.to_string()) {
            return false;
        }
        self.order.push_back((now, nonce.to_string()));
        true
    }
}

/// A scripted reply with its body split around the `RequestId` value once, so each reply is
/// a concatenation rather than a parse and re-serialisation of the body.
#[derive(Debug)]
struct Prepared {
    status: u16,
    /// Before and after the request id's value, when the body has one.
    around_id: Option<(String, String)>,
    body: String,
    content_type: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Prepared {
    fn new(step: &Step) -> Prepared {
        const MARK: &str = "dbswatch-simulator-request-id-slot";
        let marked = with_request_id(&step.body, MARK);
        let around_id = marked
            .split_once(MARK)
            .map(|(head, tail)| (head.to_string(), tail.to_string()));
        Prepared {
            status: step.status,
            around_id,
            body: step.body.clone(),
            content_type: content_type(&step.body),
            headers: step
                .headers
                .iter()
                // Validated when the scenario was loaded.
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect(),
        }
    }

    fn respond(&self) -> Response {
        let request_id = fresh_request_id();
        let body = match &self.around_id {
            Some((head, tail)) => format!("{head}{request_id}{tail}"),
            None => self.body.clone(),
        };
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, body).into_response();
        let out = response.headers_mut();
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            out.insert(HeaderName::from_static("x-acs-request-id"), value);
        }
        for (name, value) in &self.headers {
            out.insert(name.clone(), value.clone());
        }
        response
    }
}

/// `PageNum` (from 0) and `PageSize` (1 to 100, default 30), or the name of the bad one.
fn paging(params: &[(String, String)]) -> Result<(usize, usize), &'static str> {
    let number = |name: &'static str, default: usize| match param(params, name) {
        None | Some("") => Ok(default),
        Some(v) => v.trim().parse::<usize>().map_err(|_| name),
    };
    let page = number("PageNum", 0)?;
    let size = number("PageSize", 30)?;
    if !(1..=100).contains(&size) {
        return Err("PageSize");
    }
    Ok((page, size))
}

/// DBS's answer to a bad paging parameter.
fn bad_paging(name: &str) -> Response {
    dbs_error(
        "InvalidParameterValid",
        &format!("The specified parameter {name} value is not valid."),
    )
}

/// A list answer: one page of `items` under `Items.<key>`, with the totals.
fn list_page(key: &str, items: Vec<Map<String, Value>>, page: usize, size: usize) -> Response {
    let total = items.len();
    let body = json!({
        "RequestId": fresh_request_id(),
        "HttpStatusCode": 200,
        "Success": true,
        "PageNum": page,
        "PageSize": size,
        "TotalElements": total,
        "TotalPages": total.div_ceil(size),
        "Items": { key: items.into_iter().skip(page * size).take(size).collect::<Vec<_>>() },
    });
    play(&Step::json(200, &body))
}

fn field<'a>(item: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_str)
}

/// `DescribeBackupPlanList`: the current listing, filtered by `BackupPlanId` (comma list),
/// `Region` (the plan's `SourceEndpointRegion`), `BackupPlanStatus` and `BackupPlanName`
/// (substring), then paged. A request for page 0 starts the next scripted listing.
fn list_backup_plans(state: &SimState, params: &[(String, String)]) -> Response {
    let (page, size) = match paging(params) {
        Ok(p) => p,
        Err(name) => return bad_paging(name),
    };
    let listings = state.scenario.backup_plan_listings();
    let index = if page == 0 {
        state.listings.fetch_add(1, Ordering::SeqCst)
    } else {
        state.listings.load(Ordering::SeqCst).saturating_sub(1)
    };
    let listing = match listings.len() {
        0 => Vec::new(),
        n => listings[index.min(n - 1)].clone(),
    };
    let ids: Option<Vec<&str>> = param(params, "BackupPlanId")
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::trim).collect());
    let wanted = |name: &str| param(params, name).filter(|v| !v.is_empty());
    let plans: Vec<Map<String, Value>> = listing
        .into_iter()
        .filter(|p| {
            ids.as_ref()
                .is_none_or(|ids| field(p, "BackupPlanId").is_some_and(|id| ids.contains(&id)))
        })
        .filter(|p| wanted("Region").is_none_or(|r| field(p, "SourceEndpointRegion") == Some(r)))
        .filter(|p| {
            wanted("BackupPlanStatus").is_none_or(|s| field(p, "BackupPlanStatus") == Some(s))
        })
        .filter(|p| {
            wanted("BackupPlanName")
                .is_none_or(|n| field(p, "BackupPlanName").is_some_and(|name| name.contains(n)))
        })
        .collect();
    list_page("BackupPlanDetail", plans, page, size)
}

/// `DescribeRestoreTaskList`: by `RestoreTaskId` (comma list; each named task plays its next
/// state), or every task in its current state, filtered by `BackupPlanId` and the
/// `StartTimestamp`/`EndTimestamp` window on `RestoreTaskCreateTime`, then paged.
fn list_restore_tasks(state: &SimState, params: &[(String, String)]) -> Response {
    let (page, size) = match paging(params) {
        Ok(p) => p,
        Err(name) => return bad_paging(name),
    };
    let tasks = state.scenario.restore_tasks();
    let named: Option<Vec<&str>> = param(params, "RestoreTaskId")
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::trim).collect());
    let mut plays = lock(&state.task_plays);
    let mut items = Vec::new();
    for task in tasks {
        let step = match &named {
            Some(ids) if !ids.contains(&task.id.as_str()) => continue,
            Some(_) => {
                let played = plays.entry(task.id.clone()).or_insert(0);
                *played += 1;
                *played - 1
            }
            None => plays.get(&task.id).map_or(0, |n| n.saturating_sub(1)),
        };
        items.push(task.steps[step.min(task.steps.len() - 1)].clone());
    }
    drop(plays);
    let number = |name: &str| param(params, name).and_then(|v| v.trim().parse::<i64>().ok());
    let created = |t: &Map<String, Value>| t.get("RestoreTaskCreateTime").and_then(Value::as_i64);
    let (start, end) = (number("StartTimestamp"), number("EndTimestamp"));
    let plan = param(params, "BackupPlanId").filter(|v| !v.is_empty());
    let items: Vec<Map<String, Value>> = items
        .into_iter()
        .filter(|t| plan.is_none_or(|p| field(t, "BackupPlanId") == Some(p)))
        .filter(|t| start.is_none_or(|s| created(t).is_none_or(|c| c >= s)))
        .filter(|t| end.is_none_or(|e| created(t).is_none_or(|c| c <= e)))
        .collect();
    list_page("RestoreTaskDetail", items, page, size)
}

/// `DescribeJobErrorCode`: the scripted item for `TaskId`, else DBS's parameter error.
fn job_error_code(state: &SimState, params: &[(String, String)]) -> Response {
    let Some(task_id) = param(params, "TaskId").filter(|v| !v.is_empty()) else {
        return dbs_error(
            "InvalidParameterValid",
            "The specified parameter TaskId value is not valid.",
        );
    };
    let Some(item) = state.scenario.job_error(task_id) else {
        return dbs_error(
            "InvalidParameterValid",
            "The specified parameter TaskId value is not valid.",
        );
    };
    let mut item = item.clone();
    item.insert("JobId".into(), Value::String(task_id.to_string()));
    item.entry("Language")
        .or_insert_with(|| Value::String(param(params, "Language").unwrap_or("en").to_string()));
    let body = json!({
        "RequestId": fresh_request_id(),
        "HttpStatusCode": 200,
        "Success": true,
        "Item": item,
    });
    play(&Step::json(200, &body))
}

fn play(step: &Step) -> Response {
    let request_id = fresh_request_id();
    let body = with_request_id(&step.body, &request_id);
    let status = StatusCode::from_u16(step.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.clone()).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&body)),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        out.insert(HeaderName::from_static("x-acs-request-id"), value);
    }
    for (name, value) in &step.headers {
        // Validated when the scenario was loaded.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.insert(name, value);
        }
    }
    response
}

fn content_type(body: &str) -> &'static str {
    if serde_json::from_str::<Value>(body).is_ok() {
        "application/json;charset=utf-8"
    } else if body.trim_start().starts_with('<') {
        "text/html;charset=utf-8"
    } else {
        "text/plain;charset=utf-8"
    }
}

fn fresh_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// The body with its `RequestId` replaced, like the real service gives every reply a new one.
/// Every other byte is kept (key order, indentation, line endings, trailing spaces): only the
/// value's string literal is swapped in place. Non-JSON bodies pass unchanged.
fn with_request_id(body: &str, request_id: &str) -> String {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    let Some(slot) = obj.get_mut("RequestId") else {
        return body.to_string();
    };
    if let Some(spliced) = splice_request_id(body, slot, request_id) {
        return spliced;
    }
    // A layout the splice does not recognise (an escaped key, say): re-serialise instead.
    *slot = Value::String(request_id.to_string());
    let value = Value::Object(obj);
    let text = if body.contains('\n') {
        serde_json::to_string_pretty(&value)
    } else {
        serde_json::to_string(&value)
    };
    text.unwrap_or_else(|_| body.to_string())
}

/// `body` with the literal of the top-level `RequestId` value (`old`) replaced by `new`, found
/// as the first `"RequestId"` key followed by exactly that literal; `None` when it is not there
/// in that form.
fn splice_request_id(body: &str, old: &Value, new: &str) -> Option<String> {
    let old_literal = serde_json::to_string(old).ok()?;
    let key = body.find("\"RequestId\"")?;
    let after_key = &body[key + "\"RequestId\"".len()..];
    let colon = after_key.trim_start().strip_prefix(':')?;
    let value = colon.trim_start();
    if !value.starts_with(&old_literal) {
        return None;
    }
    let start = body.len() - value.len();
    let new_literal = serde_json::to_string(new).ok()?;
    Some(format!(
        "{}{new_literal}{}",
        &body[..start],
        &body[start + old_literal.len()..]
    ))
}

/// A gateway ("POP") error body, shaped like the captured ones.
fn gateway_error(headers: &HeaderMap, status: StatusCode, code: &str, message: &str) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("dbs-api.simulator.local")
        .to_string();
    let request_id = fresh_request_id();
    let body = json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": code,
        "Message": message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Dbs"),
    });
    json_response(status, &body, &request_id)
}

/// A DBS `Success: false` body, served with HTTP 200 like the fixture.
fn dbs_error(code: &str, message: &str) -> Response {
    let request_id = fresh_request_id();
    let body = json!({
        "RequestId": request_id,
        "HttpStatusCode": 400,
        "Success": false,
        "ErrCode": code,
        "ErrMessage": message,
    });
    json_response(StatusCode::OK, &body, &request_id)
}

fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        out.insert(HeaderName::from_static("x-acs-request-id"), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_replaced_in_place() {
        let pretty = "{\n  \"A\": 1,\n  \"RequestId\": \"old\",\n  \"B\": 2\n}";
        assert_eq!(
            with_request_id(pretty, "NEW"),
            "{\n  \"A\": 1,\n  \"RequestId\": \"NEW\",\n  \"B\": 2\n}"
        );
        assert_eq!(
            with_request_id(r#"{"RequestId":"old","Code":"X"}"#, "NEW"),
            r#"{"RequestId":"NEW","Code":"X"}"#
        );
        assert_eq!(with_request_id(r#"{"Code":"X"}"#, "NEW"), r#"{"Code":"X"}"#);
        assert_eq!(with_request_id("<html>", "NEW"), "<html>");
        let truncated = r#"{"RequestId":"old","Sta"#;
        assert_eq!(with_request_id(truncated, "NEW"), truncated);
    }

    #[test]
    fn fixtures_keep_their_layout_apart_from_the_request_id() {
        let original = super::super::fixtures::fixture("precheck-fails/04.json").unwrap();
        let replaced = with_request_id(original, "6E1F8A3C-2B7D-4C55-9A0E-3D4F5A6B7C04");
        assert_eq!(replaced.trim_end(), original.trim_end());
    }

    #[test]
    fn every_byte_but_the_request_id_is_kept() {
        let body = "{\r\n    \"RequestId\" :  \"OLD\",  \r\n    \"Items\": {\"RequestId\": \"x\"}\t\r\n}  ";
        assert_eq!(
            with_request_id(body, "NEW"),
            body.replace("\"OLD\"", "\"NEW\"")
        );
        // A nested key first: the top-level value is not where the splice looks, so the
        // body is re-serialised rather than the wrong value replaced.
        let nested = r#"{"Items":{"RequestId":"inner"},"RequestId":"OLD"}"#;
        let replaced: Value = serde_json::from_str(&with_request_id(nested, "NEW")).unwrap();
        assert_eq!(replaced["RequestId"], "NEW");
        assert_eq!(replaced["Items"]["RequestId"], "inner");
    }

    #[test]
    fn a_prepared_reply_is_the_step_with_a_fresh_request_id() {
        let original = super::super::fixtures::fixture("precheck-fails/04.json").unwrap();
        let prepared = Prepared::new(&Step::raw(200, original));
        let (head, tail) = prepared
            .around_id
            .as_ref()
            .expect("the fixture has a RequestId");
        let replaced = with_request_id(original, "6E1F8A3C-2B7D-4C55-9A0E-3D4F5A6B7C04");
        assert_eq!(
            format!("{head}6E1F8A3C-2B7D-4C55-9A0E-3D4F5A6B7C04{tail}"),
            replaced
        );
        assert_eq!(prepared.content_type, "application/json;charset=utf-8");
        let html = Prepared::new(&Step::raw(502, "<html>bad gateway</html>"));
        assert!(html.around_id.is_none());
        assert_eq!(html.content_type, "text/html;charset=utf-8");
    }

    #[test]
    fn a_nonce_is_refused_within_the_window_and_forgotten_after_it() {
        let mut log = NonceLog::default();
        let t0 = Utc::now();
        assert!(log.insert("a", t0));
        assert!(!log.insert("a", t0 + chrono::TimeDelta::seconds(60)));
        assert!(log.insert("b", t0 + chrono::TimeDelta::seconds(60)));
        let later = t0 + MAX_CLOCK_SKEW * 2 + chrono::TimeDelta::seconds(1);
        assert!(log.insert("a", later), "expired nonces are forgotten");
        assert_eq!(log.order.len(), 2, "b stays, a is back");
    }

    #[test]
    fn timestamps_in_sdk_and_rfc3339_form() {
        assert_eq!(
            parse_timestamp("2016-02-23T12:46:24Z").unwrap().timestamp(),
            1456231584
        );
        assert!(parse_timestamp("2016-02-23T12:46:24.123Z").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn content_type_follows_the_body() {
        assert_eq!(content_type("{}"), "application/json;charset=utf-8");
        assert_eq!(content_type("<html>"), "text/html;charset=utf-8");
        assert_eq!(content_type("{\"cut"), "text/plain;charset=utf-8");
    }
}
