//! The credential chain: each source, their order, profile selection, the files changing under
//! a running client, the ECS metadata service (IMDSv2, the v1 fallback, refresh before expiry),
//! and STS tokens reaching the signed request. Nothing here reads the real environment or home
//! directory: variables are given as a snapshot and files live in temporary directories; the
//! metadata service is a mock on 127.0.0.1.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use dbswatch::dbs::client::Clock;
use dbswatch::dbs::credentials::{
    ChainSettings, CredentialError, CredentialSource, EnvSnapshot, SourceKind, mask_key_id, resolve,
};
use dbswatch::dbs::imds::{ImdsProvider, ImdsSettings};
use dbswatch::dbs::{ClientOptions, CredentialProvider, DbsClient, ErrorKind};
use dbswatch::simulate::{Scenario, Step, fixtures, spawn_local};
use dbswatch::snapshot::Target;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLI_CONFIG: &str = r#"{
  "current": "work",
  "profiles": [
    {"name": "work", "mode": "AK", "access_key_id": "LTAIcliWork0001", "access_key_secret": "cli-work-secret"},
    {"name": "sts", "mode": "StsToken", "access_key_id": "STS.cliSts00001", "access_key_secret": "cli-sts-secret", "sts_token": "CAIS-cli-token"},
    {"name": "onecs", "mode": "EcsRamRole", "ram_role_name": "dbswatch-role"},
    {"name": "arn", "mode": "RamRoleArn", "access_key_id": "x", "access_key_secret": "y"}
  ]
}"#;

const INI: &str = "[default]\ntype = access_key\naccess_key_id = LTAIiniDefault1\naccess_key_secret = ini-default-secret\n\n[billing]\ntype = access_key\naccess_key_id = LTAIiniBilling1\naccess_key_secret = ini-billing-secret\n";

/// A fake home with the files asked for.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(cli: Option<&str>, ini: Option<&str>) -> Home {
        let dir = tempfile::tempdir().unwrap();
        if let Some(cli) = cli {
            std::fs::create_dir_all(dir.path().join(".aliyun")).unwrap();
            std::fs::write(dir.path().join(".aliyun/config.json"), cli).unwrap();
        }
        if let Some(ini) = ini {
            std::fs::create_dir_all(dir.path().join(".alibabacloud")).unwrap();
            std::fs::write(dir.path().join(".alibabacloud/credentials"), ini).unwrap();
        }
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Settings with HOME pointing here, the metadata service disabled, plus `env`.
    fn settings(&self, env: &[(&str, &str)]) -> ChainSettings {
        let home = self.path().display().to_string();
        let mut pairs = vec![
            ("HOME", home.as_str()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ];
        pairs.extend_from_slice(env);
        ChainSettings {
            env: EnvSnapshot::from_pairs(pairs),
            ..ChainSettings::default()
        }
    }
}

async fn key_of(settings: &ChainSettings) -> (String, CredentialSource) {
    let provider = resolve(settings).unwrap_or_else(|e| panic!("{e}"));
    let c = provider.credentials().await.unwrap();
    (c.access_key_id, provider.source())
}

const ENV_KEYS: [(&str, &str); 2] = [
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenvKey00001"),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"),
];

#[test]
fn the_test_signature_check_is_the_reference_algorithm() {
    support::check_reference_vector();
}

#[tokio::test]
async fn the_chain_order_is_config_env_cli_ini() {
    let home = Home::new(Some(CLI_CONFIG), Some(INI));
    let mut settings = home.settings(&ENV_KEYS);
    settings.config_credentials = Some(dbswatch::dbs::Credentials::new(
        "LTAIconfigKey01",
        "config-secret",
    ));
    assert_eq!(
        key_of(&settings).await,
        ("LTAIconfigKey01".into(), CredentialSource::Config)
    );

    settings.config_credentials = None;
    assert_eq!(
        key_of(&settings).await,
        ("LTAIenvKey00001".into(), CredentialSource::Environment)
    );

    let settings = home.settings(&[]);
    let (key, source) = key_of(&settings).await;
    assert_eq!(key, "LTAIcliWork0001", "the CLI's current profile");
    assert_eq!(
        source,
        CredentialSource::CliProfile {
            path: home.path().join(".aliyun/config.json"),
            profile: "work".into()
        }
    );

    let settings = home.settings(&[("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")]);
    let (key, source) = key_of(&settings).await;
    assert_eq!(key, "LTAIiniDefault1", "the ini file's default profile");
    assert!(
        matches!(source, CredentialSource::CredentialsFile { ref profile, .. } if profile == "default")
    );
}

