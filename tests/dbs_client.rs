//! The DBS client against wiremock on 127.0.0.1: the exact request on the wire, the signature as
//! the gateway would recompute it, error classification of every error fixture, and retries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeZone, Utc};
use dbswatch::dbs::client::Clock;
use dbswatch::dbs::error::BodyProblem;
use dbswatch::dbs::sign::{self, Verification};
use dbswatch::dbs::{
    ClientOptions, Credentials, DbsClient, DbsError, ErrorKind, SignatureDiagnosis,
};
use dbswatch::secret::Secret;
use dbswatch::simulate::fixtures::fixture;
use dbswatch::snapshot::Target;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "testsecret";

fn options(server: &MockServer, max_retries: u32) -> ClientOptions {
    ClientOptions {
        endpoint: server.uri(),
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries,
        retry_base: Duration::from_millis(5),
    }
}

fn client(server: &MockServer, max_retries: u32) -> DbsClient {
    DbsClient::new(
        Credentials::new("testid", SECRET),
        options(server, max_retries),
    )
    .unwrap()
}

fn plan() -> Target {
    Target::BackupPlan("dbstooi01XXXX".to_string())
}

fn reply(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(fixture(name).unwrap(), "application/json")
}

/// The query parameters of a received request, decoded, by name.
fn params_of(request: &Request) -> BTreeMap<String, String> {
    let pairs = sign::parse_query(request.url.query().unwrap_or(""));
    let map: BTreeMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(map.len(), pairs.len(), "no parameter is sent twice");
    map
}

/// Recomputes the signature from the received query the way the gateway does.
fn assert_signed(request: &Request, secret: &str) {
    let pairs = sign::parse_query(request.url.query().unwrap_or(""));
    let sent = params_of(request)["Signature"].clone();
    let unsigned: Vec<_> = pairs.iter().filter(|(k, _)| k != "Signature").collect();
    let unsigned: Vec<(&str, &str)> = unsigned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expected = sign::sign(secret, &sign::string_to_sign("POST", &unsigned));
    assert_eq!(
        sent, expected,
        "signature recomputed from the received query"
    );
    assert_eq!(
        sign::verify(request.method.as_str(), &pairs, secret),
        Verification::Valid
    );
}

#[tokio::test]
async fn sends_a_signed_post_with_every_parameter_in_the_query() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(reply(200, "precheck-fails/01.json"))
        .expect(1)
        .mount(&server)
        .await;

    let before = Utc::now();
    let response = client(&server, 0)
        .describe_precheck_progress(&plan())
        .await
        .unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/");
    assert!(request.body.is_empty(), "everything travels in the query");

    let params = params_of(request);
    let names: Vec<&str> = params.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "AccessKeyId",
            "Action",
            "BackupPlanId",
            "Format",
            "Signature",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "Timestamp",
            "Version"
        ]
    );
    assert_eq!(params["AccessKeyId"], "testid");
    assert_eq!(params["Action"], "DescribePreCheckProgressList");
    assert_eq!(params["BackupPlanId"], "dbstooi01XXXX");
    assert_eq!(params["Format"], "JSON");
    assert_eq!(params["SignatureMethod"], "HMAC-SHA1");
    assert_eq!(params["SignatureVersion"], "1.0");
    assert_eq!(params["Version"], "2019-03-06");
    let nonce = uuid::Uuid::parse_str(&params["SignatureNonce"]).unwrap();
    assert_eq!(nonce.get_version_num(), 4);
    let stamp = NaiveDateTime::parse_from_str(&params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        .unwrap()
        .and_utc();
    assert!(stamp.timestamp() >= before.timestamp() && stamp <= Utc::now());
    assert_signed(request, SECRET);

    // The wire query is exactly the canonical query plus the encoded signature.
    let unsigned: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        request.url.query().unwrap(),
        format!(
            "{}&Signature={}",
            sign::canonical_query(&unsigned),
            sign::percent_encode(&params["Signature"])
        )
    );

    assert_eq!(response.body, fixture("precheck-fails/01.json").unwrap());
    assert_eq!(
        response.request_id.as_deref(),
        Some("6E1F8A3C-2B7D-4C55-9A0E-3D4F5A6B7C01")
    );
    assert_eq!(response.snapshot.status.as_deref(), Some("running"));
    assert_eq!(response.snapshot.items.len(), 3);
}

