//! Template helpers: `json`, `time`, `duration`, `truncate`, `slack_escape`, `md_escape`,
//! `console_url`, `upper`, `quote`, and strict replacements for `if`/`unless`.
//!
//! Each helper is a thin wrapper around a pure function that is tested on its own. Helpers
//! return values (not raw output), so `{{helper ..}}` is escaped for the channel and
//! `{{{helper ..}}}` is not, exactly like plain values.
//!
//! Helpers are registered per channel ([`HelperSettings`]): `time` shows the channel's time
//! zone, `duration` speaks its language, `truncate` counts the way its receiver counts and
//! `md_escape` knows its markdown. One template therefore renders correctly on any channel.
//!
//! Handlebars' strict mode only checks plain `{{field}}` expressions: a typo in a helper
//! parameter (`{{truncate watchname 10}}`) or in `{{#if mentionz}}` would silently read as
//! empty. Every helper here, and the `if`/`unless` registered over the built-in ones, rejects a
//! missing parameter in strict mode, so `check-config` catches those typos too.

use chrono::format::StrftimeItems;
use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, JsonTruthy, Output,
    PathAndJson, RenderContext, RenderError, RenderErrorReason, Renderable, ScopedJson,
};
use serde_json::Value;

use super::escape::{char_weight, markdown_escape, slack_entities};
use super::i18n::{Language, format_duration};
use crate::notify::ChannelKind;

/// What the helpers of one channel need to know about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HelperSettings {
    /// The receiver: decides `truncate`'s counting and `md_escape`'s rules.
    pub kind: ChannelKind,
    /// The language of `duration`.
    pub language: Language,
    /// The default zone of `time`.
    pub timezone: Tz,
}

/// Register every helper on a channel's registry.
pub(crate) fn register(registry: &mut Handlebars<'static>, settings: HelperSettings) {
    registry.register_helper("if", Box::new(StrictIf { positive: true }));
    registry.register_helper("unless", Box::new(StrictIf { positive: false }));
    registry.register_helper("json", Box::new(JsonHelper));
    registry.register_helper(
        "time",
        Box::new(TimeHelper {
            zone: Zone::Named(settings.timezone),
        }),
    );
    registry.register_helper(
        "duration",
        Box::new(DurationHelper {
            language: settings.language,
        }),
    );
    registry.register_helper(
        "truncate",
        Box::new(TruncateHelper {
            weight: char_weight(settings.kind),
        }),
    );
    registry.register_helper("upper", Box::new(UpperHelper));
    registry.register_helper("quote", Box::new(QuoteHelper));
    registry.register_helper("slack_escape", Box::new(SlackEscapeHelper));
    registry.register_helper(
        "md_escape",
        Box::new(MdEscapeHelper {
            kind: settings.kind,
        }),
    );
    registry.register_helper("console_url", Box::new(ConsoleUrlHelper));
}

/// What `truncate` appends when it cuts.
pub const ELLIPSIS: char = '…';

/// A time zone for showing times: an IANA zone (daylight saving included) or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// `Asia/Shanghai`, `Europe/Berlin`, `UTC`.
    Named(Tz),
    /// `+08:00`.
    Fixed(FixedOffset),
}

impl Zone {
    /// Read `Asia/Shanghai`, `UTC`, `Z`, `+08:00`, `-0530` or `+8`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        if let Ok(tz) = text.parse::<Tz>() {
            return Ok(Zone::Named(tz));
        }
        parse_offset(text).map(Zone::Fixed).map_err(|_| {
            format!("time: {text:?} is neither an IANA time zone (Asia/Shanghai) nor an offset like +08:00")
        })
    }
}

