//! The HTTP side: one pooled `reqwest::Client`, a freshly signed request per attempt, and
//! retries of transient failures with capped, jittered exponential backoff.
//!
//! Every attempt gets its own `Timestamp` and `SignatureNonce`: the gateway rejects a reused
//! nonce (`SignatureNonceUsed`), so resending the same signed URL would turn a retry into a
//! permanent error. Every attempt also asks the [`CredentialProvider`] for the current
//! credentials (STS credentials expire), takes a slot from the shared [`Limiter`] when there is
//! one, and compares the server's `Date` header with our clock, warning once when they are more
//! than a few minutes apart (the gateway refuses requests 15 minutes off with
//! `InvalidTimeStamp.Expired`).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::credentials::{CredentialProvider, CredentialSource};
use super::error::{DbsError, ErrorKind, error_chain};
use super::limiter::Limiter;
use super::lists::{
    self, BackupPlan, JOB_ERROR_CODE, LIST_BACKUP_PLANS, LIST_RESTORE_TASKS, Pager, PlanQuery,
    RestoreQuery, RestoreTask,
};
use super::response::{Reply, envelope, interpret};
use super::sign::signed_query;
use super::{ACTION, API_VERSION, ClientOptions, Credentials, PrecheckResponse};
use crate::event::JobError;
use crate::secret::display_url;
use crate::snapshot::Target;

/// No single backoff wait is longer than this, whatever the attempt number.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Response header in which the gateway says how long to wait before retrying, in milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";

/// The `Timestamp` format the gateway expects: UTC, whole seconds.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Warn when the server's clock and ours differ by more than this: "a few minutes", well before
/// the gateway's 15-minute limit turns it into `InvalidTimeStamp.Expired`.
pub const DEFAULT_SKEW_WARNING: Duration = Duration::from_secs(180);

/// How many recent backoffs [`ClientStats::backoffs`] keeps.
const BACKOFF_HISTORY: usize = 100;

/// Where `Timestamp` comes from. Replaceable so tests can prove every attempt is re-stamped and
/// exercise clock skew without touching the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// Any function of no arguments that returns the current time.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current time by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// One wait before a retry, as recorded in [`ClientStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The action being retried.
    pub action: String,
    /// The attempt that failed (1 = the first).
    pub attempt: u32,
    /// Why it failed.
    pub kind: ErrorKind,
    /// The error code, when the reply had one.
    pub code: Option<String>,
    /// How long the client waited.
    pub delay: Duration,
    /// What the server asked for with `x-acs-retry-after`.
    pub retry_after: Option<Duration>,
}

/// What a client has done: requests, retries with their backoffs, and the clock skew it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent.
    pub requests: u64,
    /// Retries made (each after a backoff).
    pub retries: u64,
    /// The most recent backoffs, oldest first.
    pub backoffs: Vec<Backoff>,
    /// Server time minus our time, from the last `Date` header.
    pub clock_skew: Option<TimeDelta>,
    /// Clock-skew warnings logged (at most one per client).
    pub clock_skew_warnings: u32,
    /// Times the credentials were fetched again after the server called them expired.
    pub credential_refreshes: u32,
}

#[derive(Debug, Default)]
struct Shared {
    stats: Mutex<ClientStats>,
    skew_warned: AtomicBool,
}

/// A JSON answer of any action.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The reply's JSON object.
    pub object: Map<String, Value>,
    /// The exact body received.
    pub body: String,
    /// `RequestId`.
    pub request_id: Option<String>,
}

/// The DBS client. Cheap to clone: clones share the connection pool, the limiter and the stats.
#[derive(Debug, Clone)]
pub struct DbsClient {
    http: reqwest::Client,
    provider: CredentialProvider,
    options: ClientOptions,
    base_url: String,
    clock: Clock,
    limiter: Option<Limiter>,
    skew_warning: Duration,
    shared: Arc<Shared>,
}

impl DbsClient {
    /// Builds a client with fixed credentials, so connections are pooled across polls.
    ///
    /// Fails without sending anything when the endpoint is not an http(s) URL, a timeout is zero,
    /// or the AccessKey is empty or padded with whitespace (a pasted newline would otherwise
    /// surface later as a puzzling `SignatureDoesNotMatch`).
    pub fn new(credentials: Credentials, options: ClientOptions) -> Result<DbsClient, DbsError> {
        validate_credentials(&credentials)?;
        DbsClient::with_provider(
            CredentialProvider::fixed(credentials, CredentialSource::Fixed),
            options,
        )
    }

