//! Credentials of the ECS instance's RAM role, from the instance metadata service (IMDS).
//!
//! The same protocol as Alibaba Cloud's credential libraries: an IMDSv2 session token first
//! (`PUT /latest/api/token`), then the role name (listed when not configured) and the role's STS
//! credentials, each request carrying the token. When the token cannot be had and IMDSv1 is not
//! disabled, the requests go without it. The STS credentials are cached and fetched again when
//! less than [`REFRESH_BEFORE`] of their lifetime is left; if a refresh fails while the cached
//! ones are still valid, those are used and the failure is logged.
//!
//! The metadata address is configurable so tests point it at a mock on 127.0.0.1; the real one,
//! [`DEFAULT_METADATA_ENDPOINT`], is only ever contacted when nothing else supplied credentials.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;

use super::Credentials;
use super::client::Clock;
use super::credentials::CredentialError;
use crate::secret::{Secret, display_url};

/// The ECS metadata service.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";

/// Refresh the role's credentials when this little of their lifetime is left (as CRED-GO does).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(180);

/// How long an IMDSv2 token is asked to live, in seconds (the SDKs' value).
pub const TOKEN_TTL_SECS: u32 = 21600;

const TOKEN_PATH: &str = "/latest/api/token";
const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";

/// How to reach the metadata service.
#[derive(Debug, Clone)]
pub struct ImdsSettings {
    /// Base URL, [`DEFAULT_METADATA_ENDPOINT`] on ECS.
    pub endpoint: String,
    /// The RAM role; `None` asks the service which role the instance has.
    pub role: Option<String>,
    /// Whether requests may go without a session token when none can be had (IMDSv1).
    pub allow_v1: bool,
    /// Connect and read timeout of each metadata request (the SDKs use one second).
    pub timeout: Duration,
}

impl ImdsSettings {
    /// The SDK defaults for `endpoint`: one-second timeouts, IMDSv1 fallback allowed.
    pub fn new(endpoint: impl Into<String>, role: Option<String>) -> ImdsSettings {
        ImdsSettings {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            role,
            allow_v1: true,
            timeout: Duration::from_secs(1),
        }
    }
}

/// What the provider has done, for tests and `whoami`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImdsStats {
    /// Successful credential fetches from the service.
    pub fetches: u32,
    /// IMDSv2 tokens obtained.
    pub tokens: u32,
    /// Fetches that went without a token because none could be had.
    pub v1_fallbacks: u32,
    /// The role the credentials belong to, once known.
    pub role: Option<String>,
    /// When the cached credentials expire.
    pub expiration: Option<DateTime<Utc>>,
}

struct Cached {
    credentials: Credentials,
    expiration: DateTime<Utc>,
}

/// Fetches and caches the instance role's STS credentials.
pub struct ImdsProvider {
    http: reqwest::Client,
    settings: ImdsSettings,
    clock: Clock,
    cache: tokio::sync::Mutex<Option<Cached>>,
    stats: Arc<Mutex<ImdsStats>>,
}

impl fmt::Debug for ImdsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImdsProvider")
            .field("endpoint", &display_url(&self.settings.endpoint))
            .field("role", &self.settings.role)
            .finish_non_exhaustive()
    }
}

