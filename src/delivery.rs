//! The delivery pass over one channel's due deliveries: what becomes one message, what is a
//! flapping repeat, when the receiver may be sent to, and what an attempt's outcome means for
//! the rows. [`App::deliver_due`] claims the due rows and runs this per channel.
//!
//! The promises and how they are kept:
//! - **Never lost.** Nothing lives only in memory: every decision (muted, postponed, frozen,
//!   attempted, dead) is a row update, and a claimed row whose process dies becomes due again
//!   when its lease ends.
//! - **Never doubled as the reader sees it.** A message's members and idempotency id are
//!   frozen in the database before the request goes out. A resend after a timeout, a 5xx or a
//!   crash covers the same changes under the same id (DingTalk `msgUuid`, Standard Webhooks
//!   `webhook-id`), so a receiver that deduplicates shows it once. Only when the receiver
//!   certainly did not take a message (connection refused, 429, a "too fast" code) is it
//!   unfrozen, so it can be merged with newer changes under a new id. Newer changes of a watch
//!   wait behind a frozen older message, so a late retry never lands after a newer one.
//! - **Never a ban.** Each receiver (the URL without DingTalk's per-request `timestamp` and
//!   `sign`) has exact sliding windows ([`crate::ratelimit`]), seeded from the attempt log on
//!   first use so a restart cannot burst past them. A message the window has no room for is
//!   postponed, not attempted and not dropped; while it waits, more changes of its watch pile
//!   up and go out merged.
//! - **One message per watch and moment.** Due changes of one watch on one chat channel are one
//!   message (the headline change in full, the others listed). Generic webhooks get one request
//!   per event, because machines consume them per event.
//! - **Flapping is muted.** With `repeat_interval`, a change equal to one the receiver already
//!   accepted for the watch within that span is recorded as `muted`; the next message of the
//!   watch says how many were muted. Changes still waiting are merged instead, so a merged
//!   message always leads with the newest state.

use std::collections::{HashMap, HashSet, VecDeque};

use sha2::{Digest, Sha256};

use crate::config::ChannelConfig;
use crate::config::outbox::format_duration;
use crate::event::{Change, Event};
use crate::notify::{ChannelKind, ChannelSpec, Outcome, Outgoing};
use crate::pipeline::{App, DeliveryReport};
use crate::ratelimit::{Limiter, Rate};
use crate::store::{AttemptWrite, DeliveryState, OutboxRow, SendFinish, SendStart, StoreError};

/// How long before the end of its lease a waiting row is leased again, beyond the longest a
/// send may take: room for recording the send's outcome.
const LEASE_SLACK_MS: i64 = 1_000;

/// Send-rate windows per receiver, shared by every delivery pass of the process.
#[derive(Debug, Default)]
pub struct SendLimits {
    inner: tokio::sync::Mutex<LimitState>,
}

#[derive(Debug, Default)]
struct LimitState {
    limiter: Limiter,
    /// Receivers whose windows were filled from the attempt log.
    seeded: HashSet<String>,
    /// Receivers that failed and are backing off: until when only retries go to them.
    backing_off: HashMap<String, i64>,
}

impl SendLimits {
    /// No receiver seen yet.
    pub fn new() -> SendLimits {
        SendLimits::default()
    }

    /// Take a send slot for the receiver `key` at `now` in every one of its windows, or say
    /// when there will be room. The first use of a key fills its windows with the messages the
    /// attempt log shows for every channel sharing that receiver.
    async fn acquire(
        &self,
        app: &App,
        key: &str,
        rates: &[Rate],
        now: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        if rates.is_empty() {
            return Ok(Ok(()));
        }
        let mut state = self.inner.lock().await;
        if !state.seeded.contains(key) {
            let longest = rates.iter().map(|r| r.window_ms).max().unwrap_or(0);
            let sharing: Vec<String> = app
                .config
                .channels
                .iter()
                .filter(|c| receiver_key(&c.spec) == key)
                .map(|c| c.spec.name.clone())
                .collect();
            let sends = app.store.recent_sends(&sharing, now - longest).await?;
            for (i, rate) in rates.iter().enumerate() {
                let window = state.limiter.window(&window_key(key, i), *rate);
                for at in sends.iter().filter(|at| **at > now - rate.window_ms) {
                    window.record(*at);
                }
            }
            state.seeded.insert(key.to_string());
        }
        let mut available = now;
        for (i, rate) in rates.iter().enumerate() {
            let window = state.limiter.window(&window_key(key, i), *rate);
            available = available.max(window.available_at(now));
        }
        if available > now {
            return Ok(Err(available));
        }
        for (i, rate) in rates.iter().enumerate() {
            state.limiter.window(&window_key(key, i), *rate).record(now);
        }
        Ok(Ok(()))
    }
}

