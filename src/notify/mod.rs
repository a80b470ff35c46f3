//! Chat senders: Slack incoming webhooks, DingTalk robots, Feishu/Lark bots, WeCom group bots
//! and generic webhooks (Standard Webhooks signing, optionally as CloudEvents).
//!
//! This module owns everything that touches a chat receiver: the final wire body (DingTalk
//! `msgUuid` and @mentions, the robot's security keyword, the CloudEvents envelope), request
//! signing, and reading the receiver's answer into an
//! [`Outcome`] the delivery loop can act on. It does not retry, sleep or store anything: the
//! caller owns the retry schedule and gets one [`SendReport`] per attempt.
//!
//! Invariants:
//! - No webhook URL, token or secret leaves this module: every error text and vendor code goes
//!   through the [`Redactor`] (plus the channel's own URL and secret), transport errors are
//!   stripped of their URL, and logs show only [`display_url`].
//! - `SendReport::sent_body` is byte for byte what went on the wire, and it is exactly what
//!   [`prepare_body`] returns, so `render` shows what `send` sends.
//! - Redirects are never followed: a signed body must not land somewhere the config did not name.

mod cloudevents;
mod dingtalk;
mod feishu;
mod http;
mod retry_after;
mod slack;
mod webhook;
mod wecom;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{Redactor, Secret, display_url};

pub use cloudevents::CloudEventsMode;
pub use dingtalk::{sign as dingtalk_sign, signed_url as dingtalk_signed_url};
pub use feishu::sign as feishu_sign;
pub use retry_after::parse_retry_after;
pub use webhook::{
    TOLERANCE as WEBHOOK_TOLERANCE, WebhookSecret, verify as verify_webhook,
    verify_headers as verify_webhook_headers,
};

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
    /// Feishu / Lark custom bot.
    Feishu,
    /// WeCom (企业微信) group bot.
    Wecom,
}

impl ChannelKind {
    /// The config name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Wecom => "wecom",
        }
    }

    /// The name people know the receiver by, for error messages.
    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Slack => "Slack",
            ChannelKind::Dingtalk => "DingTalk",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Feishu => "Feishu",
            ChannelKind::Wecom => "WeCom",
        }
    }

    /// Every kind, in config-documentation order.
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Dingtalk,
        ChannelKind::Slack,
        ChannelKind::Webhook,
        ChannelKind::Feishu,
        ChannelKind::Wecom,
    ];

    /// The kind for a config `type` value.
    pub fn parse(name: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == name)
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
    /// DingTalk `SEC...` signing secret, Feishu signing secret or Standard Webhooks
    /// `whsec_...` secret.
    pub secret: Option<Secret>,
    /// DingTalk mobiles to @-mention.
    pub at_mobiles: Vec<String>,
    /// DingTalk / Feishu: the robot's security keyword. Added to the message when the
    /// template left it out, because a robot with keyword security drops messages without it.
    pub keyword: Option<String>,
    /// Webhook: send the event as a CloudEvent (structured or binary mode).
    pub cloudevents: Option<CloudEventsMode>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// Worth trying again later.
    Retryable,
    /// Will not succeed without a fix (configuration or content).
    Permanent,
}

impl Outcome {
    /// A stable lowercase name, so the attempt log and the CLI spell outcomes the same way.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retryable => "retryable",
            Outcome::Permanent => "permanent",
        }
    }
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
    /// The exact body sent. Empty when the attempt stopped before a request was made (the
    /// body, the URL or the secret was unusable).
    pub sent_body: String,
    /// True when the receiver certainly did not take the message: the connection was never
    /// made, or it answered 429 or a "busy / too fast" code. The delivery loop may then merge
    /// the message with newer changes under a new id; after a timeout or a 5xx (the receiver
    /// may have processed it) the retry must carry the same id and content.
    pub not_received: bool,
}

