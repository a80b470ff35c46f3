//! From an HTTP reply to a [`Snapshot`] or a classified [`DbsError`].
//!
//! DBS replies are loosely typed: fields go missing, `OrderNum` is a string that may one day be a
//! number, new states appear, and error bodies come in two families (the gateway's
//! `Code`/`Message` and DBS's own `Success:false` with `ErrCode`/`ErrMessage`). The parser reads
//! JSON values by hand so that none of that fails parsing, yet it refuses to turn anything that
//! is not an answer into a state: a body without `Status` and `Items` is an error, never an empty
//! snapshot that would tell the diff engine that every item disappeared.

use std::time::Duration;

use serde_json::{Map, Value};

use super::ACTION;
use super::error::{BodyProblem, DbsError, ServiceError, SignatureDiagnosis, classify, snippet};
use super::sign::differing_params;
use crate::snapshot::{Item, Snapshot};

/// The marker after which the gateway quotes its string to sign in `SignatureDoesNotMatch`.
pub const SERVER_STRING_TO_SIGN_MARKER: &str = "server string to sign is:";

/// A reply that parsed as an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The normalised content.
    pub snapshot: Snapshot,
    /// `RequestId`, when present.
    pub request_id: Option<String>,
}

/// What came back for one attempt, plus what is needed to diagnose it.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// HTTP status.
    pub status: u16,
    /// The body as received.
    pub body: &'a str,
    /// The `x-acs-retry-after` header, already converted from milliseconds.
    pub retry_after: Option<Duration>,
    /// The string we signed for this attempt, to compare with a `SignatureDoesNotMatch` quote.
    pub signed: Option<&'a str>,
    /// The action that was called, so a permission error names the RAM action to grant.
    pub action: &'a str,
}

impl<'a> Reply<'a> {
    /// A reply with no header and nothing signed: enough for stored bodies and tests.
    pub fn new(status: u16, body: &'a str) -> Reply<'a> {
        Reply {
            status,
            body,
            retry_after: None,
            signed: None,
            action: ACTION,
        }
    }
}

/// Turns a reply into a snapshot or the error it describes.
///
/// Order of decisions: unparsable JSON is a bad response; `Success: false` is a DBS error
/// whatever the HTTP status (and `Success: true` with an `ErrCode`, as in the official demo, is
/// not); an HTTP error status is a gateway error; a success needs `Status` or `Items`.
pub fn interpret(reply: Reply<'_>) -> Result<Parsed, DbsError> {
    let obj = envelope(reply, &["Status", "Items"])?;
    Ok(Parsed {
        snapshot: snapshot_from(&obj),
        request_id: text(obj.get("RequestId")),
    })
}

/// The error decisions of [`interpret`] for any action: the reply's JSON object when it is an
/// answer, that is, when it is not an error and has at least one of `answer_keys`.
pub fn envelope(reply: Reply<'_>, answer_keys: &[&str]) -> Result<Map<String, Value>, DbsError> {
    let Reply {
        status,
        body,
        retry_after,
        signed,
        action,
    } = reply;
    let bad = |problem| DbsError::BadResponse {
        status,
        problem,
        snippet: snippet(body),
        retry_after,
    };
    if (300..400).contains(&status) {
        return Err(bad(BodyProblem::Redirect));
    }
    let value: Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(e) if e.is_eof() && body.trim_start().starts_with(['{', '[']) => {
            return Err(bad(BodyProblem::Truncated));
        }
        Err(_) => return Err(bad(BodyProblem::NotJson)),
    };
    let Some(obj) = value.as_object() else {
        return Err(bad(BodyProblem::NotAnObject));
    };
    let service_error = |obj, status, retry_after, signed| {
        let mut e = service_error(obj, status, retry_after, signed);
        e.action = action.to_string();
        e
    };

