//! The senders against local receivers (wiremock on 127.0.0.1): exact wire bytes, query
//! parameters, headers and signatures, how each reply is classified, and that no URL, token or
//! secret reaches a report or a log line.

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use dbswatch::notify::{
    ChannelKind, ChannelSpec, Notifier, Outcome, Outgoing, SendReport, dingtalk_sign, prepare_body,
    verify_webhook_headers,
};
use dbswatch::secret::{Redactor, Secret};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DELIVERY_ID: &str = "6f1c1d2e-8a5b-4c3d-9e7f-0a1b2c3d4e5f";
const DING_SECRET: &str = "SECb90923e19e58b466481e9e7b7a5b4f108a4531abde590ad3967fb29f0eae5c68";
const DING_TOKEN: &str = "1c53e149ba5de6597ca2442f0e901fd86156780b8ac141e4a75afdc44c85ca4f";
const WH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MARKDOWN: &str = r#"{"msgtype":"markdown","markdown":{"title":"DBS restore","text":"**restore finished**\n- job: dbs-1"}}"#;
const SLACK_BODY: &str = r#"{"text":"restore finished","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*job* dbs-1 &lt;eu&gt;"}}]}"#;
const EVENT: &str = r#"{"type":"restore.completed","timestamp":"2026-01-02T03:04:05Z","data":{"job":"dbs-1","note":"告警 ✓"}}"#;

/// A clock the test moves by hand, so "a fresh timestamp per attempt" needs no sleeping.
#[derive(Clone)]
struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    fn new() -> ManualClock {
        let start = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        ManualClock(Arc::new(AtomicI64::new(start.timestamp_millis())))
    }
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap()
    }
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

fn notifier(clock: &ManualClock, timeout: Duration) -> Notifier {
    let clock = clock.clone();
    // An empty redactor on purpose: the notifier must scrub the channel's own URL and secret
    // even when the caller forgot to register them.
    Notifier::new(timeout, Redactor::new()).with_clock(move || clock.now())
}

fn channel(kind: ChannelKind, url: String, secret: Option<&str>, at: &[&str]) -> ChannelSpec {
    ChannelSpec {
        name: format!("{}-ops", kind.as_str()),
        kind,
        url: Secret::new(url),
        secret: secret.map(Secret::new),
        at_mobiles: at.iter().map(|s| s.to_string()).collect(),
        keyword: None,
        cloudevents: None,
    }
}

async fn send(n: &Notifier, ch: &ChannelSpec, body: &str) -> SendReport {
    n.send(
        ch,
        &Outgoing {
            delivery_id: DELIVERY_ID,
            body,
        },
    )
    .await
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

fn header<'a>(req: &'a wiremock::Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

fn query(req: &wiremock::Request, key: &str) -> String {
    req.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("missing query parameter {key}"))
        .1
        .into_owned()
}

async fn mount(server: &MockServer, at: &str, reply: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(reply)
        .mount(server)
        .await;
}

// ------------------------------------------------------------------------------------------
// DingTalk

