//! Renderer tests: built-in templates on every sample, hostile text, custom templates, strict
//! mode, fallback, limits, and snapshots of every built-in template for every event kind.

use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::event::ALL_KINDS;
use crate::snapshot::Item;

const KINDS: [ChannelKind; 5] = [
    ChannelKind::Slack,
    ChannelKind::Dingtalk,
    ChannelKind::Webhook,
    ChannelKind::Feishu,
    ChannelKind::Wecom,
];

fn channel(name: &str, kind: ChannelKind, template: Option<PathBuf>) -> ChannelTemplate {
    ChannelTemplate {
        template,
        ..ChannelTemplate::new(name, kind)
    }
}

/// The same channel in Simplified Chinese, shown in Beijing time.
fn chinese(name: &str, kind: ChannelKind) -> ChannelTemplate {
    ChannelTemplate {
        language: Language::ZhCn,
        timezone: chrono_tz::Asia::Shanghai,
        ..ChannelTemplate::new(name, kind)
    }
}

fn builtins() -> Renderer {
    Renderer::new(&KINDS.map(|k| channel(k.as_str(), k, None))).expect("built-ins compile")
}

fn chinese_builtins() -> Renderer {
    Renderer::new(&KINDS.map(|k| chinese(k.as_str(), k))).expect("built-ins compile")
}

fn sample(kind: &str) -> Event {
    sample_events()
        .into_iter()
        .find(|e| e.kind() == kind)
        .expect("sample exists")
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A temporary template file; the directory lives as long as the returned guard.
fn template_file(source: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custom.hbs");
    std::fs::write(&path, source).expect("write template");
    (dir, path)
}

/// Every string in a JSON value, in document order, joined by newlines: what a person can
/// read in the message, whatever the layout.
fn readable_text(body: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, &mut out);
    out.join("\n")
}

#[test]
fn builtin_templates_render_every_sample_as_compact_json() {
    for renderer in [builtins(), chinese_builtins()] {
        for kind in KINDS {
            for event in sample_events() {
                let rendered = renderer.render(kind.as_str(), &event).unwrap();
                assert_eq!(rendered.fallback_reason, None);
                let body = parse(&rendered.body);
                assert_eq!(rendered.body, body.to_string(), "body is compact");
                if matches!(
                    kind,
                    ChannelKind::Dingtalk | ChannelKind::Feishu | ChannelKind::Wecom
                ) {
                    // A word robots with keyword security can be set to.
                    let text = readable_text(&body);
                    assert!(text.contains("dbswatch"), "{kind:?}: {text}");
                }
            }
        }
    }
}

#[test]
fn builtin_templates_pass_check() {
    assert_eq!(builtins().check(), Vec::<RenderError>::new());
    assert_eq!(chinese_builtins().check(), Vec::<RenderError>::new());
}

#[test]
fn snapshots_of_every_builtin_template_for_every_kind() {
    let renderer = builtins();
    for kind in KINDS {
        for event in sample_events() {
            let body = parse(&renderer.render(kind.as_str(), &event).unwrap().body);
            let pretty = serde_json::to_string_pretty(&body).unwrap();
            let name = format!("{}__{}", kind.as_str(), event.kind().replace('.', "_"));
            insta::assert_snapshot!(name, pretty);
        }
    }
}

#[test]
fn snapshots_of_every_builtin_template_for_every_kind_in_chinese() {
    let renderer = chinese_builtins();
    for kind in KINDS {
        for event in sample_events() {
            let body = parse(&renderer.render(kind.as_str(), &event).unwrap().body);
            let pretty = serde_json::to_string_pretty(&body).unwrap();
            let name = format!(
                "{}__zh_CN__{}",
                kind.as_str(),
                event.kind().replace('.', "_")
            );
            insta::assert_snapshot!(name, pretty);
        }
    }
}

