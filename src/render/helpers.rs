//! Template helpers: `json`, `time`, `duration`, `truncate`, `upper`, `quote`, and strict
//! replacements for `if`/`unless`.
//!
//! Each helper is a thin wrapper around a pure function that is tested on its own. Helpers
//! return values (not raw output), so `{{helper ..}}` is escaped for the channel and
//! `{{{helper ..}}}` is not, exactly like plain values.
//!
//! Handlebars' strict mode only checks plain `{{field}}` expressions: a typo in a helper
//! parameter (`{{truncate watchname 10}}`) or in `{{#if mentionz}}` would silently read as
//! empty. Every helper here, and the `if`/`unless` registered over the built-in ones, rejects a
//! missing parameter in strict mode, so `check-config` catches those typos too.

use chrono::format::StrftimeItems;
use chrono::{DateTime, FixedOffset, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, JsonTruthy, Output,
    PathAndJson, RenderContext, RenderError, RenderErrorReason, Renderable, ScopedJson,
};
use serde_json::Value;

/// Register every helper on a channel's registry. `weight` says how many characters a value
/// character takes once the channel escapes it, for `truncate`.
pub(crate) fn register(registry: &mut Handlebars<'static>, weight: fn(char) -> usize) {
    registry.register_helper("if", Box::new(StrictIf { positive: true }));
    registry.register_helper("unless", Box::new(StrictIf { positive: false }));
    registry.register_helper("json", Box::new(JsonHelper));
    registry.register_helper("time", Box::new(TimeHelper));
    registry.register_helper("duration", Box::new(DurationHelper));
    registry.register_helper("truncate", Box::new(TruncateHelper { weight }));
    registry.register_helper("upper", Box::new(UpperHelper));
    registry.register_helper("quote", Box::new(QuoteHelper));
}

/// Default `time` format when no offset is given.
const UTC_FORMAT: &str = "%Y-%m-%d %H:%M:%S UTC";
/// Default `time` format with an `offset=`: the offset is printed so nobody has to guess.
const OFFSET_FORMAT: &str = "%Y-%m-%d %H:%M:%S %:z";
/// What `truncate` appends when it cuts.
pub const ELLIPSIS: char = '…';

/// Format a moment given as epoch milliseconds or an RFC 3339 string. `Null` gives `""` so
/// optional times (an unfinished item's `finish_time`) need no `{{#if}}` around them.
pub fn format_time(
    value: &Value,
    format: Option<&str>,
    offset: Option<&str>,
) -> Result<String, String> {
    let utc: DateTime<Utc> = match value {
        Value::Null => return Ok(String::new()),
        Value::Number(n) => {
            let ms = n
                .as_i64()
                .ok_or_else(|| format!("time: {n} is not whole epoch milliseconds"))?;
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| format!("time: {ms} ms is out of range"))?
        }
        Value::String(s) if s.is_empty() => return Ok(String::new()),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("time: {s:?} is not RFC 3339 ({e})"))?
            .with_timezone(&Utc),
        other => return Err(format!("time: expected epoch ms or RFC 3339, got {other}")),
    };
    let offset = offset.map(parse_offset).transpose()?;
    let format = format.unwrap_or(if offset.is_some() {
        OFFSET_FORMAT
    } else {
        UTC_FORMAT
    });
    let items = StrftimeItems::new(format)
        .parse()
        .map_err(|_| format!("time: invalid format string {format:?}"))?;
    let zone = offset.unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero is a valid offset"));
    Ok(utc
        .with_timezone(&zone)
        .format_with_items(items.iter())
        .to_string())
}

/// Parse `+08:00`, `-0530`, `+8`, `Z` or `UTC`.
fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    let bad = || format!("time: offset {text:?} is not like +08:00");
    if text == "Z" || text.eq_ignore_ascii_case("utc") {
        return Ok(FixedOffset::east_opt(0).expect("zero is a valid offset"));
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (hours, minutes) = if digits.len() <= 2 {
        (digits.as_str(), "0")
    } else {
        digits.split_at(digits.len() - 2)
    };
    let hours: i32 = hours.parse().map_err(|_| bad())?;
    let minutes: i32 = minutes.parse().map_err(|_| bad())?;
    if minutes >= 60 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

/// Human duration of a number of milliseconds: `850ms`, `42s`, `3m 5s`, `1h 0m 2s`,
/// `2d 1h 0m 0s`. `None` for a negative span (clock skew between BootTime and FinishTime).
pub fn format_duration(ms: i64) -> Option<String> {
    if ms < 0 {
        return None;
    }
    if ms < 1000 {
        return Some(format!("{ms}ms"));
    }
    let secs = ms / 1000;
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    Some(if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    })
}

