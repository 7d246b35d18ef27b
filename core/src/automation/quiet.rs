//! Quiet hours: a daily window, in a time zone, during which automation stays
//! silent. Start and end are hours; the window wraps around midnight when start
//! is after end (21 → 8 is 21:00–07:59), and equal start and end means never quiet.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A quiet-hours window (`start` inclusive, `end` exclusive, hours 0–23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// First quiet hour.
    pub start: u8,
    /// First hour that is no longer quiet.
    pub end: u8,
}

impl QuietHours {
    /// A window, or `None` when an hour is out of range.
    pub fn new(start: u8, end: u8) -> Option<Self> {
        (start < 24 && end < 24).then_some(Self { start, end })
    }

    /// True when `hour` (0–23) is inside the window.
    pub fn contains_hour(self, hour: u8) -> bool {
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => self.start <= hour && hour < self.end,
            std::cmp::Ordering::Greater => hour >= self.start || hour < self.end,
        }
    }

    /// True when `at`, seen in `zone`, is inside the window.
    pub fn contains(self, at: Timestamp, zone: &TimeZone) -> bool {
        let hour = at.to_zoned(zone.clone()).hour();
        u8::try_from(hour).is_ok_and(|hour| self.contains_hour(hour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(start: u8, end: u8) -> Vec<u8> {
        let window = QuietHours::new(start, end).unwrap();
        (0..24).filter(|h| window.contains_hour(*h)).collect()
    }

    #[test]
    fn plain_window() {
        assert_eq!(quiet(9, 12), vec![9, 10, 11]);
    }

    #[test]
    fn wraps_around_midnight() {
        assert_eq!(quiet(21, 8), vec![0, 1, 2, 3, 4, 5, 6, 7, 21, 22, 23]);
        assert_eq!(quiet(23, 0), vec![23]);
    }

    #[test]
    fn equal_start_and_end_is_never_quiet() {
        assert!(quiet(5, 5).is_empty());
        assert!(quiet(0, 0).is_empty());
    }

    #[test]
    fn out_of_range_hours_are_rejected() {
        assert!(QuietHours::new(24, 3).is_none());
        assert!(QuietHours::new(3, 24).is_none());
    }

    #[test]
    fn uses_the_given_time_zone() {
        let window = QuietHours::new(21, 8).unwrap();
        let at: Timestamp = "2026-06-01T05:30:00Z".parse().unwrap();
        // 05:30 UTC is quiet in UTC but 07:30 in Berlin (CEST) is too, 14:30 in Tokyo is not.
        assert!(window.contains(at, &TimeZone::UTC));
        assert!(window.contains(at, &TimeZone::get("Europe/Berlin").unwrap()));
        assert!(!window.contains(at, &TimeZone::get("Asia/Tokyo").unwrap()));
    }
}
