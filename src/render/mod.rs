//! Templates: turns an event into the JSON body a channel receives.
//!
//! Pure: no clock, no network; the only IO is reading override template files in
//! [`Renderer::new`].
//!
//! # How it works
//! Every channel gets its own Handlebars registry in strict mode (a misspelt field is an error,
//! not an empty string). A template renders the **complete JSON body**: Slack
//! `{"text": .., "blocks": [..]}`, DingTalk `{"msgtype": "markdown", "markdown": {..}}`, or the
//! generic webhook's event JSON. The notifier adds DingTalk's `at` and `msgUuid` afterwards.
//! The body must parse as JSON and respect the receiver's documented limits (Slack header 150 /
//! section 3000 / field 2000 characters, 10 fields, 50 blocks; DingTalk 19000 bytes, leaving
//! room for `at`/`msgUuid`); it is then sent compact, so template whitespace never reaches the
//! wire. If a channel's own template fails at run time, the built-in template for its kind is
//! used and [`Rendered::fallback_reason`] says why.
//!
//! # Escaping
//! `{{value}}` is escaped for the inside of a JSON string literal (`"`, `\`, newlines, tabs and
//! all control characters; emoji and CJK kept). For Slack, `&`, `<`, `>` become `&amp;`,
//! `&lt;`, `&gt;` first, so `<!channel>` in a DBS error can never ping anyone. Nothing is
//! HTML-escaped (`'` stays `'`). `{{{value}}}` is raw: use it only with `json`, e.g.
//! `"progress": {{{json progress}}}` or the whole webhook body `{{{json payload}}}`.
//!
//! # Fields
//! Every field is always present; unknown values are `null` (or `""` where noted).
//!
//! | field | example | |
//! |---|---|---|
//! | `event_id` | `7d3f9a4e-…` | stable across retries |
//! | `kind` | `precheck.failed` | `scope.change` |
//! | `scope` | `precheck` | or `restore` |
//! | `change` | `failed` | `started`, `item_changed`, `progress`, `failed`, `passed`, `completed`, `status_changed` |
//! | `headline` | `Pre-check failed` | also `Check CHECK_BINLOG_ON: running → warning`, `Restore completed` |
//! | `title` | `Pre-check failed: orders-db` | headline and watch; `Check CHECK_BINLOG_ON on orders-db: running → warning` for item changes |
//! | `summary` | `2 of 3 checks have problems` | also `3 checks to run`, `progress 40% → 70%`, `pre-check running, 40% done` |
//! | `severity` | `failure` | `warning`, `success`, `info` |
//! | `icon` | `❌` | `⚠️`, `✅`, `ℹ️` by severity |
//! | `is_failure` | `true` | the run failed or an item became `failed`/`catched` |
//! | `watch` | `orders-db` | configured watch name |
//! | `target_type` | `backup_plan` | or `restore_task` |
//! | `target_label` | `Backup plan` | or `Restore task` |
//! | `target_id` | `dbstooi01XXXX` | |
//! | `status_before`, `status` | `running`, `failed` | DBS overall Status |
//! | `status_text` | `running → failed` | or `running`, or `unknown` |
//! | `progress_before`, `progress` | `40`, `100` | 0–100 |
//! | `progress_text` | `40% → 100%` | or `100%`, or `unknown` |
//! | `observed_at` | `2025-12-03T00:00:05Z` | RFC 3339 UTC |
//! | `observed_at_ms` | `1764720005000` | epoch ms |
//! | `items` | list | problem items for `failed`, warnings for `passed`/`completed`, the changed item for `item_changed` |
//! | `items[].code`, `.group`, `.order`, `.job_id`, `.state` | `CHECK_BINLOG_ON`, `CHECK_BINLOG_ON_DETAIL`, `30`, `qxwmxh2b1234`, `warning` | as DBS reports them |
//! | `items[].error` | `java.lang.RuntimeException: …` | `""` when none |
//! | `items[].is_problem` | `true` | `warning`, `failed`, `catched` |
//! | `items[].boot_time`, `.finish_time` | `2025-12-03T00:00:01Z` | RFC 3339 UTC |
//! | `items[].duration`, `.duration_ms` | `1s`, `1000` | when both times are known |
//! | `problem_count` | `2` | how many of `items` are problems |
//! | `item_total` | `3` | items in the whole pre-check or restore |
//! | `item_change` | object | for `item_changed`: all `items[]` fields plus `previous_state` (`null` when new) |
//! | `mentions` | `@13800000000 @13900000000` | DingTalk mentions, `""` when none |
//! | `channel` | `ops-dingtalk` | channel name |
//! | `payload` | object | the generic webhook payload, see [`webhook_payload`] |
//!
//! # Helpers
//! - `{{{json x}}}`: `x` as JSON. `{{json x}}` gives the same JSON escaped as string content.
//! - `{{time x}}`, `{{time x "%H:%M"}}`, `{{time x offset="+08:00"}}`: epoch ms or RFC 3339
//!   to text (strftime format; UTC unless an offset is given; `null` gives `""`).
//! - `{{duration ms}}`: `1h 0m 2s`.
//! - `{{truncate x 150}}`: at most 150 characters as the receiver counts them (for Slack, after
//!   `&` became `&amp;`), ending in `…` when cut.
//! - `{{upper x}}`; `{{quote x}}`: markdown block quote, every line prefixed with `> `.
//! - A helper name wins over a field of the same name: inside `{{#each items}}` write
//!   `{{this.duration}}` for the item's `duration` field; `{{duration}}` alone is the helper.
//! - Built in: `if`/`unless` (strict here too), `each`, `with`, `eq`, `ne`, `lt`, `gt`, `and`,
//!   `or`, `not`, `len`.

