//! The real `DbsClient` against the simulator on 127.0.0.1: full scripted sequences, the
//! gateway checks (secret, AccessKey id, clock, nonce, STS token, method) and the DBS errors.

use std::path::Path;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use dbswatch::dbs::client::{Clock, TIMESTAMP_FORMAT};
use dbswatch::dbs::sign;
use dbswatch::dbs::{
    ClientOptions, Credentials, DbsClient, DbsError, ErrorKind, SignatureDiagnosis,
};
use dbswatch::secret::Secret;
use dbswatch::simulate::{
    DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, Scenario, SimServer, Step, serve, spawn_local,
};
use dbswatch::snapshot::Target;
use serde_json::Value;

fn options(sim: &SimServer) -> ClientOptions {
    ClientOptions {
        endpoint: sim.endpoint(),
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 0,
        retry_base: Duration::from_millis(5),
    }
}

fn demo_client(sim: &SimServer) -> DbsClient {
    DbsClient::new(
        Credentials::new(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET),
        options(sim),
    )
    .unwrap()
}

fn plan(id: &str) -> Target {
    Target::BackupPlan(id.to_string())
}

/// Parameters of a DescribePreCheckProgressList call, unsigned, stamped now.
fn demo_params(nonce: &str) -> Vec<(String, String)> {
    [
        ("Action", "DescribePreCheckProgressList"),
        ("Version", "2019-03-06"),
        ("Format", "JSON"),
        ("AccessKeyId", DEMO_ACCESS_KEY_ID),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("BackupPlanId", "dbsdemo0passes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "Timestamp".to_string(),
        Utc::now().format(TIMESTAMP_FORMAT).to_string(),
    )])
    .collect()
}

async fn raw(request: reqwest::RequestBuilder) -> (u16, Value, Option<String>) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-acs-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (status, body, header)
}

#[tokio::test]
async fn the_failing_precheck_plays_its_four_steps_then_repeats_the_last() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let client = demo_client(&sim);
    let target = plan("dbsdemo0precheck");
    let mut statuses = Vec::new();
    let mut request_ids = Vec::new();
    let mut snapshots = Vec::new();
    for _ in 0..5 {
        let response = client.describe_precheck_progress(&target).await.unwrap();
        statuses.push((
            response.snapshot.status.clone().unwrap(),
            response.snapshot.progress.unwrap(),
        ));
        request_ids.push(response.request_id.clone().unwrap());
        snapshots.push(response.snapshot);
    }
    assert_eq!(
        statuses,
        vec![
            ("running".to_string(), 10),
            ("running".to_string(), 40),
            ("running".to_string(), 40),
            ("failed".to_string(), 100),
            ("failed".to_string(), 100),
        ]
    );
    assert_eq!(snapshots[1].content_hash(), snapshots[2].content_hash());
    assert_eq!(snapshots[3], snapshots[4]);
    assert_eq!(snapshots[3].problem_items().len(), 2);
    // Every reply gets a fresh RequestId, like the real service.
    let mut unique = request_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    assert!(!request_ids.contains(&"6E1F8A3C-2B7D-4C55-9A0E-3D4F5A6B7C01".to_string()));
    assert!(uuid::Uuid::parse_str(&request_ids[0]).is_ok());
    assert_eq!(sim.served(&target), 5);
    assert_eq!(sim.served(&plan("dbsdemo0passes")), 0);
    assert_eq!(sim.requests(), 5);
}