/// Why a message could not be put on the wire. The texts are shown to operators, so each one
/// says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The template produced something that is not JSON.
    #[error(
        "the rendered {kind} body is not valid JSON ({detail}); fix the channel's template so it produces JSON"
    )]
    BodyNotJson {
        /// Receiver label.
        kind: &'static str,
        /// The parser's complaint (position and reason, never the body).
        detail: serde_json::Error,
    },
    /// The template produced JSON, but not the object the receiver expects.
    #[error(
        "the rendered {kind} body is a JSON {found}, not an object; fix the channel's template so it produces a JSON object"
    )]
    BodyNotObject {
        /// Receiver label.
        kind: &'static str,
        /// What was found instead.
        found: &'static str,
    },
    /// `at_mobiles` is set but the message type cannot mention anyone.
    #[error(
        "the channel has at_mobiles, but DingTalk only @-mentions people in `text` and `markdown` messages and the template renders msgtype `{msgtype}`; use a text or markdown template or remove at_mobiles"
    )]
    MentionUnsupported {
        /// The rendered `msgtype`.
        msgtype: String,
    },
    /// The rendered body has no text to put the @mentions in.
    #[error(
        "the channel has at_mobiles, but the rendered DingTalk body has no `{field}` string to put the @mentions in; fix the channel's template"
    )]
    MentionTextMissing {
        /// The JSON path that was missing.
        field: &'static str,
    },
    /// The template wrote an `at` field of the wrong shape.
    #[error(
        "the rendered DingTalk body has {problem}; fix the channel's template or leave `at` to at_mobiles"
    )]
    BadAtField {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The configured URL cannot be used.
    #[error("the channel URL is not a usable http(s) URL ({detail}); check the channel's `url`")]
    InvalidUrl {
        /// Why (never the URL itself).
        detail: String,
    },
    /// The Standard Webhooks secret cannot be decoded into a key.
    #[error(
        "the webhook secret is not valid base64 after the optional `whsec_` prefix ({detail}); copy the secret exactly as the receiver shows it"
    )]
    InvalidWebhookSecret {
        /// Why (never the secret itself).
        detail: String,
    },
    /// A keyword is configured but the message type has no text to put it in.
    #[error(
        "the channel has a `keyword`, but the rendered {kind} body (message type `{msgtype}`) has no text to add it to; use a text, markdown or card template, or remove `keyword`"
    )]
    KeywordNoText {
        /// Receiver label.
        kind: &'static str,
        /// The rendered message type.
        msgtype: String,
    },
    /// The webhook body lacks what a CloudEvent needs.
    #[error(
        "the rendered webhook body cannot be sent as a CloudEvent: {detail}; keep the built-in webhook template or give yours `id`, `type`, `time` and `data`"
    )]
    CloudEvents {
        /// What is missing.
        detail: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("the HTTP client could not be set up ({detail}); no message can be sent")]
    Client {
        /// The builder's complaint.
        detail: String,
    },
}

/// Source of "now" for signing timestamps and HTTP-date `Retry-After` values. Injectable so
/// tests can show that each attempt gets a fresh timestamp without sleeping.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Sends messages over one shared HTTP client, so connections to the same receiver are reused
/// and every request gets the same timeout and no-redirect policy.
#[derive(Clone)]
pub struct Notifier {
    client: Result<reqwest::Client, String>,
    timeout: Duration,
    redactor: Redactor,
    clock: Clock,
}

impl fmt::Debug for Notifier {
    // The redactor holds every secret in clear; it must never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("timeout", &self.timeout)
            .field("client_ready", &self.client.is_ok())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Build a notifier with the given per-request timeout (connect, send and read together).
    ///
    /// Does not fail: if the TLS stack cannot be set up, every send reports it as a permanent
    /// error instead, so a broken client shows up in the attempt log rather than as a panic.
    pub fn new(timeout: Duration, redactor: Redactor) -> Notifier {
        Notifier {
            client: http::build_client(timeout).map_err(|e| {
                Error::Client {
                    detail: http::describe_error_chain(&e.without_url()),
                }
                .to_string()
            }),
            timeout,
            redactor,
            clock: Arc::new(Utc::now),
        }
    }

