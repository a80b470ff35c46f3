//! Receiver limits checked on every rendered body.
//!
//! Slack answers `invalid_blocks` (HTTP 400, permanent) to a header over 150 characters or a
//! section over 3000, DingTalk answers 460101 to a body over 20000 bytes, WeCom 40058 to
//! markdown over 4096 bytes, and Feishu refuses bodies over about 20 KB. Each means a lost
//! message. Checking here turns that into a template error: `check-config` reports it, and at
//! run time a custom template that trips it falls back to the built-in one, which shows fewer
//! items until it fits.

use serde_json::Value;

use crate::notify::ChannelKind;

/// Slack: characters in a header's `plain_text`.
pub const SLACK_HEADER_MAX: usize = 150;
/// Slack: characters in a section's `text`.
pub const SLACK_SECTION_MAX: usize = 3000;
/// Slack: characters in one section field.
pub const SLACK_FIELD_MAX: usize = 2000;
/// Slack: fields per section.
pub const SLACK_FIELDS_MAX: usize = 10;
/// Slack: blocks per message.
pub const SLACK_BLOCKS_MAX: usize = 50;
/// Slack: elements per context block.
pub const SLACK_CONTEXT_MAX: usize = 10;
/// DingTalk: bytes in the whole request body.
pub const DINGTALK_BODY_LIMIT: usize = 20_000;
/// Feishu: bytes in the whole request body (documented as 20 KB).
pub const FEISHU_BODY_LIMIT: usize = 20_000;
/// WeCom: bytes in `markdown.content`.
pub const WECOM_MARKDOWN_MAX: usize = 4096;
/// WeCom: bytes in `text.content`.
pub const WECOM_TEXT_MAX: usize = 2048;

/// What the notifier will add to the rendered body, so the template must leave room for it.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Bytes kept free for what the notifier adds (`msgUuid`, `at`, `@mobile`, the keyword,
    /// Feishu's `timestamp`/`sign`).
    pub reserve: usize,
    /// The webhook is sent as a CloudEvent, so the body needs `id`, `type` and `data`.
    pub event_envelope: bool,
}

impl Budget {
    /// The room a channel's additions take: generous fixed parts plus what grows with the
    /// configuration (each mobile appears twice, the keyword once).
    pub fn for_channel(kind: ChannelKind, at_mobiles: &[String], keyword: Option<&str>) -> Budget {
        let keyword = keyword.map_or(0, |k| super::escape::json_string(k).len() + 64);
        let reserve = match kind {
            ChannelKind::Dingtalk => {
                let mentions: usize = at_mobiles
                    .iter()
                    .map(|m| 2 * super::escape::json_string(m.trim()).len() + 8)
                    .sum();
                // `"msgUuid":"<36>"`, `"at":{"atMobiles":[],"isAtAll":false}`, the `\n\n`.
                120 + mentions + keyword
            }
            // `"timestamp":"1700000000","sign":"<44 base64>"`.
            ChannelKind::Feishu => 120 + keyword,
            ChannelKind::Slack | ChannelKind::Wecom | ChannelKind::Webhook => 0,
        };
        Budget {
            reserve,
            event_envelope: false,
        }
    }
}