mod escape;
mod helpers;
mod limits;
mod samples;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use handlebars::{Handlebars, RenderErrorReason, TemplateErrorReason};
use serde_json::Value;

use crate::event::Event;
use crate::notify::ChannelKind;

pub use escape::{json_string, slack_entities};
pub use helpers::{format_duration, format_time, quote_lines, truncate_chars};
pub use samples::{hostile_event, sample_events};
pub use view::{ItemChangeView, ItemView, View, webhook_payload};

/// The built-in Slack template.
pub const SLACK_TEMPLATE: &str = include_str!("../../templates/slack.hbs");
/// The built-in DingTalk template.
pub const DINGTALK_TEMPLATE: &str = include_str!("../../templates/dingtalk.hbs");
/// The built-in generic webhook template.
pub const WEBHOOK_TEMPLATE: &str = include_str!("../../templates/webhook.hbs");

/// The built-in template for a kind, also what a broken custom template falls back to.
pub fn builtin_template(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => SLACK_TEMPLATE,
        ChannelKind::Dingtalk => DINGTALK_TEMPLATE,
        ChannelKind::Webhook => WEBHOOK_TEMPLATE,
    }
}

const BUILTIN: &str = "builtin";
const CUSTOM: &str = "custom";

/// What the renderer needs to know about a channel.
#[derive(Debug, Clone)]
pub struct ChannelTemplate {
    /// Channel name.
    pub name: String,
    /// Receiver kind: picks the built-in template and the escaping.
    pub kind: ChannelKind,
    /// Optional override template file.
    pub template: Option<PathBuf>,
    /// DingTalk mobiles to mention (offered to templates as `mentions`).
    pub at_mobiles: Vec<String>,
}

/// What went wrong, so callers can tell a config mistake from a template mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Two channels share a name, so `render` could not tell them apart.
    DuplicateChannel,
    /// `render` was asked for a channel it was not built with.
    UnknownChannel,
    /// The override file could not be read.
    Read,
    /// The template does not parse.
    Syntax,
    /// Rendering failed: a misspelt field (strict mode), a bad helper argument.
    Render,
    /// The output is not JSON.
    NotJson,
    /// The output breaks a documented receiver limit.
    Limit,
}

/// A template problem with enough context to fix it: the channel, which template (file or
/// built-in), where in it when Handlebars knows, and for `check` the sample event that showed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel `{channel}`, {template}{at}: {message}{sample}",
    at = position(.line, .column),
    sample = sample_note(.sample))]
pub struct RenderError {
    /// Channel name.
    pub channel: String,
    /// `template /path/x.hbs` or `built-in slack template`.
    pub template: String,
    /// Line in the template, 1-based, when known.
    pub line: Option<u32>,
    /// Column in the template, when known.
    pub column: Option<u32>,
    /// Kind of problem.
    pub problem: Problem,
    /// What is wrong.
    pub message: String,
    /// For `check`: the sample event kind that was being rendered.
    pub sample: Option<String>,
}

