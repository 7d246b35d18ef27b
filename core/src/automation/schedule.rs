//! One job's schedule: a standard 5-field cron expression evaluated in an IANA
//! time zone, so "0 9 * * *" means 09:00 on the user's wall clock on both sides
//! of a DST change. A time skipped by spring-forward runs right after the gap;
//! a time repeated by fall-back runs once (croner's vixie-cron behaviour).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Why a schedule was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cron expression does not parse (or is not 5 fields).
    #[error("invalid cron expression {expression:?}: {reason}")]
    Expression {
        /// The expression as given.
        expression: String,
        /// What the parser said.
        reason: String,
    },
    /// The time zone is not a known IANA name.
    #[error("unknown time zone {0:?} (expected an IANA name such as \"Europe/Berlin\")")]
    TimeZone(String),
    /// The expression never matches (e.g. "0 0 31 2 *").
    #[error("cron expression {0:?} never fires")]
    NeverFires(String),
}

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    zone_name: String,
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses `expression` (exactly 5 fields: minute hour day-of-month month
    /// day-of-week, with 0 or 7 = Sunday; names like MON and JAN work) in the
    /// IANA zone `zone_name` ("UTC" and "" mean UTC).
    pub fn parse(expression: &str, zone_name: &str) -> Result<Self, ScheduleError> {
        let zone = resolve_zone(zone_name)?;
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::Expression {
                expression: expression.to_owned(),
                reason: format!("expected 5 fields (minute hour day month weekday), got {fields}"),
            });
        }
        let parser =
            CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let cron = parser.parse(expression).map_err(|e| ScheduleError::Expression {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        let schedule = Self {
            expression: expression.trim().to_owned(),
            zone_name: if zone_name.is_empty() { "UTC".to_owned() } else { zone_name.to_owned() },
            cron,
            zone,
        };
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::NeverFires(expression.to_owned()));
        }
        Ok(schedule)
    }

    /// The expression as stored.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone's IANA name.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.zone.clone());
        self.cron.find_next_occurrence(&start, false).ok().map(|z| z.timestamp())
    }

    /// The last fire time at or before `at`.
    pub fn previous_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let start = at.to_zoned(self.zone.clone());
        self.cron.find_previous_occurrence(&start, true).ok().map(|z| z.timestamp())
    }
}

/// Resolves an IANA zone name; empty means UTC.
pub fn resolve_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.is_empty() || name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(expr: &str, zone: &str, after: &str) -> String {
        Schedule::parse(expr, zone).unwrap().next_after(ts(after)).unwrap().to_string()
    }

    #[test]
    fn daily_at_nine_in_utc() {
        assert_eq!(next("0 9 * * *", "UTC", "2026-05-01T08:59:59Z"), "2026-05-01T09:00:00Z");
        assert_eq!(next("0 9 * * *", "", "2026-05-01T09:00:00Z"), "2026-05-02T09:00:00Z");
    }

    #[test]
    fn per_job_time_zone() {
        // 09:00 in Tokyo (UTC+9) is 00:00 UTC.
        assert_eq!(next("0 9 * * *", "Asia/Tokyo", "2026-05-01T01:00:00Z"), "2026-05-02T00:00:00Z");
        // 09:00 in New York (EDT, UTC-4) is 13:00 UTC.
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2026-05-01T00:00:00Z"),
            "2026-05-01T13:00:00Z"
        );
    }

    #[test]
    fn wall_clock_time_is_kept_across_spring_forward() {
        // Berlin switches from CET (UTC+1) to CEST (UTC+2) on 2026-03-29.
        let s = Schedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        let before = s.next_after(ts("2026-03-28T00:00:00Z")).unwrap();
        let after = s.next_after(before).unwrap();
        assert_eq!(before.to_string(), "2026-03-28T08:00:00Z");
        assert_eq!(after.to_string(), "2026-03-29T07:00:00Z");
        // A day of 23 hours between the two fires.
        assert_eq!(after.duration_since(before).as_hours(), 23);
    }

    #[test]
    fn time_inside_the_spring_forward_gap_runs_after_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29 (02:00 → 03:00).
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let fire = s.next_after(ts("2026-03-28T12:00:00Z")).unwrap();
        let local = fire.to_zoned(s.zone().clone());
        assert_eq!(local.date().to_string(), "2026-03-29", "the job still runs that day");
        assert_eq!(local.hour(), 3);
        // And the day after it is back at 02:30 local.
        let next = s.next_after(fire).unwrap().to_zoned(s.zone().clone());
        assert_eq!((next.hour(), next.minute()), (2, 30));
    }

    #[test]
    fn time_inside_the_fall_back_overlap_runs_once() {
        // 02:30 happens twice in Berlin on 2026-10-25 (03:00 → 02:00).
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let first = s.next_after(ts("2026-10-24T12:00:00Z")).unwrap();
        let second = s.next_after(first).unwrap();
        assert_eq!(first.to_zoned(s.zone().clone()).date().to_string(), "2026-10-25");
        assert_eq!(second.to_zoned(s.zone().clone()).date().to_string(), "2026-10-26");
    }

    #[test]
    fn weekday_seven_and_names_mean_sunday() {
        // 2026-05-03 is a Sunday.
        assert_eq!(next("0 8 * * 7", "UTC", "2026-05-01T00:00:00Z"), "2026-05-03T08:00:00Z");
        assert_eq!(next("0 8 * * 0", "UTC", "2026-05-01T00:00:00Z"), "2026-05-03T08:00:00Z");
        assert_eq!(next("0 8 * * SUN", "UTC", "2026-05-01T00:00:00Z"), "2026-05-03T08:00:00Z");
        assert_eq!(next("0 9 * * 1-5", "UTC", "2026-05-02T00:00:00Z"), "2026-05-04T09:00:00Z");
    }

    #[test]
    fn steps_and_previous() {
        let s = Schedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(ts("2026-05-01T10:07:00Z")).unwrap().to_string(),
            "2026-05-01T10:15:00Z"
        );
        assert_eq!(
            s.previous_at_or_before(ts("2026-05-01T10:07:00Z")).unwrap().to_string(),
            "2026-05-01T10:00:00Z"
        );
        assert_eq!(
            s.previous_at_or_before(ts("2026-05-01T10:15:00Z")).unwrap().to_string(),
            "2026-05-01T10:15:00Z"
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Schedule::parse("0 9 * *", "UTC"), Err(ScheduleError::Expression { .. })));
        assert!(matches!(
            Schedule::parse("0 0 9 * * *", "UTC"),
            Err(ScheduleError::Expression { .. })
        ));
        assert!(matches!(
            Schedule::parse("61 9 * * *", "UTC"),
            Err(ScheduleError::Expression { .. })
        ));
        assert_eq!(
            Schedule::parse("0 9 * * *", "Mars/Olympus").unwrap_err(),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
        assert!(matches!(
            Schedule::parse("0 0 31 2 *", "UTC"),
            Err(ScheduleError::NeverFires(_)) | Err(ScheduleError::Expression { .. })
        ));
    }
}
