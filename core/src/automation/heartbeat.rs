//! Heartbeat: a periodic check-in prompt run in a chat's live session, so the
//! agent can speak up on its own ("the nightly build failed").
//!
//! A chat is checked in when it has a session, no turn is running, it is not
//! inside quiet hours, the user has not written within the cooldown, and its
//! interval has passed since the last check-in. `[[heartbeat.targets]]`
//! override any of that per chat. A reply equal to the ACK token is not
//! delivered: core's inject drops it (`quiet_token`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ductor_daemon::config::HeartbeatConfig;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::clock::SharedClock;
use super::model::ChatTarget;
use super::quiet::QuietHours;

/// Built-in check-in prompt (`heartbeat.prompt` empty).
pub fn default_prompt(ack_token: &str) -> String {
    format!(
        "Heartbeat check-in. Nobody asked anything: review memory_system/MAINMEMORY.md and \
         cron_tasks/ for anything that needs the user's attention now (deadlines, failures, \
         follow-ups you promised). If there is something useful to say, say it briefly. \
         Otherwise reply with exactly {ack_token} and nothing else."
    )
}

/// What the heartbeat knows about a chat right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatActivity {
    /// The chat.
    pub chat: ChatTarget,
    /// It has a session to resume (a heartbeat never creates one).
    pub has_session: bool,
    /// A turn is running or queued.
    pub busy: bool,
    /// The user's last message.
    pub last_user_activity: Option<Timestamp>,
}

/// A chat's effective settings after overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// Check this chat in at all.
    pub enabled: bool,
    /// Between check-ins.
    pub interval: SignedDuration,
    /// After user activity.
    pub cooldown: SignedDuration,
    /// Quiet hours.
    pub quiet: QuietHours,
    /// Prompt sent.
    pub prompt: String,
    /// Reply that is not delivered.
    pub ack_token: String,
}

/// Settings for `chat`: the section's values, overridden by a matching target.
pub fn effective(config: &HeartbeatConfig, chat: &ChatTarget) -> Effective {
    let target = config.targets.iter().find(|t| {
        t.transport == chat.transport && t.chat_id == chat.chat_id && t.topic_id == chat.topic_id
    });
    let pick = |f: &dyn Fn(&ductor_daemon::config::HeartbeatTarget) -> Option<u32>, base: u32| {
        target.and_then(f).unwrap_or(base)
    };
    let ack_token =
        target.and_then(|t| t.ack_token.clone()).unwrap_or_else(|| config.ack_token.clone());
    let prompt = target.and_then(|t| t.prompt.clone()).unwrap_or_else(|| config.prompt.clone());
    let prompt = if prompt.trim().is_empty() { default_prompt(&ack_token) } else { prompt };
    let quiet_start = target.and_then(|t| t.quiet_start).unwrap_or(config.quiet_start);
    let quiet_end = target.and_then(|t| t.quiet_end).unwrap_or(config.quiet_end);
    Effective {
        enabled: target.and_then(|t| t.enabled).unwrap_or(config.enabled),
        interval: SignedDuration::from_mins(i64::from(pick(
            &|t| t.interval_minutes,
            config.interval_minutes,
        ))),
        cooldown: SignedDuration::from_mins(i64::from(pick(
            &|t| t.cooldown_minutes,
            config.cooldown_minutes,
        ))),
        quiet: QuietHours::new(quiet_start, quiet_end).unwrap_or(QuietHours { start: 0, end: 0 }),
        prompt,
        ack_token,
    }
}

/// Why a chat was not checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Off for this chat.
    Disabled,
    /// No session to resume.
    NoSession,
    /// A turn is running.
    Busy,
    /// Inside quiet hours.
    QuietHours,
    /// The user wrote recently.
    Cooldown,
    /// The interval has not passed since the last check-in.
    NotDue,
}

