//! `dbswatch render`, `dbswatch test-channel` and the template checks of `check-config`, run as
//! a user runs them, against receivers on 127.0.0.1.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn dbswatch(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbswatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("DBSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// Run the binary off the async runtime, so the mock receiver keeps answering meanwhile.
async fn dbswatch_async(args: &[&str], dir: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dbswatch(&args, &dir)
    })
    .await
    .expect("the command finished")
}

fn config_dir(receiver: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        format!(
            r#"
timezone = "Asia/Shanghai"
language = "zh-CN"

[[channel]]
name = "ding"
type = "dingtalk"
url = "{receiver}/robot/send?access_token=tok-abcdef123"
at_mobiles = ["13800000000"]

[[channel]]
name = "lark"
type = "feishu"
url = "{receiver}/open-apis/bot/v2/hook/hook-uuid-777"
secret = "lark-signing-secret"
language = "en"

[[channel]]
name = "hook"
type = "webhook"
url = "{receiver}/hook"
"#
        ),
    )
    .unwrap();
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn render_prints_exactly_the_body_that_would_be_sent() {
    let dir = config_dir("https://example.invalid");
    let out = dbswatch(
        &["render", "--channel", "ding", "--event", "precheck.failed"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "one body, one line");
    let body: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
    assert_eq!(body["msgUuid"], "7d3f9a4e-2c1b-4e8a-9f6d-a1b2c3d40003");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.starts_with("### ❌ 预检查失败：orders-db"), "{text}");
    assert!(text.contains("2025-12-03 08:00:05 UTC+08:00"), "{text}");
    assert_eq!(text.matches("@13800000000").count(), 1, "{text}");
    assert!(
        stderr(&out).contains("# precheck.failed -> ding"),
        "{}",
        stderr(&out)
    );

    // Every kind, one body per line, when no event is named.
    let out = dbswatch(&["render", "--channel", "lark"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bodies: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        bodies.len(),
        dbswatch::event::ALL_KINDS.len(),
        "one body per kind"
    );
    assert!(bodies.iter().all(|b| b["msg_type"] == "interactive"));
    assert!(
        stderr(&out).contains("`timestamp` and `sign` are added to the body when it is sent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn render_reads_events_from_a_file_and_names_mistakes() {
    let dir = config_dir("https://example.invalid");
    let mut event = dbswatch::render::sample_events().swap_remove(9);
    event.items[0].error = Some("ERROR 1045: <!channel> \"quoted\" \\ \n\t 告警 🚨".into());
    std::fs::write(
        dir.path().join("event.jsonl"),
        format!("{}\n", serde_json::to_string(&event).unwrap()),
    )
    .unwrap();
    let out = dbswatch(
        &["render", "--channel", "hook", "--event-file", "event.jsonl"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(body["type"], "restore.failed");
    assert_eq!(
        body["data"]["items"][0]["error"],
        "ERROR 1045: <!channel> \"quoted\" \\ \n\t 告警 🚨"
    );

    let out = dbswatch(&["render", "--channel", "teams"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no channel named `teams`; configured: ding, lark, hook"),
        "{}",
        stderr(&out)
    );
    let out = dbswatch(
        &[
            "render",
            "--channel",
            "ding",
            "--event",
            "precheck.exploded",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not an event kind"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_channel_explains_a_keyword_rejection_and_exits_1() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/robot/send"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"errcode":310000,"errmsg":"keywords not in content"}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = config_dir(&server.uri());
    let out = dbswatch_async(&["test-channel", "ding"], dir.path()).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.starts_with("ding (DingTalk): not delivered (HTTP 200, code 310000): "),
        "{said}"
    );
    assert!(
        said.contains("rejected the message: add the keyword or the signing secret"),
        "{said}"
    );
    assert!(!said.contains("tok-abcdef123"), "{said}");

    let reqs = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("### ❌ 【测试】预检查失败：dbswatch test message"),
        "{text}"
    );
    assert!(text.contains("dbswatch 测试消息"), "{text}");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_channel_reports_a_delivery_and_exits_0() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/open-apis/bot/v2/hook/hook-uuid-777"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"code":0,"data":{},"msg":"success"}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = config_dir(&server.uri());
    let out = dbswatch_async(&["test-channel", "lark"], dir.path()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with(
            "lark (Feishu): delivered; the receiver accepted the test message (HTTP 200, "
        ),
        "{}",
        stdout(&out)
    );
    let reqs = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(
        body["card"]["header"]["title"]["content"],
        "❌ [TEST] Pre-check failed: dbswatch test message"
    );
    let ts: i64 = body["timestamp"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        body["sign"],
        dbswatch::notify::feishu_sign("lark-signing-secret", ts)
    );

    let out = dbswatch_async(&["test-channel", "nope"], dir.path()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no channel named `nope`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_catches_a_missing_field_or_helper_in_any_channel_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lark.hbs"),
        "{\"msg_type\": \"text\", \"content\": {\"text\": \"{{shout title}}\"}}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("wx.hbs"),
        "{\"msgtype\": \"markdown\", \"markdown\": {\"content\": \"{{md_escape plan_name}}\"}}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dbswatch.toml"),
        r#"
[[channel]]
name = "lark"
type = "feishu"
url = "https://open.feishu.cn/open-apis/bot/v2/hook/x"
template = "lark.hbs"

[[channel]]
name = "wx"
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
template = "wx.hbs"
"#,
    )
    .unwrap();
    let out = dbswatch(&["check-config"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("channel `lark`") && err.contains("unknown helper `shout`"),
        "{err}"
    );
    assert!(
        err.contains("channel `wx`") && err.contains("plan_name"),
        "{err}"
    );
}
