//! The delivery-guarantee keys: `[delivery] retry_budget`, `[delivery] poll_failure_threshold`
//! and each channel's `rate_limit` and `repeat_interval`. Parsing lives here so `config.rs`
//! only wires the values in.

use std::time::Duration;

use crate::notify::ChannelKind;
use crate::ratelimit::Rate;

/// Default `[delivery] retry_budget`: a day of retries, after which a delivery is `dead`. Long
/// enough to ride out a receiver that is down over a night, short enough that nobody gets
/// yesterday's news as if it were new.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// Default `[delivery] poll_failure_threshold`: one or two failed polls are weather (a
/// throttled call, a gateway hiccup); three in a row mean nobody is watching.
pub const DEFAULT_POLL_FAILURE_THRESHOLD: u32 = 3;

/// Read a duration written as `90s`, `30m`, `24h`, `2d`, or combined (`1h30m`). A bare
/// number is refused: `30` could mean seconds or minutes, and the difference matters.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{text}` is not a duration; write a number with a unit, e.g. \"90s\", \"30m\", \
             \"24h\", \"2d\" or \"1h30m\""
        )
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut chars = trimmed.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let mut unit = c.to_string();
        while let Some(n) = chars.peek().copied().filter(char::is_ascii_alphabetic) {
            unit.push(n);
            chars.next();
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let secs = match unit.as_str() {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `24h`, `30m`, `1h30m`, `90s`: a duration the way the config spells it, for messages.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let (days, hours, mins, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// The send rates a receiver tolerates, when the channel sets no `rate_limit`. Every window
/// must have room for a send. DingTalk bans a robot for ten minutes past 20 messages a minute;
/// Slack allows about one a second per webhook; Feishu about 5 a second and 100 a minute; WeCom
/// 20 a minute. A generic webhook has no limit unless configured.
pub fn default_rates(kind: ChannelKind) -> Vec<Rate> {
    match kind {
        ChannelKind::Dingtalk => vec![Rate::DINGTALK],
        ChannelKind::Slack => vec![Rate::SLACK],
        ChannelKind::Feishu => vec![
            Rate {
                limit: 5,
                window_ms: 1_000,
            },
            Rate {
                limit: 100,
                window_ms: 61_000,
            },
        ],
        ChannelKind::Wecom => vec![Rate {
            limit: 20,
            window_ms: 61_000,
        }],
        ChannelKind::Webhook => Vec::new(),
    }
}

/// The `rate_limit` of a channel, checked against what the receiver allows: a DingTalk or WeCom
/// robot above 20 a minute would be banned, so that is an error, not a choice.
pub fn parse_rate_limit(kind: Option<ChannelKind>, text: &str) -> Result<Rate, String> {
    let rate = Rate::parse(text)?;
    let per_minute = rate.limit as f64 * 60_000.0 / rate.window_ms as f64;
    if matches!(kind, Some(ChannelKind::Dingtalk | ChannelKind::Wecom)) && per_minute > 20.0 {
        return Err(format!(
            "`{text}` is more than the robot accepts: DingTalk and WeCom robots take at most 20 \
             messages a minute (DingTalk bans the robot for 10 minutes past that); use \"20/min\" \
             or less"
        ));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration(" 90s ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        for bad in [
            "",
            "30",
            "h",
            "3 weeks",
            "1.5h",
            "-1h",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_print_the_way_they_are_written() {
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn a_robot_cannot_be_configured_into_a_ban() {
        let err = parse_rate_limit(Some(ChannelKind::Dingtalk), "30/min").unwrap_err();
        assert!(err.contains("at most 20"), "{err}");
        assert!(parse_rate_limit(Some(ChannelKind::Dingtalk), "10/min").is_ok());
        assert!(parse_rate_limit(Some(ChannelKind::Webhook), "600/min").is_ok());
        assert!(parse_rate_limit(Some(ChannelKind::Wecom), "1/s").is_err());
        assert!(parse_rate_limit(None, "fast").is_err());
    }

    fn parse(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse(text, std::path::Path::new("/tmp/dbswatch.toml"), &|_| None)
    }

    #[test]
    fn the_delivery_keys_load_with_their_defaults() {
        let c = parse(
            r#"
[delivery]
timeout_secs = 5

[[channel]]
name = "hook"
type = "webhook"
url = "https://example.invalid/hook"
"#,
        )
        .unwrap();
        assert_eq!(c.delivery.retry_budget, DEFAULT_RETRY_BUDGET);
        assert_eq!(c.delivery.poll_failure_threshold, 3);
        assert_eq!(c.channels[0].rate_limit, None);
        assert!(c.channels[0].rates().is_empty());
        assert_eq!(c.channels[0].repeat_interval, None);

        let c = parse(
            r#"
[delivery]
retry_budget = "6h"
poll_failure_threshold = 5

[[channel]]
name = "hook"
type = "webhook"
url = "https://example.invalid/hook"
rate_limit = "2/s"
repeat_interval = "30m"

[[channel]]
name = "ding"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
rate_limit = "10/min"
"#,
        )
        .unwrap();
        assert_eq!(c.delivery.retry_budget, Duration::from_secs(6 * 3600));
        assert_eq!(c.delivery.poll_failure_threshold, 5);
        assert_eq!(
            c.channels[0].rates(),
            vec![Rate {
                limit: 2,
                window_ms: 1_000
            }]
        );
        assert_eq!(
            c.channels[0].repeat_interval,
            Some(Duration::from_secs(1800))
        );
        assert_eq!(c.channels[1].rates()[0].limit, 10);
    }

    #[test]
    fn bad_delivery_keys_are_reported_with_their_line() {
        let err = parse(
            r#"
[delivery]
retry_budget = "forever"
poll_failure_threshold = 0

[[channel]]
name = "ding"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
rate_limit = "60/min"
repeat_interval = "soon"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("4 problems"), "{err}");
        assert!(
            err.contains(":3") && err.contains("`forever` is not a duration"),
            "{err}"
        );
        assert!(
            err.contains("poll_failure_threshold` must be at least 1"),
            "{err}"
        );
        assert!(
            err.contains("channel `ding`: `60/min` is more than the robot accepts"),
            "{err}"
        );
        assert!(err.contains("`soon` is not a duration"), "{err}");
    }

    #[test]
    fn every_receiver_but_webhooks_has_a_default_rate() {
        assert_eq!(default_rates(ChannelKind::Dingtalk), vec![Rate::DINGTALK]);
        assert_eq!(default_rates(ChannelKind::Slack), vec![Rate::SLACK]);
        assert_eq!(default_rates(ChannelKind::Feishu).len(), 2);
        assert!(default_rates(ChannelKind::Webhook).is_empty());
    }
}