#[tokio::test]
async fn restore_tasks_are_asked_by_restore_task_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "restore-completes/03.json"))
        .mount(&server)
        .await;
    let response = client(&server, 0)
        .describe_precheck_progress(&Target::RestoreTask("r1 task/é".into()))
        .await
        .unwrap();
    assert_eq!(response.snapshot.progress, Some(100));
    let requests = server.received_requests().await.unwrap();
    let params = params_of(&requests[0]);
    assert_eq!(params["RestoreTaskId"], "r1 task/é");
    assert!(!params.contains_key("BackupPlanId"));
    assert!(
        requests[0]
            .url
            .query()
            .unwrap()
            .contains("RestoreTaskId=r1%20task%2F%C3%A9&")
    );
    assert_signed(&requests[0], SECRET);
}

#[tokio::test]
async fn sts_token_is_sent_in_the_query_and_signed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/02.json"))
        .mount(&server)
        .await;
    let credentials = Credentials {
        security_token: Some(Secret::new("CAIS/sts+token==")),
        ..Credentials::new("STS.testid", SECRET)
    };
    DbsClient::new(credentials, options(&server, 0))
        .unwrap()
        .describe_precheck_progress(&plan())
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests[0]
            .url
            .query()
            .unwrap()
            .contains("&SecurityToken=CAIS%2Fsts%2Btoken%3D%3D&")
    );
    assert_eq!(params_of(&requests[0])["SecurityToken"], "CAIS/sts+token==");
    assert_signed(&requests[0], SECRET);
    // Without the token in the signed set the signature would not verify.
    let mut pairs = sign::parse_query(requests[0].url.query().unwrap());
    pairs.retain(|(k, _)| k != "SecurityToken");
    assert!(matches!(
        sign::verify("POST", &pairs, SECRET),
        Verification::Mismatch { .. }
    ));
}

#[tokio::test]
async fn every_error_fixture_gets_its_kind_and_hint() {
    let server = MockServer::start().await;
    let cases: [(&str, u16, ErrorKind, &str); 8] = [
        (
            "errors/http400-signature-mismatch.json",
            400,
            ErrorKind::Signature,
            "canonicalised differently",
        ),
        (
            "errors/http400-throttling-user.json",
            400,
            ErrorKind::Throttled,
            "slower schedule",
        ),
        (
            "errors/http400-timestamp-expired.json",
            400,
            ErrorKind::ClockSkew,
            "sync it with NTP",
        ),
        (
            "errors/http404-access-key-not-found.json",
            404,
            ErrorKind::Credentials,
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
        ),
        (
            "errors/http403-forbidden.json",
            403,
            ErrorKind::Permission,
            "grant dbs:DescribePreCheckProgressList",
        ),
        (
            "errors/http200-success-false.json",
            200,
            ErrorKind::Api,
            "backup plan or restore task id",
        ),
        (
            "errors/http502-gateway.html",
            502,
            ErrorKind::Server,
            "retries on its own",
        ),
        (
            "errors/http200-truncated.json",
            200,
            ErrorKind::BadResponse,
            "next poll",
        ),
    ];
    for (name, status, kind, hint) in cases {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(reply(status, name))
            .mount(&server)
            .await;
        let error = client(&server, 0)
            .describe_precheck_progress(&plan())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), kind, "{name}: {error}");
        assert_eq!(error.http_status(), Some(status), "{name}");
        assert!(error.hint().contains(hint), "{name}: {}", error.hint());
        assert!(error.to_string().contains(hint), "{name}: {error}");
        assert!(!error.to_string().contains(SECRET), "{name}");
        assert!(!error.to_string().contains("Signature="), "{name}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn signature_mismatch_quoting_our_own_string_means_the_secret_is_wrong() {
    let server = MockServer::start().await;
    // Answer like the gateway: quote back the string to sign of the request received.
    Mock::given(method("POST"))
        .respond_with(|request: &Request| {
            let pairs = sign::parse_query(request.url.query().unwrap_or(""));
            let sts = sign::string_to_sign("POST", &pairs);
            ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "RequestId": "R-1",
                "Code": "SignatureDoesNotMatch",
                "Message": format!("Specified signature is not matched with our calculation. server string to sign is:{sts}"),
            }))
        })
        .expect(1)
        .mount(&server)
        .await;
    let error = client(&server, 3)
        .describe_precheck_progress(&plan())
        .await
        .unwrap_err();
    assert_eq!(
        error.signature_diagnosis(),
        Some(&SignatureDiagnosis::SecretMismatch)
    );
    assert!(
        error
            .to_string()
            .contains("the AccessKey secret is wrong for this AccessKey id"),
        "{error}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn retries_a_503_with_a_fresh_nonce_timestamp_and_signature() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(serde_json::json!({
            "RequestId": "R-503", "Code": "ServiceUnavailable",
            "Message": "The request has failed due to a temporary failure of the server."
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/01.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    // A clock that moves one second per reading proves each attempt reads it again.
    let tick = Arc::new(AtomicI64::new(Utc::now().timestamp()));
    let clock = {
        let tick = tick.clone();
        Clock::from_fn(move || {
            Utc.timestamp_opt(tick.fetch_add(1, Ordering::SeqCst), 0)
                .unwrap()
        })
    };
    let response = client(&server, 2)
        .with_clock(clock)
        .describe_precheck_progress(&plan())
        .await
        .unwrap();
    assert_eq!(response.snapshot.progress, Some(50));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let (first, second) = (params_of(&requests[0]), params_of(&requests[1]));
    assert_ne!(first["SignatureNonce"], second["SignatureNonce"]);
    assert_ne!(first["Timestamp"], second["Timestamp"]);
    assert_ne!(first["Signature"], second["Signature"]);
    assert_signed(&requests[0], SECRET);
    assert_signed(&requests[1], SECRET);
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(502, "errors/http502-gateway.html"))
        .expect(3)
        .mount(&server)
        .await;
    let error = client(&server, 2)
        .describe_precheck_progress(&plan())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert!(matches!(
        error,
        DbsError::BadResponse {
            problem: BodyProblem::NotJson,
            status: 502,
            ..
        }
    ));
}

