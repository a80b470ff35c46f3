//! `Retry-After` parsing (RFC 9110 §10.2.3): either a number of seconds or an HTTP-date.
//!
//! Pure: the caller passes "now", so a date in the header can be turned into a wait without
//! reading the clock here.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// How long the receiver asked us to wait, or `None` when the header is not one of the two
/// standard forms. A date in the past means "now" (zero), not an error: the receiver's clock
/// may simply be behind ours.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = parse_http_date(value)?;
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// The three HTTP-date forms a recipient must accept: IMF-fixdate, then the obsolete RFC 850
/// and asctime forms.
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    const FORMATS: [&str; 3] = [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap()
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_retry_after("3", now()), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 120 ", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
    }

    #[test]
    fn imf_fixdate_is_relative_to_now() {
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 08:28:00 GMT", now()),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn obsolete_date_forms_are_accepted() {
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now()),
            Some(Duration::from_secs(60))
        );
        let early = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 0).unwrap();
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", early),
            Some(Duration::from_secs(37))
        );
    }

    #[test]
    fn a_date_in_the_past_means_no_wait() {
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn junk_is_ignored() {
        for junk in [
            "",
            "  ",
            "-5",
            "1.5",
            "soon",
            "Wed, 21 Oct 2015",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_retry_after(junk, now()), None, "{junk:?}");
        }
    }
}
