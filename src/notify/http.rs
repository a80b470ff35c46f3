//! The HTTP plumbing shared by all senders: one client, one way to read a reply, one way to
//! describe a transport failure. Nothing here knows about a vendor.

use std::error::Error as _;
use std::time::Duration;

use super::Verdict;

/// Replies longer than this are cut: no receiver's verdict needs more, and a hostile or broken
/// receiver must not make us buffer megabytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// How much of an unexpected reply is quoted in an error.
const SNIPPET_CHARS: usize = 200;

/// What came back, reduced to what the classifiers need.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as text, lossily: vendors' error strings are ASCII, and a broken encoding must
    /// not hide the rest of the answer.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The one client every sender uses: bounded by `timeout`, never following redirects, pooling
/// connections, with no proxy taken from the environment.
pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("dbswatch/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Send the request and read a bounded reply. The error still carries the URL: the caller must
/// strip it (see [`transport_verdict`]).
pub(crate) async fn execute(request: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let mut response = request.send().await?;
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = header(reqwest::header::RETRY_AFTER);
    let location = header(reqwest::header::LOCATION);
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_REPLY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_REPLY_BYTES {
            break;
        }
    }
    Ok(Reply {
        status,
        retry_after,
        location,
        body,
    })
}

/// A transport failure (no complete answer) as a verdict. Every one of them is worth retrying:
/// the receiver may be down, slow or unreachable for now. The URL is stripped here.
pub(crate) fn transport_verdict(err: reqwest::Error, timeout: Duration) -> Verdict {
    let err = err.without_url();
    let chain = describe_error_chain(&err);
    let error = if err.is_timeout() {
        format!(
            "timeout: the receiver did not answer within {} ({chain}); it may be down or overloaded, the message will be retried",
            human_duration(timeout)
        )
    } else if err.is_connect() {
        format!(
            "could not connect to the receiver ({chain}); check the host in the channel URL and that this machine can reach it, the message will be retried"
        )
    } else if err.is_builder() {
        // Not a network problem: a header value or the URL was refused before sending.
        return Verdict::permanent(format!(
            "the request could not be built ({chain}); check the channel URL"
        ));
    } else {
        format!(
            "the connection failed before a complete answer came back ({chain}); the message will be retried"
        )
    };
    Verdict::retryable(error)
}

/// `error: source: source...` on one line, so the root cause (refused, reset, DNS) is visible.
pub(crate) fn describe_error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// The numeric code and message of a JSON reply such as `{"errcode": 0, "errmsg": "ok"}`: the
/// first of `code_keys` present (a number or a numeric string) and the first of `msg_keys`.
/// `None` when the body is not JSON or has no code.
pub(crate) fn json_code(
    body: &[u8],
    code_keys: &[&str],
    msg_keys: &[&str],
) -> Option<(i64, String)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = code_keys.iter().find_map(|k| match value.get(*k)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })?;
    let msg = msg_keys
        .iter()
        .find_map(|k| value.get(*k).and_then(serde_json::Value::as_str))
        .unwrap_or("")
        .to_string();
    Some((code, msg))
}

/// The start of an unexpected reply, on one line, for error messages.
/// The verdict for a receiver that answers success in its body code (DingTalk, Feishu, WeCom)
/// when the body is not the JSON it always sends: a 2xx is something in the way (retry), a
/// redirect is never followed, anything else points at the channel URL.
pub(crate) fn unreadable_reply(vendor: &str, status: u16, body: &[u8], url_shape: &str) -> Verdict {
    match status {
        200..=299 => Verdict::retryable(format!(
            "{vendor} answered HTTP {status} but not with its usual JSON ({}); a proxy or an outage may be in the way, the message will be retried",
            snippet(body)
        )),
        300..=399 => Verdict::permanent(format!(
            "{vendor} answered with a redirect (HTTP {status}), which is not followed; the channel URL should be {url_shape}"
        )),
        _ => Verdict::permanent(format!(
            "{vendor} answered HTTP {status} with {}; check the channel URL",
            snippet(body)
        )),
    }
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "an empty body".to_string();
    }
    let mut cut: String = flat.chars().take(SNIPPET_CHARS).collect();
    if cut.len() < flat.len() {
        cut.push('…');
    }
    format!("`{cut}`")
}

/// `1.5 s` or `200 ms`: how long we waited, readable in an error message.
pub(crate) fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_line_and_bounded() {
        assert_eq!(
            snippet(b"  <html>\n  <body>oops</body>\n</html> "),
            "`<html> <body>oops</body> </html>`"
        );
        assert_eq!(snippet(b""), "an empty body");
        let long = "x".repeat(500);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 3);
        assert!(s.ends_with("…`"));
    }

    #[test]
    fn json_codes_are_read_from_the_first_key_present() {
        assert_eq!(
            json_code(
                br#"{"code":19024,"msg":"x"}"#,
                &["code", "StatusCode"],
                &["msg"]
            ),
            Some((19024, "x".to_string()))
        );
        assert_eq!(
            json_code(br#"{"StatusCode":"0"}"#, &["code", "StatusCode"], &["msg"]),
            Some((0, String::new()))
        );
        assert_eq!(json_code(b"ok", &["code"], &["msg"]), None);
        assert_eq!(json_code(br#"{"msg":"x"}"#, &["code"], &["msg"]), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(200)), "200 ms");
        assert_eq!(human_duration(Duration::from_secs(10)), "10 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
    }
}
