//! Renderer tests: built-in templates on every sample, hostile text, custom templates, strict
//! mode, fallback, limits, and snapshots of every built-in template for every event kind.

use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::event::ALL_KINDS;
use crate::snapshot::Item;

const KINDS: [ChannelKind; 3] = [
    ChannelKind::Slack,
    ChannelKind::Dingtalk,
    ChannelKind::Webhook,
];

fn channel(name: &str, kind: ChannelKind, template: Option<PathBuf>) -> ChannelTemplate {
    ChannelTemplate {
        name: name.into(),
        kind,
        template,
        at_mobiles: Vec::new(),
    }
}

fn builtins() -> Renderer {
    Renderer::new(&KINDS.map(|k| channel(k.as_str(), k, None))).expect("built-ins compile")
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

/// The DingTalk markdown text or the concatenated Slack texts: what a person reads.
fn readable_text(kind: ChannelKind, body: &Value) -> String {
    match kind {
        ChannelKind::Slack => {
            let mut out = body["text"].as_str().unwrap_or_default().to_string();
            for block in body["blocks"].as_array().expect("blocks") {
                out.push('\n');
                out.push_str(block["text"]["text"].as_str().unwrap_or_default());
                for field in block["fields"].as_array().into_iter().flatten() {
                    out.push('\n');
                    out.push_str(field["text"].as_str().unwrap_or_default());
                }
                for el in block["elements"].as_array().into_iter().flatten() {
                    out.push('\n');
                    out.push_str(el["text"].as_str().unwrap_or_default());
                }
            }
            out
        }
        ChannelKind::Dingtalk => body["markdown"]["text"].as_str().unwrap().to_string(),
        ChannelKind::Webhook => body.to_string(),
    }
}

#[test]
fn builtin_templates_render_every_sample_as_compact_json() {
    let renderer = builtins();
    for kind in KINDS {
        for event in sample_events() {
            let rendered = renderer.render(kind.as_str(), &event).unwrap();
            assert_eq!(rendered.fallback_reason, None);
            let body = parse(&rendered.body);
            assert_eq!(rendered.body, body.to_string(), "body is compact");
            if kind == ChannelKind::Dingtalk {
                // The keyword DingTalk robots with keyword security can be set to.
                let text = body["markdown"]["text"].as_str().unwrap();
                assert!(text.contains("dbswatch"), "{text}");
            }
        }
    }
}

#[test]
fn builtin_templates_pass_check() {
    assert_eq!(builtins().check(), Vec::<RenderError>::new());
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
            let text = readable_text(channel, &body);
            assert!(
                text.contains(event.target.id()),
                "{channel:?} {kind}: {text}"
            );
            for item in &event.items {
                let code = item.code.as_deref().unwrap();
                let error = item.error.as_deref().unwrap();
                let error = match channel {
                    ChannelKind::Slack => slack_entities(error).into_owned(),
                    ChannelKind::Webhook => json_string(error),
                    ChannelKind::Dingtalk => error.to_string(),
                };
                assert!(text.contains(code), "{channel:?} {kind} lacks {code}");
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
        let text = readable_text(kind, &body);
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

    // DingTalk keeps only the start of the trace, as a quote, and stays under its byte limit.
    let ding = renderer.render("dingtalk", &event).unwrap().body;
    assert!(ding.len() < limits::DINGTALK_BODY_MAX);
    let text = readable_text(ChannelKind::Dingtalk, &parse(&ding));
    assert!(text.contains("> java.lang.RuntimeException: quote \" backslash \\ newline  \n> "));
    assert!(text.contains('…'));
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
    assert!(readable_text(ChannelKind::Slack, &body).contains("Showing 10 of 14 items."));
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
    assert_eq!(
        rendered.body,
        builtins().render("slack", &event).unwrap().body
    );
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
    assert_eq!(parse(&hostile.body)["version"], "1");
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
