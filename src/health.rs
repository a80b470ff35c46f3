//! Poll health: a watch whose polls keep failing is announced once (`poll.failed`, after
//! `[delivery] poll_failure_threshold` failures in a row), its recovery too (`poll.recovered`,
//! on the next success), and the scheduler is told how long to leave a failing watch alone.
//!
//! Why: an alert tool that silently stops seeing DBS is worse than none, and one that retries a
//! wrong AccessKey every few seconds gets the account throttled. The run of failures is read from
//! the poll log and the announcement is written in the same transaction as the failed poll, so
//! a restart neither repeats nor loses it.

use std::time::Duration;

use crate::config::WatchConfig;
use crate::dbs::{DbsError, ErrorKind};
use crate::event::{Change, Event, PollHealth};
use crate::pipeline::{App, PollReport};
use crate::snapshot::Snapshot;
use crate::store::{PollFailureWrite, StoreError};

/// First wait after a throttled, failing or unreachable DBS, doubled per failure in a row.
pub const POLL_BACKOFF_BASE: Duration = Duration::from_secs(30);

/// The longest wait between two polls of a watch whose polls keep failing for a reason that
/// may pass (throttling, 5xx, network). Also the wait after an error that will not fix itself
/// (signature, AccessKey, permission, clock): at most one poll per ten minutes, so a wrong key
/// is not hammered against the API while someone fixes it.
pub const POLL_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Why a poll failed, in the terms poll health needs.
#[derive(Debug, Clone)]
pub struct PollFailure {
    /// DBS error code, when there was one.
    pub code: Option<String>,
    /// The classification that decides the backoff.
    pub kind: ErrorKind,
    /// The whole error in plain words, with what to do (redacted before it is stored).
    pub message: String,
    /// What to do, on its own.
    pub hint: String,
    /// The server's `x-acs-retry-after`, if it asked for a wait.
    pub retry_after: Option<Duration>,
}

impl PollFailure {
    /// From a DBS client error: its code, classification, sentence (which for
    /// `SignatureDoesNotMatch` says whether the secret or the request was wrong) and hint.
    pub fn from_dbs(e: &DbsError) -> PollFailure {
        let text = e.to_string();
        let hint = e.hint();
        let message = if hint.is_empty() || text.contains(&hint) {
            text
        } else {
            format!("{text}; {hint}")
        };
        PollFailure {
            code: e.code().map(str::to_string),
            kind: e.kind(),
            message,
            hint,
            retry_after: e.retry_after(),
        }
    }

    /// No AccessKey is configured at all.
    pub fn no_credentials(message: &str) -> PollFailure {
        PollFailure {
            code: None,
            kind: ErrorKind::Credentials,
            message: message.to_string(),
            hint: "set the AccessKey and restart dbswatch".to_string(),
            retry_after: None,
        }
    }
}

/// How long to leave a watch alone after `failures` failed polls in a row, or `None` to keep
/// its schedule. Throttling, 5xx and network trouble back off exponentially from
/// [`POLL_BACKOFF_BASE`] to [`POLL_BACKOFF_MAX`] with jitter (`jitter` in 0..1 scales the upper
/// half), never shorter than the server's `x-acs-retry-after`; signature, credential,
/// permission and clock errors wait [`POLL_BACKOFF_MAX`] (they need a person, not a retry); a
/// reply that could not be read or a refused id keeps the schedule.
pub fn poll_backoff(
    kind: ErrorKind,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    match kind {
        ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Network | ErrorKind::Timeout => {
            let doublings = failures.saturating_sub(1).min(16);
            let full = POLL_BACKOFF_BASE
                .saturating_mul(1u32 << doublings)
                .min(POLL_BACKOFF_MAX);
            let half = full / 2;
            let wait = half + half.mul_f64(jitter.clamp(0.0, 1.0));
            Some(wait.max(retry_after.unwrap_or(Duration::ZERO)))
        }
        ErrorKind::Signature
        | ErrorKind::Credentials
        | ErrorKind::Permission
        | ErrorKind::ClockSkew
        | ErrorKind::CredentialSource
        | ErrorKind::Config => Some(POLL_BACKOFF_MAX.max(retry_after.unwrap_or(Duration::ZERO))),
        ErrorKind::BadResponse | ErrorKind::Api => retry_after,
    }
}

/// The earliest time the scheduler may look for `watch`'s next fire time: `after`, or later
/// when the watch's last poll failed and asked for a backoff.
pub fn poll_floor(
    reports: &[PollReport],
    watch: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    reports
        .iter()
        .find(|r| r.watch == watch)
        .and_then(|r| r.not_before_ms)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(after, |at| at.max(after))
}

/// A uniform value in [0, 1) from a v4 UUID's random bits.
fn jitter() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() >> 75) as u64;
    bits as f64 / (1u64 << 53) as f64
}

/// A poll-health event of `watch`, showing the last known state of its target.
fn health_event(
    watch: &WatchConfig,
    change: Change,
    prev: Option<&Snapshot>,
    next: Option<&Snapshot>,
    observed_at_ms: i64,
    health: PollHealth,
) -> Event {
    let now = next.or(prev);
    Event {
        id: uuid::Uuid::new_v4().to_string(),
        scope: watch.target.scope(),
        change,
        watch: watch.name.clone(),
        target: watch.target.clone(),
        status_before: prev.and_then(|s| s.status.clone()),
        status: now.and_then(|s| s.status.clone()),
        progress_before: prev.and_then(|s| s.progress),
        progress: now.and_then(|s| s.progress),
        items: Vec::new(),
        item_change: None,
        item_total: now.map_or(0, |s| s.items.len()),
        observed_at_ms,
        job_error: None,
        restore_task: None,
        poll: Some(health),
    }
}

