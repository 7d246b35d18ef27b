//! Time as the automation loops see it, behind a trait so tests can drive the
//! scheduler, heartbeat and cleanup through days and DST changes in
//! milliseconds instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// A boxed future that sleeps.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Wall-clock time and sleeping until an instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Completes at or after `deadline`. It may also complete earlier (callers
    /// re-check [`Clock::now`]); the real clock does so at least every minute so
    /// a suspended machine or a stepped clock is noticed.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// The shared handle used everywhere.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Longest single sleep of the system clock, so clock steps are noticed.
const MAX_REAL_SLEEP: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let remaining = deadline.duration_since(Timestamp::now());
        let wait = if remaining <= SignedDuration::ZERO {
            Duration::ZERO
        } else {
            Duration::try_from(remaining).unwrap_or(MAX_REAL_SLEEP).min(MAX_REAL_SLEEP)
        };
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when a test moves it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
    changed: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        let (changed, _) = watch::channel(start);
        Self { now: Arc::new(Mutex::new(start)), changed }
    }

    /// Moves the clock to `to` (never backwards) and wakes sleepers that are due.
    pub fn set(&self, to: Timestamp) {
        let mut now = self.now.locked();
        if to > *now {
            *now = to;
            self.changed.send_replace(to);
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        let next = self.now().checked_add(by).expect("test clock stays in range");
        self.set(next);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.locked()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut receiver = self.changed.subscribe();
        let now = self.now();
        Box::pin(async move {
            if now >= deadline {
                return;
            }
            loop {
                if *receiver.borrow_and_update() >= deadline {
                    return;
                }
                if receiver.changed().await.is_err() {
                    // The clock is gone: nothing will ever wake us.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_moved_past_deadline() {
        let start: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        let deadline = start + SignedDuration::from_hours(5);
        let sleeper = tokio::spawn(clock.sleep_until(deadline));
        clock.advance(SignedDuration::from_hours(1));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke before the deadline");
        clock.advance(SignedDuration::from_hours(4));
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.expect("sleeper woke").unwrap();
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let start: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        clock.set(start - SignedDuration::from_hours(1));
        assert_eq!(clock.now(), start);
    }
}
