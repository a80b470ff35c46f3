//! Hand-built sample events, one per kind, shaped like the fixtures in `tests/fixtures/`.
//!
//! `check-config` renders every template against these in strict mode, `render --event KIND`
//! previews them, and the snapshot tests pin the built-in templates with them. They are fixed
//! data (no clock, fixed ids) so previews and snapshots never change between runs.

use crate::event::{ALL_KINDS, Change, Event, ItemChange, PollHealth};
use crate::snapshot::{Item, RestorePhase, RestoreTruth, Scope, Target};

/// 2025-12-03T00:00:00Z, the BootTime of the first item in the fixtures.
const T0: i64 = 1_764_720_000_000;

const PLAN: &str = "dbstooi01XXXX";
const PLAN_JOB: &str = "qxwmxh2b1234";
const TASK: &str = "dbasdsa01XXXX";
const TASK_JOB: &str = "r1iv62ud7k3m";

/// One realistic event per kind in [`ALL_KINDS`], in that order.
pub fn sample_events() -> Vec<Event> {
    ALL_KINDS
        .iter()
        .enumerate()
        .map(|(n, kind)| sample(kind, n))
        .collect()
}

fn sample(kind: &str, n: usize) -> Event {
    let (scope, change) = kind.split_once('.').expect("kinds are scope.change");
    let id = format!(
        "7d3f9a4e-2c1b-4e8a-9f6d-{:012x}",
        0xa1b2c3d40000u64 + n as u64
    );
    match (scope, change) {
        ("precheck", change) => precheck(id, change),
        ("poll", change) => poll(id, change),
        (_, change) => restore(id, change),
    }
}

fn precheck(id: String, change: &str) -> Event {
    let base = Event {
        id,
        scope: Scope::Precheck,
        change: Change::Started,
        watch: "orders-db".into(),
        target: Target::BackupPlan(PLAN.into()),
        status_before: Some("running".into()),
        status: Some("running".into()),
        progress_before: Some(40),
        progress: Some(40),
        items: Vec::new(),
        item_change: None,
        item_total: 3,
        observed_at_ms: T0,
        job_error: None,
        restore_task: None,
        poll: None,
    };
    match change {
        "started" => Event {
            status_before: None,
            progress_before: None,
            progress: Some(10),
            ..base
        },
        "item_changed" => {
            let item = binlog_warning();
            Event {
                change: Change::ItemChanged,
                items: vec![item.clone()],
                item_change: Some(ItemChange {
                    item,
                    previous_state: Some("running".into()),
                }),
                observed_at_ms: T0 + 2_000,
                ..base
            }
        }
        "progress" => Event {
            change: Change::Progress,
            progress: Some(70),
            observed_at_ms: T0 + 4_000,
            ..base
        },
        "failed" => Event {
            change: Change::Failed,
            status: Some("failed".into()),
            progress: Some(100),
            items: vec![binlog_warning(), password_failed()],
            observed_at_ms: T0 + 5_000,
            ..base
        },
        "passed" => Event {
            change: Change::Passed,
            status: Some("finish".into()),
            progress_before: Some(50),
            progress: Some(100),
            item_total: 2,
            observed_at_ms: T0 + 2_000,
            ..base
        },
        "retired" => Event {
            change: Change::Retired,
            status_before: Some("finish".into()),
            status: Some("finish".into()),
            progress_before: Some(100),
            progress: Some(100),
            observed_at_ms: T0 + 7_000,
            ..base
        },
        _ => Event {
            change: Change::StatusChanged,
            status: Some("paused".into()),
            observed_at_ms: T0 + 6_000,
            ..base
        },
    }
}

