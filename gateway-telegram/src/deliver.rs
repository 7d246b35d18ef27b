//! Outbound actions from core turned into Bot API calls, one lane per chat
//! (and forum topic).
//!
//! A lane is a task that owns everything shown in its chat: the preview
//! message(s) of the running turn, selector menus by id, queue notices by
//! entry. Actions of one chat are handled in order; chats never wait for
//! each other. Streaming text only marks the preview dirty; the lane flushes
//! it when the chat's edit budget allows, so a burst of deltas costs one
//! edit. No preview exists before there is something to show: "typing…"
//! covers "working", and the first message is real text or a tool line.
//! The final reply goes out the moment it arrives (pacing keeps a slot for
//! it) and notifies: as new message(s), the silent preview then deleted
//! (`[telegram].notify_final`), or else edited over the preview. It is
//! retried until delivered, falling back to new messages when editing fails.
//! Each action is acknowledged to core once it is delivered or failed for good.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ductor_gateway_link::AckSender;
use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;
use teloxide::types::{ChatId, InlineKeyboardMarkup, MessageId, ThreadId};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use crate::api::Failure;
use crate::buttons::core_keyboard;
use crate::pace::Class;
use crate::progress::{StatusLine, preview_html};
use crate::render::{escape, markdown_to_html};
use crate::split::{TELEGRAM_LIMIT, split_html};
use crate::telegram::{Target, Telegram};

/// How often "typing…" is renewed while a turn runs (Telegram shows it ~5 s).
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// "typing…" stops when a turn has been silent this long (core may be gone).
const TYPING_SILENCE: Duration = Duration::from_secs(300);
/// Progress failures (other than 429) after which a turn stops editing.
const MAX_PROGRESS_FAILURES: u32 = 3;

/// Parses core's chat reference into a Telegram target.
pub fn target_of(chat: Option<&pb::ChatRef>) -> Result<Target, String> {
    let chat = chat.ok_or("the action names no chat")?;
    let id: i64 = chat
        .chat_id
        .parse()
        .map_err(|_| format!("chat id {:?} is not a Telegram chat id", chat.chat_id))?;
    let thread = if chat.topic_id.is_empty() {
        None
    } else {
        let topic: i32 = chat
            .topic_id
            .parse()
            .map_err(|_| format!("topic id {:?} is not a Telegram topic id", chat.topic_id))?;
        Some(ThreadId(MessageId(topic)))
    };
    Ok(Target { chat: ChatId(id), thread })
}

/// How finals are delivered (`[telegram]`); clones share the settings, so a
/// reload of `config.toml` reaches every lane.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// A final answer that notifies is sent new, not edited over its preview.
    pub notify_final: Arc<AtomicBool>,
}

impl DeliveryOptions {
    /// Options with these settings.
    pub fn new(notify_final: bool) -> Self {
        Self { notify_final: Arc::new(AtomicBool::new(notify_final)) }
    }
}

/// Routes actions to their chat's lane, creating lanes on first use.
///
/// Lanes queue without a bound on purpose: a chat paused by a 429 must not
/// hold up every other chat. What bounds them is the link's bounded channel
/// upstream and core's turns (deltas coalesce into one preview edit).
pub async fn dispatch(
    telegram: Telegram,
    mut actions: mpsc::Receiver<pb::OutboundAction>,
    acks: AckSender,
    options: DeliveryOptions,
) {
    let mut lanes: HashMap<Target, mpsc::UnboundedSender<pb::OutboundAction>> = HashMap::new();
    while let Some(action) = actions.recv().await {
        let target = match target_of(action.chat.as_ref()) {
            Ok(target) => target,
            Err(error) => {
                tracing::warn!(action_id = action.action_id, %error, "dropping an action for no valid chat");
                acks.failed(action.action_id, error);
                continue;
            }
        };
        let lane = lanes.entry(target).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let lane = Lane::new(telegram.clone(), target, acks.clone(), options.clone());
            tokio::spawn(lane.run(receiver));
            sender
        });
        if lane.send(action).is_err() {
            tracing::error!(chat = target.chat.0, "a chat lane ended unexpectedly");
        }
    }
}

