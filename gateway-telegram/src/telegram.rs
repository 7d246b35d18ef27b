//! The Bot API calls the gateway makes, with pacing and retries.
//!
//! Every message call waits for its slot first (the chat's bucket, the
//! bot's and a group's windows, and any 429 pause; see [`crate::pace`]).
//! [`Telegram::deliver_new`] and [`Telegram::deliver_edit`] carry text that
//! must arrive (final replies, notices, menus): they take final-class slots,
//! retry after 429s and network errors and fall back to plain text when
//! Telegram rejects the HTML. Progress calls are single preview-class
//! attempts: a skipped progress edit is simply folded into the next one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ductor_daemon::safe_fs;
use teloxide::Bot;
use teloxide::payloads::{
    EditMessageTextSetters, SendDocumentSetters, SendMessageSetters, SendPhotoSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{
    ChatAction, ChatId, InlineKeyboardMarkup, InputFile, LinkPreviewOptions, MessageId, ParseMode,
    ThreadId,
};

use crate::api::{Call, Failure, Pacer, Scrubber};
use crate::pace::Class;
use crate::render::html_to_plain;

/// Attempts of a must-deliver call before it is given up.
const DELIVER_ATTEMPTS: u32 = 8;

/// Where a message goes: a chat and, in forums, a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub chat: ChatId,
    pub thread: Option<ThreadId>,
}

/// Text in one of the two forms Telegram gets.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Html(&'a str),
    Plain(&'a str),
}

/// The bot, its token scrubber and the pacer.
#[derive(Clone)]
pub struct Telegram {
    pub bot: Bot,
    pub scrubber: Scrubber,
    pub pacer: Arc<Pacer>,
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

impl Telegram {
    /// Sends a new message.
    pub async fn send(
        &self,
        target: Target,
        body: Body<'_>,
        silent: bool,
        markup: Option<InlineKeyboardMarkup>,
    ) -> Result<MessageId, Failure> {
        let text = match body {
            Body::Html(text) | Body::Plain(text) => text,
        };
        let mut request = self
            .bot
            .send_message(target.chat, text)
            .disable_notification(silent)
            .link_preview_options(no_preview());
        if let Body::Html(_) = body {
            request = request.parse_mode(ParseMode::Html);
        }
        if let Some(thread) = target.thread {
            request = request.message_thread_id(thread);
        }
        if let Some(markup) = markup {
            request = request.reply_markup(markup);
        }
        request.await.map(|message| message.id).map_err(|error| self.scrubber.classify(error))
    }

    /// Replaces the text (and keyboard) of a message. Edits never notify.
    pub async fn edit(
        &self,
        target: Target,
        id: MessageId,
        body: Body<'_>,
        markup: Option<InlineKeyboardMarkup>,
    ) -> Result<(), Failure> {
        let text = match body {
            Body::Html(text) | Body::Plain(text) => text,
        };
        let mut request =
            self.bot.edit_message_text(target.chat, id, text).link_preview_options(no_preview());
        if let Body::Html(_) = body {
            request = request.parse_mode(ParseMode::Html);
        }
        if let Some(markup) = markup {
            request = request.reply_markup(markup);
        }
        match request.await {
            Ok(_) => Ok(()),
            Err(error) => match self.scrubber.classify(error) {
                Failure::NotModified => Ok(()),
                failure => Err(failure),
            },
        }
    }

    /// Deletes a message; a message already gone counts as deleted.
    pub async fn delete(&self, target: Target, id: MessageId) -> Result<(), Failure> {
        match self.bot.delete_message(target.chat, id).await {
            Ok(_) => Ok(()),
            Err(error) => match self.scrubber.classify(error) {
                Failure::MessageGone => Ok(()),
                failure => Err(failure),
            },
        }
    }

    /// Leaves the chat (`leaveChat`).
    pub async fn leave(&self, target: Target) -> Result<(), Failure> {
        self.bot
            .leave_chat(target.chat)
            .await
            .map(|_| ())
            .map_err(|error| self.scrubber.classify(error))
    }