impl SendLimits {
    /// Until when the receiver `key` is backing off after a failure, if it is at `now`.
    async fn backing_off_until(&self, key: &str, now: i64) -> Option<i64> {
        let state = self.inner.lock().await;
        state.backing_off.get(key).copied().filter(|at| *at > now)
    }

    /// Record how the last message to `key` went: a retryable failure makes new messages wait
    /// until `retry_at` (only retries test the receiver meanwhile); a success ends that.
    async fn note_outcome(&self, key: &str, retry_at: Option<i64>) {
        let mut state = self.inner.lock().await;
        match retry_at {
            Some(at) => {
                state.backing_off.insert(key.to_string(), at);
            }
            None => {
                state.backing_off.remove(key);
            }
        }
    }
}

fn window_key(key: &str, i: usize) -> String {
    format!("{key}#{i}")
}

/// The receiver a channel sends to, for rate limiting: its URL without the `timestamp` and
/// `sign` DingTalk signing adds per request, so two channels on one robot share its limit.
/// It still holds the token: keep it in memory, never log it.
pub fn receiver_key(spec: &ChannelSpec) -> String {
    let raw = spec.url.expose().trim();
    let Ok(mut url) = reqwest::Url::parse(raw) else {
        return raw.to_string();
    };
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "timestamp" && k != "sign")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    url.set_fragment(None);
    url.to_string()
}

/// What makes two changes "the same transition" for `repeat_interval`: the kind and where it
/// went (the status, or the check and its new state). Progress is never a repeat: 40% and 70%
/// are different news.
pub fn repeat_key(event: &Event) -> Option<String> {
    match event.change {
        Change::Progress => None,
        Change::ItemChanged => {
            let item = event.item_change.as_ref().map(|c| &c.item);
            Some(format!(
                "{}|{}|{}",
                event.kind(),
                item.and_then(|i| i.code.as_deref()).unwrap_or(""),
                item.and_then(|i| i.state.as_deref()).unwrap_or("")
            ))
        }
        Change::PollFailed | Change::PollRecovered => Some(event.kind()),
        _ => Some(format!(
            "{}|{}",
            event.kind(),
            event.status.as_deref().unwrap_or("")
        )),
    }
}

/// The idempotency id of a message: the delivery's own id when it goes alone (a single change
/// keeps the id it always had), else a version-8 UUID derived from the first member's id and
/// every other member's, so the same members always give the same id and a different set
/// never does.
pub fn message_id(member_uids: &[&str]) -> String {
    match member_uids {
        [] => String::new(),
        [only] => (*only).to_string(),
        many => {
            let mut hash = Sha256::new();
            for uid in many {
                hash.update(uid.as_bytes());
                hash.update([0u8]);
            }
            let digest = hash.finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .to_string()
        }
    }
}

/// One message to send: its members (oldest first) and, when a send of it may already have
/// reached the receiver, the id it is frozen under.
#[derive(Debug)]
struct Planned {
    watch: String,
    members: Vec<OutboxRow>,
    frozen: Option<String>,
}

impl Planned {
    /// A message whose send was tried before: it is what tests a receiver that backs off.
    fn is_retry(&self) -> bool {
        self.frozen.is_some() || self.members.iter().any(|m| m.backoff_attempts > 0)
    }

    fn ids(&self) -> Vec<i64> {
        self.members.iter().map(|m| m.id).collect()
    }

    fn first_id(&self) -> i64 {
        self.members.iter().map(|m| m.id).min().unwrap_or(i64::MAX)
    }

    fn kinds(&self) -> String {
        let kinds: Vec<String> = self.members.iter().map(|m| m.event.kind()).collect();
        kinds.join("+")
    }
}