#[tokio::test]
async fn x_acs_retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            reply(400, "errors/http400-throttling-user.json")
                .insert_header("x-acs-retry-after", "300"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/02.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let started = Instant::now();
    let response = client(&server, 1)
        .describe_precheck_progress(&plan())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(response.snapshot.status.as_deref(), Some("finish"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_left_to_the_next_poll() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            reply(400, "errors/http400-throttling-user.json")
                .insert_header("x-acs-retry-after", "60000"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let error = client(&server, 3)
        .describe_precheck_progress(&plan())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    for name in [
        "errors/http400-signature-mismatch.json",
        "errors/http404-access-key-not-found.json",
        "errors/http403-forbidden.json",
        "errors/http400-timestamp-expired.json",
        "errors/http200-success-false.json",
    ] {
        let server = MockServer::start().await;
        let status = dbswatch::simulate::fixtures::default_status(name);
        Mock::given(method("POST"))
            .respond_with(reply(status, name))
            .expect(1)
            .mount(&server)
            .await;
        let error = client(&server, 3)
            .describe_precheck_progress(&plan())
            .await
            .unwrap_err();
        assert!(!error.is_retryable(), "{name}");
    }
}

#[tokio::test]
async fn a_slow_server_gives_a_timeout_error_without_leaking_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/01.json").set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let credentials = Credentials {
        security_token: Some(Secret::new("CAIS-very-secret-token")),
        ..Credentials::new("testid", SECRET)
    };
    let options = ClientOptions {
        timeout: Duration::from_millis(200),
        ..options(&server, 0)
    };
    let started = Instant::now();
    let error = DbsClient::new(credentials, options)
        .unwrap()
        .describe_precheck_progress(&plan())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.is_retryable());
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("CAIS-very-secret-token"), "{text}");
        assert!(!text.contains("Signature="), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(error.to_string().contains("raise the timeout"), "{error}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = ClientOptions {
        endpoint: format!("http://127.0.0.1:{port}"),
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        max_retries: 0,
        retry_base: Duration::from_millis(1),
    };
    let error = DbsClient::new(Credentials::new("testid", SECRET), options)
        .unwrap()
        .describe_precheck_progress(&plan())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Network, "{error}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("could not reach DBS"), "{error}");
    assert!(!error.to_string().contains("Signature="), "{error}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "https://example.invalid/"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let error = client(&server, 2)
        .describe_precheck_progress(&plan())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        DbsError::BadResponse {
            problem: BodyProblem::Redirect,
            status: 302,
            ..
        }
    ));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn throttling_is_honoured_and_the_backoff_recorded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            reply(400, "errors/http400-throttling-user.json")
                .insert_header("x-acs-retry-after", "250"),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/02.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let client = client(&server, 3);
    let started = Instant::now();
    client.describe_precheck_progress(&plan()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    let stats = client.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.backoffs.len(), 2);
    for (n, backoff) in stats.backoffs.iter().enumerate() {
        assert_eq!(backoff.action, "DescribePreCheckProgressList");
        assert_eq!(backoff.attempt, n as u32 + 1);
        assert_eq!(backoff.kind, ErrorKind::Throttled);
        assert_eq!(backoff.code.as_deref(), Some("Throttling.User"));
        assert_eq!(backoff.retry_after, Some(Duration::from_millis(250)));
        assert!(backoff.delay >= Duration::from_millis(250), "{backoff:?}");
    }
    // Each attempt was signed afresh.
    let requests = server.received_requests().await.unwrap();
    let nonces: std::collections::HashSet<String> = requests
        .iter()
        .map(|r| params_of(r)["SignatureNonce"].clone())
        .collect();
    assert_eq!(nonces.len(), 3);
    for r in &requests {
        assert_signed(r, SECRET);
    }
}