    /// Shows "typing…" for about five seconds.
    pub async fn typing(&self, target: Target) -> Result<(), Failure> {
        let mut request = self.bot.send_chat_action(target.chat, ChatAction::Typing);
        if let Some(thread) = target.thread {
            request = teloxide::payloads::SendChatActionSetters::message_thread_id(request, thread);
        }
        request.await.map(|_| ()).map_err(|error| self.scrubber.classify(error))
    }

    /// Sends a file as a photo (images) or a document.
    pub async fn send_file(
        &self,
        target: Target,
        outgoing: &Outgoing<'_>,
        is_image: bool,
        silent: bool,
    ) -> Result<MessageId, Failure> {
        // Opened again for every attempt, and only if it is still the file
        // core approved: the path is in the agent-writable workspace.
        let (opened, _) = safe_fs::open_attachment(outgoing.path, outgoing.id, FILE_MAX_BYTES)
            .map_err(|error| Failure::Other(format!("not sent: {error}")))?;
        let file_name = outgoing.file_name;
        let mut file = InputFile::read(tokio::fs::File::from_std(opened));
        if !file_name.is_empty() {
            file = file.file_name(file_name.to_owned());
        }
        let result = if is_image {
            let mut request = self.bot.send_photo(target.chat, file).disable_notification(silent);
            if let Some(thread) = target.thread {
                request = request.message_thread_id(thread);
            }
            request.await
        } else {
            let mut request =
                self.bot.send_document(target.chat, file).disable_notification(silent);
            if let Some(thread) = target.thread {
                request = request.message_thread_id(thread);
            }
            request.await
        };
        result.map(|message| message.id).map_err(|error| self.scrubber.classify(error))
    }

    /// Waits until `target`'s chat may make a call of this kind and class:
    /// no pause holds and every limit admits it.
    async fn wait_turn(&self, target: Target, call: Call, class: Class) {
        let chat = target.chat.0;
        loop {
            // A 429 seen meanwhile still holds.
            sleep_if_future(self.pacer.send_ready_at(chat)).await;
            match self.pacer.admit(chat, class, call) {
                Ok(()) => return,
                Err(retry_at) => sleep_if_future(retry_at).await,
            }
        }
    }