impl App {
    /// Work through one channel's claimed deliveries: mute repeats, plan messages, and send
    /// them in order within the receiver's rate limit. A retryable failure stops the channel
    /// for this pass: everything behind it waits for the same retry time (and is merged then),
    /// instead of hitting a receiver that is down once per message.
    pub(crate) async fn deliver_channel(
        &self,
        channel_name: &str,
        claimed: Vec<OutboxRow>,
        leased_until: i64,
    ) -> Result<DeliveryReport, StoreError> {
        let mut report = DeliveryReport::default();
        let Some(channel) = self.config.channel(channel_name) else {
            // Kept, not dropped: the lease expires and it goes out if the channel comes back.
            tracing::warn!(
                channel = %channel_name,
                pending = claimed.len(),
                "pending notifications name a channel that is no longer configured; kept for later"
            );
            return Ok(report);
        };
        let mut rows = Vec::with_capacity(claimed.len());
        for row in claimed {
            if row.batch_uid.is_none()
                && let Some(reason) = self.repeat_reason(channel, &row).await?
            {
                self.store
                    .mute(row.id, &reason, self.clock.now_ms())
                    .await?;
                tracing::info!(channel = %channel_name, kind = %row.event.kind(), watch = %row.event.watch, "repeat muted");
                report.muted += 1;
                continue;
            }
            rows.push(row);
        }
        let mut plans = self.plan(channel, rows, &mut report).await?;
        let key = receiver_key(&channel.spec);
        let rates = channel.rates();
        let now = self.clock.now_ms();
        if let Some(until) = self.send_limits.backing_off_until(&key, now).await {
            // The receiver failed recently: only retries go now; new messages wait for the
            // retry time (or for a retry that succeeds in this pass).
            plans.sort_by_key(|p| !p.is_retry());
            if !plans.iter().any(Planned::is_retry) {
                let ids: Vec<i64> = plans.iter().flat_map(Planned::ids).collect();
                report.postponed += ids.len();
                self.store.reschedule(&ids, until).await?;
                return Ok(report);
            }
        }
        // The muted repeats each watch's next message reports: one query for the pass (only
        // fresh messages report them; a frozen one reports what it was frozen with).
        let mut muted_by_watch = if plans.iter().any(|p| p.frozen.is_none()) {
            self.store.unreported_muted_by_watch(channel_name).await?
        } else {
            HashMap::new()
        };
        let mut queue: VecDeque<Planned> = plans.into();
        // The rows waiting their turn stay ours while the queue is worked through: before each
        // send their lease must outlast it. Extended only when it would not, so a backlog of a
        // few hundred rows costs a lease write every couple of seconds, not one per message.
        let timeout_ms = self.config.delivery.timeout.as_millis() as i64;
        let mut leased_until = leased_until;
        while let Some(plan) = queue.pop_front() {
            let now = self.clock.now_ms();
            if !plan.is_retry()
                && let Some(until) = self.send_limits.backing_off_until(&key, now).await
            {
                let mut ids = plan.ids();
                ids.extend(queue.iter().flat_map(Planned::ids));
                report.postponed += ids.len();
                self.store.reschedule(&ids, until).await?;
                break;
            }
            if now + timeout_ms + LEASE_SLACK_MS > leased_until {
                let waiting: Vec<i64> = queue.iter().flat_map(Planned::ids).collect();
                leased_until = now + self.lease_ms();
                self.store.reschedule(&waiting, leased_until).await?;
            }
            match self
                .send_one(
                    channel,
                    &key,
                    &rates,
                    plan,
                    &mut muted_by_watch,
                    &mut report,
                )
                .await?
            {
                Next::Continue => {}
                Next::HoldRest(until) => {
                    let rest: Vec<i64> = queue.iter().flat_map(Planned::ids).collect();
                    report.postponed += rest.len();
                    self.store.reschedule(&rest, until).await?;
                    break;
                }
            }
        }
        Ok(report)
    }