#[tokio::test]
async fn dingtalk_signs_each_attempt_freshly_and_keeps_the_body_stable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/robot/send"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"errcode":0,"errmsg":"ok"}"#))
        .expect(2)
        .mount(&server)
        .await;
    let clock = ManualClock::new();
    let n = notifier(&clock, Duration::from_secs(5));
    let url = format!("{}/robot/send?access_token={DING_TOKEN}", server.uri());
    let ch = channel(
        ChannelKind::Dingtalk,
        url,
        Some(DING_SECRET),
        &["13800000000"],
    );

    let first = send(&n, &ch, MARKDOWN).await;
    clock.advance(Duration::from_secs(7));
    let second = send(&n, &ch, MARKDOWN).await;

    for report in [&first, &second] {
        assert_eq!(report.outcome, Outcome::Delivered, "{}", report.error);
        assert_eq!(report.http_status, Some(200));
        assert_eq!(report.vendor_code, None);
        assert_eq!(report.error, "");
        assert_eq!(report.retry_after, None);
    }
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 2);
    let start_ms = ManualClock::new().now().timestamp_millis();
    for (req, ts) in reqs.iter().zip([start_ms, start_ms + 7000]) {
        assert_eq!(query(req, "access_token"), DING_TOKEN);
        assert_eq!(query(req, "timestamp"), ts.to_string());
        // query_pairs decodes once: what DingTalk decodes must be the raw base64 sign.
        assert_eq!(query(req, "sign"), dingtalk_sign(DING_SECRET, ts));
        assert!(
            !req.url.query().unwrap().contains("%25"),
            "sign encoded twice"
        );
        assert_eq!(header(req, "content-type"), "application/json");
    }
    assert_ne!(query(&reqs[0], "sign"), query(&reqs[1], "sign"));

    // The wire body is the prepared body, identical on both attempts.
    let expected = prepare_body(&ch, MARKDOWN, DELIVERY_ID).unwrap();
    assert_eq!(first.sent_body, expected);
    assert_eq!(second.sent_body, expected);
    assert_eq!(reqs[0].body, expected.as_bytes());
    assert_eq!(reqs[1].body, expected.as_bytes());
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "msgtype": "markdown",
            "markdown": {"title": "DBS restore", "text": "**restore finished**\n- job: dbs-1\n\n@13800000000"},
            "msgUuid": DELIVERY_ID,
            "at": {"atMobiles": ["13800000000"], "isAtAll": false}
        })
    );
}

#[tokio::test]
async fn dingtalk_without_a_secret_sends_the_url_as_configured() {
    let server = MockServer::start().await;
    mount(
        &server,
        "/robot/send",
        ResponseTemplate::new(200).set_body_string(r#"{"errcode":0,"errmsg":"ok"}"#),
    )
    .await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let url = format!("{}/robot/send?access_token={DING_TOKEN}", server.uri());
    let ch = channel(ChannelKind::Dingtalk, url, None, &[]);
    let report = send(&n, &ch, MARKDOWN).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{}", report.error);
    let reqs = requests(&server).await;
    assert_eq!(
        reqs[0].url.query(),
        Some(format!("access_token={DING_TOKEN}").as_str())
    );
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["msgUuid"], DELIVERY_ID);
    assert!(body.get("at").is_none());
}

async fn dingtalk_reply(status: u16, reply: &str) -> SendReport {
    let server = MockServer::start().await;
    mount(
        &server,
        "/robot/send",
        ResponseTemplate::new(status).set_body_string(reply),
    )
    .await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let url = format!("{}/robot/send?access_token={DING_TOKEN}", server.uri());
    send(
        &n,
        &channel(ChannelKind::Dingtalk, url, Some(DING_SECRET), &[]),
        MARKDOWN,
    )
    .await
}

#[tokio::test]
async fn dingtalk_keyword_rejection_is_permanent_with_a_hint() {
    let r = dingtalk_reply(
        200,
        r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert_eq!(r.http_status, Some(200));
    assert_eq!(r.vendor_code.as_deref(), Some("310000"));
    assert!(r.error.contains("keywords not in content"), "{}", r.error);
    assert!(
        r.error
            .contains("rejected the message: add the keyword or the signing secret"),
        "{}",
        r.error
    );
    assert!(r.error.contains("allow this host's IP"), "{}", r.error);
}

#[tokio::test]
async fn dingtalk_throttling_is_retryable() {
    let r = dingtalk_reply(
        200,
        r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.vendor_code.as_deref(), Some("130101"));
    assert!(r.error.contains("20 messages a minute"), "{}", r.error);
    assert_eq!(
        r.retry_after,
        Some(std::time::Duration::from_secs(600)),
        "DingTalk's 10-minute throttle is waited out"
    );
}

#[tokio::test]
async fn dingtalk_unknown_token_is_permanent() {
    let r = dingtalk_reply(200, r#"{"errcode":300005,"errmsg":"token is not exist"}"#).await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert_eq!(r.vendor_code.as_deref(), Some("300005"));
    assert!(
        r.error
            .starts_with("DingTalk errcode 300005 (token is not exist): "),
        "{}",
        r.error
    );
}

#[tokio::test]
async fn dingtalk_http_200_that_is_not_json_is_retryable_with_a_snippet() {
    let r = dingtalk_reply(200, "<html><body>upstream maintenance</body></html>").await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.vendor_code, None);
    assert!(
        r.error
            .contains("<html><body>upstream maintenance</body></html>"),
        "{}",
        r.error
    );
}

#[tokio::test]
async fn dingtalk_server_errors_are_retryable() {
    let r = dingtalk_reply(502, "bad gateway").await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.http_status, Some(502));
}

