//! The daemon: a poll loop over one timer, and beside it one long-lived delivery task.
//!
//! Each watch's next fire time sits in a min-heap. The poll loop sleeps exactly until the
//! earliest of the next poll and the next discovery pass, polls whatever is due, and schedules
//! each polled watch again from *now*: when the process was asleep or busy past several fire
//! times, the missed ones collapse into one poll instead of a burst. There is no periodic tick:
//! an idle daemon whose next poll is an hour away sleeps for an hour. The price is that a
//! wall-clock step (NTP) or a suspended VM is noticed at the next due wake-up, not within a
//! minute: sleeps are measured on the monotonic clock from the wall-clock time they were
//! computed at, so after a forward step the due work runs late by the step (after a backward
//! one the loop wakes early, finds nothing due and sleeps the rest). The heartbeat ([`Heartbeat::sleeping_until`]) records when the loop expects
//! to wake, so `/healthz` tells a long sleep from a dead loop.
//!
//! Watches found by `[[discover]]` join the heap after each discovery pass (every
//! `[dbs] discover_interval_mins`); retired ones leave it the next time they come up, and
//! finished restores are not scheduled again. Each watch's fire times are its cron times shifted
//! by a stable per-watch offset below `[dbs] jitter_secs`, so hundreds of watches on one
//! expression do not all call DBS in the same instant.
//!
//! A watch whose poll failed is not polled again before the backoff its error calls for
//! ([`crate::health::poll_backoff`]): a throttled API gets room, a wrong AccessKey is tried at
//! most every ten minutes.
//!
//! Deliveries run in their own task, so a receiver that hangs until its timeout delays neither
//! the polls nor the other channels, and a change found by the first poll of a long cycle is
//! sent at once instead of after the last poll. The task runs a pass at start (what an earlier
//! run left pending), then sleeps until the store signals a commit that queued deliveries
//! ([`crate::store::Store::outbox_signal`]), the next retry is due, or the daemon stops. Writes
//! by another process on the same file (`dbswatch redeliver`) do not signal it; the poll loop
//! wakes it after every poll cycle to look, so those wait at most until the next poll.
//!
//! Shutdown (Ctrl-C, SIGTERM) is only observed while sleeping, so a poll in flight always
//! finishes and is recorded before the loop returns; the delivery task then gets a grace period
//! (the delivery timeout plus five seconds) to finish its pass, after which it is stopped and
//! anything unsent stays in the outbox and goes out after the restart. A second Ctrl-C exits
//! at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use crate::audit::Heartbeat;
use crate::config::WatchConfig;
use crate::dbs::limiter::spread;
use crate::discovery::DiscoveryReport;
use crate::pipeline::App;

/// How long the delivery task leaves the outbox alone after a pass or an outbox read failed:
/// rows that stay due would otherwise be retried in a tight loop against a sick database.
const AFTER_ERROR: Duration = Duration::from_secs(5);

/// Run until `shutdown` is cancelled.
pub async fn run(app: App, shutdown: CancellationToken) {
    run_observed(app, shutdown, Arc::new(Heartbeat::new())).await
}

