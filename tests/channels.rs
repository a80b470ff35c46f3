//! Feishu, WeCom and CloudEvents webhooks against local receivers (wiremock on 127.0.0.1):
//! the exact body each gets from the built-in templates, signatures, and how each reply code
//! is read.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use dbswatch::notify::{
    ChannelKind, ChannelSpec, CloudEventsMode, Notifier, Outcome, Outgoing, SendReport,
    feishu_sign, prepare_body, verify_webhook_headers,
};
use dbswatch::render::{ChannelTemplate, Language, Renderer, sample_events};
use dbswatch::secret::{Redactor, Secret};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DELIVERY_ID: &str = "6f1c1d2e-8a5b-4c3d-9e7f-0a1b2c3d4e5f";
const FEISHU_SECRET: &str = "feishu-bot-secret-123";
const WH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// 2026-01-02T03:04:05Z.
const NOW_SECS: i64 = 1_767_323_045;

fn notifier() -> Notifier {
    Notifier::new(Duration::from_secs(5), Redactor::new())
        .with_clock(|| Utc.timestamp_opt(NOW_SECS, 0).unwrap())
}

fn spec(kind: ChannelKind, url: String) -> ChannelSpec {
    ChannelSpec {
        name: format!("{}-ops", kind.as_str()),
        kind,
        url: Secret::new(url),
        secret: None,
        at_mobiles: Vec::new(),
        keyword: None,
        cloudevents: None,
    }
}

/// The built-in template's body for the failed pre-check sample, in `language`.
fn rendered(kind: ChannelKind, language: Language) -> String {
    let template = ChannelTemplate {
        language,
        ..ChannelTemplate::new("c", kind)
    };
    let event = sample_events()
        .into_iter()
        .find(|e| e.kind() == "precheck.failed")
        .unwrap();
    Renderer::new(&[template])
        .unwrap()
        .render("c", &event)
        .unwrap()
        .body
}

async fn send(ch: &ChannelSpec, body: &str) -> SendReport {
    notifier()
        .send(
            ch,
            &Outgoing {
                delivery_id: DELIVERY_ID,
                body,
            },
        )
        .await
}

async fn server_replying(at: &str, status: u16, reply: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status).set_body_string(reply))
        .mount(&server)
        .await;
    server
}

async fn only_request(server: &MockServer) -> wiremock::Request {
    let mut reqs = server.received_requests().await.expect("recording is on");
    assert_eq!(reqs.len(), 1);
    reqs.remove(0)
}

// ------------------------------------------------------------------------------------------
// Feishu

const FEISHU_HOOK: &str = "/open-apis/bot/v2/hook/0f1e2d3c";

