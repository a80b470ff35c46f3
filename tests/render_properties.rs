//! Whatever DBS writes into an error text or an item code, every channel's body is valid JSON,
//! within that receiver's documented limits, and mentions only who the configuration names.
//!
//! The limits here are written out from the vendors' documentation on purpose, not imported
//! from the renderer, so a wrong constant in the renderer cannot make its own test pass.

use dbswatch::dbs::response::{Reply, interpret};
use dbswatch::diff;
use dbswatch::event::Event;
use dbswatch::notify::{ChannelKind, ChannelSpec, prepare_body};
use dbswatch::render::{ChannelTemplate, Language, Renderer, sample_events};
use dbswatch::secret::Secret;
use dbswatch::snapshot::{Item, Target};
use proptest::prelude::*;
use serde_json::Value;

const MOBILE: &str = "13800000000";
const DELIVERY_ID: &str = "6f1c1d2e-8a5b-4c3d-9e7f-0a1b2c3d4e5f";

const KINDS: [ChannelKind; 5] = [
    ChannelKind::Slack,
    ChannelKind::Dingtalk,
    ChannelKind::Webhook,
    ChannelKind::Feishu,
    ChannelKind::Wecom,
];

/// One channel per kind and language, plus DingTalk with a mention and a keyword.
fn channels() -> Vec<(ChannelTemplate, ChannelSpec)> {
    let mut out = Vec::new();
    for language in [Language::En, Language::ZhCn] {
        for kind in KINDS {
            out.push(channel(kind, language, &[], None));
        }
        out.push(channel(
            ChannelKind::Dingtalk,
            language,
            &[MOBILE],
            Some("DBS"),
        ));
        out.push(channel(ChannelKind::Feishu, language, &[], Some("告警")));
    }
    out
}

