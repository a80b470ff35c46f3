//! DingTalk custom robots: URL signing, the wire body (`msgUuid`, @mentions) and reading the
//! `errcode` reply.
//!
//! DingTalk answers HTTP 200 for most failures, so the verdict comes from the body's `errcode`
//! and never from `errmsg`, whose wording has changed over the years.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::http::{Reply, snippet};
use super::{Error, Verdict};

/// The robot signature for one request: base64 of HMAC-SHA256 over `"{timestamp_ms}\n{secret}"`,
/// keyed with the whole secret (the `SEC` prefix is part of the key). Returned raw, not
/// URL-encoded, so the caller encodes it exactly once.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The webhook URL with `timestamp` and `sign` appended, the sign percent-encoded once. Any
/// `timestamp` or `sign` already in the configured URL (pasted from an old signed request) is
/// dropped, because DingTalk would see two and reject the stale one.
pub fn signed_url(webhook: &str, secret: &str, timestamp_ms: i64) -> String {
    let (base, fragment) = match webhook.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (webhook, None),
    };
    let (path, query) = base.split_once('?').unwrap_or((base, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            key != "timestamp" && key != "sign"
        })
        .collect();
    let own = format!(
        "timestamp={timestamp_ms}&sign={}",
        encode_component(&sign(secret, timestamp_ms))
    );
    params.push(&own);
    let mut url = format!("{path}?{}", params.join("&"));
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// Percent-encode everything but RFC 3986 unreserved characters (`+` → `%2B`, `/` → `%2F`,
/// `=` → `%3D`), matching Python's `quote_plus` on base64 text.
pub(crate) fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Add what DingTalk needs beyond the template: `msgUuid` (so a retry after a timeout is not
/// posted twice), the robot's security keyword when the text lacks it (else DingTalk answers
/// 310000 and the message is lost) and, for `at_mobiles`, both `at.atMobiles` and `@mobile` in
/// the text, because the mention only fires when both are present. A mention already in the
/// text is not added again.
pub(crate) fn prepare(
    mut body: Map<String, Value>,
    delivery_id: &str,
    at_mobiles: &[String],
    keyword: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    body.insert("msgUuid".into(), Value::String(delivery_id.to_string()));
    if let Some(keyword) = keyword {
        add_keyword(&mut body, keyword)?;
    }

    let mut mobiles: Vec<&str> = Vec::new();
    for mobile in at_mobiles
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
    {
        if !mobiles.contains(&mobile) {
            mobiles.push(mobile);
        }
    }
    if mobiles.is_empty() {
        return Ok(body);
    }

    let msgtype = body.get("msgtype").and_then(Value::as_str).unwrap_or("");
    let (section, field, path) = match msgtype {
        "markdown" => ("markdown", "text", "markdown.text"),
        "text" => ("text", "content", "text.content"),
        other => {
            return Err(Error::MentionUnsupported {
                msgtype: other.to_string(),
            });
        }
    };
    let text = body
        .get_mut(section)
        .and_then(Value::as_object_mut)
        .and_then(|s| s.get_mut(field))
        .and_then(|t| match t {
            Value::String(s) => Some(s),
            _ => None,
        })
        .ok_or(Error::MentionTextMissing { field: path })?;
    let missing: Vec<String> = mobiles
        .iter()
        .filter(|m| !mentions(text, m))
        .map(|m| format!("@{m}"))
        .collect();
    if !missing.is_empty() {
        text.push_str("\n\n");
        text.push_str(&missing.join(" "));
    }

    let at = body
        .entry("at")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(Error::BadAtField {
            problem: "an `at` field that is not an object",
        })?;
    let list = at
        .entry("atMobiles")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or(Error::BadAtField {
            problem: "an `at.atMobiles` field that is not a list",
        })?;
    for mobile in &mobiles {
        let present = list.iter().any(|v| match v {
            Value::String(s) => s.trim() == *mobile,
            Value::Number(n) => n.to_string() == *mobile,
            _ => false,
        });
        if !present {
            list.push(Value::String(mobile.to_string()));
        }
    }
    at.entry("isAtAll").or_insert(Value::Bool(false));
    Ok(body)
}

/// Make sure the message text holds the robot's keyword. Only the text counts (DingTalk's
/// guidance is to put the keyword in the text; the title counting is hearsay), so a keyword in
/// the title alone is added to the text too.
fn add_keyword(body: &mut Map<String, Value>, keyword: &str) -> Result<(), Error> {
    let msgtype = body
        .get("msgtype")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let field = match msgtype.as_str() {
        "markdown" | "actionCard" | "link" => "text",
        "text" => "content",
        _ => "",
    };
    match body
        .get_mut(&msgtype)
        .and_then(Value::as_object_mut)
        .and_then(|s| s.get_mut(field))
    {
        Some(Value::String(text)) => {
            if !text.contains(keyword) {
                text.push_str("\n\n");
                text.push_str(keyword);
            }
            Ok(())
        }
        _ => Err(Error::KeywordNoText {
            kind: "DingTalk",
            msgtype,
        }),
    }
}

/// True when `text` has `@mobile` not followed by more of a longer number or id.
fn mentions(text: &str, mobile: &str) -> bool {
    let needle = format!("@{mobile}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Read DingTalk's answer. 5xx and 429 are DingTalk's infrastructure and worth retrying;
/// otherwise the body's `errcode` decides.
pub(crate) fn classify(reply: &Reply) -> Verdict {
    let status = reply.status;
    if status == 429 || (500..=599).contains(&status) {
        return Verdict::retryable(format!(
            "DingTalk answered HTTP {status} with {}; it is busy or down, the message will be retried",
            snippet(&reply.body)
        ));
    }
    let parsed: Option<(i64, String)> =
        serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| {
                let code = match v.get("errcode")? {
                    Value::Number(n) => n.as_i64()?,
                    Value::String(s) => s.trim().parse().ok()?,
                    _ => return None,
                };
                let msg = v
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                Some((code, msg))
            });
    let Some((code, errmsg)) = parsed else {
        return super::http::unreadable_reply(
            "DingTalk",
            status,
            &reply.body,
            "https://oapi.dingtalk.com/robot/send?access_token=…",
        );
    };
    if code == 0 && (200..=299).contains(&status) {
        return Verdict::delivered();
    }
    let errmsg = if errmsg.trim().is_empty() {
        "no errmsg".to_string()
    } else {
        errmsg.trim().to_string()
    };
    let vendor = Some(code.to_string());
    let (retry, hint) = hint(code);
    let error = format!("DingTalk errcode {code} ({errmsg}): {hint}");
    if matches!(code, 410100 | 130101) {
        // DingTalk throttles the robot for ten minutes; an earlier retry only extends it.
        Verdict::retryable(error)
            .with_code(vendor)
            .with_wait(std::time::Duration::from_secs(600))
    } else if retry {
        Verdict::retryable(error).with_code(vendor)
    } else {
        Verdict::permanent(error).with_code(vendor)
    }
}

/// Whether an errcode is worth retrying, and what to do about it in plain words.
fn hint(code: i64) -> (bool, &'static str) {
    match code {
        -1 => (true, "DingTalk is busy; the message will be retried"),
        410100 | 130101 => (
            true,
            "the robot is sending too fast; DingTalk allows 20 messages a minute per robot and then throttles it for 10 minutes, so the message will be retried later (merge notifications if this repeats)",
        ),
        310000 => (
            false,
            "the robot's security settings rejected the message: add the keyword or the signing secret (set the channel's `keyword` to one of the robot's keywords, or its `secret` to the robot's SEC… signing secret), or allow this host's IP; an invalid timestamp means this host's clock is off by more than an hour",
        ),
        300001 | 400101 => (
            false,
            "the access_token in the channel URL is wrong; copy the robot's webhook URL again from the group's robot settings",
        ),
        300005 => (
            false,
            "DingTalk does not accept the access_token in the channel URL; the robot may have been removed, or it is in an external group, which custom robots cannot post to",
        ),
        400013 => (
            false,
            "the group was dissolved; point the channel at a robot in an existing group",
        ),
        400102 => (
            false,
            "the robot is disabled; enable it in the group's robot settings",
        ),
        400105 => (
            false,
            "DingTalk does not support this msgtype; fix the channel's template",
        ),
        400106 => (
            false,
            "the robot does not exist or is no longer in the group; add it again and use its new webhook URL",
        ),
        430101..=430104 => (
            false,
            "DingTalk's content check refused the message (unsafe link or inappropriate text or image); change the template or the links it contains",
        ),
        460101 | 101002 => (
            false,
            "the message is over 20,000 bytes; shorten the template or the values it includes",
        ),
        _ => (
            false,
            "DingTalk refused the message; look up this errcode in DingTalk's robot error codes",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1_SECRET: &str = "SECb90923e19e58b466481e9e7b7a5b4f108a4531abde590ad3967fb29f0eae5c68";
    const D1_TOKEN: &str = "1c53e149ba5de6597ca2442f0e901fd86156780b8ac141e4a75afdc44c85ca4f";

    fn check_vector(secret: &str, ts: i64, raw: &str, encoded: &str) {
        assert_eq!(sign(secret, ts), raw, "raw sign for {secret:?}");
        assert_eq!(
            encode_component(raw),
            encoded,
            "encoded sign for {secret:?}"
        );
        let url = signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=t",
            secret,
            ts,
        );
        assert!(
            url.ends_with(&format!("&timestamp={ts}&sign={encoded}")),
            "{url}"
        );
    }

    #[test]
    fn vector_d1() {
        check_vector(
            D1_SECRET,
            1582163555000,
            "BQKsG+QOCl+bYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY=",
            "BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D",
        );
    }

    #[test]
    fn vector_d2() {
        check_vector(
            "this is secret",
            1577262236757,
            "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=",
            "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D",
        );
    }

    #[test]
    fn vector_d3_with_a_slash() {
        check_vector(
            "SEC000000000000000000000",
            1700000000000,
            "1zJ/w34EOSVAYr7cu7Vo8LnebmK2/GrCgegtr8mQrqM=",
            "1zJ%2Fw34EOSVAYr7cu7Vo8LnebmK2%2FGrCgegtr8mQrqM%3D",
        );
    }

    #[test]
    fn d1_full_url_matches_the_published_one() {
        let webhook = format!("https://oapi.dingtalk.com/robot/send?access_token={D1_TOKEN}");
        let url = signed_url(&webhook, D1_SECRET, 1582163555000);
        assert_eq!(
            url,
            format!(
                "https://oapi.dingtalk.com/robot/send?access_token={D1_TOKEN}&timestamp=1582163555000&sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D"
            )
        );
        // The published URL puts sign before timestamp; order does not matter to DingTalk.
        let published = format!(
            "https://oapi.dingtalk.com/robot/send?access_token={D1_TOKEN}&sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D&timestamp=1582163555000"
        );
        let params = |u: &str| {
            let mut p: Vec<String> = u
                .split_once('?')
                .unwrap()
                .1
                .split('&')
                .map(String::from)
                .collect();
            p.sort();
            p
        };
        assert_eq!(params(&url), params(&published));
    }

    #[test]
    fn the_sign_is_encoded_exactly_once() {
        let url = signed_url(
            "https://x/robot/send?access_token=t",
            "this is secret",
            1577262236757,
        );
        let double = encode_component(&encode_component(
            "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=",
        ));
        assert_eq!(
            double,
            "hmPWwU%252B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%252BGs6EZQM%253D"
        );
        assert!(!url.contains(&double), "{url}");
        assert!(!url.contains("%25"), "{url}");
        assert!(!url.contains('+'), "{url}");
    }

    #[test]
    fn urls_without_a_query_or_with_stale_signs_are_handled() {
        assert_eq!(
            signed_url("https://proxy.local/ding", "this is secret", 1577262236757),
            "https://proxy.local/ding?timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        assert_eq!(
            signed_url("https://proxy.local/ding?", "this is secret", 1577262236757),
            "https://proxy.local/ding?timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        assert_eq!(
            signed_url(
                "https://o/robot/send?access_token=t&timestamp=1&sign=old&x=1",
                "this is secret",
                1577262236757
            ),
            "https://o/robot/send?access_token=t&x=1&timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
    }

    fn obj(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    fn mobiles(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mentions_are_added_to_markdown_text_and_at() {
        let body = obj(
            r#"{"msgtype":"markdown","markdown":{"title":"T","text":"restore done @13800000000"}}"#,
        );
        let out = prepare(
            body,
            "id-1",
            &mobiles(&["13800000000", "13900000000"]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(out).to_string(),
            r#"{"msgtype":"markdown","markdown":{"title":"T","text":"restore done @13800000000\n\n@13900000000"},"msgUuid":"id-1","at":{"atMobiles":["13800000000","13900000000"],"isAtAll":false}}"#
        );
    }

    #[test]
    fn mentions_in_text_messages_keep_existing_at_entries() {
        let body = obj(
            r#"{"msgtype":"text","text":{"content":"hi"},"at":{"atMobiles":["111"],"atUserIds":["u1"],"isAtAll":true}}"#,
        );
        let out = prepare(body, "id-2", &mobiles(&[" 222 ", "222", ""]), None).unwrap();
        assert_eq!(out["text"]["content"], "hi\n\n@222");
        assert_eq!(out["at"]["atMobiles"], serde_json::json!(["111", "222"]));
        assert_eq!(out["at"]["atUserIds"], serde_json::json!(["u1"]));
        assert_eq!(out["at"]["isAtAll"], true);
        assert_eq!(out["msgUuid"], "id-2");
    }

    #[test]
    fn a_longer_number_does_not_count_as_the_mention() {
        assert!(mentions("x @138 y", "138"));
        assert!(mentions("x @138", "138"));
        assert!(!mentions("x @1380", "138"));
        assert!(mentions("x @1380 and @138.", "138"));
    }

    #[test]
    fn without_mobiles_only_msg_uuid_is_added() {
        let body = obj(r#"{"msgtype":"link","link":{"title":"t"},"msgUuid":"old"}"#);
        let out = prepare(body, "new", &[], None).unwrap();
        assert_eq!(
            Value::Object(out).to_string(),
            r#"{"msgtype":"link","link":{"title":"t"},"msgUuid":"new"}"#
        );
    }

    #[test]
    fn a_missing_keyword_is_added_once_before_the_mentions() {
        let body = obj(r#"{"msgtype":"markdown","markdown":{"title":"T","text":"restore done"}}"#);
        let out = prepare(body, "id", &mobiles(&["138"]), Some("告警")).unwrap();
        assert_eq!(out["markdown"]["text"], "restore done\n\n告警\n\n@138");
        // Already in the text: nothing added. In the title only: added to the text.
        let body = obj(r#"{"msgtype":"markdown","markdown":{"title":"t","text":"告警 x"}}"#);
        let out = prepare(body, "id", &[], Some("告警")).unwrap();
        assert_eq!(out["markdown"]["text"], "告警 x");
        let body = obj(r#"{"msgtype":"markdown","markdown":{"title":"告警","text":"x"}}"#);
        let out = prepare(body, "id", &[], Some("告警")).unwrap();
        assert_eq!(out["markdown"]["text"], "x\n\n告警");
        // The msgUuid is no text: a keyword that happens to be in it is still added.
        let body = obj(r#"{"msgtype":"text","text":{"content":"x"}}"#);
        let out = prepare(body, "abc-123", &[], Some("abc")).unwrap();
        assert_eq!(out["text"]["content"], "x\n\nabc");
        let body = obj(r#"{"msgtype":"text","text":{"content":"x"}}"#);
        let out = prepare(body, "id", &[], Some("dbs")).unwrap();
        assert_eq!(out["text"]["content"], "x\n\ndbs");
        let body = obj(r#"{"msgtype":"actionCard","actionCard":{"title":"t","text":"x"}}"#);
        let out = prepare(body, "id", &[], Some("dbs")).unwrap();
        assert_eq!(out["actionCard"]["text"], "x\n\ndbs");
        let err = prepare(
            obj(r#"{"msgtype":"feedCard","feedCard":{"links":[]}}"#),
            "id",
            &[],
            Some("dbs"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`feedCard`"), "{err}");
    }

    #[test]
    fn mentions_that_cannot_fire_are_refused() {
        let err = prepare(
            obj(r#"{"msgtype":"actionCard","actionCard":{}}"#),
            "i",
            &mobiles(&["1"]),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::MentionUnsupported { ref msgtype } if msgtype == "actionCard")
        );
        let err = prepare(
            obj(r#"{"msgtype":"markdown","markdown":{"title":"t"}}"#),
            "i",
            &mobiles(&["1"]),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`markdown.text`"), "{err}");
        let err = prepare(
            obj(r#"{"msgtype":"text","text":{"content":"x"},"at":[]}"#),
            "i",
            &mobiles(&["1"]),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`at` field that is not an object"),
            "{err}"
        );
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
    fn errcodes_decide_the_outcome() {
        use super::super::Outcome::*;
        let cases: &[(u16, &str, super::super::Outcome, Option<&str>)] = &[
            (200, r#"{"errcode":0,"errmsg":"ok"}"#, Delivered, None),
            (
                200,
                r#"{"errcode":-1,"errmsg":"busy"}"#,
                Retryable,
                Some("-1"),
            ),
            (
                200,
                r#"{"errcode":410100,"errmsg":"x"}"#,
                Retryable,
                Some("410100"),
            ),
            (
                200,
                r#"{"errcode":130101,"errmsg":"send too fast"}"#,
                Retryable,
                Some("130101"),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"sign not match"}"#,
                Permanent,
                Some("310000"),
            ),
            (
                200,
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                Permanent,
                Some("300001"),
            ),
            (
                200,
                r#"{"errcode":300005,"errmsg":"token is not exist"}"#,
                Permanent,
                Some("300005"),
            ),
            (
                200,
                r#"{"errcode":400102,"errmsg":"x"}"#,
                Permanent,
                Some("400102"),
            ),
            (
                200,
                r#"{"errcode":430103,"errmsg":"x"}"#,
                Permanent,
                Some("430103"),
            ),
            (
                200,
                r#"{"errcode":460101,"errmsg":"too long"}"#,
                Permanent,
                Some("460101"),
            ),
            (
                200,
                r#"{"errcode":101002,"errmsg":"too long"}"#,
                Permanent,
                Some("101002"),
            ),
            (200, r#"{"errcode":"0","errmsg":"ok"}"#, Delivered, None),
            (
                400,
                r#"{"errcode":300001,"errmsg":"param error"}"#,
                Permanent,
                Some("300001"),
            ),
            (503, r#"{"errcode":0}"#, Retryable, None),
            (429, "slow down", Retryable, None),
            (200, "<html>gateway</html>", Retryable, None),
            (200, r#"{"errmsg":"ok"}"#, Retryable, None),
            (302, "", Permanent, None),
            (404, "not found", Permanent, None),
        ];
        for (status, body, outcome, code) in cases {
            let v = classify(&reply(*status, body));
            assert_eq!(v.outcome, *outcome, "{status} {body}: {}", v.error);
            assert_eq!(v.vendor_code.as_deref(), *code, "{status} {body}");
            assert_eq!(v.error.is_empty(), *outcome == Delivered, "{status} {body}");
        }
    }

    #[test]
    fn errors_carry_errmsg_and_a_hint() {
        let v = classify(&reply(
            200,
            r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
        ));
        assert!(
            v.error.starts_with(
                "DingTalk errcode 310000 (keywords not in content): the robot's security settings"
            ),
            "{}",
            v.error
        );
        assert!(v.error.contains("SEC… signing secret"), "{}", v.error);
        let v = classify(&reply(200, r#"{"errcode":400101,"errmsg":"x"}"#));
        assert!(
            v.error
                .contains("the access_token in the channel URL is wrong"),
            "{}",
            v.error
        );
        let v = classify(&reply(200, r#"{"errcode":460101,"errmsg":"x"}"#));
        assert!(v.error.contains("over 20,000 bytes"), "{}", v.error);
        let v = classify(&reply(200, "<html>bad gateway</html>"));
        assert!(
            v.error.contains("`<html>bad gateway</html>`"),
            "{}",
            v.error
        );
    }
}