#[tokio::test]
async fn the_restore_completes_and_the_passing_precheck_finishes() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let client = demo_client(&sim);
    let restore = Target::RestoreTask("dbsdemo0restore".to_string());
    let mut progress = Vec::new();
    for _ in 0..3 {
        let r = client.describe_precheck_progress(&restore).await.unwrap();
        progress.push(r.snapshot.progress.unwrap());
    }
    assert_eq!(progress, vec![20, 80, 100]);

    let passes = plan("dbsdemo0passes");
    let first = client.describe_precheck_progress(&passes).await.unwrap();
    let second = client.describe_precheck_progress(&passes).await.unwrap();
    assert_eq!(first.snapshot.status.as_deref(), Some("running"));
    assert_eq!(second.snapshot.status.as_deref(), Some("finish"));
    assert!(second.snapshot.problem_items().is_empty());
    assert_eq!(sim.served(&restore), 3);
    assert_eq!(sim.served(&passes), 2);
}

#[tokio::test]
async fn a_wrong_secret_is_reported_as_a_wrong_secret() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let client = DbsClient::new(
        Credentials::new(DEMO_ACCESS_KEY_ID, "not-the-demo-secret"),
        ClientOptions {
            max_retries: 3,
            ..options(&sim)
        },
    )
    .unwrap();
    let error = client
        .describe_precheck_progress(&plan("dbsdemo0precheck"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Signature);
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(error.http_status(), Some(400));
    assert_eq!(
        error.signature_diagnosis(),
        Some(&SignatureDiagnosis::SecretMismatch)
    );
    let text = error.to_string();
    assert!(
        text.contains("the AccessKey secret is wrong for this AccessKey id"),
        "{text}"
    );
    assert!(!text.contains("not-the-demo-secret"), "{text}");
    assert!(!text.contains("server string to sign"), "{text}");
    assert_eq!(sim.requests(), 1, "signature errors are not retried");
    assert_eq!(sim.served(&plan("dbsdemo0precheck")), 0);
}

#[tokio::test]
async fn an_unknown_access_key_id_is_a_credentials_error() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let error = DbsClient::new(Credentials::new("LTAIunknown", "x"), options(&sim))
        .unwrap()
        .describe_precheck_progress(&plan("dbsdemo0precheck"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Credentials);
    assert_eq!(error.code(), Some("InvalidAccessKeyId.NotFound"));
    assert_eq!(error.http_status(), Some(404));
    assert!(error.hint().contains("ALIBABA_CLOUD_ACCESS_KEY_ID"));
}

#[tokio::test]
async fn an_unknown_plan_is_a_dbs_api_error() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let error = demo_client(&sim)
        .describe_precheck_progress(&plan("dbsnosuchplan"))
        .await
        .unwrap_err();
    assert!(matches!(error, DbsError::Rejected(_)), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Api);
    assert_eq!(error.code(), Some("InvalidParameterValid"));
    assert_eq!(error.http_status(), Some(200));
    assert!(error.request_id().is_some());
    assert!(error.hint().contains("backup plan or restore task id"));
}

#[tokio::test]
async fn a_skewed_clock_is_a_clock_error() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let error = demo_client(&sim)
        .with_clock(Clock::from_fn(|| Utc::now() - TimeDelta::minutes(16)))
        .describe_precheck_progress(&plan("dbsdemo0precheck"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ClockSkew);
    assert!(error.to_string().contains("more than 15 minutes off"));
    // Fourteen minutes is within the window.
    demo_client(&sim)
        .with_clock(Clock::from_fn(|| Utc::now() + TimeDelta::minutes(14)))
        .describe_precheck_progress(&plan("dbsdemo0precheck"))
        .await
        .unwrap();
}

#[tokio::test]
async fn scripted_transient_errors_are_retried_through() {
    let target = plan("flaky");
    let scenario = Scenario::new("id", "secret").with_target(
        target.clone(),
        vec![
            Step::fixture("errors/http502-gateway.html").unwrap(),
            Step::fixture("errors/http400-throttling-user.json")
                .unwrap()
                .with_header("x-acs-retry-after", "50"),
            Step::fixture("precheck-passes/02.json").unwrap(),
        ],
    );
    let sim = spawn_local(scenario).await.unwrap();
    let client = DbsClient::new(
        Credentials::new("id", "secret"),
        ClientOptions {
            max_retries: 3,
            ..options(&sim)
        },
    )
    .unwrap();
    let response = client.describe_precheck_progress(&target).await.unwrap();
    assert_eq!(response.snapshot.status.as_deref(), Some("finish"));
    assert_eq!(sim.served(&target), 3);
    // Each retry was freshly signed, or the simulator would have said SignatureNonceUsed.
    assert_eq!(sim.requests(), 3);
}