/// [`run`], recording each wake-up of the loop and when it expects the next in `heartbeat`
/// (read by `/healthz`).
pub async fn run_observed(app: App, shutdown: CancellationToken, heartbeat: Arc<Heartbeat>) {
    heartbeat.tick(app.clock.now_ms());
    // Started first, so what an earlier run left pending goes out beside discovery and the
    // first polls. Stopped by its own token, after the last poll is recorded, so the changes
    // of a poll that was in flight at shutdown still get their pass.
    let mut delivery = DeliveryTask::start(&app, &heartbeat);

    // Discovery first, so the first cycle knows every watch.
    let discovering = !app.config.discover.is_empty();
    if discovering {
        log_discovery(&app.discover().await);
    }
    let mut next_discovery = discovering.then(|| app.clock.now_ms() + discover_every(&app));
    let now = utc(app.clock.now_ms());
    let mut heap: BinaryHeap<Reverse<(DateTime<Utc>, String)>> = BinaryHeap::new();
    let mut scheduled: HashSet<String> = HashSet::new();
    schedule_new(&app, &mut heap, &mut scheduled, now);
    tracing::info!(
        watches = scheduled.len(),
        "dbswatch running; Ctrl-C or SIGTERM stops it after the work in flight"
    );

    loop {
        let next_poll = heap.peek().map(|Reverse((at, _))| at.timestamp_millis());
        let wake_ms = earliest(next_poll, next_discovery);
        heartbeat.sleeping_until(wake_ms);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until(&app, wake_ms) => {}
        }
        heartbeat.woke(app.clock.now_ms());
        if delivery.is_finished() {
            // It only returns when told to stop, so it panicked; nothing is lost (the rows
            // are in the outbox), but nothing would be sent until the restart.
            tracing::error!("the delivery task ended unexpectedly; starting it again");
            delivery = DeliveryTask::start(&app, &heartbeat);
        }

        if next_discovery.is_some_and(|at| at <= app.clock.now_ms()) {
            log_discovery(&app.discover().await);
            next_discovery = Some(app.clock.now_ms() + discover_every(&app));
            schedule_new(&app, &mut heap, &mut scheduled, utc(app.clock.now_ms()));
            heartbeat.tick(app.clock.now_ms());
        }

        let now = utc(app.clock.now_ms());
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, name))) = heap.pop() else {
                break;
            };
            // A retired watch leaves the heap the first time it comes up.
            if app.find_watch(&name).is_some() {
                due.push(name);
            } else {
                scheduled.remove(&name);
            }
        }
        if !due.is_empty() {
            let reports = app.poll_many(Some(&due)).await;
            let after = utc(app.clock.now_ms());
            for name in due {
                // A failing watch waits out its backoff before its next scheduled poll.
                let from = crate::health::poll_floor(&reports, &name, after);
                let next = match app.find_watch(&name) {
                    Some(w) if !app.is_done(&w).await => next_fire(&w, from, app.config.dbs.jitter),
                    _ => None,
                };
                match next {
                    Some(at) => heap.push(Reverse((at, name))),
                    None => {
                        scheduled.remove(&name);
                    }
                }
            }
            // This cycle's changes were signalled as they were stored; this is for rows that
            // another process queued, which nothing else would make the delivery task see.
            app.store.outbox_signal().notify_one();
            heartbeat.tick(app.clock.now_ms());
            prune(&app).await;
        }
    }

    let grace = app.config.delivery.timeout + Duration::from_secs(5);
    if !delivery.stop(grace).await {
        tracing::warn!(
            "stopping with deliveries in flight; they stay in the outbox and are sent after the restart"
        );
    }
    tracing::info!("dbswatch stopped");
}

/// Measured once on the app's clock, then slept on tokio's monotonic one (which paused-time
/// tests drive); with nothing to wake for, only the other branches of the caller's `select!`
/// end the wait, so an empty daemon does not wake at all.
async fn sleep_until(app: &App, wake_ms: Option<i64>) {
    match wake_ms {
        Some(ms) => {
            let ms = (ms - app.clock.now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(ms)).await
        }
        None => std::future::pending().await,
    }
}

/// The running delivery task.
///
/// In the daemon (a multi-thread runtime) it runs on a thread of its own with its own
/// single-thread runtime: a poll cycle over thousands of watches keeps the poll workers' run
/// queue full, and a notification must not wait behind it (detection to delivery is a few
/// milliseconds however busy the cycle). On a single-thread runtime — tests with paused time —
/// it is an ordinary task of that runtime, so virtual time drives it too.
pub struct DeliveryTask {
    /// Ends the wait for more work; what is due now is still sent.
    stop: CancellationToken,
    /// Ends the task at once (after the grace period).
    kill: CancellationToken,
    /// Sent when the task returns; dropped unsent if it panicked.
    done: tokio::sync::oneshot::Receiver<()>,
}

