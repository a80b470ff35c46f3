//! Why a DBS call failed, and what the user should do about it.
//!
//! Every failure is classified once, here, into an [`ErrorKind`]: the retry loop, the scheduler
//! and the notifications all read the same answer. `Display` is a plain sentence with the next
//! step, safe to show in chat: it never contains the AccessKey secret, the STS token, the
//! signature or a request URL (the query string carries the token).

use std::fmt;
use std::time::Duration;

/// Longest piece of an unreadable body quoted in an error.
pub const SNIPPET_MAX_CHARS: usize = 200;

/// What went wrong, at the level a person or a retry policy cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// DBS is rate-limiting this account (`Throttling*`, HTTP 429).
    Throttled,
    /// A temporary failure on the Alibaba Cloud side (`InternalError`, `ServiceUnavailable`, 5xx).
    Server,
    /// The gateway did not accept the signature.
    Signature,
    /// The AccessKey id, secret or STS token is unknown, disabled or expired.
    Credentials,
    /// The AccessKey is valid but not allowed to call the action.
    Permission,
    /// The request time is too far from the server's clock.
    ClockSkew,
    /// The reply is not a DBS answer (HTML page, truncated JSON, unexpected shape).
    BadResponse,
    /// DBS could not be reached (DNS, connect, TLS, connection reset).
    Network,
    /// DBS did not answer within the configured timeout.
    Timeout,
    /// DBS understood the request and refused it (unknown id, bad parameter, other codes).
    Api,
    /// The client options are unusable; no request was sent.
    Config,
    /// No credential source had usable credentials; no request was sent.
    CredentialSource,
}

impl ErrorKind {
    /// Stable machine name, for storage and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Server => "server",
            ErrorKind::Signature => "signature",
            ErrorKind::Credentials => "credentials",
            ErrorKind::Permission => "permission",
            ErrorKind::ClockSkew => "clock_skew",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Network => "network",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Api => "api",
            ErrorKind::Config => "config",
            ErrorKind::CredentialSource => "credential_source",
        }
    }

    /// Whether the same request may succeed a moment later. Signature, credential, permission
    /// and clock problems never fix themselves, so retrying them only burns quota.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Network | ErrorKind::Timeout
        )
    }

    fn headline(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "DBS is throttling requests",
            ErrorKind::Server => "DBS had a temporary failure",
            ErrorKind::Signature => "DBS rejected the request signature",
            ErrorKind::Credentials => "DBS did not accept the AccessKey",
            ErrorKind::Permission => "the AccessKey is not allowed to call this DBS action",
            ErrorKind::ClockSkew => "DBS rejected the request time",
            ErrorKind::BadResponse => "DBS sent a reply dbswatch cannot read",
            ErrorKind::Network => "could not reach DBS",
            ErrorKind::Timeout => "DBS did not answer in time",
            ErrorKind::Api => "DBS refused the request",
            ErrorKind::Config => "the DBS client is misconfigured",
            ErrorKind::CredentialSource => "no usable Alibaba Cloud credentials",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `SignatureDoesNotMatch` reply tells us once its quoted string to sign is compared with
/// the one we signed for that attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureDiagnosis {
    /// Both sides signed the same text, so the key differs: the secret is wrong for this id.
    SecretMismatch,
    /// The server canonicalised the request differently; these parameters (or `method`) differ.
    Canonicalisation {
        /// Names only: values can include the STS token.
        differing: Vec<String>,
    },
    /// The reply did not quote a string to sign, or we had none to compare with.
    Unknown,
}

/// An error reply from the gateway or from DBS itself, with everything support will ask for.
///
/// The server's `SignatureDoesNotMatch` message quotes the full string to sign (it contains the
/// STS token); that part is cut off at parse time and only the diagnosis is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The classification, from the code first and the HTTP status second.
    pub kind: ErrorKind,
    /// HTTP status of the reply.
    pub status: u16,
    /// `Code` (gateway) or `ErrCode` (DBS); may be empty when DBS sent none.
    pub code: String,
    /// `Message` or `ErrMessage`, without any quoted string to sign.
    pub message: String,
    /// `RequestId`, the handle Alibaba Cloud support needs.
    pub request_id: Option<String>,
    /// `HostId`: which host answered.
    pub host_id: Option<String>,
    /// `Recommend`: the error-center link for this code.
    pub recommend: Option<String>,
    /// From the `x-acs-retry-after` header (milliseconds on the wire).
    pub retry_after: Option<Duration>,
    /// Set for `SignatureDoesNotMatch` only.
    pub signature: Option<SignatureDiagnosis>,
    /// The action that was called (`DescribePreCheckProgressList`, ...), for the RAM hint.
    pub action: String,
}

