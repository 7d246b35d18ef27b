//! The Bot API as the delivery code sees it: teloxide requests, errors sorted
//! into what the caller must do, token scrubbed from every message, and the
//! pauses Telegram imposes (429 `retry_after`) kept per chat and globally,
//! and the rates ductor keeps to on its own ([`Pacer`], over [`crate::pace`]).
//!
//! teloxide puts the token in every request URL, and reqwest errors print
//! the URL; [`Failure`] texts go through [`Scrubber`] so a log line or an
//! ack error can never carry the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use teloxide::RequestError;
use teloxide::errors::ApiError;
use tokio::time::Instant;

use crate::pace::{Bucket, Class, Window};

/// Why a Bot API call failed, sorted by what the caller does next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// 429: wait this long, then try again.
    #[error("rate limited for {0:?}")]
    RetryAfter(Duration),
    /// The edit would not change anything; treat as success.
    #[error("message is not modified")]
    NotModified,
    /// Telegram rejected the HTML; retry as plain text.
    #[error("telegram could not parse the entities: {0}")]
    BadEntities(String),
    /// The message to edit or delete is gone.
    #[error("message not found")]
    MessageGone,
    /// Network or server trouble; trying again may help.
    #[error("network: {0}")]
    Network(String),
    /// Anything else; trying again will not help.
    #[error("{0}")]
    Other(String),
}

/// Removes the bot token from text before it is logged or sent anywhere.
#[derive(Clone)]
pub struct Scrubber {
    token: Arc<str>,
}

impl Scrubber {
    /// Scrubs `token` (and its secret half, which is what matters).
    pub fn new(token: &str) -> Self {
        Self { token: Arc::from(token) }
    }

    /// `text` with the token replaced by `<token>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&*self.token, "<token>");
        if let Some((_, secret)) = self.token.split_once(':')
            && secret.len() >= 8
        {
            out = out.replace(secret, "<token>");
        }
        out
    }

    /// Sorts a teloxide error into a [`Failure`] with a scrubbed text.
    pub fn classify(&self, error: RequestError) -> Failure {
        match error {
            RequestError::RetryAfter(seconds) => Failure::RetryAfter(seconds.duration()),
            RequestError::Api(ApiError::MessageNotModified) => Failure::NotModified,
            RequestError::Api(ApiError::CantParseEntities(text)) => {
                Failure::BadEntities(self.scrub(&text))
            }
            RequestError::Api(
                ApiError::MessageToEditNotFound
                | ApiError::MessageToDeleteNotFound
                | ApiError::MessageIdInvalid
                | ApiError::MessageCantBeEdited,
            ) => Failure::MessageGone,
            RequestError::Api(ApiError::Unknown(text)) if text.contains("can't parse entities") => {
                Failure::BadEntities(self.scrub(&text))
            }
            RequestError::Api(ApiError::Unknown(text))
                if text.contains("message is not modified") =>
            {
                Failure::NotModified
            }
            RequestError::Network(error) => {
                // reqwest prints the request URL, which holds the token.
                let mut text = error.to_string();
                if let Some(url) = error.url() {
                    text = text.replace(url.as_str(), "<bot api url>");
                }
                Failure::Network(self.scrub(&text))
            }
            RequestError::Io(error) => Failure::Network(self.scrub(&error.to_string())),
            other => Failure::Other(self.scrub(&other.to_string())),
        }
    }
}

/// What a call is, for the buckets it draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A new message (counts against a group's per-minute limit too).
    Send,
    /// An edit of a message.
    Edit,
}

/// Telegram's limits as ductor keeps to them: per chat `burst` calls at once
/// and one per `interval` after (`[telegram].edit_interval_ms`,
/// `[telegram].burst`); the whole bot 30 calls in any 1.1 seconds (the 0.1 s
/// covers calls that leave late and arrive early), 10 of them kept for
/// finals; new messages in a group 20 in any minute.
const BOT_WINDOW: (Duration, usize, usize) = (Duration::from_millis(1100), 30, 10);
const GROUP_SENDS: (Duration, usize, usize) = (Duration::from_secs(60), 20, 2);