#[test]
fn dingtalk_action_card_snapshot() {
    let ding = ChannelTemplate {
        action_card: true,
        keyword: Some("DBS".into()),
        ..chinese("ding", ChannelKind::Dingtalk)
    };
    let renderer = Renderer::new(&[ding]).unwrap();
    let body = parse(
        &renderer
            .render("ding", &sample("restore.failed"))
            .unwrap()
            .body,
    );
    assert_eq!(body["msgtype"], "actionCard");
    assert_eq!(
        body["actionCard"]["singleURL"],
        "https://dbs.console.aliyun.com/?regionId=cn-hangzhou#/dbs/restore/dbasdsa01XXXX"
    );
    assert_eq!(body["actionCard"]["singleTitle"], "在 DBS 控制台查看");
    assert!(
        body["actionCard"]["text"]
            .as_str()
            .unwrap()
            .ends_with(" · DBS")
    );
    insta::assert_snapshot!(serde_json::to_string_pretty(&body).unwrap());
}

#[test]
fn test_message_snapshots() {
    let renderer = Renderer::new(&[
        channel("slack", ChannelKind::Slack, None),
        chinese("feishu", ChannelKind::Feishu),
    ])
    .unwrap();
    for name in ["slack", "feishu"] {
        let rendered = renderer
            .render_test(name, "00000000-0000-4000-8000-000000007e57")
            .unwrap();
        assert_eq!(rendered.fallback_reason, None);
        let body = parse(&rendered.body);
        let text = readable_text(&body);
        assert!(text.contains("dbswatch test message"), "{text}");
        assert!(text.contains("test-channel"), "{text}");
        insta::assert_snapshot!(
            format!("test_message__{name}"),
            serde_json::to_string_pretty(&body).unwrap()
        );
    }
}

#[test]
fn dingtalk_with_mentions_snapshot() {
    let mut ding = channel("ding", ChannelKind::Dingtalk, None);
    ding.at_mobiles = vec!["13800000000".into(), "13900000000".into()];
    let renderer = Renderer::new(&[ding]).unwrap();
    let body = parse(
        &renderer
            .render("ding", &sample("precheck.failed"))
            .unwrap()
            .body,
    );
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.ends_with("\n\n@13800000000 @13900000000"), "{text}");
    insta::assert_snapshot!(serde_json::to_string_pretty(&body).unwrap());
}

#[test]
fn failure_messages_name_the_target_the_checks_and_their_errors() {
    let renderer = builtins();
    for kind in ["precheck.failed", "restore.failed"] {
        let event = sample(kind);
        for channel in KINDS {
            let body = parse(&renderer.render(channel.as_str(), &event).unwrap().body);
            let text = readable_text(&body);
            assert!(
                text.contains(event.target.id()),
                "{channel:?} {kind}: {text}"
            );
            for item in &event.items {
                let code = item.code.as_deref().unwrap();
                let error = item.error.as_deref().unwrap();
                let (code, error) = match channel {
                    ChannelKind::Slack => (
                        code.to_string(),
                        markdown_escape(&slack_entities(error), channel),
                    ),
                    ChannelKind::Dingtalk | ChannelKind::Wecom => (
                        markdown_escape(code, channel),
                        markdown_escape(error, channel),
                    ),
                    ChannelKind::Webhook | ChannelKind::Feishu => {
                        (code.to_string(), error.to_string())
                    }
                };
                assert!(text.contains(&code), "{channel:?} {kind} lacks {code}");
                assert!(text.contains(&error), "{channel:?} {kind} lacks {error}");
            }
        }
    }
}