#[tokio::test]
async fn an_ini_file_alone_is_found_and_the_env_can_point_at_other_files() {
    let home = Home::new(None, Some(INI));
    assert_eq!(key_of(&home.settings(&[])).await.0, "LTAIiniDefault1");

    let elsewhere = tempfile::tempdir().unwrap();
    let cli = elsewhere.path().join("cli.json");
    let ini = elsewhere.path().join("creds.ini");
    std::fs::write(
        &cli,
        CLI_CONFIG.replace("\"current\": \"work\"", "\"current\": \"sts\""),
    )
    .unwrap();
    std::fs::write(&ini, INI).unwrap();
    let empty_home = Home::new(None, None);
    let settings = empty_home.settings(&[
        ("ALIBABA_CLOUD_CONFIG_FILE", cli.to_str().unwrap()),
        ("ALIBABA_CLOUD_CREDENTIALS_FILE", ini.to_str().unwrap()),
    ]);
    assert_eq!(key_of(&settings).await.0, "STS.cliSts00001");

    // A credentials file named explicitly must exist.
    let settings = empty_home.settings(&[("ALIBABA_CLOUD_CREDENTIALS_FILE", "/nonexistent/creds")]);
    let e = resolve(&settings).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/creds"), "{e}");
}

#[tokio::test]
async fn a_named_profile_is_looked_up_in_both_files() {
    let home = Home::new(Some(CLI_CONFIG), Some(INI));
    let mut settings = home.settings(&ENV_KEYS[..0]);
    settings.profile = Some("sts".into());
    let provider = resolve(&settings).unwrap();
    let c = provider.credentials().await.unwrap();
    assert_eq!(c.access_key_id, "STS.cliSts00001");
    assert_eq!(c.security_token.unwrap().expose(), "CAIS-cli-token");

    // Only the ini file has `billing`.
    settings.profile = Some("billing".into());
    assert_eq!(key_of(&settings).await.0, "LTAIiniBilling1");

    // ALIBABA_CLOUD_PROFILE does the same as `profile`...
    let settings = home.settings(&[("ALIBABA_CLOUD_PROFILE", "billing")]);
    assert_eq!(key_of(&settings).await.0, "LTAIiniBilling1");
    // ...except that, as in the official tools, keys in the environment still come first; a
    // profile named in the config is a choice of source and wins over them.
    let mut env = ENV_KEYS.to_vec();
    env.push(("ALIBABA_CLOUD_PROFILE", "billing"));
    let mut settings = home.settings(&env);
    assert_eq!(key_of(&settings).await.0, "LTAIenvKey00001");
    settings.profile = Some("billing".into());
    assert_eq!(key_of(&settings).await.0, "LTAIiniBilling1");

    // A name in neither file is an error that lists what there is, not a silent fallback.
    let mut settings = home.settings(&[]);
    settings.profile = Some("prod".into());
    let e = resolve(&settings).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, CredentialError::ProfileNotFound { .. }),
        "{text}"
    );
    assert!(text.contains("`prod`"), "{text}");
    assert!(text.contains("work") && text.contains("billing"), "{text}");
}

#[tokio::test]
async fn a_pinned_source_skips_the_chain() {
    let home = Home::new(Some(CLI_CONFIG), Some(INI));
    let mut settings = home.settings(&ENV_KEYS);
    settings.source = Some(SourceKind::CredentialsFile);
    assert_eq!(key_of(&settings).await.0, "LTAIiniDefault1");
    settings.source = Some(SourceKind::Env);
    assert_eq!(key_of(&settings).await.0, "LTAIenvKey00001");
    settings.source = Some(SourceKind::Config);
    let e = resolve(&settings).unwrap_err();
    assert!(
        e.to_string().contains("credential_source = \"config\""),
        "{e}"
    );
}

#[test]
fn nothing_found_says_what_was_tried() {
    let home = Home::new(None, None);
    let e = resolve(&home.settings(&[])).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, CredentialError::NotFound { .. }), "{text}");
    for needle in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET not set",
        ".aliyun/config.json",
        ".alibabacloud/credentials",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
        "aliyun configure",
    ] {
        assert!(text.contains(needle), "{needle} missing in: {text}");
    }
}