    /// Why `row` is a repeat that must not be sent (`repeat_interval`), or `None`.
    async fn repeat_reason(
        &self,
        channel: &ChannelConfig,
        row: &OutboxRow,
    ) -> Result<Option<String>, StoreError> {
        let Some(window) = channel.repeat_interval else {
            return Ok(None);
        };
        let Some(key) = repeat_key(&row.event) else {
            return Ok(None);
        };
        let since = row.event.observed_at_ms - window.as_millis() as i64;
        let earlier = self
            .store
            .earlier_sends(&channel.spec.name, &row.event.watch, since, row.id)
            .await?;
        Ok(earlier
            .iter()
            .any(|e| repeat_key(e).as_deref() == Some(key.as_str()))
            .then(|| {
                format!(
                    "muted: {} repeated within the channel's repeat_interval ({}); the next \
                     message of this watch says so",
                    row.event.kind(),
                    format_duration(window)
                )
            }))
    }

    /// Turn a channel's due rows into messages, oldest first. Rows frozen into a message are
    /// sent as exactly that message. Other rows of a watch become one message (one per row for
    /// generic webhooks), unless an older frozen message of the watch is still waiting: then
    /// they wait for it.
    async fn plan(
        &self,
        channel: &ChannelConfig,
        rows: Vec<OutboxRow>,
        report: &mut DeliveryReport,
    ) -> Result<Vec<Planned>, StoreError> {
        let mut watches: Vec<(String, Vec<OutboxRow>)> = Vec::new();
        for row in rows {
            match watches.iter_mut().find(|(w, _)| *w == row.event.watch) {
                Some((_, list)) => list.push(row),
                None => watches.push((row.event.watch.clone(), vec![row])),
            }
        }
        // Which watches have an older message waiting for its retry: one query for the pass.
        let mut waiting_frozen = if watches.is_empty() {
            HashMap::new()
        } else {
            self.store.frozen_messages(&channel.spec.name).await?
        };
        let mut plans = Vec::new();
        for (watch, rows) in watches {
            let (frozen, fresh): (Vec<OutboxRow>, Vec<OutboxRow>) =
                rows.into_iter().partition(|r| r.batch_uid.is_some());
            let mut frozen_ids: Vec<String> = Vec::new();
            for row in &frozen {
                let uid = row.batch_uid.clone().expect("partitioned on batch_uid");
                if !frozen_ids.contains(&uid) {
                    frozen_ids.push(uid);
                }
            }
            for uid in &frozen_ids {
                let members = self.store.batch_members(uid).await?;
                if !members.is_empty() {
                    plans.push(Planned {
                        watch: watch.clone(),
                        members,
                        frozen: Some(uid.clone()),
                    });
                }
            }
            if fresh.is_empty() {
                continue;
            }
            if frozen_ids.is_empty()
                && let Some((_, due)) = waiting_frozen.remove(&watch)
            {
                // An older message of this watch is waiting for its retry: go after it.
                let ids: Vec<i64> = fresh.iter().map(|r| r.id).collect();
                report.postponed += ids.len();
                self.store
                    .reschedule(&ids, due.max(self.clock.now_ms()))
                    .await?;
                continue;
            }
            if channel.spec.kind == ChannelKind::Webhook {
                plans.extend(fresh.into_iter().map(|row| Planned {
                    watch: watch.clone(),
                    members: vec![row],
                    frozen: None,
                }));
            } else {
                plans.push(Planned {
                    watch: watch.clone(),
                    members: fresh,
                    frozen: None,
                });
            }
        }
        plans.sort_by_key(Planned::first_id);
        Ok(plans)
    }