    /// Replace the clock used for signing timestamps and `Retry-After` dates.
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    ) -> Notifier {
        self.clock = Arc::new(clock);
        self
    }

    /// Send one message to one channel: one HTTP attempt, classified. Never panics and never
    /// returns early without a report, so every attempt can be logged.
    pub async fn send(&self, channel: &ChannelSpec, msg: &Outgoing<'_>) -> SendReport {
        let mut redactor = self.redactor.clone();
        redactor.add_secret(&channel.url);
        if let Some(secret) = &channel.secret {
            redactor.add_secret(secret);
        }
        let started = Instant::now();
        let report = match self.attempt(channel, msg, &mut redactor).await {
            Ok(report) => report,
            Err(err) => SendReport {
                outcome: Outcome::Permanent,
                http_status: None,
                vendor_code: None,
                error: err.to_string(),
                duration: started.elapsed(),
                retry_after: None,
                sent_body: String::new(),
                not_received: true,
            },
        };
        let report = SendReport {
            error: redactor.redact(&report.error),
            vendor_code: report.vendor_code.map(|c| redactor.redact(&c)),
            ..report
        };
        tracing::debug!(
            channel = %channel.name,
            kind = channel.kind.as_str(),
            url = %display_url(channel.url.expose()),
            outcome = report.outcome.as_str(),
            http_status = ?report.http_status,
            vendor_code = ?report.vendor_code,
            duration_ms = report.duration.as_millis() as u64,
            error = %report.error,
            "notification attempt finished"
        );
        report
    }

    /// Build, send and classify one request. `Err` means nothing was sent.
    async fn attempt(
        &self,
        channel: &ChannelSpec,
        msg: &Outgoing<'_>,
        redactor: &mut Redactor,
    ) -> Result<SendReport, Error> {
        let client = self.client.as_ref().map_err(|detail| Error::Client {
            detail: detail.clone(),
        })?;
        let prepared = prepare(channel, msg.body, msg.delivery_id)?;
        let url = checked_url(channel.url.expose())?;
        let now = (self.clock)();
        let mut body = prepared.body;
        let request = match channel.kind {
            ChannelKind::Slack | ChannelKind::Wecom => client.post(url),
            ChannelKind::Dingtalk => match &channel.secret {
                Some(secret) => {
                    let signed =
                        dingtalk::signed_url(&url, secret.expose(), now.timestamp_millis());
                    let sign = dingtalk::sign(secret.expose(), now.timestamp_millis());
                    redactor.add(&dingtalk::encode_component(&sign));
                    redactor.add(&sign);
                    client.post(checked_url(&signed)?)
                }
                None => client.post(url),
            },
            ChannelKind::Feishu => {
                if let Some(secret) = &channel.secret {
                    let sign = feishu::sign(secret.expose(), now.timestamp());
                    redactor.add(&sign);
                    body = feishu::signed_body(&body, now.timestamp(), &sign)?;
                }
                client.post(url)
            }
            ChannelKind::Webhook => {
                let secret = match &channel.secret {
                    Some(s) => Some(WebhookSecret::parse(s.expose())?),
                    None => None,
                };
                let mut request = client
                    .post(url)
                    .header("webhook-id", msg.delivery_id)
                    .header("webhook-timestamp", now.timestamp().to_string());
                if let Some(secret) = secret {
                    let signature = secret.sign(msg.delivery_id, now.timestamp(), body.as_bytes());
                    request = request.header("webhook-signature", signature);
                }
                for (name, value) in &prepared.headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                request
            }
        }
        .header(reqwest::header::CONTENT_TYPE, prepared.content_type)
        .body(body.clone());

        tracing::debug!(
            channel = %channel.name,
            kind = channel.kind.as_str(),
            url = %display_url(channel.url.expose()),
            bytes = body.len(),
            "sending notification"
        );
        let started = Instant::now();
        let result = http::execute(request).await;
        let duration = started.elapsed();

        let (http_status, verdict, retry_after, not_received) = match result {
            Err(err) => {
                let never_connected = err.is_connect();
                let verdict = http::transport_verdict(err, self.timeout);
                (None, verdict, None, never_connected)
            }
            Ok(reply) => {
                let verdict = match channel.kind {
                    ChannelKind::Slack => slack::classify(&reply),
                    ChannelKind::Dingtalk => dingtalk::classify(&reply),
                    ChannelKind::Webhook => webhook::classify(&reply),
                    ChannelKind::Feishu => feishu::classify(&reply),
                    ChannelKind::Wecom => wecom::classify(&reply),
                };
                let retry_after = match verdict.outcome {
                    Outcome::Retryable => reply
                        .retry_after
                        .as_deref()
                        .and_then(|v| parse_retry_after(v, (self.clock)()))
                        .max(verdict.wait),
                    _ => None,
                };
                // A 429, or a 2xx whose body code says "busy / too fast": refused, not taken.
                let refused = verdict.outcome == Outcome::Retryable
                    && (reply.status == 429
                        || ((200..300).contains(&reply.status) && verdict.vendor_code.is_some()));
                (Some(reply.status), verdict, retry_after, refused)
            }
        };
        Ok(SendReport {
            outcome: verdict.outcome,
            http_status,
            vendor_code: verdict.vendor_code,
            error: verdict.error,
            duration,
            retry_after,
            sent_body: body,
            not_received,
        })
    }
}

