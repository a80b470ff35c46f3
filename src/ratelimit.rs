//! Send-rate limits per receiver, so a burst never gets a robot banned.
//!
//! DingTalk throttles a robot for ten minutes once it gets more than 20 messages in a minute;
//! Slack allows about one message a second per webhook. A [`SlidingWindow`] counts the sends
//! of the last window exactly (no token-bucket rounding), so the promise "never more than N in
//! any window" holds for every window, not only aligned ones. Pure: the clock is an argument.

use std::collections::{HashMap, VecDeque};

/// At most `limit` sends in any `window_ms` span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sends allowed per window.
    pub limit: u32,
    /// Window length, milliseconds.
    pub window_ms: i64,
}

impl Rate {
    /// DingTalk custom robots: 20 per minute. The window has a one-second margin so a clock
    /// difference between us and DingTalk can never make the 21st message land inside their
    /// minute.
    pub const DINGTALK: Rate = Rate {
        limit: 20,
        window_ms: 61_000,
    };
    /// Slack incoming webhooks: about one per second.
    pub const SLACK: Rate = Rate {
        limit: 1,
        window_ms: 1_000,
    };

    /// Parse `"20/min"`, `"1/s"`, `"100/h"`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad =
            || format!("`{text}` is not a rate; write it as N/s, N/min or N/h, e.g. \"20/min\"");
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let window_ms = match unit.trim() {
            "s" | "sec" | "second" => 1_000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            _ => return Err(bad()),
        };
        Ok(Rate { limit, window_ms })
    }
}

/// Exact sliding-window counter for one receiver.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    rate: Rate,
    sent: VecDeque<i64>,
}

impl SlidingWindow {
    /// An empty window.
    pub fn new(rate: Rate) -> SlidingWindow {
        SlidingWindow {
            rate,
            sent: VecDeque::new(),
        }
    }

    fn expire(&mut self, now_ms: i64) {
        while self
            .sent
            .front()
            .is_some_and(|t| *t <= now_ms - self.rate.window_ms)
        {
            self.sent.pop_front();
        }
    }

    /// When a send would be allowed: `now_ms` if now, else the first moment the oldest send in
    /// the window falls out of it.
    pub fn available_at(&mut self, now_ms: i64) -> i64 {
        self.expire(now_ms);
        if (self.sent.len() as u32) < self.rate.limit {
            now_ms
        } else {
            let oldest_that_must_leave = self.sent[self.sent.len() - self.rate.limit as usize];
            oldest_that_must_leave + self.rate.window_ms
        }
    }

    /// Count a send at `at_ms` (also used to replay sends recorded before a restart).
    pub fn record(&mut self, at_ms: i64) {
        let pos = self.sent.partition_point(|t| *t <= at_ms);
        self.sent.insert(pos, at_ms);
    }

    /// Take a slot now if there is one; otherwise say when to come back.
    pub fn try_acquire(&mut self, now_ms: i64) -> Result<(), i64> {
        let at = self.available_at(now_ms);
        if at <= now_ms {
            self.record(now_ms);
            Ok(())
        } else {
            Err(at)
        }
    }
}

/// One window per receiver key (the receiver URL without its signature parameters), so two
/// channels that share a robot share its limit.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: HashMap<String, SlidingWindow>,
}

impl Limiter {
    /// No receivers yet.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// The window of a receiver, created with `rate` on first use.
    pub fn window(&mut self, key: &str, rate: Rate) -> &mut SlidingWindow {
        self.windows
            .entry(key.to_string())
            .or_insert_with(|| SlidingWindow::new(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("20/min").unwrap(),
            Rate {
                limit: 20,
                window_ms: 60_000
            }
        );
        assert_eq!(Rate::parse("1/s").unwrap().window_ms, 1_000);
        assert_eq!(Rate::parse(" 5 / h ").unwrap().limit, 5);
        for bad in ["", "20", "0/s", "x/s", "3/day"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_21st_dingtalk_message_waits_for_the_first_to_leave_the_window() {
        let mut w = SlidingWindow::new(Rate::DINGTALK);
        for i in 0..20 {
            assert!(w.try_acquire(i * 100).is_ok());
        }
        assert_eq!(w.try_acquire(5_000), Err(61_000));
        assert_eq!(w.try_acquire(60_999), Err(61_000));
        assert!(w.try_acquire(61_000).is_ok());
        assert_eq!(w.try_acquire(61_000), Err(61_100));
    }

    #[test]
    fn sends_recorded_before_a_restart_count() {
        let mut w = SlidingWindow::new(Rate::SLACK);
        w.record(10_000);
        assert_eq!(w.try_acquire(10_500), Err(11_000));
        assert!(w.try_acquire(11_000).is_ok());
    }

    proptest! {
        /// Whatever the arrival pattern, no window of `window_ms` ever holds more than `limit`
        /// accepted sends, and a refused send is told a time in the future.
        #[test]
        fn never_more_than_the_limit_in_any_window(
            gaps in proptest::collection::vec(0i64..5_000, 1..300),
            limit in 1u32..25,
        ) {
            let rate = Rate { limit, window_ms: 60_000 };
            let mut w = SlidingWindow::new(rate);
            let mut now = 0;
            let mut accepted = Vec::new();
            for gap in gaps {
                now += gap;
                match w.try_acquire(now) {
                    Ok(()) => accepted.push(now),
                    Err(at) => prop_assert!(at > now),
                }
            }
            for (i, start) in accepted.iter().enumerate() {
                let in_window = accepted[i..].iter().take_while(|t| **t < start + rate.window_ms).count();
                prop_assert!(in_window as u32 <= limit);
            }
        }
    }
}