#[test]
fn unsupported_profile_modes_are_refused_in_plain_words() {
    let home = Home::new(Some(CLI_CONFIG), None);
    let mut settings = home.settings(&[]);
    settings.profile = Some("arn".into());
    let e = resolve(&settings).unwrap_err();
    assert!(e.to_string().contains("mode RamRoleArn"), "{e}");
    assert!(!e.to_string().contains("y\""), "{e}");
}

#[tokio::test]
async fn a_profile_file_that_changes_is_read_again() {
    let home = Home::new(Some(CLI_CONFIG), None);
    let provider = resolve(&home.settings(&[])).unwrap();
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "LTAIcliWork0001"
    );
    // `aliyun configure` rewrites the file with a new key (its mtime is set explicitly below, so
    // the test does not depend on the file system's timestamp resolution).
    let file = home.path().join(".aliyun/config.json");
    std::fs::write(
        &file,
        CLI_CONFIG.replace("LTAIcliWork0001", "LTAIcliWork0002"),
    )
    .unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime + Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "LTAIcliWork0002"
    );
    // A profile that disappears is an error naming the file, not stale credentials.
    std::fs::write(&file, r#"{"current": "work", "profiles": []}"#).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime + Duration::from_secs(10))
        .unwrap();
    let e = provider.credentials().await.unwrap_err();
    assert!(e.to_string().contains("no longer in the file"), "{e}");
}

// --- ECS instance metadata ------------------------------------------------------------------

fn role_credentials(id: &str, expires: chrono::DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "AccessKeyId": id,
        "AccessKeySecret": format!("{id}-secret"),
        "SecurityToken": format!("CAIS-{id}"),
        "Expiration": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "LastUpdated": "2026-12-03T00:00:00Z",
        "Code": "Success"
    })
}

/// An IMDSv2 metadata service: a token for PUT, role and credentials only with that token.
async fn imds_v2(role: &str, body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .and(header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600"))
        .respond_with(ResponseTemplate::new(200).set_body_string("v2-session-token"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/ram/security-credentials/"))
        .and(header("X-aliyun-ecs-metadata-token", "v2-session-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("{role}\n")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/latest/meta-data/ram/security-credentials/{role}"
        )))
        .and(header("X-aliyun-ecs-metadata-token", "v2-session-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    server
}

fn manual_clock(start: chrono::DateTime<Utc>) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start.timestamp()));
    let reading = now.clone();
    (
        Clock::from_fn(move || {
            Utc.timestamp_opt(reading.load(Ordering::SeqCst), 0)
                .unwrap()
        }),
        now,
    )
}

#[tokio::test]
async fn imdsv2_token_first_and_the_role_is_listed_when_not_configured() {
    let expires = Utc::now() + chrono::TimeDelta::hours(6);
    let server = imds_v2("dbswatch-role", role_credentials("STS.role0001", expires)).await;
    let provider = ImdsProvider::new(ImdsSettings::new(server.uri(), None)).unwrap();
    let c = provider.credentials().await.unwrap();
    assert_eq!(c.access_key_id, "STS.role0001");
    assert_eq!(c.security_token.unwrap().expose(), "CAIS-STS.role0001");
    let stats = provider.stats();
    assert_eq!((stats.tokens, stats.v1_fallbacks, stats.fetches), (1, 0, 1));
    assert_eq!(stats.role.as_deref(), Some("dbswatch-role"));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].method.as_str(), "PUT", "the token comes first");
    assert_eq!(requests.len(), 3);
}

#[tokio::test]
async fn without_a_token_imdsv1_is_used_unless_disabled() {
    let expires = Utc::now() + chrono::TimeDelta::hours(6);
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/latest/meta-data/ram/security-credentials/named-role",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(role_credentials("STS.v1only01", expires)),
        )
        .mount(&server)
        .await;
    let provider =
        ImdsProvider::new(ImdsSettings::new(server.uri(), Some("named-role".into()))).unwrap();
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.v1only01"
    );
    assert_eq!(provider.stats().v1_fallbacks, 1);
    let gets: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .collect();
    assert!(gets[0].headers.get("X-aliyun-ecs-metadata-token").is_none());

    let mut strict = ImdsSettings::new(server.uri(), Some("named-role".into()));
    strict.allow_v1 = false;
    let e = ImdsProvider::new(strict)
        .unwrap()
        .credentials()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        "{e}"
    );
}

