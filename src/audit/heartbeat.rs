//! The scheduler's heartbeat, read by `/healthz`.
//!
//! The daemon loop wakes at least once a minute; it records each wake-up here. A loop that
//! stopped waking (a poll stuck past every timeout, a panic, a dead runtime) shows as a stale
//! heartbeat, which is what a liveness probe needs to know.

use std::sync::atomic::{AtomicI64, Ordering};

/// How old the last tick may be before `/healthz` answers 503. The loop sleeps at most 60 s;
/// one poll cycle can take a few minutes when DBS times out on many watches with retries.
pub const STALE_AFTER_MS: i64 = 5 * 60_000;

/// When the scheduler last woke. Shared (`Arc`) between the loop and the HTTP server.
#[derive(Debug)]
pub struct Heartbeat {
    last_tick_ms: AtomicI64,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            last_tick_ms: AtomicI64::new(i64::MIN),
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

    /// The last tick, if any.
    pub fn last_tick_ms(&self) -> Option<i64> {
        match self.last_tick_ms.load(Ordering::SeqCst) {
            i64::MIN => None,
            ms => Some(ms),
        }
    }

    /// `Ok` when the last tick is recent at `now_ms`, else why not.
    pub fn check(&self, now_ms: i64) -> Result<(), String> {
        match self.last_tick_ms() {
            None => Err("the scheduler has not started".into()),
            Some(at) if now_ms - at > STALE_AFTER_MS => Err(format!(
                "the scheduler last ticked {} s ago (limit {} s): a poll is stuck or the loop died",
                (now_ms - at) / 1000,
                STALE_AFTER_MS / 1000
            )),
            Some(_) => Ok(()),
        }
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
}