/// Pacing state of one chat: its limits and any 429 pause.
#[derive(Debug)]
struct ChatPace {
    calls: Bucket,
    /// Groups only: new messages.
    sends: Option<Window>,
    paused_until: Option<Instant>,
}

/// Rates and pauses for every chat, plus the global ones.
///
/// A 429 pauses its chat. When two different chats are told to wait within
/// one second, Telegram is limiting the bot as a whole, so every chat waits
/// for the longest `retry_after` seen.
pub struct Pacer {
    /// `edit_interval_ms` and `burst`; a reload of `config.toml` replaces them.
    rate: Mutex<(Duration, u32)>,
    chats: Mutex<HashMap<i64, ChatPace>>,
    bot: Mutex<Window>,
    global_until: Mutex<Option<Instant>>,
    recent_429: Mutex<Vec<(Instant, i64, Duration)>>,
}

impl Pacer {
    /// Per chat at most `burst` calls at once and one per `interval` in the
    /// long run; previews leave one of the burst to the final answer.
    pub fn new(interval: Duration, burst: u32) -> Self {
        let (width, limit, reserve) = BOT_WINDOW;
        Self {
            rate: Mutex::new((interval, burst.max(1))),
            chats: Mutex::new(HashMap::new()),
            bot: Mutex::new(Window::new(width, limit, reserve)),
            global_until: Mutex::new(None),
            recent_429: Mutex::new(Vec::new()),
        }
    }

    /// Changes every chat's pace from now on; a chat's calls so far still
    /// count against the new rate.
    pub fn set_rate(&self, interval: Duration, burst: u32) {
        let burst = burst.max(1);
        *self.rate.locked() = (interval, burst);
        for pace in self.chats.locked().values_mut() {
            pace.calls.set_rate(interval, burst, 1);
        }
    }

    fn with_chat<T>(&self, chat: i64, f: impl FnOnce(&mut ChatPace) -> T) -> T {
        let (interval, burst) = *self.rate.locked();
        let mut chats = self.chats.locked();
        let pace = chats.entry(chat).or_insert_with(|| ChatPace {
            calls: Bucket::new(interval, burst, 1),
            // Group and channel ids are negative.
            sends: (chat < 0).then(|| {
                let (width, limit, reserve) = GROUP_SENDS;
                Window::new(width, limit, reserve)
            }),
            paused_until: None,
        });
        f(pace)
    }

    /// When the chat may send anything again (pauses only).
    pub fn send_ready_at(&self, chat: i64) -> Instant {
        let now = Instant::now();
        let global = self.global_until.locked().unwrap_or(now);
        let paused = self.with_chat(chat, |pace| pace.paused_until).unwrap_or(now);
        now.max(global).max(paused)
    }

    /// When the chat's bucket has a slot of `class` (without reserving it).
    pub fn ready_at(&self, chat: i64, class: Class) -> Instant {
        let now = self.send_ready_at(chat);
        self.with_chat(chat, |pace| pace.calls.ready_at(class, now))
    }

    /// Admits a call now by every limit at once (the chat's bucket, a
    /// group's window for new messages, the bot's window), or says when to
    /// ask again. All or none, under the chats' lock: two lanes of one chat
    /// (forum topics) never take the same slot.
    pub fn admit(&self, chat: i64, class: Class, call: Call) -> Result<(), Instant> {
        let now = Instant::now();
        self.with_chat(chat, |pace| {
            let mut bot = self.bot.locked();
            let (mut calls, mut sends, mut window) =
                (pace.calls.clone(), pace.sends.clone(), bot.clone());
            calls.admit(class, now)?;
            if let (Some(sends), Call::Send) = (&mut sends, call) {
                sends.admit(class, now)?;
            }
            window.admit(class, now)?;
            (pace.calls, pace.sends, *bot) = (calls, sends, window);
            Ok(())
        })
    }