/// A message shown for the running turn, with the HTML it shows.
#[derive(Debug, Clone)]
struct Shown {
    id: MessageId,
    html: String,
}

/// The running turn of a lane.
struct Turn {
    id: String,
    text: String,
    status: StatusLine,
    shown: Vec<Shown>,
    dirty: bool,
    failures: u32,
    next_typing: Instant,
    /// When core last sent anything for this turn.
    last_action: Instant,
}

impl Turn {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            text: String::new(),
            status: StatusLine::default(),
            shown: Vec::new(),
            dirty: false,
            failures: 0,
            next_typing: Instant::now(),
            last_action: Instant::now(),
        }
    }

    fn progress_stopped(&self) -> bool {
        self.failures >= MAX_PROGRESS_FAILURES
    }

    /// The preview has something to show (or has been shown): not before
    /// text or a tool line exists; a status alone ("requesting") is what
    /// "typing…" already says.
    fn showable(&self) -> bool {
        !self.shown.is_empty() || !self.text.trim().is_empty() || self.status.has_tools()
    }

    /// A flush is due once the budget allows.
    fn wants_flush(&self) -> bool {
        self.dirty && !self.progress_stopped() && self.showable()
    }

    /// When "typing…" is due next, unless the turn went silent.
    fn typing_due(&self) -> Option<Instant> {
        (self.last_action.elapsed() < TYPING_SILENCE).then_some(self.next_typing)
    }
}

/// What a final delivery consists of.
struct Final {
    chunks: Vec<String>,
    markup: Option<InlineKeyboardMarkup>,
    files: Vec<pb::Attachment>,
    notify: bool,
}

struct Lane {
    telegram: Telegram,
    target: Target,
    acks: AckSender,
    options: DeliveryOptions,
    turn: Option<Turn>,
    selectors: HashMap<String, MessageId>,
    queue_notices: HashMap<String, MessageId>,
}

impl Lane {
    fn new(telegram: Telegram, target: Target, acks: AckSender, options: DeliveryOptions) -> Self {
        Self {
            telegram,
            target,
            acks,
            options,
            turn: None,
            selectors: HashMap::new(),
            queue_notices: HashMap::new(),
        }
    }

