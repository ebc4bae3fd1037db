//! The UTC days and months quotas count in, and when each starts again: every node
//! must agree on them, so they are UTC whatever the box's time zone.

use time::{Date, Month, OffsetDateTime, Time};

use crate::clock::Millis;

fn at(ms: Millis) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ms_of(date: Date) -> Millis {
    let t = date.with_time(Time::MIDNIGHT).assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(Millis::MAX)
}

/// `2026-12-07`.
pub fn day(ms: Millis) -> String {
    let d = at(ms).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `2026-12`.
pub fn month(ms: Millis) -> String {
    let d = at(ms).date();
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

/// The start of the UTC day after `ms`.
pub fn next_day_ms(ms: Millis) -> Millis {
    let d = at(ms).date();
    d.next_day().map_or(Millis::MAX, ms_of)
}

/// The start of the UTC month after `ms`.
pub fn next_month_ms(ms: Millis) -> Millis {
    let d = at(ms).date();
    let (y, m) = match d.month() {
        Month::December => (d.year() + 1, Month::January),
        m => (d.year(), m.next()),
    };
    Date::from_calendar_date(y, m, 1).map_or(Millis::MAX, ms_of)
}

/// The start (UTC ms) of a `YYYY-MM-DD` day.
pub fn parse_day(field: &str, text: &str) -> Result<Millis, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format)
        .map(ms_of)
        .map_err(|_| format!("{field}: {text:?} is not a day (YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_turn_over_in_utc() {
        let t = parse_day("t", "2026-12-31").unwrap() + 3_600_000;
        assert_eq!(day(t), "2026-12-31");
        assert_eq!(month(t), "2026-12");
        assert_eq!(day(next_day_ms(t)), "2027-01-01");
        assert_eq!(next_month_ms(t), parse_day("t", "2027-01-01").unwrap());
        assert_eq!(
            next_month_ms(parse_day("t", "2026-02-10").unwrap()),
            parse_day("t", "2026-03-01").unwrap()
        );
        assert!(parse_day("from", "12/07").unwrap_err().contains("from"));
    }
}
