//! Generic JSON webhooks, signed with Standard Webhooks (v1, HMAC-SHA256) when a secret is set.
//!
//! The signature covers `{webhook-id}.{webhook-timestamp}.{body}` over the exact bytes sent, so
//! the body is never re-serialised after signing. `webhook-id` is the delivery id and stays the
//! same on every retry (the receiver's idempotency key); the timestamp is fresh per attempt.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

use super::http::{Reply, snippet};
use super::{Error, Verdict};
use crate::secret::display_url;

/// How far a `webhook-timestamp` may be from the verifier's clock, either way, as in the
/// reference libraries: old enough to reject replays, loose enough for ordinary clock skew.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Secrets are shown to users with or without `=` padding; both decode to the same key.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded Standard Webhooks signing key. Parsed once so a bad secret is reported as a
/// configuration problem, not discovered per request.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Decode `whsec_<base64>` (the prefix is optional). Errors name the problem, never the
    /// secret.
    pub fn parse(secret: &str) -> Result<WebhookSecret, Error> {
        let trimmed = secret.trim();
        let encoded = trimmed.strip_prefix("whsec_").unwrap_or(trimmed);
        if encoded.is_empty() {
            return Err(Error::InvalidWebhookSecret {
                detail: "it is empty".into(),
            });
        }
        let key = LENIENT
            .decode(encoded)
            .map_err(|e| Error::InvalidWebhookSecret {
                detail: describe_decode_error(&e),
            })?;
        Ok(WebhookSecret { key })
    }

    /// The `webhook-signature` header value for one attempt: `v1,` + base64(HMAC-SHA256).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(msg_id, &timestamp.to_string(), body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// True when the timestamp is within [`TOLERANCE`] of `now` (Unix seconds) and any of the
    /// space-separated `v1,` signatures matches. Compares in constant time.
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> bool {
        let Ok(ts) = timestamp.trim().parse::<i64>() else {
            return false;
        };
        if ts.abs_diff(now) > TOLERANCE.as_secs() {
            return false;
        }
        let mac = self.mac(msg_id, timestamp.trim(), body);
        signatures.split(' ').any(|candidate| {
            candidate
                .strip_prefix("v1,")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .is_some_and(|sig| mac.clone().verify_slice(&sig).is_ok())
        })
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Verify one delivery from its parts; for receivers (the demo sink) and tests. A secret that
/// does not decode verifies nothing.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> bool {
    WebhookSecret::parse(secret).is_ok_and(|s| s.verify(msg_id, timestamp, signatures, body, now))
}

/// Verify one delivery from its `webhook-id`, `webhook-timestamp` and `webhook-signature`
/// headers. Missing headers fail.
pub fn verify_headers(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) {
        (Some(id), Some(ts), Some(sig)) => verify(secret, id, ts, sig, body, now),
        _ => false,
    }
}

fn describe_decode_error(err: &base64::DecodeError) -> String {
    match err {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("character {} is not a base64 character", offset + 1)
        }
        base64::DecodeError::InvalidLength(_) => "its length is not possible for base64".into(),
        base64::DecodeError::InvalidLastSymbol(_, _) => {
            "its last character is not valid here".into()
        }
        base64::DecodeError::InvalidPadding => "its `=` padding is wrong".into(),
    }
}