#[tokio::test]
async fn role_credentials_are_refreshed_before_they_expire() {
    let start = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_string("tok"))
        .mount(&server)
        .await;
    // First answer expires at 10:10, the next one at 11:10.
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/ram/security-credentials/r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(role_credentials(
            "STS.first0001",
            start + chrono::TimeDelta::minutes(10),
        )))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/ram/security-credentials/r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(role_credentials(
            "STS.second001",
            start + chrono::TimeDelta::minutes(70),
        )))
        .with_priority(2)
        .mount(&server)
        .await;
    let (clock, now) = manual_clock(start);
    let provider = ImdsProvider::new(ImdsSettings::new(server.uri(), Some("r".into())))
        .unwrap()
        .with_clock(clock);
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.first0001"
    );
    now.fetch_add(6 * 60, Ordering::SeqCst); // 10:06, 4 minutes left: cached
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.first0001"
    );
    assert_eq!(provider.stats().fetches, 1);
    now.fetch_add(2 * 60, Ordering::SeqCst); // 10:08, 2 minutes left: refreshed
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.second001"
    );
    assert_eq!(provider.stats().fetches, 2);
    assert_eq!(
        provider.stats().expiration,
        Some(start + chrono::TimeDelta::minutes(70))
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_credentials_that_are_still_valid() {
    let start = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
    let server = imds_v2(
        "r",
        role_credentials("STS.cached001", start + chrono::TimeDelta::minutes(10)),
    )
    .await;
    let (clock, now) = manual_clock(start);
    let provider = ImdsProvider::new(ImdsSettings::new(server.uri(), Some("r".into())))
        .unwrap()
        .with_clock(clock);
    provider.credentials().await.unwrap();
    // The metadata service goes away during the refresh window.
    server.reset().await;
    now.fetch_add(9 * 60, Ordering::SeqCst);
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.cached001"
    );
    now.fetch_add(2 * 60, Ordering::SeqCst); // expired now: the failure shows
    let e = provider.credentials().await.unwrap_err();
    assert!(e.to_string().contains("no RAM role named `r`"), "{e}");
}

#[tokio::test]
async fn the_chain_ends_at_the_ecs_role_and_a_cli_ecs_profile_uses_it() {
    let expires = Utc::now() + chrono::TimeDelta::hours(6);
    let server = imds_v2("dbswatch-role", role_credentials("STS.chain0001", expires)).await;
    let home = Home::new(None, None);
    let mut settings = ChainSettings {
        env: EnvSnapshot::from_pairs([("HOME", home.path().to_str().unwrap())]),
        metadata_endpoint: Some(server.uri()),
        ..ChainSettings::default()
    };
    let provider = resolve(&settings).unwrap();
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.chain0001"
    );
    assert!(matches!(
        provider.source(),
        CredentialSource::EcsRamRole { role: Some(ref r), .. } if r == "dbswatch-role"
    ));

    // The CLI profile in EcsRamRole mode names its role.
    let home = Home::new(Some(CLI_CONFIG), None);
    settings.env = EnvSnapshot::from_pairs([
        ("HOME", home.path().to_str().unwrap()),
        ("ALIBABA_CLOUD_PROFILE", "onecs"),
    ]);
    let provider = resolve(&settings).unwrap();
    assert!(matches!(
        provider.source(),
        CredentialSource::EcsRamRole { role: Some(ref r), ref endpoint } if r == "dbswatch-role" && *endpoint == server.uri()
    ));
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.chain0001"
    );
}

// --- STS tokens on the wire -------------------------------------------------------------------