impl DeliveryTask {
    /// Start delivering: what is due now at once, then whenever the outbox signal, a due retry
    /// or [`DeliveryTask::stop`] wakes it.
    pub fn start(app: &App, heartbeat: &Arc<Heartbeat>) -> DeliveryTask {
        let stop = CancellationToken::new();
        let kill = CancellationToken::new();
        let (tx, done) = tokio::sync::oneshot::channel();
        let work = {
            let (app, stop, kill, heartbeat) =
                (app.clone(), stop.clone(), kill.clone(), heartbeat.clone());
            async move {
                tokio::select! {
                    _ = deliver_until_stopped(app, stop, heartbeat) => {}
                    _ = kill.cancelled() => {}
                }
                let _ = tx.send(());
            }
        };
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        match multi_thread.then(own_runtime).flatten() {
            Some(runtime) => {
                let spawned = std::thread::Builder::new()
                    .name("dbswatch-delivery".into())
                    .spawn(move || {
                        // Not the poll workers' lowered priority, which it may have inherited.
                        crate::priority::restore_current_thread();
                        runtime.block_on(work)
                    });
                if let Err(e) = spawned {
                    // `work` is gone with the closure; `done` reports the task as ended and the
                    // poll loop starts it again at its next wake-up.
                    tracing::error!(error = %e, "cannot start the delivery thread");
                }
            }
            None => {
                tokio::spawn(work);
            }
        }
        DeliveryTask { stop, kill, done }
    }

    /// Whether the task has ended (it only does when stopped, or by a panic).
    pub fn is_finished(&mut self) -> bool {
        !matches!(
            self.done.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        )
    }

    /// Stop waiting for new work and give what is in flight `grace` to finish; `false` if it
    /// had to be cut off (unsent rows stay in the outbox).
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.stop.cancel();
        if tokio::time::timeout(grace, &mut self.done).await.is_ok() {
            return true;
        }
        self.kill.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.done).await;
        false
    }
}

/// A single-thread runtime for the delivery thread; `None` (the task then shares the caller's
/// runtime) if the system refuses one.
fn own_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            tracing::warn!(error = %e, "no runtime of its own for deliveries; sharing the pollers'");
            None
        }
    }
}

/// The delivery task: a pass whenever something is due, and in between a sleep that only the
/// outbox signal, the next due retry or `stop` ends. After `stop` it still finishes what is
/// due now (the caller bounds that with the grace period), but waits for nothing more.
async fn deliver_until_stopped(app: App, stop: CancellationToken, heartbeat: Arc<Heartbeat>) {
    let signal = app.store.outbox_signal();
    loop {
        let now = app.clock.now_ms();
        let wake_ms = match app.store.next_delivery_at().await {
            Ok(Some(at)) if at <= now => {
                if deliver(&app).await {
                    // Read again at once: more may be due (a backlog past one claim, rows
                    // queued meanwhile), and what is not decides the sleep.
                    continue;
                }
                Some(app.clock.now_ms() + AFTER_ERROR.as_millis() as i64)
            }
            Ok(at) => at,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; trying again shortly");
                Some(now + AFTER_ERROR.as_millis() as i64)
            }
        };
        tokio::select! {
            biased;
            _ = signal.notified() => {}
            _ = sleep_until(&app, wake_ms) => {}
            _ = stop.cancelled() => return,
        }
        heartbeat.delivery_woke();
    }
}

/// Puts every watch that is not scheduled yet on the heap.
fn schedule_new(
    app: &App,
    heap: &mut BinaryHeap<Reverse<(DateTime<Utc>, String)>>,
    scheduled: &mut HashSet<String>,
    now: DateTime<Utc>,
) {
    for watch in app.watches() {
        if scheduled.contains(&watch.name) || app.runtime.is_done(&watch.name) {
            continue;
        }
        match next_fire(&watch, now, app.config.dbs.jitter) {
            Some(at) => {
                scheduled.insert(watch.name.clone());
                heap.push(Reverse((at, watch.name)));
            }
            None => tracing::warn!(watch = %watch.name, "schedule never fires; watch not polled"),
        }
    }
}