fn position(line: &Option<u32>, column: &Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(", line {l}, col {c}"),
        (Some(l), None) => format!(", line {l}"),
        _ => String::new(),
    }
}

fn sample_note(sample: &Option<String>) -> String {
    sample
        .as_ref()
        .map(|k| format!(" (sample event {k})"))
        .unwrap_or_default()
}

/// A rendered body, and a note when the built-in template had to stand in for a broken one.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The JSON body.
    pub body: String,
    /// Set when the channel's own template failed and the built-in one was used.
    pub fallback_reason: Option<String>,
}

/// One channel, compiled: its registry holds the built-in template and, if configured, its own.
struct Channel {
    name: String,
    kind: ChannelKind,
    at_mobiles: Vec<String>,
    registry: Handlebars<'static>,
    /// `template /path` when the channel has its own template.
    custom: Option<String>,
}

/// All channel templates, compiled once at start-up so a broken template is found before the
/// first event, not when it matters.
pub struct Renderer {
    channels: Vec<Channel>,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for c in &self.channels {
            list.entry(&(&c.name, c.kind, &c.custom));
        }
        list.finish()
    }
}

impl Renderer {
    /// Compile every channel's template. Every problem (unreadable file, syntax error,
    /// duplicate name) is returned at once, so one `check-config` run shows them all.
    pub fn new(channels: &[ChannelTemplate]) -> Result<Renderer, Vec<RenderError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        let mut names = HashSet::new();
        for spec in channels {
            let error = |template: String, problem, message: String| RenderError {
                channel: spec.name.clone(),
                template,
                line: None,
                column: None,
                problem,
                message,
                sample: None,
            };
            if !names.insert(spec.name.as_str()) {
                errors.push(error(
                    "channel list".into(),
                    Problem::DuplicateChannel,
                    "another channel has the same name".into(),
                ));
                continue;
            }
            let mut registry = new_registry(spec.kind);
            if let Err(e) = registry.register_template_string(BUILTIN, builtin_template(spec.kind))
            {
                errors.push(template_error(&spec.name, builtin_name(spec.kind), &e));
            }
            let mut custom = None;
            if let Some(path) = &spec.template {
                let name = format!("template {}", path.display());
                match std::fs::read_to_string(path) {
                    Err(e) => errors.push(error(name, Problem::Read, format!("cannot read: {e}"))),
                    Ok(source) => match registry.register_template_string(CUSTOM, source) {
                        Err(e) => errors.push(template_error(&spec.name, name, &e)),
                        Ok(()) => custom = Some(name),
                    },
                }
            }
            compiled.push(Channel {
                name: spec.name.clone(),
                kind: spec.kind,
                at_mobiles: spec.at_mobiles.clone(),
                registry,
                custom,
            });
        }
        if errors.is_empty() {
            Ok(Renderer { channels: compiled })
        } else {
            Err(errors)
        }
    }

    /// Render the event for the channel. If the channel's own template fails (strict-mode
    /// miss, bad JSON, a receiver limit), the built-in template is used instead and
    /// `fallback_reason` says why: a late notification with the default layout beats none.
    pub fn render(&self, channel: &str, event: &Event) -> Result<Rendered, RenderError> {
        let ch = self
            .channels
            .iter()
            .find(|c| c.name == channel)
            .ok_or_else(|| RenderError {
                channel: channel.to_string(),
                template: "channel list".into(),
                line: None,
                column: None,
                problem: Problem::UnknownChannel,
                message: "no such channel".into(),
                sample: None,
            })?;
        let view = View::new(event, &ch.name, &ch.at_mobiles);
        let fallback_reason = match &ch.custom {
            None => None,
            Some(_) => match ch.render_view(CUSTOM, &view) {
                Ok(body) => {
                    return Ok(Rendered {
                        body,
                        fallback_reason: None,
                    });
                }
                Err(e) => Some(e.to_string()),
            },
        };
        let body = ch.render_view(BUILTIN, &view)?;
        Ok(Rendered {
            body,
            fallback_reason,
        })
    }

    /// Render each channel's own template against a sample event of every kind (plus one full
    /// of hostile text), strict, without fallback: what `check-config` runs so a template
    /// that would fail on some kind of event is found before that event happens. The same
    /// problem showing for several samples is reported once, naming the first.
    pub fn check(&self) -> Vec<RenderError> {
        let hostile = hostile_event();
        let hostile_id = hostile.id.clone();
        let mut samples = sample_events();
        samples.push(hostile);
        let mut errors: Vec<RenderError> = Vec::new();
        for ch in &self.channels {
            let template = if ch.custom.is_some() { CUSTOM } else { BUILTIN };
            for event in &samples {
                let view = View::new(event, &ch.name, &ch.at_mobiles);
                if let Err(mut e) = ch.render_view(template, &view) {
                    let seen = errors.iter().any(|p| {
                        p.channel == e.channel
                            && p.line == e.line
                            && p.column == e.column
                            && p.message == e.message
                    });
                    if !seen {
                        e.sample = Some(if event.id == hostile_id {
                            "with hostile text".to_string()
                        } else {
                            event.kind()
                        });
                        errors.push(e);
                    }
                }
            }
        }
        errors
    }
}

