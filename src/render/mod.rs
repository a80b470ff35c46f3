//! Templates: turns an event into the JSON body a channel receives.
//!
//! INTERFACE STUB: replaced by the real implementation (see the helper brief).

mod escape;
mod helpers;
mod limits;
mod samples;
mod view;

use std::path::PathBuf;

use crate::event::Event;
use crate::notify::ChannelKind;

pub use escape::{json_string, slack_entities};
pub use helpers::{format_duration, format_time, quote_lines, truncate_chars};
pub use samples::{hostile_event, sample_events};
pub use view::{ItemChangeView, ItemView, View, webhook_payload};

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

/// A template problem, with where it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// A rendered body, and a note when the built-in template had to stand in for a broken one.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The JSON body.
    pub body: String,
    /// Set when the channel's own template failed and the built-in one was used.
    pub fallback_reason: Option<String>,
}

/// All channel templates, compiled once.
#[derive(Debug)]
pub struct Renderer;

impl Renderer {
    /// Compile every channel's template; every problem is returned at once.
    pub fn new(_channels: &[ChannelTemplate]) -> Result<Renderer, Vec<RenderError>> {
        Ok(Renderer)
    }
    /// Render the event for the channel; falls back to the built-in template on failure.
    pub fn render(&self, _channel: &str, _event: &Event) -> Result<Rendered, RenderError> {
        unimplemented!()
    }
    /// Render every sample event with the channel's own template in strict mode (check-config).
    pub fn check(&self) -> Vec<RenderError> {
        Vec::new()
    }
}
