//! Shared by the integration tests: an RPC signature V1 check written here from the reference
//! algorithm (dbs-api.md §4.2), independent of `dbswatch::dbs::sign`, so a bug there cannot hide
//! itself in tests; and a wiremock responder that refuses any request whose signature fails it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use wiremock::{Request, Respond, ResponseTemplate};

/// RFC 3986 encoding as the gateway does it: unreserved characters stay, every other byte is
/// `%XY` in uppercase hex.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Form decoding of one query component (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The decoded query parameters; panics when a name appears twice.
pub fn params(query: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        assert!(
            map.insert(decode(k), decode(v)).is_none(),
            "parameter {k} sent twice"
        );
    }
    map
}

/// The signature the gateway expects for `method` and these parameters (without `Signature`).
pub fn expected_signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let canonical: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let string_to_sign = format!("{method}&{}&{}", encode("/"), encode(&canonical.join("&")));
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Why a request's signature is not right, or `None` when it is.
pub fn signature_problem(request: &Request, secret: &str) -> Option<String> {
    let params = params(request.url.query().unwrap_or(""));
    let Some(sent) = params.get("Signature") else {
        return Some("no Signature parameter".into());
    };
    for required in [
        "AccessKeyId",
        "Action",
        "Format",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
    ] {
        if !params.contains_key(required) {
            return Some(format!("no {required}"));
        }
    }
    let expected = expected_signature(request.method.as_str(), &params, secret);
    (sent != &expected).then(|| format!("Signature {sent} is not the expected {expected}"))
}

/// What a mock answers for a request's decoded parameters.
type Answer = dyn Fn(&BTreeMap<String, String>) -> ResponseTemplate + Send + Sync;

/// A wiremock responder for DBS actions: checks every request's signature with the secret of
/// its `AccessKeyId`, answers a gateway `SignatureDoesNotMatch` when it fails, and otherwise
/// returns what `answer` gives for the decoded parameters. Records every request's parameters.
#[derive(Clone)]
pub struct SignedDbs {
    secrets: Arc<Vec<(String, String)>>,
    answer: Arc<Answer>,
    /// Parameters of every request, in arrival order.
    pub seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    /// Requests whose signature failed.
    pub rejected: Arc<AtomicUsize>,
}

impl SignedDbs {
    /// A responder that knows these (AccessKeyId, secret) pairs.
    pub fn new(
        secrets: &[(&str, &str)],
        answer: impl Fn(&BTreeMap<String, String>) -> ResponseTemplate + Send + Sync + 'static,
    ) -> SignedDbs {
        SignedDbs {
            secrets: Arc::new(
                secrets
                    .iter()
                    .map(|(k, s)| (k.to_string(), s.to_string()))
                    .collect(),
            ),
            answer: Arc::new(answer),
            seen: Arc::new(Mutex::new(Vec::new())),
            rejected: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Requests whose signature failed.
    pub fn rejected(&self) -> usize {
        self.rejected.load(Ordering::SeqCst)
    }

    /// The parameters of every request so far.
    pub fn seen(&self) -> Vec<BTreeMap<String, String>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Respond for SignedDbs {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let params = params(request.url.query().unwrap_or(""));
        self.seen.lock().unwrap().push(params.clone());
        let id = params.get("AccessKeyId").cloned().unwrap_or_default();
        let Some((_, secret)) = self.secrets.iter().find(|(k, _)| *k == id) else {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(404).set_body_json(serde_json::json!({
                "RequestId": "T-404", "Code": "InvalidAccessKeyId.NotFound",
                "Message": "Specified access key is not found."
            }));
        };
        if let Some(problem) = signature_problem(request, secret) {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "RequestId": "T-400", "Code": "SignatureDoesNotMatch",
                "Message": format!("Specified signature is not matched with our calculation. ({problem})")
            }));
        }
        (self.answer)(&params)
    }
}

/// The reference vector V10 (POST), to prove the check above is the gateway's algorithm.
pub fn check_reference_vector() {
    let params: BTreeMap<String, String> = [
        ("AccessKeyId", "testid"),
        ("Action", "DescribePreCheckProgressList"),
        ("BackupPlanId", "dbstooi01XXXX"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Version", "2019-03-06"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        expected_signature("POST", &params, "testsecret"),
        "M8GC72Wx2FMkqsKZDQ8bedrT+04="
    );
    let mut with_token = params.clone();
    with_token.insert("SecurityToken".into(), "CAIS/sts+token==".into());
    assert_eq!(
        expected_signature("GET", &with_token, "testsecret"),
        "kxflkAFZo/vSHQeUrQM5HJkDrP4="
    );
}