#[tokio::test]
async fn the_sts_token_is_checked() {
    let target = plan("p");
    let scenario = Scenario::new("STS.id", "secret")
        .with_security_token("CAIS/token+1==")
        .with_target(
            target.clone(),
            vec![Step::fixture("precheck-passes/02.json").unwrap()],
        );
    let sim = spawn_local(scenario).await.unwrap();
    let response = DbsClient::new(sim.scenario().credentials(), options(&sim))
        .unwrap()
        .describe_precheck_progress(&target)
        .await
        .unwrap();
    assert_eq!(response.snapshot.progress, Some(100));

    let without_token = DbsClient::new(Credentials::new("STS.id", "secret"), options(&sim))
        .unwrap()
        .describe_precheck_progress(&target)
        .await
        .unwrap_err();
    assert_eq!(without_token.kind(), ErrorKind::Credentials);
    assert!(without_token.hint().contains("STS"));

    let wrong_token = Credentials {
        security_token: Some(Secret::new("CAIS/other")),
        ..Credentials::new("STS.id", "secret")
    };
    let error = DbsClient::new(wrong_token, options(&sim))
        .unwrap()
        .describe_precheck_progress(&target)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidSecurityToken.Mismatch"));
}

#[tokio::test]
async fn get_and_form_posts_are_accepted_and_nonces_cannot_be_reused() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let http = reqwest::Client::new();

    let get = sign::signed_query("GET", &demo_params("nonce-get"), DEMO_ACCESS_KEY_SECRET);
    let url = format!("{}/?{}", sim.endpoint(), get.query);
    let (status, body, header) = raw(http.get(&url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Status"], "running");
    assert_eq!(header.as_deref(), body["RequestId"].as_str());

    // The same signed request again: the gateway refuses a reused nonce.
    let (status, body, _) = raw(http.get(&url)).await;
    assert_eq!(status, 400);
    assert_eq!(body["Code"], "SignatureNonceUsed");

    // Parameters in a form body, some in the query.
    let form = sign::signed_query("POST", &demo_params("nonce-form"), DEMO_ACCESS_KEY_SECRET);
    let (status, body, _) = raw(http
        .post(format!("{}/?Format=JSON", sim.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.query.replace("Format=JSON&", "")))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Status"], "finish");
    assert_eq!(sim.served(&plan("dbsdemo0passes")), 2);
}

#[tokio::test]
async fn a_request_signed_for_another_method_quotes_the_server_string() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let signed = sign::signed_query("POST", &demo_params("nonce-m"), DEMO_ACCESS_KEY_SECRET);
    let (status, body, _) =
        raw(reqwest::Client::new().get(format!("{}/?{}", sim.endpoint(), signed.query))).await;
    assert_eq!(status, 400);
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    let message = body["Message"].as_str().unwrap();
    let quoted = message.split_once("server string to sign is:").unwrap().1;
    assert_eq!(quoted, format!("GET{}", &signed.string_to_sign[4..]));
    assert!(body["RequestId"].as_str().is_some());
    assert!(body["HostId"].as_str().is_some());
}

#[tokio::test]
async fn missing_parameters_are_named() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let mut params = demo_params("nonce-x");
    params.retain(|(k, _)| k != "SignatureNonce");
    let signed = sign::signed_query("GET", &params, DEMO_ACCESS_KEY_SECRET);
    let (status, body, _) =
        raw(reqwest::Client::new().get(format!("{}/?{}", sim.endpoint(), signed.query))).await;
    assert_eq!(status, 400);
    assert_eq!(body["Code"], "MissingParameter");
    assert!(body["Message"].as_str().unwrap().contains("SignatureNonce"));
}

