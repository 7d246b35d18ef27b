//! Telegram updates in: long polling, the access gate, and conversion of
//! messages, media and button presses into core's inbound events.
//!
//! Nothing reaches core before [`Gate::check`] says so. Media are downloaded
//! (never more than `max_download_bytes`) to
//! `workspace/telegram_files/YYYY-MM-DD/` and handed over as paths.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ductor_daemon::safe_fs::Tree;
use ductor_gateway_link::{InboundSender, Receipt};
use ductor_proto::pb;
use ductor_proto::transport::Backoff;
use futures::StreamExt;
use teloxide::net::Download;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::prelude::Requester;
use teloxide::types::{
    AllowedUpdate, CallbackQuery, Chat, FileId, Me, Message, Update, UpdateKind, User,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::api::Failure;
use crate::gate::{ChatKind, Gate, Verdict};
use crate::telegram::{Target, Telegram};

/// Sent to an unlisted group before the bot leaves it.
const LEAVE_NOTICE: &str = "This bot is private and not enabled for this chat. Leaving.";

/// Settings of the inbound side.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub gate: Gate,
    pub workspace: PathBuf,
    /// Largest download; shared, so a reload of `config.toml` applies at once.
    pub max_download_bytes: Arc<AtomicU64>,
    /// Long-poll wait of one getUpdates call.
    pub poll_timeout: Duration,
}

/// Converts updates into inbound events for core.
pub struct Inbound {
    telegram: Telegram,
    config: InboundConfig,
    me: Me,
    events: InboundSender,
    /// Events of the current batch of updates core has yet to accept.
    receipts: Vec<Receipt>,
    left: HashSet<i64>,
}

/// A file attached to a message, before download.
struct Media {
    kind: &'static str,
    file_id: FileId,
    size: u64,
    mime: String,
    file_name: Option<String>,
}

impl Inbound {
    /// `me` is the bot itself (from getMe), used to spot mentions and replies.
    pub fn new(telegram: Telegram, config: InboundConfig, me: Me, events: InboundSender) -> Self {
        Self { telegram, config, me, events, receipts: Vec::new(), left: HashSet::new() }
    }