fn restore(id: String, change: &str) -> Event {
    let base = Event {
        id,
        scope: Scope::Restore,
        change: Change::Started,
        watch: "orders-restore".into(),
        target: Target::RestoreTask(TASK.into()),
        status_before: Some("running".into()),
        status: Some("running".into()),
        progress_before: Some(80),
        progress: Some(80),
        items: Vec::new(),
        item_change: None,
        item_total: 2,
        observed_at_ms: T0 + 3_000,
        job_error: None,
        restore_task: None,
        poll: None,
    };
    match change {
        "started" => Event {
            status_before: None,
            progress_before: None,
            progress: Some(20),
            ..base
        },
        "item_changed" => {
            let item = full_restore("finish", None);
            Event {
                change: Change::ItemChanged,
                progress: Some(100),
                items: vec![item.clone()],
                item_change: Some(ItemChange {
                    item,
                    previous_state: Some("running".into()),
                }),
                observed_at_ms: T0 + 3_601_000,
                ..base
            }
        }
        "progress" => Event {
            change: Change::Progress,
            progress_before: Some(20),
            observed_at_ms: T0 + 1_800_000,
            ..base
        },
        "failed" => Event {
            change: Change::Failed,
            status: Some("failed".into()),
            items: vec![full_restore(
                "failed",
                Some(
                    "ERROR 1045 (28000): Access denied for user 'dbs'@'10.0.0.12' \
                     (using password: YES)",
                ),
            )],
            observed_at_ms: T0 + 3_601_000,
            ..base
        },
        "completed" => Event {
            change: Change::Completed,
            status: Some("finish".into()),
            progress: Some(100),
            observed_at_ms: T0 + 3_601_000,
            ..base
        },
        "paused" => Event {
            change: Change::Paused,
            status: Some("pause".into()),
            progress_before: Some(50),
            progress: Some(50),
            observed_at_ms: T0 + 2_000_000,
            restore_task: Some(RestoreTruth {
                status: Some("pause".into()),
                phases: vec![
                    RestorePhase {
                        name: "structure_before_data".into(),
                        progress: 100,
                    },
                    RestorePhase {
                        name: "full_data".into(),
                        progress: 40,
                    },
                    RestorePhase {
                        name: "structure_after_data".into(),
                        progress: 0,
                    },
                    RestorePhase {
                        name: "incremental".into(),
                        progress: 0,
                    },
                ],
                error: None,
            }),
            ..base
        },
        "retired" => Event {
            change: Change::Retired,
            status_before: Some("finish".into()),
            status: Some("finish".into()),
            progress_before: Some(100),
            progress: Some(100),
            observed_at_ms: T0 + 7_200_000,
            ..base
        },
        _ => Event {
            change: Change::StatusChanged,
            status: Some("paused".into()),
            observed_at_ms: T0 + 1_900_000,
            ..base
        },
    }
}

fn binlog_warning() -> Item {
    Item {
        job_id: Some(PLAN_JOB.into()),
        code: Some("CHECK_BINLOG_ON".into()),
        group: Some("CHECK_BINLOG_ON_DETAIL".into()),
        order: Some("30".into()),
        state: Some("warning".into()),
        error: Some("java.lang.RuntimeException: Could not find any schema ......".into()),
        boot_time: Some(T0 + 1_000),
        finish_time: Some(T0 + 2_000),
    }
}

fn password_failed() -> Item {
    Item {
        job_id: Some(PLAN_JOB.into()),
        code: Some("CHECK_MYSQL_PASSOWRD_FORMAT".into()),
        group: Some("CHECK_MYSQL_PASSOWRD_FORMAT_DETAIL".into()),
        order: Some("90".into()),
        state: Some("failed".into()),
        error: Some("password of user \"dbs\" contains unsupported characters: <&>".into()),
        boot_time: Some(T0 + 2_000),
        finish_time: Some(T0 + 3_000),
    }
}

fn full_restore(state: &str, error: Option<&str>) -> Item {
    Item {
        job_id: Some(TASK_JOB.into()),
        code: Some("FULL_DATA_RESTORE".into()),
        group: Some("FULL_DATA_RESTORE_DETAIL".into()),
        order: Some("20".into()),
        state: Some(state.into()),
        error: error.map(str::to_string),
        boot_time: Some(T0 + 2_000),
        finish_time: Some(T0 + 3_600_000),
    }
}

/// Poll health of the pre-check watch: three polls refused with a wrong AccessKey secret, then
/// the first poll that worked again.
fn poll(id: String, change: &str) -> Event {
    let message = "DBS rejected the request signature: SignatureDoesNotMatch: Specified signature \
                   is not matched with our calculation (HTTP 400, RequestId \
                   8A3C55D8-0C1B-4C6E-9E2A-3E6F0C1B2D4E); the AccessKey secret is wrong for this \
                   AccessKey id; check ALIBABA_CLOUD_ACCESS_KEY_SECRET (copy it again from the RAM \
                   console; a stray space or newline is enough to break it)";
    let health = PollHealth {
        failures: 3,
        since_ms: T0 + 60_000,
        error_kind: Some("signature".into()),
        code: Some("SignatureDoesNotMatch".into()),
        message: message.into(),
        hint: "the AccessKey secret is wrong for this AccessKey id; check \
               ALIBABA_CLOUD_ACCESS_KEY_SECRET (copy it again from the RAM console; a stray space \
               or newline is enough to break it)"
            .into(),
    };
    let failed = Event {
        id,
        scope: Scope::Precheck,
        change: Change::PollFailed,
        watch: "orders-db".into(),
        target: Target::BackupPlan(PLAN.into()),
        status_before: Some("running".into()),
        status: Some("running".into()),
        progress_before: Some(40),
        progress: Some(40),
        items: Vec::new(),
        item_change: None,
        item_total: 3,
        observed_at_ms: T0 + 180_000,
        poll: Some(health),
        job_error: None,
        restore_task: None,
    };
    match change {
        "failed" => failed,
        _ => Event {
            change: Change::PollRecovered,
            observed_at_ms: T0 + 600_000,
            poll: failed.poll.clone().map(|p| PollHealth { failures: 5, ..p }),
            ..failed
        },
    }
}

