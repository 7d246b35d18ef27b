//! The Bot API as the delivery code sees it: teloxide requests, errors sorted
//! into what the caller must do, token scrubbed from every message, and the
//! pauses Telegram imposes (429 `retry_after`) kept per chat and globally.
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

/// Pacing state of one chat: the edit budget and any 429 pause.
#[derive(Debug, Default)]
struct ChatPace {
    last_edit: Option<Instant>,
    paused_until: Option<Instant>,
}

/// Edit budgets and pauses for every chat, plus the global pause.
///
/// A 429 pauses its chat. When two different chats are told to wait within
/// one second, Telegram is limiting the bot as a whole, so every chat waits
/// for the longest `retry_after` seen.
pub struct Pacer {
    interval: Duration,
    chats: Mutex<HashMap<i64, ChatPace>>,
    global_until: Mutex<Option<Instant>>,
    recent_429: Mutex<Vec<(Instant, i64, Duration)>>,
}

impl Pacer {
    /// `interval` is the least time between two edits in one chat.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            chats: Mutex::new(HashMap::new()),
            global_until: Mutex::new(None),
            recent_429: Mutex::new(Vec::new()),
        }
    }

    /// When the chat may send anything again (pauses only).
    pub fn send_ready_at(&self, chat: i64) -> Instant {
        let now = Instant::now();
        let global = self.global_until.locked().unwrap_or(now);
        let chats = self.chats.locked();
        let paused = chats.get(&chat).and_then(|pace| pace.paused_until).unwrap_or(now);
        now.max(global).max(paused)
    }

    /// When the chat may edit again (pauses and the edit budget).
    pub fn edit_ready_at(&self, chat: i64) -> Instant {
        let ready = self.send_ready_at(chat);
        let chats = self.chats.locked();
        let budget =
            chats.get(&chat).and_then(|pace| pace.last_edit).map(|last| last + self.interval);
        budget.map_or(ready, |budget| ready.max(budget))
    }

    /// Reserves the chat's next edit slot and returns when it starts.
    ///
    /// Reserving (rather than checking, then noting) keeps two lanes of one
    /// chat (two forum topics) from taking the same slot.
    pub fn reserve_edit(&self, chat: i64) -> Instant {
        let ready = self.edit_ready_at(chat);
        let mut chats = self.chats.locked();
        chats.entry(chat).or_default().last_edit = Some(ready);
        ready
    }

    /// Records that an edit call of `chat` has completed: the next slot
    /// counts from now, so Telegram never sees two edits closer than the
    /// interval even when one request was slow to leave.
    pub fn edit_done(&self, chat: i64) {
        let now = Instant::now();
        let mut chats = self.chats.locked();
        let pace = chats.entry(chat).or_default();
        pace.last_edit = Some(pace.last_edit.map_or(now, |last| last.max(now)));
    }

    /// Records a 429 for `chat`.
    pub fn note_retry_after(&self, chat: i64, wait: Duration) {
        let now = Instant::now();
        let until = now + wait;
        {
            let mut chats = self.chats.locked();
            let pace = chats.entry(chat).or_default();
            pace.paused_until = Some(pace.paused_until.map_or(until, |old| old.max(until)));
        }
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

    /// The edit interval.
    pub fn interval(&self) -> Duration {
        self.interval
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
    async fn budget_and_pauses() {
        let pacer = Pacer::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(pacer.edit_ready_at(1), start);
        assert_eq!(pacer.reserve_edit(1), start);
        assert_eq!(pacer.reserve_edit(1), start + Duration::from_secs(1), "next slot");
        assert_eq!(pacer.edit_ready_at(1), start + Duration::from_secs(2));
        assert_eq!(pacer.edit_ready_at(2), start, "other chats keep their budget");
        pacer.note_retry_after(1, Duration::from_secs(5));
        assert_eq!(pacer.send_ready_at(1), start + Duration::from_secs(5));
        assert_eq!(pacer.send_ready_at(2), start);
        pacer.note_retry_after(2, Duration::from_secs(3));
        assert_eq!(pacer.send_ready_at(3), start + Duration::from_secs(5), "global pause");
    }
}