    /// Runs `call` until it succeeds, honouring 429s and retrying network
    /// errors; other failures are returned at once.
    async fn retrying<T, F, Fut>(
        &self,
        target: Target,
        kind: Call,
        mut call: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut last = Failure::Other("no attempt made".to_owned());
        for attempt in 1..=DELIVER_ATTEMPTS {
            self.wait_turn(target, kind, Class::Final).await;
            match call().await {
                Ok(value) => return Ok(value),
                Err(Failure::RetryAfter(wait)) => {
                    tracing::warn!(
                        chat = target.chat.0,
                        wait_ms = wait.as_millis() as u64,
                        "Telegram asked to slow down"
                    );
                    self.pacer.note_retry_after(target.chat.0, wait);
                    last = Failure::RetryAfter(wait);
                }
                Err(Failure::Network(error)) => {
                    tracing::warn!(chat = target.chat.0, %error, attempt, "Bot API call failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                    last = Failure::Network(error);
                }
                Err(failure) => return Err(failure),
            }
        }
        Err(last)
    }

    /// Sends text that must arrive: retried, with a plain-text retry when
    /// Telegram rejects the HTML.
    pub async fn deliver_new(
        &self,
        target: Target,
        html: &str,
        silent: bool,
        markup: Option<InlineKeyboardMarkup>,
    ) -> Result<MessageId, Failure> {
        let sent = self
            .retrying(target, Call::Send, || {
                self.send(target, Body::Html(html), silent, markup.clone())
            })
            .await;
        match sent {
            Err(Failure::BadEntities(reason)) => {
                tracing::warn!(chat = target.chat.0, %reason, "Telegram rejected the HTML; sending plain text");
                let plain = html_to_plain(html);
                self.retrying(target, Call::Send, || {
                    self.send(target, Body::Plain(&plain), silent, markup.clone())
                })
                .await
            }
            other => other,
        }
    }

    /// Edits text that must arrive: retried, with a plain-text retry.
    pub async fn deliver_edit(
        &self,
        target: Target,
        id: MessageId,
        html: &str,
        markup: Option<InlineKeyboardMarkup>,
    ) -> Result<(), Failure> {
        let edited = self
            .retrying(target, Call::Edit, || {
                self.edit(target, id, Body::Html(html), markup.clone())
            })
            .await;
        match edited {
            Err(Failure::BadEntities(reason)) => {
                tracing::warn!(chat = target.chat.0, %reason, "Telegram rejected the HTML; editing as plain text");
                let plain = html_to_plain(html);
                self.retrying(target, Call::Edit, || {
                    self.edit(target, id, Body::Plain(&plain), markup.clone())
                })
                .await
            }
            other => other,
        }
    }

    /// One paced progress attempt (no retries): an edit, or a silent new message.
    pub async fn progress(
        &self,
        target: Target,
        id: Option<MessageId>,
        html: &str,
    ) -> Result<Option<MessageId>, Failure> {
        let call = if id.is_some() { Call::Edit } else { Call::Send };
        self.wait_turn(target, call, Class::Preview).await;
        let result = match id {
            Some(id) => match self.edit(target, id, Body::Html(html), None).await {
                Err(Failure::BadEntities(_)) => {
                    self.edit(target, id, Body::Plain(&html_to_plain(html)), None).await
                }
                other => other,
            }
            .map(|()| None),
            None => match self.send(target, Body::Html(html), true, None).await {
                Err(Failure::BadEntities(_)) => {
                    self.send(target, Body::Plain(&html_to_plain(html)), true, None).await
                }
                other => other,
            }
            .map(Some),
        };
        if let Err(Failure::RetryAfter(wait)) = &result {
            tracing::warn!(
                chat = target.chat.0,
                wait_ms = wait.as_millis() as u64,
                "Telegram asked to slow down"
            );
            self.pacer.note_retry_after(target.chat.0, *wait);
        }
        result
    }

    /// Sends an attachment, retried after 429s and network errors.
    pub async fn deliver_file(
        &self,
        target: Target,
        outgoing: &Outgoing<'_>,
        is_image: bool,
    ) -> Result<MessageId, Failure> {
        let sent = self
            .retrying(target, Call::Send, || self.send_file(target, outgoing, is_image, true))
            .await;
        match sent {
            // Telegram refuses some images as photos (size, ratio): try as a document.
            Err(Failure::Other(text)) if is_image && !text.starts_with("not sent:") => {
                self.retrying(target, Call::Send, || self.send_file(target, outgoing, false, true))
                    .await
            }
            other => other,
        }
    }
}

/// Largest file sent (the Bot API's upload limit).
pub const FILE_MAX_BYTES: u64 = 50 * 1024 * 1024;

/// A file to send: where core said it is and which file core approved.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub path: &'a Path,
    pub file_name: &'a str,
    pub id: Option<safe_fs::FileId>,
}

impl<'a> Outgoing<'a> {
    /// From core's attachment.
    pub fn of(file: &'a ductor_proto::pb::Attachment) -> Self {
        Self {
            path: Path::new(&file.path),
            file_name: &file.file_name,
            id: safe_fs::attachment_id(file.dev, file.ino, file.changed_ns),
        }
    }
}

/// Sleeps until `deadline` only when it is ahead: tokio rounds timers up to
/// the next millisecond tick, so even a past deadline would cost up to 1 ms
/// on the path of every final reply.
async fn sleep_if_future(deadline: tokio::time::Instant) {
    if deadline > tokio::time::Instant::now() {
        tokio::time::sleep_until(deadline).await;
    }
}