/// Read the receiver's answer, following the Standard Webhooks delivery guidance.
pub(crate) fn classify(reply: &Reply) -> Verdict {
    let status = reply.status;
    match status {
        200..=299 => Verdict::delivered(),
        300..=399 => {
            let to = reply
                .location
                .as_deref()
                .map(|l| format!(" to {}", display_url(l)))
                .unwrap_or_default();
            Verdict::permanent(format!(
                "the receiver answered with a redirect (HTTP {status}{to}), which is not followed so a signed body never goes elsewhere; put the final URL in the channel's `url`"
            ))
        }
        408 | 429 | 500..=599 => Verdict::retryable(format!(
            "the receiver answered HTTP {status} with {}; it is busy or failing, the message will be retried",
            snippet(&reply.body)
        )),
        410 => Verdict::permanent(
            "the receiver says the endpoint is gone (HTTP 410); remove the channel or update its `url`"
                .to_string(),
        ),
        400..=499 => Verdict::permanent(format!(
            "the receiver refused the message with HTTP {status} and {}; check the channel's `url`, its `secret` and the body the receiver expects",
            snippet(&reply.body)
        )),
        _ => Verdict::permanent(format!(
            "the receiver answered with the unexpected HTTP status {status} and {}",
            snippet(&reply.body)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Outcome::{self, *};
    use super::*;

    const S1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const S1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const S1_TS: i64 = 1614265330;
    const S1_BODY: &str = r#"{"test": 2432232314}"#;
    const S1_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn s1() -> WebhookSecret {
        WebhookSecret::parse(S1_SECRET).unwrap()
    }

    #[test]
    fn vector_s1() {
        assert_eq!(s1().sign(S1_ID, S1_TS, S1_BODY.as_bytes()), S1_SIG);
        assert!(verify(
            S1_SECRET,
            S1_ID,
            "1614265330",
            S1_SIG,
            S1_BODY.as_bytes(),
            S1_TS
        ));
    }

    #[test]
    fn vector_s2() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = r#"{"email":"test@example.com","username":"test_user"}"#;
        let sig = WebhookSecret::parse(secret).unwrap().sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body.as_bytes(),
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert!(verify(
            secret,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "1649367553",
            &sig,
            body.as_bytes(),
            1649367553
        ));
    }

    #[test]
    fn vector_s3_multibyte_body() {
        let body = r#"{"msg":"告警 ✓"}"#;
        assert_eq!(body.len(), 20);
        assert_eq!(
            s1().sign(S1_ID, S1_TS, body.as_bytes()),
            "v1,QxaaXzP5Pbh+J2mOHm1Hdp31K8gigRVLikrG0wedIvw="
        );
    }

    #[test]
    fn the_negative_vector_fails() {
        let bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert!(!verify(
            S1_SECRET,
            S1_ID,
            "1614265330",
            bad,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        // Any change to the signed parts fails too.
        assert!(!verify(
            S1_SECRET,
            "msg_other",
            "1614265330",
            S1_SIG,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        assert!(!verify(
            S1_SECRET,
            S1_ID,
            "1614265331",
            S1_SIG,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        assert!(!verify(
            S1_SECRET,
            S1_ID,
            "1614265330",
            S1_SIG,
            br#"{"test":2432232314}"#,
            S1_TS
        ));
    }

    #[test]
    fn several_signatures_with_junk_are_accepted_when_one_matches() {
        let header = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= junk v1,!!! {S1_SIG}"
        );
        assert!(verify(
            S1_SECRET,
            S1_ID,
            "1614265330",
            &header,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        let only_junk = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        assert!(!verify(
            S1_SECRET,
            S1_ID,
            "1614265330",
            only_junk,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        // A v1 signature must carry the v1 prefix to count.
        let unprefixed = S1_SIG.trim_start_matches("v1,");
        assert!(!verify(
            S1_SECRET,
            S1_ID,
            "1614265330",
            unprefixed,
            S1_BODY.as_bytes(),
            S1_TS
        ));
    }

    #[test]
    fn the_whsec_prefix_is_optional() {
        let bare = S1_SECRET.trim_start_matches("whsec_");
        assert_eq!(
            WebhookSecret::parse(bare)
                .unwrap()
                .sign(S1_ID, S1_TS, S1_BODY.as_bytes()),
            S1_SIG
        );
        assert!(verify(
            bare,
            S1_ID,
            "1614265330",
            S1_SIG,
            S1_BODY.as_bytes(),
            S1_TS
        ));
    }

    #[test]
    fn timestamps_outside_five_minutes_fail_both_ways() {
        let body = S1_BODY.as_bytes();
        for (now, ok) in [
            (S1_TS + 300, true),
            (S1_TS - 300, true),
            (S1_TS + 301, false),
            (S1_TS - 301, false),
            (S1_TS + 3600, false),
        ] {
            assert_eq!(
                verify(S1_SECRET, S1_ID, "1614265330", S1_SIG, body, now),
                ok,
                "now = ts {:+}",
                now - S1_TS
            );
        }
        assert!(!verify(
            S1_SECRET,
            S1_ID,
            "not-a-number",
            S1_SIG,
            body,
            S1_TS
        ));
    }

    #[test]
    fn bad_secrets_are_explained_without_being_shown() {
        for (secret, reason) in [
            ("whsec_", "it is empty"),
            ("whsec_abc$defgh", "character 4 is not a base64 character"),
            ("whsec_a", "its length is not possible for base64"),
        ] {
            let err = WebhookSecret::parse(secret).unwrap_err().to_string();
            assert!(
                err.starts_with("the webhook secret is not valid base64"),
                "{err}"
            );
            assert!(err.contains(reason), "{secret}: {err}");
        }
        assert!(!verify(
            "whsec_!!",
            S1_ID,
            "1614265330",
            S1_SIG,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        assert_eq!(format!("{:?}", s1()), "WebhookSecret(***)");
    }

    #[test]
    fn padding_is_optional() {
        // "dGVzdA==" and "dGVzdA" are the same key.
        let a = WebhookSecret::parse("whsec_dGVzdA==")
            .unwrap()
            .sign("id", 1, b"{}");
        let b = WebhookSecret::parse("whsec_dGVzdA")
            .unwrap()
            .sign("id", 1, b"{}");
        assert_eq!(a, b);
    }

    #[test]
    fn headers_verify_together() {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", S1_ID.parse().unwrap());
        headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
        assert!(!verify_headers(
            S1_SECRET,
            &headers,
            S1_BODY.as_bytes(),
            S1_TS
        ));
        headers.insert("webhook-signature", S1_SIG.parse().unwrap());
        assert!(verify_headers(
            S1_SECRET,
            &headers,
            S1_BODY.as_bytes(),
            S1_TS
        ));
    }

    fn reply(status: u16, location: Option<&str>) -> Reply {
        Reply {
            status,
            retry_after: None,
            location: location.map(String::from),
            body: b"nope".to_vec(),
        }
    }

    #[test]
    fn statuses_decide_the_outcome() {
        let cases: &[(u16, Outcome)] = &[
            (200, Delivered),
            (202, Delivered),
            (204, Delivered),
            (301, Permanent),
            (302, Permanent),
            (307, Permanent),
            (400, Permanent),
            (401, Permanent),
            (404, Permanent),
            (408, Retryable),
            (410, Permanent),
            (413, Permanent),
            (429, Retryable),
            (500, Retryable),
            (502, Retryable),
            (504, Retryable),
        ];
        for (status, outcome) in cases {
            let v = classify(&reply(*status, None));
            assert_eq!(v.outcome, *outcome, "{status}: {}", v.error);
            assert_eq!(v.vendor_code, None);
        }
        let v = classify(&reply(410, None));
        assert!(
            v.error
                .starts_with("the receiver says the endpoint is gone"),
            "{}",
            v.error
        );
        let v = classify(&reply(
            302,
            Some("https://elsewhere.example/path?token=abcdefgh"),
        ));
        assert!(
            v.error.contains("to https://elsewhere.example/…"),
            "{}",
            v.error
        );
        assert!(!v.error.contains("abcdefgh"), "{}", v.error);
    }
}