#[test]
fn slack_fallback_text_says_what_where_and_how_bad() {
    let body = parse(
        &builtins()
            .render("slack", &sample("precheck.failed"))
            .unwrap()
            .body,
    );
    assert_eq!(
        body["text"],
        "Pre-check failed: orders-db (dbstooi01XXXX) — 2 of 3 checks have problems"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
}

#[test]
fn hostile_text_renders_valid_json_everywhere() {
    let renderer = builtins();
    let event = hostile_event();
    for kind in KINDS {
        let rendered = renderer.render(kind.as_str(), &event).unwrap();
        let body = parse(&rendered.body);
        assert_eq!(rendered.fallback_reason, None);
        assert!(!rendered.body.contains("&#39;") && !rendered.body.contains("&quot;"));
        let text = readable_text(&body);
        assert!(text.contains("We've"), "{kind:?}: apostrophes stay");
        assert!(
            text.contains("🚨 告警：订单库"),
            "{kind:?}: emoji and CJK stay"
        );
    }

    let slack = renderer.render("slack", &event).unwrap().body;
    assert!(slack.contains("&lt;!channel&gt;"));
    assert!(!slack.contains("<!channel>"));
    assert!(!slack.contains("<!here>") && !slack.contains("<@U123>"));
    assert!(!slack.contains("<script>"));

    // The webhook carries the text unchanged, 20 KB stack trace included.
    let webhook = parse(&renderer.render("webhook", &event).unwrap().body);
    assert_eq!(webhook["data"]["watch"], event.watch.as_str());
    assert_eq!(
        webhook["data"]["items"][0]["error"],
        event.items[0].error.as_deref().unwrap()
    );

    // DingTalk keeps only the start of the trace, as a quote with markdown escaped, and stays
    // under its byte limit.
    let ding = renderer.render("dingtalk", &event).unwrap().body;
    assert!(ding.len() < limits::DINGTALK_BODY_LIMIT - 120);
    let ding = parse(&ding);
    let text = ding["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains("> java.lang.RuntimeException: quote \" backslash \\\\ newline  \n> "),
        "{text}"
    );
    assert!(text.contains("<\u{200B}!channel>") && !text.contains("<!channel>"));
    assert!(text.contains('…'));

    // WeCom: no `<@user>` mention can form, and the markdown fits 4096 bytes.
    let wecom = parse(&renderer.render("wecom", &event).unwrap().body);
    let content = wecom["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= limits::WECOM_MARKDOWN_MAX);
    assert!(
        !content.contains("<@") && !content.contains("<script"),
        "{content}"
    );

    // Feishu: DBS text only ever sits in plain_text elements.
    let feishu = renderer.render("feishu", &event).unwrap().body;
    assert!(feishu.len() <= limits::FEISHU_BODY_LIMIT - 120);
    assert!(!feishu.contains("lark_md"), "{feishu}");
}

#[test]
fn long_values_are_cut_to_slack_limits() {
    let mut event = sample("precheck.failed");
    event.watch = "&".repeat(500);
    event.items = (0..14)
        .map(|n| Item {
            code: Some(format!("CHECK_{n}")),
            state: Some("failed".into()),
            error: Some("<".repeat(5000)),
            ..Item::default()
        })
        .collect();
    let renderer = builtins();
    let body = parse(&renderer.render("slack", &event).unwrap().body);
    let blocks = body["blocks"].as_array().unwrap();
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(
        header.chars().count() <= limits::SLACK_HEADER_MAX,
        "{header}"
    );
    assert!(header.ends_with('…'));
    let sections = blocks
        .iter()
        .filter(|b| {
            b["text"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("*CHECK_"))
        })
        .count();
    assert_eq!(sections, 10);
    assert!(readable_text(&body).contains("… and 4 more checks"));
    // The same event fits DingTalk's byte budget too.
    renderer.render("dingtalk", &event).unwrap();
}

#[test]
fn a_typo_in_a_custom_template_is_reported_by_check_and_falls_back_at_run_time() {
    let (_dir, path) = template_file("{\n  \"text\": \"{{watchname}}\"\n}\n");
    let renderer = Renderer::new(&[channel("ops-slack", ChannelKind::Slack, Some(path.clone()))])
        .expect("it parses");

    let errors = renderer.check();
    assert_eq!(
        errors.len(),
        1,
        "reported once, not once per sample: {errors:?}"
    );
    let e = &errors[0];
    assert_eq!(e.problem, Problem::Render);
    assert_eq!(e.channel, "ops-slack");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.sample.as_deref(), Some("precheck.started"));
    let shown = e.to_string();
    assert!(shown.contains("channel `ops-slack`"), "{shown}");
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains("unknown field `watchname`"), "{shown}");
    assert!(shown.contains("line 2"), "{shown}");

    let event = sample("precheck.failed");
    let rendered = renderer.render("ops-slack", &event).unwrap();
    let reason = rendered.fallback_reason.expect("fell back");
    assert!(reason.contains("watchname"), "{reason}");
    // The message itself says so, and is otherwise the built-in one.
    let body = parse(&rendered.body);
    let text = readable_text(&body);
    assert!(
        text.contains("⚠ custom template failed: channel `ops-slack`, template "),
        "{text}"
    );
    assert!(text.contains("unknown field `watchname`"), "{text}");
    assert!(text.contains("; built-in template used"), "{text}");
    let builtin = parse(&builtins().render("slack", &event).unwrap().body);
    assert_eq!(body["text"], builtin["text"]);
    assert_eq!(body["blocks"][0], builtin["blocks"][0]);
    // The temporary folder differs per run; the snapshot shows where the path goes.
    let pretty = serde_json::to_string_pretty(&body)
        .unwrap()
        .replace(&path.display().to_string(), "/etc/dbswatch/slack.hbs");
    insta::assert_snapshot!("fallback_notice__slack", pretty);
}

