//! `dbswatch test-channel NAME`: send one clearly marked test message and say, in plain words,
//! what the receiver answered.
//!
//! The first message to a new robot is where every setup mistake shows (a keyword the robot
//! wants, a signing secret that does not match, a URL missing its key). Finding that out at
//! setup time, with the vendor's code and what to change, beats finding it when a pre-check
//! fails at 3 a.m.

use crate::config::Config;
use crate::notify::{Notifier, Outcome, Outgoing, SendReport};
use crate::render::Renderer;

/// Why no test message was sent.
#[derive(Debug, thiserror::Error)]
pub enum TestChannelError {
    /// The channel is not configured.
    #[error("no channel named `{name}`; configured: {known}")]
    UnknownChannel {
        /// The name asked for.
        name: String,
        /// The configured names.
        known: String,
    },
    /// The message could not be rendered.
    #[error("the test message could not be rendered: {0}")]
    Render(String),
}

/// What happened to the test message.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The receiver's verdict, as in the attempt log.
    pub report: SendReport,
    /// The one-paragraph answer for the operator.
    pub summary: String,
}

/// Send the test message to `name` and describe the answer.
pub async fn send_test(config: &Config, name: &str) -> Result<TestResult, TestChannelError> {
    let channel = config
        .channel(name)
        .ok_or_else(|| TestChannelError::UnknownChannel {
            name: name.to_string(),
            known: config
                .channels
                .iter()
                .map(|c| c.spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let renderer = Renderer::new(&config.templates()).map_err(|errors| {
        TestChannelError::Render(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    // Fresh per test, so receivers that deduplicate (DingTalk msgUuid) show every test.
    let delivery_id = uuid::Uuid::new_v4().to_string();
    let rendered = renderer
        .render_test(name, &delivery_id)
        .map_err(|e| TestChannelError::Render(e.to_string()))?;
    let notifier = Notifier::new(config.delivery.timeout, config.redactor());
    let report = notifier
        .send(
            &channel.spec,
            &Outgoing {
                delivery_id: &delivery_id,
                body: &rendered.body,
            },
        )
        .await;
    let mut summary = describe(&channel.spec.name, channel.spec.kind.label(), &report);
    if let Some(reason) = rendered.fallback_reason {
        summary.push_str(&format!(
            "\nNote: the channel's own template failed, so the built-in one was used: {reason}"
        ));
    }
    Ok(TestResult { report, summary })
}

/// `ops-dingtalk (DingTalk): delivered, ...` or `... not delivered: <what to do>`.
pub fn describe(name: &str, receiver: &str, report: &SendReport) -> String {
    let answer = match (report.http_status, &report.vendor_code) {
        (Some(status), Some(code)) => format!("HTTP {status}, code {code}"),
        (Some(status), None) => format!("HTTP {status}"),
        (None, _) => "no answer".to_string(),
    };
    let took = report.duration.as_millis();
    match report.outcome {
        Outcome::Delivered => format!(
            "{name} ({receiver}): delivered; the receiver accepted the test message ({answer}, {took} ms). Look for \"dbswatch test message\" in the chat."
        ),
        Outcome::Retryable => format!(
            "{name} ({receiver}): not delivered ({answer}); this may pass later: {}",
            report.error
        ),
        Outcome::Permanent => format!(
            "{name} ({receiver}): not delivered ({answer}): {}",
            report.error
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(
        outcome: Outcome,
        status: Option<u16>,
        code: Option<&str>,
        error: &str,
    ) -> SendReport {
        SendReport {
            outcome,
            http_status: status,
            vendor_code: code.map(String::from),
            error: error.to_string(),
            duration: Duration::from_millis(42),
            retry_after: None,
            sent_body: String::new(),
            not_received: false,
        }
    }

    #[test]
    fn verdicts_read_as_sentences() {
        assert_eq!(
            describe(
                "ops",
                "DingTalk",
                &report(Outcome::Delivered, Some(200), None, "")
            ),
            "ops (DingTalk): delivered; the receiver accepted the test message (HTTP 200, 42 ms). Look for \"dbswatch test message\" in the chat."
        );
        assert_eq!(
            describe(
                "ops",
                "DingTalk",
                &report(
                    Outcome::Permanent,
                    Some(200),
                    Some("310000"),
                    "DingTalk errcode 310000 (keywords not in content): the robot's security settings rejected the message: add the keyword or the signing secret"
                )
            ),
            "ops (DingTalk): not delivered (HTTP 200, code 310000): DingTalk errcode 310000 (keywords not in content): the robot's security settings rejected the message: add the keyword or the signing secret"
        );
        let later = describe(
            "wx",
            "WeCom",
            &report(Outcome::Retryable, None, None, "could not connect"),
        );
        assert_eq!(
            later,
            "wx (WeCom): not delivered (no answer); this may pass later: could not connect"
        );
    }
}
