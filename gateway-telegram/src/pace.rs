//! Telegram's rate limits as ductor keeps to them: a short burst goes out at
//! once, the long-run rate stays within what Telegram allows, and the last
//! slots of every limit are kept for text that must arrive.
//!
//! - [`Bucket`], per chat: a GCRA (the "virtual scheduling" form of a token
//!   bucket). A call may go at the earliest at `tat - tolerance`, where `tat`
//!   is when the bucket is full again and `tolerance` is `(burst - 1) ×
//!   period`; in any window of length `t` at most `burst + t / period` calls
//!   start.
//! - [`Window`], for the bot and for sends in a group: at most `limit` calls
//!   in any window of `width` (Telegram's "30 a second", "20 a minute").
//!
//! A call is admitted at the moment it goes, by every limit at once (all or
//! none, under one lock): a slot held while waiting for another limit would
//! let calls bunch up when that limit opens.
//!
//! Previews get fewer slots than finals ([`Class`]): a final answer never
//! waits behind a preview.

use std::collections::VecDeque;

use tokio::time::{Duration, Instant};

/// Who is asking for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Streaming previews: may only use the burst down to the reserve.
    Preview,
    /// Text that must arrive (final replies, notices, menus): the whole burst.
    Final,
}

/// One rate: `burst` calls at once, then one per `period`.
#[derive(Debug, Clone)]
pub struct Bucket {
    period: Duration,
    burst: u32,
    /// Slots kept free of previews.
    reserve: u32,
    /// Theoretical arrival time: when the bucket is full again.
    tat: Option<Instant>,
}

impl Bucket {
    /// `burst` calls at once (at least one), one per `period` in the long run;
    /// previews leave `reserve` of the burst to finals.
    pub fn new(period: Duration, burst: u32, reserve: u32) -> Self {
        let burst = burst.max(1);
        Self { period, burst, reserve: reserve.min(burst - 1), tat: None }
    }

    /// A new rate, keeping the calls already made (the theoretical arrival time).
    pub fn set_rate(&mut self, period: Duration, burst: u32, reserve: u32) {
        let burst = burst.max(1);
        (self.period, self.burst, self.reserve) = (period, burst, reserve.min(burst - 1));
    }

    fn tolerance(&self, class: Class) -> Duration {
        let slots = match class {
            Class::Preview => self.burst - 1 - self.reserve,
            Class::Final => self.burst - 1,
        };
        self.period * slots
    }

    /// When a call of `class` could go, without reserving it.
    pub fn ready_at(&self, class: Class, now: Instant) -> Instant {
        match self.tat {
            Some(tat) => now.max(tat.checked_sub(self.tolerance(class)).unwrap_or(now)),
            None => now,
        }
    }

    /// Reserves the next slot of `class`; returns when it starts.
    pub fn reserve(&mut self, class: Class, now: Instant) -> Instant {
        let start = self.ready_at(class, now);
        let base = self.tat.map_or(start, |tat| tat.max(start));
        self.tat = Some(base + self.period);
        start
    }

    /// Takes a slot of `class` now, or says when one will be free.
    pub fn admit(&mut self, class: Class, now: Instant) -> Result<(), Instant> {
        let ready = self.ready_at(class, now);
        if ready > now {
            return Err(ready);
        }
        self.reserve(class, now);
        Ok(())
    }
}

/// At most `limit` calls in any window of `width`; previews `limit - reserve`.
#[derive(Debug, Clone)]
pub struct Window {
    width: Duration,
    limit: usize,
    reserve: usize,
    /// Start times of the calls admitted within the last `width`, oldest first.
    calls: VecDeque<Instant>,
}

impl Window {
    /// `limit` calls (at least one) per `width`, `reserve` of them for finals.
    pub fn new(width: Duration, limit: usize, reserve: usize) -> Self {
        let limit = limit.max(1);
        Self { width, limit, reserve: reserve.min(limit - 1), calls: VecDeque::new() }
    }

