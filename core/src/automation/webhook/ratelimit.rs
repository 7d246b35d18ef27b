//! What the listener counts, all of it after authentication, so requests
//! that prove nothing cannot use up what real senders need:
//! - [`SlidingWindow`]: at most `limit` requests in any 60 s; memory bounded
//!   by the limit (one instant per allowed request);
//! - [`PerHook`]: one window per hook, so one busy or abused hook never
//!   starves another;
//! - [`ReplayGuard`]: a signed delivery (its delivery id, or its signature)
//!   is accepted once within the replay window.

use std::collections::{HashMap, VecDeque};
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

/// One [`SlidingWindow`] per hook id (only ids that passed authentication
/// get one, so the map is bounded by the number of hooks).
#[derive(Debug)]
pub struct PerHook {
    per_minute: u32,
    windows: Mutex<HashMap<String, std::sync::Arc<SlidingWindow>>>,
}

impl PerHook {
    /// Each hook may take `per_minute` requests a minute.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Mutex::default() }
    }

    /// Records an authenticated request for `hook`; false = rate limited.
    pub fn allow(&self, hook: &str, now: Instant) -> bool {
        let window = {
            let mut windows = self.windows.locked();
            windows
                .entry(hook.to_owned())
                .or_insert_with(|| std::sync::Arc::new(SlidingWindow::new(self.per_minute)))
                .clone()
        };
        window.allow(now)
    }
}

/// Deliveries seen within the replay window, by (hook, delivery key).
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl ReplayGuard {
    /// Remembers deliveries for `window`.
    pub fn new(window: Duration) -> Self {
        Self { window, seen: Mutex::default() }
    }

    /// True the first time `key` is seen for `hook` within the window.
    pub fn first(&self, hook: &str, key: &str, now: Instant) -> bool {
        let mut seen = self.seen.locked();
        seen.retain(|_, at| now.saturating_duration_since(*at) < self.window);
        match seen.entry((hook.to_owned(), key.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(now);
                true
            }
        }
    }

    /// Forgets `key` (its request was not accepted after all, so a retry is no replay).
    pub fn forget(&self, hook: &str, key: &str) {
        self.seen.locked().remove(&(hook.to_owned(), key.to_owned()));
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

    #[test]
    fn each_hook_has_its_own_window() {
        let limits = PerHook::new(2);
        let t0 = Instant::now();
        assert!(limits.allow("busy", t0) && limits.allow("busy", t0));
        assert!(!limits.allow("busy", t0), "busy is limited");
        assert!(limits.allow("quiet", t0), "another hook is not");
    }

    #[test]
    fn a_delivery_is_accepted_once_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(guard.first("gh", "delivery-1", t0));
        assert!(!guard.first("gh", "delivery-1", t0 + Duration::from_secs(599)));
        assert!(guard.first("other", "delivery-1", t0), "per hook");
        assert!(guard.first("gh", "delivery-1", t0 + Duration::from_secs(1200)), "window passed");
        guard.forget("gh", "delivery-1");
        assert!(guard.first("gh", "delivery-1", t0 + Duration::from_secs(1201)), "forgotten");
    }
}
