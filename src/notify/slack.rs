//! Slack incoming webhooks: reading the reply.
//!
//! Slack answers HTTP 200 with the plain-text body `ok` and nothing else counts as success.
//! Errors are plain-text codes (`invalid_payload`, `channel_not_found`…) with a 4xx status; they
//! are kept verbatim as the vendor code so the attempt log shows what Slack said.

use super::Verdict;
use super::http::{Reply, snippet};

/// Longest error code kept verbatim; anything longer is not a Slack code but a proxy page.
const MAX_CODE_CHARS: usize = 200;

/// Read Slack's answer: 200 `ok` delivered, 429 and 5xx retried, every other status permanent.
pub(crate) fn classify(reply: &Reply) -> Verdict {
    let status = reply.status;
    let text = reply.text();
    let body = text.trim();
    match status {
        200 if body == "ok" => Verdict::delivered(),
        200..=299 => Verdict::permanent(format!(
            "the URL answered HTTP {status} with {} instead of Slack's `ok`; check that the channel URL is a Slack incoming webhook (not retried, since the message may have been posted)",
            snippet(&reply.body)
        )),
        300..=399 => Verdict::permanent(format!(
            "Slack answered with a redirect (HTTP {status}), which is not followed; the channel URL should be https://hooks.slack.com/services/…"
        )),
        429 => Verdict::retryable(format!(
            "Slack is rate limiting this webhook (HTTP 429, about one message per second is allowed); the message will be retried after the wait Slack asked for{}",
            code_suffix(body)
        ))
        .with_code(code(body)),
        400..=499 => match code(body) {
            Some(code) => {
                let hint = hint(&code);
                Verdict::permanent(format!(
                    "Slack refused the message with HTTP {status} `{code}`: {hint}"
                ))
                .with_code(Some(code))
            }
            None => Verdict::permanent(format!(
                "Slack refused the message with HTTP {status} and {}; check the channel URL",
                snippet(&reply.body)
            )),
        },
        500..=599 => Verdict::retryable(format!(
            "Slack answered HTTP {status} with {}; Slack is having trouble, the message will be retried",
            snippet(&reply.body)
        ))
        .with_code(code(body)),
        _ => Verdict::permanent(format!(
            "Slack answered with the unexpected HTTP status {status} and {}",
            snippet(&reply.body)
        )),
    }
}

/// The error string as Slack sent it, when it looks like one (a short single line).
fn code(body: &str) -> Option<String> {
    let looks_like_code = !body.is_empty()
        && body.chars().count() <= MAX_CODE_CHARS
        && !body.contains('\n')
        && !body.starts_with('<');
    looks_like_code.then(|| body.to_string())
}

fn code_suffix(body: &str) -> String {
    code(body).map(|c| format!(" (`{c}`)")).unwrap_or_default()
}

/// What to do about a Slack error code, in plain words.
fn hint(code: &str) -> &'static str {
    match code {
        "invalid_payload"
        | "invalid_blocks"
        | "invalid_blocks_format"
        | "too_many_attachments"
        | "no_text"
        | "invalid_attachments"
        | "msg_blocks_too_long" => {
            "the template produced a body Slack refuses (invalid JSON, a missing `text`, too many blocks, or a section over 3,000 or a header over 150 characters); fix the channel's template"
        }
        "channel_not_found"
        | "channel_is_archived"
        | "no_service"
        | "no_service_id"
        | "no_team"
        | "team_disabled"
        | "invalid_token"
        | "no_active_hooks"
        | "user_not_found" => {
            "the webhook was removed or the app lost access to the channel: create a new incoming-webhook URL and put it in the channel's `url`"
        }
        "action_prohibited" | "posting_to_general_channel_denied" => {
            "a workspace admin restricts posting to that channel: ask an admin, or create a webhook for another channel"
        }
        _ => "see Slack's incoming-webhook error list for this code; the message is not retried",
    }
}

#[cfg(test)]
mod tests {
    use super::super::Outcome::{self, *};
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_and_bodies_decide_the_outcome() {
        let cases: &[(u16, &str, Outcome, Option<&str>)] = &[
            (200, "ok", Delivered, None),
            (200, "ok\n", Delivered, None),
            (200, "{\"ok\":true}", Permanent, None),
            (204, "", Permanent, None),
            (301, "", Permanent, None),
            (429, "rate_limited", Retryable, Some("rate_limited")),
            (400, "invalid_payload", Permanent, Some("invalid_payload")),
            (400, "invalid_blocks", Permanent, Some("invalid_blocks")),
            (
                403,
                "action_prohibited",
                Permanent,
                Some("action_prohibited"),
            ),
            (
                404,
                "channel_not_found",
                Permanent,
                Some("channel_not_found"),
            ),
            (
                410,
                "channel_is_archived",
                Permanent,
                Some("channel_is_archived"),
            ),
            (404, "<html>not found</html>", Permanent, None),
            (500, "rollup_error", Retryable, Some("rollup_error")),
            (502, "<html>\nbad gateway\n</html>", Retryable, None),
        ];
        for (status, body, outcome, code) in cases {
            let v = classify(&reply(*status, body));
            assert_eq!(v.outcome, *outcome, "{status} {body}: {}", v.error);
            assert_eq!(v.vendor_code.as_deref(), *code, "{status} {body}");
            assert_eq!(v.error.is_empty(), *outcome == Delivered, "{status} {body}");
        }
    }

    #[test]
    fn hints_say_what_to_do() {
        let v = classify(&reply(400, "invalid_payload"));
        assert!(v.error.starts_with("Slack refused the message with HTTP 400 `invalid_payload`: the template produced a body Slack refuses"), "{}", v.error);
        let v = classify(&reply(404, "no_service"));
        assert!(
            v.error.contains("create a new incoming-webhook URL"),
            "{}",
            v.error
        );
        let v = classify(&reply(400, "something_new"));
        assert!(v.error.contains("`something_new`"), "{}", v.error);
    }
}