impl App {
    /// Record a failed poll: the poll row, and `poll.failed` with its deliveries when this
    /// failure reaches the threshold for the first time in this run of failures. Sets the
    /// report's error, events and `not_before_ms`.
    pub(crate) async fn record_poll_failure(
        &self,
        watch: &WatchConfig,
        report: &mut PollReport,
        started_at: i64,
        duration_ms: i64,
        failure: PollFailure,
    ) {
        let message = self.redactor.redact(&failure.message);
        let hint = self.redactor.redact(&failure.hint);
        tracing::warn!(watch = %report.watch, error = %message, "poll failed");
        let now = self.clock.now_ms();
        let baseline = match self.store.baseline(&watch.name, &watch.target).await {
            Ok(b) => b.map(|b| b.snapshot),
            Err(_) => None,
        };
        let channels = self.route(watch, "poll.failed");
        let kind = failure.kind;
        let code = failure.code.clone();
        let mut announce = |failures: u32, since_ms: i64| {
            let health = PollHealth {
                failures,
                since_ms,
                error_kind: Some(kind.as_str().to_string()),
                code: code.clone(),
                message: message.clone(),
                hint: hint.clone(),
            };
            let event = health_event(
                watch,
                Change::PollFailed,
                baseline.as_ref(),
                None,
                now,
                health,
            );
            (event, channels.clone())
        };
        let mut new_uid = || uuid::Uuid::new_v4().to_string();
        let failures = match self
            .store
            .record_poll_failure(PollFailureWrite {
                watch: &watch.name,
                started_at,
                duration_ms,
                code: failure.code.as_deref(),
                message: &message,
                threshold: self.config.delivery.poll_failure_threshold,
                now,
                announce: &mut announce,
                new_uid: &mut new_uid,
            })
            .await
        {
            Ok(recorded) => {
                if let Some(event) = recorded.announced {
                    tracing::warn!(
                        watch = %watch.name,
                        failures = recorded.failures,
                        "polls keep failing; poll.failed announced"
                    );
                    report.events.push(event);
                }
                recorded.failures
            }
            Err(e) => {
                tracing::error!(watch = %report.watch, error = %e, "could not record the failed poll");
                1
            }
        };
        let backoff = poll_backoff(failure.kind, failures, failure.retry_after, jitter());
        if let Some(wait) = backoff {
            tracing::info!(
                watch = %watch.name,
                failures,
                wait_secs = wait.as_secs(),
                "the next poll of this watch waits"
            );
        }
        report.not_before_ms = backoff.map(|wait| now + wait.as_millis() as i64);
        report.error = Some(message);
    }

    /// `poll.recovered` for a successful poll of `watch` whose failures were announced, else
    /// `None`. The caller writes it with the poll, so it is announced exactly once.
    pub(crate) async fn recovered_event(
        &self,
        watch: &WatchConfig,
        prev: Option<&Snapshot>,
        next: &Snapshot,
        observed_at_ms: i64,
    ) -> Result<Option<Event>, StoreError> {
        if !self.store.poll_failure_announced(&watch.name).await? {
            return Ok(None);
        }
        let streak = self.store.poll_streak(&watch.name).await?;
        let health = match streak {
            Some(s) => PollHealth {
                failures: s.failures,
                since_ms: s.since_ms,
                error_kind: None,
                code: s.last_code,
                message: s.last_message,
                hint: String::new(),
            },
            None => PollHealth {
                failures: 0,
                since_ms: observed_at_ms,
                error_kind: None,
                code: None,
                message: String::new(),
                hint: String::new(),
            },
        };
        Ok(Some(health_event(
            watch,
            Change::PollRecovered,
            prev,
            Some(next),
            observed_at_ms,
            health,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn throttling_backs_off_exponentially_with_jitter_and_a_cap() {
        let at = |failures, jitter| poll_backoff(ErrorKind::Throttled, failures, None, jitter);
        assert_eq!(at(1, 1.0), Some(Duration::from_secs(30)));
        assert_eq!(at(1, 0.0), Some(Duration::from_secs(15)));
        assert_eq!(at(2, 1.0), Some(MIN));
        assert_eq!(at(3, 1.0), Some(2 * MIN));
        assert_eq!(at(10, 1.0), Some(10 * MIN), "capped");
        assert_eq!(at(1000, 0.0), Some(5 * MIN));
        for kind in [ErrorKind::Server, ErrorKind::Network, ErrorKind::Timeout] {
            assert_eq!(poll_backoff(kind, 2, None, 1.0), Some(MIN), "{kind}");
        }
    }

    #[test]
    fn the_servers_retry_after_is_a_floor() {
        let asked = Some(Duration::from_secs(90));
        assert_eq!(
            poll_backoff(ErrorKind::Throttled, 1, asked, 1.0),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            poll_backoff(ErrorKind::Api, 1, asked, 1.0),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            poll_backoff(ErrorKind::Throttled, 9, asked, 1.0),
            Some(10 * MIN)
        );
    }

    #[test]
    fn errors_that_need_a_person_are_not_retried_in_a_tight_loop() {
        for kind in [
            ErrorKind::Signature,
            ErrorKind::Credentials,
            ErrorKind::Permission,
            ErrorKind::ClockSkew,
            ErrorKind::Config,
        ] {
            assert_eq!(poll_backoff(kind, 1, None, 0.0), Some(10 * MIN), "{kind}");
        }
        assert_eq!(poll_backoff(ErrorKind::BadResponse, 5, None, 1.0), None);
        assert_eq!(poll_backoff(ErrorKind::Api, 5, None, 1.0), None);
    }
}
