//! `/metrics`: the process's counters plus gauges read from the database at scrape time.

use super::ApiState;
use crate::audit::metrics::Exposition;
use crate::store::StoreError;

/// Every outcome a poll can have, so each configured watch has a series from the start and
/// `rate()` works before the first error.
const POLL_OUTCOMES: [&str; 4] = ["first", "changed", "unchanged", "error"];

/// The whole exposition. Database gauges are read with plain indexed queries (no table scans).
pub async fn render(state: &ApiState) -> Result<String, StoreError> {
    let now_ms = state.clock.now_ms();
    let counters = state.store.metrics().snapshot();
    let mut e = Exposition::new();

    e.family(
        "dbswatch_polls_total",
        "counter",
        "Polls since the process started, by watch and outcome (first, changed, unchanged, error).",
    );
    let mut polls = counters.polls.clone();
    for w in &state.config.watches {
        for outcome in POLL_OUTCOMES {
            polls
                .entry((w.name.clone(), outcome.to_string()))
                .or_insert(0);
        }
    }
    for ((watch, outcome), n) in &polls {
        e.sample(
            "dbswatch_polls_total",
            &[("watch", watch), ("outcome", outcome)],
            *n as f64,
        );
    }

    e.family(
        "dbswatch_poll_duration_seconds",
        "histogram",
        "Time from sending the DBS request to having the answer recorded, by watch.",
    );
    for (watch, h) in &counters.poll_latency {
        e.histogram("dbswatch_poll_duration_seconds", &[("watch", watch)], h);
    }

    e.family(
        "dbswatch_events_total",
        "counter",
        "Events stored since the process started, by kind.",
    );
    for (kind, n) in &counters.events {
        e.sample("dbswatch_events_total", &[("kind", kind)], *n as f64);
    }

    e.family(
        "dbswatch_deliveries_total",
        "counter",
        "Delivery attempts since the process started, by channel and outcome (delivered, \
         retryable, permanent, render_error).",
    );
    for ((channel, outcome), n) in &counters.deliveries {
        e.sample(
            "dbswatch_deliveries_total",
            &[("channel", channel), ("outcome", outcome)],
            *n as f64,
        );
    }

    let (pending, dead) = state.store.outbox_depth().await?;
    e.family(
        "dbswatch_outbox_depth",
        "gauge",
        "Notifications waiting to be sent or retried.",
    );
    e.sample("dbswatch_outbox_depth", &[], pending as f64);
    e.family(
        "dbswatch_outbox_dead",
        "gauge",
        "Notifications given up on (permanent receiver errors).",
    );
    e.sample("dbswatch_outbox_dead", &[], dead as f64);

    let last_ok = state.store.last_ok_polls().await?;
    e.family(
        "dbswatch_last_successful_poll_age_seconds",
        "gauge",
        "Seconds since the last successful poll of each watch (kept across restarts).",
    );
    for (watch, at) in &last_ok {
        e.sample(
            "dbswatch_last_successful_poll_age_seconds",
            &[("watch", watch)],
            ((now_ms - at).max(0) as f64) / 1000.0,
        );
    }
    e.family(
        "dbswatch_last_successful_poll_timestamp_seconds",
        "gauge",
        "Unix time of the last successful poll of each watch.",
    );
    for (watch, at) in &last_ok {
        e.sample(
            "dbswatch_last_successful_poll_timestamp_seconds",
            &[("watch", watch)],
            *at as f64 / 1000.0,
        );
    }

    let verification = state.store.last_verification().await?;
    e.family(
        "dbswatch_chain_verify_ok",
        "gauge",
        "1 when the last `dbswatch verify` found the event hash chain intact, 0 when it found \
         changed, inserted or deleted rows. Absent until a verification ran.",
    );
    if let Some(v) = &verification {
        e.sample(
            "dbswatch_chain_verify_ok",
            &[],
            if v.ok { 1.0 } else { 0.0 },
        );
    }
    for (name, help, value) in [
        (
            "dbswatch_chain_verify_problems",
            "Problems found by the last verification.",
            verification.as_ref().map(|v| v.problems as f64),
        ),
        (
            "dbswatch_chain_verify_events",
            "Events read by the last verification.",
            verification.as_ref().map(|v| v.events as f64),
        ),
        (
            "dbswatch_chain_verify_timestamp_seconds",
            "Unix time of the last verification.",
            verification.as_ref().map(|v| v.at as f64 / 1000.0),
        ),
    ] {
        e.family(name, "gauge", help);
        if let Some(value) = value {
            e.sample(name, &[], value);
        }
    }

    e.family(
        "dbswatch_retention_pruned_rows_total",
        "counter",
        "Rows removed by retention since the process started, by table.",
    );
    for (table, n) in &counters.pruned {
        e.sample(
            "dbswatch_retention_pruned_rows_total",
            &[("table", table)],
            *n as f64,
        );
    }

    e.family(
        "dbswatch_scheduler_last_tick_age_seconds",
        "gauge",
        "Seconds since the scheduler loop last woke (it sleeps until its next due poll, so this grows while it is idle).",
    );
    if let Some(at) = state.heartbeat.last_tick_ms() {
        e.sample(
            "dbswatch_scheduler_last_tick_age_seconds",
            &[],
            ((now_ms - at).max(0) as f64) / 1000.0,
        );
    }
    Ok(e.finish())
}
