//! `dbswatch render --channel NAME [--event KIND | --event-file FILE]`: the exact body a
//! channel would be sent, without sending it.
//!
//! This is how a template is changed without fear: edit, run `render`, read the body the
//! receiver would get (after `prepare_body`, so DingTalk's `at`/`msgUuid`, a missing keyword
//! and the CloudEvents envelope are there too). Only what depends on the moment of sending
//! (signatures and their timestamps) is left out, and said so on stderr.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::event::{ALL_KINDS, Event};
use crate::notify::{self, ChannelKind};
use crate::render::{Renderer, sample_events};

/// Which events to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The sample of every kind, in kind order.
    AllSamples,
    /// The sample of one kind (`precheck.failed`).
    Sample(String),
    /// Events read from a file.
    File(PathBuf),
}

/// One rendered body and what a person should know about it.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The event kind.
    pub kind: String,
    /// The body, byte for byte as it would be sent.
    pub body: String,
    /// Notes for stderr: the fallback, signing and headers added at send time.
    pub notes: Vec<String>,
}

/// Why nothing could be rendered. The texts are shown as they are.
#[derive(Debug, thiserror::Error)]
pub enum RenderCommandError {
    /// The channel is not configured.
    #[error("no channel named `{name}`; configured: {known}")]
    UnknownChannel {
        /// The name asked for.
        name: String,
        /// The configured names.
        known: String,
    },
    /// `--event` names no kind.
    #[error("`{kind}` is not an event kind; kinds are {}", ALL_KINDS.join(", "))]
    UnknownKind {
        /// What was given.
        kind: String,
    },
    /// The event file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The event file holds no event.
    #[error(
        "{path} holds no event ({detail}); write an event as JSON, one per line, as `dbswatch replay` prints them"
    )]
    NotAnEvent {
        /// The file.
        path: String,
        /// The parser's complaint.
        detail: String,
    },
    /// The templates do not compile (`check-config` shows the same).
    #[error("templates do not compile: {0}")]
    Templates(String),
    /// Rendering or preparing the body failed even with the built-in template.
    #[error("{0}")]
    Render(String),
}