    /// Long-polls until shutdown. `reachable` follows getUpdates' success.
    pub async fn poll(mut self, reachable: Arc<AtomicBool>, shutdown: CancellationToken) {
        let mut offset: i32 = 0;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let timeout = u32::try_from(self.config.poll_timeout.as_secs()).unwrap_or(10);
        let allowed = vec![
            AllowedUpdate::Message,
            AllowedUpdate::CallbackQuery,
            AllowedUpdate::ChannelPost,
            AllowedUpdate::MyChatMember,
        ];
        loop {
            let request = self
                .telegram
                .bot
                .get_updates()
                .offset(offset)
                .timeout(timeout)
                .allowed_updates(allowed.clone());
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = request.into_future() => result,
            };
            match result {
                Ok(updates) => {
                    reachable.store(true, Ordering::Relaxed);
                    backoff.reset();
                    for update in updates {
                        offset = offset
                            .max(i32::try_from(update.id.0).unwrap_or(i32::MAX).saturating_add(1));
                        self.handle(update).await;
                    }
                    // The next getUpdates confirms this batch to Telegram, so
                    // it waits until core has every event of it: a gateway that
                    // dies now gets the updates again instead of losing them.
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.confirmed() => {}
                    }
                }
                Err(error) => {
                    let failure = self.telegram.scrubber.classify(error);
                    let delay = match failure {
                        Failure::RetryAfter(wait) => wait,
                        _ => backoff.next_delay(),
                    };
                    reachable.store(false, Ordering::Relaxed);
                    tracing::warn!(%failure, retry_in_ms = delay.as_millis() as u64, "getUpdates failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Handles one update.
    pub async fn handle(&mut self, update: Update) {
        let event_id = format!("tg:update:{}", update.id.0);
        match update.kind {
            UpdateKind::Message(message) => self.message(event_id, message).await,
            UpdateKind::CallbackQuery(query) => self.callback(event_id, query).await,
            UpdateKind::ChannelPost(post)
                if self.config.gate.check(ChatKind::Channel, post.chat.id.0, None, false)
                    == Verdict::LeaveChat =>
            {
                self.leave(&post.chat).await;
            }
            // Added to a group: leave at once when it is not listed (with
            // privacy mode on, the bot might never see a message there).
            UpdateKind::MyChatMember(change)
                if change.new_chat_member.kind.is_present()
                    && self.config.gate.check(
                        chat_kind(&change.chat),
                        change.chat.id.0,
                        None,
                        true,
                    ) == Verdict::LeaveChat =>
            {
                self.leave(&change.chat).await;
            }
            _ => {}
        }
    }

    fn is_addressed(&self, message: &Message) -> bool {
        let mention = format!("@{}", self.me.username());
        let text = message.text().or(message.caption()).unwrap_or("");
        // `/cmd` is for every bot in the group, `/cmd@other_bot` is not for us.
        let command_for_us = text.starts_with('/')
            && text
                .split_whitespace()
                .next()
                .and_then(|command| command.split_once('@'))
                .is_none_or(|(_, bot)| bot.eq_ignore_ascii_case(self.me.username()));
        find_ascii_ci(text, &mention).is_some()
            || command_for_us
            || message
                .reply_to_message()
                .and_then(|reply| reply.from.as_ref())
                .is_some_and(|from| from.id == self.me.id)
    }

    async fn message(&mut self, event_id: String, message: Message) {
        let sender = message.from.as_ref().map(|user| user.id.0 as i64);
        let verdict = self.config.gate.check(
            chat_kind(&message.chat),
            message.chat.id.0,
            sender,
            self.is_addressed(&message),
        );
        match verdict {
            Verdict::Allow => {}
            Verdict::Drop => {
                tracing::info!(
                    chat = message.chat.id.0,
                    sender,
                    "ignoring a message the access gate refused"
                );
                return;
            }
            Verdict::LeaveChat => return self.leave(&message.chat).await,
        }
        let chat = chat_ref(&message);
        let (sender_id, sender_name) = sender_of(message.from.as_ref());
        let reply_quote = reply_quote(&message);
        let kind = if let Some(media) = media_of(&message) {
            match self.download(&message, media).await {
                Ok(mut media) => {
                    media.caption = self.strip_mention(message.caption().unwrap_or(""));
                    media.reply_quote = reply_quote;
                    pb::inbound_event::Kind::Media(media)
                }
                Err(reason) => {
                    tracing::warn!(chat = message.chat.id.0, %reason, "could not take an incoming file");
                    let target = Target { chat: message.chat.id, thread: topic_of(&message) };
                    let notice =
                        crate::render::escape(&format!("Could not take that file: {reason}"));
                    let _ = self.telegram.deliver_new(target, &notice, true, None).await;
                    return;
                }
            }
        } else if let Some(text) = message.text() {
            pb::inbound_event::Kind::Message(pb::UserMessage {
                text: self.strip_mention(text),
                reply_quote,
            })
        } else {
            return;
        };
        self.emit(pb::InboundEvent {
            event_id,
            chat: Some(chat),
            sender_id,
            sender_name,
            kind: Some(kind),
        })
        .await;
    }

    async fn callback(&mut self, event_id: String, query: CallbackQuery) {
        let answer = self.telegram.bot.answer_callback_query(query.id.clone());
        let Some(message) = query.message.as_ref() else {
            let _ = answer.await;
            return;
        };
        let chat = message.chat();
        let verdict =
            self.config.gate.check(chat_kind(chat), chat.id.0, Some(query.from.id.0 as i64), true);
        if let Err(error) = answer.await {
            tracing::warn!(failure = %self.telegram.scrubber.classify(error), "answerCallbackQuery failed");
        }
        if verdict != Verdict::Allow {
            tracing::info!(
                chat = chat.id.0,
                sender = query.from.id.0,
                "ignoring a button press the access gate refused"
            );
            return;
        }
        let topic = message.regular_message().and_then(topic_of);
        let chat_ref = pb::ChatRef {
            chat_id: chat.id.0.to_string(),
            topic_id: topic.map(|thread| thread.0.0.to_string()).unwrap_or_default(),
        };
        let (sender_id, sender_name) = sender_of(Some(&query.from));
        let data = query.data.unwrap_or_default();
        let kind = pb::inbound_event::Kind::Button(pb::ButtonPress {
            button_id: crate::buttons::button_id(&data),
            message_ref: message.id().0.to_string(),
        });
        self.emit(pb::InboundEvent {
            event_id,
            chat: Some(chat_ref),
            sender_id,
            sender_name,
            kind: Some(kind),
        })
        .await;
    }

    /// Hands `event` to the link (waiting while core's backlog is full).
    async fn emit(&mut self, event: pb::InboundEvent) {
        tracing::debug!(event_id = event.event_id, "forwarding an update to core");
        match self.events.send(event).await {
            Ok(receipt) => self.receipts.push(receipt),
            // Only at shutdown; the update is not confirmed to Telegram.
            Err(closed) => tracing::warn!("an update was not forwarded: {closed}"),
        }
    }

    /// Waits until core has accepted every event emitted so far.
    async fn confirmed(&mut self) {
        for receipt in self.receipts.drain(..) {
            let _ = receipt.accepted().await;
        }
    }

    fn strip_mention(&self, text: &str) -> String {
        let mention = format!("@{}", self.me.username());
        let mut out = text.to_owned();
        while let Some(at) = find_ascii_ci(&out, &mention) {
            out.replace_range(at..at + mention.len(), "");
        }
        out.trim().to_owned()
    }

    async fn leave(&mut self, chat: &Chat) {
        if !self.left.insert(chat.id.0) {
            return;
        }
        tracing::warn!(chat = chat.id.0, "leaving a chat that is not in allowed_group_ids");
        let target = Target { chat: chat.id, thread: None };
        if !chat.is_channel() {
            let _ = self
                .telegram
                .send(target, crate::telegram::Body::Plain(LEAVE_NOTICE), true, None)
                .await;
        }
        if let Err(error) = self.telegram.bot.leave_chat(chat.id).await {
            tracing::warn!(failure = %self.telegram.scrubber.classify(error), "could not leave the chat");
        }
    }

    /// Downloads a message's file under the size limit.
    async fn download(&self, message: &Message, media: Media) -> Result<pb::MediaRef, String> {
        let limit = self.config.max_download_bytes.load(Ordering::Relaxed);
        if media.size > limit {
            return Err(format!("it is {} bytes, more than the limit of {limit}", media.size));
        }
        let file = self
            .telegram
            .bot
            .get_file(media.file_id.clone())
            .await
            .map_err(|error| self.telegram.scrubber.classify(error).to_string())?;
        let day = jiff::Zoned::now().strftime("%Y-%m-%d").to_string();
        let name = media
            .file_name
            .clone()
            .unwrap_or_else(|| default_name(media.kind, &file.path, &media.mime));
        let name = format!("{}_{}", message.id.0, sanitize(&name));
        // The workspace is agent-writable: the dated folder and the file are
        // made by descriptor, never through a link the agent planted, and
        // the file must be new (O_EXCL), so nothing is overwritten.
        let (dir, out) = Tree::root_or_make(&self.config.workspace, 0o700)
            .and_then(|root| root.dir_or_make(&format!("telegram_files/{day}"), 0o700))
            .and_then(|dir| dir.create_new(&name, 0o600).map(|file| (dir, file)))
            .map_err(|error| error.to_string())?;
        let path = dir.path().join(&name);
        let written = self.fetch_to(&file.path, tokio::fs::File::from_std(out), &path, limit).await;
        match written {
            Ok(size) => Ok(pb::MediaRef {
                path: path.to_string_lossy().into_owned(),
                mime_type: media.mime,
                caption: String::new(),
                original_filename: media.file_name.unwrap_or_default(),
                media_kind: media.kind.to_owned(),
                size_bytes: size,
                reply_quote: String::new(),
            }),
            Err(error) => {
                let _ = dir.remove(&name, false);
                Err(error)
            }
        }
    }

    async fn fetch_to(
        &self,
        remote: &str,
        mut out: tokio::fs::File,
        path: &Path,
        limit: u64,
    ) -> Result<u64, String> {
        let mut stream = self.telegram.bot.download_file_stream(remote);
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                let mut text = error.to_string();
                if let Some(url) = error.url() {
                    text = text.replace(url.as_str(), "<file url>");
                }
                format!("download: {}", self.telegram.scrubber.scrub(&text))
            })?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(format!("it is more than the limit of {limit} bytes"));
            }
            out.write_all(&chunk)
                .await
                .map_err(|error| format!("write {}: {error}", path.display()))?;
        }
        out.flush().await.map_err(|error| format!("write {}: {error}", path.display()))?;
        Ok(size)
    }
}