    /// Render, rate-limit, freeze, send and record one message.
    async fn send_one(
        &self,
        channel: &ChannelConfig,
        key: &str,
        rates: &[Rate],
        plan: Planned,
        muted_by_watch: &mut HashMap<String, Vec<i64>>,
        report: &mut DeliveryReport,
    ) -> Result<Next, StoreError> {
        let name = channel.spec.name.as_str();
        let ids = plan.ids();
        let (message, muted) = match &plan.frozen {
            Some(uid) => (uid.clone(), self.store.muted_in_message(uid).await?),
            None => {
                let uids: Vec<&str> = plan.members.iter().map(|m| m.uid.as_str()).collect();
                // Taken: the first message of the watch in this pass reports them.
                let muted = muted_by_watch.remove(&plan.watch).unwrap_or_default();
                (message_id(&uids), muted)
            }
        };
        let events: Vec<Event> = plan.members.iter().map(|m| m.event.clone()).collect();
        let attempts = plan
            .members
            .iter()
            .map(|m| m.backoff_attempts)
            .max()
            .unwrap_or(0);
        let rendered = match self.renderer.render_group(name, &events, muted.len()) {
            Ok(r) => r,
            Err(e) => {
                // Not reported by this message after all: the watch's next one reports them.
                if plan.frozen.is_none() && !muted.is_empty() {
                    muted_by_watch.insert(plan.watch.clone(), muted);
                }
                let now = self.clock.now_ms();
                let error = self.redactor.redact(&e.to_string());
                let retry_at = now + self.backoff_ms(attempts, None);
                for id in &ids {
                    self.store
                        .record_attempt(
                            *id,
                            &AttemptWrite {
                                attempted_at: now,
                                duration_ms: 0,
                                outcome: "render_error".into(),
                                http_status: None,
                                vendor_code: None,
                                error: Some(error.clone()),
                            },
                            &DeliveryState::RetryAt(retry_at),
                        )
                        .await?;
                }
                report.retrying += ids.len();
                report
                    .failures
                    .push(format!("{name} {}: {error}", plan.kinds()));
                return Ok(Next::Continue);
            }
        };
        if let Some(reason) = &rendered.fallback_reason {
            tracing::warn!(channel = %name, reason = %reason,
                "the channel's template failed; the built-in template was used");
        }

        let now = self.clock.now_ms();
        if let Err(at) = self.send_limits.acquire(self, key, rates, now).await? {
            tracing::info!(
                channel = %name,
                wait_ms = at - now,
                "receiver's rate limit reached; messages wait in the outbox"
            );
            report.postponed += ids.len();
            self.store.reschedule(&ids, at).await?;
            if plan.frozen.is_none() && !muted.is_empty() {
                muted_by_watch.insert(plan.watch.clone(), muted);
            }
            return Ok(Next::HoldRest(at));
        }

        let attempted_at = self.clock.now_ms();
        let attempt_ids = self
            .store
            .begin_send(&SendStart {
                batch_uid: &message,
                members: &ids,
                muted_notes: &muted,
                attempted_at,
                lease_until: attempted_at + self.lease_ms(),
            })
            .await?;
        let sent = self
            .notifier
            .send(
                &channel.spec,
                &Outgoing {
                    delivery_id: &message,
                    body: &rendered.body,
                },
            )
            .await;
        let mut error = (!sent.error.is_empty()).then(|| self.redactor.redact(&sent.error));
        let budget = self.config.delivery.retry_budget;
        let budget_from = plan
            .members
            .iter()
            .map(|m| m.budget_from)
            .min()
            .unwrap_or(attempted_at);
        // One retry time for the message and for the receiver's backoff, so the retry is the
        // first thing due when the receiver is tried again.
        let retry_at = attempted_at + self.backoff_ms(attempts, sent.retry_after);
        let (state, outcome, next) = match sent.outcome {
            Outcome::Delivered => (DeliveryState::Delivered, "delivered", Next::Continue),
            Outcome::Permanent => (DeliveryState::Dead, "permanent", Next::Continue),
            Outcome::Retryable if attempted_at - budget_from >= budget.as_millis() as i64 => {
                let reason = format!(
                    "gave up after {} of retries (retry_budget); `dbswatch redeliver` sends it \
                     again",
                    format_duration(budget)
                );
                error = Some(match error {
                    Some(e) => format!("{e}; {reason}"),
                    None => reason,
                });
                (DeliveryState::Dead, "retryable", Next::Continue)
            }
            Outcome::Retryable => (
                DeliveryState::RetryAt(retry_at),
                "retryable",
                Next::HoldRest(retry_at),
            ),
        };
        // Unfreeze only a first send under this id that certainly did not arrive; once any
        // send of it may have arrived, every retry must be that same message.
        let release = sent.not_received && plan.frozen.is_none();
        self.store
            .finish_send(&SendFinish {
                batch_uid: &message,
                members: &ids,
                attempt_ids: &attempt_ids,
                attempt: &AttemptWrite {
                    attempted_at,
                    duration_ms: sent.duration.as_millis() as i64,
                    outcome: outcome.into(),
                    http_status: sent.http_status,
                    vendor_code: sent.vendor_code.clone(),
                    error: error.clone(),
                },
                state: state.clone(),
                release,
            })
            .await?;
        // A retryable failure (even one that used up this message's budget) means the receiver
        // is in trouble; an acceptance or a refusal of this message alone means it is fine.
        let backing_off = (sent.outcome == Outcome::Retryable).then_some(retry_at);
        self.send_limits.note_outcome(key, backing_off).await;
        match state {
            DeliveryState::Delivered => {
                report.delivered += ids.len();
                tracing::info!(channel = %name, kinds = %plan.kinds(), changes = ids.len(), "delivered");
            }
            DeliveryState::RetryAt(_) => report.retrying += ids.len(),
            DeliveryState::Dead => report.dead += ids.len(),
        }
        if let Some(e) = &error {
            tracing::warn!(channel = %name, kinds = %plan.kinds(), outcome, error = %e, "delivery failed");
            report
                .failures
                .push(format!("{name} {}: {e}", plan.kinds()));
        }
        Ok(next)
    }
}