/// Whether to check `activity` in at `now`; `last` is its last check-in.
pub fn decide(
    settings: &Effective,
    activity: &ChatActivity,
    last: Option<Timestamp>,
    now: Timestamp,
    zone: &TimeZone,
) -> Result<(), Skip> {
    if !settings.enabled {
        return Err(Skip::Disabled);
    }
    if !activity.has_session {
        return Err(Skip::NoSession);
    }
    if last.is_some_and(|last| now.duration_since(last) < settings.interval) {
        return Err(Skip::NotDue);
    }
    if settings.quiet.contains(now, zone) {
        return Err(Skip::QuietHours);
    }
    if activity.last_user_activity.is_some_and(|at| now.duration_since(at) < settings.cooldown) {
        return Err(Skip::Cooldown);
    }
    if activity.busy {
        return Err(Skip::Busy);
    }
    Ok(())
}

/// A boxed future returned by the port.
pub type PortFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the heartbeat needs from core.
pub trait HeartbeatPort: Send + Sync + 'static {
    /// Chats that have sessions, with their activity.
    fn chats(&self) -> PortFuture<Vec<ChatActivity>>;
    /// Runs `prompt` in the chat's session under its lock; a reply equal to
    /// `ack_token` is not delivered.
    fn check_in(&self, chat: ChatTarget, prompt: String, ack_token: String) -> PortFuture<()>;
}

/// How often the loop looks at the chats.
pub const TICK: SignedDuration = SignedDuration::from_secs(60);

/// Runs the heartbeat until `shutdown`. `zone` is the user's time zone (a
/// reload replaces it, like `config`).
pub async fn run(
    config: watch::Receiver<HeartbeatConfig>,
    zone: watch::Receiver<TimeZone>,
    clock: SharedClock,
    port: Arc<dyn HeartbeatPort>,
    shutdown: CancellationToken,
) {
    let mut state = HeartbeatState::default();
    // The first check-ins come one interval after start, not at once.
    let started = clock.now();
    loop {
        let wake = clock.now() + TICK;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = clock.sleep_until(wake) => {}
        }
        // Each tick takes the current `[heartbeat]` (a reload replaces it).
        let config = config.borrow().clone();
        let zone = zone.borrow().clone();
        if !config.enabled && !config.targets.iter().any(|t| t.enabled == Some(true)) {
            continue;
        }
        let chats = port.chats().await;
        for (chat, settings) in state.due(&config, &zone, &chats, clock.now(), started) {
            tokio::spawn(port.check_in(chat, settings.prompt, settings.ack_token));
        }
    }
}

/// The loop's memory: when each chat was last checked in.
#[derive(Debug, Default)]
pub struct HeartbeatState {
    last: HashMap<ChatTarget, Timestamp>,
}

