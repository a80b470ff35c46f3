//! One poll of one watch, and one delivery pass over the outbox: the imperative shell around the
//! pure core. This is the only module that knows the order of the steps:
//!
//! poll DBS -> normalise -> compare with the stored baseline -> diff -> route -> store (snapshot,
//! events and pending deliveries in one transaction) -> deliver due rows -> record each attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, WatchConfig};
use crate::dbs::{DbsClient, DbsError};
use crate::diff::{DiffContext, diff};
use crate::event::Event;
use crate::notify::{Notifier, Outcome, Outgoing};
use crate::render::Renderer;
use crate::secret::Redactor;
use crate::store::{AttemptWrite, DeliveryState, PollOutcome, PollWrite, Store, StoreError};

/// The time source. Real time in production; a hand-moved clock in tests, so retry and
/// schedule behaviour is checked without sleeping.
#[derive(Debug, Clone)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// Wall-clock time.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still at `start_ms` until moved with [`Clock::advance`].
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Now, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_millis(),
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
        let dbs = match &config.aliyun.credentials {
            Some(creds) => Some(DbsClient::new(
                creds.clone(),
                config.aliyun.client_options(),
            )?),
            None => None,
        };
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
        })
    }

    /// Poll one watch once and record the result. Never panics on bad input: every failure
    /// becomes a recorded poll error and the stored baseline stays as it was.
    pub async fn poll_watch(&self, watch: &WatchConfig) -> PollReport {
        let started_at = self.clock.now_ms();
        let timer = Instant::now();
        let mut report = PollReport {
            watch: watch.name.clone(),
            outcome: None,
            error: None,
            events: Vec::new(),
        };
        let result = match &self.dbs {
            Some(dbs) => dbs.describe_precheck_progress(&watch.target).await,
            None => {
                let message = "no AccessKey configured: set ALIBABA_CLOUD_ACCESS_KEY_ID and \
                               ALIBABA_CLOUD_ACCESS_KEY_SECRET, or [aliyun] access_key_id and \
                               access_key_secret";
                self.fail_poll(&mut report, started_at, timer, None, message.to_string())
                    .await;
                return report;
            }
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let text = format!("{e}");
                let hint = e.hint();
                let message = if hint.is_empty() || text.contains(&hint) {
                    text
                } else {
                    format!("{text}; {hint}")
                };
                self.fail_poll(&mut report, started_at, timer, e.code(), message)
                    .await;
                return report;
            }
        };

        let baseline = match self.store.baseline(&watch.name).await {
            Ok(b) => b,
            Err(e) => {
                self.fail_poll(&mut report, started_at, timer, None, e.to_string())
                    .await;
                return report;
            }
        };
        let observed_at_ms = self.clock.now_ms();
        let unchanged = baseline
            .as_ref()
            .is_some_and(|b| b.content_hash == response.snapshot.content_hash());
        let events = if unchanged {
            Vec::new()
        } else {
            let mut next_id = || uuid::Uuid::new_v4().to_string();
            let mut ctx = DiffContext {
                watch: &watch.name,
                target: &watch.target,
                observed_at_ms,
                next_id: &mut next_id,
            };
            diff(
                baseline.as_ref().map(|b| &b.snapshot),
                &response.snapshot,
                &mut ctx,
            )
        };
        let routed: Vec<(Event, Vec<String>)> = events
            .into_iter()
            .map(|e| {
                let channels = self.route(watch, &e.kind());
                (e, channels)
            })
            .collect();
        let mut new_uid = || uuid::Uuid::new_v4().to_string();
        let write = PollWrite {
            watch: &watch.name,
            target: &watch.target,
            started_at,
            duration_ms: timer.elapsed().as_millis() as i64,
            finished_at: observed_at_ms,
            snapshot: &response.snapshot,
            raw_body: &response.body,
            request_id: response.request_id.as_deref(),
            events: &routed,
            new_uid: &mut new_uid,
        };
        match self.store.record_poll(write).await {
            Ok(outcome) => {
                for (event, channels) in &routed {
                    tracing::info!(
                        watch = %watch.name,
                        kind = %event.kind(),
                        channels = %channels.join(","),
                        "event"
                    );
                }
                report.outcome = Some(outcome);
                report.events = routed.into_iter().map(|(e, _)| e).collect();
            }
            Err(e) => {
                // Nothing was written: the next poll sees the same change again.
                let message = format!("could not store the poll result: {e}");
                tracing::error!(watch = %watch.name, error = %message, "poll not recorded");
                report.error = Some(message);
            }
        }
        report
    }

    async fn fail_poll(
        &self,
        report: &mut PollReport,
        started_at: i64,
        timer: Instant,
        code: Option<&str>,
        message: String,
    ) {
        let message = self.redactor.redact(&message);
        tracing::warn!(watch = %report.watch, error = %message, "poll failed");
        if let Err(e) = self
            .store
            .record_poll_error(
                &report.watch,
                started_at,
                timer.elapsed().as_millis() as i64,
                code,
                &message,
            )
            .await
        {
            tracing::error!(watch = %report.watch, error = %e, "could not record the failed poll");
        }
        report.error = Some(message);
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

    /// Poll the given watches (all when `None`), at most `concurrency` at a time.
    pub async fn poll_many(&self, names: Option<&[String]>) -> Vec<PollReport> {
        let watches: Vec<WatchConfig> = self
            .config
            .watches
            .iter()
            .filter(|w| names.is_none_or(|n| n.contains(&w.name)))
            .cloned()
            .collect();
        let limit = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut set = JoinSet::new();
        for (i, watch) in watches.into_iter().enumerate() {
            let app = self.clone();
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                (i, app.poll_watch(&watch).await)
            });
        }
        let mut reports: Vec<(usize, PollReport)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => reports.push(r),
                Err(e) => tracing::error!(error = %e, "a poll task panicked"),
            }
        }
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// Send every delivery that is due now, once, and record each attempt.
    pub async fn deliver_due(&self) -> Result<DeliveryReport, StoreError> {
        let mut report = DeliveryReport::default();
        let due = self.store.due_deliveries(self.clock.now_ms(), 500).await?;
        for delivery in due {
            let Some(channel) = self.config.channel(&delivery.channel) else {
                // Kept, not dropped: it goes out if the channel comes back under that name.
                tracing::warn!(
                    channel = %delivery.channel,
                    "a pending notification names a channel that is no longer configured; kept for later"
                );
                continue;
            };
            let attempted_at = self.clock.now_ms();
            let kind = delivery.event.kind();
            let rendered = match self.renderer.render(&delivery.channel, &delivery.event) {
                Ok(r) => r,
                Err(e) => {
                    let error = self.redactor.redact(&e.to_string());
                    let retry_at = attempted_at + self.backoff_ms(delivery.attempts, None);
                    self.store
                        .record_attempt(
                            delivery.id,
                            &AttemptWrite {
                                attempted_at,
                                duration_ms: 0,
                                outcome: "render_error".into(),
                                http_status: None,
                                vendor_code: None,
                                error: Some(error.clone()),
                            },
                            &DeliveryState::RetryAt(retry_at),
                        )
                        .await?;
                    report.retrying += 1;
                    report
                        .failures
                        .push(format!("{} {kind}: {error}", delivery.channel));
                    continue;
                }
            };
            if let Some(reason) = &rendered.fallback_reason {
                tracing::warn!(channel = %delivery.channel, reason = %reason,
                    "the channel's template failed; the built-in template was used");
            }
            let sent = self
                .notifier
                .send(
                    &channel.spec,
                    &Outgoing {
                        delivery_id: &delivery.uid,
                        body: &rendered.body,
                    },
                )
                .await;
            let error = (!sent.error.is_empty()).then(|| self.redactor.redact(&sent.error));
            let (state, outcome) = match sent.outcome {
                Outcome::Delivered => {
                    report.delivered += 1;
                    (DeliveryState::Delivered, "delivered")
                }
                Outcome::Retryable => {
                    report.retrying += 1;
                    let wait = self.backoff_ms(delivery.attempts, sent.retry_after);
                    (DeliveryState::RetryAt(attempted_at + wait), "retryable")
                }
                Outcome::Permanent => {
                    report.dead += 1;
                    (DeliveryState::Dead, "permanent")
                }
            };
            if let Some(e) = &error {
                tracing::warn!(channel = %delivery.channel, kind = %kind, outcome, error = %e, "delivery failed");
                report
                    .failures
                    .push(format!("{} {kind}: {e}", delivery.channel));
            } else {
                tracing::info!(channel = %delivery.channel, kind = %kind, "delivered");
            }
            self.store
                .record_attempt(
                    delivery.id,
                    &AttemptWrite {
                        attempted_at,
                        duration_ms: sent.duration.as_millis() as i64,
                        outcome: outcome.into(),
                        http_status: sent.http_status,
                        vendor_code: sent.vendor_code.clone(),
                        error,
                    },
                    &state,
                )
                .await?;
        }
        Ok(report)
    }

    /// Delay before the next attempt: doubling from `retry_base`, capped at `retry_max`, with
    /// up to 20% jitter, and never sooner than the receiver's `Retry-After`.
    fn backoff_ms(&self, attempts: i64, retry_after: Option<Duration>) -> i64 {
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
