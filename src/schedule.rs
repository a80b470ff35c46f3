//! Cron expressions: parsing and the next fire time. Pure: the clock is an argument.
//!
//! Accepts crontab's 5 fields (`min hour dom month dow`) and the 6-field form with seconds
//! first. Day-of-week numbers follow crontab in both forms (0 or 7 = Sunday, 1 = Monday, ...,
//! 6 = Saturday), because that is what people who write crontabs expect; the `cron` crate
//! itself counts Quartz-style (1 = Sunday), so numbers are translated before it sees them.
//! Names (`MON-FRI`) pass through unchanged. As in crontab, when both day-of-month and
//! day-of-week are restricted, the schedule fires on days matching *either* (the `cron` crate
//! alone would require both).

use std::str::FromStr;

use chrono::{DateTime, Utc};

/// A parsed schedule with the expression it came from.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    /// One schedule, or two (day-of-month only, day-of-week only) whose union is the crontab
    /// meaning when both day fields are restricted.
    /// Shared: a parsed `cron::Schedule` holds a set per field (several KB), and thousands of
    /// watches usually share a handful of expressions.
    schedules: std::sync::Arc<[cron::Schedule]>,
}

impl CronSchedule {
    /// Parse a 5- or 6-field expression; the error says what is wrong in plain words.
    pub fn parse(expr: &str) -> Result<CronSchedule, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "`{expr}` has {n} fields; use 5 (minute hour day-of-month month day-of-week) \
                     or 6 (second first), e.g. \"*/5 * * * *\""
                ));
            }
        };
        let dow = translate_day_of_week(rest[4])?;
        let dom = rest[2];
        let restricted = |f: &str| f != "*" && f != "?";
        let variants: Vec<(&str, String)> = if restricted(dom) && restricted(&dow) {
            vec![(dom, "*".to_string()), ("*", dow.clone())]
        } else {
            vec![(dom, dow.clone())]
        };
        let mut schedules = Vec::new();
        for (dom, dow) in variants {
            let quartz = format!("{seconds} {} {} {dom} {} {dow}", rest[0], rest[1], rest[3]);
            let schedule = cron::Schedule::from_str(&quartz).map_err(|e| {
                let reason = e.to_string();
                let reason = reason.lines().last().unwrap_or(&reason).trim().to_string();
                format!("`{expr}` is not a valid cron expression: {reason}")
            })?;
            schedules.push(schedule);
        }
        Ok(CronSchedule {
            expr: expr.to_string(),
            schedules: schedules.into(),
        })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `after`, or `None` for a schedule that never fires
    /// again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|s| s.after(&after).next())
            .min()
    }
}

/// Turn crontab day-of-week numbers (0-7, Sunday = 0 or 7) into the cron crate's (1-7,
/// Sunday = 1). Ranges are expanded into lists so `5-7` (Friday to Sunday) stays right.
fn translate_day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let mut out: Vec<u32> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for part in field.split(',') {
        if part.chars().any(|c| c.is_ascii_alphabetic()) {
            names.push(part);
            continue;
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("day-of-week step `{s}` is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (parse_dow(a)?, parse_dow(b)?),
                None if step > 1 => (parse_dow(r)?, 6),
                None => {
                    let d = parse_dow(r)?;
                    (d, d)
                }
            },
        };
        if lo > hi {
            return Err(format!("day-of-week range `{range}` goes backwards"));
        }
        out.extend((lo..=hi).step_by(step as usize).map(|d| d % 7 + 1));
    }
    out.sort_unstable();
    out.dedup();
    let mut parts: Vec<String> = out.iter().map(u32::to_string).collect();
    parts.extend(names.iter().map(|n| n.to_string()));
    Ok(parts.join(","))
}

fn parse_dow(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|d| *d <= 7)
        .ok_or_else(|| format!("day-of-week `{s}` must be 0-7 (0 and 7 are Sunday) or a name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Weekday};

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        CronSchedule::parse(expr)
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    #[test]
    fn five_fields_fire_on_the_minute() {
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 10, 7, 12).unwrap();
        assert_eq!(
            next("*/5 * * * *", t),
            Utc.with_ymd_and_hms(2026, 12, 3, 10, 10, 0).unwrap()
        );
    }

    #[test]
    fn six_fields_carry_seconds() {
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 10, 7, 12).unwrap();
        assert_eq!(
            next("*/30 * * * * *", t),
            Utc.with_ymd_and_hms(2026, 12, 3, 10, 7, 30).unwrap()
        );
    }

    #[test]
    fn day_of_week_numbers_follow_crontab() {
        // 2026-12-03 is a Thursday.
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        assert_eq!(next("0 2 * * 1", t).weekday(), Weekday::Mon);
        assert_eq!(next("0 2 * * 0", t).weekday(), Weekday::Sun);
        assert_eq!(next("0 2 * * 7", t).weekday(), Weekday::Sun);
        assert_eq!(next("0 2 * * 6", t).weekday(), Weekday::Sat);
        assert_eq!(next("0 0 2 * * 1", t).weekday(), Weekday::Mon);
        assert_eq!(next("0 2 * * MON", t).weekday(), Weekday::Mon);
        // Monday to Friday from a Thursday noon: Friday.
        assert_eq!(next("0 2 * * 1-5", t).weekday(), Weekday::Fri);
        // Friday to Sunday, written with 7.
        let sat = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        assert_eq!(next("0 2 * * 5-7", sat).weekday(), Weekday::Sun);
    }

    #[test]
    fn numbers_and_names_mix_in_one_list() {
        // Thursday 2026-12-03 at noon: "4,MON" is Thursday or Monday.
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let n = next("0 13 * * 4,MON", t);
        assert_eq!((n.weekday(), n.day()), (Weekday::Thu, 3));
    }

    #[test]
    fn day_of_month_or_day_of_week_as_in_crontab() {
        // "the 3rd, or any Monday": Thursday the 3rd fires.
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 30).unwrap();
        assert_eq!(next("* * 3 * MON", t), t + chrono::Duration::seconds(30));
        // From Friday the 4th, the next is Monday the 7th, not January 3rd.
        let fri = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        assert_eq!(
            next("0 0 3 * 1", fri),
            Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap()
        );
        // Only one restricted: plain AND with `*` as before.
        assert_eq!(next("0 0 * * 1", fri).weekday(), Weekday::Mon);
    }

    #[test]
    fn an_impossible_date_never_fires() {
        let s = CronSchedule::parse("0 0 31 2 *").unwrap();
        assert!(
            s.next_after(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
                .is_none()
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(
            CronSchedule::parse("* * *")
                .unwrap_err()
                .contains("3 fields")
        );
        assert!(CronSchedule::parse("61 * * * *").is_err());
        assert!(
            CronSchedule::parse("* * * * 9")
                .unwrap_err()
                .contains("0-7")
        );
        assert!(
            CronSchedule::parse("* * * * 5-1")
                .unwrap_err()
                .contains("backwards")
        );
    }
}