/// Format a moment given as epoch milliseconds or an RFC 3339 string, in `zone`. `Null` gives
/// `""` so optional times (an unfinished item's `finish_time`) need no `{{#if}}` around them.
/// The default format names the offset (`2025-12-03 08:00:05 UTC+08:00`), so nobody has to
/// guess which zone a time is in.
pub fn format_time(value: &Value, format: Option<&str>, zone: Zone) -> Result<String, String> {
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
    let local: DateTime<FixedOffset> = match zone {
        Zone::Named(tz) => {
            let offset = tz.offset_from_utc_datetime(&utc.naive_utc()).fix();
            utc.with_timezone(&offset)
        }
        Zone::Fixed(offset) => utc.with_timezone(&offset),
    };
    let owned;
    let format = match format {
        Some(f) => f,
        None if local.offset().local_minus_utc() == 0 => "%Y-%m-%d %H:%M:%S UTC",
        None => {
            owned = "%Y-%m-%d %H:%M:%S UTC%:z".to_string();
            &owned
        }
    };
    let items = StrftimeItems::new(format)
        .parse()
        .map_err(|_| format!("time: invalid format string {format:?}"))?;
    Ok(local.format_with_items(items.iter()).to_string())
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

/// Cut `text` so that, counted with `weight`, it is at most `max` long including the `…` it
/// gets when cut. Cuts on character boundaries, never inside one.
pub fn truncate_chars(text: &str, max: usize, weight: fn(char) -> usize) -> String {
    let total: usize = text.chars().map(weight).sum();
    if total <= max {
        return text.to_string();
    }
    let ellipsis = weight(ELLIPSIS);
    if max < ellipsis {
        return String::new();
    }
    let budget = max - ellipsis;
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

/// The DBS console page of a backup plan (`backup_plan`) or a restore task (`restore_task`) in
/// `region`. `None` for an unknown target type. The id is percent-encoded, so a link built from
/// it cannot break out of Slack's `<url|label>` or a markdown `(url)`.
pub fn console_url(region: &str, target_type: &str, id: &str) -> Option<String> {
    let page = match target_type {
        "backup_plan" => "dbs/detail",
        "restore_task" => "dbs/restore",
        _ => return None,
    };
    Some(format!(
        "https://dbs.console.aliyun.com/?regionId={}#/{page}/{}",
        percent_encode(region),
        percent_encode(id)
    ))
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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

/// `{{time x}}`, `{{time x "%H:%M"}}`, `{{time x tz="Asia/Shanghai"}}`,
/// `{{time x offset="+08:00"}}`. Without `tz`/`offset`, the channel's time zone.
struct TimeHelper {
    zone: Zone,
}

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
        let tz = optional_str(h.hash_get("tz"), r, "time: tz")?;
        let offset = optional_str(h.hash_get("offset"), r, "time: offset")?;
        let zone = match tz.or(offset) {
            Some(text) => Zone::parse(text).map_err(other_error)?,
            None => self.zone,
        };
        format_time(value, format, zone)
            .map(text)
            .map_err(other_error)
    }
}

/// `{{duration ms}}`: `1h 0m 2s` (or `1小时0分2秒`); `null` gives `""`.
struct DurationHelper {
    language: Language,
}

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
                format_duration(self.language, ms)
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

/// `{{slack_escape x}}`: Slack's `&`, `<`, `>` as entities. Slack channels already escape every
/// `{{value}}` this way; this is for other channels' templates that build Slack mrkdwn (a
/// webhook relayed into Slack), or for `{{{slack_escape x}}}` in a Slack template.
struct SlackEscapeHelper;

impl HelperDef for SlackEscapeHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = param(h, r, "slack_escape", 0)?.render();
        Ok(text(slack_entities(&value).into_owned()))
    }
}

/// `{{md_escape x}}`: `x` made inert in this channel's markdown, see
/// [`markdown_escape`](super::escape::markdown_escape).
struct MdEscapeHelper {
    kind: ChannelKind,
}

impl HelperDef for MdEscapeHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = param(h, r, "md_escape", 0)?.render();
        Ok(text(markdown_escape(&value, self.kind)))
    }
}