    if success_flag(obj) == Some(false) {
        return Err(DbsError::Rejected(Box::new(service_error(
            obj,
            status,
            retry_after,
            signed,
        ))));
    }
    let has_code = non_empty_str(obj, "Code").is_some();
    let has_err_code = non_empty_str(obj, "ErrCode").is_some();
    let service = || Box::new(service_error(obj, status, retry_after, signed));
    if status >= 400 {
        if has_code || (!has_err_code && obj.contains_key("Message")) {
            return Err(DbsError::Gateway(service()));
        }
        if has_err_code {
            return Err(DbsError::Rejected(service()));
        }
        return Err(bad(BodyProblem::UnknownShape));
    }
    let has_answer = answer_keys.iter().any(|k| obj.contains_key(*k));
    if !has_answer {
        // An error shape on a 2xx must never become an empty state.
        if has_code {
            return Err(DbsError::Gateway(service()));
        }
        if has_err_code {
            return Err(DbsError::Rejected(service()));
        }
        return Err(bad(BodyProblem::UnknownShape));
    }
    Ok(obj.clone())
}

/// `Success` as a boolean, also accepting the strings `"true"`/`"false"`.
fn success_flag(obj: &Map<String, Value>) -> Option<bool> {
    match obj.get("Success")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        _ => None,
    }
}

fn non_empty_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn service_error(
    obj: &Map<String, Value>,
    status: u16,
    retry_after: Option<Duration>,
    signed: Option<&str>,
) -> ServiceError {
    let code = text(obj.get("Code"))
        .filter(|c| !c.trim().is_empty())
        .or_else(|| text(obj.get("ErrCode")))
        .unwrap_or_default()
        .trim()
        .to_string();
    let raw_message = text(obj.get("Message"))
        .filter(|m| !m.trim().is_empty())
        .or_else(|| text(obj.get("ErrMessage")))
        .unwrap_or_default();
    let (message, server_sts) = match raw_message.split_once(SERVER_STRING_TO_SIGN_MARKER) {
        Some((before, quoted)) => (before.trim().to_string(), Some(quoted.trim().to_string())),
        None => (raw_message.trim().to_string(), None),
    };
    let signature = (code == "SignatureDoesNotMatch").then(|| match (signed, server_sts) {
        (Some(ours), Some(theirs)) if ours == theirs => SignatureDiagnosis::SecretMismatch,
        (Some(ours), Some(theirs)) => SignatureDiagnosis::Canonicalisation {
            differing: differing_params(ours, &theirs),
        },
        _ => SignatureDiagnosis::Unknown,
    });
    ServiceError {
        kind: classify(&code, status),
        status,
        code,
        message,
        request_id: text(obj.get("RequestId")),
        host_id: text(obj.get("HostId")),
        recommend: text(obj.get("Recommend")),
        retry_after,
        signature,
        action: ACTION.to_string(),
    }
}

fn snapshot_from(obj: &Map<String, Value>) -> Snapshot {
    let items = details(obj.get("Items"))
        .into_iter()
        .filter_map(Value::as_object)
        .map(|item| Item {
            job_id: text(item.get("JobId")),
            code: text(item.get("Item")),
            group: text(item.get("Names")),
            order: text(item.get("OrderNum")),
            state: text(item.get("State")),
            error: text(item.get("ErrMsg")),
            boot_time: integer(item.get("BootTime")),
            finish_time: integer(item.get("FinishTime")),
        })
        .collect();
    Snapshot::new(text(obj.get("Status")), integer(obj.get("Progress")), items)
}

/// The item array: `Items.PreCheckProgressDetail[]`, tolerating a single object where the array
/// should be (XML-to-JSON converters do that) and a bare array under `Items`.
fn details(items: Option<&Value>) -> Vec<&Value> {
    match items {
        Some(Value::Object(wrapper)) => match wrapper.get("PreCheckProgressDetail") {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(single @ Value::Object(_)) => vec![single],
            _ => Vec::new(),
        },
        Some(Value::Array(list)) => list.iter().collect(),
        _ => Vec::new(),
    }
}