    async fn run(mut self, mut actions: mpsc::UnboundedReceiver<pb::OutboundAction>) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                // Actions first: a final already waiting makes a preview moot.
                biased;
                action = actions.recv() => match action {
                    Some(action) => self.handle(action).await,
                    None => break,
                },
                () = sleep_until_opt(wake) => self.tick().await,
            }
        }
    }

    /// When the lane has something to do without a new action.
    fn next_wake(&self) -> Option<Instant> {
        let turn = self.turn.as_ref()?;
        let edit = turn
            .wants_flush()
            .then(|| self.telegram.pacer.ready_at(self.target.chat.0, Class::Preview));
        match (turn.typing_due(), edit) {
            (Some(typing), Some(edit)) => Some(typing.min(edit)),
            (typing, edit) => typing.or(edit),
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let Some(turn) = self.turn.as_mut() else { return };
        if turn.typing_due().is_some_and(|due| now >= due) {
            turn.next_typing = now + TYPING_EVERY;
            if let Err(Failure::RetryAfter(wait)) = self.telegram.typing(self.target).await {
                self.telegram.pacer.note_retry_after(self.target.chat.0, wait);
            }
        }
        // `ready` first: the pacer's answer is never earlier than its own "now".
        let ready = self.telegram.pacer.ready_at(self.target.chat.0, Class::Preview);
        if self.turn.as_ref().is_some_and(Turn::wants_flush) && Instant::now() >= ready {
            self.flush_progress().await;
        }
    }

    /// One paced step of the preview: the first chunk that differs is edited
    /// (or sent, when it is new).
    async fn flush_progress(&mut self) {
        let Some(turn) = self.turn.as_mut() else { return };
        let html = preview_html(&turn.text, &turn.status);
        let chunks = split_html(&html, TELEGRAM_LIMIT);
        let Some(index) = (0..chunks.len())
            .find(|&i| turn.shown.get(i).is_none_or(|shown| shown.html != chunks[i]))
        else {
            turn.dirty = false;
            return;
        };
        let existing = turn.shown.get(index).map(|shown| shown.id);
        tracing::debug!(chat = self.target.chat.0, edit = existing.is_some(), "preview");
        match self.telegram.progress(self.target, existing, &chunks[index]).await {
            Ok(sent) => {
                let shown = Shown {
                    id: sent.or(existing).expect("an edit has an id, a send returns one"),
                    html: chunks[index].clone(),
                };
                if index < turn.shown.len() {
                    turn.shown[index] = shown;
                } else {
                    turn.shown.push(shown);
                }
                turn.dirty = chunks.len() != turn.shown.len()
                    || chunks.iter().zip(&turn.shown).any(|(chunk, shown)| *chunk != shown.html);
            }
            Err(Failure::RetryAfter(_)) => {}
            Err(failure) => {
                turn.failures += 1;
                tracing::warn!(chat = self.target.chat.0, %failure, "progress update failed");
                if turn.progress_stopped() {
                    tracing::warn!(
                        chat = self.target.chat.0,
                        "progress edits stopped for this turn; the final reply will still be sent"
                    );
                }
            }
        }
    }

    fn turn_for(&mut self, turn_id: &str) -> &mut Turn {
        if self.turn.as_ref().is_none_or(|turn| turn.id != turn_id) {
            self.turn = Some(Turn::new(turn_id));
        }
        let turn = self.turn.as_mut().expect("just set");
        turn.last_action = Instant::now();
        turn
    }

    async fn handle(&mut self, action: pb::OutboundAction) {
        let action_id = action.action_id;
        let result = match action.kind {
            Some(kind) => self.apply(&action.turn_id, kind).await,
            None => Err("the action has no kind".to_owned()),
        };
        if let Err(error) = &result {
            tracing::warn!(chat = self.target.chat.0, action_id, %error, "could not deliver an action");
        }
        self.acks.send(pb::OutboundAck { action_id, error: result.err().unwrap_or_default() });
    }

    async fn apply(&mut self, turn_id: &str, kind: Kind) -> Result<(), String> {
        match kind {
            Kind::TurnStarted(_) => {
                self.turn_for(turn_id).next_typing = Instant::now();
                Ok(())
            }
            Kind::TextDelta(delta) => {
                let turn = self.turn_for(turn_id);
                turn.text.push_str(&delta.text);
                turn.status.clear_status();
                turn.dirty = true;
                Ok(())
            }
            Kind::Tool(tool) => {
                let turn = self.turn_for(turn_id);
                turn.status.tool(&tool.name, &tool.summary, tool.finished, tool.ok);
                turn.dirty = true;
                Ok(())
            }
            Kind::Status(status) => {
                let turn = self.turn_for(turn_id);
                turn.status.status(&status.status, &status.detail);
                turn.dirty = true;
                Ok(())
            }
            Kind::FinalReply(reply) => {
                let reply_final = final_of(reply);
                self.deliver_final(turn_id, reply_final).await
            }
            Kind::Error(error) => {
                let reply = self.error_final(turn_id, &error.message);
                self.deliver_final(turn_id, reply).await
            }
            Kind::Notice(notice) => {
                let html = markdown_to_html(&notice.text);
                self.send_chunks(&html, !notice.notify, None).await.map(|_| ())
            }
            Kind::Selector(menu) => self.selector(menu).await,
            Kind::QueueNotice(notice) => {
                let html = markdown_to_html(&notice.text);
                let id = self.send_chunks(&html, true, core_keyboard(&notice.buttons)).await?;
                self.queue_notices.insert(notice.entry_id, id);
                Ok(())
            }
            Kind::QueueClear(clear) => {
                if let Some(id) = self.queue_notices.remove(&clear.entry_id) {
                    self.telegram
                        .delete(self.target, id)
                        .await
                        .map_err(|failure| failure.to_string())?;
                }
                Ok(())
            }
            Kind::LeaveChat(_) => {
                self.telegram.leave(self.target).await.map_err(|failure| failure.to_string())
            }
        }
    }

    /// An error ends the turn: the text streamed so far stays, the error
    /// follows it, and the user is notified.
    fn error_final(&self, turn_id: &str, message: &str) -> Final {
        let streamed = self
            .turn
            .as_ref()
            .filter(|turn| turn.id == turn_id)
            .map(|turn| turn.text.clone())
            .unwrap_or_default();
        let mut html = markdown_to_html(&streamed);
        if !html.is_empty() {
            html.push_str("\n\n");
        }
        html.push_str(&format!("⚠️ {}", escape(message)));
        let chunks = split_html(&html, TELEGRAM_LIMIT);
        Final { chunks, markup: None, files: Vec::new(), notify: true }
    }

    /// Sends `html` as new messages (split as needed); returns the last id.
    async fn send_chunks(
        &self,
        html: &str,
        silent: bool,
        markup: Option<InlineKeyboardMarkup>,
    ) -> Result<MessageId, String> {
        let chunks = split_html(html, TELEGRAM_LIMIT);
        let count = chunks.len();
        let mut last = None;
        for (index, chunk) in chunks.iter().enumerate() {
            let markup = if index + 1 == count { markup.clone() } else { None };
            let id = self
                .telegram
                .deliver_new(self.target, chunk, silent || index > 0, markup)
                .await
                .map_err(|failure| failure.to_string())?;
            last = Some(id);
        }
        last.ok_or_else(|| "nothing to send".to_owned())
    }

    async fn selector(&mut self, menu: pb::SelectorMenu) -> Result<(), String> {
        let html = markdown_to_html(&menu.text);
        let markup = core_keyboard(&menu.buttons);
        if let Some(&id) = self.selectors.get(&menu.selector_id) {
            let html = split_html(&html, TELEGRAM_LIMIT).into_iter().next().unwrap_or_default();
            match self.telegram.deliver_edit(self.target, id, &html, markup.clone()).await {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    tracing::info!(%failure, "could not edit the earlier menu; sending a new one")
                }
            }
        }
        let id = self.send_chunks(&html, true, markup).await?;
        self.selectors.insert(menu.selector_id, id);
        Ok(())
    }

    /// Delivers a final reply, retried through 429s: as new message(s) that
    /// notify with the preview deleted after (`notify_final`, for a reply
    /// that notifies), else edited over the preview where it can and sent
    /// new where it must.
    async fn deliver_final(&mut self, turn_id: &str, reply: Final) -> Result<(), String> {
        let shown = match self.turn.take() {
            Some(turn) if turn.id == turn_id => turn.shown,
            other => {
                self.turn = other;
                Vec::new()
            }
        };
        let mut errors = Vec::new();
        if reply.notify && self.options.notify_final.load(Ordering::Relaxed) && !shown.is_empty() {
            self.send_over(&shown, &reply, &mut errors).await;
        } else {
            self.edit_over(&shown, &reply, &mut errors).await;
        }
        for file in &reply.files {
            let outgoing = crate::telegram::Outgoing::of(file);
            if let Err(failure) =
                self.telegram.deliver_file(self.target, &outgoing, file.is_image).await
            {
                errors.push(format!("file {}: {failure}", file.path));
            }
        }
        tracing::debug!(chat = self.target.chat.0, "delivered a final reply");
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }

    /// The final as new messages (the first one notifies), then the silent
    /// preview deleted, once the whole final is out.
    async fn send_over(&self, shown: &[Shown], reply: &Final, errors: &mut Vec<String>) {
        let count = reply.chunks.len();
        for (index, chunk) in reply.chunks.iter().enumerate() {
            let markup = if index + 1 == count { reply.markup.clone() } else { None };
            if let Err(failure) =
                self.telegram.deliver_new(self.target, chunk, index > 0, markup).await
            {
                errors.push(format!("part {}: {failure}", index + 1));
            }
        }
        if errors.is_empty() {
            self.delete_all(shown).await;
        }
    }

    /// The final edited over the preview chunk by chunk, new messages where
    /// there is no preview left or an edit fails; stale preview chunks deleted.
    async fn edit_over(&self, shown: &[Shown], reply: &Final, errors: &mut Vec<String>) {
        let count = reply.chunks.len();
        let mut editing = true;
        let mut notified = false;
        for (index, chunk) in reply.chunks.iter().enumerate() {
            let markup = if index + 1 == count { reply.markup.clone() } else { None };
            if editing && let Some(previous) = shown.get(index) {
                if previous.html == *chunk && markup.is_none() {
                    continue;
                }
                let edited =
                    self.telegram.deliver_edit(self.target, previous.id, chunk, markup.clone());
                match edited.await {
                    Ok(()) => continue,
                    Err(failure) => {
                        tracing::warn!(chat = self.target.chat.0, %failure, "could not edit the preview; sending the rest as new messages");
                        editing = false;
                    }
                }
            }
            let silent = !reply.notify || notified;
            notified = true;
            if let Err(failure) =
                self.telegram.deliver_new(self.target, chunk, silent, markup).await
            {
                errors.push(format!("part {}: {failure}", index + 1));
            }
        }
        if editing {
            self.delete_all(shown.get(count..).unwrap_or_default()).await;
        }
    }

    /// Deletes preview messages (best effort).
    async fn delete_all(&self, messages: &[Shown]) {
        for message in messages {
            if let Err(failure) = self.telegram.delete(self.target, message.id).await {
                tracing::warn!(%failure, "could not delete a stale preview message");
            }
        }
    }
}