/// `{{console_url}}`: the DBS console page of this event's plan or task, in the configured
/// region. `{{console_url target_type target_id}}` names another one; `region="..."` overrides
/// the region.
struct ConsoleUrlHelper;

impl HelperDef for ConsoleUrlHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let root = ctx.data();
        let from_root = |field: &str| -> Result<String, RenderError> {
            root.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    other_error(format!(
                        "console_url: the event has no `{field}`; write {{{{console_url target_type target_id}}}}"
                    ))
                })
        };
        let (kind, id) = if h.params().is_empty() {
            (from_root("target_type")?, from_root("target_id")?)
        } else {
            (
                param(h, r, "console_url", 0)?.render(),
                param(h, r, "console_url", 1)?.render(),
            )
        };
        let region = match optional_str(h.hash_get("region"), r, "console_url: region")? {
            Some(region) => region.to_string(),
            None => from_root("region")?,
        };
        console_url(&region, &kind, &id).map(text).ok_or_else(|| {
            other_error(format!(
                "console_url: `{kind}` is not a target type; use backup_plan or restore_task"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::notify::ChannelKind;
    use crate::render::escape::{char_weight, escape_fn};

    fn registry_in(kind: ChannelKind, language: Language, timezone: Tz) -> Handlebars<'static> {
        let mut r = Handlebars::new();
        r.set_strict_mode(true);
        r.register_escape_fn(escape_fn(kind));
        register(
            &mut r,
            HelperSettings {
                kind,
                language,
                timezone,
            },
        );
        r
    }

    fn registry(kind: ChannelKind) -> Handlebars<'static> {
        registry_in(kind, Language::En, chrono_tz::UTC)
    }

    fn render(template: &str, data: &Value) -> Result<String, String> {
        registry(ChannelKind::Webhook)
            .render_template(template, data)
            .map_err(|e| e.to_string())
    }

    const UTC: Zone = Zone::Named(chrono_tz::UTC);

    fn offset(text: &str) -> Zone {
        Zone::parse(text).unwrap()
    }

    #[test]
    fn time_formats_epoch_ms_and_rfc3339_in_utc_by_default() {
        assert_eq!(
            format_time(&json!(1764720003000i64), None, UTC).unwrap(),
            "2025-12-03 00:00:03 UTC"
        );
        assert_eq!(
            format_time(&json!("2025-12-03T08:00:03+08:00"), None, UTC).unwrap(),
            "2025-12-03 00:00:03 UTC"
        );
        assert_eq!(format_time(&Value::Null, None, UTC).unwrap(), "");
        assert_eq!(format_time(&json!(""), None, UTC).unwrap(), "");
    }

    #[test]
    fn time_takes_a_format_an_offset_and_a_zone_name() {
        let t = json!(1764720003000i64);
        assert_eq!(format_time(&t, Some("%H:%M"), UTC).unwrap(), "00:00");
        assert_eq!(
            format_time(&t, None, offset("+08:00")).unwrap(),
            "2025-12-03 08:00:03 UTC+08:00"
        );
        assert_eq!(
            format_time(&t, Some("%d %H:%M"), offset("-0530")).unwrap(),
            "02 18:30"
        );
        assert_eq!(format_time(&t, Some("%H"), offset("+8")).unwrap(), "08");
        assert_eq!(format_time(&t, Some("%H"), offset("Z")).unwrap(), "00");
        assert_eq!(
            format_time(&t, None, offset("Asia/Shanghai")).unwrap(),
            "2025-12-03 08:00:03 UTC+08:00"
        );
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        // 2026-03-29 01:00 UTC is the moment Berlin moves from +01:00 to +02:00.
        let berlin = offset("Europe/Berlin");
        let before = json!("2026-03-29T00:59:00Z");
        let after = json!("2026-03-29T01:00:00Z");
        assert_eq!(
            format_time(&before, None, berlin).unwrap(),
            "2026-03-29 01:59:00 UTC+01:00"
        );
        assert_eq!(
            format_time(&after, None, berlin).unwrap(),
            "2026-03-29 03:00:00 UTC+02:00"
        );
    }

    #[test]
    fn time_rejects_what_it_cannot_read() {
        assert!(format_time(&json!("yesterday"), None, UTC).is_err());
        assert!(format_time(&json!(1.5), None, UTC).is_err());
        assert!(format_time(&json!(true), None, UTC).is_err());
        assert!(format_time(&json!(i64::MAX), None, UTC).is_err());
        assert!(format_time(&json!(0), Some("%Q"), UTC).is_err());
        for bad in ["08:00", "+25:00", "+08:61", "+abc", "+", "Mars/Phobos"] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_and_duration_follow_the_channel() {
        let zh = registry_in(
            ChannelKind::Dingtalk,
            Language::ZhCn,
            chrono_tz::Asia::Shanghai,
        );
        let data = json!({"t": 1764720003000i64, "ms": 3602000});
        assert_eq!(
            zh.render_template("{{time t}} / {{duration ms}}", &data)
                .unwrap(),
            "2025-12-03 08:00:03 UTC+08:00 / 1小时0分2秒"
        );
        assert_eq!(
            zh.render_template("{{time t tz=\"UTC\"}}", &data).unwrap(),
            "2025-12-03 00:00:03 UTC"
        );
        assert!(
            zh.render_template("{{time t tz=\"Mars/Phobos\"}}", &data)
                .is_err()
        );
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        let plain = char_weight(ChannelKind::Webhook);
        assert_eq!(truncate_chars("订单库备份失败", 7, plain), "订单库备份失败");
        assert_eq!(truncate_chars("订单库备份失败", 5, plain), "订单库备…");
        assert_eq!(truncate_chars("🚨🚨🚨", 2, plain), "🚨…");
        assert_eq!(truncate_chars("abc", 0, plain), "");
        assert_eq!(truncate_chars("abc", 1, plain), "…");
        let bytes = char_weight(ChannelKind::Dingtalk);
        // The ellipsis takes 3 bytes, so 2 is not enough for anything.
        assert_eq!(truncate_chars("abcdef", 2, bytes), "");
        assert_eq!(truncate_chars("订单库备份失败", 10, bytes), "订单…");
        assert_eq!(truncate_chars("a\nb\nc\nd", 6, bytes), "a\n…");
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
            "2025-12-03 08:00:03 UTC+08:00"
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
    fn escaping_helpers_and_console_links() {
        let data = json!({"e": "<!channel> *x* & y", "target_type": "backup_plan",
                          "target_id": "dbstooi01XXXX", "region": "cn-hangzhou"});
        let hook = registry(ChannelKind::Webhook);
        assert_eq!(
            hook.render_template("{{{slack_escape e}}}", &data).unwrap(),
            "&lt;!channel&gt; *x* &amp; y"
        );
        let ding = registry(ChannelKind::Dingtalk);
        assert_eq!(
            ding.render_template("{{{md_escape e}}}", &data).unwrap(),
            "<\u{200B}!channel> \\*x\\* & y"
        );
        assert_eq!(
            ding.render_template("{{console_url}}", &data).unwrap(),
            "https://dbs.console.aliyun.com/?regionId=cn-hangzhou#/dbs/detail/dbstooi01XXXX"
        );
        assert_eq!(
            ding.render_template(
                "{{console_url \"restore_task\" \"a b|c>\" region=\"ap-southeast-1\"}}",
                &data
            )
            .unwrap(),
            "https://dbs.console.aliyun.com/?regionId=ap-southeast-1#/dbs/restore/a%20b%7Cc%3E"
        );
        assert!(
            ding.render_template("{{console_url \"table\" \"x\"}}", &data)
                .is_err()
        );
        assert!(
            ding.render_template("{{console_url}}", &json!({"target_type": "backup_plan"}))
                .is_err()
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
            "{{md_escape watchname}}",
            "{{slack_escape watchname}}",
            "{{console_url watchname \"x\"}}",
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