/// Why a reply could not be used as an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Not JSON at all, typically an HTML error page from a proxy.
    NotJson,
    /// JSON that stops mid-way.
    Truncated,
    /// JSON, but not an object.
    NotAnObject,
    /// A JSON object with neither `Status` nor `Items` nor an error code: not an answer we know,
    /// and never to be mistaken for a state.
    UnknownShape,
    /// A 3xx: redirects are not followed, because the signature binds the request to one host.
    Redirect,
}

impl fmt::Display for BodyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyProblem::NotJson => "the body is not JSON",
            BodyProblem::Truncated => "the JSON body is cut off",
            BodyProblem::NotAnObject => "the JSON body is not an object",
            BodyProblem::UnknownShape => "the JSON has neither Status nor Items nor an error code",
            BodyProblem::Redirect => "the endpoint answered with a redirect",
        })
    }
}

/// A failed DBS call.
#[derive(Debug, thiserror::Error)]
pub enum DbsError {
    /// The API gateway refused the request: HTTP 4xx/5xx with `Code`/`Message`.
    #[error("{}", self.describe())]
    Gateway(Box<ServiceError>),
    /// DBS answered `Success: false` with `ErrCode`/`ErrMessage`, whatever the HTTP status.
    #[error("{}", self.describe())]
    Rejected(Box<ServiceError>),
    /// The reply was not usable as an answer.
    #[error("{}", self.describe())]
    BadResponse {
        /// HTTP status of the reply.
        status: u16,
        /// What was wrong with it.
        problem: BodyProblem,
        /// The start of the body (at most [`SNIPPET_MAX_CHARS`] characters, tokens scrubbed).
        snippet: String,
        /// From the `x-acs-retry-after` header, if any.
        retry_after: Option<Duration>,
    },
    /// No reply: connection, DNS, TLS, body read or timeout failure. The URL is stripped from the
    /// source error because the query string carries the STS token.
    #[error("{}", self.describe())]
    Transport {
        /// True when the configured timeout or connect timeout expired.
        timeout: bool,
        /// The underlying error, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// The client could not be built; nothing was sent.
    #[error("{}", self.describe())]
    InvalidOptions {
        /// What is wrong.
        reason: String,
        /// How to fix it.
        fix: String,
    },
    /// The credential chain had nothing usable (or the ECS metadata service failed); nothing
    /// was sent.
    #[error("{}", self.describe())]
    Credentials(#[source] super::credentials::CredentialError),
}

impl DbsError {
    /// Wraps a transport failure, dropping the URL so a token in the query never leaks.
    pub fn transport(error: reqwest::Error) -> DbsError {
        DbsError::Transport {
            timeout: error.is_timeout(),
            source: error.without_url(),
        }
    }

    /// The classification that decides retrying and the hint.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbsError::Gateway(e) | DbsError::Rejected(e) => e.kind,
            DbsError::BadResponse { status, .. } if *status >= 500 => ErrorKind::Server,
            DbsError::BadResponse { .. } => ErrorKind::BadResponse,
            DbsError::Transport { timeout: true, .. } => ErrorKind::Timeout,
            DbsError::Transport { .. } => ErrorKind::Network,
            DbsError::InvalidOptions { .. } => ErrorKind::Config,
            DbsError::Credentials(_) => ErrorKind::CredentialSource,
        }
    }

    /// The gateway `Code` or DBS `ErrCode`, when the reply had one.
    pub fn code(&self) -> Option<&str> {
        self.service()
            .map(|e| e.code.as_str())
            .filter(|c| !c.is_empty())
    }

    /// The server's message (without any quoted string to sign).
    pub fn message(&self) -> Option<&str> {
        self.service()
            .map(|e| e.message.as_str())
            .filter(|m| !m.is_empty())
    }