#[test]
fn the_fallback_notice_speaks_the_channel_language_on_every_kind() {
    let (_dir, path) = template_file("{\"text\": \"{{nope}}\"}");
    let channels: Vec<ChannelTemplate> = KINDS
        .iter()
        .map(|k| ChannelTemplate {
            template: Some(path.clone()),
            ..chinese(k.as_str(), *k)
        })
        .collect();
    let renderer = Renderer::new(&channels).unwrap();
    for kind in KINDS {
        let rendered = renderer
            .render(kind.as_str(), &sample("restore.failed"))
            .unwrap();
        assert!(rendered.fallback_reason.is_some());
        let text = readable_text(&parse(&rendered.body));
        assert!(
            text.contains("自定义模板渲染失败") && text.contains("已改用内置模板"),
            "{kind:?}: {text}"
        );
    }
}

#[test]
fn a_body_that_would_be_too_big_shows_fewer_items_instead_of_failing() {
    // 300 mentions leave DingTalk little room; ten long errors no longer fit.
    let mut ding = channel("ding", ChannelKind::Dingtalk, None);
    ding.at_mobiles = (0..300).map(|n| format!("1380000{n:04}")).collect();
    let renderer = Renderer::new(&[ding]).unwrap();
    let mut event = sample("precheck.failed");
    event.items = (0..10)
        .map(|n| Item {
            code: Some(format!("CHECK_{n}")),
            state: Some("failed".into()),
            error: Some("告警".repeat(2000)),
            ..Item::default()
        })
        .collect();
    let rendered = renderer.render("ding", &event).unwrap();
    let body = parse(&rendered.body);
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("**CHECK\\_0**"), "{text}");
    assert!(!text.contains("**CHECK\\_9**"), "fewer items shown");
    assert!(text.contains("more checks"), "{text}");
    let budget = Budget::for_channel(ChannelKind::Dingtalk, &renderer_mobiles(), None);
    assert!(rendered.body.len() <= limits::DINGTALK_BODY_LIMIT - budget.reserve);
}

fn renderer_mobiles() -> Vec<String> {
    (0..300).map(|n| format!("1380000{n:04}")).collect()
}