#[tokio::test]
async fn feishu_gets_the_card_signed_in_the_body_with_the_keyword() {
    let server = server_replying(FEISHU_HOOK, 200, r#"{"code":0,"data":{},"msg":"success"}"#).await;
    let ch = ChannelSpec {
        secret: Some(Secret::new(FEISHU_SECRET)),
        keyword: Some("DBS告警".into()),
        ..spec(
            ChannelKind::Feishu,
            format!("{}{FEISHU_HOOK}", server.uri()),
        )
    };
    let body = rendered(ChannelKind::Feishu, Language::ZhCn);
    let report = send(&ch, &body).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{}", report.error);
    assert_eq!(report.http_status, Some(200));

    let req = only_request(&server).await;
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(
        req.body,
        report.sent_body.as_bytes(),
        "the report shows the wire bytes"
    );
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    // Seconds, in the body, keyed Feishu's way.
    assert_eq!(sent["timestamp"], NOW_SECS.to_string());
    assert_eq!(sent["sign"], feishu_sign(FEISHU_SECRET, NOW_SECS));
    assert_eq!(sent["msg_type"], "interactive");
    assert_eq!(sent["card"]["header"]["template"], "red");
    assert_eq!(
        sent["card"]["header"]["title"]["content"],
        "❌ 预检查失败：orders-db"
    );
    // The keyword was missing from the card, so a note carries it.
    let elements = sent["card"]["elements"].as_array().unwrap();
    assert_eq!(
        elements.last().unwrap(),
        &json!({"tag": "note", "elements": [{"tag": "plain_text", "content": "DBS告警"}]})
    );
    // Without the signature fields, it is exactly what `render` shows.
    let mut unsigned = sent.clone();
    let object = unsigned.as_object_mut().unwrap();
    object.remove("timestamp");
    object.remove("sign");
    assert_eq!(
        unsigned,
        serde_json::from_str::<Value>(&prepare_body(&ch, &body, DELIVERY_ID).unwrap()).unwrap()
    );
}

#[tokio::test]
async fn feishu_codes_decide_success_and_failure() {
    let body = rendered(ChannelKind::Feishu, Language::En);
    let cases: &[(u16, &str, Outcome, Option<&str>, &str)] = &[
        (
            200,
            r#"{"StatusCode":0,"StatusMessage":"success"}"#,
            Outcome::Delivered,
            None,
            "",
        ),
        (
            200,
            r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
            Outcome::Permanent,
            Some("19021"),
            "set the channel's `secret` to the bot's signing secret",
        ),
        (
            200,
            r#"{"code":19024,"msg":"Key Words Not Found"}"#,
            Outcome::Permanent,
            Some("19024"),
            "set the channel's `keyword`",
        ),
        (
            200,
            r#"{"code":11232,"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}"#,
            Outcome::Retryable,
            Some("11232"),
            "too fast",
        ),
        (
            400,
            r#"{"code":9499,"msg":"Bad Request"}"#,
            Outcome::Permanent,
            Some("9499"),
            "fix the channel's template",
        ),
        (
            502,
            "<html>bad gateway</html>",
            Outcome::Retryable,
            None,
            "will be retried",
        ),
    ];
    for (status, reply, outcome, code, hint) in cases {
        let server = server_replying(FEISHU_HOOK, *status, reply).await;
        let ch = spec(
            ChannelKind::Feishu,
            format!("{}{FEISHU_HOOK}", server.uri()),
        );
        let report = send(&ch, &body).await;
        assert_eq!(report.outcome, *outcome, "{reply}: {}", report.error);
        assert_eq!(report.vendor_code.as_deref(), *code, "{reply}");
        assert!(report.error.contains(hint), "{reply}: {}", report.error);
        let req = only_request(&server).await;
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert!(sent.get("sign").is_none(), "no secret, no signature");
    }
}

// ------------------------------------------------------------------------------------------
// WeCom

const WECOM_PATH: &str = "/cgi-bin/webhook/send";

#[tokio::test]
async fn wecom_gets_markdown_within_4096_bytes_and_the_key_stays_secret() {
    let server = server_replying(WECOM_PATH, 200, r#"{"errcode":0,"errmsg":"ok"}"#).await;
    let url = format!("{}{WECOM_PATH}?key=wecom-key-0123456789", server.uri());
    let ch = spec(ChannelKind::Wecom, url);
    let body = rendered(ChannelKind::Wecom, Language::ZhCn);
    let report = send(&ch, &body).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{}", report.error);
    let req = only_request(&server).await;
    assert_eq!(req.url.query(), Some("key=wecom-key-0123456789"));
    assert_eq!(req.body, body.as_bytes(), "sent as rendered");
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["msgtype"], "markdown");
    let content = sent["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= 4096);
    assert!(
        content.starts_with("### ❌ 预检查失败：orders-db\n**3 项检查中 2 项有问题**"),
        "{content}"
    );
    assert!(
        content.contains("[在 DBS 控制台查看](https://dbs.console.aliyun.com/"),
        "{content}"
    );
}

#[tokio::test]
async fn wecom_errcodes_decide_success_and_failure() {
    let body = rendered(ChannelKind::Wecom, Language::En);
    let cases: &[(&str, Outcome, Option<&str>, &str)] = &[
        (
            r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1], from ip: 1.2.3.4, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}"#,
            Outcome::Permanent,
            Some("93000"),
            "not only the key",
        ),
        (
            r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
            Outcome::Retryable,
            Some("45009"),
            "20 messages a minute",
        ),
        (
            r#"{"errcode":40058,"errmsg":"markdown.content exceed max length 4096. invalid Request Parameter"}"#,
            Outcome::Permanent,
            Some("40058"),
            "4096 bytes of markdown",
        ),
        (
            r#"{"errcode":-1,"errmsg":"system busy"}"#,
            Outcome::Retryable,
            Some("-1"),
            "busy",
        ),
    ];
    for (reply, outcome, code, hint) in cases {
        let server = server_replying(WECOM_PATH, 200, reply).await;
        let url = format!("{}{WECOM_PATH}?key=k-secret-99", server.uri());
        let report = send(&spec(ChannelKind::Wecom, url), &body).await;
        assert_eq!(report.outcome, *outcome, "{reply}: {}", report.error);
        assert_eq!(report.vendor_code.as_deref(), *code);
        assert!(report.error.contains(hint), "{reply}: {}", report.error);
        assert!(!report.error.contains("1.2.3.4"), "{}", report.error);
        assert!(!report.error.contains("k-secret-99"), "{}", report.error);
    }
}