    fn limit(&self, class: Class) -> usize {
        match class {
            Class::Preview => self.limit - self.reserve,
            Class::Final => self.limit,
        }
    }

    /// Admits a call of `class` now, or says when to ask again.
    pub fn admit(&mut self, class: Class, now: Instant) -> Result<(), Instant> {
        while self.calls.front().is_some_and(|at| *at + self.width <= now) {
            self.calls.pop_front();
        }
        let limit = self.limit(class);
        if self.calls.len() < limit {
            self.calls.push_back(now);
            return Ok(());
        }
        Err(self.calls[self.calls.len() - limit] + self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_goes_at_once_then_one_per_period() {
        let now = Instant::now();
        let mut bucket = Bucket::new(SECOND, 3, 0);
        let starts: Vec<Duration> =
            (0..5).map(|_| bucket.reserve(Class::Final, now) - now).collect();
        assert_eq!(starts, [Duration::ZERO, Duration::ZERO, Duration::ZERO, SECOND, 2 * SECOND]);
        // After a quiet while the burst is back.
        let later = now + 10 * SECOND;
        assert_eq!(bucket.reserve(Class::Final, later), later);
    }

    #[test]
    fn a_new_rate_keeps_the_calls_already_made() {
        let now = Instant::now();
        let mut bucket = Bucket::new(SECOND, 2, 0);
        bucket.reserve(Class::Final, now);
        bucket.reserve(Class::Final, now);
        // Slower from now on: the two calls made still count, so only one
        // more fits the new burst before the new period applies.
        bucket.set_rate(3 * SECOND, 2, 0);
        assert_eq!(bucket.reserve(Class::Final, now) - now, Duration::ZERO);
        assert_eq!(bucket.reserve(Class::Final, now) - now, 2 * SECOND);
        assert_eq!(bucket.reserve(Class::Final, now) - now, 5 * SECOND);
    }

    #[test]
    fn a_window_admits_its_limit_and_keeps_the_reserve() {
        let now = Instant::now();
        let mut window = Window::new(SECOND, 3, 1);
        assert_eq!(window.admit(Class::Preview, now), Ok(()));
        assert_eq!(window.admit(Class::Preview, now), Ok(()));
        assert_eq!(window.admit(Class::Preview, now), Err(now + SECOND), "the reserve");
        assert_eq!(window.admit(Class::Final, now), Ok(()));
        assert_eq!(window.admit(Class::Final, now), Err(now + SECOND));
        assert_eq!(window.admit(Class::Final, now + SECOND), Ok(()), "the window slid");
    }

    #[test]
    fn previews_leave_the_reserve_to_finals() {
        let now = Instant::now();
        let mut bucket = Bucket::new(SECOND, 3, 1);
        assert_eq!(bucket.reserve(Class::Preview, now), now);
        assert_eq!(bucket.reserve(Class::Preview, now), now);
        assert_eq!(bucket.ready_at(Class::Preview, now), now + SECOND, "the last slot is kept");
        assert_eq!(bucket.reserve(Class::Final, now), now, "a final takes it at once");
        assert_eq!(bucket.ready_at(Class::Final, now), now + SECOND);
    }

    #[test]
    fn the_long_run_rate_holds_in_every_window() {
        // However calls are mixed, no window of length t holds more than
        // burst + t / period starts.
        let now = Instant::now();
        let mut bucket = Bucket::new(SECOND, 3, 1);
        let mut starts = Vec::new();
        let mut clock = now;
        for i in 0..200u32 {
            let class = if i % 3 == 0 { Class::Final } else { Class::Preview };
            clock += Duration::from_millis(u64::from(i % 7) * 90);
            let start = bucket.reserve(class, clock);
            clock = clock.max(start);
            starts.push(start);
        }
        for (i, first) in starts.iter().enumerate() {
            for (j, last) in starts.iter().enumerate().skip(i) {
                let window = *last - *first;
                let allowed = 3 + (window.as_millis() / SECOND.as_millis()) as usize;
                assert!(j - i < allowed, "{} calls in {window:?}", j - i + 1);
            }
        }
    }
}