#[tokio::test]
async fn a_clock_minutes_off_is_warned_about_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/01.json"))
        .mount(&server)
        .await;
    // Our clock runs 20 minutes behind the server's Date header.
    let client = client(&server, 0).with_clock(Clock::from_fn(|| {
        Utc::now() - chrono::TimeDelta::minutes(20)
    }));
    for _ in 0..3 {
        client.describe_precheck_progress(&plan()).await.unwrap();
    }
    let stats = client.stats();
    let skew = stats.clock_skew.expect("the server sent a Date header");
    assert!(
        (skew - chrono::TimeDelta::minutes(20)).num_seconds().abs() <= 5,
        "{skew:?}"
    );
    assert_eq!(stats.clock_skew_warnings, 1, "warned once, not per request");

    // A clock that is right measures a skew of about nothing and warns never.
    let fine = self::client(&server, 0);
    fine.describe_precheck_progress(&plan()).await.unwrap();
    assert_eq!(fine.stats().clock_skew_warnings, 0);
    assert!(fine.stats().clock_skew.unwrap().num_seconds().abs() <= 5);
    for r in &server.received_requests().await.unwrap() {
        assert_signed(r, SECRET);
    }
}

#[tokio::test]
async fn the_limiter_spaces_every_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "precheck-passes/01.json"))
        .mount(&server)
        .await;
    let limiter = dbswatch::dbs::Limiter::new(dbswatch::dbs::LimiterSettings {
        requests_per_second: 20.0,
        max_concurrent: 2,
    });
    let client = client(&server, 0).with_limiter(limiter.clone());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let client = client.clone();
        tasks.spawn(async move { client.describe_precheck_progress(&plan()).await });
    }
    for result in tasks.join_all().await {
        result.unwrap();
    }
    // Six starts 50 ms apart: the last one at least 250 ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(limiter.stats().granted, 6);
    assert_eq!(limiter.stats().delayed, 5);
    assert_eq!(client.stats().requests, 6);
    for r in &server.received_requests().await.unwrap() {
        assert_signed(r, SECRET);
    }
}

#[tokio::test]
async fn list_actions_share_the_retry_and_name_their_ram_action() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(403, "errors/http403-forbidden.json"))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(&server, 3)
        .list_backup_plans(&dbswatch::dbs::lists::PlanQuery::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permission);
    assert!(
        error
            .to_string()
            .contains("grant dbs:DescribeBackupPlanList"),
        "{error}"
    );
    let requests = server.received_requests().await.unwrap();
    assert_signed(&requests[0], SECRET);
    assert_eq!(params_of(&requests[0])["Action"], "DescribeBackupPlanList");
}