/// What the channel's pass does after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Go on with the next message.
    Continue,
    /// Stop: the receiver is backing off or full; everything behind waits until this time.
    HoldRest(i64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ItemChange;
    use crate::secret::Secret;
    use crate::snapshot::{Item, Scope, Target};

    fn spec(url: &str) -> ChannelSpec {
        ChannelSpec {
            name: "c".into(),
            kind: ChannelKind::Dingtalk,
            url: Secret::new(url),
            secret: None,
            at_mobiles: Vec::new(),
            keyword: None,
            cloudevents: None,
        }
    }

    #[test]
    fn a_robot_is_one_receiver_whatever_the_signature() {
        let a = receiver_key(&spec(
            "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1&sign=x",
        ));
        let b = receiver_key(&spec(
            "https://oapi.dingtalk.com/robot/send?timestamp=2&access_token=abc&sign=y",
        ));
        let c = receiver_key(&spec(
            "https://oapi.dingtalk.com/robot/send?access_token=other",
        ));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            receiver_key(&spec("https://hooks.slack.com/services/T/B/X")),
            "https://hooks.slack.com/services/T/B/X"
        );
    }

    #[test]
    fn a_message_id_is_the_delivery_id_alone_and_a_stable_digest_of_many() {
        assert_eq!(message_id(&["u1"]), "u1");
        let ab = message_id(&["u1", "u2"]);
        assert_eq!(ab, message_id(&["u1", "u2"]), "same members, same id");
        assert_ne!(ab, message_id(&["u1", "u2", "u3"]), "more members, new id");
        assert_ne!(ab, message_id(&["u1"]));
        let parsed = uuid::Uuid::parse_str(&ab).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert!(
            !ab.contains('.'),
            "Standard Webhooks ids must not contain a dot"
        );
    }

    fn event(change: Change, status: &str) -> Event {
        Event {
            id: "e".into(),
            scope: Scope::Precheck,
            change,
            watch: "w".into(),
            target: Target::BackupPlan("p".into()),
            status_before: None,
            status: Some(status.into()),
            progress_before: None,
            progress: Some(10),
            items: Vec::new(),
            item_change: None,
            item_total: 1,
            observed_at_ms: 0,
            job_error: None,
            restore_task: None,
            poll: None,
        }
    }

    #[test]
    fn repeats_are_the_same_kind_going_to_the_same_place() {
        let failed = event(Change::Failed, "failed");
        assert_eq!(repeat_key(&failed), repeat_key(&failed.clone()));
        assert_ne!(
            repeat_key(&failed),
            repeat_key(&event(Change::Started, "running"))
        );
        assert_eq!(repeat_key(&event(Change::Progress, "running")), None);
        let item = |state: &str| {
            let mut e = event(Change::ItemChanged, "running");
            e.item_change = Some(ItemChange {
                item: Item {
                    code: Some("CHECK_A".into()),
                    state: Some(state.into()),
                    ..Item::default()
                },
                previous_state: None,
            });
            e
        };
        assert_eq!(repeat_key(&item("failed")), repeat_key(&item("failed")));
        assert_ne!(repeat_key(&item("failed")), repeat_key(&item("finish")));
    }
}
