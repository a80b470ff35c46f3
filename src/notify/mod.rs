//! Chat senders: Slack incoming webhooks, DingTalk robots and generic (Standard Webhooks) webhooks.
//!
//! INTERFACE STUB: replaced by the real implementation (see the helper brief).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::{Redactor, Secret};

/// Which kind of receiver a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Slack incoming webhook.
    Slack,
    /// DingTalk custom robot.
    Dingtalk,
    /// Generic JSON webhook, optionally signed with Standard Webhooks.
    Webhook,
}

impl ChannelKind {
    /// The config name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// Everything a sender needs to know about one configured channel.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    /// The configured name.
    pub name: String,
    /// The receiver kind.
    pub kind: ChannelKind,
    /// The webhook URL (a secret: Slack and DingTalk URLs carry tokens).
    pub url: Secret,
    /// DingTalk `SEC...` signing secret or Standard Webhooks `whsec_...` secret.
    pub secret: Option<Secret>,
    /// DingTalk mobiles to @-mention.
    pub at_mobiles: Vec<String>,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// Stable across retries: DingTalk `msgUuid`, Standard Webhooks `webhook-id`.
    pub delivery_id: &'a str,
    /// The rendered body (JSON text produced by the channel's template).
    pub body: &'a str,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// Worth trying again later.
    Retryable,
    /// Will not succeed without a fix (configuration or content).
    Permanent,
}

/// What happened on one attempt, for the attempt log.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The verdict.
    pub outcome: Outcome,
    /// HTTP status, when a response came back.
    pub http_status: Option<u16>,
    /// Vendor code (DingTalk errcode, Slack error string).
    pub vendor_code: Option<String>,
    /// Plain-words reason with a hint, secrets redacted. Empty on success.
    pub error: String,
    /// Wall time of the attempt.
    pub duration: Duration,
    /// Receiver asked us to wait at least this long (Retry-After).
    pub retry_after: Option<Duration>,
    /// The exact body sent.
    pub sent_body: String,
}

/// Sends messages over a shared HTTP client.
#[derive(Debug, Clone)]
pub struct Notifier;

impl Notifier {
    /// Build a notifier with the given per-request timeout.
    pub fn new(_timeout: Duration, _redactor: Redactor) -> Notifier {
        Notifier
    }
    /// Send one message to one channel.
    pub async fn send(&self, _channel: &ChannelSpec, _msg: &Outgoing<'_>) -> SendReport {
        unimplemented!()
    }
}

/// The body as it will go on the wire: the rendered body plus what the channel adds
/// (DingTalk `at` and `@mobile` mentions, `msgUuid`). Errors when the rendered body is not JSON.
pub fn prepare_body(
    _channel: &ChannelSpec,
    rendered: &str,
    _delivery_id: &str,
) -> Result<String, String> {
    Ok(rendered.to_string())
}