/// Cut `text` so that, counted with `weight`, it is at most `max` long including the `…` it
/// gets when cut. Cuts on character boundaries, never inside one.
pub fn truncate_chars(text: &str, max: usize, weight: fn(char) -> usize) -> String {
    let total: usize = text.chars().map(weight).sum();
    if total <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - weight(ELLIPSIS);
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += weight(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push(ELLIPSIS);
    out
}

/// Markdown block quote: every line gets `> `, lines end in a hard break (two spaces) so
/// stack traces keep their shape in DingTalk.
pub fn quote_lines(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    text.lines()
        .map(|line| {
            if line.trim().is_empty() {
                ">".to_string()
            } else {
                format!("> {}", line.trim_end())
            }
        })
        .collect::<Vec<_>>()
        .join("  \n")
}

static NULL: Value = Value::Null;

/// Parameter `idx`, with strict mode applied to helper parameters too.
fn param<'a>(
    h: &'a Helper<'_>,
    r: &Handlebars<'_>,
    name: &'static str,
    idx: usize,
) -> Result<&'a Value, RenderError> {
    let p = h
        .param(idx)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(name, idx))?;
    value_of(p, r)
}

fn value_of<'a>(p: &'a PathAndJson<'_>, r: &Handlebars<'_>) -> Result<&'a Value, RenderError> {
    if p.is_value_missing() {
        if r.strict_mode() {
            return Err(RenderError::strict_error(p.relative_path()));
        }
        return Ok(&NULL);
    }
    Ok(p.value())
}

fn optional_str<'a>(
    p: Option<&'a PathAndJson<'_>>,
    r: &Handlebars<'_>,
    what: &str,
) -> Result<Option<&'a str>, RenderError> {
    match p {
        None => Ok(None),
        Some(p) => match value_of(p, r)? {
            Value::String(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(other_error(format!("{what} must be a string, got {other}"))),
        },
    }
}

fn other_error(message: String) -> RenderError {
    RenderErrorReason::Other(message).into()
}

fn text(s: String) -> ScopedJson<'static> {
    ScopedJson::Derived(Value::String(s))
}

/// `{{#if x}}` / `{{#unless x}}` that fail on a misspelt field in strict mode. `null`, `""`,
/// `0`, `false` and `[]` are falsy as usual; `includeZero=true` makes `0` truthy.
struct StrictIf {
    positive: bool,
}

impl HelperDef for StrictIf {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = if self.positive { "if" } else { "unless" };
        let value = param(h, r, name, 0)?;
        let include_zero = h
            .hash_get("includeZero")
            .and_then(|v| v.value().as_bool())
            .unwrap_or(false);
        let truthy = value.is_truthy(include_zero) == self.positive;
        match if truthy { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }
}

/// `{{{json x}}}`: the value as compact JSON. With double braces the JSON text is escaped like
/// any value, which embeds it inside a string.
struct JsonHelper;

impl HelperDef for JsonHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = param(h, r, "json", 0)?;
        let json = serde_json::to_string(value)
            .map_err(|e| other_error(format!("json: cannot serialise: {e}")))?;
        Ok(text(json))
    }
}

/// `{{time x}}`, `{{time x "%H:%M"}}`, `{{time x offset="+08:00"}}`.
struct TimeHelper;

impl HelperDef for TimeHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = param(h, r, "time", 0)?;
        let format = optional_str(h.param(1), r, "time: the format")?;
        let offset = optional_str(h.hash_get("offset"), r, "time: offset")?;
        format_time(value, format, offset)
            .map(text)
            .map_err(other_error)
    }
}

/// `{{duration ms}}`: `1h 0m 2s`; `null` gives `""`.
struct DurationHelper;

impl HelperDef for DurationHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        if h.params().is_empty() {
            // `{{duration}}` alone names this helper, not an item's `duration` field.
            return Err(other_error(
                "duration needs milliseconds, e.g. {{duration duration_ms}}; to show an \
                 item's `duration` field write {{this.duration}}"
                    .into(),
            ));
        }
        match param(h, r, "duration", 0)? {
            Value::Null => Ok(text(String::new())),
            Value::Number(n) => {
                let ms = n
                    .as_i64()
                    .ok_or_else(|| other_error(format!("duration: {n} is not whole ms")))?;
                format_duration(ms)
                    .map(text)
                    .ok_or_else(|| other_error(format!("duration: {ms} ms is negative")))
            }
            other => Err(other_error(format!(
                "duration: expected milliseconds, got {other}"
            ))),
        }
    }
}

