//! WeCom (企业微信) group bots: reading the `errcode` reply.
//!
//! WeCom answers HTTP 200 with `{"errcode":0,"errmsg":"ok"}` on success and a non-zero
//! `errcode` on failure, so the body decides, as for DingTalk. The URL carries the bot's `key`;
//! there is no signing.

use super::Verdict;
use super::http::{Reply, json_code, snippet};

/// Read WeCom's answer. 5xx and 429 are worth retrying; otherwise `errcode` decides.
pub(crate) fn classify(reply: &Reply) -> Verdict {
    let status = reply.status;
    if status == 429 || (500..=599).contains(&status) {
        return Verdict::retryable(format!(
            "WeCom answered HTTP {status} with {}; it is busy or down, the message will be retried",
            snippet(&reply.body)
        ));
    }
    let Some((code, errmsg)) = json_code(&reply.body, &["errcode"], &["errmsg"]) else {
        return super::http::unreadable_reply(
            "WeCom",
            status,
            &reply.body,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…",
        );
    };
    if code == 0 && (200..=299).contains(&status) {
        return Verdict::delivered();
    }
    // WeCom's errmsg ends in "hint: [...], from ip: ..., more info at ...": keep the reason.
    let reason = errmsg
        .split(", hint:")
        .next()
        .unwrap_or("")
        .split(" hint:")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let reason = if reason.is_empty() {
        "no errmsg".to_string()
    } else {
        reason
    };
    let (retry, hint) = hint(code);
    let error = format!("WeCom errcode {code} ({reason}): {hint}");
    let vendor = Some(code.to_string());
    if retry {
        Verdict::retryable(error).with_code(vendor)
    } else {
        Verdict::permanent(error).with_code(vendor)
    }
}

/// Whether an errcode is worth retrying, and what to do about it in plain words.
fn hint(code: i64) -> (bool, &'static str) {
    match code {
        -1 => (true, "WeCom is busy; the message will be retried"),
        45009 => (
            true,
            "the bot is sending too fast; WeCom allows 20 messages a minute per bot, so the message will be retried later (merge notifications if this repeats)",
        ),
        93000 => (
            false,
            "the webhook URL is not valid: put the bot's whole webhook URL (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…) in the channel's `url`, not only the key",
        ),
        40058 | 45002 => (
            false,
            "the message is over WeCom's size limit (4096 bytes of markdown, 2048 of text); shorten the channel's template",
        ),
        40008 | 44004 => (
            false,
            "WeCom could not read the message (unknown msgtype or empty content); fix the channel's template",
        ),
        _ => (
            false,
            "WeCom refused the message; look up this errcode at https://open.work.weixin.qq.com/devtool/query",
        ),
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
    fn errcodes_decide_the_outcome() {
        let cases: &[(u16, &str, Outcome, Option<&str>)] = &[
            (200, r#"{"errcode":0,"errmsg":"ok"}"#, Delivered, None),
            (
                200,
                r#"{"errcode":-1,"errmsg":"system busy"}"#,
                Retryable,
                Some("-1"),
            ),
            (
                200,
                r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
                Retryable,
                Some("45009"),
            ),
            (
                200,
                r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1], from ip: 1.2.3.4"}"#,
                Permanent,
                Some("93000"),
            ),
            (
                200,
                r#"{"errcode":40058,"errmsg":"markdown.content exceed max length 4096. invalid Request Parameter, hint: [1704540159128593240839785], from ip: 103.56.76.2, more info at https://open.work.weixin.qq.com/devtool/query?e=40058"}"#,
                Permanent,
                Some("40058"),
            ),
            (
                200,
                r#"{"errcode":12345,"errmsg":"new"}"#,
                Permanent,
                Some("12345"),
            ),
            (502, "bad gateway", Retryable, None),
            (200, "not json", Retryable, None),
            (404, "", Permanent, None),
        ];
        for (status, body, outcome, code) in cases {
            let v = classify(&reply(*status, body));
            assert_eq!(v.outcome, *outcome, "{status} {body}: {}", v.error);
            assert_eq!(v.vendor_code.as_deref(), *code, "{status} {body}");
            assert_eq!(v.error.is_empty(), *outcome == Delivered, "{status} {body}");
        }
    }

    #[test]
    fn errors_keep_the_reason_and_drop_the_noise() {
        let v = classify(&reply(
            200,
            r#"{"errcode":40058,"errmsg":"markdown.content exceed max length 4096. invalid Request Parameter, hint: [17], from ip: 103.56.76.2, more info at https://open.work.weixin.qq.com/devtool/query?e=40058"}"#,
        ));
        assert_eq!(
            v.error,
            "WeCom errcode 40058 (markdown.content exceed max length 4096. invalid Request Parameter): the message is over WeCom's size limit (4096 bytes of markdown, 2048 of text); shorten the channel's template"
        );
        assert!(!v.error.contains("103.56.76.2"));
        let v = classify(&reply(
            200,
            r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
        ));
        assert!(v.error.contains("not only the key"), "{}", v.error);
    }
}