    /// Records a 429 for `chat`.
    pub fn note_retry_after(&self, chat: i64, wait: Duration) {
        let now = Instant::now();
        let until = now + wait;
        self.with_chat(chat, |pace| {
            pace.paused_until = Some(pace.paused_until.map_or(until, |old| old.max(until)));
        });
        let mut recent = self.recent_429.locked();
        recent.retain(|(at, _, _)| now.duration_since(*at) < Duration::from_secs(1));
        recent.push((now, chat, wait));
        let other_chat = recent.iter().any(|(_, other, _)| *other != chat);
        if other_chat {
            let longest = recent.iter().map(|(_, _, wait)| *wait).max().unwrap_or(wait);
            let mut global = self.global_until.locked();
            let until = now + longest;
            *global = Some(global.map_or(until, |old| old.max(until)));
            tracing::warn!(
                wait_ms = longest.as_millis() as u64,
                "Telegram rate-limits the bot as a whole; pausing every chat"
            );
        }
    }

    /// The per-chat interval.
    pub fn interval(&self) -> Duration {
        self.rate.locked().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubber_hides_token_and_secret() {
        let scrubber = Scrubber::new("123456:ABCDEFGHIJ");
        assert_eq!(
            scrubber.scrub("GET http://x/bot123456:ABCDEFGHIJ/getMe and ABCDEFGHIJ"),
            "GET http://x/bot<token>/getMe and <token>"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_rates_and_pauses() {
        let pacer = Pacer::new(Duration::from_secs(1), 3);
        let start = Instant::now();
        assert_eq!(pacer.admit(1, Class::Preview, Call::Send), Ok(()));
        assert_eq!(pacer.admit(1, Class::Preview, Call::Edit), Ok(()), "a burst of two previews");
        assert_eq!(
            pacer.ready_at(1, Class::Preview),
            start + Duration::from_secs(1),
            "the third slot is the final's"
        );
        assert_eq!(
            pacer.admit(1, Class::Preview, Call::Edit),
            Err(start + Duration::from_secs(1)),
            "a third preview waits"
        );
        assert_eq!(pacer.admit(1, Class::Final, Call::Send), Ok(()), "the final goes at once");
        assert_eq!(pacer.ready_at(2, Class::Preview), start, "other chats are free");
        pacer.note_retry_after(1, Duration::from_secs(5));
        assert_eq!(pacer.send_ready_at(1), start + Duration::from_secs(5));
        assert_eq!(pacer.send_ready_at(2), start);
        pacer.note_retry_after(2, Duration::from_secs(3));
        assert_eq!(pacer.send_ready_at(3), start + Duration::from_secs(5), "global pause");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bot_stays_under_thirty_calls_a_second_and_groups_under_twenty_sends_a_minute() {
        let pacer = Pacer::new(Duration::from_secs(1), 3);
        let start = Instant::now();
        let admitted = (0..100).filter(|chat| pacer.admit(*chat, Class::Final, Call::Edit).is_ok());
        assert_eq!(admitted.count(), 30, "30 calls in the bot's second");
        assert_eq!(
            pacer.admit(7, Class::Final, Call::Edit),
            Err(start + Duration::from_millis(1100))
        );
        tokio::time::advance(Duration::from_millis(1100)).await;
        let previews =
            (0..100).filter(|chat| pacer.admit(*chat, Class::Preview, Call::Edit).is_ok());
        assert_eq!(previews.count(), 20, "previews leave 10 of the second to finals");
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut group = 0;
        for _ in 0..25 {
            tokio::time::advance(Duration::from_secs(1)).await;
            group += usize::from(pacer.admit(-100, Class::Final, Call::Send).is_ok());
        }
        assert_eq!(group, 20, "20 new messages a minute in a group, one a second");
        assert!(pacer.admit(-100, Class::Final, Call::Edit).is_ok(), "edits are not sends");
    }
}