#[test]
fn a_syntax_error_is_reported_by_new_with_channel_and_position() {
    let (_dir, path) = template_file("{\n  \"text\": \"{{#if watch}}x\"\n}\n");
    let errors = Renderer::new(&[channel("ding", ChannelKind::Dingtalk, Some(path))])
        .expect_err("unclosed block");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].problem, Problem::Syntax);
    assert_eq!(errors[0].channel, "ding");
    assert!(errors[0].line.is_some(), "{:?}", errors[0]);
    assert!(errors[0].message.contains("unclosed"), "{}", errors[0]);
    assert!(
        errors[0]
            .to_string()
            .starts_with("channel `ding`, template ")
    );
}

#[test]
fn a_mismatched_block_names_both_helpers() {
    let (_dir, path) = template_file("{\"text\": \"{{#if watch}}x{{/each}}\"}");
    let errors = Renderer::new(&[channel("s", ChannelKind::Slack, Some(path))]).unwrap_err();
    assert_eq!(errors[0].problem, Problem::Syntax);
    assert!(
        errors[0]
            .message
            .contains("\"if\" was opened, but \"each\" is closing"),
        "{}",
        errors[0]
    );
}

#[test]
fn new_reports_every_problem_at_once() {
    let (_a, bad_syntax) = template_file("{{#each items}}");
    let (_b, fine) = template_file("{\"text\": \"{{title}}\"}");
    let missing = PathBuf::from("/nonexistent/dbswatch/template.hbs");
    let errors = Renderer::new(&[
        channel("a", ChannelKind::Slack, Some(bad_syntax)),
        channel("b", ChannelKind::Webhook, Some(missing)),
        channel("c", ChannelKind::Slack, Some(fine.clone())),
        channel("c", ChannelKind::Slack, Some(fine)),
    ])
    .expect_err("three problems");
    assert!(errors[0].message.contains("syntax error"), "{}", errors[0]);
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.channel.as_str(), e.problem))
        .collect();
    assert_eq!(
        found,
        [
            ("a", Problem::Syntax),
            ("b", Problem::Read),
            ("c", Problem::DuplicateChannel)
        ]
    );
}

#[test]
fn a_working_custom_template_is_used_as_is() {
    let (_dir, path) = template_file(
        "{\"msgtype\": \"text\", \"text\": {\"content\": \"{{upper severity}} {{title}} {{mentions}}\"}}",
    );
    let mut ding = channel("ding", ChannelKind::Dingtalk, Some(path));
    ding.at_mobiles = vec!["13800000000".into()];
    let renderer = Renderer::new(&[ding]).unwrap();
    assert_eq!(renderer.check(), Vec::<RenderError>::new());
    let rendered = renderer
        .render("ding", &sample("restore.completed"))
        .unwrap();
    assert_eq!(rendered.fallback_reason, None);
    assert_eq!(
        rendered.body,
        r#"{"msgtype":"text","text":{"content":"SUCCESS Restore completed: orders-restore @13800000000"}}"#
    );
}

#[test]
fn raw_values_in_a_custom_template_are_caught_by_the_hostile_sample() {
    let (_dir, path) = template_file("{\"watch\": \"{{{watch}}}\", \"id\": \"{{event_id}}\"}");
    let renderer = Renderer::new(&[channel("hook", ChannelKind::Webhook, Some(path))]).unwrap();
    let errors = renderer.check();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].problem, Problem::NotJson);
    assert_eq!(errors[0].sample.as_deref(), Some("with hostile text"));
    assert!(errors[0].to_string().contains("not JSON"), "{}", errors[0]);

    // Ordinary events still use the custom template; hostile ones fall back.
    let fine = renderer.render("hook", &sample("precheck.failed")).unwrap();
    assert_eq!(fine.fallback_reason, None);
    assert_eq!(parse(&fine.body)["watch"], "orders-db");
    let hostile = renderer.render("hook", &hostile_event()).unwrap();
    assert!(hostile.fallback_reason.is_some());
    let body = parse(&hostile.body);
    assert_eq!(body["version"], "1");
    let notice = body["notice"].as_str().unwrap();
    assert!(
        notice.starts_with("⚠ custom template failed: channel `hook`"),
        "{notice}"
    );
}