fn channel(
    kind: ChannelKind,
    language: Language,
    at: &[&str],
    keyword: Option<&str>,
) -> (ChannelTemplate, ChannelSpec) {
    let name = format!(
        "{}-{}-{}-{}",
        kind.as_str(),
        language.as_str(),
        at.len(),
        keyword.is_some()
    );
    let at_mobiles: Vec<String> = at.iter().map(|s| s.to_string()).collect();
    let template = ChannelTemplate {
        language,
        timezone: chrono_tz::Asia::Shanghai,
        at_mobiles: at_mobiles.clone(),
        keyword: keyword.map(String::from),
        ..ChannelTemplate::new(name.clone(), kind)
    };
    let spec = ChannelSpec {
        name,
        kind,
        url: Secret::new("https://example.invalid/hook"),
        secret: None,
        at_mobiles,
        keyword: keyword.map(String::from),
        cloudevents: None,
    };
    (template, spec)
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// Check one prepared body against its receiver's documented limits and mention rules.
fn check_body(spec: &ChannelSpec, body: &str) -> Result<(), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("{}: not JSON: {e}", spec.name))?;
    let mut texts = Vec::new();
    strings(&value, &mut texts);
    let fail = |what: String| Err(format!("{}: {what}", spec.name));
    match spec.kind {
        ChannelKind::Slack => {
            let blocks = value["blocks"].as_array().cloned().unwrap_or_default();
            if blocks.len() > 50 {
                return fail(format!("{} blocks", blocks.len()));
            }
            if !value["text"].is_string() {
                return fail("no fallback text".into());
            }
            for block in &blocks {
                match block["type"].as_str() {
                    Some("header") if chars(&block["text"]["text"]) > 150 => {
                        return fail("header over 150".into());
                    }
                    Some("section") => {
                        if chars(&block["text"]["text"]) > 3000 {
                            return fail("section over 3000".into());
                        }
                        let fields = block["fields"].as_array().cloned().unwrap_or_default();
                        if fields.len() > 10 || fields.iter().any(|f| chars(&f["text"]) > 2000) {
                            return fail("fields over limits".into());
                        }
                    }
                    Some("context") if block["elements"].as_array().map_or(0, Vec::len) > 10 => {
                        return fail("context over 10 elements".into());
                    }
                    _ => {}
                }
            }
            // Slack control sequences only come from the template's own console link.
            for t in &texts {
                for token in ["<!", "<@", "<#"] {
                    if t.contains(token) {
                        return fail(format!("`{token}` reached Slack: {t}"));
                    }
                }
            }
        }
        ChannelKind::Dingtalk => {
            if body.len() > 20_000 {
                return fail(format!("{} bytes", body.len()));
            }
            let text = value["markdown"]["text"].as_str().unwrap_or_default();
            if spec.at_mobiles.is_empty() {
                if value.get("at").is_some() {
                    return fail(format!("`at` without at_mobiles: {}", value["at"]));
                }
            } else {
                if value["at"]["atMobiles"] != serde_json::json!([MOBILE])
                    || value["at"]["isAtAll"] != false
                {
                    return fail(format!("wrong `at`: {}", value["at"]));
                }
                if text.matches(&format!("@{MOBILE}")).count() != 1 {
                    return fail(format!("mentioned other than once: {text}"));
                }
            }
            if let Some(k) = &spec.keyword
                && !text.contains(k.as_str())
            {
                return fail("keyword missing".into());
            }
        }
        ChannelKind::Feishu => {
            // `timestamp` and `sign` add about 70 bytes when the bot signs.
            if body.len() + 100 > 20_000 {
                return fail(format!("{} bytes", body.len()));
            }
            fn markdown_contents(v: &Value, out: &mut Vec<String>) {
                match v {
                    Value::Object(map) => {
                        if matches!(
                            map.get("tag").and_then(Value::as_str),
                            Some("lark_md" | "markdown")
                        ) && let Some(c) = map.get("content").and_then(Value::as_str)
                        {
                            out.push(c.to_string());
                        }
                        map.values().for_each(|x| markdown_contents(x, out));
                    }
                    Value::Array(items) => items.iter().for_each(|x| markdown_contents(x, out)),
                    _ => {}
                }
            }
            let mut md = Vec::new();
            markdown_contents(&value, &mut md);
            if md.iter().any(|c| c.contains("<at")) {
                return fail("`<at` in card markdown".into());
            }
            if let Some(k) = &spec.keyword
                && !texts.iter().any(|t| t.contains(k.as_str()))
            {
                return fail("keyword missing".into());
            }
        }
        ChannelKind::Wecom => {
            let content = value["markdown"]["content"].as_str().unwrap_or_default();
            if content.len() > 4096 {
                return fail(format!("markdown is {} bytes", content.len()));
            }
            if content.contains("<@") {
                return fail(format!("`<@` mention in markdown: {content}"));
            }
            if body.contains("mentioned_list") || body.contains("mentioned_mobile_list") {
                return fail("mention list sent".into());
            }
        }
        ChannelKind::Webhook => {}
    }
    Ok(())
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[<>&\"'\\\\*_`#~\\[\\]|@!/a-z0-9 \n\t\r\u{0}\u{1}\u{1f}\u{7f}\u{2028}\u{fffd}告警订单🚨]{0,300}",
        // Long: a stack trace's worth of anything, CJK (3 bytes each) or control characters
        // (6 bytes each once escaped) included.
        "[a-z告\u{1}\"\\\\\n<&]{2000,6000}",
        Just("<!channel> <!here> <@U123> <@all> <at id=all></at> @all".to_string()),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    (
        hostile_text(),
        hostile_text(),
        hostile_text(),
        prop::option::of(hostile_text()),
    )
        .prop_map(|(code, group, error, state)| Item {
            job_id: Some("qxwmxh2b1234".into()),
            code: Some(code),
            group: Some(group),
            order: Some("30".into()),
            state: Some(state.unwrap_or_else(|| "failed".into())),
            error: Some(error),
            boot_time: Some(1_764_720_000_000),
            finish_time: Some(1_764_720_001_000),
        })
}

