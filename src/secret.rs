//! Secrets and their redaction.
//!
//! AccessKey secrets, webhook URLs with tokens and signing secrets must never reach a log line,
//! an error message or the history output. [`Secret`] cannot be printed by accident, and a
//! [`Redactor`] scrubs every known secret out of free text (error messages from libraries that
//! quote URLs, receiver replies that echo tokens) before it is stored or shown.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A string that must not be shown. `Debug` and `Display` print `***`; read it with
/// [`Secret::expose`] only where it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: call it only where the value is put on the wire or into an HMAC.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Replaces every known secret in a text with `***`.
///
/// Built once from the configuration; shared by the store, the notifiers and the logger so the
/// same rule applies everywhere text leaves the process.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.needles.len())
    }
}

impl Redactor {
    /// Secrets shorter than this are not scrubbed from free text: replacing every "a" or "1"
    /// would destroy messages without protecting anything.
    const MIN_LEN: usize = 4;

    /// A redactor that knows nothing yet.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Learn one more secret value. URLs also teach their query values and path segments that
    /// look like tokens, so a library error that quotes part of a URL is scrubbed too.
    pub fn add(&mut self, value: &str) {
        let value = value.trim();
        if value.len() < Self::MIN_LEN {
            return;
        }
        self.push(value);
        if let Some((_, query)) = value.split_once('?') {
            for pair in query.split('&') {
                if let Some((_, v)) = pair.split_once('=') {
                    self.push(v);
                }
            }
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            let path = value
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or(value);
            let path = path.split('?').next().unwrap_or(path);
            for segment in path.split('/').skip(1) {
                if segment.len() >= 8 {
                    self.push(segment);
                }
            }
        }
    }

    /// Learn a secret held in a [`Secret`].
    pub fn add_secret(&mut self, secret: &Secret) {
        self.add(secret.expose());
    }

    fn push(&mut self, value: &str) {
        if value.len() >= Self::MIN_LEN && !self.needles.iter().any(|n| n == value) {
            self.needles.push(value.to_string());
            // Longest first, so a URL is replaced whole before its token is.
            self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        }
    }

    /// The text with every known secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), "***");
            }
        }
        out
    }
}

/// A URL as it may be shown: scheme, host and port only.
pub fn display_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "<url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn redactor_scrubs_urls_and_their_tokens() {
        let mut r = Redactor::new();
        r.add("https://oapi.dingtalk.com/robot/send?access_token=abc123token");
        r.add("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX");
        r.add("ab");
        let text = "error sending request for url (https://oapi.dingtalk.com/robot/send?access_token=abc123token&timestamp=1): token abc123token; slack XXXXXXXXXXXXXXXX; ab stays";
        let out = r.redact(text);
        assert!(!out.contains("abc123token"), "{out}");
        assert!(!out.contains("XXXXXXXXXXXXXXXX"), "{out}");
        assert!(out.contains("ab stays"));
    }

    #[test]
    fn redactor_debug_shows_no_secret() {
        let mut r = Redactor::new();
        r.add("topsecretvalue");
        assert_eq!(format!("{r:?}"), "Redactor(1 secrets)");
    }

    #[test]
    fn display_url_keeps_only_the_host() {
        assert_eq!(
            display_url("https://user:pw@hooks.slack.com/services/T/B/X?x=1"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(display_url("not a url"), "<url>");
    }
}