    /// The HTTP status, when a reply arrived.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            DbsError::Gateway(e) | DbsError::Rejected(e) => Some(e.status),
            DbsError::BadResponse { status, .. } => Some(*status),
            DbsError::Transport { .. }
            | DbsError::InvalidOptions { .. }
            | DbsError::Credentials(_) => None,
        }
    }

    /// The `RequestId`, which Alibaba Cloud support asks for.
    pub fn request_id(&self) -> Option<&str> {
        self.service().and_then(|e| e.request_id.as_deref())
    }

    /// How long the server asked us to wait (`x-acs-retry-after`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DbsError::Gateway(e) | DbsError::Rejected(e) => e.retry_after,
            DbsError::BadResponse { retry_after, .. } => *retry_after,
            DbsError::Transport { .. }
            | DbsError::InvalidOptions { .. }
            | DbsError::Credentials(_) => None,
        }
    }

    /// The `SignatureDoesNotMatch` diagnosis, when that was the error.
    pub fn signature_diagnosis(&self) -> Option<&SignatureDiagnosis> {
        self.service().and_then(|e| e.signature.as_ref())
    }

    /// Whether retrying later may help.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// What the user should do about it, in plain words.
    pub fn hint(&self) -> String {
        match self {
            DbsError::Gateway(e) | DbsError::Rejected(e) => service_hint(e),
            DbsError::BadResponse {
                status, problem, ..
            } => bad_response_hint(*status, *problem),
            DbsError::Transport { timeout: true, .. } => "DBS or the network is slow; dbswatch \
                retries on its own, and if this keeps happening raise the timeout"
                .to_string(),
            DbsError::Transport { .. } => "check the network, DNS, firewall or HTTP proxy and \
                the endpoint setting; dbswatch retries on its own"
                .to_string(),
            DbsError::InvalidOptions { fix, .. } => fix.clone(),
            DbsError::Credentials(_) => {
                "`dbswatch whoami` shows which credential sources were looked at".to_string()
            }
        }
    }

    fn service(&self) -> Option<&ServiceError> {
        match self {
            DbsError::Gateway(e) | DbsError::Rejected(e) => Some(e),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        let headline = self.kind().headline();
        let hint = self.hint();
        match self {
            DbsError::Gateway(e) | DbsError::Rejected(e) => {
                let mut what = String::new();
                if !e.code.is_empty() {
                    what.push_str(&e.code);
                }
                let message = e.message.trim().trim_end_matches('.');
                if !message.is_empty() {
                    if !what.is_empty() {
                        what.push_str(": ");
                    }
                    what.push_str(message);
                }
                if what.is_empty() {
                    what.push_str("no error code given");
                }
                let mut context = format!("HTTP {}", e.status);
                if let Some(id) = &e.request_id {
                    context.push_str(&format!(", RequestId {id}"));
                }
                format!("{headline}: {what} ({context}); {hint}")
            }
            DbsError::BadResponse {
                status,
                problem,
                snippet,
                ..
            } => {
                if snippet.is_empty() {
                    format!("{headline} (HTTP {status}): {problem}, the body is empty; {hint}")
                } else {
                    format!(
                        "{headline} (HTTP {status}): {problem}, it starts with \"{snippet}\"; {hint}"
                    )
                }
            }
            DbsError::Transport { source, .. } => {
                format!("{headline}: {}; {hint}", error_chain(source))
            }
            DbsError::InvalidOptions { reason, .. } => format!("{headline}: {reason}; {hint}"),
            DbsError::Credentials(e) => format!("{headline}: {e}; {hint}"),
        }
    }
}

/// `outer: inner: innermost`, because reqwest's own message ("error sending request") hides the
/// useful part (connection refused, DNS failure) in its sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

/// The kind for an error code, falling back on the HTTP status for codes we do not know.
pub fn classify(code: &str, status: u16) -> ErrorKind {
    match code {
        c if c.contains("Throttling") => ErrorKind::Throttled,
        "InternalError" | "ServiceUnavailable" | "UnknownError" | "ServiceTimeout" => {
            ErrorKind::Server
        }
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "SignatureNonceUsed"
        | "InvalidSignatureMethod"
        | "UnsupportedSignatureMethod"
        | "InvalidSignatureVersion"
        | "UnsupportedSignatureVersion" => ErrorKind::Signature,
        c if c.starts_with("InvalidAccessKeyId")
            || c.starts_with("InvalidSecurityToken")
            || c == "InvalidAccessKeySecret"
            || c == "Forbidden.AccessKeyDisabled"
            || c == "MissingSecurityToken" =>
        {
            ErrorKind::Credentials
        }
        "InvalidTimeStamp.Expired" => ErrorKind::ClockSkew,
        c if c == "Request.Forbidden"
            || c == "NoPermission"
            || c.starts_with("Forbidden")
            || c.starts_with("NoPermission") =>
        {
            ErrorKind::Permission
        }
        _ if status >= 500 => ErrorKind::Server,
        _ if status == 429 => ErrorKind::Throttled,
        _ => ErrorKind::Api,
    }
}