fn options(endpoint: String) -> ClientOptions {
    ClientOptions {
        endpoint,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 0,
        retry_base: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn an_sts_profile_s_token_is_sent_and_signed() {
    let home = Home::new(Some(CLI_CONFIG), None);
    let mut settings = home.settings(&[]);
    settings.profile = Some("sts".into());
    let provider = resolve(&settings).unwrap();

    // The simulator demands the token and checks the signature with the STS secret.
    let plan = Target::BackupPlan("dbsplan".into());
    let sim = spawn_local(
        Scenario::new("STS.cliSts00001", "cli-sts-secret")
            .with_security_token("CAIS-cli-token")
            .with_target(
                plan.clone(),
                vec![Step::fixture("precheck-passes/02.json").unwrap()],
            ),
    )
    .await
    .unwrap();
    let client = DbsClient::with_provider(provider.clone(), options(sim.endpoint())).unwrap();
    let answer = client.describe_precheck_progress(&plan).await.unwrap();
    assert_eq!(answer.snapshot.status.as_deref(), Some("finish"));
    assert_eq!(sim.rejected(), 0);

    // Seen from the wire by an independent check: the token is a signed query parameter.
    let server = MockServer::start().await;
    let dbs = support::SignedDbs::new(&[("STS.cliSts00001", "cli-sts-secret")], |_| {
        ResponseTemplate::new(200).set_body_raw(
            fixtures::fixture("precheck-passes/02.json").unwrap(),
            "application/json",
        )
    });
    Mock::given(method("POST"))
        .respond_with(dbs.clone())
        .mount(&server)
        .await;
    let client = DbsClient::with_provider(provider, options(server.uri())).unwrap();
    client.describe_precheck_progress(&plan).await.unwrap();
    assert_eq!(dbs.rejected(), 0);
    assert_eq!(dbs.seen()[0]["SecurityToken"], "CAIS-cli-token");
}

#[tokio::test]
async fn ecs_role_credentials_sign_requests_and_an_expired_token_is_fetched_again() {
    let expires = Utc::now() + chrono::TimeDelta::hours(6);
    let imds = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_string("tok"))
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/ram/security-credentials/r"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(role_credentials("STS.old00001", expires)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/ram/security-credentials/r"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(role_credentials("STS.new00001", expires)),
        )
        .with_priority(2)
        .mount(&imds)
        .await;
    let provider = CredentialProvider::ecs_ram_role(
        ImdsProvider::new(ImdsSettings::new(imds.uri(), Some("r".into()))).unwrap(),
    );
    // DBS calls the first token expired before its Expiration (rotated early).
    let server = MockServer::start().await;
    let dbs = support::SignedDbs::new(
        &[
            ("STS.old00001", "STS.old00001-secret"),
            ("STS.new00001", "STS.new00001-secret"),
        ],
        |params| {
            if params["AccessKeyId"] == "STS.old00001" {
                ResponseTemplate::new(403).set_body_json(serde_json::json!({
                    "RequestId": "R1", "Code": "InvalidSecurityToken.Expired",
                    "Message": "Specified SecurityToken is expired."}))
            } else {
                assert_eq!(params["SecurityToken"], "CAIS-STS.new00001");
                ResponseTemplate::new(200).set_body_raw(
                    fixtures::fixture("precheck-passes/01.json").unwrap(),
                    "application/json",
                )
            }
        },
    );
    Mock::given(method("POST"))
        .respond_with(dbs.clone())
        .mount(&server)
        .await;
    let client = DbsClient::with_provider(provider, options(server.uri())).unwrap();
    let answer = client
        .describe_precheck_progress(&Target::BackupPlan("p".into()))
        .await
        .unwrap();
    assert_eq!(answer.snapshot.progress, Some(50));
    assert_eq!(dbs.rejected(), 0);
    assert_eq!(dbs.seen().len(), 2);
    assert_eq!(client.stats().credential_refreshes, 1);
}

#[tokio::test]
async fn no_credentials_is_a_clear_poll_error_and_nothing_is_sent() {
    let home = Home::new(None, None);
    let e = resolve(&home.settings(&[])).unwrap_err();
    let server = MockServer::start().await;
    // A provider that cannot produce credentials: the client refuses before any request.
    struct Broken(CredentialError);
    impl dbswatch::dbs::credentials::ProvideCredentials for Broken {
        fn fetch(
            &self,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<dbswatch::dbs::Credentials, CredentialError>,
                    > + Send
                    + '_,
            >,
        > {
            let e = self.0.clone();
            Box::pin(async move { Err(e) })
        }
        fn source(&self) -> CredentialSource {
            CredentialSource::Fixed
        }
    }
    let client = DbsClient::with_provider(
        CredentialProvider::from_impl(Broken(e)),
        options(server.uri()),
    )
    .unwrap();
    let error = client
        .describe_precheck_progress(&Target::BackupPlan("p".into()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CredentialSource);
    assert!(
        error
            .to_string()
            .contains("no Alibaba Cloud credentials found"),
        "{error}"
    );
    assert!(error.to_string().contains("dbswatch whoami"), "{error}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[test]
fn key_ids_are_masked_for_display() {
    assert_eq!(mask_key_id("LTAI5tAbCdEfGh12"), "LTAI****Gh12");
    assert_eq!(mask_key_id("short"), "****");
}