    /// Builds a client that asks `provider` for credentials before every attempt: what the
    /// credential chain gives (files that change, STS credentials that expire).
    pub fn with_provider(
        provider: CredentialProvider,
        options: ClientOptions,
    ) -> Result<DbsClient, DbsError> {
        let base_url = validate_endpoint(&options.endpoint)?;
        if options.timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(invalid(
                "a timeout of zero would fail every request",
                "set the timeout and connect timeout to a few seconds",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            // The signature binds the request to one host; a redirect is a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dbswatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                invalid(
                    &format!(
                        "the HTTP client cannot be built: {}",
                        error_chain(&e.without_url())
                    ),
                    "check the TLS setup of this machine",
                )
            })?;
        Ok(DbsClient {
            http,
            provider,
            options,
            base_url,
            clock: Clock::system(),
            limiter: None,
            skew_warning: DEFAULT_SKEW_WARNING,
            shared: Arc::new(Shared::default()),
        })
    }

    /// Replaces the clock used for `Timestamp` (and for measuring the server's clock skew).
    pub fn with_clock(mut self, clock: Clock) -> DbsClient {
        self.clock = clock;
        self
    }

    /// Makes every attempt take a slot from `limiter`, shared with other clients.
    pub fn with_limiter(mut self, limiter: Limiter) -> DbsClient {
        self.limiter = Some(limiter);
        self
    }

    /// Warns when the server's clock differs from ours by more than `threshold`.
    pub fn with_skew_warning(mut self, threshold: Duration) -> DbsClient {
        self.skew_warning = threshold;
        self
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Where the credentials come from.
    pub fn credential_source(&self) -> CredentialSource {
        self.provider.source()
    }

    /// The credential provider (for `whoami`, which fetches without calling DBS).
    pub fn provider(&self) -> &CredentialProvider {
        &self.provider
    }

    /// Requests, retries, backoffs and clock skew so far.
    pub fn stats(&self) -> ClientStats {
        lock(&self.shared.stats).clone()
    }

    /// Calls `DescribePreCheckProgressList` for the target, retrying transient failures.
    ///
    /// Transient means throttling, 5xx, transport errors and timeouts. Each retry waits
    /// `retry_base * 2^n` (half of it jittered), capped at [`MAX_BACKOFF`], and never less than
    /// the server's `x-acs-retry-after`. If the server asks for more than [`MAX_BACKOFF`], the
    /// error is returned at once (with [`DbsError::retry_after`] set) so the scheduler, not this
    /// poll, does the waiting.
    pub async fn describe_precheck_progress(
        &self,
        target: &Target,
    ) -> Result<PrecheckResponse, DbsError> {
        let params = vec![(target.param_name(), target.id().to_string())];
        let answer = self
            .call_with(ACTION, params, target.id(), |reply| {
                interpret(reply).map(|parsed| (parsed.snapshot, parsed.request_id))
            })
            .await?;
        let ((snapshot, request_id), body) = answer;
        Ok(PrecheckResponse {
            snapshot,
            request_id,
            body,
        })
    }

    /// Calls any DBS action with `params` (besides the common ones) and returns its JSON answer:
    /// an object that is not an error and has at least one of `answer_keys`. Same retries,
    /// signing, limiter and credentials as every other call.
    pub async fn call(
        &self,
        action: &'static str,
        params: Vec<(&'static str, String)>,
        answer_keys: &'static [&'static str],
    ) -> Result<Answer, DbsError> {
        let subject = params.first().map(|(_, v)| v.clone()).unwrap_or_default();
        let (object, body) = self
            .call_with(action, params, &subject, |reply| {
                envelope(reply, answer_keys)
            })
            .await?;
        Ok(Answer {
            request_id: object
                .get("RequestId")
                .and_then(Value::as_str)
                .map(str::to_string),
            object,
            body,
        })
    }

    /// Every backup plan the query matches, following the pages of `DescribeBackupPlanList`.
    pub async fn list_backup_plans(&self, query: &PlanQuery) -> Result<Vec<BackupPlan>, DbsError> {
        let mut pager = Pager::new(query.page_size);
        let mut plans = Vec::new();
        while let Some(page) = pager.next_page() {
            let answer = self
                .call(LIST_BACKUP_PLANS, query.params(page), LIST_ANSWER)
                .await?;
            let page = lists::backup_plan_page(&answer.object);
            plans.extend(pager.take(&page, |p| p.id.as_str()).into_iter().cloned());
        }
        Ok(plans)
    }

    /// Every restore task the query matches, following the pages of `DescribeRestoreTaskList`.
    pub async fn list_restore_tasks(
        &self,
        query: &RestoreQuery,
    ) -> Result<Vec<RestoreTask>, DbsError> {
        let mut pager = Pager::new(query.page_size);
        let mut tasks = Vec::new();
        while let Some(page) = pager.next_page() {
            let answer = self
                .call(LIST_RESTORE_TASKS, query.params(page), LIST_ANSWER)
                .await?;
            let page = lists::restore_task_page(&answer.object);
            tasks.extend(pager.take(&page, |t| t.id.as_str()).into_iter().cloned());
        }
        Ok(tasks)
    }

    /// One restore task by id, or `None` when DBS does not list it.
    pub async fn restore_task(&self, id: &str) -> Result<Option<RestoreTask>, DbsError> {
        let query = RestoreQuery {
            restore_task_id: Some(id.to_string()),
            page_size: 10,
            ..RestoreQuery::default()
        };
        let answer = self
            .call(LIST_RESTORE_TASKS, query.params(0), LIST_ANSWER)
            .await?;
        Ok(lists::restore_task_page(&answer.object)
            .items
            .into_iter()
            .find(|t| t.id == id))
    }

    /// Why a backup or restore job failed, from `DescribeJobErrorCode` (English), or `None`
    /// when DBS names no error.
    pub async fn job_error(&self, task_id: &str) -> Result<Option<JobError>, DbsError> {
        let params = vec![("TaskId", task_id.to_string()), ("Language", "en".into())];
        let answer = self.call(JOB_ERROR_CODE, params, &["Item"]).await?;
        Ok(lists::job_error(&answer.object, task_id))
    }

    /// The retry loop around [`DbsClient::attempt`], with `parse` deciding what an answer is.
    async fn call_with<T>(
        &self,
        action: &'static str,
        params: Vec<(&'static str, String)>,
        subject: &str,
        parse: impl Fn(Reply<'_>) -> Result<T, DbsError>,
    ) -> Result<(T, String), DbsError> {
        let mut retry: u32 = 0;
        let mut refreshed = false;
        loop {
            let error = match self
                .attempt(action, &params, subject, retry + 1, &parse)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            // STS credentials from a file or the metadata service may have been renewed since
            // we cached them: fetch them again once before giving up.
            if !refreshed
                && error
                    .code()
                    .is_some_and(|c| c.starts_with("InvalidSecurityToken"))
                && is_refreshable(&self.provider.source())
            {
                refreshed = true;
                self.provider.invalidate();
                lock(&self.shared.stats).credential_refreshes += 1;
                continue;
            }
            if !error.is_retryable() || retry >= self.options.max_retries {
                return Err(error);
            }
            let Some(delay) = retry_delay(
                self.options.retry_base,
                retry,
                error.retry_after(),
                jitter(),
            ) else {
                return Err(error);
            };
            warn!(
                action,
                subject,
                attempt = retry + 1,
                kind = %error.kind(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "DBS call failed, retrying"
            );
            {
                let mut stats = lock(&self.shared.stats);
                stats.retries += 1;
                if stats.backoffs.len() >= BACKOFF_HISTORY {
                    stats.backoffs.remove(0);
                }
                stats.backoffs.push(Backoff {
                    action: action.to_string(),
                    attempt: retry + 1,
                    kind: error.kind(),
                    code: error.code().map(str::to_string),
                    delay,
                    retry_after: error.retry_after(),
                });
            }
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One signed request and its interpretation.
    async fn attempt<T>(
        &self,
        action: &'static str,
        extra: &[(&'static str, String)],
        subject: &str,
        attempt: u32,
        parse: &impl Fn(Reply<'_>) -> Result<T, DbsError>,
    ) -> Result<(T, String), DbsError> {
        let credentials = self
            .provider
            .credentials()
            .await
            .map_err(DbsError::Credentials)?;
        let _permit = match &self.limiter {
            Some(limiter) => Some(limiter.acquire().await),
            None => None,
        };
        // Stamped after waiting for the limiter, so the timestamp is the sending time.
        let nonce = uuid::Uuid::new_v4().to_string();
        // TIMESTAMP_FORMAT, without parsing a format string on every request.
        let timestamp = self
            .clock
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let params = request_params(action, &credentials, &nonce, &timestamp, extra);
        let signed = signed_query("POST", &params, credentials.access_key_secret.expose());
        debug!(
            action,
            subject,
            attempt,
            nonce = %nonce,
            timestamp = %timestamp,
            endpoint = %display_url(&self.base_url),
            "calling DBS"
        );
        lock(&self.shared.stats).requests += 1;
        let response = self
            .http
            .post(format!("{}/?{}", self.base_url, signed.query))
            .header("x-acs-action", action)
            .header("x-acs-version", API_VERSION)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(Vec::new())
            .send()
            .await
            .map_err(DbsError::transport)?;
        let status = response.status().as_u16();
        let retry_after = retry_after_header(response.headers());
        self.check_clock(response.headers());
        let bytes = response.bytes().await.map_err(DbsError::transport)?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let parsed = parse(Reply {
            status,
            body: &body,
            retry_after,
            signed: Some(&signed.string_to_sign),
            action,
        });
        match &parsed {
            Ok(_) => debug!(action, subject, attempt, status, "DBS answered"),
            Err(e) => {
                debug!(
                    action,
                    subject,
                    attempt,
                    status,
                    kind = %e.kind(),
                    request_id = e.request_id().unwrap_or(""),
                    "DBS returned an error"
                );
                if e.kind() == ErrorKind::ClockSkew
                    && let Some(skew) = lock(&self.shared.stats).clock_skew
                {
                    warn!(
                        skew_secs = skew.num_seconds(),
                        "DBS refused the request time; by its Date header this machine's clock \
                         is {} off",
                        describe_skew(skew)
                    );
                }
            }
        }
        Ok((parsed?, body))
    }

    /// Compares the server's `Date` with our clock; warns once when they are too far apart.
    fn check_clock(&self, headers: &reqwest::header::HeaderMap) {
        let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        else {
            return;
        };
        let skew = server.with_timezone(&Utc) - self.clock.now();
        let too_far = skew.abs() > TimeDelta::from_std(self.skew_warning).unwrap_or(TimeDelta::MAX);
        let mut stats = lock(&self.shared.stats);
        stats.clock_skew = Some(skew);
        if too_far && !self.shared.skew_warned.swap(true, Ordering::SeqCst) {
            stats.clock_skew_warnings += 1;
            drop(stats);
            warn!(
                skew_secs = skew.num_seconds(),
                endpoint = %display_url(&self.base_url),
                "this machine's clock is {} by DBS's Date header; DBS refuses requests \
                 15 minutes off (InvalidTimeStamp.Expired): sync the clock with NTP (chrony, \
                 `timedatectl set-ntp true`)",
                describe_skew(skew)
            );
        }
    }
}

/// The answer keys of the list actions.
const LIST_ANSWER: &[&str] = &["Items", "TotalElements", "PageNum"];

/// `4m 10s behind` / `20m 0s ahead`: how our clock compares with the server's.
fn describe_skew(skew: TimeDelta) -> String {
    let secs = skew.num_seconds().unsigned_abs();
    // Server ahead of us means our clock is behind.
    let direction = if skew > TimeDelta::zero() {
        "behind"
    } else {
        "ahead"
    };
    format!("{}m {}s {direction}", secs / 60, secs % 60)
}

/// Whether fetching the credentials again may give different ones.
fn is_refreshable(source: &CredentialSource) -> bool {
    matches!(
        source,
        CredentialSource::CliProfile { .. }
            | CredentialSource::CredentialsFile { .. }
            | CredentialSource::EcsRamRole { .. }
    )
}

/// Every request parameter except `Signature`.
///
/// Public only so `benches/core.rs` can sign exactly the parameter list a poll signs (common
/// parameters, the target, an STS token when there is one) instead of a hand-copied one that
/// could drift from it; the client itself is the only caller that sends requests.
pub fn request_params(
    action: &str,
    credentials: &Credentials,
    nonce: &str,
    timestamp: &str,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("Action", action.to_string()),
        ("Version", API_VERSION.to_string()),
        ("Format", "JSON".to_string()),
        ("AccessKeyId", credentials.access_key_id.clone()),
        ("SignatureMethod", "HMAC-SHA1".to_string()),
        ("SignatureVersion", "1.0".to_string()),
        ("SignatureNonce", nonce.to_string()),
        ("Timestamp", timestamp.to_string()),
    ];
    params.extend(extra.iter().cloned());
    if let Some(token) = &credentials.security_token {
        params.push(("SecurityToken", token.expose().to_string()));
    }
    params
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(reason: &str, fix: &str) -> DbsError {
    DbsError::InvalidOptions {
        reason: reason.to_string(),
        fix: fix.to_string(),
    }
}

/// The endpoint without a trailing slash, after checking it is an absolute http(s) URL with a
/// host and without a query (the query is ours to build).
fn validate_endpoint(endpoint: &str) -> Result<String, DbsError> {
    let fix = "set the endpoint to a base URL such as https://dbs-api.cn-hangzhou.aliyuncs.com, \
               or leave it out to derive it from the region";
    let url = reqwest::Url::parse(endpoint.trim()).map_err(|e| {
        invalid(
            &format!("the endpoint {} is not a URL ({e})", display_url(endpoint)),
            fix,
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            &format!(
                "the endpoint {} is not an http or https URL",
                display_url(endpoint)
            ),
            fix,
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            &format!(
                "the endpoint {} has a query or fragment",
                display_url(endpoint)
            ),
            fix,
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn validate_credentials(credentials: &Credentials) -> Result<(), DbsError> {
    let id = credentials.access_key_id.as_str();
    let secret = credentials.access_key_secret.expose();
    if id.is_empty() {
        return Err(invalid(
            "the AccessKey id is empty",
            "set ALIBABA_CLOUD_ACCESS_KEY_ID",
        ));
    }
    if secret.is_empty() {
        return Err(invalid(
            "the AccessKey secret is empty",
            "set ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ));
    }
    if id.trim() != id {
        return Err(invalid(
            "the AccessKey id starts or ends with whitespace",
            "remove the spaces or newline around ALIBABA_CLOUD_ACCESS_KEY_ID",
        ));
    }
    if secret.trim() != secret {
        return Err(invalid(
            "the AccessKey secret starts or ends with whitespace",
            "remove the spaces or newline around ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ));
    }
    if credentials
        .security_token
        .as_ref()
        .is_some_and(|t| t.expose().trim().is_empty())
    {
        return Err(invalid(
            "the STS security token is empty",
            "set ALIBABA_CLOUD_SECURITY_TOKEN or leave it out for a long-lived AccessKey",
        ));
    }
    Ok(())
}

/// `x-acs-retry-after` in milliseconds; absent, zero or unparsable means no request.
fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// The exponential delay before retry number `retry + 1`: `base * 2^retry` capped at
/// [`MAX_BACKOFF`], of which the upper half is scaled by `jitter` (0.0 to 1.0) so that many
/// watches throttled together do not retry in lockstep.
pub fn backoff_delay(base: Duration, retry: u32, jitter: f64) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    let full = base.saturating_mul(factor).min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The wait before the next attempt, or `None` when the server asked for longer than
/// [`MAX_BACKOFF`] and the retry should be left to the next poll.
pub fn retry_delay(
    base: Duration,
    retry: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let backoff = backoff_delay(base, retry, jitter);
    match retry_after {
        Some(asked) if asked > MAX_BACKOFF => None,
        Some(asked) => Some(backoff.max(asked)),
        None => Some(backoff),
    }
}

/// A uniform value in [0, 1) from a v4 UUID's random bits: good enough for jitter without
/// another dependency.
fn jitter() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() >> 75) as u64; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn options(endpoint: &str) -> ClientOptions {
        ClientOptions::for_endpoint(endpoint)
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff_delay(base, 0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(base, 0, 0.0), Duration::from_millis(250));
        assert_eq!(backoff_delay(base, 1, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff_delay(base, 3, 1.0), Duration::from_millis(4000));
        assert_eq!(backoff_delay(base, 10, 1.0), MAX_BACKOFF);
        assert_eq!(backoff_delay(base, 40, 1.0), MAX_BACKOFF);
        assert_eq!(backoff_delay(base, 40, 0.0), MAX_BACKOFF / 2);
        let mid = backoff_delay(base, 2, 0.5);
        assert_eq!(mid, Duration::from_millis(1500));
    }

    #[test]
    fn retry_after_is_a_floor_and_a_long_one_defers_to_the_next_poll() {
        let base = Duration::from_millis(100);
        assert_eq!(
            retry_delay(base, 0, Some(Duration::from_secs(2)), 1.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_delay(base, 0, Some(Duration::from_millis(10)), 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            retry_delay(base, 0, Some(Duration::from_secs(21)), 1.0),
            None
        );
        assert_eq!(
            retry_delay(base, 0, None, 0.0),
            Some(Duration::from_millis(50))
        );
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn retry_after_header_is_milliseconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after_header(&h), None);
        h.insert(RETRY_AFTER_HEADER, "1500".parse().unwrap());
        assert_eq!(retry_after_header(&h), Some(Duration::from_millis(1500)));
        h.insert(RETRY_AFTER_HEADER, "soon".parse().unwrap());
        assert_eq!(retry_after_header(&h), None);
        h.insert(RETRY_AFTER_HEADER, "0".parse().unwrap());
        assert_eq!(retry_after_header(&h), None);
    }

    #[test]
    fn endpoints_are_validated_and_normalised() {
        assert_eq!(
            validate_endpoint("https://dbs-api.cn-hangzhou.aliyuncs.com/").unwrap(),
            "https://dbs-api.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            validate_endpoint("http://127.0.0.1:18080").unwrap(),
            "http://127.0.0.1:18080"
        );
        for bad in [
            "dbs-api.cn-hangzhou.aliyuncs.com",
            "ftp://x",
            "https://x/?a=b",
            "",
        ] {
            let e = validate_endpoint(bad).unwrap_err();
            assert_eq!(e.kind(), super::super::ErrorKind::Config, "{bad}");
            assert!(e.to_string().contains("https://dbs-api."), "{e}");
        }
    }

    #[test]
    fn new_rejects_unusable_credentials_without_quoting_them() {
        let cases = [
            (Credentials::new("", "s"), "ALIBABA_CLOUD_ACCESS_KEY_ID"),
            (
                Credentials::new("id", ""),
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ),
            (
                Credentials::new("id", "secret-with-newline\n"),
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ),
            (Credentials::new(" id", "s"), "ALIBABA_CLOUD_ACCESS_KEY_ID"),
            (
                Credentials {
                    security_token: Some(Secret::new("")),
                    ..Credentials::new("id", "s")
                },
                "ALIBABA_CLOUD_SECURITY_TOKEN",
            ),
        ];
        for (creds, needle) in cases {
            let e = DbsClient::new(creds, options("http://127.0.0.1:1")).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert!(!e.to_string().contains("secret-with-newline"), "{e}");
        }
        let mut zero = options("http://127.0.0.1:1");
        zero.timeout = Duration::ZERO;
        assert!(DbsClient::new(Credentials::new("id", "s"), zero).is_err());
    }

    #[test]
    fn params_carry_target_and_token() {
        let mut creds = Credentials::new("id", "s");
        creds.security_token = Some(Secret::new("tok"));
        let target = Target::RestoreTask("r1".into());
        let params = request_params(
            ACTION,
            &creds,
            "nonce",
            "2026-01-01T00:00:00Z",
            &[(target.param_name(), target.id().to_string())],
        );
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("RestoreTaskId"), Some("r1"));
        assert_eq!(get("BackupPlanId"), None);
        assert_eq!(get("SecurityToken"), Some("tok"));
        assert_eq!(get("Action"), Some("DescribePreCheckProgressList"));
        assert_eq!(get("Version"), Some("2019-03-06"));
        assert_eq!(get("Format"), Some("JSON"));
        assert_eq!(get("Signature"), None);
    }

    #[test]
    fn skew_is_described_from_our_clock_s_point_of_view() {
        assert_eq!(describe_skew(TimeDelta::seconds(250)), "4m 10s behind");
        assert_eq!(describe_skew(TimeDelta::seconds(-1200)), "20m 0s ahead");
    }

    #[test]
    fn only_changing_sources_are_refreshed() {
        assert!(!is_refreshable(&CredentialSource::Fixed));
        assert!(!is_refreshable(&CredentialSource::Environment));
        assert!(is_refreshable(&CredentialSource::EcsRamRole {
            role: None,
            endpoint: "http://127.0.0.1:1".into()
        }));
    }
}