fn service_hint(e: &ServiceError) -> String {
    let code = e.code.as_str();
    match e.kind {
        ErrorKind::Throttled => "dbswatch backs off and retries on its own; if this keeps \
            happening, consider a slower schedule or fewer watches per AccessKey"
            .to_string(),
        ErrorKind::Server => "this is a temporary failure on the Alibaba Cloud side; dbswatch \
            retries on its own, and if it persists quote the RequestId to Alibaba Cloud support"
            .to_string(),
        ErrorKind::Signature => match (code, &e.signature) {
            ("SignatureDoesNotMatch", Some(SignatureDiagnosis::SecretMismatch)) => {
                secret_wrong_hint()
            }
            ("SignatureDoesNotMatch", Some(SignatureDiagnosis::Canonicalisation { differing })) => {
                format!(
                    "the request was canonicalised differently (a dbswatch bug or a proxy \
                     rewrote the request); the server saw different {}",
                    if differing.is_empty() {
                        "text".to_string()
                    } else {
                        differing.join(", ")
                    }
                )
            }
            ("SignatureDoesNotMatch", _) => format!(
                "either the AccessKey secret is wrong for this AccessKey id or a proxy rewrote \
                 the request; {}",
                secret_check()
            ),
            ("SignatureNonceUsed", _) => "the gateway saw this request twice; dbswatch uses a \
                fresh nonce for every attempt, so look for a proxy that replays requests"
                .to_string(),
            _ => "the request signature is malformed: a dbswatch bug or a proxy rewrote the \
                request; please report it"
                .to_string(),
        },
        ErrorKind::Credentials => {
            if code.starts_with("InvalidSecurityToken") || code == "MissingSecurityToken" {
                "the STS security token is expired or does not belong to this AccessKey; fetch \
                 fresh STS credentials (ALIBABA_CLOUD_SECURITY_TOKEN together with its AccessKey \
                 id and secret)"
                    .to_string()
            } else if code == "Forbidden.AccessKeyDisabled" {
                "the AccessKey is disabled; enable it in the RAM console or configure an \
                 active one"
                    .to_string()
            } else if code == "InvalidAccessKeySecret" {
                secret_wrong_hint()
            } else {
                "check ALIBABA_CLOUD_ACCESS_KEY_ID: DBS does not know this AccessKey id (a \
                 typo, a deleted key, or a key of another account)"
                    .to_string()
            }
        }
        ErrorKind::Permission => format!(
            "grant dbs:{} to the RAM user or role that owns this AccessKey",
            if e.action.is_empty() {
                super::ACTION
            } else {
                e.action.as_str()
            }
        ),
        ErrorKind::ClockSkew => "the machine clock is more than 15 minutes off; sync it with \
            NTP (for example chrony or `timedatectl set-ntp true`)"
            .to_string(),
        _ => match code {
            "InvalidParameterValid" | "InvalidParameter" | "Param.NotFound" | "InvalidJobId" => {
                "check the backup plan or restore task id and the region: DBS does not know \
                 this id at this endpoint"
                    .to_string()
            }
            "MissingParameter"
            | "IllegalTimestamp"
            | "InvalidTimeStamp.Format"
            | "InvalidAction.NotFound"
            | "InvalidVersion"
            | "InvalidParameter.Format" => "DBS did not accept the request format; check the \
                endpoint setting, and if it is right this is a dbswatch bug, please report it"
                .to_string(),
            _ => match &e.recommend {
                Some(link) => format!("look the code up at {link}"),
                None => "look the code up in the Alibaba Cloud error center, and quote the \
                    RequestId to support if it persists"
                    .to_string(),
            },
        },
    }
}