/// Byte offset of `needle` (ASCII, like bot usernames) in `haystack`,
/// ignoring ASCII case; never splits a multi-byte character.
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.char_indices().map(|(index, _)| index).find(|&index| {
        haystack
            .as_bytes()
            .get(index..index + needle.len())
            .is_some_and(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
    })
}

fn chat_kind(chat: &Chat) -> ChatKind {
    if chat.is_private() {
        ChatKind::Private
    } else if chat.is_group() || chat.is_supergroup() {
        ChatKind::Group
    } else {
        ChatKind::Channel
    }
}

/// The forum topic of a message; plain reply threads are not topics.
fn topic_of(message: &Message) -> Option<teloxide::types::ThreadId> {
    message.thread_id.filter(|_| message.is_topic_message)
}

fn chat_ref(message: &Message) -> pb::ChatRef {
    pb::ChatRef {
        chat_id: message.chat.id.0.to_string(),
        topic_id: topic_of(message).map(|thread| thread.0.0.to_string()).unwrap_or_default(),
    }
}

fn sender_of(user: Option<&User>) -> (String, String) {
    match user {
        Some(user) => (user.id.0.to_string(), user.full_name()),
        None => (String::new(), String::new()),
    }
}

/// The quoted part of the replied-to message, or its whole text or caption.
fn reply_quote(message: &Message) -> String {
    if let Some(quote) = message.quote() {
        return quote.text.clone();
    }
    message
        .reply_to_message()
        // In forums every message "replies" to the topic's first message.
        .filter(|reply| {
            !(message.is_topic_message
                && topic_of(message).is_some_and(|thread| thread.0 == reply.id))
        })
        .and_then(|reply| reply.text().or(reply.caption()))
        .unwrap_or_default()
        .to_owned()
}