#[test]
fn slack_limits_apply_to_custom_templates() {
    let (_dir, path) = template_file(
        "{\"blocks\": [{\"type\": \"header\", \"text\": {\"type\": \"plain_text\", \
         \"text\": \"{{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}} {{watch}}\"}}]}",
    );
    let renderer = Renderer::new(&[channel("s", ChannelKind::Slack, Some(path))]).unwrap();
    let errors = renderer.check();
    assert!(
        errors
            .iter()
            .any(|e| e.problem == Problem::Limit && e.message.contains("header")),
        "{errors:?}"
    );
}

#[test]
fn unknown_channel_is_an_error() {
    let err = builtins()
        .render("nope", &sample("precheck.failed"))
        .unwrap_err();
    assert_eq!(err.problem, Problem::UnknownChannel);
    assert!(err.to_string().contains("`nope`"));
}

#[test]
fn cloudevents_channels_need_the_event_attributes() {
    let (_dir, path) = template_file("{\"text\": \"{{title}}\"}");
    let hook = ChannelTemplate {
        cloudevents: true,
        template: Some(path),
        ..ChannelTemplate::new("ce", ChannelKind::Webhook)
    };
    let renderer = Renderer::new(&[hook]).unwrap();
    let errors = renderer.check();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].problem, Problem::Limit);
    assert!(errors[0].message.contains("string `id`"), "{}", errors[0]);
    let builtin = Renderer::new(&[ChannelTemplate {
        cloudevents: true,
        ..ChannelTemplate::new("ce", ChannelKind::Webhook)
    }])
    .unwrap();
    assert_eq!(builtin.check(), Vec::<RenderError>::new());
}

#[test]
fn times_follow_the_channel_time_zone() {
    let renderer = Renderer::new(&[
        channel("utc", ChannelKind::Dingtalk, None),
        chinese("beijing", ChannelKind::Dingtalk),
    ])
    .unwrap();
    let event = sample("precheck.failed");
    let utc = renderer.render("utc", &event).unwrap().body;
    let beijing = renderer.render("beijing", &event).unwrap().body;
    assert!(utc.contains("2025-12-03 00:00:05 UTC"), "{utc}");
    assert!(
        beijing.contains("2025-12-03 08:00:05 UTC+08:00"),
        "{beijing}"
    );
}

#[test]
fn webhook_builtin_emits_exactly_the_payload() {
    let renderer = builtins();
    for event in sample_events() {
        let body = renderer.render("webhook", &event).unwrap().body;
        assert_eq!(parse(&body), webhook_payload(&event), "{}", event.kind());
    }
}

#[test]
fn every_kind_has_a_sample() {
    assert_eq!(sample_events().len(), ALL_KINDS.len());
}

#[test]
fn renderer_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Renderer>();
}

/// The merged sample as the delivery pass hands it over: every change, oldest first.
fn merged_events() -> (Vec<Event>, usize) {
    let (head, mut others, muted) = merged_sample();
    others.push(head);
    (others, muted)
}

#[test]
fn merged_message_snapshots_in_both_languages() {
    for (lang, renderer) in [("en", builtins()), ("zh_CN", chinese_builtins())] {
        for kind in KINDS {
            let (events, muted) = merged_events();
            let rendered = renderer
                .render_group(kind.as_str(), &events, muted)
                .unwrap();
            assert_eq!(rendered.fallback_reason, None);
            let body = parse(&rendered.body);
            insta::assert_snapshot!(
                format!("merged__{lang}__{}", kind.as_str()),
                serde_json::to_string_pretty(&body).unwrap()
            );
        }
    }
}

