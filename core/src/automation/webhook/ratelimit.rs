//! The listener's global rate limit: a sliding window of the last minute's
//! accepted request times. Memory is bounded by the limit itself (one instant
//! per allowed request), so a flood costs nothing beyond its 429s.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ductor_daemon::sync::Locked as _;
const WINDOW: Duration = Duration::from_secs(60);

/// Allows at most `limit` requests in any 60-second window.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: usize,
    hits: Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    /// A window allowing `per_minute` requests.
    pub fn new(per_minute: u32) -> Self {
        let limit = usize::try_from(per_minute).unwrap_or(usize::MAX).max(1);
        Self { limit, hits: Mutex::new(VecDeque::with_capacity(limit.min(1 << 16))) }
    }

    /// Records a request at `now` if allowed; false = rate limited.
    pub fn allow(&self, now: Instant) -> bool {
        let mut hits = self.hits.locked();
        while hits.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
            hits.pop_front();
        }
        if hits.len() >= self.limit {
            return false;
        }
        hits.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_until_the_window_slides() {
        let window = SlidingWindow::new(3);
        let t0 = Instant::now();
        assert!(window.allow(t0));
        assert!(window.allow(t0 + Duration::from_secs(10)));
        assert!(window.allow(t0 + Duration::from_secs(20)));
        assert!(!window.allow(t0 + Duration::from_secs(30)));
        // The first hit leaves the window at t0 + 60 s.
        assert!(window.allow(t0 + Duration::from_secs(60)));
        assert!(!window.allow(t0 + Duration::from_secs(61)));
        assert!(window.allow(t0 + Duration::from_secs(71)));
    }

    #[test]
    fn memory_is_bounded_by_the_limit() {
        let window = SlidingWindow::new(100);
        let t0 = Instant::now();
        let allowed = (0..100_000).filter(|_| window.allow(t0)).count();
        assert_eq!(allowed, 100);
        assert_eq!(window.hits.locked().len(), 100);
    }
}
