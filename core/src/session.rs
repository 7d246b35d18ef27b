//! Sessions: per `SessionKey`, the chosen provider/model/effort and one
//! bucket per provider (its resume id and counters), so switching provider
//! keeps the other providers' sessions. Freshness rules decide when a bucket
//! starts over: idle timeout, a daily reset hour in the user's time zone, and
//! a message cap. Pure data and pure functions; `store` persists them.

use std::collections::BTreeMap;

use jiff::{Timestamp, tz::TimeZone};

use crate::model::SessionKey;

/// One provider's session within a chat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bucket {
    /// The provider's session id to resume; `None` = start new.
    pub session_id: Option<String>,
    /// Completed turns in this session.
    pub message_count: u64,
    /// Input tokens used in this session.
    pub input_tokens: u64,
    /// Output tokens used in this session.
    pub output_tokens: u64,
    /// Cost of this session in USD.
    pub cost_usd: f64,
    /// Last turn start or result.
    pub last_active: Option<Timestamp>,
}

impl Bucket {
    /// Forgets the session: the next turn starts a new one.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The persisted state of one chat/topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The chat.
    pub key: SessionKey,
    /// Provider for the next turn.
    pub provider: String,
    /// Model for the next turn; empty = provider default.
    pub model: String,
    /// Reasoning effort; empty = CLI default.
    pub effort: String,
    /// Per-provider buckets.
    pub buckets: BTreeMap<String, Bucket>,
    /// First seen.
    pub created_at: Timestamp,
    /// The chat's permission mode (`/mode`); empty = `[agent].permission_mode`.
    pub permission: String,
}

impl SessionRecord {
    /// A new record with the configured defaults.
    pub fn new(key: SessionKey, provider: &str, model: &str, effort: &str, now: Timestamp) -> Self {
        Self {
            key,
            provider: provider.to_owned(),
            model: model.to_owned(),
            effort: effort.to_owned(),
            buckets: BTreeMap::new(),
            created_at: now,
            permission: String::new(),
        }
    }

    /// The bucket of `provider`, created on first use.
    pub fn bucket_mut(&mut self, provider: &str) -> &mut Bucket {
        self.buckets.entry(provider.to_owned()).or_default()
    }

    /// The bucket of `provider`, if any.
    pub fn bucket(&self, provider: &str) -> Option<&Bucket> {
        self.buckets.get(provider)
    }
}

/// The freshness rules from `[agent]`.
#[derive(Debug, Clone)]
pub struct Freshness {
    /// 0 = off.
    pub idle_timeout_minutes: u32,
    /// Daily reset at this hour in `timezone`, when set.
    pub daily_reset_hour: Option<u8>,
    /// The user's time zone.
    pub timezone: TimeZone,
    /// 0 = off.
    pub max_session_messages: u32,
}

/// Why a bucket is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Idle longer than the timeout.
    Idle,
    /// A daily reset hour passed since the last activity.
    DailyReset,
    /// The message cap was reached.
    MessageCap,
}

impl Freshness {
    /// `Some(reason)` when `bucket` must start over before the next turn.
    pub fn check(&self, bucket: &Bucket, now: Timestamp) -> Option<Stale> {
        bucket.session_id.as_ref()?;
        if self.max_session_messages > 0 && bucket.message_count >= self.max_session_messages.into()
        {
            return Some(Stale::MessageCap);
        }
        let last = bucket.last_active?;
        if self.idle_timeout_minutes > 0 {
            let idle = now.as_second() - last.as_second();
            if idle >= i64::from(self.idle_timeout_minutes) * 60 {
                return Some(Stale::Idle);
            }
        }
        if let Some(hour) = self.daily_reset_hour
            && let Some(boundary) = last_reset_boundary(now, hour, &self.timezone)
            && last < boundary
        {
            return Some(Stale::DailyReset);
        }
        None
    }
}

/// The most recent instant at `hour:00` in `tz` that is not after `now`.
fn last_reset_boundary(now: Timestamp, hour: u8, tz: &TimeZone) -> Option<Timestamp> {
    let local = now.to_zoned(tz.clone());
    let today = local.date().at(i8::try_from(hour).ok()?, 0, 0, 0).to_zoned(tz.clone()).ok()?;
    if today.timestamp() <= now {
        Some(today.timestamp())
    } else {
        let yesterday = local.date().yesterday().ok()?;
        Some(yesterday.at(i8::try_from(hour).ok()?, 0, 0, 0).to_zoned(tz.clone()).ok()?.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp literal")
    }

    fn bucket(last: &str, count: u64) -> Bucket {
        Bucket {
            session_id: Some("s".into()),
            message_count: count,
            last_active: Some(ts(last)),
            ..Bucket::default()
        }
    }

    fn rules() -> Freshness {
        Freshness {
            idle_timeout_minutes: 60,
            daily_reset_hour: None,
            timezone: TimeZone::UTC,
            max_session_messages: 0,
        }
    }

    #[test]
    fn idle_timeout_makes_stale() {
        let b = bucket("2026-01-01T10:00:00Z", 1);
        assert_eq!(rules().check(&b, ts("2026-01-01T10:59:00Z")), None);
        assert_eq!(rules().check(&b, ts("2026-01-01T11:00:00Z")), Some(Stale::Idle));
    }

    #[test]
    fn a_bucket_without_session_is_never_stale() {
        let mut b = bucket("2020-01-01T00:00:00Z", 100);
        b.session_id = None;
        assert_eq!(rules().check(&b, ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn message_cap() {
        let rules = Freshness { max_session_messages: 3, idle_timeout_minutes: 0, ..rules() };
        let now = ts("2026-01-01T10:00:01Z");
        assert_eq!(rules.check(&bucket("2026-01-01T10:00:00Z", 2), now), None);
        assert_eq!(rules.check(&bucket("2026-01-01T10:00:00Z", 3), now), Some(Stale::MessageCap));
    }

    #[test]
    fn daily_reset_in_the_users_zone() {
        let tz = TimeZone::get("Europe/Berlin").expect("zone database has Berlin");
        let rules = Freshness {
            idle_timeout_minutes: 0,
            daily_reset_hour: Some(4),
            timezone: tz,
            max_session_messages: 0,
        };
        // 04:00 Berlin in winter is 03:00 UTC.
        let b = bucket("2026-01-10T02:30:00Z", 1);
        assert_eq!(rules.check(&b, ts("2026-01-10T02:59:00Z")), None);
        assert_eq!(rules.check(&b, ts("2026-01-10T03:00:00Z")), Some(Stale::DailyReset));
        // Activity after today's boundary is fresh until tomorrow's.
        let b = bucket("2026-01-10T03:30:00Z", 1);
        assert_eq!(rules.check(&b, ts("2026-01-11T02:00:00Z")), None);
        assert_eq!(rules.check(&b, ts("2026-01-11T03:00:01Z")), Some(Stale::DailyReset));
    }
}