#[tokio::test]
async fn serve_runs_until_shutdown_with_a_loaded_scenario_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-demo.json");
    let scenario = Scenario::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, scenario, async move {
        let _ = stopped.await;
    }));
    let client = DbsClient::new(
        Credentials::new(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET),
        ClientOptions {
            endpoint: format!("http://{addr}"),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_retries: 0,
            retry_base: Duration::from_millis(5),
        },
    )
    .unwrap();
    let response = client
        .describe_precheck_progress(&Target::RestoreTask("dbsdemo0restore".into()))
        .await
        .unwrap();
    assert_eq!(response.snapshot.progress, Some(20));
    drop(client);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops after the shutdown signal")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn sim_server_shutdown_is_graceful() {
    let sim = spawn_local(Scenario::builtin_demo()).await.unwrap();
    let endpoint = sim.endpoint();
    demo_client(&sim)
        .describe_precheck_progress(&plan("dbsdemo0passes"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .unwrap()
        .unwrap();
    let error = reqwest::Client::new()
        .get(format!("{endpoint}/"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error}");
}

#[tokio::test]
async fn list_actions_are_signature_checked_paged_and_scripted() {
    let plans: Vec<serde_json::Value> = (1..=5)
        .map(|i| serde_json::json!({"BackupPlanId": format!("dbsp{i}"), "BackupPlanStatus": "running",
                                     "SourceEndpointRegion": if i % 2 == 0 { "cn-shanghai" } else { "cn-hangzhou" }}))
        .collect();
    let scenario = Scenario::new(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET)
        .with_backup_plan_listings(vec![plans.clone(), plans[..1].to_vec()]);
    let sim = spawn_local(scenario).await.unwrap();
    let client = demo_client(&sim);
    let call = |params: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            client
                .call("DescribeBackupPlanList", params, &["Items"])
                .await
        }
    };
    // Page 1 of pages of 2, filtered to Shanghai: the second of two plans.
    let answer = call(vec![
        ("PageNum", "0".into()),
        ("PageSize", "1".into()),
        ("Region", "cn-shanghai".into()),
    ])
    .await
    .unwrap();
    assert_eq!(answer.object["TotalElements"], 2);
    assert_eq!(answer.object["TotalPages"], 2);
    assert_eq!(
        answer.object["Items"]["BackupPlanDetail"][0]["BackupPlanId"],
        "dbsp2"
    );
    let answer = call(vec![
        ("PageNum", "1".into()),
        ("PageSize", "1".into()),
        ("Region", "cn-shanghai".into()),
    ])
    .await
    .unwrap();
    assert_eq!(
        answer.object["Items"]["BackupPlanDetail"][0]["BackupPlanId"],
        "dbsp4"
    );
    // A new listing (page 0 again) plays the next script step.
    let answer = call(vec![("PageNum", "0".into())]).await.unwrap();
    assert_eq!(answer.object["TotalElements"], 1);
    // Bad paging is DBS's parameter error.
    let error = call(vec![("PageSize", "500".into())]).await.unwrap_err();
    assert_eq!(error.code(), Some("InvalidParameterValid"));
    assert_eq!(sim.rejected(), 0);

    // A wrong secret is refused before any of that, for list actions too.
    let wrong = DbsClient::new(
        Credentials::new(DEMO_ACCESS_KEY_ID, "wrong-secret"),
        options(&sim),
    )
    .unwrap();
    let error = wrong
        .list_backup_plans(&dbswatch::dbs::lists::PlanQuery::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(sim.rejected(), 1);
    assert_eq!(sim.calls("DescribeBackupPlanList"), 4);
    // Unknown actions are the gateway's.
    let error = client
        .call("DescribeRegions", vec![], &["Regions"])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidAction.NotFound"));
}