/// `{{truncate text 3000}}`: at most that many characters as the channel counts them.
struct TruncateHelper {
    weight: fn(char) -> usize,
}

impl HelperDef for TruncateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = param(h, r, "truncate", 0)?;
        let max = param(h, r, "truncate", 1)?
            .as_u64()
            .ok_or_else(|| other_error("truncate: the length must be a whole number".into()))?;
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        Ok(text(truncate_chars(&value.render(), max, self.weight)))
    }
}

/// `{{upper state}}`.
struct UpperHelper;

impl HelperDef for UpperHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(text(param(h, r, "upper", 0)?.render().to_uppercase()))
    }
}

/// `{{quote error}}`: a markdown block quote, for DingTalk.
struct QuoteHelper;

impl HelperDef for QuoteHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(text(quote_lines(&param(h, r, "quote", 0)?.render())))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::notify::ChannelKind;
    use crate::render::escape::{char_weight, escape_fn};

    fn registry(kind: ChannelKind) -> Handlebars<'static> {
        let mut r = Handlebars::new();
        r.set_strict_mode(true);
        r.register_escape_fn(escape_fn(kind));
        register(&mut r, char_weight(kind));
        r
    }

    fn render(template: &str, data: &Value) -> Result<String, String> {
        registry(ChannelKind::Webhook)
            .render_template(template, data)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn time_formats_epoch_ms_and_rfc3339_in_utc_by_default() {
        assert_eq!(
            format_time(&json!(1764720003000i64), None, None).unwrap(),
            "2025-12-03 00:00:03 UTC"
        );
        assert_eq!(
            format_time(&json!("2025-12-03T08:00:03+08:00"), None, None).unwrap(),
            "2025-12-03 00:00:03 UTC"
        );
        assert_eq!(format_time(&Value::Null, None, None).unwrap(), "");
        assert_eq!(format_time(&json!(""), None, None).unwrap(), "");
    }

    #[test]
    fn time_takes_a_format_and_an_offset() {
        let t = json!(1764720003000i64);
        assert_eq!(format_time(&t, Some("%H:%M"), None).unwrap(), "00:00");
        assert_eq!(
            format_time(&t, None, Some("+08:00")).unwrap(),
            "2025-12-03 08:00:03 +08:00"
        );
        assert_eq!(
            format_time(&t, Some("%d %H:%M"), Some("-0530")).unwrap(),
            "02 18:30"
        );
        assert_eq!(format_time(&t, Some("%H"), Some("+8")).unwrap(), "08");
        assert_eq!(format_time(&t, Some("%H"), Some("Z")).unwrap(), "00");
    }

    #[test]
    fn time_rejects_what_it_cannot_read() {
        assert!(format_time(&json!("yesterday"), None, None).is_err());
        assert!(format_time(&json!(1.5), None, None).is_err());
        assert!(format_time(&json!(true), None, None).is_err());
        assert!(format_time(&json!(i64::MAX), None, None).is_err());
        assert!(format_time(&json!(0), Some("%Q"), None).is_err());
        for bad in ["08:00", "+25:00", "+08:61", "+abc", "+"] {
            assert!(format_time(&json!(0), None, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(format_duration(0).unwrap(), "0ms");
        assert_eq!(format_duration(850).unwrap(), "850ms");
        assert_eq!(format_duration(42_000).unwrap(), "42s");
        assert_eq!(format_duration(185_400).unwrap(), "3m 5s");
        assert_eq!(format_duration(3_602_000).unwrap(), "1h 0m 2s");
        assert_eq!(format_duration(90_000_000).unwrap(), "1d 1h 0m 0s");
        assert_eq!(format_duration(-1), None);
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        let plain = char_weight(ChannelKind::Webhook);
        assert_eq!(truncate_chars("订单库备份失败", 7, plain), "订单库备份失败");
        assert_eq!(truncate_chars("订单库备份失败", 5, plain), "订单库备…");
        assert_eq!(truncate_chars("🚨🚨🚨", 2, plain), "🚨…");
        assert_eq!(truncate_chars("abc", 0, plain), "");
        assert_eq!(truncate_chars("abc", 1, plain), "…");
        assert_eq!(truncate_chars("", 3, plain), "");
    }

    #[test]
    fn truncate_for_slack_counts_entities() {
        let slack = char_weight(ChannelKind::Slack);
        let cut = truncate_chars("a<b>c&d", 10, slack);
        assert_eq!(cut, "a<b…");
        let escaped = crate::render::escape::slack_entities(&cut);
        assert!(escaped.chars().count() <= 10, "{escaped}");
    }

    #[test]
    fn quote_prefixes_every_line() {
        assert_eq!(
            quote_lines("a\n\tat b\n\nc\r\n"),
            "> a  \n> \tat b  \n>  \n> c"
        );
        assert_eq!(quote_lines(""), "");
    }

    #[test]
    fn helpers_work_inside_templates() {
        let data = json!({"ms": 3602000, "t": 1764720003000i64, "s": "failed", "long": "abcdef",
                          "none": null, "obj": {"a": [1, "x\"y"]}});
        assert_eq!(render("{{duration ms}}", &data).unwrap(), "1h 0m 2s");
        assert_eq!(render("{{duration none}}", &data).unwrap(), "");
        assert_eq!(
            render("{{time t \"%H:%M:%S\"}}", &data).unwrap(),
            "00:00:03"
        );
        assert_eq!(
            render("{{time t offset=\"+08:00\"}}", &data).unwrap(),
            "2025-12-03 08:00:03 +08:00"
        );
        assert_eq!(render("{{upper s}}", &data).unwrap(), "FAILED");
        assert_eq!(render("{{truncate long 4}}", &data).unwrap(), "abc…");
        assert_eq!(render("{{upper (truncate long 3)}}", &data).unwrap(), "AB…");
        assert_eq!(
            render("{{{json obj}}}", &data).unwrap(),
            r#"{"a":[1,"x\"y"]}"#
        );
        // Double braces escape the JSON text so it fits inside a string literal.
        assert_eq!(
            render("{{json obj}}", &data).unwrap(),
            r#"{\"a\":[1,\"x\\\"y\"]}"#
        );
    }

    #[test]
    fn helper_values_are_escaped_for_the_channel() {
        let data = json!({"e": "<!channel> & \"x\""});
        let slack = registry(ChannelKind::Slack);
        assert_eq!(
            slack.render_template("{{truncate e 100}}", &data).unwrap(),
            r#"&lt;!channel&gt; &amp; \"x\""#
        );
        assert_eq!(
            slack
                .render_template("{{{truncate e 100}}}", &data)
                .unwrap(),
            r#"<!channel> & "x""#
        );
    }

    #[test]
    fn strict_mode_reaches_helper_parameters_and_if() {
        let data = json!({"watch": "orders-db", "zero": 0});
        for template in [
            "{{truncate watchname 10}}",
            "{{upper watchname}}",
            "{{json watchname}}",
            "{{time watchname}}",
            "{{duration watchname}}",
            "{{quote watchname}}",
            "{{#if watchname}}x{{/if}}",
            "{{#unless watchname}}x{{/unless}}",
        ] {
            let err = render(template, &data).expect_err(template);
            assert!(err.contains("watchname"), "{template}: {err}");
        }
        assert_eq!(render("{{#if watch}}yes{{/if}}", &data).unwrap(), "yes");
        assert_eq!(render("{{#if zero}}y{{else}}n{{/if}}", &data).unwrap(), "n");
        assert_eq!(
            render("{{#if zero includeZero=true}}y{{/if}}", &data).unwrap(),
            "y"
        );
        assert_eq!(render("{{#unless zero}}n{{/unless}}", &data).unwrap(), "n");
        assert_eq!(
            render("{{#if zero}}a{{else if watch}}b{{/if}}", &data).unwrap(),
            "b"
        );
    }

    #[test]
    fn helpers_report_bad_arguments() {
        let data = json!({"s": "x", "n": -5});
        assert!(render("{{duration s}}", &data).is_err());
        assert!(render("{{duration n}}", &data).is_err());
        assert!(render("{{truncate s \"ten\"}}", &data).is_err());
        assert!(render("{{truncate s}}", &data).is_err());
        assert!(render("{{time s}}", &data).is_err());
        let err = render("{{duration}}", &json!({"duration": "1s"})).unwrap_err();
        assert!(err.contains("{{this.duration}}"), "{err}");
        assert_eq!(
            render("{{this.duration}}", &json!({"duration": "1s"})).unwrap(),
            "1s"
        );
    }
}
