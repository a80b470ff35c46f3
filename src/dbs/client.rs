//! The HTTP side: one pooled `reqwest::Client`, a freshly signed request per attempt, and
//! retries of transient failures with capped, jittered exponential backoff.
//!
//! Every attempt gets its own `Timestamp` and `SignatureNonce`: the gateway rejects a reused
//! nonce (`SignatureNonceUsed`), so resending the same signed URL would turn a retry into a
//! permanent error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use super::error::{DbsError, error_chain};
use super::response::{Reply, interpret};
use super::sign::signed_query;
use super::{ACTION, API_VERSION, ClientOptions, Credentials, PrecheckResponse};
use crate::secret::display_url;
use crate::snapshot::Target;

/// No single backoff wait is longer than this, whatever the attempt number.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Response header in which the gateway says how long to wait before retrying, in milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";

/// The `Timestamp` format the gateway expects: UTC, whole seconds.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

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

    fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The DBS client. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct DbsClient {
    http: reqwest::Client,
    credentials: Arc<Credentials>,
    options: ClientOptions,
    base_url: String,
    clock: Clock,
}

impl DbsClient {
    /// Builds the client once, so connections are pooled across polls.
    ///
    /// Fails without sending anything when the endpoint is not an http(s) URL, a timeout is zero,
    /// or the AccessKey is empty or padded with whitespace (a pasted newline would otherwise
    /// surface later as a puzzling `SignatureDoesNotMatch`).
    pub fn new(credentials: Credentials, options: ClientOptions) -> Result<DbsClient, DbsError> {
        let base_url = validate_endpoint(&options.endpoint)?;
        validate_credentials(&credentials)?;
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
            credentials: Arc::new(credentials),
            options,
            base_url,
            clock: Clock::system(),
        })
    }

    /// Replaces the clock used for `Timestamp`.
    pub fn with_clock(mut self, clock: Clock) -> DbsClient {
        self.clock = clock;
        self
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
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
        let mut retry: u32 = 0;
        loop {
            let error = match self.attempt(target, retry + 1).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
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
                watch_id = target.id(),
                attempt = retry + 1,
                kind = %error.kind(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "DBS call failed, retrying"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One signed request and its interpretation.
    async fn attempt(&self, target: &Target, attempt: u32) -> Result<PrecheckResponse, DbsError> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = self.clock.now().format(TIMESTAMP_FORMAT).to_string();
        let params = self.params(target, &nonce, &timestamp);
        let signed = signed_query("POST", &params, self.credentials.access_key_secret.expose());
        debug!(
            watch_id = target.id(),
            attempt,
            nonce = %nonce,
            timestamp = %timestamp,
            endpoint = %display_url(&self.base_url),
            "calling {ACTION}"
        );
        let response = self
            .http
            .post(format!("{}/?{}", self.base_url, signed.query))
            .header("x-acs-action", ACTION)
            .header("x-acs-version", API_VERSION)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(Vec::new())
            .send()
            .await
            .map_err(DbsError::transport)?;
        let status = response.status().as_u16();
        let retry_after = retry_after_header(response.headers());
        let bytes = response.bytes().await.map_err(DbsError::transport)?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let parsed = interpret(Reply {
            status,
            body: &body,
            retry_after,
            signed: Some(&signed.string_to_sign),
        });
        match &parsed {
            Ok(p) => debug!(
                watch_id = target.id(),
                attempt,
                status,
                request_id = p.request_id.as_deref().unwrap_or(""),
                dbs_status = p.snapshot.status.as_deref().unwrap_or(""),
                "DBS answered"
            ),
            Err(e) => debug!(
                watch_id = target.id(),
                attempt,
                status,
                kind = %e.kind(),
                request_id = e.request_id().unwrap_or(""),
                "DBS returned an error"
            ),
        }
        let parsed = parsed?;
        Ok(PrecheckResponse {
            snapshot: parsed.snapshot,
            request_id: parsed.request_id,
            body,
        })
    }

    /// Every request parameter except `Signature`.
    fn params(&self, target: &Target, nonce: &str, timestamp: &str) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("Action", ACTION.to_string()),
            ("Version", API_VERSION.to_string()),
            ("Format", "JSON".to_string()),
            ("AccessKeyId", self.credentials.access_key_id.clone()),
            ("SignatureMethod", "HMAC-SHA1".to_string()),
            ("SignatureVersion", "1.0".to_string()),
            ("SignatureNonce", nonce.to_string()),
            ("Timestamp", timestamp.to_string()),
            (target.param_name(), target.id().to_string()),
        ];
        if let Some(token) = &self.credentials.security_token {
            params.push(("SecurityToken", token.expose().to_string()));
        }
        params
    }
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
        let client = DbsClient::new(creds, options("http://127.0.0.1:1")).unwrap();
        let params = client.params(
            &Target::RestoreTask("r1".into()),
            "nonce",
            "2026-01-01T00:00:00Z",
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
}