// ------------------------------------------------------------------------------------------
// Slack

async fn slack_reply(
    reply: ResponseTemplate,
    clock: &ManualClock,
) -> (SendReport, Vec<wiremock::Request>) {
    let server = MockServer::start().await;
    mount(&server, "/services/T000/B000/XXXXXXXXXXXXXXXX", reply).await;
    let n = notifier(clock, Duration::from_secs(5));
    let url = format!("{}/services/T000/B000/XXXXXXXXXXXXXXXX", server.uri());
    let report = send(&n, &channel(ChannelKind::Slack, url, None, &[]), SLACK_BODY).await;
    (report, requests(&server).await)
}

#[tokio::test]
async fn slack_ok_is_delivered_and_the_body_is_sent_as_rendered() {
    let (r, reqs) = slack_reply(
        ResponseTemplate::new(200).set_body_string("ok"),
        &ManualClock::new(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Delivered, "{}", r.error);
    assert_eq!(r.sent_body, SLACK_BODY);
    assert_eq!(reqs[0].body, SLACK_BODY.as_bytes());
    assert_eq!(header(&reqs[0], "content-type"), "application/json");
}

#[tokio::test]
async fn slack_429_is_retryable_after_the_requested_wait() {
    let reply = ResponseTemplate::new(429)
        .insert_header("Retry-After", "3")
        .set_body_string("rate_limited");
    let (r, _) = slack_reply(reply, &ManualClock::new()).await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.http_status, Some(429));
    assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn slack_429_with_an_http_date_is_measured_from_the_clock() {
    let clock = ManualClock::new();
    let when = (clock.now() + chrono::Duration::seconds(90))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let reply = ResponseTemplate::new(429).insert_header("Retry-After", when.as_str());
    let (r, _) = slack_reply(reply, &clock).await;
    assert_eq!(r.retry_after, Some(Duration::from_secs(90)));
}

#[tokio::test]
async fn slack_invalid_payload_is_permanent_and_verbatim() {
    let (r, _) = slack_reply(
        ResponseTemplate::new(400).set_body_string("invalid_payload"),
        &ManualClock::new(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert_eq!(r.http_status, Some(400));
    assert_eq!(r.vendor_code.as_deref(), Some("invalid_payload"));
    assert!(
        r.error
            .contains("the template produced a body Slack refuses"),
        "{}",
        r.error
    );
    assert_eq!(r.retry_after, None);
}

#[tokio::test]
async fn slack_removed_webhook_says_to_create_a_new_one() {
    let (r, _) = slack_reply(
        ResponseTemplate::new(404).set_body_string("no_service"),
        &ManualClock::new(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert_eq!(r.vendor_code.as_deref(), Some("no_service"));
    assert!(
        r.error.contains("create a new incoming-webhook URL"),
        "{}",
        r.error
    );
}

// ------------------------------------------------------------------------------------------
// Generic webhook

#[tokio::test]
async fn webhook_id_is_stable_and_each_attempt_is_signed_afresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .expect(2)
        .mount(&server)
        .await;
    let clock = ManualClock::new();
    let n = notifier(&clock, Duration::from_secs(5));
    let ch = channel(
        ChannelKind::Webhook,
        format!("{}/hook", server.uri()),
        Some(WH_SECRET),
        &[],
    );

    let first = send(&n, &ch, EVENT).await;
    let first_now = clock.now().timestamp();
    clock.advance(Duration::from_secs(7));
    let second = send(&n, &ch, EVENT).await;
    let second_now = clock.now().timestamp();

    assert_eq!(first.outcome, Outcome::Delivered, "{}", first.error);
    assert_eq!(second.outcome, Outcome::Delivered, "{}", second.error);
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 2);
    for (req, now) in reqs.iter().zip([first_now, second_now]) {
        assert_eq!(
            req.body,
            EVENT.as_bytes(),
            "the event goes out byte for byte"
        );
        assert_eq!(header(req, "content-type"), "application/json");
        assert_eq!(header(req, "webhook-id"), DELIVERY_ID);
        assert_eq!(header(req, "webhook-timestamp"), now.to_string());
        assert!(header(req, "webhook-signature").starts_with("v1,"));
        assert!(verify_webhook_headers(
            WH_SECRET,
            &req.headers,
            &req.body,
            now
        ));
        // The receiver checks the time too: ten minutes later the same delivery is refused.
        assert!(!verify_webhook_headers(
            WH_SECRET,
            &req.headers,
            &req.body,
            now + 600
        ));
    }
    assert_ne!(
        header(&reqs[0], "webhook-signature"),
        header(&reqs[1], "webhook-signature")
    );
    // A tampered body does not verify.
    assert!(!verify_webhook_headers(
        WH_SECRET,
        &reqs[0].headers,
        b"{}",
        first_now
    ));
}

#[tokio::test]
async fn webhook_without_a_secret_still_sends_its_id() {
    let server = MockServer::start().await;
    mount(&server, "/hook", ResponseTemplate::new(200)).await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let ch = channel(
        ChannelKind::Webhook,
        format!("{}/hook", server.uri()),
        None,
        &[],
    );
    assert_eq!(send(&n, &ch, EVENT).await.outcome, Outcome::Delivered);
    let reqs = requests(&server).await;
    assert_eq!(header(&reqs[0], "webhook-id"), DELIVERY_ID);
    assert!(reqs[0].headers.get("webhook-signature").is_none());
}

async fn webhook_reply(reply: ResponseTemplate) -> SendReport {
    let server = MockServer::start().await;
    mount(&server, "/hook", reply).await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let ch = channel(
        ChannelKind::Webhook,
        format!("{}/hook", server.uri()),
        Some(WH_SECRET),
        &[],
    );
    send(&n, &ch, EVENT).await
}

#[tokio::test]
async fn webhook_500_is_retryable() {
    let r = webhook_reply(ResponseTemplate::new(500).set_body_string("database locked")).await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.http_status, Some(500));
    assert!(r.error.contains("database locked"), "{}", r.error);
}

#[tokio::test]
async fn webhook_503_honours_retry_after() {
    let r = webhook_reply(ResponseTemplate::new(503).insert_header("Retry-After", "120")).await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.retry_after, Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn webhook_redirects_are_permanent_and_not_followed() {
    let server = MockServer::start().await;
    let target = format!("{}/elsewhere", server.uri());
    mount(
        &server,
        "/hook",
        ResponseTemplate::new(302).insert_header("Location", target.as_str()),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let ch = channel(
        ChannelKind::Webhook,
        format!("{}/hook", server.uri()),
        Some(WH_SECRET),
        &[],
    );
    let r = send(&n, &ch, EVENT).await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert_eq!(r.http_status, Some(302));
    assert!(r.error.contains("redirect"), "{}", r.error);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn webhook_410_means_the_endpoint_is_gone() {
    let r = webhook_reply(ResponseTemplate::new(410)).await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert!(
        r.error
            .starts_with("the receiver says the endpoint is gone"),
        "{}",
        r.error
    );
}

#[tokio::test]
async fn webhook_400_is_permanent() {
    let r = webhook_reply(ResponseTemplate::new(400).set_body_string("bad signature")).await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert!(r.error.contains("bad signature"), "{}", r.error);
}

#[tokio::test]
async fn a_webhook_secret_that_is_not_base64_stops_before_sending() {
    let server = MockServer::start().await;
    mount(&server, "/hook", ResponseTemplate::new(200)).await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let ch = channel(
        ChannelKind::Webhook,
        format!("{}/hook", server.uri()),
        Some("whsec_not~base64~at~all"),
        &[],
    );
    let r = send(&n, &ch, EVENT).await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert!(
        r.error
            .starts_with("the webhook secret is not valid base64"),
        "{}",
        r.error
    );
    assert!(!r.error.contains("not~base64"), "{}", r.error);
    assert_eq!(r.sent_body, "");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_json_stops_before_sending() {
    let server = MockServer::start().await;
    mount(
        &server,
        "/services/T/B/X",
        ResponseTemplate::new(200).set_body_string("ok"),
    )
    .await;
    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let ch = channel(
        ChannelKind::Slack,
        format!("{}/services/T/B/X", server.uri()),
        None,
        &[],
    );
    let r = send(&n, &ch, "{\"text\": \"unterminated").await;
    assert_eq!(r.outcome, Outcome::Permanent);
    assert!(
        r.error
            .starts_with("the rendered Slack body is not valid JSON"),
        "{}",
        r.error
    );
    assert!(requests(&server).await.is_empty());
}

// ------------------------------------------------------------------------------------------
// Transport failures

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retryable_and_named() {
    let server = MockServer::start().await;
    mount(
        &server,
        "/hook",
        ResponseTemplate::new(200).set_delay(Duration::from_millis(600)),
    )
    .await;
    let n = notifier(&ManualClock::new(), Duration::from_millis(200));
    let ch = channel(
        ChannelKind::Webhook,
        format!("{}/hook", server.uri()),
        None,
        &[],
    );
    let r = send(&n, &ch, EVENT).await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert_eq!(r.http_status, None);
    assert!(
        r.error
            .starts_with("timeout: the receiver did not answer within 200 ms"),
        "{}",
        r.error
    );
    assert!(r.duration >= Duration::from_millis(200), "{:?}", r.duration);
    assert!(r.duration < Duration::from_millis(600), "{:?}", r.duration);
    assert_eq!(r.sent_body, EVENT);
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_hides_the_url() {
    // Bind and drop, so nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let n = notifier(&ManualClock::new(), Duration::from_secs(2));
    let url = format!("http://127.0.0.1:{port}/robot/send?access_token={DING_TOKEN}");
    let r = send(
        &n,
        &channel(ChannelKind::Dingtalk, url, Some(DING_SECRET), &[]),
        MARKDOWN,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Retryable);
    assert!(
        r.error.starts_with("could not connect to the receiver"),
        "{}",
        r.error
    );
    let shown = format!("{r:?}");
    assert!(!shown.contains(DING_TOKEN), "{shown}");
    assert!(!shown.contains("/robot/send"), "{shown}");
}

// ------------------------------------------------------------------------------------------
// Secrets never leak

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_echoed_by_receivers_are_redacted_everywhere() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    let slack_token = "xoxbSUPERSECRETtoken42";
    let slack_url = format!("{}/services/T0001/B0001/{slack_token}", server.uri());
    let ding_url = format!("{}/robot/send?access_token={DING_TOKEN}", server.uri());
    // Receivers that quote the request back, token and all.
    mount(
        &server,
        &format!("/services/T0001/B0001/{slack_token}"),
        ResponseTemplate::new(403).set_body_string(format!("invalid_token for {slack_url}")),
    )
    .await;
    mount(
        &server,
        "/robot/send",
        ResponseTemplate::new(200).set_body_string(
            json!({"errcode": 300001, "errmsg": format!("token is not exist: {DING_TOKEN}, secret {DING_SECRET}")})
                .to_string(),
        ),
    )
    .await;

    let n = notifier(&ManualClock::new(), Duration::from_secs(5));
    let slack = send(
        &n,
        &channel(ChannelKind::Slack, slack_url.clone(), None, &[]),
        SLACK_BODY,
    )
    .await;
    let ding = send(
        &n,
        &channel(ChannelKind::Dingtalk, ding_url, Some(DING_SECRET), &[]),
        MARKDOWN,
    )
    .await;

    assert_eq!(slack.outcome, Outcome::Permanent);
    assert_eq!(slack.vendor_code.as_deref(), Some("invalid_token for ***"));
    assert_eq!(ding.outcome, Outcome::Permanent);
    assert!(
        ding.error.contains("token is not exist: ***, secret ***"),
        "{}",
        ding.error
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("notification attempt finished"), "{logs}");
    assert!(
        logs.contains("slack-ops") && logs.contains("dingtalk-ops"),
        "{logs}"
    );
    let shown = format!("{slack:?}\n{ding:?}\n{n:?}\n{logs}");
    for secret in [
        slack_token,
        DING_TOKEN,
        DING_SECRET,
        "/services/T0001",
        "/robot/send",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}
