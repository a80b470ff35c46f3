//! The daemon loop: one timer over the next due time, not a task or a timer per watch.
//!
//! Each watch's next fire time sits in a min-heap. The loop sleeps until the earliest of the
//! next poll and the next due delivery retry, polls whatever is due, delivers, and schedules
//! each polled watch again from *now*: when the process was asleep or busy past several fire
//! times, the missed ones collapse into one poll instead of a burst.
//!
//! Deliveries run as a background pass beside the polls, so a receiver that hangs until its
//! timeout delays neither the polls nor the other channels.
//!
//! Shutdown (Ctrl-C, SIGTERM) is only observed while sleeping, so a poll in flight always
//! finishes and is recorded before the loop returns; a delivery pass in flight gets a grace
//! period (its timeout plus five seconds), after which anything unsent stays in the outbox and
//! goes out after the restart. A second Ctrl-C exits at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::pipeline::App;

/// The longest single sleep: the loop re-checks at least this often, so a wall-clock jump
/// (NTP step, suspended VM) is noticed within a minute.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Run until `shutdown` is cancelled.
pub async fn run(app: App, shutdown: CancellationToken) {
    let now = utc(app.clock.now_ms());
    let mut heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> = BinaryHeap::new();
    for (i, watch) in app.config.watches.iter().enumerate() {
        match watch.schedule.next_after(now) {
            Some(at) => heap.push(Reverse((at, i))),
            None => tracing::warn!(watch = %watch.name, "schedule never fires; watch not polled"),
        }
    }
    tracing::info!(
        watches = app.config.watches.len(),
        "dbswatch running; Ctrl-C or SIGTERM stops it after the work in flight"
    );

    // Deliver whatever an earlier run left pending, beside the first polls.
    let pass_done = Arc::new(Notify::new());
    let mut delivering = Some(spawn_delivery(&app, &pass_done));

    loop {
        let next_poll = heap.peek().map(|Reverse((at, _))| at.timestamp_millis());
        let next_delivery = match app.store.next_delivery_at().await {
            Ok(at) => at,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                None
            }
        };
        let wake_ms = earliest(next_poll, next_delivery);
        let sleep_for = match wake_ms {
            Some(ms) => Duration::from_millis((ms - app.clock.now_ms()).max(0) as u64),
            None => MAX_SLEEP,
        }
        .min(MAX_SLEEP);

        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(sleep_for) => {}
            _ = pass_done.notified() => {}
        }

        let now = utc(app.clock.now_ms());
        let mut due = Vec::new();
        while let Some(Reverse((at, i))) = heap.peek().copied() {
            if at > now {
                break;
            }
            heap.pop();
            due.push(i);
        }
        if !due.is_empty() {
            let names: Vec<String> = due
                .iter()
                .map(|i| app.config.watches[*i].name.clone())
                .collect();
            app.poll_many(Some(&names)).await;
            let after = utc(app.clock.now_ms());
            for i in due {
                if let Some(at) = app.config.watches[i].schedule.next_after(after) {
                    heap.push(Reverse((at, i)));
                }
            }
        }
        if delivering.as_ref().is_none_or(|h| h.is_finished()) {
            delivering = Some(spawn_delivery(&app, &pass_done));
        }
    }
    if let Some(pass) = delivering.filter(|h| !h.is_finished()) {
        let grace = app.config.delivery.timeout + Duration::from_secs(5);
        if tokio::time::timeout(grace, pass).await.is_err() {
            tracing::warn!(
                "stopping with deliveries in flight; they stay in the outbox and are sent after the restart"
            );
        }
    }
    tracing::info!("dbswatch stopped");
}

fn spawn_delivery(app: &App, done: &Arc<Notify>) -> tokio::task::JoinHandle<()> {
    let app = app.clone();
    let done = done.clone();
    tokio::spawn(async move {
        deliver(&app).await;
        done.notify_one();
    })
}

async fn deliver(app: &App) {
    match app.deliver_due().await {
        Ok(r) if r.delivered + r.retrying + r.dead > 0 => tracing::info!(
            delivered = r.delivered,
            retrying = r.retrying,
            dead = r.dead,
            "delivery pass"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "delivery pass failed; pending messages are kept"),
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("can install a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stop requested; finishing the work in flight (Ctrl-C again to exit now)");
        t.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("second stop request: exiting now; unsent messages stay in the outbox");
            std::process::exit(130);
        }
    });
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_picks_the_sooner_known_time() {
        assert_eq!(earliest(Some(5), Some(3)), Some(3));
        assert_eq!(earliest(None, Some(3)), Some(3));
        assert_eq!(earliest(Some(5), None), Some(5));
        assert_eq!(earliest(None, None), None);
    }
}