/// The watch's next poll after `after`: its cron schedule shifted by the watch's stable offset
/// in `[0, jitter)`, so watches sharing an expression spread out while each keeps its period.
pub fn next_fire(
    watch: &WatchConfig,
    after: DateTime<Utc>,
    jitter: Duration,
) -> Option<DateTime<Utc>> {
    let offset = TimeDelta::from_std(spread(&watch.name, jitter)).unwrap_or(TimeDelta::zero());
    watch
        .schedule
        .next_after(after - offset)
        .map(|at| at + offset)
}

fn discover_every(app: &App) -> i64 {
    app.config.dbs.discover_interval.as_millis() as i64
}

fn log_discovery(report: &DiscoveryReport) {
    if !report.added.is_empty() || !report.retired.is_empty() {
        tracing::info!(
            added = report.added.len(),
            retired = report.retired.len(),
            watching = report.watching,
            "discovery"
        );
    }
    for e in &report.errors {
        tracing::warn!(error = %e, "discovery failed");
    }
}

/// One delivery pass, logged; `false` when it failed (pending messages are kept).
async fn deliver(app: &App) -> bool {
    match app.deliver_due().await {
        Ok(r) => {
            if r.delivered + r.retrying + r.dead > 0 {
                tracing::info!(
                    delivered = r.delivered,
                    retrying = r.retrying,
                    dead = r.dead,
                    "delivery pass"
                );
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery pass failed; pending messages are kept");
            false
        }
    }
}

/// Retention after a poll cycle: a bounded amount of pruning (see `store::retention`); a
/// backlog is worked off over the following cycles.
pub async fn prune(app: &App) {
    let policy = app.config.storage.retention_policy();
    if policy.keeps_everything() {
        return;
    }
    match app.store.prune(&policy, app.clock.now_ms()).await {
        Ok(r) if r.snapshots + r.polls + r.events > 0 => tracing::info!(
            snapshots = r.snapshots,
            polls = r.polls,
            events = r.events,
            freed_pages = r.vacuumed_pages,
            "retention"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "retention failed; retried after the next cycle"),
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
    fn fire_times_keep_the_period_and_spread_500_watches() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let watch = |name: &str| WatchConfig {
            name: name.to_string(),
            target: crate::snapshot::Target::BackupPlan(name.to_string()),
            schedule: crate::schedule::CronSchedule::parse("*/5 * * * *").unwrap(),
            channels: Vec::new(),
            account: None,
            region: None,
        };
        let jitter = Duration::from_secs(30);
        let w = watch("orders-db");
        let offset = TimeDelta::from_std(spread("orders-db", jitter)).unwrap();
        let first = next_fire(&w, at("2026-12-03T10:00:00Z"), jitter).unwrap();
        assert_eq!(first, at("2026-12-03T10:00:00Z") + offset);
        let second = next_fire(&w, first, jitter).unwrap();
        assert_eq!(second - first, TimeDelta::minutes(5), "the period is kept");
        assert_eq!(
            next_fire(&w, at("2026-12-03T10:00:00Z"), Duration::ZERO).unwrap(),
            at("2026-12-03T10:05:00Z")
        );
        let times: HashSet<DateTime<Utc>> = (0..500)
            .map(|i| {
                next_fire(
                    &watch(&format!("plans/dbs{i:06}")),
                    at("2026-12-03T09:59:59Z"),
                    jitter,
                )
                .unwrap()
            })
            .collect();
        assert!(
            times.len() > 450,
            "only {} distinct fire times",
            times.len()
        );
        assert!(
            times
                .iter()
                .all(|t| *t >= at("2026-12-03T10:00:00Z") && *t < at("2026-12-03T10:00:30Z"))
        );
    }

    #[test]
    fn earliest_picks_the_sooner_known_time() {
        assert_eq!(earliest(Some(5), Some(3)), Some(3));
        assert_eq!(earliest(None, Some(3)), Some(3));
        assert_eq!(earliest(Some(5), None), Some(5));
        assert_eq!(earliest(None, None), None);
    }
}