impl Channel {
    fn template_label(&self, template: &str) -> String {
        match (template, &self.custom) {
            (CUSTOM, Some(name)) => name.clone(),
            _ => builtin_name(self.kind),
        }
    }

    /// Render, check it is JSON within the receiver's limits, and return it compact.
    fn render_view(&self, template: &str, view: &View) -> Result<String, RenderError> {
        let error = |problem, message: String, line, column| RenderError {
            channel: self.name.clone(),
            template: self.template_label(template),
            line,
            column,
            problem,
            message,
            sample: None,
        };
        let text = self.registry.render(template, view).map_err(|e| {
            error(
                Problem::Render,
                describe(e.reason()),
                narrow(e.line_no),
                narrow(e.column_no),
            )
        })?;
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            error(
                Problem::NotJson,
                format!(
                    "the output is not JSON: {e}, near `{}` (output line {}; use {{{{value}}}} \
                     inside strings and {{{{{{json value}}}}}} outside them)",
                    excerpt(&text, e.line(), e.column()),
                    e.line()
                ),
                None,
                None,
            )
        })?;
        let compact = body.to_string();
        limits::check(self.kind, &body, &compact)
            .map_err(|m| error(Problem::Limit, m, None, None))?;
        Ok(compact)
    }
}

fn builtin_name(kind: ChannelKind) -> String {
    format!("built-in {} template", kind.as_str())
}

fn new_registry(kind: ChannelKind) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(escape::escape_fn(kind));
    helpers::register(&mut registry, escape::char_weight(kind));
    registry
}

fn template_error(channel: &str, template: String, e: &handlebars::TemplateError) -> RenderError {
    let (line, column) = e.pos().unzip();
    let (line, column) = (narrow(line), narrow(column));
    RenderError {
        channel: channel.to_string(),
        template,
        line,
        column,
        problem: Problem::Syntax,
        message: match e.reason() {
            // Pest lists every token it would have accepted; that list helps nobody.
            TemplateErrorReason::InvalidSyntax(_) => "syntax error: invalid handlebars syntax \
                (an unclosed {{#block}}, or braces that do not pair up?)"
                .to_string(),
            other => format!("syntax error: {other}"),
        },
        sample: None,
    }
}

/// Template positions fit in `u32`; keeping them small keeps `RenderError` cheap to return.
fn narrow(n: Option<usize>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

/// Handlebars' reasons, reworded where the original is cryptic.
fn describe(reason: &RenderErrorReason) -> String {
    match reason {
        RenderErrorReason::MissingVariable(Some(path)) => format!(
            "unknown field `{path}` (strict mode; see the field list in the render module docs)"
        ),
        RenderErrorReason::MissingVariable(None) => {
            "a helper was given an unknown field (strict mode)".into()
        }
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper `{name}`"),
        other => other.to_string(),
    }
}

/// A short piece of `text` around `line`/`column` (1-based), for pointing at bad JSON.
fn excerpt(text: &str, line: usize, column: usize) -> String {
    let Some(l) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let chars: Vec<char> = l.chars().collect();
    // serde_json's column counts bytes; close enough to centre a 60-character window.
    let at = column.min(chars.len());
    let start = at.saturating_sub(30);
    let end = (at + 30).min(chars.len());
    chars[start..end]
        .iter()
        .collect::<String>()
        .trim()
        .to_string()
}