fn media_of(message: &Message) -> Option<Media> {
    let media = |kind,
                 meta: &teloxide::types::FileMeta,
                 mime: Option<String>,
                 default: &str,
                 file_name: Option<String>| Media {
        kind,
        file_id: meta.id.clone(),
        size: u64::from(meta.size),
        mime: mime.unwrap_or_else(|| default.to_owned()),
        file_name,
    };
    if let Some(photo) =
        message.photo().and_then(|sizes| sizes.iter().max_by_key(|size| size.width * size.height))
    {
        return Some(media("photo", &photo.file, None, "image/jpeg", None));
    }
    if let Some(doc) = message.document() {
        return Some(media(
            "document",
            &doc.file,
            doc.mime_type.as_ref().map(ToString::to_string),
            "application/octet-stream",
            doc.file_name.clone(),
        ));
    }
    if let Some(voice) = message.voice() {
        return Some(media(
            "voice",
            &voice.file,
            voice.mime_type.as_ref().map(ToString::to_string),
            "audio/ogg",
            None,
        ));
    }
    if let Some(audio) = message.audio() {
        return Some(media(
            "audio",
            &audio.file,
            audio.mime_type.as_ref().map(ToString::to_string),
            "audio/mpeg",
            audio.file_name.clone(),
        ));
    }
    if let Some(video) = message.video() {
        return Some(media(
            "video",
            &video.file,
            video.mime_type.as_ref().map(ToString::to_string),
            "video/mp4",
            video.file_name.clone(),
        ));
    }
    if let Some(note) = message.video_note() {
        return Some(media("video_note", &note.file, None, "video/mp4", None));
    }
    if let Some(sticker) = message.sticker() {
        return Some(media("sticker", &sticker.file, None, "image/webp", None));
    }
    None
}

/// A file name for media that come without one.
fn default_name(kind: &str, remote_path: &str, mime: &str) -> String {
    let extension = Path::new(remote_path)
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_owned)
        .unwrap_or_else(|| mime.rsplit('/').next().unwrap_or("bin").to_owned());
    format!("{kind}.{extension}")
}

/// Keeps a received file name inside its directory and printable.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .take(120)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() { "file".to_owned() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_ignoring_case_without_splitting_characters() {
        assert_eq!(find_ascii_ci("İİ hey @Ductor_Bot x", "@ductor_bot"), Some(9));
        assert_eq!(find_ascii_ci("😀@ductor_bo", "@ductor_bot"), None);
        assert_eq!(find_ascii_ci("", "@a"), None);
    }

    #[test]
    fn file_names_stay_in_their_directory() {
        assert_eq!(sanitize("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitize("report 1.pdf"), "report_1.pdf");
        assert_eq!(sanitize(".."), "file");
        assert_eq!(default_name("voice", "voice/file_3.oga", "audio/ogg"), "voice.oga");
        assert_eq!(default_name("photo", "photos/x", "image/jpeg"), "photo.jpeg");
    }
}
