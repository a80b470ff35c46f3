//! Templates: turns an event into the JSON body a channel receives.
//!
//! Pure: no clock, no network; the only IO is reading override template files in
//! [`Renderer::new`]. Times come from the event (`observed_at_ms`), never from a clock.
//!
//! # How it works
//! Every channel gets its own Handlebars registry in strict mode (a misspelt field is an error,
//! not an empty string), with helpers set up for the channel's language, time zone and
//! receiver. A template renders the **complete JSON body**: Slack `{"text": .., "blocks":
//! [..]}`, DingTalk `{"msgtype": "markdown", ..}`, Feishu `{"msg_type": "interactive", "card":
//! ..}`, WeCom `{"msgtype": "markdown", ..}`, or the generic webhook's event JSON. The notifier
//! adds DingTalk's `at` and `msgUuid`, Feishu's signature and a missing security keyword
//! afterwards. The body must parse as JSON and respect the receiver's documented limits
//! ([`limits`]); it is then sent compact, so template whitespace never reaches the wire.
//!
//! If a channel's own template fails at run time, the built-in template for its kind is used,
//! [`Rendered::fallback_reason`] says why, and the message itself carries a visible note
//! (`notice`). If even the built-in layout would break a limit (many long items), it is
//! rendered again with fewer items until it fits.
//!
//! # Escaping
//! `{{value}}` is escaped for the inside of a JSON string literal (`"`, `\`, newlines, tabs and
//! all control characters; emoji and CJK kept). For Slack, `&`, `<`, `>` become `&amp;`,
//! `&lt;`, `&gt;` first, so `<!channel>` in a DBS error can never ping anyone. Nothing is
//! HTML-escaped (`'` stays `'`). `{{{value}}}` is raw: use it only with `json`, e.g.
//! `"progress": {{{json progress}}}` or the whole webhook body `{{{json payload}}}`. Markdown
//! channels use `{{md_escape x}}` for DBS text.
//!
//! The data model (every field, with examples) and the helpers are documented for template
//! authors in `docs/templates.md`.

mod escape;
mod helpers;
mod i18n;
mod limits;
mod samples;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use chrono_tz::Tz;
use handlebars::{Handlebars, RenderErrorReason, TemplateErrorReason};
use serde_json::Value;

use crate::event::{Change, Event};
use crate::notify::ChannelKind;

pub use escape::{json_string, markdown_escape, slack_entities};
pub use helpers::{Zone, console_url, format_time, quote_lines, truncate_chars};
pub use i18n::{Labels, Language, format_duration};
pub use limits::Budget;
pub use samples::{hostile_event, merged_sample, sample_events, test_event};
pub use view::{
    GroupEntryView, ItemChangeView, ItemView, PollErrorView, View, ViewOptions, webhook_payload,
};

/// The built-in Slack template.
pub const SLACK_TEMPLATE: &str = include_str!("../../templates/slack.hbs");
/// The built-in DingTalk template.
pub const DINGTALK_TEMPLATE: &str = include_str!("../../templates/dingtalk.hbs");
/// The built-in generic webhook template.
pub const WEBHOOK_TEMPLATE: &str = include_str!("../../templates/webhook.hbs");
/// The built-in Feishu / Lark template.
pub const FEISHU_TEMPLATE: &str = include_str!("../../templates/feishu.hbs");
/// The built-in WeCom template.
pub const WECOM_TEMPLATE: &str = include_str!("../../templates/wecom.hbs");

/// The built-in template for a kind, also what a broken custom template falls back to.
pub fn builtin_template(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => SLACK_TEMPLATE,
        ChannelKind::Dingtalk => DINGTALK_TEMPLATE,
        ChannelKind::Webhook => WEBHOOK_TEMPLATE,
        ChannelKind::Feishu => FEISHU_TEMPLATE,
        ChannelKind::Wecom => WECOM_TEMPLATE,
    }
}

/// How many items a chat layout lists before `… and N more`: enough to act on, few enough to
/// stay readable and inside every receiver's limits. WeCom's 4096-byte markdown fits five.
pub fn item_cap(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Slack | ChannelKind::Dingtalk | ChannelKind::Feishu => 10,
        ChannelKind::Wecom => 5,
        ChannelKind::Webhook => usize::MAX,
    }
}

/// Which of several changes a merged message leads with: the newest one that says where the run
/// stands (started, failed, passed, ..., poll health), else the newest. `None` for no events.
pub fn headline_index(events: &[Event]) -> Option<usize> {
    events
        .iter()
        .rposition(|e| !matches!(e.change, Change::ItemChanged | Change::Progress))
        .or_else(|| events.len().checked_sub(1))
}

/// What a merged message adds to its headline change.
#[derive(Debug, Clone, Copy, Default)]
struct GroupInput<'a> {
    /// The other changes, oldest first.
    others: &'a [Event],
    /// Flapping repeats muted since the last message.
    muted: usize,
}