/// A string field; numbers and booleans are kept as their text so a type change upstream does
/// not lose the value.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An integer field (epoch milliseconds, progress); numeric strings and floats are accepted,
/// anything else is treated as absent.
fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbs::error::ErrorKind;
    use crate::simulate::fixtures::fixture;

    fn ok(status: u16, body: &str) -> Parsed {
        interpret(Reply::new(status, body)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(status: u16, body: &str) -> DbsError {
        match interpret(Reply::new(status, body)) {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e,
        }
    }

    fn states(s: &Snapshot) -> Vec<(&str, &str)> {
        s.items
            .iter()
            .map(|i| {
                (
                    i.code.as_deref().unwrap_or(""),
                    i.state.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    #[test]
    fn precheck_fails_sequence() {
        let p1 = ok(200, fixture("precheck-fails/01.json").unwrap());
        assert_eq!(
            p1.request_id.as_deref(),
            Some("6E1F8A3C-2B7D-4C55-9A0E-3D4F5A6B7C01")
        );
        assert_eq!(p1.snapshot.status.as_deref(), Some("running"));
        assert_eq!(p1.snapshot.progress, Some(10));
        assert_eq!(
            states(&p1.snapshot),
            vec![
                ("CHECK_CONN_SRC", "running"),
                ("CHECK_BINLOG_ON", "init"),
                ("CHECK_MYSQL_PASSOWRD_FORMAT", "init")
            ]
        );
        let first = &p1.snapshot.items[0];
        assert_eq!(first.job_id.as_deref(), Some("qxwmxh2b1234"));
        assert_eq!(first.group.as_deref(), Some("CHECK_CONN_SRC_DETAIL"));
        assert_eq!(first.order.as_deref(), Some("10"));
        assert_eq!(first.boot_time, Some(1764720000000));
        assert_eq!(first.finish_time, None);
        assert_eq!(p1.snapshot.items[1].boot_time, None);

        let p2 = ok(200, fixture("precheck-fails/02.json").unwrap());
        assert_eq!(p2.snapshot.progress, Some(40));
        assert_eq!(p2.snapshot.items[0].finish_time, Some(1764720001000));
        let p3 = ok(200, fixture("precheck-fails/03.json").unwrap());
        assert_eq!(p2.snapshot, p3.snapshot, "only RequestId differs");
        assert_ne!(p2.request_id, p3.request_id);

        let p4 = ok(200, fixture("precheck-fails/04.json").unwrap());
        assert_eq!(p4.snapshot.status.as_deref(), Some("failed"));
        assert_eq!(p4.snapshot.progress, Some(100));
        assert_eq!(
            states(&p4.snapshot),
            vec![
                ("CHECK_CONN_SRC", "finish"),
                ("CHECK_BINLOG_ON", "warning"),
                ("CHECK_MYSQL_PASSOWRD_FORMAT", "failed")
            ]
        );
        assert_eq!(
            p4.snapshot.items[2].error.as_deref(),
            Some("password of user \"dbs\" contains unsupported characters: <&>")
        );
        assert_eq!(p4.snapshot.problem_items().len(), 2);
    }

    #[test]
    fn precheck_passes_sequence() {
        let p1 = ok(200, fixture("precheck-passes/01.json").unwrap());
        assert_eq!(p1.snapshot.status.as_deref(), Some("running"));
        assert_eq!(p1.snapshot.progress, Some(50));
        assert_eq!(p1.snapshot.items.len(), 2);
        let p2 = ok(200, fixture("precheck-passes/02.json").unwrap());
        assert_eq!(p2.snapshot.status.as_deref(), Some("finish"));
        assert_eq!(
            states(&p2.snapshot),
            vec![("CHECK_CONN_SRC", "finish"), ("CHECK_BINLOG_ON", "finish")]
        );
        assert!(p2.snapshot.problem_items().is_empty());
        assert_eq!(p2.snapshot.items[1].finish_time, Some(1764720001500));
    }

    #[test]
    fn restore_completes_sequence() {
        let parsed: Vec<Parsed> = ["01", "02", "03"]
            .iter()
            .map(|n| {
                ok(
                    200,
                    fixture(&format!("restore-completes/{n}.json")).unwrap(),
                )
            })
            .collect();
        let progress: Vec<_> = parsed.iter().map(|p| p.snapshot.progress).collect();
        assert_eq!(progress, vec![Some(20), Some(80), Some(100)]);
        assert_eq!(parsed[0].snapshot.items, parsed[1].snapshot.items);
        assert_eq!(parsed[2].snapshot.status.as_deref(), Some("finish"));
        assert_eq!(
            states(&parsed[2].snapshot),
            vec![
                ("RESTORE_PRECHECK", "finish"),
                ("FULL_DATA_RESTORE", "finish")
            ]
        );
    }

    #[test]
    fn official_demo_is_a_success_despite_its_err_code() {
        let p = ok(200, fixture("official-demo.json").unwrap());
        assert_eq!(
            p.request_id.as_deref(),
            Some("C4A45FE1-A903-470D-B113-F12A4DF942AB")
        );
        assert_eq!(p.snapshot.status.as_deref(), Some("finish"));
        assert_eq!(p.snapshot.progress, Some(100));
        assert_eq!(
            p.snapshot.items,
            vec![Item {
                job_id: Some("qxwmxh2b****".into()),
                code: Some("CHECK_BINLOG_ON".into()),
                group: Some("CHECK_BINLOG_ON_DETAIL".into()),
                order: Some("30".into()),
                state: Some("warning".into()),
                error: Some("java.lang.RuntimeException: Could not find any schema ......".into()),
                boot_time: Some(1704351395000),
                finish_time: Some(1704351396000),
            }]
        );
    }

    #[test]
    fn error_fixtures_with_their_http_status() {
        // (fixture, HTTP status from tests/fixtures/README.md, kind, code, request id)
        for (name, status, kind, code, request_id) in [
            (
                "errors/http400-signature-mismatch.json",
                400,
                ErrorKind::Signature,
                Some("SignatureDoesNotMatch"),
                Some("1DD9FD9A-8E57-43E5-B911-E4F5AD2027F7"),
            ),
            (
                "errors/http400-throttling-user.json",
                400,
                ErrorKind::Throttled,
                Some("Throttling.User"),
                Some("3C85E634-24F4-5242-89B9-4E9453FC6D2B"),
            ),
            (
                "errors/http400-timestamp-expired.json",
                400,
                ErrorKind::ClockSkew,
                Some("InvalidTimeStamp.Expired"),
                Some("F24B990A-69C7-5109-96B4-AC951C9E7E9F"),
            ),
            (
                "errors/http404-access-key-not-found.json",
                404,
                ErrorKind::Credentials,
                Some("InvalidAccessKeyId.NotFound"),
                Some("A1B2C3D4-0000-4000-8000-000000000404"),
            ),
            (
                "errors/http403-forbidden.json",
                403,
                ErrorKind::Permission,
                Some("Request.Forbidden"),
                Some("B1B2C3D4-0000-4000-8000-000000000403"),
            ),
            (
                "errors/http200-success-false.json",
                200,
                ErrorKind::Api,
                Some("InvalidParameterValid"),
                Some("9C397502-B4F2-4E22-AD97-C81F0049F3F3"),
            ),
            (
                "errors/http502-gateway.html",
                502,
                ErrorKind::Server,
                None,
                None,
            ),
            (
                "errors/http200-truncated.json",
                200,
                ErrorKind::BadResponse,
                None,
                None,
            ),
        ] {
            let e = err(status, fixture(name).unwrap());
            assert_eq!(e.kind(), kind, "{name}: {e}");
            assert_eq!(e.code(), code, "{name}");
            assert_eq!(e.request_id(), request_id, "{name}");
            assert_eq!(e.http_status(), Some(status), "{name}");
            assert!(!e.hint().is_empty(), "{name}");
        }
    }

    #[test]
    fn gateway_and_dbs_errors_are_told_apart() {
        let e = err(403, fixture("errors/http403-forbidden.json").unwrap());
        assert!(matches!(e, DbsError::Gateway(_)));
        assert_eq!(e.message(), Some("Have no Permissions"));
        let e = err(200, fixture("errors/http200-success-false.json").unwrap());
        assert!(matches!(e, DbsError::Rejected(_)));
        assert_eq!(
            e.message(),
            Some("The specified parameter %s value is not valid.")
        );
        // The same DBS body with an HTTP error status is still a DBS error.
        let e = err(400, fixture("errors/http200-success-false.json").unwrap());
        assert!(matches!(e, DbsError::Rejected(_)));
        assert_eq!(e.kind(), ErrorKind::Api);
    }

    #[test]
    fn gateway_details_are_kept() {
        let e = err(400, fixture("errors/http400-throttling-user.json").unwrap());
        let DbsError::Gateway(s) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            s.host_id.as_deref(),
            Some("dbs-api.cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(
            s.recommend.as_deref(),
            Some("https://api.aliyun.com/troubleshoot?q=Throttling.User&product=Dbs")
        );
        assert!(e.is_retryable());
        assert!(e.to_string().contains("slower schedule"), "{e}");
    }

    /// The string the fixture's server quotes: the V10 POST vector.
    const FIXTURE_STS: &str = "POST&%2F&AccessKeyId%3Dtestid%26Action%3DDescribePreCheckProgressList%26BackupPlanId%3Ddbstooi01XXXX%26Format%3DJSON%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2019-03-06";

    #[test]
    fn signature_mismatch_with_the_same_string_means_the_secret_is_wrong() {
        let body = fixture("errors/http400-signature-mismatch.json").unwrap();
        let e = interpret(Reply {
            signed: Some(FIXTURE_STS),
            ..Reply::new(400, body)
        })
        .unwrap_err();
        assert_eq!(
            e.signature_diagnosis(),
            Some(&SignatureDiagnosis::SecretMismatch)
        );
        let text = e.to_string();
        assert!(
            text.contains("the AccessKey secret is wrong for this AccessKey id"),
            "{text}"
        );
        assert!(!text.contains("server string to sign"), "{text}");
        assert!(!text.contains("AccessKeyId%3Dtestid"), "{text}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn signature_mismatch_with_another_string_means_canonicalisation() {
        let body = fixture("errors/http400-signature-mismatch.json").unwrap();
        let ours = FIXTURE_STS.replace(
            "2016-02-23T12%253A46%253A24Z",
            "2016-02-23T12%253A46%253A25Z",
        );
        let e = interpret(Reply {
            signed: Some(&ours),
            ..Reply::new(400, body)
        })
        .unwrap_err();
        assert_eq!(
            e.signature_diagnosis(),
            Some(&SignatureDiagnosis::Canonicalisation {
                differing: vec!["Timestamp".into()]
            })
        );
        assert!(
            e.hint()
                .contains("the request was canonicalised differently"),
            "{}",
            e.hint()
        );
        let e = err(400, body);
        assert_eq!(e.signature_diagnosis(), Some(&SignatureDiagnosis::Unknown));
    }

    #[test]
    fn html_and_truncated_bodies_quote_a_short_snippet() {
        let e = err(502, fixture("errors/http502-gateway.html").unwrap());
        assert!(matches!(
            e,
            DbsError::BadResponse {
                problem: BodyProblem::NotJson,
                ..
            }
        ));
        let text = e.to_string();
        assert!(text.contains("HTTP 502"), "{text}");
        assert!(text.contains("502 Bad Gateway"), "{text}");
        assert!(e.is_retryable());

        let body = fixture("errors/http200-truncated.json").unwrap();
        let e = err(200, body);
        let DbsError::BadResponse {
            problem, snippet, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*problem, BodyProblem::Truncated);
        assert!(snippet.chars().count() <= 201);
        assert!(snippet.starts_with("{\"RequestId\""));
        assert!(e.to_string().contains("HTTP 200"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn json_without_status_or_items_is_never_a_state() {
        for body in [
            r#"{"RequestId":"x","Success":true}"#,
            r#"{}"#,
            r#"{"Foo":1}"#,
        ] {
            let e = err(200, body);
            assert_eq!(e.kind(), ErrorKind::BadResponse, "{body}");
        }
        let e = err(200, r#"{"Code":"Throttling","Message":"slow down"}"#);
        assert_eq!(e.kind(), ErrorKind::Throttled);
        let e = err(
            200,
            r#"{"ErrCode":"InvalidParameterValid","ErrMessage":"bad"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Api);
        assert_eq!(err(200, "[1,2]").kind(), ErrorKind::BadResponse);
        assert_eq!(err(200, "").kind(), ErrorKind::BadResponse);
        assert_eq!(
            err(404, "<html>not found</html>").kind(),
            ErrorKind::BadResponse
        );
        assert_eq!(err(404, r#"{"x":1}"#).kind(), ErrorKind::BadResponse);
    }

    #[test]
    fn redirects_are_bad_responses() {
        let e = err(301, "");
        assert!(matches!(
            e,
            DbsError::BadResponse {
                problem: BodyProblem::Redirect,
                ..
            }
        ));
        assert!(e.hint().contains("endpoint"));
    }

    #[test]
    fn tolerant_field_types() {
        let body = r#"{
            "Status": "brand_new_status", "Progress": "55",
            "Items": {"PreCheckProgressDetail": [
                {"Item": "A", "OrderNum": 7, "BootTime": "1704351395000", "FinishTime": "",
                 "State": "quantum", "JobId": 12},
                {"Item": "B", "OrderNum": "8", "BootTime": 1.7e12, "FinishTime": null}
            ]}}"#;
        let p = ok(200, body);
        assert_eq!(p.snapshot.status.as_deref(), Some("brand_new_status"));
        assert_eq!(p.snapshot.progress, Some(55));
        assert_eq!(p.request_id, None);
        let a = &p.snapshot.items[0];
        assert_eq!(a.order.as_deref(), Some("7"));
        assert_eq!(a.boot_time, Some(1704351395000));
        assert_eq!(a.finish_time, None);
        assert_eq!(a.state.as_deref(), Some("quantum"));
        assert_eq!(a.job_id.as_deref(), Some("12"));
        assert_eq!(p.snapshot.items[1].boot_time, Some(1_700_000_000_000));
    }

    #[test]
    fn items_shapes_are_tolerated() {
        let single = ok(
            200,
            r#"{"Status":"running","Items":{"PreCheckProgressDetail":{"Item":"A"}}}"#,
        );
        assert_eq!(single.snapshot.items.len(), 1);
        let bare = ok(
            200,
            r#"{"Status":"running","Items":[{"Item":"A"},{"Item":"B"}]}"#,
        );
        assert_eq!(bare.snapshot.items.len(), 2);
        let empty = ok(200, r#"{"Status":"running","Items":{}}"#);
        assert!(empty.snapshot.items.is_empty());
        let items_only = ok(200, r#"{"Items":{"PreCheckProgressDetail":[]}}"#);
        assert_eq!(items_only.snapshot.status, None);
    }

    #[test]
    fn success_false_wins_over_status_and_string_flags_are_read() {
        let e = err(
            200,
            r#"{"Success":false,"Status":"running","ErrCode":"Request.Forbidden","ErrMessage":"no"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Permission);
        let e = err(200, r#"{"Success":"false","ErrCode":"X"}"#);
        assert!(matches!(e, DbsError::Rejected(_)));
        let e = err(200, r#"{"Success":false}"#);
        assert_eq!(e.code(), None);
        assert!(e.to_string().contains("no error code given"), "{e}");
    }

    #[test]
    fn retry_after_is_carried() {
        let e = interpret(Reply {
            retry_after: Some(Duration::from_millis(1500)),
            ..Reply::new(400, fixture("errors/http400-throttling-user.json").unwrap())
        })
        .unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
    }
}
