//! Being a good API citizen: a process-wide limit on DBS request rate and concurrency, and a
//! stable spread of start times so hundreds of watches on one cron do not fire together.
//!
//! The limiter spaces requests evenly (one every `1 / requests_per_second`), with no burst: the
//! gateway throttles per account and per API, and an even pace is the surest way to stay under a
//! limit we cannot see. Every attempt, retries included, takes a slot. It uses tokio's clock, so
//! tests run it under paused time without sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Default request rate: conservative next to the gateway's per-API limits, and still 300 calls
/// a minute.
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 5.0;

/// Default number of DBS requests in flight at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;

/// How fast and how wide DBS may be called.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterSettings {
    /// Requests started per second, across every account and watch.
    pub requests_per_second: f64,
    /// Requests in flight at once.
    pub max_concurrent: usize,
}

impl Default for LimiterSettings {
    fn default() -> LimiterSettings {
        LimiterSettings {
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// Counters for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Permits handed out.
    pub granted: u64,
    /// Permits that had to wait for a rate slot.
    pub delayed: u64,
    /// Total time spent waiting for rate slots.
    pub waited: Duration,
}

/// The shared brake. Cheap to clone; clones share the budget.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    interval: Duration,
    permits: Arc<Semaphore>,
    next_slot: Mutex<Option<Instant>>,
    stats: Mutex<LimiterStats>,
    settings: LimiterSettings,
}

/// Held while one request is in flight; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    /// How long this request waited for its rate slot.
    pub waited: Duration,
}

impl Limiter {
    /// A limiter for `settings`; a rate of zero or less, or a concurrency of zero, is raised to
    /// the smallest working value rather than blocking forever.
    pub fn new(settings: LimiterSettings) -> Limiter {
        let rate = if settings.requests_per_second.is_finite() && settings.requests_per_second > 0.0
        {
            settings.requests_per_second
        } else {
            DEFAULT_REQUESTS_PER_SECOND
        };
        let max_concurrent = settings.max_concurrent.max(1);
        Limiter {
            inner: Arc::new(Inner {
                interval: Duration::from_secs_f64(1.0 / rate),
                permits: Arc::new(Semaphore::new(max_concurrent)),
                next_slot: Mutex::new(None),
                stats: Mutex::new(LimiterStats::default()),
                settings: LimiterSettings {
                    requests_per_second: rate,
                    max_concurrent,
                },
            }),
        }
    }

    /// The effective settings.
    pub fn settings(&self) -> LimiterSettings {
        self.inner.settings
    }

    /// The time between two request starts.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// Waits for a concurrency slot, then for the next rate slot.
    pub async fn acquire(&self) -> Permit {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter's semaphore is never closed");
        let now = Instant::now();
        let slot = {
            let mut next = lock(&self.inner.next_slot);
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.inner.interval);
            slot
        };
        let waited = slot.saturating_duration_since(now);
        if !waited.is_zero() {
            tokio::time::sleep_until(slot).await;
        }
        let mut stats = lock(&self.inner.stats);
        stats.granted += 1;
        if !waited.is_zero() {
            stats.delayed += 1;
            stats.waited += waited;
        }
        Permit {
            _permit: permit,
            waited,
        }
    }

    /// What the limiter has done so far.
    pub fn stats(&self) -> LimiterStats {
        *lock(&self.inner.stats)
    }
}

/// A stable offset in `[0, window)` for `key` (a watch name): the same every run, spread evenly
/// over the window across keys, so watches sharing a cron expression start at different moments.
/// FNV-1a, because std's hasher may change between Rust releases.
pub fn spread(key: &str, window: Duration) -> Duration {
    if window.is_zero() {
        return Duration::ZERO;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(hash % millis)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_rate_in_any_second() {
        let limiter = Limiter::new(LimiterSettings {
            requests_per_second: 5.0,
            max_concurrent: 100,
        });
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let limiter = limiter.clone();
            tasks.spawn(async move {
                let _permit = limiter.acquire().await;
                Instant::now()
            });
        }
        let mut times: Vec<Instant> = tasks.join_all().await;
        times.sort();
        assert_eq!(times.len(), 40);
        // Any 5 consecutive starts... the 6th is at least a full second after the 1st.
        for window in times.windows(6) {
            assert!(
                window[5] - window[0] >= Duration::from_secs(1),
                "6 requests within {:?}",
                window[5] - window[0]
            );
        }
        // And the limiter does not dawdle: 40 requests take 39 intervals.
        assert_eq!(
            *times.last().unwrap() - start,
            Duration::from_millis(200) * 39
        );
        let stats = limiter.stats();
        assert_eq!(stats.granted, 40);
        assert_eq!(stats.delayed, 39);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped_while_requests_are_in_flight() {
        let limiter = Limiter::new(LimiterSettings {
            requests_per_second: 1000.0,
            max_concurrent: 3,
        });
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (limiter, in_flight, peak) = (limiter.clone(), in_flight.clone(), peak.clone());
            tasks.spawn(async move {
                let _permit = limiter.acquire().await;
                let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        tasks.join_all().await;
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(limiter.stats().granted, 12);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_lets_the_next_request_through_at_once() {
        let limiter = Limiter::new(LimiterSettings::default());
        assert_eq!(limiter.acquire().await.waited, Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(limiter.acquire().await.waited, Duration::ZERO);
        assert_eq!(limiter.acquire().await.waited, Duration::from_millis(200));
    }

    #[test]
    fn nonsense_settings_are_raised_to_working_values() {
        let l = Limiter::new(LimiterSettings {
            requests_per_second: 0.0,
            max_concurrent: 0,
        });
        assert_eq!(
            l.settings().requests_per_second,
            DEFAULT_REQUESTS_PER_SECOND
        );
        assert_eq!(l.settings().max_concurrent, 1);
        let l = Limiter::new(LimiterSettings {
            requests_per_second: f64::NAN,
            max_concurrent: 2,
        });
        assert_eq!(l.interval(), Duration::from_millis(200));
    }

    #[test]
    fn spread_is_stable_bounded_and_spreads_500_watches() {
        let window = Duration::from_secs(30);
        assert_eq!(spread("orders-db", window), spread("orders-db", window));
        assert_eq!(spread("x", Duration::ZERO), Duration::ZERO);
        let offsets: Vec<Duration> = (0..500)
            .map(|i| spread(&format!("plans/dbs{i:08}"), window))
            .collect();
        assert!(offsets.iter().all(|o| *o < window));
        let distinct: HashSet<Duration> = offsets.iter().copied().collect();
        assert!(
            distinct.len() > 450,
            "only {} distinct offsets",
            distinct.len()
        );
        // No second of the window gets more than a few times its fair share (500/30 ≈ 17).
        let mut per_second = [0usize; 30];
        for o in &offsets {
            per_second[o.as_secs() as usize] += 1;
        }
        assert!(per_second.iter().all(|n| *n <= 40), "{per_second:?}");
    }
}