const BUILTIN: &str = "builtin";
const CUSTOM: &str = "custom";

/// The longest fallback reason shown inside a message; the log has the whole text.
const NOTICE_REASON_MAX: usize = 300;

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
    /// Language of the generated words.
    pub language: Language,
    /// Time zone times are shown in.
    pub timezone: Tz,
    /// DBS region, for console links.
    pub region: String,
    /// The robot's security keyword (DingTalk, Feishu).
    pub keyword: Option<String>,
    /// DingTalk: an actionCard with a button to the DBS console instead of markdown.
    pub action_card: bool,
    /// Webhook: sent as a CloudEvent, so the body must carry `id`, `type` and `data`.
    pub cloudevents: bool,
}

impl ChannelTemplate {
    /// A channel with every option at its default: English, UTC, cn-hangzhou, built-in
    /// template.
    pub fn new(name: impl Into<String>, kind: ChannelKind) -> ChannelTemplate {
        ChannelTemplate {
            name: name.into(),
            kind,
            template: None,
            at_mobiles: Vec::new(),
            language: Language::En,
            timezone: chrono_tz::UTC,
            region: "cn-hangzhou".into(),
            keyword: None,
            action_card: false,
            cloudevents: false,
        }
    }
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
    spec: ChannelTemplate,
    registry: Handlebars<'static>,
    /// `template /path` when the channel has its own template.
    custom: Option<String>,
    budget: Budget,
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
            list.entry(&(&c.spec.name, c.spec.kind, &c.custom));
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
            let mut registry = new_registry(spec);
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
            let mut budget =
                Budget::for_channel(spec.kind, &spec.at_mobiles, spec.keyword.as_deref());
            budget.event_envelope = spec.kind == ChannelKind::Webhook && spec.cloudevents;
            compiled.push(Channel {
                spec: spec.clone(),
                registry,
                custom,
                budget,
            });
        }
        if errors.is_empty() {
            Ok(Renderer { channels: compiled })
        } else {
            Err(errors)
        }
    }

    /// Render the event for the channel. If the channel's own template fails (strict-mode
    /// miss, bad JSON, a receiver limit), the built-in template is used instead, the message
    /// says so, and `fallback_reason` says why: a message with the default layout beats none.
    pub fn render(&self, channel: &str, event: &Event) -> Result<Rendered, RenderError> {
        self.channel(channel)?
            .render(event, GroupInput::default(), false)
    }

    /// Render one message that covers several changes of one watch (`events`, oldest first):
    /// the headline change ([`headline_index`]) in full, the others as a compact list
    /// (`group`, `group_text`: "This message covers N changes"), and, when `muted` is not
    /// zero, the note that flapping repeats were muted. One event and nothing muted renders
    /// exactly like [`Renderer::render`]. This is how a poll with several changes, or a backlog
    /// after an outage or a rate-limit wait, reaches a chat as one message instead of a burst.
    pub fn render_group(
        &self,
        channel: &str,
        events: &[Event],
        muted: usize,
    ) -> Result<Rendered, RenderError> {
        let channel = self.channel(channel)?;
        let Some(head) = headline_index(events) else {
            return Err(RenderError {
                channel: channel.spec.name.clone(),
                template: "message".into(),
                line: None,
                column: None,
                problem: Problem::Render,
                message: "a merged message needs at least one event".into(),
                sample: None,
            });
        };
        let others: Vec<Event> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != head)
            .map(|(_, e)| e.clone())
            .collect();
        channel.render(
            &events[head],
            GroupInput {
                others: &others,
                muted,
            },
            false,
        )
    }

    /// Render the clearly marked `dbswatch test message` ([`test_event`] with `event_id`) for
    /// the channel, the way `render` would: what `dbswatch test-channel` sends.
    pub fn render_test(&self, channel: &str, event_id: &str) -> Result<Rendered, RenderError> {
        self.channel(channel)?
            .render(&test_event(event_id), GroupInput::default(), true)
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
        // A merged message (two earlier changes, two muted repeats), so a typo inside
        // `{{#each group}}` is found too.
        let (merged_head, merged_others, merged_muted) = merged_sample();
        let mut cases: Vec<(String, &Event, GroupInput<'_>)> = samples
            .iter()
            .map(|e| {
                let label = if e.id == hostile_id {
                    "with hostile text".to_string()
                } else {
                    e.kind()
                };
                (label, e, GroupInput::default())
            })
            .collect();
        cases.push((
            "merged message".to_string(),
            &merged_head,
            GroupInput {
                others: &merged_others,
                muted: merged_muted,
            },
        ));
        let mut errors: Vec<RenderError> = Vec::new();
        for ch in &self.channels {
            let template = if ch.custom.is_some() { CUSTOM } else { BUILTIN };
            for (label, event, group) in &cases {
                let result = if template == BUILTIN {
                    ch.render_builtin(event, *group, None, false)
                } else {
                    let cap = item_cap(ch.spec.kind);
                    let options = ch.view_options(cap, None, false);
                    let view = View::new(event, &options).with_group(
                        group.others,
                        group.muted,
                        &options,
                        cap,
                    );
                    ch.render_view(template, &view)
                };
                if let Err(mut e) = result {
                    let seen = errors.iter().any(|p| {
                        p.channel == e.channel
                            && p.line == e.line
                            && p.column == e.column
                            && p.message == e.message
                    });
                    if !seen {
                        e.sample = Some(label.clone());
                        errors.push(e);
                    }
                }
            }
        }
        errors
    }

    fn channel(&self, name: &str) -> Result<&Channel, RenderError> {
        self.channels
            .iter()
            .find(|c| c.spec.name == name)
            .ok_or_else(|| RenderError {
                channel: name.to_string(),
                template: "channel list".into(),
                line: None,
                column: None,
                problem: Problem::UnknownChannel,
                message: "no such channel".into(),
                sample: None,
            })
    }
}

