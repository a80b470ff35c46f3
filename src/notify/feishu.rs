//! Feishu / Lark custom bots: body signing, the security keyword, and reading the `code` reply.
//!
//! Feishu's signature is not DingTalk's, although both look alike: the timestamp is in
//! **seconds**, `"{timestamp}\n{secret}"` is the HMAC **key** and the message is empty, and
//! `timestamp` and `sign` go into the JSON **body**, not the URL. Reusing DingTalk's algorithm
//! makes every request fail with 19021 (THEWOLFWALKER/dsh-notifier#8).
//!
//! Like DingTalk, Feishu answers HTTP 200 to most failures, so the body's `code` decides.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::http::{Reply, snippet};
use super::{Error, Verdict};

/// The bot signature for one request: base64 of HMAC-SHA256 keyed with
/// `"{timestamp_secs}\n{secret}"` over an empty message.
pub fn sign(secret: &str, timestamp_secs: i64) -> String {
    let key = format!("{timestamp_secs}\n{secret}");
    let mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The body with `timestamp` (seconds, as a string) and `sign` added, for a bot with signature
/// verification on. Any stale `timestamp`/`sign` from the template is replaced.
pub(crate) fn signed_body(body: &str, timestamp_secs: i64, sign: &str) -> Result<String, Error> {
    let value: Value = serde_json::from_str(body).map_err(|detail| Error::BodyNotJson {
        kind: "Feishu",
        detail,
    })?;
    let mut object = super::into_object("Feishu", value)?;
    object.insert(
        "timestamp".into(),
        Value::String(timestamp_secs.to_string()),
    );
    object.insert("sign".into(), Value::String(sign.to_string()));
    Ok(Value::Object(object).to_string())
}

/// Add the bot's security keyword when no text in the message has it (Feishu answers 19024
/// otherwise): as a note at the end of a card, or a line at the end of a text message.
pub(crate) fn prepare(
    mut body: Map<String, Value>,
    keyword: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    let Some(keyword) = keyword else {
        return Ok(body);
    };
    // Only the message's own text counts: `card` for cards, `content` for the other types.
    let has_keyword = ["card", "content"]
        .iter()
        .filter_map(|k| body.get(*k))
        .any(|v| super::any_string_contains(v, keyword));
    if has_keyword {
        return Ok(body);
    }
    let msg_type = body
        .get("msg_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let no_text = || Error::KeywordNoText {
        kind: "Feishu",
        msgtype: msg_type.clone(),
    };
    match msg_type.as_str() {
        "interactive" => {
            let card = body
                .get_mut("card")
                .and_then(Value::as_object_mut)
                .ok_or_else(no_text)?;
            let elements = card
                .entry("elements")
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .ok_or_else(no_text)?;
            elements.push(json!({
                "tag": "note",
                "elements": [{"tag": "plain_text", "content": keyword}]
            }));
        }
        "text" => match body.get_mut("content").and_then(|c| c.get_mut("text")) {
            Some(Value::String(text)) => {
                text.push('\n');
                text.push_str(keyword);
            }
            _ => return Err(no_text()),
        },
        _ => return Err(no_text()),
    }
    Ok(body)
}

/// Read Feishu's answer. 5xx and 429 are worth retrying; otherwise the body's `code` (or the
/// older `StatusCode`) decides.
pub(crate) fn classify(reply: &Reply) -> Verdict {
    let status = reply.status;
    if status == 429 || (500..=599).contains(&status) {
        return Verdict::retryable(format!(
            "Feishu answered HTTP {status} with {}; it is busy or down, the message will be retried",
            snippet(&reply.body)
        ));
    }
    let Some((code, msg)) = super::http::json_code(
        &reply.body,
        &["code", "StatusCode"],
        &["msg", "StatusMessage"],
    ) else {
        return super::http::unreadable_reply(
            "Feishu",
            status,
            &reply.body,
            "https://open.feishu.cn/open-apis/bot/v2/hook/… (or open.larksuite.com for Lark)",
        );
    };
    if code == 0 && (200..=299).contains(&status) {
        return Verdict::delivered();
    }
    let msg = if msg.trim().is_empty() {
        "no msg".to_string()
    } else {
        msg.trim().to_string()
    };
    let (retry, hint) = hint(code);
    let error = format!("Feishu code {code} ({msg}): {hint}");
    let vendor = Some(code.to_string());
    if retry {
        Verdict::retryable(error).with_code(vendor)
    } else {
        Verdict::permanent(error).with_code(vendor)
    }
}

/// Whether a code is worth retrying, and what to do about it in plain words.
fn hint(code: i64) -> (bool, &'static str) {
    match code {
        11232 => (
            true,
            "the bot is sending too fast (Feishu allows about 5 messages a second and 100 a minute per bot); the message will be retried later",
        ),
        19021 => (
            false,
            "the bot rejected the signature: set the channel's `secret` to the bot's signing secret (Feishu signs differently from DingTalk), and check that this host's clock is within an hour of the real time",
        ),
        19022 => (
            false,
            "the bot's IP allowlist does not include this host; allow its public IP in the bot's security settings",
        ),
        19024 => (
            false,
            "the bot rejected the message: its security keyword is missing; set the channel's `keyword` to one of the bot's keywords",
        ),
        9499 | 19001 | 19002 => (
            false,
            "Feishu could not read the message; fix the channel's template (interactive cards go in a top-level `card` field)",
        ),
        _ => (
            false,
            "Feishu refused the message; look up this code in Feishu's custom bot documentation",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Outcome::{self, *};
    use super::*;

    #[test]
    fn vector_this_is_secret() {
        assert_eq!(
            sign("this is secret", 1599360473),
            "/eYKrXQBzTjUZJ3s6NX16VxGbTwmK7AEs8/FnvC1CSw="
        );
    }

    #[test]
    fn vector_demo() {
        assert_eq!(
            sign("demo", 1700000000),
            "8oT2n3SMKFfEnDoiwer8BUM/SjKLwe9SqoEIHlhDTKo="
        );
    }

    #[test]
    fn dingtalks_algorithm_does_not_give_feishus_signature() {
        // The negative vector: HMAC keyed with the secret over "ts\nsecret", as DingTalk does
        // (with seconds), must not be what we send.
        let dingtalk_style = super::super::dingtalk::sign("this is secret", 1599360473);
        assert_eq!(
            dingtalk_style,
            "Aa897dtSTyHzD0ZCF2+ph58VjSQ6lUYLT11QvLTQCnU="
        );
        assert_ne!(sign("this is secret", 1599360473), dingtalk_style);
    }

    #[test]
    fn the_signature_goes_into_the_body() {
        let out = signed_body(
            r#"{"msg_type":"text","content":{"text":"x"},"sign":"stale"}"#,
            1599360473,
            "abc=",
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"msg_type":"text","content":{"text":"x"},"sign":"abc=","timestamp":"1599360473"}"#
        );
        assert!(signed_body("[1]", 1, "x").is_err());
    }

    fn obj(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_missing_keyword_is_added_to_cards_and_texts() {
        let card = obj(r#"{"msg_type":"interactive","card":{"elements":[{"tag":"hr"}]}}"#);
        let out = prepare(card, Some("告警")).unwrap();
        assert_eq!(
            out["card"]["elements"][1],
            json!({"tag": "note", "elements": [{"tag": "plain_text", "content": "告警"}]})
        );
        let text = obj(r#"{"msg_type":"text","content":{"text":"x"}}"#);
        assert_eq!(
            prepare(text, Some("dbs")).unwrap()["content"]["text"],
            "x\ndbs"
        );
        let present = obj(r#"{"msg_type":"text","content":{"text":"dbs down"}}"#);
        assert_eq!(prepare(present.clone(), Some("dbs")).unwrap(), present);
        assert_eq!(prepare(present.clone(), None).unwrap(), present);
        assert!(prepare(obj(r#"{"msg_type":"image"}"#), Some("dbs")).is_err());
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn codes_decide_the_outcome() {
        let cases: &[(u16, &str, Outcome, Option<&str>)] = &[
            (
                200,
                r#"{"code":0,"data":{},"msg":"success"}"#,
                Delivered,
                None,
            ),
            (
                200,
                r#"{"StatusCode":0,"StatusMessage":"success"}"#,
                Delivered,
                None,
            ),
            (
                200,
                r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
                Permanent,
                Some("19021"),
            ),
            (
                200,
                r#"{"code":19024,"msg":"Key Words Not Found"}"#,
                Permanent,
                Some("19024"),
            ),
            (
                400,
                r#"{"code":9499,"msg":"Bad Request"}"#,
                Permanent,
                Some("9499"),
            ),
            (
                200,
                r#"{"code":11232,"msg":"frequency limited"}"#,
                Retryable,
                Some("11232"),
            ),
            (503, "", Retryable, None),
            (429, "", Retryable, None),
            (200, "<html>proxy</html>", Retryable, None),
            (404, "not found", Permanent, None),
            (302, "", Permanent, None),
        ];
        for (status, body, outcome, code) in cases {
            let v = classify(&reply(*status, body));
            assert_eq!(v.outcome, *outcome, "{status} {body}: {}", v.error);
            assert_eq!(v.vendor_code.as_deref(), *code, "{status} {body}");
            assert_eq!(v.error.is_empty(), *outcome == Delivered, "{status} {body}");
        }
        let v = classify(&reply(200, r#"{"code":19024,"msg":"Key Words Not Found"}"#));
        assert!(
            v.error.contains("set the channel's `keyword`"),
            "{}",
            v.error
        );
    }
}