impl HeartbeatState {
    /// Chats to check in now (and records that they were).
    pub fn due(
        &mut self,
        config: &HeartbeatConfig,
        zone: &TimeZone,
        chats: &[ChatActivity],
        now: Timestamp,
        started: Timestamp,
    ) -> Vec<(ChatTarget, Effective)> {
        let mut out = Vec::new();
        for activity in chats {
            let settings = effective(config, &activity.chat);
            let last = Some(self.last.get(&activity.chat).copied().unwrap_or(started));
            if decide(&settings, activity, last, now, zone).is_ok() {
                self.last.insert(activity.chat.clone(), now);
                out.push((activity.chat.clone(), settings));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::automation::clock::ManualClock;
    use ductor_daemon::config::HeartbeatTarget;
    use tokio::sync::mpsc;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn chat(id: &str) -> ChatTarget {
        ChatTarget { transport: "telegram".into(), chat_id: id.into(), topic_id: String::new() }
    }

    fn activity(id: &str) -> ChatActivity {
        ChatActivity { chat: chat(id), has_session: true, busy: false, last_user_activity: None }
    }

    fn config() -> HeartbeatConfig {
        HeartbeatConfig { enabled: true, ..HeartbeatConfig::default() }
    }

    #[test]
    fn every_gate() {
        let settings = effective(&config(), &chat("1"));
        let noon = ts("2026-05-01T12:00:00Z");
        let utc = TimeZone::UTC;
        let ok = activity("1");
        assert_eq!(decide(&settings, &ok, None, noon, &utc), Ok(()));
        let off = effective(&HeartbeatConfig::default(), &chat("1"));
        assert_eq!(decide(&off, &ok, None, noon, &utc), Err(Skip::Disabled));
        let none = ChatActivity { has_session: false, ..ok.clone() };
        assert_eq!(decide(&settings, &none, None, noon, &utc), Err(Skip::NoSession));
        let busy = ChatActivity { busy: true, ..ok.clone() };
        assert_eq!(decide(&settings, &busy, None, noon, &utc), Err(Skip::Busy));
        // Default quiet hours 21–8.
        assert_eq!(
            decide(&settings, &ok, None, ts("2026-05-01T22:00:00Z"), &utc),
            Err(Skip::QuietHours)
        );
        let recent =
            ChatActivity { last_user_activity: Some(ts("2026-05-01T11:57:00Z")), ..ok.clone() };
        assert_eq!(decide(&settings, &recent, None, noon, &utc), Err(Skip::Cooldown));
        let older =
            ChatActivity { last_user_activity: Some(ts("2026-05-01T11:55:00Z")), ..ok.clone() };
        assert_eq!(decide(&settings, &older, None, noon, &utc), Ok(()));
        assert_eq!(
            decide(&settings, &ok, Some(ts("2026-05-01T11:40:00Z")), noon, &utc),
            Err(Skip::NotDue)
        );
        assert_eq!(decide(&settings, &ok, Some(ts("2026-05-01T11:30:00Z")), noon, &utc), Ok(()));
    }

    #[test]
    fn targets_override_and_inherit() {
        let mut config = HeartbeatConfig::default();
        config.targets.push(HeartbeatTarget {
            transport: "telegram".into(),
            chat_id: "-100".into(),
            enabled: Some(true),
            interval_minutes: Some(120),
            ack_token: Some("NOTHING".into()),
            ..HeartbeatTarget::default()
        });
        let group = effective(&config, &chat("-100"));
        assert!(group.enabled, "a target opts in although the section is off");
        assert_eq!(group.interval, SignedDuration::from_mins(120));
        assert_eq!(group.cooldown, SignedDuration::from_mins(5), "inherited");
        assert_eq!(group.ack_token, "NOTHING");
        assert!(group.prompt.contains("NOTHING"), "the built-in prompt names the target's token");
        assert!(!effective(&config, &chat("1")).enabled);
    }

    struct Port {
        chats: Vec<ChatActivity>,
        sent: mpsc::UnboundedSender<(ChatTarget, String, String)>,
    }

    impl HeartbeatPort for Port {
        fn chats(&self) -> PortFuture<Vec<ChatActivity>> {
            let chats = self.chats.clone();
            Box::pin(async move { chats })
        }
        fn check_in(&self, chat: ChatTarget, prompt: String, ack: String) -> PortFuture<()> {
            let _ = self.sent.send((chat, prompt, ack));
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn loop_checks_in_every_interval_on_the_clock() {
        let clock = ManualClock::new(ts("2026-05-01T10:00:00Z"));
        let (sent, mut received) = mpsc::unbounded_channel();
        let busy = ChatActivity { busy: true, ..activity("2") };
        let port = Arc::new(Port { chats: vec![activity("1"), busy], sent });
        let stop = CancellationToken::new();
        let config = watch::channel(config()).1;
        tokio::spawn(run(
            config,
            watch::channel(TimeZone::UTC).1,
            Arc::new(clock.clone()),
            port,
            stop.clone(),
        ));
        // Minutes (one at a time) until the next check-in arrives, or None.
        let until_check_in =
            async |received: &mut mpsc::UnboundedReceiver<(ChatTarget, String, String)>,
                   cap: i64| {
                for minute in 1..=cap {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    clock.advance(SignedDuration::from_mins(1));
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    if let Ok(sent) = received.try_recv() {
                        return Some((minute, sent));
                    }
                }
                None
            };
        let (minute, (chat, prompt, ack)) =
            until_check_in(&mut received, 45).await.expect("a check-in");
        assert!((30..=35).contains(&minute), "first check-in after {minute} minutes, not ~30");
        assert_eq!(chat.chat_id, "1", "the busy chat is skipped");
        assert_eq!(ack, "HEARTBEAT_OK");
        assert!(prompt.contains("HEARTBEAT_OK"));
        let (minute, (chat, _, _)) =
            until_check_in(&mut received, 45).await.expect("the next check-in");
        assert!((30..=35).contains(&minute), "next check-in after {minute} minutes");
        assert_eq!(chat.chat_id, "1");
        stop.cancel();
    }
}