fn secret_check() -> &'static str {
    "check ALIBABA_CLOUD_ACCESS_KEY_SECRET (copy it again from the RAM console; a stray space or \
     newline is enough to break it)"
}

fn secret_wrong_hint() -> String {
    format!(
        "the AccessKey secret is wrong for this AccessKey id; {}",
        secret_check()
    )
}

fn bad_response_hint(status: u16, problem: BodyProblem) -> String {
    match (status, problem) {
        (500.., _) => format!(
            "a proxy or the DBS gateway failed with HTTP {status}; dbswatch retries on its own, \
             and if it persists check the endpoint setting and any HTTP proxy"
        ),
        (_, BodyProblem::Redirect) => "set the endpoint to the final URL, usually \
            https://dbs-api.<region>.aliyuncs.com"
            .to_string(),
        (400..=499, _) => "the endpoint does not look like the DBS API; check the endpoint \
            setting and any HTTP proxy"
            .to_string(),
        _ => "the reply does not look like a DescribePreCheckProgressList answer; check the \
            endpoint setting, and if it is right the next poll will try again (report it if it \
            persists)"
            .to_string(),
    }
}

/// The first [`SNIPPET_MAX_CHARS`] characters of a body, whitespace collapsed so it fits on one
/// line, with `SecurityToken` and `Signature` values masked in case a proxy echoed the URL.
pub fn snippet(body: &str) -> String {
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let scrubbed = scrub_query_values(&collapsed);
    let mut out: String = scrubbed.chars().take(SNIPPET_MAX_CHARS).collect();
    if scrubbed.chars().count() > SNIPPET_MAX_CHARS {
        out.push('…');
    }
    out
}

