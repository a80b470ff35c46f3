//! One poll of one watch, and one delivery pass over the outbox: the imperative shell around the
//! pure core. This is the only module that knows the order of the steps:
//!
//! poll DBS -> normalise -> compare with the stored baseline -> diff -> route -> store (snapshot,
//! events and pending deliveries in one transaction) -> deliver due rows -> record each attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::accounts::Accounts;
use crate::config::{Config, WatchConfig};
use crate::dbs::{DbsClient, DbsError};
use crate::diff::{DiffContext, diff};
use crate::discovery::WatchRuntime;
use crate::event::Event;
use crate::health::PollFailure;
use crate::notify::Notifier;
use crate::render::Renderer;
use crate::secret::Redactor;
use crate::snapshot::Target;
use crate::store::{PollOutcome, PollWrite, Store, StoreError, UnchangedPoll};

/// The time source. Real time in production; a hand-moved clock in tests, so retry and
/// schedule behaviour is checked without sleeping.
#[derive(Debug, Clone)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
    tokio: Option<(tokio::time::Instant, i64)>,
}

impl Clock {
    /// Wall-clock time.
    pub fn system() -> Clock {
        Clock {
            manual: None,
            tokio: None,
        }
    }

    /// A clock that reads tokio's time, starting at `start_ms`. Under paused tokio time
    /// (tests) it moves exactly as far as the runtime advances, so the daemon's sleeps, the
    /// receivers' waits and the stored times all agree without real waiting.
    pub fn tokio(start_ms: i64) -> Clock {
        Clock {
            manual: None,
            tokio: Some((tokio::time::Instant::now(), start_ms)),
        }
    }

    /// A clock that stands still at `start_ms` until moved with [`Clock::advance`].
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
            tokio: None,
        }
    }

    /// Now, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match (&self.manual, &self.tokio) {
            (Some(t), _) => t.load(Ordering::SeqCst),
            (None, Some((base, start_ms))) => start_ms + base.elapsed().as_millis() as i64,
            (None, None) => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            t.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }
}

/// Everything a poll or a delivery needs, built once from the configuration.
#[derive(Clone)]
pub struct App {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// The DBS client; `None` when no credentials are configured (then polls fail clearly).
    pub dbs: Option<DbsClient>,
    /// The chat senders.
    pub notifier: Notifier,
    /// Compiled templates.
    pub renderer: Arc<Renderer>,
    /// Scrubs secrets from every stored or logged text.
    pub redactor: Redactor,
    /// The time source.
    pub clock: Clock,
    /// Polls running at once in one cycle.
    pub concurrency: usize,
    /// Every account's credentials and DBS clients (sharing one rate limiter).
    pub accounts: Arc<Accounts>,
    /// Discovered watches and finished restores.
    pub runtime: Arc<WatchRuntime>,
    /// Send-rate windows per receiver, shared by every delivery pass of this process.
    pub send_limits: Arc<crate::delivery::SendLimits>,
}

/// Why the product could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The DBS client could not be built.
    #[error("cannot set up the DBS client: {0}")]
    Dbs(#[from] DbsError),
    /// Templates did not compile.
    #[error("templates do not compile: {0}")]
    Templates(String),
}

/// The result of polling one watch.
#[derive(Debug, Clone, Serialize)]
pub struct PollReport {
    /// Watch name.
    pub watch: String,
    /// How it was recorded, when the poll succeeded.
    pub outcome: Option<PollOutcome>,
    /// Plain-words error, redacted, when it failed.
    pub error: Option<String>,
    /// Events the poll produced.
    pub events: Vec<Event>,
    /// After a failed poll: do not poll this watch again before this time (epoch ms), so a
    /// throttled API is given room and a credential error is not retried in a tight loop.
    pub not_before_ms: Option<i64>,
}

/// The result of one delivery pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryReport {
    /// Messages accepted by their receivers.
    pub delivered: usize,
    /// Messages that failed and will be retried.
    pub retrying: usize,
    /// Messages that failed for good (configuration or content errors).
    pub dead: usize,
    /// One line per failure: channel, event, reason.
    pub failures: Vec<String>,
    /// Deliveries muted as repeats of a flapping transition (recorded, not sent).
    pub muted: usize,
    /// Deliveries left waiting without an attempt: a receiver's rate limit, a channel backing
    /// off after a failure, or an older message of the same watch that must go first.
    pub postponed: usize,
}

impl App {
    /// Open the store and build the clients for a configuration.
    pub async fn new(config: Config, clock: Clock) -> Result<App, StartError> {
        let store = Store::open(&config.storage.database).await?;
        App::with_store(config, store, clock)
    }