/// A merged message as the delivery pass builds one: the failed pre-check leads, the start and
/// a check's change came earlier, and two flapping repeats were muted. Returns (headline,
/// others oldest first, muted).
pub fn merged_sample() -> (Event, Vec<Event>, usize) {
    let pick = |kind: &str| {
        sample_events()
            .into_iter()
            .find(|e| e.kind() == kind)
            .expect("every kind has a sample")
    };
    let head = pick("precheck.failed");
    let others = vec![pick("precheck.started"), pick("precheck.item_changed")];
    (head, others, 2)
}

/// The event a `dbswatch test-channel` message shows: a failed pre-check of a watch named
/// `dbswatch test message`, so every part of the layout (header, fields, items, errors) is
/// visible. The renderer adds the test marks (title prefix and notice); `id` should be fresh
/// for every test so receivers that deduplicate by event id show each one.
pub fn test_event(id: &str) -> Event {
    let failed = sample("precheck.failed", 3);
    Event {
        id: id.to_string(),
        watch: "dbswatch test message".into(),
        ..failed
    }
}

/// A failed pre-check whose watch name and error texts hold everything that has broken
/// notification templates elsewhere: quotes, backslashes, control characters, Slack control
/// sequences, markdown, HTML, emoji, CJK and a 20 KB Java stack trace. `check-config` renders
/// it too, so a custom template that uses `{{{raw}}}` where it should not is caught before a
/// real DBS error text breaks it at 3 a.m.
pub fn hostile_event() -> Event {
    let nasty = "quote \" backslash \\ newline \n tab \t ctrl \u{1} \u{1f} <script>alert('x')</script> \
                 <!channel> <!here> <@U123> *_#>[`~ We've 🚨 告警：订单库 \u{2028}";
    let mut trace = format!("java.lang.RuntimeException: {nasty}\n");
    let mut frame = 0;
    while trace.len() < 20 * 1024 {
        trace.push_str(&format!(
            "\tat com.aliyun.dbs.precheck.SchemaChecker.check$lambda{frame}(SchemaChecker.java:{})\n",
            100 + frame
        ));
        frame += 1;
    }
    let item = |code: &str, state: &str, error: String| Item {
        job_id: Some(PLAN_JOB.into()),
        code: Some(code.into()),
        group: Some(format!("{code}_DETAIL <&>")),
        order: Some("30".into()),
        state: Some(state.into()),
        error: Some(error),
        boot_time: Some(T0),
        finish_time: Some(T0 + 3_602_000),
    };
    Event {
        id: "00000000-0000-4000-8000-00000000dead".into(),
        scope: Scope::Precheck,
        change: Change::Failed,
        watch: format!("orders \"prod\" <!channel> \\ {nasty}"),
        target: Target::BackupPlan(PLAN.into()),
        status_before: Some("running".into()),
        status: Some("failed".into()),
        progress_before: Some(40),
        progress: Some(100),
        items: vec![
            item("CHECK_BINLOG_ON", "warning", trace),
            item("CHECK_MYSQL_PASSOWRD_FORMAT", "failed", nasty.to_string()),
            item("CHECK_NOTHING", "catched", String::new()),
        ],
        item_change: None,
        item_total: 12,
        observed_at_ms: T0,
        job_error: None,
        restore_task: None,
        poll: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_kind_in_order() {
        let kinds: Vec<String> = sample_events().iter().map(Event::kind).collect();
        assert_eq!(kinds, ALL_KINDS);
    }

    #[test]
    fn samples_have_distinct_ids_and_the_right_target() {
        let samples = sample_events();
        let mut ids: Vec<_> = samples.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), samples.len());
        for e in &samples {
            assert_eq!(e.target.scope(), e.scope, "{}", e.kind());
        }
    }

    #[test]
    fn failed_precheck_sample_matches_the_fixture() {
        let failed = sample_events()
            .into_iter()
            .find(|e| e.kind() == "precheck.failed")
            .unwrap();
        assert_eq!(failed.target.id(), "dbstooi01XXXX");
        assert!(failed.items.iter().all(Item::is_problem));
        assert_eq!(
            failed.items[1].error.as_deref(),
            Some("password of user \"dbs\" contains unsupported characters: <&>")
        );
    }

    #[test]
    fn item_changed_samples_carry_their_item() {
        for e in sample_events()
            .iter()
            .filter(|e| e.change == Change::ItemChanged)
        {
            let change = e.item_change.as_ref().expect("item_change");
            assert_eq!(e.items, vec![change.item.clone()]);
        }
    }

    #[test]
    fn the_test_event_says_what_it_is() {
        let e = test_event("t-1");
        assert_eq!(e.id, "t-1");
        assert_eq!(e.watch, "dbswatch test message");
        assert_eq!(e.kind(), "precheck.failed");
        assert!(!e.items.is_empty());
    }

    #[test]
    fn hostile_event_is_hostile() {
        let e = hostile_event();
        assert!(e.items[0].error.as_ref().unwrap().len() >= 20 * 1024);
        assert!(e.watch.contains("<!channel>") && e.watch.contains('"'));
    }
}
