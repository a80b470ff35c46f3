//! The pure steps of one poll, each timed on its own with criterion:
//! `cargo bench --bench core` (add a filter such as `-- diff/` to run some of them).
//!
//! Inputs are the recorded DBS answers in `tests/fixtures/precheck-fails/` (a backup-plan
//! pre-check that ends `failed`), so the sizes are those of a real poll:
//!
//! - `sign/describe_precheck`: the parameter list of one `DescribePreCheckProgressList` attempt
//!   (AccessKey without STS token, fixed nonce and timestamp), canonicalised and signed
//!   (Signature V1, HMAC-SHA1) into the wire query string.
//! - `normalise/precheck_fail_body`: the `failed` body (3 items, two with `ErrMsg`) through
//!   `dbs::response::interpret`, which the client calls: JSON parse, error decisions, snapshot.
//! - `snapshot/canonical_json`, `snapshot/content_hash`: the change detector on that snapshot
//!   (the hash includes the canonical JSON it digests).
//! - `diff/unchanged`: two polls that differ only in `RequestId`; `diff/precheck_failed`: the
//!   last two polls (one item running -> warning, one init -> failed, progress 40 -> 100, Status
//!   running -> failed: four events).
//! - `render/{slack,dingtalk,webhook}_precheck_failed`: that `precheck.failed` event rendered
//!   with each channel's built-in template and default options (English, UTC, no CloudEvents).
//!
//! Criterion is built without default features: no plotting and no HTML reports, only the
//! terminal summary (and its saved baselines under the target directory).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dbswatch::dbs::client::request_params;
use dbswatch::dbs::response::{Reply, interpret};
use dbswatch::dbs::sign::signed_query;
use dbswatch::dbs::{ACTION, Credentials};
use dbswatch::diff::{DiffContext, diff};
use dbswatch::event::{Change, Event};
use dbswatch::notify::ChannelKind;
use dbswatch::render::{ChannelTemplate, Renderer};
use dbswatch::snapshot::{Snapshot, Target};

/// Running, one item finished (progress 40).
const RUNNING: &str = include_str!("../tests/fixtures/precheck-fails/02.json");
/// The same content as `RUNNING`; only `RequestId` differs.
const RUNNING_AGAIN: &str = include_str!("../tests/fixtures/precheck-fails/03.json");
/// Status `failed`: one item `warning`, one `failed` (ErrMsg with quotes and `<&>`).
const FAILED: &str = include_str!("../tests/fixtures/precheck-fails/04.json");

const WATCH: &str = "orders-db";
const PLAN_ID: &str = "dbstooi01XXXX";
/// When the `failed` poll finished, a few seconds after its last item (epoch ms).
const OBSERVED_AT_MS: i64 = 1_764_720_005_000;
/// Event ids are UUIDs in production; a fixed one keeps the work the same on every iteration.
const EVENT_ID: &str = "7d3f9a4e-2c1b-4e8a-9f6d-a1b2c3d40003";

fn target() -> Target {
    Target::BackupPlan(PLAN_ID.to_string())
}

fn snapshot(body: &str) -> Snapshot {
    interpret(Reply::new(200, body))
        .expect("fixture is an answer")
        .snapshot
}

fn events(prev: &Snapshot, next: &Snapshot, target: &Target) -> Vec<Event> {
    let mut next_id = || EVENT_ID.to_string();
    let mut ctx = DiffContext {
        watch: WATCH,
        target,
        observed_at_ms: OBSERVED_AT_MS,
        next_id: &mut next_id,
    };
    diff(Some(prev), next, &mut ctx)
}

fn sign(c: &mut Criterion) {
    let credentials = Credentials::new("LTAI5tBenchKeyId0000", "BenchSecretBenchSecretBench123");
    let target = target();
    let extra = [(target.param_name(), target.id().to_string())];
    let nonce = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let timestamp = "2026-12-03T08:00:00Z";
    c.bench_function("sign/describe_precheck", |b| {
        b.iter(|| {
            let params = request_params(
                black_box(ACTION),
                black_box(&credentials),
                black_box(nonce),
                black_box(timestamp),
                black_box(&extra),
            );
            signed_query("POST", &params, credentials.access_key_secret.expose())
        })
    });
}

fn normalise(c: &mut Criterion) {
    c.bench_function("normalise/precheck_fail_body", |b| {
        b.iter(|| interpret(Reply::new(200, black_box(FAILED))))
    });

    let failed = snapshot(FAILED);
    c.bench_function("snapshot/canonical_json", |b| {
        b.iter(|| black_box(&failed).canonical_json())
    });
    c.bench_function("snapshot/content_hash", |b| {
        b.iter(|| black_box(&failed).content_hash())
    });
}

fn diffs(c: &mut Criterion) {
    let target = target();
    let running = snapshot(RUNNING);
    let running_again = snapshot(RUNNING_AGAIN);
    let failed = snapshot(FAILED);
    assert!(events(&running, &running_again, &target).is_empty());
    assert_eq!(events(&running_again, &failed, &target).len(), 4);

    c.bench_function("diff/unchanged", |b| {
        b.iter(|| events(black_box(&running), black_box(&running_again), &target))
    });
    c.bench_function("diff/precheck_failed", |b| {
        b.iter(|| events(black_box(&running_again), black_box(&failed), &target))
    });
}

fn render(c: &mut Criterion) {
    let target = target();
    let failed = events(&snapshot(RUNNING_AGAIN), &snapshot(FAILED), &target)
        .into_iter()
        .find(|e| e.change == Change::Failed)
        .expect("the last poll fails the pre-check");
    let channels = [
        ("slack", ChannelKind::Slack),
        ("dingtalk", ChannelKind::Dingtalk),
        ("webhook", ChannelKind::Webhook),
    ];
    let specs: Vec<ChannelTemplate> = channels
        .iter()
        .map(|(name, kind)| ChannelTemplate::new(*name, *kind))
        .collect();
    let renderer = Renderer::new(&specs).expect("built-in templates compile");
    for (name, _) in channels {
        let rendered = renderer
            .render(name, &failed)
            .expect("built-in template renders");
        assert!(rendered.fallback_reason.is_none(), "{name}");
        c.bench_function(&format!("render/{name}_precheck_failed"), |b| {
            b.iter(|| renderer.render(black_box(name), black_box(&failed)))
        });
    }
}

criterion_group! {
    name = core;
    // Say it once rather than rely on gnuplot being absent: this crate builds criterion
    // without plotters, and the numbers are read from the terminal.
    config = Criterion::default().without_plots();
    targets = sign, normalise, diffs, render
}
criterion_main!(core);
