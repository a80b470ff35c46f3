//! Receiver limits checked on every rendered body.
//!
//! Slack answers `invalid_blocks` (HTTP 400, permanent) to a header over 150 characters or a
//! section over 3000, and DingTalk answers 460101 to a body over 20000 bytes. Both mean a lost
//! message. Checking here turns that into a template error: `check-config` reports it, and at
//! run time a custom template that trips it falls back to the built-in one, whose truncation
//! keeps it within these limits.

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
/// DingTalk accepts 20000 bytes; 1000 are left for what the notifier adds (`at`, `msgUuid`).
pub const DINGTALK_BODY_MAX: usize = 19_000;

/// Check `body` (the parsed rendered JSON, whose compact form is `compact`) against the
/// documented limits of `kind`. The error says which limit and where.
pub fn check(kind: ChannelKind, body: &Value, compact: &str) -> Result<(), String> {
    match kind {
        ChannelKind::Slack => check_slack(body),
        ChannelKind::Dingtalk => check_dingtalk(body, compact),
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

fn check_dingtalk(body: &Value, compact: &str) -> Result<(), String> {
    let msgtype = body["msgtype"]
        .as_str()
        .ok_or("a DingTalk body needs a string `msgtype`")?;
    let required: &[&str] = match msgtype {
        "markdown" => &["title", "text"],
        "text" => &["content"],
        _ => &[],
    };
    for field in required {
        if !body[msgtype][field].is_string() {
            return Err(format!(
                "DingTalk {msgtype} message needs a string `{msgtype}.{field}`"
            ));
        }
    }
    if compact.len() > DINGTALK_BODY_MAX {
        return Err(format!(
            "body is {} bytes; DingTalk rejects over 20000 and {} are kept for `at`/`msgUuid` \
             (limit {DINGTALK_BODY_MAX})",
            compact.len(),
            20_000 - DINGTALK_BODY_MAX
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn slack(body: Value) -> Result<(), String> {
        check(ChannelKind::Slack, &body, &body.to_string())
    }

    fn ding(body: Value) -> Result<(), String> {
        check(ChannelKind::Dingtalk, &body, &body.to_string())
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
        // 7000 CJK characters are 21000 bytes even though they are few characters.
        let big = "告".repeat(7000);
        let err = ding(json!({"msgtype": "text", "text": {"content": big}})).unwrap_err();
        assert!(err.contains("bytes"), "{err}");
    }

    #[test]
    fn webhook_takes_any_json() {
        check(ChannelKind::Webhook, &json!([1, 2]), "[1,2]").unwrap();
    }
}
