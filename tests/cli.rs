//! The binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn dbswatch(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbswatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("DBSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        r#"
[[watch]]
name = "orders-db"
backup_plan_id = "p1"
schedule = "every minute"
channels = ["ops-slack"]

[[channel]]
name = "slack"
type = "slack"
url = "https://hooks.slack.com/services/T/B/X"
colour = "red"
"#,
    )
    .unwrap();
    let out = dbswatch(&["check-config"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("dbswatch.toml:5"), "{err}");
    assert!(err.contains("`ops-slack`, which is not defined"), "{err}");
    assert!(err.contains("unknown key `colour`"), "{err}");
}

#[test]
fn check_config_accepts_a_good_file_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("my.toml"),
        r#"
[aliyun]
access_key_id = "LTAI5tExampleKeyId"
access_key_secret = "topsecretvalue"

[[watch]]
name = "orders-db"
backup_plan_id = "p1"
schedule = "*/5 * * * *"

[[channel]]
name = "slack"
type = "slack"
url = "https://hooks.slack.com/services/T/B/SECRETPATH"
"#,
    )
    .unwrap();
    let out = dbswatch(&["-c", "my.toml", "check-config"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("LTAI****eyId"), "{stdout}");
    assert!(!stdout.contains("topsecretvalue"));
    assert!(!stdout.contains("SECRETPATH"));
}

#[test]
fn a_missing_config_file_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dbswatch(&["poll"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dbswatch.toml"), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn replay_prints_the_events_of_recorded_responses() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (1..=4)
        .map(|i| fixture(&format!("precheck-fails/0{i}.json")))
        .collect();
    let mut args = vec!["replay"];
    args.extend(files.iter().map(String::as_str));
    let out = dbswatch(&args, dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kinds: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds.first().unwrap(), "precheck.started");
    assert_eq!(kinds.last().unwrap(), "precheck.failed");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "precheck.item_changed")
            .count(),
        4
    );

    let restore: Vec<String> = (1..=3)
        .map(|i| fixture(&format!("restore-completes/0{i}.json")))
        .collect();
    let mut args = vec!["replay", "--restore"];
    args.extend(restore.iter().map(String::as_str));
    let out = dbswatch(&args, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .contains("\"restore.completed\""),
        "{stdout}"
    );
}

#[test]
fn history_without_a_database_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        "[storage]\ndatabase = \"x.db\"\n",
    )
    .unwrap();
    let out = dbswatch(&["history"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dbswatch poll"));
}

#[test]
fn the_demo_runs_the_whole_pipeline_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dbswatch(&["demo"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("precheck.failed"), "{stdout}");
    assert!(stdout.contains("restore.completed"), "{stdout}");
    assert!(stdout.contains("timestamp+sign verified"), "{stdout}");
    assert!(
        stdout.contains("Standard Webhooks signature verified"),
        "{stdout}"
    );
    assert!(!stdout.contains("INVALID"), "{stdout}");
    assert!(stdout.contains("Demo finished"), "{stdout}");
}

#[test]
fn a_missing_config_says_where_one_comes_from_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["history"][..],
        &["poll"],
        &["check-config"],
        &["snapshots", "orders-db"],
    ] {
        let out = dbswatch(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("file not found"), "{args:?}: {err}");
        assert!(err.contains("DBSWATCH_CONFIG"), "{args:?}: {err}");
        assert!(
            !err.contains("Fix the file"),
            "no file to fix: {args:?}: {err}"
        );
    }
}

#[test]
fn simulate_with_a_bad_listen_address_says_the_form_it_wants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dbswatch(&["simulate", "--listen", "localhost"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host:port"), "{err}");
}