    /// Build the clients around an already open store.
    pub fn with_store(config: Config, store: Store, clock: Clock) -> Result<App, StartError> {
        let redactor = config.redactor();
        let accounts = Accounts::new(&config);
        // Unusable options fail the start; missing credentials fail each poll, in its words.
        for name in accounts.names() {
            if let Err(e @ DbsError::InvalidOptions { .. }) = accounts.client(Some(&name), None) {
                return Err(e.into());
            }
        }
        let dbs = accounts.client(None, None).ok();
        let renderer = Renderer::new(&config.templates()).map_err(|errors| {
            StartError::Templates(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let notifier = Notifier::new(config.delivery.timeout, redactor.clone());
        Ok(App {
            config: Arc::new(config),
            store,
            dbs,
            notifier,
            renderer: Arc::new(renderer),
            redactor,
            clock,
            concurrency: 8,
            accounts: Arc::new(accounts),
            runtime: Arc::new(WatchRuntime::default()),
            send_limits: Arc::new(crate::delivery::SendLimits::new()),
        })
    }

    /// Poll one watch once and record the result. Never panics on bad input: every failure
    /// becomes a recorded poll error and the stored baseline stays as it was. An unchanged
    /// answer is written before this returns (see [`App::poll_many`] for the batched form).
    pub async fn poll_watch(&self, watch: &WatchConfig) -> PollReport {
        let mut report = self.poll_one(watch).await;
        if let Err(e) = self.store.flush_unchanged().await {
            report.error = Some(format!("could not store the poll result: {e}"));
        }
        report
    }

    /// One poll, with an unchanged answer only noted in the store's ledger: the caller flushes
    /// the ledger once for many polls (`store::ledger`).
    async fn poll_one(&self, watch: &WatchConfig) -> PollReport {
        let started_at = self.clock.now_ms();
        let timer = Instant::now();
        let mut report = PollReport {
            watch: watch.name.clone(),
            outcome: None,
            error: None,
            events: Vec::new(),
            not_before_ms: None,
        };
        let client = match self
            .accounts
            .client(watch.account.as_deref(), watch.region.as_deref())
        {
            Ok(client) => client,
            Err(e) => {
                let failure = PollFailure::from_dbs(&e);
                self.fail_poll(watch, &mut report, started_at, timer, failure)
                    .await;
                return report;
            }
        };
        let result = client.describe_precheck_progress(&watch.target).await;
        // Events are stamped with the moment the answer arrived, not when they were written.
        let received_at = self.clock.now_ms();
        let response = match result {
            Ok(r) => r,
            Err(e) => match self.precheck_gone(&client, watch, &e).await {
                // A restore whose pre-check list DBS refuses is followed through its task list.
                Some(r) => r,
                None => {
                    let failure = PollFailure::from_dbs(&e);
                    self.fail_poll(watch, &mut report, started_at, timer, failure)
                        .await;
                    return report;
                }
            },
        };

        // The common case: the answer hashes to the known baseline. A restore answer without
        // the restore's own status is completed from its task list first, so it cannot be
        // judged by its hash yet.
        let judged_alone =
            !matches!(watch.target, Target::RestoreTask(_)) || response.snapshot.restore.is_some();
        if judged_alone {
            let content_hash = response.snapshot.content_hash();
            let noted = self
                .store
                .note_if_unchanged(UnchangedPoll {
                    watch: &watch.name,
                    target: &watch.target,
                    content_hash: &content_hash,
                    started_at,
                    duration_ms: timer.elapsed().as_millis() as i64,
                    finished_at: received_at,
                })
                .await;
            match noted {
                Ok(true) => {
                    report.outcome = Some(PollOutcome::Unchanged);
                    return report;
                }
                Ok(false) => {}
                Err(e) => {
                    let message = format!("could not store the poll result: {e}");
                    tracing::error!(watch = %watch.name, error = %message, "poll not recorded");
                    report.error = Some(message);
                    return report;
                }
            }
        }

        // Diff against the stored baseline and record atomically; if another process recorded
        // a poll of this watch in between, diff again against its result.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .record(&client, watch, &response, started_at, received_at, &timer)
                .await
            {
                Ok((outcome, events)) => {
                    report.outcome = Some(outcome);
                    report.events = events;
                    return report;
                }
                Err(StoreError::Conflict(_)) if attempts < 3 => continue,
                Err(e) => {
                    // Nothing was written: the next poll sees the same change again.
                    let message = format!("could not store the poll result: {e}");
                    tracing::error!(watch = %watch.name, error = %message, "poll not recorded");
                    report.error = Some(message);
                    return report;
                }
            }
        }
    }

    /// Diff one response against the stored baseline (with the restore's own status for
    /// restore watches), route the events and write everything in one transaction.
    async fn record(
        &self,
        client: &DbsClient,
        watch: &WatchConfig,
        response: &crate::dbs::PrecheckResponse,
        started_at: i64,
        received_at: i64,
        timer: &Instant,
    ) -> Result<(PollOutcome, Vec<Event>), StoreError> {
        let baseline = self.store.baseline(&watch.name, &watch.target).await?;
        let snapshot = if let Target::RestoreTask(_) = &watch.target
            && response.snapshot.restore.is_none()
        {
            let truth = self.restore_truth(client, watch, baseline.as_ref()).await;
            std::borrow::Cow::Owned(response.snapshot.clone().with_restore(truth))
        } else {
            std::borrow::Cow::Borrowed(&response.snapshot)
        };
        let observed_at_ms = received_at;
        let unchanged = baseline
            .as_ref()
            .is_some_and(|b| b.content_hash == snapshot.content_hash());
        let mut events = if unchanged {
            Vec::new()
        } else {
            let mut next_id = || uuid::Uuid::new_v4().to_string();
            let mut ctx = DiffContext {
                watch: &watch.name,
                target: &watch.target,
                observed_at_ms,
                next_id: &mut next_id,
            };
            diff(baseline.as_ref().map(|b| &b.snapshot), &snapshot, &mut ctx)
        };
        self.explain_failures(client, &mut events).await;
        // The first success after announced failures says so, in the same transaction.
        let prev = baseline.as_ref().map(|b| &b.snapshot);
        if let Some(recovered) = self
            .recovered_event(watch, prev, &snapshot, observed_at_ms)
            .await?
        {
            events.insert(0, recovered);
        }
        let routed: Vec<(Event, Vec<String>)> = events
            .into_iter()
            .map(|e| {
                let channels = self.route(watch, &e.kind());
                (e, channels)
            })
            .collect();
        let mut new_uid = || uuid::Uuid::new_v4().to_string();
        let outcome = self
            .store
            .record_poll(PollWrite {
                watch: &watch.name,
                target: &watch.target,
                started_at,
                duration_ms: timer.elapsed().as_millis() as i64,
                finished_at: observed_at_ms,
                snapshot: &snapshot,
                raw_body: &response.body,
                request_id: response.request_id.as_deref(),
                expected_hash: baseline.as_ref().map(|b| b.content_hash.as_str()),
                events: &routed,
                new_uid: &mut new_uid,
            })
            .await?;
        for (event, channels) in &routed {
            tracing::info!(
                watch = %watch.name,
                kind = %event.kind(),
                channels = %channels.join(","),
                "event"
            );
        }
        Ok((outcome, routed.into_iter().map(|(e, _)| e).collect()))
    }

    /// Record a failed poll (and `poll.failed` when it is one too many), and tell the
    /// scheduler how long to leave the watch alone.
    async fn fail_poll(
        &self,
        watch: &WatchConfig,
        report: &mut PollReport,
        started_at: i64,
        timer: Instant,
        failure: PollFailure,
    ) {
        let duration_ms = timer.elapsed().as_millis() as i64;
        self.record_poll_failure(watch, report, started_at, duration_ms, failure)
            .await;
    }

    /// The channels of `watch` that want events of `kind`.
    pub fn route(&self, watch: &WatchConfig, kind: &str) -> Vec<String> {
        watch
            .channels
            .iter()
            .filter(|name| self.config.channel(name).is_some_and(|c| c.accepts(kind)))
            .cloned()
            .collect()
    }

    /// Poll the given watches (all when `None`, discovered ones included), at most
    /// `concurrency` at a time. Restores that are done ([`App::is_done`]) are skipped.
    ///
    /// `concurrency` workers take the watches in turn (not one task per watch, so 10,000
    /// watches cost 8 tasks' memory), and the cycle's unchanged answers are written in batches
    /// of up to 256 watches, the last at the end (`store::ledger`); changes are recorded as
    /// soon as they are seen.
    pub async fn poll_many(&self, names: Option<&[String]>) -> Vec<PollReport> {
        let wanted: Option<std::collections::HashSet<&str>> =
            names.map(|n| n.iter().map(String::as_str).collect());
        let mut watches: Vec<WatchConfig> = Vec::new();
        for w in self.watches() {
            if wanted
                .as_ref()
                .is_some_and(|n| !n.contains(w.name.as_str()))
            {
                continue;
            }
            if self.is_done(&w).await {
                tracing::debug!(watch = %w.name, "restore finished; not polled");
                continue;
            }
            watches.push(w);
        }
        let watches = Arc::new(watches);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..self.concurrency.max(1).min(watches.len()) {
            let app = self.clone();
            let watches = watches.clone();
            let next = next.clone();
            set.spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(watch) = watches.get(i) else { break };
                    done.push((i, app.poll_one(watch).await));
                }
                done
            });
        }
        let mut reports: Vec<(usize, PollReport)> = Vec::with_capacity(watches.len());
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => reports.extend(r),
                Err(e) => tracing::error!(error = %e, "a poll worker panicked"),
            }
        }
        if let Err(e) = self.store.flush_unchanged().await {
            // Kept in the ledger: the next flush writes them.
            tracing::error!(error = %e, "could not store this cycle's unchanged polls; retried after the next cycle");
        }
        // The cycle's writes into the database file, off the path of the next change.
        self.store.checkpoint_in_background();
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// Send every delivery that is due now, once, and record each attempt. Channels are served
    /// concurrently (one slow receiver does not hold up the others), each channel in order:
    /// due changes of one watch become one message, flapping repeats are muted, and a
    /// receiver's rate limit postpones what it cannot take yet (see [`crate::delivery`]).
    pub async fn deliver_due(&self) -> Result<DeliveryReport, StoreError> {
        let claimed_at = self.clock.now_ms();
        let leased_until = claimed_at + self.lease_ms();
        let due = self
            .store
            .claim_outbox(claimed_at, self.lease_ms(), 500)
            .await?;
        let mut by_channel: Vec<(String, Vec<crate::store::OutboxRow>)> = Vec::new();
        for d in due {
            match by_channel.iter_mut().find(|(c, _)| *c == d.channel) {
                Some((_, list)) => list.push(d),
                None => by_channel.push((d.channel.clone(), vec![d])),
            }
        }
        let mut set = JoinSet::new();
        for (channel, list) in by_channel {
            let app = self.clone();
            set.spawn(async move { app.deliver_channel(&channel, list, leased_until).await });
        }
        let mut report = DeliveryReport::default();
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(r)) => {
                    report.delivered += r.delivered;
                    report.retrying += r.retrying;
                    report.dead += r.dead;
                    report.muted += r.muted;
                    report.postponed += r.postponed;
                    report.failures.extend(r.failures);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => tracing::error!(error = %e, "a delivery task panicked"),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// How long a claimed delivery is ours: one send (the timeout) plus room to record it. The
    /// delivery pass extends it while a channel's queue is worked through, so after a crash an
    /// interrupted send is due again this soon.
    pub(crate) fn lease_ms(&self) -> i64 {
        self.config.delivery.timeout.as_millis() as i64 + 3_000
    }

    /// Run delivery passes until nothing is due (retries scheduled for later stay pending), at
    /// most `max_passes` times. Used by one-shot commands so the important message is not left
    /// behind a backlog.
    pub async fn deliver_until_idle(
        &self,
        max_passes: usize,
    ) -> Result<DeliveryReport, StoreError> {
        let mut total = DeliveryReport::default();
        for _ in 0..max_passes {
            let r = self.deliver_due().await?;
            let sent = r.delivered + r.retrying + r.dead;
            total.delivered += r.delivered;
            total.retrying += r.retrying;
            total.dead += r.dead;
            total.muted += r.muted;
            total.postponed += r.postponed;
            total.failures.extend(r.failures);
            if sent == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Delay before the next attempt: doubling from `retry_base`, capped at `retry_max`, with
    /// up to 20% jitter, and never sooner than the receiver's `Retry-After`.
    pub(crate) fn backoff_ms(&self, attempts: i64, retry_after: Option<Duration>) -> i64 {
        let d = &self.config.delivery;
        let base = d.retry_base.as_millis() as i64;
        let cap = d.retry_max.as_millis() as i64;
        let exp = base.saturating_mul(1i64 << attempts.clamp(0, 20)).min(cap);
        let jitter = (exp / 5).max(1);
        let with_jitter = exp + (uuid::Uuid::new_v4().as_u128() % jitter as u128) as i64;
        let floor = retry_after.map(|r| r.as_millis() as i64).unwrap_or(0);
        with_jitter.max(floor)
    }
}