/// Masks the value that follows `SecurityToken=` or `Signature=` (plain or percent-encoded `=`).
fn scrub_query_values(text: &str) -> String {
    let mut out = text.to_string();
    for name in ["SecurityToken", "Signature"] {
        for sep in ["=", "%3D", "%253D"] {
            let needle = format!("{name}{sep}");
            let mut from = 0;
            while let Some(pos) = out[from..].find(&needle) {
                let start = from + pos + needle.len();
                let end = out[start..]
                    .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
                    .map_or(out.len(), |i| start + i);
                out.replace_range(start..end, "***");
                from = start + 3;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> ServiceError {
        ServiceError {
            kind: classify(code, status),
            status,
            code: code.to_string(),
            message: "msg.".to_string(),
            request_id: Some("RID-1".to_string()),
            host_id: None,
            recommend: None,
            retry_after: None,
            signature: None,
            action: crate::dbs::ACTION.to_string(),
        }
    }

    #[test]
    fn errors_cross_task_boundaries() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<DbsError>();
        assert_send_sync::<ServiceError>();
    }

    #[test]
    fn classification_table() {
        for (code, status, kind) in [
            ("Throttling", 400, ErrorKind::Throttled),
            ("Throttling.User", 400, ErrorKind::Throttled),
            ("Throttling.Api", 400, ErrorKind::Throttled),
            ("ServiceUnavailable", 503, ErrorKind::Server),
            ("InternalError", 500, ErrorKind::Server),
            ("UnknownError", 500, ErrorKind::Server),
            ("SomethingNew", 502, ErrorKind::Server),
            ("", 429, ErrorKind::Throttled),
            ("SignatureDoesNotMatch", 400, ErrorKind::Signature),
            ("IncompleteSignature", 400, ErrorKind::Signature),
            ("SignatureNonceUsed", 400, ErrorKind::Signature),
            ("InvalidAccessKeyId.NotFound", 404, ErrorKind::Credentials),
            ("Forbidden.AccessKeyDisabled", 403, ErrorKind::Credentials),
            ("InvalidSecurityToken.Expired", 403, ErrorKind::Credentials),
            ("InvalidTimeStamp.Expired", 400, ErrorKind::ClockSkew),
            ("Request.Forbidden", 403, ErrorKind::Permission),
            ("Forbidden.RAM", 403, ErrorKind::Permission),
            ("InvalidParameterValid", 200, ErrorKind::Api),
            ("MissingParameter", 400, ErrorKind::Api),
        ] {
            assert_eq!(classify(code, status), kind, "{code} {status}");
        }
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        let retryable: Vec<_> = [
            ErrorKind::Throttled,
            ErrorKind::Server,
            ErrorKind::Signature,
            ErrorKind::Credentials,
            ErrorKind::Permission,
            ErrorKind::ClockSkew,
            ErrorKind::BadResponse,
            ErrorKind::Network,
            ErrorKind::Timeout,
            ErrorKind::Api,
            ErrorKind::Config,
            ErrorKind::CredentialSource,
        ]
        .into_iter()
        .filter(|k| k.is_retryable())
        .collect();
        assert_eq!(
            retryable,
            vec![
                ErrorKind::Throttled,
                ErrorKind::Server,
                ErrorKind::Network,
                ErrorKind::Timeout
            ]
        );
    }

    #[test]
    fn hints_name_the_next_step() {
        for (code, status, needle) in [
            (
                "InvalidAccessKeyId.NotFound",
                404,
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
            ),
            ("Request.Forbidden", 403, "dbs:DescribePreCheckProgressList"),
            ("Forbidden.RAM", 403, "dbs:DescribePreCheckProgressList"),
            ("InvalidTimeStamp.Expired", 400, "more than 15 minutes off"),
            ("InvalidTimeStamp.Expired", 400, "NTP"),
            ("Throttling.User", 400, "slower schedule"),
            ("InvalidSecurityToken.Expired", 403, "STS"),
            (
                "InvalidParameterValid",
                200,
                "backup plan or restore task id",
            ),
        ] {
            let err = DbsError::Gateway(Box::new(service(code, status)));
            assert!(err.hint().contains(needle), "{code}: {}", err.hint());
            assert!(err.to_string().contains(needle), "{code}: {err}");
        }
    }

    #[test]
    fn signature_hints_follow_the_diagnosis() {
        let mut e = service("SignatureDoesNotMatch", 400);
        e.signature = Some(SignatureDiagnosis::SecretMismatch);
        let err = DbsError::Gateway(Box::new(e.clone()));
        assert!(
            err.hint()
                .contains("the AccessKey secret is wrong for this AccessKey id")
        );
        e.signature = Some(SignatureDiagnosis::Canonicalisation {
            differing: vec!["Timestamp".into()],
        });
        let err = DbsError::Gateway(Box::new(e));
        assert!(
            err.hint()
                .contains("the request was canonicalised differently"),
            "{}",
            err.hint()
        );
        assert!(err.hint().contains("Timestamp"));
    }

    #[test]
    fn display_is_one_sentence_with_code_status_request_id_and_hint() {
        let err = DbsError::Gateway(Box::new(service("InvalidTimeStamp.Expired", 400)));
        assert_eq!(
            err.to_string(),
            "DBS rejected the request time: InvalidTimeStamp.Expired: msg (HTTP 400, RequestId \
             RID-1); the machine clock is more than 15 minutes off; sync it with NTP (for \
             example chrony or `timedatectl set-ntp true`)"
        );
    }

    #[test]
    fn bad_response_of_a_5xx_is_a_retryable_server_error() {
        let err = DbsError::BadResponse {
            status: 502,
            problem: BodyProblem::NotJson,
            snippet: snippet("<html>\n<head><title>502</title>"),
            retry_after: None,
        };
        assert_eq!(err.kind(), ErrorKind::Server);
        assert!(err.is_retryable());
        assert!(err.to_string().contains("HTTP 502"), "{err}");
        assert!(
            err.to_string()
                .contains("\"<html> <head><title>502</title>\"")
        );
        let err = DbsError::BadResponse {
            status: 200,
            problem: BodyProblem::Truncated,
            snippet: String::new(),
            retry_after: None,
        };
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert!(!err.is_retryable());
    }

    #[test]
    fn snippet_is_short_single_line_and_scrubbed() {
        let long = "x".repeat(500);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_MAX_CHARS + 1);
        let s = snippet("GET /?SecurityToken=CAIS%2Fabc&Signature=abc%3D&x=1 HTTP/1.1");
        assert_eq!(s, "GET /?SecurityToken=***&Signature=***&x=1 HTTP/1.1");
        let s = snippet("x SecurityToken%3DCAIS%252Fabc%26y");
        assert!(!s.contains("CAIS"), "{s}");
    }

    #[test]
    fn error_chain_joins_sources_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&e), "error sending request: connection refused");
    }
}
