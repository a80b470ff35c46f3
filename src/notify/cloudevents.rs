//! CloudEvents 1.0 over HTTP for the generic webhook (`cloudevents = "structured"|"binary"`).
//!
//! The rendered body is the versioned event JSON (`{"version", "id", "type", "time", "data"}`);
//! this module maps it onto CloudEvents attributes so receivers built on a CloudEvents SDK
//! (Knative, EventBridge-style routers) accept it without custom parsing:
//!
//! | CloudEvents | from the body |
//! |---|---|
//! | `id` | `id` (the event id, stable across retries) |
//! | `type` | `type` (`precheck.failed`, the same names `events = [...]` filters use) |
//! | `source` | `/dbswatch` |
//! | `subject` | `data.target.id` (the backup plan or restore task), when present |
//! | `time` | `time` |
//! | `dataschema` | `urn:dbswatch:event:v<version>`, when `version` is present |
//! | `notice` (extension) | `notice`, when the built-in template stood in or this is a test |
//! | `data` | `data` |
//!
//! Structured mode sends the whole event as `application/cloudevents+json`; binary mode sends
//! `data` as the body and every attribute as a percent-encoded `ce-*` header.

use serde_json::{Map, Value};

use super::{Error, Prepared};

/// How a webhook channel sends CloudEvents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudEventsMode {
    /// The event and its attributes in one JSON body.
    Structured,
    /// The data as the body, attributes as `ce-*` headers.
    Binary,
}

impl CloudEventsMode {
    /// The config value: `structured` or `binary`.
    pub fn parse(text: &str) -> Option<CloudEventsMode> {
        match text {
            "structured" => Some(CloudEventsMode::Structured),
            "binary" => Some(CloudEventsMode::Binary),
            _ => None,
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudEventsMode::Structured => "structured",
            CloudEventsMode::Binary => "binary",
        }
    }
}

/// The `source` attribute of every event dbswatch sends.
pub const SOURCE: &str = "/dbswatch";

/// Wrap a rendered webhook body as a CloudEvent.
pub(crate) fn wrap(mode: CloudEventsMode, body: Value) -> Result<Prepared, Error> {
    let missing = |detail: &str| Error::CloudEvents {
        detail: detail.to_string(),
    };
    let Value::Object(mut body) = body else {
        return Err(missing("the body is not a JSON object"));
    };
    let string = |body: &Map<String, Value>, key: &str| {
        body.get(key).and_then(Value::as_str).map(str::to_string)
    };
    let id = string(&body, "id").ok_or_else(|| missing("it has no string `id`"))?;
    let kind = string(&body, "type").ok_or_else(|| missing("it has no string `type`"))?;
    let data = body
        .remove("data")
        .ok_or_else(|| missing("it has no `data`"))?;
    let mut attributes: Vec<(&str, String)> = vec![
        ("specversion", "1.0".to_string()),
        ("id", id),
        ("source", SOURCE.to_string()),
        ("type", kind),
    ];
    if let Some(subject) = data
        .get("target")
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
    {
        attributes.push(("subject", subject.to_string()));
    }
    if let Some(time) = string(&body, "time") {
        attributes.push(("time", time));
    }
    if let Some(version) = string(&body, "version") {
        attributes.push(("dataschema", format!("urn:dbswatch:event:v{version}")));
    }
    if let Some(notice) = string(&body, "notice") {
        attributes.push(("notice", notice));
    }
    match mode {
        CloudEventsMode::Structured => {
            let mut event = Map::new();
            for (name, value) in attributes {
                event.insert(name.to_string(), Value::String(value));
            }
            event.insert(
                "datacontenttype".into(),
                Value::String("application/json".into()),
            );
            event.insert("data".into(), data);
            Ok(Prepared {
                body: Value::Object(event).to_string(),
                content_type: "application/cloudevents+json; charset=UTF-8",
                headers: Vec::new(),
            })
        }
        CloudEventsMode::Binary => Ok(Prepared {
            body: data.to_string(),
            content_type: "application/json",
            headers: attributes
                .into_iter()
                .map(|(name, value)| (format!("ce-{name}"), header_value(&value)))
                .collect(),
        }),
    }
}

/// Percent-encode a header value as the HTTP binding requires: space, `"`, `%` and every byte
/// outside U+0021–U+007E, as UTF-8 with uppercase hex.
pub(crate) fn header_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload() -> Value {
        json!({"version": "1", "id": "7d3f", "type": "precheck.failed",
               "time": "2025-12-03T00:00:05Z",
               "data": {"watch": "orders-db", "target": {"type": "backup_plan", "id": "dbstooi01XXXX"}}})
    }

    #[test]
    fn header_values_are_percent_encoded_like_the_spec_example() {
        assert_eq!(header_value("Euro € 😀"), "Euro%20%E2%82%AC%20%F0%9F%98%80");
        assert_eq!(header_value("a\"b%c"), "a%22b%25c");
        assert_eq!(header_value("precheck.failed"), "precheck.failed");
    }

    #[test]
    fn structured_mode_puts_everything_in_one_body() {
        let p = wrap(CloudEventsMode::Structured, payload()).unwrap();
        assert_eq!(
            p.content_type,
            "application/cloudevents+json; charset=UTF-8"
        );
        assert!(p.headers.is_empty());
        assert_eq!(
            p.body,
            r#"{"specversion":"1.0","id":"7d3f","source":"/dbswatch","type":"precheck.failed","subject":"dbstooi01XXXX","time":"2025-12-03T00:00:05Z","dataschema":"urn:dbswatch:event:v1","datacontenttype":"application/json","data":{"watch":"orders-db","target":{"type":"backup_plan","id":"dbstooi01XXXX"}}}"#
        );
    }

    #[test]
    fn binary_mode_sends_data_and_ce_headers() {
        let mut body = payload();
        body["notice"] = json!("⚠ built-in template used");
        let p = wrap(CloudEventsMode::Binary, body).unwrap();
        assert_eq!(p.content_type, "application/json");
        assert_eq!(
            p.body,
            r#"{"watch":"orders-db","target":{"type":"backup_plan","id":"dbstooi01XXXX"}}"#
        );
        let names: Vec<&str> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ce-specversion",
                "ce-id",
                "ce-source",
                "ce-type",
                "ce-subject",
                "ce-time",
                "ce-dataschema",
                "ce-notice"
            ]
        );
        assert!(!names.contains(&"ce-datacontenttype"));
        assert_eq!(p.headers[7].1, "%E2%9A%A0%20built-in%20template%20used");
    }

    #[test]
    fn bodies_without_the_attributes_are_refused() {
        for (body, needle) in [
            (json!([1]), "not a JSON object"),
            (json!({"type": "t", "data": {}}), "`id`"),
            (json!({"id": "1", "data": {}}), "`type`"),
            (json!({"id": "1", "type": "t"}), "`data`"),
        ] {
            let err = wrap(CloudEventsMode::Binary, body).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert_eq!(
            CloudEventsMode::parse("binary"),
            Some(CloudEventsMode::Binary)
        );
        assert_eq!(CloudEventsMode::parse("batch"), None);
    }
}