/// Check `body` (the parsed rendered JSON, whose compact form is `compact`) against the
/// documented limits of `kind`. The error says which limit and where.
pub fn check(
    kind: ChannelKind,
    body: &Value,
    compact: &str,
    budget: &Budget,
) -> Result<(), String> {
    match kind {
        ChannelKind::Slack => check_slack(body),
        ChannelKind::Dingtalk => check_dingtalk(body, compact, budget),
        ChannelKind::Feishu => check_feishu(body, compact, budget),
        ChannelKind::Wecom => check_wecom(body),
        ChannelKind::Webhook if budget.event_envelope => check_envelope(body),
        ChannelKind::Webhook => Ok(()),
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn at_most(what: String, len: usize, max: usize) -> Result<(), String> {
    if len > max {
        Err(format!("{what} is {len} characters, Slack allows {max}"))
    } else {
        Ok(())
    }
}

fn check_slack(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("a Slack body must be a JSON object")?;
    if !["text", "blocks", "attachments"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        return Err("a Slack body needs `text`, `blocks` or `attachments` (Slack: no_text)".into());
    }
    if let Some(text) = obj.get("text")
        && !text.is_string()
    {
        return Err("Slack `text` must be a string".into());
    }
    let Some(blocks) = obj.get("blocks") else {
        return Ok(());
    };
    let blocks = blocks.as_array().ok_or("Slack `blocks` must be an array")?;
    if blocks.len() > SLACK_BLOCKS_MAX {
        return Err(format!(
            "{} blocks, Slack allows {SLACK_BLOCKS_MAX}",
            blocks.len()
        ));
    }
    for (n, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("header") => at_most(
                format!("blocks[{n}] header text"),
                chars(&block["text"]["text"]),
                SLACK_HEADER_MAX,
            )?,
            Some("section") => {
                at_most(
                    format!("blocks[{n}] section text"),
                    chars(&block["text"]["text"]),
                    SLACK_SECTION_MAX,
                )?;
                if let Some(fields) = block["fields"].as_array() {
                    if fields.len() > SLACK_FIELDS_MAX {
                        return Err(format!(
                            "blocks[{n}] has {} fields, Slack allows {SLACK_FIELDS_MAX}",
                            fields.len()
                        ));
                    }
                    for (f, field) in fields.iter().enumerate() {
                        at_most(
                            format!("blocks[{n}].fields[{f}]"),
                            chars(&field["text"]),
                            SLACK_FIELD_MAX,
                        )?;
                    }
                }
            }
            Some("context") => {
                let len = block["elements"].as_array().map_or(0, Vec::len);
                if len > SLACK_CONTEXT_MAX {
                    return Err(format!(
                        "blocks[{n}] context has {len} elements, Slack allows {SLACK_CONTEXT_MAX}"
                    ));
                }
            }
            Some(_) => {}
            None => return Err(format!("blocks[{n}] has no `type`")),
        }
    }
    Ok(())
}

fn check_dingtalk(body: &Value, compact: &str, budget: &Budget) -> Result<(), String> {
    let msgtype = body["msgtype"]
        .as_str()
        .ok_or("a DingTalk body needs a string `msgtype`")?;
    let required: &[&str] = match msgtype {
        "markdown" => &["title", "text"],
        "text" => &["content"],
        "actionCard" => &["title", "text"],
        _ => &[],
    };
    for field in required {
        if !body[msgtype][field].is_string() {
            return Err(format!(
                "DingTalk {msgtype} message needs a string `{msgtype}.{field}`"
            ));
        }
    }
    body_bytes("DingTalk", compact, DINGTALK_BODY_LIMIT, budget)
}

/// The body must leave `budget.reserve` bytes of the receiver's limit free.
fn body_bytes(receiver: &str, compact: &str, limit: usize, budget: &Budget) -> Result<(), String> {
    let max = limit.saturating_sub(budget.reserve);
    if compact.len() > max {
        return Err(format!(
            "body is {} bytes; {receiver} rejects over {limit} and {} are kept for what is added \
             when sending (limit {max})",
            compact.len(),
            budget.reserve
        ));
    }
    Ok(())
}

fn check_feishu(body: &Value, compact: &str, budget: &Budget) -> Result<(), String> {
    let msg_type = body["msg_type"]
        .as_str()
        .ok_or("a Feishu body needs a string `msg_type`")?;
    match msg_type {
        "interactive" if !body["card"].is_object() => {
            return Err(
                "a Feishu interactive message needs a `card` object (not inside `content`)".into(),
            );
        }
        "text" if !body["content"]["text"].is_string() => {
            return Err("a Feishu text message needs a string `content.text`".into());
        }
        "post" if !body["content"]["post"].is_object() => {
            return Err("a Feishu post message needs a `content.post` object".into());
        }
        _ => {}
    }
    body_bytes("Feishu", compact, FEISHU_BODY_LIMIT, budget)
}

fn check_wecom(body: &Value) -> Result<(), String> {
    let msgtype = body["msgtype"]
        .as_str()
        .ok_or("a WeCom body needs a string `msgtype`")?;
    let (field, max) = match msgtype {
        "markdown" => ("content", WECOM_MARKDOWN_MAX),
        "text" => ("content", WECOM_TEXT_MAX),
        _ => return Ok(()),
    };
    let text = body[msgtype][field]
        .as_str()
        .ok_or_else(|| format!("WeCom {msgtype} message needs a string `{msgtype}.{field}`"))?;
    if text.len() > max {
        return Err(format!(
            "`{msgtype}.{field}` is {} bytes; WeCom allows {max}",
            text.len()
        ));
    }
    Ok(())
}

/// A CloudEvents webhook takes its attributes from the body: `id` and `type` (strings), `time`
/// (a string when present) and `data`.
fn check_envelope(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("a CloudEvents webhook body must be a JSON object")?;
    for field in ["id", "type"] {
        if !obj.get(field).is_some_and(Value::is_string) {
            return Err(format!(
                "a CloudEvents webhook body needs a string `{field}` (the built-in payload has it)"
            ));
        }
    }
    if obj
        .get("time")
        .is_some_and(|t| !t.is_string() && !t.is_null())
    {
        return Err("`time` must be an RFC 3339 string".into());
    }
    if !obj.contains_key("data") {
        return Err("a CloudEvents webhook body needs `data`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn checked(kind: ChannelKind, body: Value) -> Result<(), String> {
        check(kind, &body, &body.to_string(), &Budget::default())
    }

    fn slack(body: Value) -> Result<(), String> {
        checked(ChannelKind::Slack, body)
    }

    fn ding(body: Value) -> Result<(), String> {
        let budget = Budget::for_channel(ChannelKind::Dingtalk, &[], None);
        check(ChannelKind::Dingtalk, &body, &body.to_string(), &budget)
    }

    #[test]
    fn slack_accepts_a_normal_message() {
        slack(json!({"text": "t", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h".repeat(150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(3000)}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f".repeat(2000)}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]},
            {"type": "divider"}
        ]}))
        .unwrap();
        slack(json!({"text": "only text"})).unwrap();
    }

    #[test]
    fn slack_limits_are_enforced() {
        let header = slack(json!({"blocks": [{"type": "header",
            "text": {"type": "plain_text", "text": "h".repeat(151)}}]}));
        assert!(
            header
                .unwrap_err()
                .contains("header text is 151 characters")
        );
        let section = slack(json!({"blocks": [{"type": "section",
            "text": {"type": "mrkdwn", "text": "é".repeat(3001)}}]}));
        assert!(section.unwrap_err().contains("3001"));
        let fields: Vec<_> = (0..11)
            .map(|_| json!({"type": "mrkdwn", "text": "x"}))
            .collect();
        assert!(slack(json!({"blocks": [{"type": "section", "fields": fields}]})).is_err());
        let blocks: Vec<_> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert!(slack(json!({"blocks": blocks})).is_err());
        assert!(slack(json!({"blocks": [{"text": "no type"}]})).is_err());
        assert!(slack(json!({"username": "x"})).is_err());
        assert!(slack(json!(["not", "an", "object"])).is_err());
        assert!(slack(json!({"text": 5})).is_err());
    }

    #[test]
    fn dingtalk_needs_msgtype_and_fits_in_the_byte_budget() {
        ding(json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}})).unwrap();
        ding(json!({"msgtype": "text", "text": {"content": "x"}})).unwrap();
        assert!(ding(json!({"markdown": {"title": "t", "text": "x"}})).is_err());
        assert!(ding(json!({"msgtype": "markdown", "markdown": {"title": "t"}})).is_err());
        // 6700 CJK characters are 20100 bytes even though they are few characters.
        let big = "告".repeat(6700);
        let err = ding(json!({"msgtype": "text", "text": {"content": big}})).unwrap_err();
        assert!(err.contains("bytes"), "{err}");
    }

    #[test]
    fn dingtalk_keeps_room_for_mentions_and_the_keyword() {
        let mobiles: Vec<String> = (0..30).map(|n| format!("1380000{n:04}")).collect();
        let plain = Budget::for_channel(ChannelKind::Dingtalk, &[], None);
        let busy = Budget::for_channel(ChannelKind::Dingtalk, &mobiles, Some("告警"));
        assert!(busy.reserve > plain.reserve + 30 * 2 * 11);
        let body = json!({"msgtype": "text", "text": {"content": "x".repeat(19_500)}});
        assert!(check(ChannelKind::Dingtalk, &body, &body.to_string(), &plain).is_ok());
        let err = check(ChannelKind::Dingtalk, &body, &body.to_string(), &busy).unwrap_err();
        assert!(err.contains("kept for what is added"), "{err}");
        assert!(
            ding(json!({"msgtype": "actionCard", "actionCard": {"title": "t"}}))
                .unwrap_err()
                .contains("actionCard.text")
        );
    }

    #[test]
    fn feishu_needs_msg_type_and_a_card() {
        let feishu = |b| checked(ChannelKind::Feishu, b);
        feishu(json!({"msg_type": "interactive", "card": {"elements": []}})).unwrap();
        feishu(json!({"msg_type": "text", "content": {"text": "x"}})).unwrap();
        assert!(feishu(json!({"msg_type": "interactive", "content": {"card": {}}})).is_err());
        assert!(feishu(json!({"msgtype": "text"})).is_err());
        let big = json!({"msg_type": "text", "content": {"text": "告".repeat(7000)}});
        assert!(
            feishu(big)
                .unwrap_err()
                .contains("Feishu rejects over 20000")
        );
    }

    #[test]
    fn wecom_counts_markdown_bytes() {
        let wecom = |b| checked(ChannelKind::Wecom, b);
        wecom(json!({"msgtype": "markdown", "markdown": {"content": "告".repeat(1365)}})).unwrap();
        let err = wecom(json!({"msgtype": "markdown", "markdown": {"content": "告".repeat(1366)}}))
            .unwrap_err();
        assert!(err.contains("4098 bytes; WeCom allows 4096"), "{err}");
        assert!(wecom(json!({"msgtype": "text", "text": {"content": "x".repeat(2049)}})).is_err());
        assert!(wecom(json!({"msgtype": "markdown", "markdown": {}})).is_err());
    }

    #[test]
    fn webhook_takes_any_json_unless_it_is_a_cloudevent() {
        checked(ChannelKind::Webhook, json!([1, 2])).unwrap();
        let envelope = Budget {
            event_envelope: true,
            ..Budget::default()
        };
        let ce = |b: Value| check(ChannelKind::Webhook, &b, &b.to_string(), &envelope);
        ce(json!({"id": "1", "type": "precheck.failed", "time": "2025-12-03T00:00:00Z", "data": {}}))
            .unwrap();
        assert!(ce(json!([1])).is_err());
        assert!(
            ce(json!({"id": "1", "data": {}}))
                .unwrap_err()
                .contains("`type`")
        );
        assert!(
            ce(json!({"id": "1", "type": "t"}))
                .unwrap_err()
                .contains("`data`")
        );
        assert!(ce(json!({"id": "1", "type": "t", "time": 5, "data": 1})).is_err());
    }
}
