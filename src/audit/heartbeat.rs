//! The scheduler's heartbeat, read by `/healthz`.
//!
//! The daemon loop sleeps until its next due poll or discovery pass, which may be hours away,
//! so the age of its last wake-up alone says nothing about whether it is alive. Before each
//! sleep it records when it expects to wake; a loop that is late for its own wake-up by more
//! than a grace period (a poll stuck past every timeout, a dead runtime) shows as stale, which
//! is what a liveness probe needs to know. An idle loop is healthy however long it sleeps.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How far past the later of the last tick and the expected wake-up `/healthz` waits before
/// answering 503: one poll cycle can take a few minutes when DBS times out on many watches with
/// retries, and the loop ticks only between the steps of a cycle.
pub const STALE_AFTER_MS: i64 = 5 * 60_000;

/// What the scheduler loop reported. Shared (`Arc`) between the loop and the HTTP server.
#[derive(Debug)]
pub struct Heartbeat {
    last_tick_ms: AtomicI64,
    /// When the loop expects to wake next; `i64::MAX` while it waits with nothing scheduled
    /// (then only a stop request wakes it), `i64::MIN` before its first sleep.
    wake_at_ms: AtomicI64,
    wakeups: AtomicU64,
    delivery_wakeups: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            last_tick_ms: AtomicI64::new(i64::MIN),
            wake_at_ms: AtomicI64::new(i64::MIN),
            wakeups: AtomicU64::new(0),
            delivery_wakeups: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// A heartbeat that has never ticked.
    pub fn new() -> Heartbeat {
        Heartbeat::default()
    }

    /// The loop is alive at `now_ms`.
    pub fn tick(&self, now_ms: i64) {
        self.last_tick_ms.store(now_ms, Ordering::SeqCst);
    }

    /// The loop woke from its sleep at `now_ms`: a tick that is also counted, so a test can
    /// check that an idle daemon wakes only for due work.
    pub fn woke(&self, now_ms: i64) {
        self.wakeups.fetch_add(1, Ordering::SeqCst);
        self.tick(now_ms);
    }

    /// The loop goes to sleep until `wake_ms` (epoch ms); `None`: until it is stopped, because
    /// nothing is scheduled.
    pub fn sleeping_until(&self, wake_ms: Option<i64>) {
        self.wake_at_ms
            .store(wake_ms.unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// The delivery task woke to look at the outbox (a signal, a due retry, its start).
    pub fn delivery_woke(&self) {
        self.delivery_wakeups.fetch_add(1, Ordering::SeqCst);
    }

    /// The last tick, if any.
    pub fn last_tick_ms(&self) -> Option<i64> {
        match self.last_tick_ms.load(Ordering::SeqCst) {
            i64::MIN => None,
            ms => Some(ms),
        }
    }

    /// When the loop last said it would wake next (`None` before its first sleep, or while it
    /// waits with nothing scheduled).
    pub fn next_wake_ms(&self) -> Option<i64> {
        match self.wake_at_ms.load(Ordering::SeqCst) {
            i64::MIN | i64::MAX => None,
            ms => Some(ms),
        }
    }

    /// Times the loop woke from its sleep.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::SeqCst)
    }

    /// Times the delivery task woke.
    pub fn delivery_wakeups(&self) -> u64 {
        self.delivery_wakeups.load(Ordering::SeqCst)
    }

    /// `Ok` unless, at `now_ms`, the loop is more than [`STALE_AFTER_MS`] past both its last
    /// tick and the wake-up it announced; else why not.
    pub fn check(&self, now_ms: i64) -> Result<(), String> {
        let Some(tick) = self.last_tick_ms() else {
            return Err("the scheduler has not started".into());
        };
        let wake = self.wake_at_ms.load(Ordering::SeqCst);
        let expected = tick.max(wake);
        if now_ms.saturating_sub(expected) <= STALE_AFTER_MS {
            return Ok(());
        }
        Err(if wake > tick {
            format!(
                "the scheduler was due to wake {} s ago and has not (limit {} s): the loop died \
                 or its runtime is stuck",
                (now_ms - wake) / 1000,
                STALE_AFTER_MS / 1000
            )
        } else {
            format!(
                "the scheduler last ticked {} s ago (limit {} s): a poll is stuck or the loop died",
                (now_ms - tick) / 1000,
                STALE_AFTER_MS / 1000
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_missing_ticks_are_reasons() {
        let h = Heartbeat::new();
        assert!(h.check(0).unwrap_err().contains("not started"));
        h.tick(1_000);
        assert!(h.check(1_000 + STALE_AFTER_MS).is_ok());
        let err = h.check(2_000 + STALE_AFTER_MS).unwrap_err();
        assert!(err.contains("301 s ago"), "{err}");
    }

    #[test]
    fn a_loop_asleep_until_its_next_poll_is_healthy_until_it_is_late() {
        let hour = 3_600_000;
        let h = Heartbeat::new();
        h.tick(0);
        h.sleeping_until(Some(3 * hour));
        assert_eq!(h.next_wake_ms(), Some(3 * hour));
        assert!(h.check(2 * hour).is_ok(), "asleep as announced");
        assert!(
            h.check(3 * hour + STALE_AFTER_MS).is_ok(),
            "within the grace"
        );
        let err = h.check(3 * hour + STALE_AFTER_MS + 1_000).unwrap_err();
        assert!(err.contains("due to wake 301 s ago"), "{err}");

        // It woke on time and is now in a long poll cycle: the last tick counts again.
        h.woke(3 * hour);
        assert_eq!(h.wakeups(), 1);
        assert!(h.check(3 * hour + STALE_AFTER_MS).is_ok());
        let err = h.check(3 * hour + STALE_AFTER_MS + 1_000).unwrap_err();
        assert!(err.contains("last ticked 301 s ago"), "{err}");
    }

    #[test]
    fn a_loop_with_nothing_scheduled_is_healthy_while_it_waits() {
        let h = Heartbeat::new();
        h.tick(0);
        h.sleeping_until(None);
        assert_eq!(h.next_wake_ms(), None);
        assert!(h.check(i64::MAX / 2).is_ok());
    }
}