#[test]
fn a_group_of_one_renders_exactly_like_a_single_event() {
    for renderer in [builtins(), chinese_builtins()] {
        for kind in KINDS {
            for event in sample_events() {
                let single = renderer.render(kind.as_str(), &event).unwrap().body;
                let group = renderer
                    .render_group(kind.as_str(), std::slice::from_ref(&event), 0)
                    .unwrap()
                    .body;
                assert_eq!(single, group, "{kind:?} {}", event.kind());
            }
        }
    }
}

#[test]
fn merged_messages_say_how_many_changes_they_cover_and_what_was_muted() {
    let (events, muted) = merged_events();
    let cases = [
        (
            builtins(),
            "This message covers 3 changes",
            "🔇 2 repeats muted",
        ),
        (
            chinese_builtins(),
            "本消息汇总了 3 个变化",
            "已静默 2 次重复",
        ),
    ];
    for (renderer, covers, muted_note) in cases {
        for kind in [
            ChannelKind::Slack,
            ChannelKind::Dingtalk,
            ChannelKind::Feishu,
            ChannelKind::Wecom,
        ] {
            let body = parse(
                &renderer
                    .render_group(kind.as_str(), &events, muted)
                    .unwrap()
                    .body,
            );
            let text = readable_text(&body);
            assert!(text.contains(covers), "{kind:?}: {text}");
            assert!(text.contains(muted_note), "{kind:?}: {text}");
            // The failed pre-check leads, in full: its checks and errors are there.
            assert!(text.contains("PASSOWRD"), "{kind:?}: {text}");
            // The earlier changes are listed by their headline.
            let started = View::new(&events[0], &ViewOptions::plain("x")).headline;
            if renderer.channels[0].spec.language == Language::En {
                assert!(text.contains(&started), "{kind:?}: {text}");
            }
        }
    }
    let hook = parse(
        &builtins()
            .render_group("webhook", &events, muted)
            .unwrap()
            .body,
    );
    assert_eq!(hook["type"], "precheck.failed");
    assert_eq!(hook["digest"]["count"], 3);
    assert_eq!(hook["digest"]["events"][0]["type"], "precheck.started");
    assert_eq!(hook["muted_repeats"], 2);
}

#[test]
fn the_headline_of_a_merge_is_the_newest_change_that_says_where_the_run_stands() {
    let pick = |kind: &str| sample(kind);
    let events = vec![
        pick("precheck.started"),
        pick("precheck.failed"),
        pick("precheck.item_changed"),
        pick("precheck.progress"),
    ];
    assert_eq!(headline_index(&events), Some(1));
    let chatty = vec![pick("precheck.item_changed"), pick("precheck.progress")];
    assert_eq!(headline_index(&chatty), Some(1));
    assert_eq!(headline_index(&[]), None);
    assert!(builtins().render_group("slack", &[], 0).is_err());
}

#[test]
fn a_long_backlog_is_shortened_to_fit_every_receiver() {
    // 300 changes of one watch after a long outage, each with a long hostile headline.
    let hostile = hostile_event();
    let mut events: Vec<Event> = (0..300)
        .map(|n| {
            let mut e = sample("precheck.item_changed");
            e.id = format!("e{n}");
            e.watch = hostile.watch.clone();
            if let Some(change) = &mut e.item_change {
                change.item.code = Some(format!("CHECK_{n}_{}", "X".repeat(200)));
            }
            e
        })
        .collect();
    events.push(hostile);
    for renderer in [builtins(), chinese_builtins()] {
        for kind in KINDS {
            let rendered = renderer.render_group(kind.as_str(), &events, 7).unwrap();
            let body = parse(&rendered.body);
            if kind != ChannelKind::Webhook {
                let text = readable_text(&body);
                assert!(
                    text.contains("more changes") || text.contains("个变化未显示"),
                    "{kind:?} says how many are not listed: {text}"
                );
            }
        }
    }
}