/// Renders a final reply: core's buttons as a keyboard (core has taken the
/// agent's markers out of the text already), Markdown to HTML, the footer in
/// italics, cut under the limit.
fn final_of(reply: pb::FinalReply) -> Final {
    let markup = core_keyboard(&reply.buttons);
    let mut html = markdown_to_html(&reply.text);
    if !reply.footer.trim().is_empty() {
        if !html.is_empty() {
            html.push_str("\n\n");
        }
        html.push_str(&format!("<i>{}</i>", escape(reply.footer.trim())));
    }
    let mut chunks = split_html(&html, TELEGRAM_LIMIT);
    if chunks.is_empty() && (reply.files.is_empty() || markup.is_some()) {
        chunks.push("✅".to_owned());
    }
    Final { chunks, markup, files: reply.files, notify: reply.notify }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_chat_and_topic() {
        let target =
            target_of(Some(&pb::ChatRef { chat_id: "-1001".into(), topic_id: "7".into() }))
                .unwrap();
        assert_eq!(target.chat, ChatId(-1001));
        assert_eq!(target.thread, Some(ThreadId(MessageId(7))));
        assert!(
            target_of(Some(&pb::ChatRef { chat_id: "!room".into(), topic_id: String::new() }))
                .is_err()
        );
        assert!(target_of(None).is_err());
    }

    #[test]
    fn final_renders_core_buttons_and_the_footer() {
        let reply = pb::FinalReply {
            text: "Go?".into(),
            footer: "opus · 2s".into(),
            buttons: vec![pb::ButtonRow {
                buttons: vec![pb::Button { id: "b:Yes".into(), label: "Yes".into() }],
            }],
            ..Default::default()
        };
        let rendered = final_of(reply);
        assert_eq!(rendered.chunks, vec!["Go?\n\n<i>opus · 2s</i>".to_owned()]);
        assert!(rendered.markup.is_some());
        let bare = final_of(pb::FinalReply { text: "Go?".into(), ..Default::default() });
        assert!(bare.markup.is_none(), "no keyboard without core buttons");
    }
}