fn check_event(renderer: &Renderer, channels: &[(ChannelTemplate, ChannelSpec)], event: &Event) {
    for (template, spec) in channels {
        let rendered = renderer
            .render(&template.name, event)
            .unwrap_or_else(|e| panic!("{}: {e}", template.name));
        assert_eq!(rendered.fallback_reason, None, "{}", template.name);
        let body = prepare_body(spec, &rendered.body, DELIVERY_ID)
            .unwrap_or_else(|e| panic!("{}: {e}", template.name));
        if let Err(e) = check_body(spec, &body) {
            panic!("{e}\nbody: {body}");
        }
        if spec.kind == ChannelKind::Webhook {
            // The webhook carries every text unchanged.
            let value: Value = serde_json::from_str(&body).unwrap();
            for (n, item) in event.items.iter().enumerate() {
                assert_eq!(
                    value["data"]["items"][n]["error"].as_str(),
                    item.error.as_deref()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_body_is_valid_json_within_limits_and_mentions_only_the_configured(
        items in prop::collection::vec(item(), 0..14),
        watch in "[a-z0-9_\\-<>&\" 告]{1,40}",
        sample in 0usize..12,
    ) {
        prop_assume!(!items.iter().any(|i| {
            [&i.code, &i.group, &i.error, &i.state]
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| t.contains("@138")))
        }));
        let channels = channels();
        let templates: Vec<ChannelTemplate> = channels.iter().map(|(t, _)| t.clone()).collect();
        let renderer = Renderer::new(&templates).unwrap();
        let mut event = sample_events().swap_remove(sample);
        event.watch = watch;
        event.item_total = items.len();
        event.items = items;
        if let Some(change) = &mut event.item_change
            && let Some(first) = event.items.first()
        {
            change.item = first.clone();
        }
        check_event(&renderer, &channels, &event);
    }
}

/// A DBS answer whose error text holds invalid UTF-8 (a truncated multibyte sequence, a lone
/// continuation byte, an overlong encoding) is read the way reqwest's `text()` reads it, with
/// U+FFFD in place of each bad sequence, and then reaches every channel intact.
#[test]
fn invalid_utf8_from_dbs_reaches_every_channel_as_replacement_characters() {
    let mut bytes: Vec<u8> = br#"{"RequestId":"R","Success":true,"Status":"failed","Progress":100,"Items":{"PreCheckProgressDetail":[{"JobId":"j","Item":"CHECK_"#.to_vec();
    bytes.extend_from_slice(b"\xe5\x91");
    bytes.extend_from_slice(br#"","State":"failed","ErrMsg":"bad "#);
    bytes.extend_from_slice(b"\xff\xfe bytes \xc0\xaf and \xe5\x91\x8a\xe8 end \\u0001 <!channel>");
    bytes.extend_from_slice(br#""}]}}"#);
    assert!(
        String::from_utf8(bytes.clone()).is_err(),
        "the fixture is not UTF-8"
    );
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let parsed = interpret(Reply::new(200, &body)).expect("a usable DBS answer");
    let error = parsed.snapshot.items[0].error.clone().unwrap();
    assert!(error.contains('\u{fffd}'), "{error:?}");
    assert!(error.contains("告"), "valid sequences survive: {error:?}");

    let mut ids = 0;
    let mut next_id = move || {
        ids += 1;
        format!("00000000-0000-4000-8000-{ids:012}")
    };
    let events = diff::replay(
        "orders-db",
        &Target::BackupPlan("dbstooi01XXXX".into()),
        None,
        [(parsed.snapshot, 1_764_720_005_000)],
        &mut next_id,
    );
    let failed = events
        .iter()
        .find(|e| e.kind() == "precheck.failed")
        .expect("a failed event");

    let channels = channels();
    let templates: Vec<ChannelTemplate> = channels.iter().map(|(t, _)| t.clone()).collect();
    let renderer = Renderer::new(&templates).unwrap();
    check_event(&renderer, &channels, failed);
    for (template, spec) in &channels {
        let body = prepare_body(
            spec,
            &renderer.render(&template.name, failed).unwrap().body,
            DELIVERY_ID,
        )
        .unwrap();
        let value: Value = serde_json::from_str(&body).unwrap();
        let mut texts = Vec::new();
        strings(&value, &mut texts);
        assert!(
            texts
                .iter()
                .any(|t| t.contains("bad \u{fffd}\u{fffd} bytes")),
            "{}: {body}",
            template.name
        );
    }
}