/// A classified answer, before redaction.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) vendor_code: Option<String>,
    pub(crate) error: String,
    /// A wait the vendor imposes without saying so in a header (DingTalk's 10-minute throttle).
    pub(crate) wait: Option<Duration>,
}

impl Verdict {
    pub(crate) fn delivered() -> Verdict {
        Verdict {
            outcome: Outcome::Delivered,
            vendor_code: None,
            error: String::new(),
            wait: None,
        }
    }

    pub(crate) fn retryable(error: String) -> Verdict {
        Verdict {
            outcome: Outcome::Retryable,
            vendor_code: None,
            error,
            wait: None,
        }
    }

    pub(crate) fn permanent(error: String) -> Verdict {
        Verdict {
            outcome: Outcome::Permanent,
            vendor_code: None,
            error,
            wait: None,
        }
    }

    pub(crate) fn with_code(mut self, code: Option<String>) -> Verdict {
        self.vendor_code = code;
        self
    }

    pub(crate) fn with_wait(mut self, wait: Duration) -> Verdict {
        self.wait = Some(wait);
        self
    }
}

/// A request as it will go on the wire, except what depends on the moment it is sent
/// (signatures and their timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The exact body bytes (before Feishu's `timestamp`/`sign`, which are added per attempt).
    pub body: String,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// Extra headers (CloudEvents binary mode `ce-*`), in order.
    pub headers: Vec<(String, String)>,
}

