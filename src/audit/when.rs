//! Times as people type them (`7d`, `12h`, `2025-12-03`, RFC 3339) and as they read them
//! (the configured time zone, always with its offset).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A span such as `180d`, `12h`, `90m`, `45s`, `2w` or `1y` (365 days); parts can be combined
/// (`1d12h`). Used by `--since 7d` and by `retention`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a duration: write a number and a unit, e.g. 90s, 30m, 12h, 7d, 2w, 1y"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// An instant as epoch ms: a duration back from `now_ms` (`7d`), an RFC 3339 time, or a local
/// date or date-time in `tz` (`2025-12-03`, `2025-12-03T08:00`, `2025-12-03 08:00:00`).
pub fn parse_instant(text: &str, now_ms: i64, tz: Tz) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(d) = parse_duration(t) {
        return Ok(now_ms.saturating_sub(d.as_millis() as i64));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return local(naive, tz, text);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return local(
            date.and_hms_opt(0, 0, 0).expect("midnight exists"),
            tz,
            text,
        );
    }
    Err(format!(
        "`{text}` is not a time: use RFC 3339 (2025-12-03T08:00:00+08:00), a date or date-time \
         in the configured time zone {} (2025-12-03, 2025-12-03T08:00), or a span back from now \
         (7d, 12h)",
        tz.name()
    ))
}

fn local(naive: NaiveDateTime, tz: Tz, text: &str) -> Result<i64, String> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            format!(
                "`{text}` does not exist in {} (skipped by a daylight-saving change)",
                tz.name()
            )
        })
}

/// `2025-12-03 08:00:03+08:00`: epoch ms in `tz`, with the offset, to the second.
pub fn format_time(ms: i64, tz: Tz) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S%:z")
            .to_string(),
        None => ms.to_string(),
    }
}

/// RFC 3339 in `tz`, to the millisecond when there are any: for JSON.
pub fn rfc3339(ms: i64, tz: Tz) -> Option<String> {
    Utc.timestamp_millis_opt(ms).single().map(|t| {
        t.with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
    })
}

/// `3h 2m 5s`, `4m 0s`, `12s`, `850ms`: a length of time for people.
pub fn human_duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", human_duration(-ms));
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m {sec}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_720_000_000; // 2025-12-03T00:00:00Z

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("180d").unwrap().as_secs(), 180 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43_200);
        assert_eq!(parse_duration("1d12h").unwrap().as_secs(), 129_600);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        for bad in ["", "d", "7", "7x", "1.5d", "-1d", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_parse_in_every_accepted_shape() {
        let sh = chrono_tz::Asia::Shanghai;
        assert_eq!(parse_instant("7d", NOW, sh).unwrap(), NOW - 7 * 86_400_000);
        assert_eq!(
            parse_instant("2025-12-03T08:00:00+08:00", NOW, chrono_tz::UTC).unwrap(),
            NOW
        );
        assert_eq!(parse_instant("2025-12-03T00:00:00Z", NOW, sh).unwrap(), NOW);
        assert_eq!(parse_instant("2025-12-03 08:00", NOW, sh).unwrap(), NOW);
        assert_eq!(parse_instant("2025-12-03T08:00:00", NOW, sh).unwrap(), NOW);
        assert_eq!(
            parse_instant("2025-12-03", NOW, sh).unwrap(),
            NOW - 8 * 3_600_000
        );
        let err = parse_instant("yesterday", NOW, sh).unwrap_err();
        assert!(err.contains("Asia/Shanghai"), "{err}");
    }

    #[test]
    fn times_show_their_offset() {
        assert_eq!(
            format_time(NOW, chrono_tz::UTC),
            "2025-12-03 00:00:00+00:00"
        );
        assert_eq!(
            format_time(NOW + 3_000, chrono_tz::Asia::Shanghai),
            "2025-12-03 08:00:03+08:00"
        );
        assert_eq!(
            rfc3339(NOW + 5, chrono_tz::Asia::Shanghai).unwrap(),
            "2025-12-03T08:00:00.005+08:00"
        );
        assert_eq!(
            rfc3339(NOW, chrono_tz::UTC).unwrap(),
            "2025-12-03T00:00:00+00:00"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(12_000), "12s");
        assert_eq!(human_duration(240_000), "4m 0s");
        assert_eq!(human_duration(3 * 3_600_000 + 125_000), "3h 2m 5s");
        assert_eq!(human_duration(2 * 86_400_000 + 3_600_000), "2d 1h 0m");
    }
}
