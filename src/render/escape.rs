//! Per-channel escaping of template values.
//!
//! Templates write JSON by hand and put values inside JSON string literals (`"text": "{{watch}}"`).
//! A value holding a quote, a backslash or a newline would otherwise break the body (the bug in
//! uptime-kuma#3778 and gatus#188), and a DBS error text holding `<!channel>` would ping a whole
//! Slack channel. So every `{{value}}` goes through the channel's escape function, and
//! `{{{value}}}` (triple stash) is the explicit opt-out for raw JSON such as `{{{json payload}}}`.
//! Nothing is ever HTML-escaped: Slack only decodes `&amp; &lt; &gt;` and would show `&#39;`.

use std::borrow::Cow;

use crate::notify::ChannelKind;

/// Escape text so it can sit between the quotes of a JSON string literal.
///
/// Handles `"`, `\`, every control character below U+0020, and U+2028/U+2029 (legal in JSON
/// but not in JavaScript source, which some receivers still `eval`). Everything else, emoji and
/// CJK included, is kept as is.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Replace Slack's three control characters with entities, `&` first so entities are not
/// escaped twice. Only values go through this, never the template's own `<url|label>` syntax.
pub fn slack_entities(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Slack value escaping: entities for mrkdwn, then JSON-string escaping.
pub fn slack_value(text: &str) -> String {
    json_string(&slack_entities(text))
}

/// How much of the receiver's budget a value's character uses once the channel escapes it, as
/// the receiver counts: Slack limits (header 150, section 3000) count characters after `&`
/// became `&amp;`; DingTalk, Feishu and WeCom limit bytes, and a quote or a newline takes two
/// bytes in the JSON body, a control character six. `truncate` counts with this, so a cut value
/// stays within the limit whatever DBS put in it.
pub fn char_weight(kind: ChannelKind) -> fn(char) -> usize {
    match kind {
        ChannelKind::Slack => slack_char_weight,
        ChannelKind::Dingtalk | ChannelKind::Feishu | ChannelKind::Wecom => json_byte_weight,
        ChannelKind::Webhook => plain_char_weight,
    }
}

fn slack_char_weight(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// Bytes `c` takes inside a JSON string literal as [`json_string`] writes it.
pub(crate) fn json_byte_weight(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => 6,
        c => c.len_utf8(),
    }
}

fn plain_char_weight(_: char) -> usize {
    1
}

/// The escape function a channel's registry uses for `{{value}}`.
pub fn escape_fn(kind: ChannelKind) -> fn(&str) -> String {
    match kind {
        ChannelKind::Slack => slack_value,
        ChannelKind::Dingtalk | ChannelKind::Webhook | ChannelKind::Feishu | ChannelKind::Wecom => {
            json_string
        }
    }
}

/// Zero-width space: invisible, but it splits a token the receiver would otherwise interpret.
const ZWSP: char = '\u{200B}';

/// Make DBS text inert in the channel's markdown, so it shows as written and changes nothing
/// around it. Used by the `md_escape` helper.
///
/// - Slack mrkdwn has no backslash escape, and the built-in template shows error texts in a
///   code block, where only a backtick run can do harm: a zero-width space follows every
///   backtick so ```` ``` ```` in an error cannot close the block. (`&`, `<`, `>` are already
///   entities in Slack values.)
/// - DingTalk, WeCom, Feishu and the webhook get CommonMark backslash escapes for `\`, `` ` ``,
///   `*`, `_`, `[`, `]`, `~` (the set DingTalk bridges escape), and for `#` and `>` at the start
///   of a line (headings, quotes). A `<` that starts a tag or a mention token (`<@all>`,
///   `<at id=all>`, `<font>`, `<script>`, `<!channel>`) gets a zero-width space after it: it
///   still reads as `<`, but no receiver sees a tag or a mention in it.
pub fn markdown_escape(text: &str, kind: ChannelKind) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    if kind == ChannelKind::Slack {
        for c in text.chars() {
            out.push(c);
            if c == '`' {
                out.push(ZWSP);
            }
        }
        return out;
    }
    let mut line_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '>' if line_start => {
                out.push('\\');
                out.push(c);
            }
            '<' => {
                out.push(c);
                if chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '@' | '!' | '/' | '#'))
                {
                    out.push(ZWSP);
                }
            }
            c => out.push(c),
        }
        line_start = c == '\n' || (line_start && (c == ' ' || c == '\t'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaped text, put between quotes, must parse back to the original string.
    fn round_trips(text: &str) {
        let escaped = json_string(text);
        let parsed: String = serde_json::from_str(&format!("\"{escaped}\""))
            .unwrap_or_else(|e| panic!("{text:?} escaped to invalid JSON {escaped:?}: {e}"));
        assert_eq!(parsed, text);
    }

    #[test]
    fn json_escaping_handles_quotes_backslashes_and_whitespace() {
        assert_eq!(json_string(r#"say "hi""#), r#"say \"hi\""#);
        assert_eq!(json_string(r"C:\dbs\new"), r"C:\\dbs\\new");
        assert_eq!(json_string("a\nb\r\nc\td"), r"a\nb\r\nc\td");
        assert_eq!(json_string("\u{1}\u{8}\u{c}\u{1f}"), r"\u0001\b\f\u001f");
        for text in [
            r#"say "hi""#,
            r"back\slash\",
            "line1\nline2\r\n\ttabbed",
            "\u{0}\u{1}\u{2}\u{7}\u{b}\u{1b}\u{1f}\u{7f}",
            "\u{2028}\u{2029}",
            "",
        ] {
            round_trips(text);
        }
    }

    #[test]
    fn json_escaping_keeps_emoji_cjk_and_markup() {
        for text in [
            "🚨 告警 数据库备份失败",
            "<script>alert(1)</script>",
            "*_#>[`~",
            "We've",
        ] {
            assert_eq!(json_string(text), text);
            round_trips(text);
        }
    }

    #[test]
    fn every_control_character_round_trips() {
        let all: String = (0u32..0x20).filter_map(char::from_u32).collect();
        round_trips(&all);
        assert!(!json_string(&all).chars().any(|c| (c as u32) < 0x20));
    }

    #[test]
    fn slack_escapes_only_the_three_control_characters_ampersand_first() {
        assert_eq!(
            slack_entities("<!channel> & <@U123>"),
            "&lt;!channel&gt; &amp; &lt;@U123&gt;"
        );
        assert_eq!(slack_entities("&lt;"), "&amp;lt;");
        assert_eq!(
            slack_entities("We've \"quoted\" *bold*"),
            "We've \"quoted\" *bold*"
        );
        assert!(matches!(slack_entities("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn slack_value_is_entities_then_json() {
        assert_eq!(
            slack_value("password \"dbs\" has <&>\n"),
            r#"password \"dbs\" has &lt;&amp;&gt;\n"#
        );
    }

    #[test]
    fn a_large_stack_trace_round_trips() {
        let frame = "\tat com.aliyun.dbs.precheck.BinlogChecker.check(BinlogChecker.java:42)\n";
        let mut trace =
            String::from("java.lang.RuntimeException: Could not find any schema \"x\"\n");
        while trace.len() < 20 * 1024 {
            trace.push_str(frame);
        }
        round_trips(&trace);
        let slack: String =
            serde_json::from_str(&format!("\"{}\"", slack_value(&trace))).expect("valid JSON");
        assert_eq!(slack, slack_entities(&trace));
    }

    #[test]
    fn byte_weights_match_the_escaped_json() {
        let w = char_weight(ChannelKind::Dingtalk);
        for text in ["告警 🚨", "a\"b\\c\nd\te", "\u{1}\u{1f}\u{2028}", "plain"] {
            assert_eq!(
                text.chars().map(w).sum::<usize>(),
                json_string(text).len(),
                "{text:?}"
            );
        }
        assert_eq!(char_weight(ChannelKind::Wecom)('告'), 3);
        assert_eq!(char_weight(ChannelKind::Feishu)('\u{7}'), 6);
    }

    #[test]
    fn markdown_escape_neutralises_formatting_tags_and_mentions() {
        for kind in [
            ChannelKind::Dingtalk,
            ChannelKind::Wecom,
            ChannelKind::Feishu,
        ] {
            assert_eq!(
                markdown_escape("CHECK_BINLOG_ON *x* `y` [a](b) ~z~ \\", kind),
                "CHECK\\_BINLOG\\_ON \\*x\\* \\`y\\` \\[a\\](b) \\~z\\~ \\\\"
            );
            assert_eq!(
                markdown_escape("# h\n> q\n  #x a#b a>b", kind),
                "\\# h\n\\> q\n  \\#x a#b a>b"
            );
            let tags = markdown_escape("<@all> <at id=all></at> <script> <!channel> <&> 1<2", kind);
            assert_eq!(
                tags,
                "<\u{200B}@all> <\u{200B}at id=all><\u{200B}/at> <\u{200B}script> <\u{200B}!channel> <&> 1<2"
            );
            assert!(!tags.contains("<@") && !tags.contains("<at"));
            assert_eq!(
                markdown_escape("告警 🚨 We've \"q\"", kind),
                "告警 🚨 We've \"q\""
            );
        }
        assert_eq!(
            markdown_escape("```x``` *b*", ChannelKind::Slack),
            "`\u{200B}`\u{200B}`\u{200B}x`\u{200B}`\u{200B}`\u{200B} *b*"
        );
        assert!(!markdown_escape("a```b", ChannelKind::Slack).contains("``"));
    }

    #[test]
    fn weights_count_slack_entities() {
        let w = char_weight(ChannelKind::Slack);
        assert_eq!(
            "a&<>".chars().map(w).sum::<usize>(),
            slack_entities("a&<>").chars().count()
        );
        let plain = char_weight(ChannelKind::Dingtalk);
        assert_eq!("a&<>".chars().map(plain).sum::<usize>(), 4);
    }
}