impl Prepared {
    fn json(body: String) -> Prepared {
        Prepared {
            body,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }
}

/// The body as it will go on the wire: the rendered body plus what the channel adds
/// (DingTalk `at` and `@mobile` mentions, `msgUuid`, a missing security keyword, the
/// CloudEvents envelope). Errors when the rendered body is not JSON.
///
/// `send` calls this itself, so the `render` command shows exactly what would be sent.
pub fn prepare_body(
    channel: &ChannelSpec,
    rendered: &str,
    delivery_id: &str,
) -> Result<String, String> {
    prepare(channel, rendered, delivery_id)
        .map(|p| p.body)
        .map_err(|e| e.to_string())
}

/// Like [`prepare_body`], with the content type and the extra headers (CloudEvents binary
/// mode carries the event's attributes in `ce-*` headers, not in the body).
pub fn prepare_request(
    channel: &ChannelSpec,
    rendered: &str,
    delivery_id: &str,
) -> Result<Prepared, String> {
    prepare(channel, rendered, delivery_id).map_err(|e| e.to_string())
}

/// Check what can be checked before the first send (URL shape, webhook secret encoding), so
/// configuration validation can report it at startup instead of in the attempt log.
pub fn validate_channel(channel: &ChannelSpec) -> Result<(), String> {
    checked_url(channel.url.expose()).map_err(|e| e.to_string())?;
    if channel.kind == ChannelKind::Webhook
        && let Some(secret) = &channel.secret
    {
        WebhookSecret::parse(secret.expose()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn prepare(channel: &ChannelSpec, rendered: &str, delivery_id: &str) -> Result<Prepared, Error> {
    let kind = channel.kind.label();
    let value: Value =
        serde_json::from_str(rendered).map_err(|detail| Error::BodyNotJson { kind, detail })?;
    let keyword = channel.keyword.as_deref().filter(|k| !k.trim().is_empty());
    match channel.kind {
        // The generic receiver gets the event JSON byte for byte: it may verify a signature
        // over it, and re-serialising could reorder or re-escape it.
        ChannelKind::Webhook => match channel.cloudevents {
            None => Ok(Prepared::json(rendered.to_string())),
            Some(mode) => cloudevents::wrap(mode, value),
        },
        ChannelKind::Slack | ChannelKind::Wecom => {
            into_object(kind, value)?;
            Ok(Prepared::json(rendered.to_string()))
        }
        ChannelKind::Dingtalk => {
            let object = into_object(kind, value)?;
            let object = dingtalk::prepare(object, delivery_id, &channel.at_mobiles, keyword)?;
            Ok(Prepared::json(Value::Object(object).to_string()))
        }
        ChannelKind::Feishu => {
            let object = into_object(kind, value)?;
            let object = feishu::prepare(object, keyword)?;
            Ok(Prepared::json(Value::Object(object).to_string()))
        }
    }
}

/// True when some string in `value` contains `needle`: a robot's keyword check reads the
/// message's text wherever the template put it.
pub(crate) fn any_string_contains(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|v| any_string_contains(v, needle)),
        Value::Object(map) => map.values().any(|v| any_string_contains(v, needle)),
        _ => false,
    }
}

fn into_object(kind: &'static str, value: Value) -> Result<serde_json::Map<String, Value>, Error> {
    let found = match value {
        Value::Object(object) => return Ok(object),
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
    };
    Err(Error::BodyNotObject { kind, found })
}

/// The URL, if reqwest will accept it as an http(s) target. The parse error names the problem,
/// never the URL.
fn checked_url(url: &str) -> Result<String, Error> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| Error::InvalidUrl {
        detail: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" => Ok(url.trim().to_string()),
        other => Err(Error::InvalidUrl {
            detail: format!("the scheme is `{other}`, expected https"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ChannelKind, at: &[&str]) -> ChannelSpec {
        ChannelSpec {
            name: "ops".into(),
            kind,
            url: Secret::new("https://example.invalid/hook?access_token=tok123456"),
            secret: None,
            at_mobiles: at.iter().map(|s| s.to_string()).collect(),
            keyword: None,
            cloudevents: None,
        }
    }

    #[test]
    fn slack_and_webhook_bodies_go_out_unchanged() {
        let body = "{ \"text\": \"hi\",\n \"blocks\": [] }";
        assert_eq!(
            prepare_body(&spec(ChannelKind::Slack, &[]), body, "d1").unwrap(),
            body
        );
        let event = "[1, 2,  3]";
        assert_eq!(
            prepare_body(&spec(ChannelKind::Webhook, &[]), event, "d1").unwrap(),
            event
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused_in_plain_words() {
        let err = prepare_body(&spec(ChannelKind::Slack, &[]), "{\"text\": ", "d").unwrap_err();
        assert!(
            err.starts_with("the rendered Slack body is not valid JSON"),
            "{err}"
        );
        assert!(err.contains("fix the channel's template"), "{err}");
        let err = prepare_body(&spec(ChannelKind::Dingtalk, &[]), "[1]", "d").unwrap_err();
        assert_eq!(
            err,
            "the rendered DingTalk body is a JSON array, not an object; fix the channel's template so it produces a JSON object"
        );
        let err = prepare_body(&spec(ChannelKind::Webhook, &[]), "not json", "d").unwrap_err();
        assert!(
            err.starts_with("the rendered webhook body is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn dingtalk_body_gets_msg_uuid_and_keeps_key_order() {
        let body = r#"{"msgtype":"markdown","markdown":{"title":"T","text":"告警"}}"#;
        let out = prepare_body(&spec(ChannelKind::Dingtalk, &[]), body, "uuid-1").unwrap();
        assert_eq!(
            out,
            r#"{"msgtype":"markdown","markdown":{"title":"T","text":"告警"},"msgUuid":"uuid-1"}"#
        );
    }

    #[test]
    fn urls_are_checked_without_echoing_them() {
        let mut s = spec(ChannelKind::Slack, &[]);
        s.url = Secret::new("hooks.slack.com/services/T/B/secretsecret");
        let err = validate_channel(&s).unwrap_err();
        assert!(
            err.starts_with("the channel URL is not a usable http(s) URL"),
            "{err}"
        );
        assert!(!err.contains("secretsecret"), "{err}");
        s.url = Secret::new("ftp://example.invalid/secretsecret");
        let err = validate_channel(&s).unwrap_err();
        assert!(err.contains("scheme is `ftp`"), "{err}");
        assert!(validate_channel(&spec(ChannelKind::Slack, &[])).is_ok());
    }

    #[test]
    fn validate_channel_rejects_a_webhook_secret_that_is_not_base64() {
        let mut s = spec(ChannelKind::Webhook, &[]);
        s.secret = Some(Secret::new("whsec_not*base64!"));
        let err = validate_channel(&s).unwrap_err();
        assert!(
            err.starts_with("the webhook secret is not valid base64"),
            "{err}"
        );
        assert!(!err.contains("not*base64"), "{err}");
        s.secret = Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(validate_channel(&s).is_ok());
    }

    #[test]
    fn notifier_debug_hides_the_redactor() {
        let mut r = Redactor::new();
        r.add("https://hooks.example/services/T/B/topsecret-token");
        let n = Notifier::new(Duration::from_secs(1), r);
        let dbg = format!("{n:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(dbg.contains("timeout"), "{dbg}");
    }

    #[test]
    fn outcome_names_are_stable() {
        assert_eq!(Outcome::Delivered.as_str(), "delivered");
        assert_eq!(Outcome::Retryable.as_str(), "retryable");
        assert_eq!(Outcome::Permanent.as_str(), "permanent");
    }
}
