//! The DBS OpenAPI client: RPC signature V1, endpoints, response parsing and error classification.
//!
//! This module is the only place that speaks the DBS wire protocol. It hands the rest of
//! dbswatch a [`Snapshot`] or a classified [`DbsError`], so nothing else needs to know about
//! percent-encoding, `Success:false` bodies or gateway error codes.
//!
//! - [`sign`]: percent-encoding, canonical query, string to sign, HMAC-SHA1 (pure).
//! - [`endpoint`]: region to host.
//! - [`response`]: reply to snapshot or error (pure).
//! - [`error`]: the error type, its classification and the user-facing hints.
//! - [`client`]: the HTTP client with retries, the rate limiter and clock-skew detection.
//! - [`credentials`]: the credential chain (config, environment, CLI profile, ini file, ECS RAM
//!   role) and the provider the client asks before every attempt; [`profiles`] parses the files,
//!   [`imds`] talks to the ECS metadata service.
//! - [`lists`]: `DescribeBackupPlanList`, `DescribeRestoreTaskList`, `DescribeJobErrorCode`.
//! - [`limiter`]: the process-wide request rate and concurrency limit.
//!
//! It must not log secrets, signatures or request URLs, and it must not touch the store or the
//! notifiers.

use std::fmt;
use std::time::Duration;

use crate::secret::Secret;
use crate::snapshot::Snapshot;

pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod imds;
pub mod limiter;
pub mod lists;
pub mod profiles;
pub mod response;
pub mod sign;

pub use client::{ClientStats, DbsClient};
pub use credentials::{CredentialError, CredentialProvider, CredentialSource};
pub use endpoint::{endpoint_for_region, vpc_endpoint_for_region};
pub use error::{DbsError, ErrorKind, SignatureDiagnosis};
pub use limiter::{Limiter, LimiterSettings};

/// The action dbswatch calls.
pub const ACTION: &str = "DescribePreCheckProgressList";
/// The DBS API version the action belongs to.
pub const API_VERSION: &str = "2019-03-06";

/// AccessKey credentials, optionally with an STS token.
///
/// The secret and the token are [`Secret`]s so they cannot reach a log line by accident; the id is
/// masked in `Debug` too, because it identifies the account.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The AccessKey id (not secret, but not shown in full either).
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: Secret,
    /// STS security token, sent as `SecurityToken` and signed.
    pub security_token: Option<Secret>,
}

impl Credentials {
    /// Long-lived AccessKey credentials without an STS token.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: None,
        }
    }

    /// The id as it may be shown: its first four characters, enough to tell keys apart.
    pub fn masked_id(&self) -> String {
        let shown: String = self.access_key_id.chars().take(4).collect();
        format!("{shown}****")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.masked_id())
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .finish()
    }
}

/// How the client talks to DBS.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL, e.g. `https://dbs-api.cn-hangzhou.aliyuncs.com` or `http://127.0.0.1:18080`.
    pub endpoint: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Retries of transient errors (throttling, 5xx, transport) inside one poll.
    pub max_retries: u32,
    /// First backoff delay; doubles each retry, with jitter.
    pub retry_base: Duration,
}

impl ClientOptions {
    /// Defaults that suit a poller: the SDKs' 10 s read timeout, 3 retries from 500 ms (the
    /// throttling backoff of the Python SDK), so one poll gives up within about a minute.
    pub fn for_endpoint(endpoint: impl Into<String>) -> ClientOptions {
        ClientOptions {
            endpoint: endpoint.into(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_base: Duration::from_millis(500),
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct PrecheckResponse {
    /// The normalised content.
    pub snapshot: Snapshot,
    /// DBS RequestId, for support tickets.
    pub request_id: Option<String>,
    /// The exact body received.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_shows_neither_secret_nor_full_id() {
        let mut c = Credentials::new("LTAI5tAbCdEfGhIj", "super-secret-value");
        c.security_token = Some(Secret::new("CAIS-token-value"));
        let text = format!("{c:?}");
        assert!(text.contains("LTAI****"), "{text}");
        assert!(!text.contains("LTAI5tAbCdEfGhIj"), "{text}");
        assert!(!text.contains("super-secret-value"), "{text}");
        assert!(!text.contains("CAIS-token-value"), "{text}");
    }

    #[test]
    fn default_options_point_at_the_endpoint() {
        let o = ClientOptions::for_endpoint(endpoint_for_region("cn-hangzhou"));
        assert_eq!(o.endpoint, "https://dbs-api.cn-hangzhou.aliyuncs.com");
        assert!(o.timeout > o.connect_timeout);
        assert_eq!(o.max_retries, 3);
    }
}
