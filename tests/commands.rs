//! `whoami`, `plans` and `restores` as a user runs them. The binary gets a cleared environment
//! and a temporary HOME, so it never sees the real credentials or home directory, and the ECS
//! metadata service is disabled (or pointed at 127.0.0.1).

use std::path::Path;
use std::process::{Command, Output};

use dbswatch::simulate::{Scenario, spawn_local};
use serde_json::json;

const CLI_CONFIG: &str = r#"{"current": "work", "profiles": [
  {"name": "work", "mode": "AK", "access_key_id": "LTAIcliWork0001", "access_key_secret": "cli-work-secret"},
  {"name": "sts", "mode": "StsToken", "access_key_id": "STS.cliSts00001", "access_key_secret": "cli-sts-secret", "sts_token": "CAIS-cli-token"}]}"#;

/// Runs the binary in `dir` with only `env` set (plus HOME = `home`).
fn dbswatch(args: &[&str], dir: &Path, home: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbswatch"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", home)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn home_with_cli_profiles() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
    std::fs::write(home.path().join(".aliyun/config.json"), CLI_CONFIG).unwrap();
    home
}

#[test]
fn whoami_names_the_source_and_masks_the_key() {
    let home = home_with_cli_profiles();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        r#"
[aliyun]
region = "ap-southeast-1"

[[account]]
name = "sts"
profile = "sts"
vpc = true
region = "cn-shanghai"

[[account]]
name = "env"
credential_source = "env"
"#,
    )
    .unwrap();
    let out = dbswatch(
        &["whoami"],
        dir.path(),
        home.path(),
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenvironment1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret-value"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // [aliyun] has no keys, and the environment comes before the CLI profile in the chain.
    assert!(stdout.contains("account default\n"), "{stdout}");
    assert!(
        stdout.contains("environment variables ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{stdout}"
    );
    assert!(stdout.contains("LTAI****ent1"), "{stdout}");
    assert!(
        stdout.contains("https://dbs-api.ap-southeast-1.aliyuncs.com/"),
        "{stdout}"
    );
    assert!(stdout.contains("account sts\n"), "{stdout}");
    assert!(stdout.contains("aliyun CLI profile `sts`"), "{stdout}");
    assert!(
        stdout.contains("STS.****0001 (STS, with a security token)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://dbs-api-vpc.cn-shanghai.aliyuncs.com/"),
        "{stdout}"
    );
    for secret in [
        "cli-sts-secret",
        "CAIS-cli-token",
        "env-secret-value",
        "LTAIenvironment1",
        "STS.cliSts00001",
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn whoami_without_a_config_uses_the_current_cli_profile_and_fails_clearly_without_one() {
    let home = home_with_cli_profiles();
    let dir = tempfile::tempdir().unwrap();
    let out = dbswatch(&["whoami"], dir.path(), home.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("aliyun CLI profile `work`"), "{stdout}");
    assert!(stdout.contains("LTAI****0001"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config at"));

    let empty = tempfile::tempdir().unwrap();
    let out = dbswatch(&["whoami"], dir.path(), empty.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("no Alibaba Cloud credentials found"),
        "{stdout}"
    );

    let out = dbswatch(
        &["whoami", "--account", "nope"],
        dir.path(),
        home.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_and_restores_list_what_the_account_has() {
    let sim = spawn_local(
        Scenario::new("LTAIlistKey0001", "list-secret")
            .with_backup_plan_listings(vec![vec![
                json!({"BackupPlanId": "dbsplan0001", "BackupPlanName": "orders \"prod\"",
                       "BackupPlanStatus": "running", "DatabaseType": "MySQL",
                       "SourceEndpointRegion": "cn-hangzhou", "BackupMethod": "logical"}),
                json!({"BackupPlanId": "dbsplan0002", "BackupPlanName": "orders \"prod\"",
                       "BackupPlanStatus": "pause", "DatabaseType": "PostgreSQL",
                       "SourceEndpointRegion": "cn-hangzhou"}),
            ]])
            .with_restore_task(
                "dbsrestore01",
                vec![json!({"RestoreTaskName": "drill", "RestoreStatus": "running",
                            "FullDataRestoreProgress": 40, "FullStruforeRestoreProgress": 100,
                            "RestoreTaskCreateTime": chrono::Utc::now().timestamp_millis() - 3_600_000})],
            ),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        format!(
            "[aliyun]\naccess_key_id = \"LTAIlistKey0001\"\naccess_key_secret = \"list-secret\"\nendpoint = \"{}\"\n",
            sim.endpoint()
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        let (dir, home) = (dir.path().to_path_buf(), home.path().to_path_buf());
        tokio::task::spawn_blocking(move || dbswatch(args, &dir, &home, &[]))
    };

    let out = run(&["plans"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ID           NAME"), "{stdout}");
    assert!(
        stdout.contains("dbsplan0002  orders \"prod\"  pause"),
        "{stdout}"
    );
    assert!(stdout.contains("2 backup plans"), "{stdout}");

    let out = run(&["plans", "--toml"]).await.unwrap();
    let toml_text = String::from_utf8_lossy(&out.stdout).to_string();
    let parsed: toml::Table = toml_text
        .parse()
        .unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    let watches = parsed["watch"].as_array().unwrap();
    assert_eq!(watches.len(), 2);
    assert_eq!(watches[0]["name"].as_str(), Some("orders \"prod\""));
    assert_eq!(
        watches[1]["name"].as_str(),
        Some("orders \"prod\"-dbsplan0002")
    );
    assert_eq!(watches[1]["backup_plan_id"].as_str(), Some("dbsplan0002"));

    let out = run(&["restores", "--days", "2"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("dbsrestore01  drill  running  70%"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 restore task created in the last 2 days"),
        "{stdout}"
    );
    assert_eq!(sim.rejected(), 0);
}