// ------------------------------------------------------------------------------------------
// CloudEvents

#[tokio::test]
async fn cloudevents_structured_and_binary_modes_on_the_wire() {
    let payload = rendered(ChannelKind::Webhook, Language::En);
    let event: Value = serde_json::from_str(&payload).unwrap();

    // Structured: one body, the CloudEvents content type, still signed over the exact bytes.
    let server = server_replying("/hook", 202, "").await;
    let ch = ChannelSpec {
        secret: Some(Secret::new(WH_SECRET)),
        cloudevents: Some(CloudEventsMode::Structured),
        ..spec(ChannelKind::Webhook, format!("{}/hook", server.uri()))
    };
    let report = send(&ch, &payload).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{}", report.error);
    let req = only_request(&server).await;
    assert_eq!(
        req.headers["content-type"],
        "application/cloudevents+json; charset=UTF-8"
    );
    let headers: reqwest::header::HeaderMap = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(verify_webhook_headers(
        WH_SECRET, &headers, &req.body, NOW_SECS
    ));
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["specversion"], "1.0");
    assert_eq!(sent["id"], event["id"]);
    assert_eq!(sent["type"], "precheck.failed");
    assert_eq!(sent["source"], "/dbswatch");
    assert_eq!(sent["subject"], "dbstooi01XXXX");
    assert_eq!(sent["time"], event["time"]);
    assert_eq!(sent["dataschema"], "urn:dbswatch:event:v1");
    assert_eq!(sent["data"], event["data"]);

    // Binary: the data is the body, the attributes are ce-* headers.
    let server = server_replying("/hook", 200, "").await;
    let ch = ChannelSpec {
        cloudevents: Some(CloudEventsMode::Binary),
        ..spec(ChannelKind::Webhook, format!("{}/hook", server.uri()))
    };
    let report = send(&ch, &payload).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{}", report.error);
    let req = only_request(&server).await;
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["ce-specversion"], "1.0");
    assert_eq!(req.headers["ce-id"], event["id"].as_str().unwrap());
    assert_eq!(req.headers["ce-type"], "precheck.failed");
    assert_eq!(req.headers["ce-source"], "/dbswatch");
    assert_eq!(req.headers["ce-time"], "2025-12-03T00:00:05Z");
    assert!(req.headers.get("ce-datacontenttype").is_none());
    assert_eq!(
        serde_json::from_slice::<Value>(&req.body).unwrap(),
        event["data"]
    );
    assert_eq!(req.headers["webhook-id"], DELIVERY_ID);
}