impl ImdsProvider {
    /// A provider for `settings`; nothing is contacted until credentials are first needed.
    pub fn new(settings: ImdsSettings) -> Result<ImdsProvider, CredentialError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| CredentialError::Metadata {
                reason: format!("the HTTP client cannot be built: {e}"),
            })?;
        Ok(ImdsProvider {
            http,
            settings,
            clock: Clock::system(),
            cache: tokio::sync::Mutex::new(None),
            stats: Arc::new(Mutex::new(ImdsStats::default())),
        })
    }

    /// Replaces the clock that decides when cached credentials need refreshing.
    pub fn with_clock(mut self, clock: Clock) -> ImdsProvider {
        self.clock = clock;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &ImdsSettings {
        &self.settings
    }

    /// What the provider has done so far.
    pub fn stats(&self) -> ImdsStats {
        lock(&self.stats).clone()
    }

    /// Forgets the cached credentials, so the next call fetches fresh ones (after the server
    /// called them expired before we thought they were).
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.try_lock() {
            *cache = None;
        }
    }

    /// The role's current credentials: cached while more than [`REFRESH_BEFORE`] remains.
    pub async fn credentials(&self) -> Result<Credentials, CredentialError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        let refresh_at = TimeDelta::from_std(REFRESH_BEFORE).unwrap_or(TimeDelta::zero());
        if let Some(cached) = cache.as_ref()
            && cached.expiration - now > refresh_at
        {
            return Ok(cached.credentials.clone());
        }
        match self.fetch().await {
            Ok(fresh) => {
                let credentials = fresh.credentials.clone();
                *cache = Some(fresh);
                Ok(credentials)
            }
            Err(e) => match cache.as_ref() {
                Some(cached) if cached.expiration > now => {
                    tracing::warn!(
                        error = %e,
                        expires = %cached.expiration,
                        "could not refresh the ECS RAM role credentials; using the cached ones until they expire"
                    );
                    Ok(cached.credentials.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Cached, CredentialError> {
        let token = match self.token().await {
            Ok(token) => {
                lock(&self.stats).tokens += 1;
                Some(token)
            }
            Err(e) if self.settings.allow_v1 => {
                tracing::debug!(error = %e, "no IMDSv2 token; falling back to IMDSv1");
                lock(&self.stats).v1_fallbacks += 1;
                None
            }
            Err(e) => {
                return Err(CredentialError::Metadata {
                    reason: format!(
                        "{e}; IMDSv1 is disabled (ALIBABA_CLOUD_IMDSV1_DISABLED=true), so dbswatch \
                         cannot go on without a token"
                    ),
                });
            }
        };
        let role = match &self.settings.role {
            Some(role) => role.clone(),
            None => {
                let list = self.get(ROLES_PATH, token.as_ref()).await?;
                list.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| CredentialError::Metadata {
                        reason:
                            "this ECS instance has no RAM role attached; attach one in the ECS \
                                 console or configure another credential source"
                                .to_string(),
                    })?
            }
        };
        let body = self
            .get(&format!("{ROLES_PATH}{role}"), token.as_ref())
            .await?;
        let cached = parse_role_credentials(&body, &role)?;
        let mut stats = lock(&self.stats);
        stats.fetches += 1;
        stats.role = Some(role);
        stats.expiration = Some(cached.expiration);
        Ok(cached)
    }

    async fn token(&self) -> Result<Secret, CredentialError> {
        let url = format!("{}{TOKEN_PATH}", self.settings.endpoint);
        let response = self
            .http
            .put(&url)
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECS.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() || text.trim().is_empty() {
            return Err(CredentialError::Metadata {
                reason: format!("the metadata service gave no IMDSv2 token (HTTP {status})"),
            });
        }
        Ok(Secret::new(text.trim()))
    }

    async fn get(&self, path: &str, token: Option<&Secret>) -> Result<String, CredentialError> {
        let url = format!("{}{path}", self.settings.endpoint);
        let mut request = self.http.get(&url);
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token.expose());
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        if status.as_u16() == 404 && path != ROLES_PATH {
            return Err(CredentialError::Metadata {
                reason: format!(
                    "the instance has no RAM role named `{}`; check the role name \
                     (ecs_ram_role / ALIBABA_CLOUD_ECS_METADATA) against the role attached in the \
                     ECS console",
                    path.trim_start_matches(ROLES_PATH)
                ),
            });
        }
        if !status.is_success() {
            return Err(CredentialError::Metadata {
                reason: format!("the metadata service answered HTTP {status} for {path}"),
            });
        }
        Ok(text)
    }

    fn unreachable(&self, error: &reqwest::Error) -> CredentialError {
        let what = if error.is_timeout() {
            "did not answer in time"
        } else {
            "could not be reached"
        };
        CredentialError::Metadata {
            reason: format!(
                "the ECS metadata service at {} {what}; dbswatch is probably not running on an \
                 ECS instance with a RAM role, so configure an AccessKey, a CLI profile or a \
                 credentials file (or set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true to skip this)",
                display_url(&self.settings.endpoint)
            ),
        }
    }
}

/// Reads the role credentials document: `Code` must be `Success`; the keys and the expiration
/// must be there.
fn parse_role_credentials(body: &str, role: &str) -> Result<Cached, CredentialError> {
    let bad = |what: &str| CredentialError::Metadata {
        reason: format!("the metadata service's answer for role `{role}` {what}"),
    };
    let value: Value = serde_json::from_str(body).map_err(|_| bad("is not JSON"))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match field("Code") {
        Some("Success") => {}
        Some(code) => return Err(bad(&format!("has Code {code}, not Success"))),
        None => return Err(bad("has no Code")),
    }
    let id = field("AccessKeyId").ok_or_else(|| bad("has no AccessKeyId"))?;
    let secret = field("AccessKeySecret").ok_or_else(|| bad("has no AccessKeySecret"))?;
    let token = field("SecurityToken").ok_or_else(|| bad("has no SecurityToken"))?;
    let expiration = field("Expiration")
        .and_then(parse_expiration)
        .ok_or_else(|| bad("has no readable Expiration"))?;
    Ok(Cached {
        credentials: Credentials {
            access_key_id: id.to_string(),
            access_key_secret: Secret::new(secret),
            security_token: Some(Secret::new(token)),
        },
        expiration,
    })
}

/// `2006-01-02T15:04:05Z` as the service writes it; RFC 3339 is accepted too.
fn parse_expiration(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
        .map(|t| t.and_utc())
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_credentials_are_read_and_checked() {
        let ok = r#"{"AccessKeyId":"STS.role","AccessKeySecret":"role-secret","Expiration":"2026-12-03T10:00:00Z",
                     "SecurityToken":"CAIS-role","LastUpdated":"2026-12-03T04:00:00Z","Code":"Success"}"#;
        let c = parse_role_credentials(ok, "r").unwrap();
        assert_eq!(c.credentials.access_key_id, "STS.role");
        assert_eq!(c.credentials.security_token.unwrap().expose(), "CAIS-role");
        assert_eq!(c.expiration.to_rfc3339(), "2026-12-03T10:00:00+00:00");
        for (body, needle) in [
            ("<html>", "is not JSON"),
            (r#"{"Code":"Failed"}"#, "Code Failed"),
            (
                r#"{"Code":"Success","AccessKeyId":"x"}"#,
                "no AccessKeySecret",
            ),
            (
                r#"{"Code":"Success","AccessKeyId":"x","AccessKeySecret":"role-secret","SecurityToken":"t","Expiration":"soon"}"#,
                "no readable Expiration",
            ),
        ] {
            let e = parse_role_credentials(body, "r").err().unwrap();
            assert!(e.to_string().contains(needle), "{body}: {e}");
            assert!(!e.to_string().contains("role-secret"), "{e}");
        }
    }

    #[test]
    fn expiration_formats() {
        assert!(parse_expiration("2026-12-03T10:00:00Z").is_some());
        assert!(parse_expiration("2026-12-03T10:00:00+08:00").is_some());
        assert!(parse_expiration("").is_none());
    }
}