impl Channel {
    fn template_label(&self, template: &str) -> String {
        match (template, &self.custom) {
            (CUSTOM, Some(name)) => name.clone(),
            _ => builtin_name(self.spec.kind),
        }
    }

    fn view_options(&self, item_cap: usize, notice: Option<String>, test: bool) -> ViewOptions<'_> {
        ViewOptions {
            channel: &self.spec.name,
            language: self.spec.language,
            timezone: self.spec.timezone,
            region: &self.spec.region,
            at_mobiles: &self.spec.at_mobiles,
            keyword: self.spec.keyword.as_deref(),
            action_card: self.spec.action_card,
            item_cap,
            notice,
            test,
        }
    }

    /// The custom template if there is one and it works, else the built-in one with a note.
    fn render(
        &self,
        event: &Event,
        group: GroupInput<'_>,
        test: bool,
    ) -> Result<Rendered, RenderError> {
        let lang = self.spec.language;
        let test_note = test.then(|| i18n::test_notice(lang).to_string());
        let fallback_reason = match &self.custom {
            None => None,
            Some(_) => {
                let cap = item_cap(self.spec.kind);
                let options = self.view_options(cap, test_note.clone(), test);
                let view =
                    View::new(event, &options).with_group(group.others, group.muted, &options, cap);
                match self.render_view(CUSTOM, &view) {
                    Ok(body) => {
                        return Ok(Rendered {
                            body,
                            fallback_reason: None,
                        });
                    }
                    Err(e) => Some(e.to_string()),
                }
            }
        };
        let fallback_note = fallback_reason.as_deref().map(|reason| {
            let reason = truncate_chars(reason, NOTICE_REASON_MAX, |_| 1);
            i18n::fallback_notice(lang, &reason)
        });
        let notice = match (fallback_note, test_note) {
            (Some(f), Some(t)) => Some(format!("{f} · {t}")),
            (f, t) => f.or(t),
        };
        let body = self.render_builtin(event, group, notice, test)?;
        Ok(Rendered {
            body,
            fallback_reason,
        })
    }

    /// The built-in template, showing fewer items (and fewer merged changes) while the body
    /// breaks a receiver limit, so a flood of long DBS errors or a long backlog shortens the
    /// message instead of losing it.
    fn render_builtin(
        &self,
        event: &Event,
        group: GroupInput<'_>,
        notice: Option<String>,
        test: bool,
    ) -> Result<String, RenderError> {
        let mut cap = item_cap(self.spec.kind).min(event.items.len());
        let mut group_cap = item_cap(self.spec.kind).min(group.others.len());
        loop {
            let options = self.view_options(cap, notice.clone(), test);
            let view = View::new(event, &options).with_group(
                group.others,
                group.muted,
                &options,
                group_cap,
            );
            match self.render_view(BUILTIN, &view) {
                Err(e) if e.problem == Problem::Limit && (cap > 0 || group_cap > 0) => {
                    cap /= 2;
                    group_cap /= 2;
                }
                result => return result,
            }
        }
    }

    /// Render, check it is JSON within the receiver's limits, and return it compact.
    fn render_view(&self, template: &str, view: &View) -> Result<String, RenderError> {
        let error = |problem, message: String, line, column| RenderError {
            channel: self.spec.name.clone(),
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
        limits::check(self.spec.kind, &body, &compact, &self.budget)
            .map_err(|m| error(Problem::Limit, m, None, None))?;
        Ok(compact)
    }
}

fn builtin_name(kind: ChannelKind) -> String {
    format!("built-in {} template", kind.as_str())
}

fn new_registry(spec: &ChannelTemplate) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(escape::escape_fn(spec.kind));
    helpers::register(
        &mut registry,
        helpers::HelperSettings {
            kind: spec.kind,
            language: spec.language,
            timezone: spec.timezone,
        },
    );
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
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("unknown field `{path}` (strict mode; see the field list in docs/templates.md)")
        }
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
