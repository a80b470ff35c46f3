//! The DBS OpenAPI client: RPC signature V1, endpoints, response parsing and error classification.
//!
//! INTERFACE STUB: replaced by the real implementation (see the helper brief).

use std::time::Duration;

use crate::secret::Secret;
use crate::snapshot::{Snapshot, Target};

/// AccessKey credentials, optionally with an STS token.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The AccessKey id (not secret, but not shown in full either).
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: Secret,
    /// STS security token, sent as `SecurityToken` and signed.
    pub security_token: Option<Secret>,
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

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct DbsError;

impl DbsError {
    /// The DBS or gateway error code, when there is one.
    pub fn code(&self) -> Option<&str> {
        None
    }
    /// What the user should do about it.
    pub fn hint(&self) -> String {
        String::new()
    }
    /// Whether retrying later may help.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The region's DBS endpoint base URL.
pub fn endpoint_for_region(region: &str) -> String {
    format!("https://dbs-api.{region}.aliyuncs.com")
}

/// The DBS client.
#[derive(Debug, Clone)]
pub struct DbsClient;

impl DbsClient {
    /// Build a client.
    pub fn new(_credentials: Credentials, _options: ClientOptions) -> Result<DbsClient, DbsError> {
        Ok(DbsClient)
    }
    /// Call DescribePreCheckProgressList for the target.
    pub async fn describe_precheck_progress(
        &self,
        _target: &Target,
    ) -> Result<PrecheckResponse, DbsError> {
        Err(DbsError)
    }
}