/// Render `selection` for the channel named `channel`, exactly as it would be sent.
pub fn previews(
    config: &Config,
    channel: &str,
    selection: &Selection,
) -> Result<Vec<Preview>, RenderCommandError> {
    let spec = &config
        .channel(channel)
        .ok_or_else(|| RenderCommandError::UnknownChannel {
            name: channel.to_string(),
            known: config
                .channels
                .iter()
                .map(|c| c.spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?
        .spec;
    let events = match selection {
        Selection::AllSamples => sample_events(),
        Selection::Sample(kind) => vec![
            sample_events()
                .into_iter()
                .find(|e| &e.kind() == kind)
                .ok_or_else(|| RenderCommandError::UnknownKind { kind: kind.clone() })?,
        ],
        Selection::File(path) => read_events(path)?,
    };
    let renderer = Renderer::new(&config.templates()).map_err(|errors| {
        RenderCommandError::Templates(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut out = Vec::new();
    for event in &events {
        let rendered = renderer
            .render(channel, event)
            .map_err(|e| RenderCommandError::Render(e.to_string()))?;
        // The delivery id is per send; the event id stands in so previews are repeatable.
        let prepared = notify::prepare_request(spec, &rendered.body, &event.id)
            .map_err(RenderCommandError::Render)?;
        let mut notes = Vec::new();
        if let Some(reason) = rendered.fallback_reason {
            notes.push(format!(
                "the channel's template failed, so the built-in one was used: {reason}"
            ));
        }
        notes.extend(send_time_notes(spec));
        for (name, value) in &prepared.headers {
            notes.push(format!("header {name}: {value}"));
        }
        out.push(Preview {
            kind: event.kind(),
            body: prepared.body,
            notes,
        });
    }
    Ok(out)
}

/// What is added when the message is actually sent, so the preview is not mistaken for
/// something incomplete.
fn send_time_notes(spec: &notify::ChannelSpec) -> Vec<String> {
    let signed = spec.secret.is_some();
    match spec.kind {
        ChannelKind::Dingtalk if signed => {
            vec!["`timestamp` and `sign` are added to the URL when it is sent".into()]
        }
        ChannelKind::Dingtalk => vec!["`msgUuid` is the delivery id when it is sent".into()],
        ChannelKind::Feishu if signed => {
            vec!["`timestamp` and `sign` are added to the body when it is sent".into()]
        }
        ChannelKind::Webhook if signed => vec![
            "webhook-id, webhook-timestamp and webhook-signature headers are added when it is sent"
                .into(),
        ],
        ChannelKind::Webhook => {
            vec!["webhook-id and webhook-timestamp headers are added when it is sent".into()]
        }
        _ => Vec::new(),
    }
}

/// Events from a file: one JSON event, a JSON array of events, or one event per line.
pub fn read_events(path: &Path) -> Result<Vec<Event>, RenderCommandError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| RenderCommandError::Read {
        path: shown.clone(),
        source,
    })?;
    // DBS error texts may hold broken UTF-8; show them with U+FFFD rather than refuse.
    let text = String::from_utf8_lossy(&bytes);
    let not_an_event = |detail: String| RenderCommandError::NotAnEvent {
        path: shown.clone(),
        detail,
    };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        let items = match value {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        return items
            .into_iter()
            .map(|v| serde_json::from_value::<Event>(v).map_err(|e| not_an_event(e.to_string())))
            .collect();
    }
    let events: Vec<Event> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str::<Event>(line)
                .map_err(|e| not_an_event(format!("line {}: {e}", n + 1)))
        })
        .collect::<Result<_, _>>()?;
    if events.is_empty() {
        return Err(not_an_event("the file is empty".into()));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;

    const CONFIG: &str = r#"
language = "zh-CN"

[[channel]]
name = "ding"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
at_mobiles = ["13800000000"]
keyword = "DBS"

[[channel]]
name = "ce"
type = "webhook"
url = "https://hooks.example.com/dbs"
cloudevents = "binary"
"#;

    fn config() -> Config {
        config::parse(CONFIG, Path::new("t.toml"), &|_| None).unwrap()
    }

    #[test]
    fn one_sample_is_rendered_as_it_would_be_sent() {
        let previews = previews(
            &config(),
            "ding",
            &Selection::Sample("precheck.failed".into()),
        )
        .unwrap();
        assert_eq!(previews.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&previews[0].body).unwrap();
        assert_eq!(body["at"]["atMobiles"][0], "13800000000");
        assert_eq!(body["msgUuid"], "7d3f9a4e-2c1b-4e8a-9f6d-a1b2c3d40003");
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(text.starts_with("### ❌ 预检查失败：orders-db"), "{text}");
        assert_eq!(text.matches("@13800000000").count(), 1, "{text}");
        assert!(text.contains(" · DBS"), "{text}");
    }

    #[test]
    fn every_sample_by_default_and_headers_as_notes() {
        let previews = previews(&config(), "ce", &Selection::AllSamples).unwrap();
        let kinds: Vec<&str> = previews.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ALL_KINDS);
        assert!(
            previews[0]
                .notes
                .iter()
                .any(|n| n == "header ce-type: precheck.started"),
            "{:?}",
            previews[0].notes
        );
        let data: serde_json::Value = serde_json::from_str(&previews[0].body).unwrap();
        assert_eq!(data["watch"], "orders-db");
    }

    #[test]
    fn mistakes_are_named() {
        let c = config();
        let err = previews(&c, "nope", &Selection::AllSamples).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no channel named `nope`; configured: ding, ce"
        );
        let err = previews(&c, "ding", &Selection::Sample("precheck.exploded".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kinds are precheck.started"), "{err}");
    }

    #[test]
    fn event_files_hold_one_event_an_array_or_lines() {
        let dir = tempfile::tempdir().unwrap();
        let event = serde_json::to_string(&sample_events()[3]).unwrap();
        let one = dir.path().join("one.json");
        std::fs::write(&one, &event).unwrap();
        assert_eq!(read_events(&one).unwrap().len(), 1);
        let lines = dir.path().join("lines.jsonl");
        std::fs::write(&lines, format!("{event}\n\n{event}\n")).unwrap();
        assert_eq!(read_events(&lines).unwrap().len(), 2);
        let array = dir.path().join("array.json");
        std::fs::write(&array, format!("[{event},{event},{event}]")).unwrap();
        assert_eq!(read_events(&array).unwrap().len(), 3);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"kind\": \"precheck.failed\"}").unwrap();
        let err = read_events(&bad).unwrap_err().to_string();
        assert!(err.contains("holds no event"), "{err}");
        assert!(err.contains("as `dbswatch replay` prints them"), "{err}");
        let missing = read_events(&dir.path().join("nope.json")).unwrap_err();
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
    }
}
