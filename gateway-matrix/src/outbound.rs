//! Core's outbound actions, delivered to rooms. One worker task per chat keeps
//! a chat's actions in order while chats run in parallel; each action is
//! acknowledged after delivery (with an error text when it failed for good).
//!
//! Streaming, per turn: in segment mode (default) the text between tool calls
//! is posted as its own `m.notice` (no push notification) and the final answer
//! last, as `m.text`; in edit mode one message is edited with `m.replace` at
//! most once a second and a new one is started after `max_edits` edits, so a
//! long turn never piles hundreds of edits onto one event. A typing notice is
//! kept alive while a turn runs. Tool markers are posted only when
//! `show_tool_markers` is set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Doing as _, MatrixError};
use ductor_daemon::config::MatrixStreaming;
use ductor_daemon::sync::Locked as _;
use ductor_gateway_link::AckSender;
use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;
use matrix_sdk::Room;
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId};
use tokio::sync::mpsc;

use crate::gateway::Shared;
use crate::typing::Typing;
use crate::{render, send};

/// Least time between two edits of one streamed message.
const EDIT_INTERVAL: Duration = Duration::from_secs(1);

/// Routes actions to their chat's worker.
pub struct Dispatcher {
    shared: Arc<Shared>,
    acks: AckSender,
    workers: HashMap<String, mpsc::UnboundedSender<pb::OutboundAction>>,
}

impl Dispatcher {
    /// A dispatcher whose workers acknowledge through `acks`.
    pub fn new(shared: Arc<Shared>, acks: AckSender) -> Self {
        Self { shared, acks, workers: HashMap::new() }
    }

    /// Queues an action on its chat's (and topic's) worker, started on first use.
    pub fn dispatch(&mut self, action: pb::OutboundAction) {
        let chat = action.chat.clone().unwrap_or_default();
        let key = format!("{}\n{}", chat.chat_id, chat.topic_id);
        if let Some(worker) = self.workers.get(&key) {
            match worker.send(action) {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => return self.spawn(key, &chat, returned),
            }
        }
        self.spawn(key, &chat, action);
    }

    fn spawn(&mut self, key: String, chat: &pb::ChatRef, first: pb::OutboundAction) {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(first).expect("the receiver is alive until the worker starts");
        let worker = ChatWorker::new(self.shared.clone(), chat);
        tokio::spawn(worker.run(rx, self.acks.clone()));
        self.workers.insert(key, tx);
    }
}

/// One streamed turn's progress.
#[derive(Default)]
struct Turn {
    /// Segment mode: text not yet posted.
    buffer: String,
    /// Segment mode: segments already posted.
    segments: Vec<String>,
    /// Edit mode: all text streamed this turn.
    streamed: String,
    /// Edit mode: where the current message's text starts in `streamed`.
    message_start: usize,
    /// Edit mode: how much of `streamed` the current message shows.
    shown: usize,
    /// Edit mode: the message being edited.
    current: Option<OwnedEventId>,
    edits: u32,
    last_edit: Option<Instant>,
}

/// Delivers one chat's (or one thread's) actions in order.
struct ChatWorker {
    shared: Arc<Shared>,
    chat: String,
    /// The thread root when the topic is a thread.
    thread: Option<OwnedEventId>,
    turn: Turn,
    typing: Option<Typing>,
    selectors: HashMap<String, OwnedEventId>,
    queue_notices: HashMap<String, OwnedEventId>,
}

impl ChatWorker {
    fn new(shared: Arc<Shared>, chat: &pb::ChatRef) -> Self {
        Self {
            shared,
            chat: chat.chat_id.clone(),
            thread: EventId::parse(chat.topic_id.as_str()).ok(),
            turn: Turn::default(),
            typing: None,
            selectors: HashMap::new(),
            queue_notices: HashMap::new(),
        }
    }

    async fn run(
        mut self,
        mut actions: mpsc::UnboundedReceiver<pb::OutboundAction>,
        acks: AckSender,
    ) {
        while let Some(action) = actions.recv().await {
            let action_id = action.action_id;
            tracing::debug!(chat = %self.chat, action_id, "delivering an action");
            let error = match self.handle(action.kind).await {
                Ok(()) => {
                    tracing::debug!(chat = %self.chat, action_id, "delivered an action");
                    String::new()
                }
                Err(error) => {
                    tracing::warn!(chat = %self.chat, action_id = action.action_id, "failed to deliver an action: {error}");
                    format!("{error}")
                }
            };
            acks.send(pb::OutboundAck { action_id: action.action_id, error });
        }
        self.stop_typing().await;
    }

    fn room(&self) -> Result<Room, MatrixError> {
        let room_id = RoomId::parse(self.chat.as_str()).doing("parse the chat id as a room id")?;
        let room: OwnedRoomId = room_id;
        let room = (self.shared.client.get_room(&room))
            .ok_or_else(|| MatrixError::refused("the bot is not in this room"))?;
        if room.state() != matrix_sdk::RoomState::Joined {
            return Err(MatrixError::refused("the bot is not joined to this room"));
        }
        Ok(room)
    }

    async fn handle(&mut self, kind: Option<Kind>) -> Result<(), MatrixError> {
        let Some(kind) = kind else { return Ok(()) };
        let room = self.room()?;
        match kind {
            Kind::TurnStarted(_) => {
                self.turn = Turn::default();
                self.start_typing(&room);
            }
            Kind::TextDelta(delta) => {
                self.start_typing(&room);
                self.on_delta(&room, &delta.text).await?;
            }
            Kind::Tool(tool) => {
                self.start_typing(&room);
                if !tool.finished {
                    self.flush_segment(&room).await?;
                    if self.shared.knobs.show_tool_markers() {
                        let marker = tool_marker(&tool);
                        send::markdown(&room, &marker, send::Kind::Notice, self.thread.as_deref())
                            .await?;
                    }
                }
            }
            Kind::Status(_) => self.start_typing(&room),
            // The answer goes out first; clearing "typing" can wait a moment.
            Kind::FinalReply(reply) => {
                let result = self.on_final(&room, reply).await;
                self.turn = Turn::default();
                self.stop_typing().await;
                result?;
            }
            Kind::Error(error) => {
                self.turn = Turn::default();
                let text = format!("⚠️ {}", error.message);
                let result =
                    send::markdown(&room, &text, send::Kind::Text, self.thread.as_deref()).await;
                self.stop_typing().await;
                result?;
            }
            Kind::Notice(notice) => {
                let kind = if notice.notify { send::Kind::Text } else { send::Kind::Notice };
                send::markdown(&room, &notice.text, kind, self.thread.as_deref()).await?;
            }
            Kind::Selector(menu) => self.on_selector(&room, menu).await?,
            Kind::QueueNotice(notice) => self.on_queue_notice(&room, notice).await?,
            Kind::QueueClear(clear) => {
                if let Some(old) = self.queue_notices.remove(&clear.entry_id) {
                    self.retract(&room, &old).await;
                }
            }
            Kind::LeaveChat(_) => {
                room.leave().await.doing("leave the room")?;
            }
        }
        Ok(())
    }

    /// A menu with reaction buttons; one with the same id replaces the old one.
    async fn on_selector(
        &mut self,
        room: &Room,
        menu: pb::SelectorMenu,
    ) -> Result<(), MatrixError> {
        if let Some(old) = self.selectors.remove(&menu.selector_id) {
            self.retract(room, &old).await;
        }
        let thread = self.thread.as_deref();
        let kind = send::Kind::Text;
        let event =
            send::with_buttons(&self.shared, room, &menu.text, &menu.buttons, kind, thread).await?;
        self.selectors.insert(menu.selector_id, event);
        Ok(())
    }

    /// A "queued" notice with its cancel button, replacing an older one for the entry.
    async fn on_queue_notice(
        &mut self,
        room: &Room,
        notice: pb::QueueNotice,
    ) -> Result<(), MatrixError> {
        let thread = self.thread.as_deref();
        let (text, buttons, kind) = (&notice.text, &notice.buttons, send::Kind::Notice);
        let event = send::with_buttons(&self.shared, room, text, buttons, kind, thread).await?;
        if let Some(old) = self.queue_notices.insert(notice.entry_id, event) {
            self.retract(room, &old).await;
        }
        Ok(())
    }

    /// Redacts a bot message that was replaced (best effort).
    async fn retract(&self, room: &Room, event: &OwnedEventId) {
        self.shared.buttons.locked().forget(event);
        if let Err(error) = room.redact(event, None, None).await {
            tracing::debug!(%error, "redact a replaced bot message");
        }
    }

    fn start_typing(&mut self, room: &Room) {
        match &self.typing {
            Some(typing) => typing.touch(),
            None => self.typing = Some(Typing::start(&self.shared.client, room)),
        }
    }

    async fn stop_typing(&mut self) {
        if let Some(typing) = self.typing.take() {
            typing.stop().await;
        }
    }

    async fn on_delta(&mut self, room: &Room, text: &str) -> Result<(), MatrixError> {
        match self.shared.config.streaming {
            MatrixStreaming::Segment => {
                self.turn.buffer.push_str(text);
                Ok(())
            }
            MatrixStreaming::Edit => {
                self.turn.streamed.push_str(text);
                self.edit_stream(room, false).await
            }
        }
    }

    /// Segment mode: posts the text gathered since the last tool call.
    async fn flush_segment(&mut self, room: &Room) -> Result<(), MatrixError> {
        let segment = std::mem::take(&mut self.turn.buffer);
        let segment = segment.trim();
        if segment.is_empty() || self.shared.config.streaming != MatrixStreaming::Segment {
            return Ok(());
        }
        send::markdown(room, segment, send::Kind::Notice, self.thread.as_deref()).await?;
        self.turn.segments.push(segment.to_owned());
        Ok(())
    }

    /// Edit mode: shows the streamed text, editing at most once per interval
    /// and rolling over to a new message after `max_edits` edits.
    async fn edit_stream(&mut self, room: &Room, force: bool) -> Result<(), MatrixError> {
        let thread = self.thread.as_deref();
        let turn = &mut self.turn;
        let due = turn.last_edit.is_none_or(|at| at.elapsed() >= EDIT_INTERVAL);
        if !(due || force) {
            return Ok(());
        }
        let too_long = turn.streamed.len() - turn.message_start > send::MAX_CHARS;
        if turn.current.is_some() && (turn.edits >= self.shared.knobs.max_edits() || too_long) {
            turn.message_start = turn.shown;
            turn.current = None;
        }
        let text = turn.streamed[turn.message_start..].trim();
        if text.is_empty() {
            return Ok(());
        }
        match &turn.current {
            None => {
                turn.current = Some(send::markdown(room, text, send::Kind::Notice, thread).await?);
                turn.edits = 0;
            }
            Some(event) => {
                send::edit(room, event, text, send::Kind::Notice).await?;
                turn.edits += 1;
            }
        }
        turn.shown = turn.streamed.len();
        turn.last_edit = Some(Instant::now());
        Ok(())
    }

    async fn on_final(&mut self, room: &Room, reply: pb::FinalReply) -> Result<(), MatrixError> {
        let kind = if reply.notify { send::Kind::Text } else { send::Kind::Notice };
        let shown: Vec<&str> = match self.shared.config.streaming {
            MatrixStreaming::Segment => self.turn.segments.iter().map(String::as_str).collect(),
            MatrixStreaming::Edit => vec![&self.turn.streamed[..self.turn.message_start]],
        };
        let mut text = render::unsent_tail(&reply.text, &shown).trim().to_owned();
        if !reply.footer.trim().is_empty() {
            text = format!("{text}\n\n_{}_", reply.footer.trim());
        }
        let has_buttons = reply.buttons.iter().any(|row| !row.buttons.is_empty());
        let streamed = self.turn.current.clone().filter(|_| {
            self.shared.config.streaming == MatrixStreaming::Edit
                && !text.is_empty()
                && text.len() <= send::MAX_CHARS
        });
        match streamed {
            // The streamed message becomes the final answer (an edit does not
            // notify; edit mode trades that for a quiet room).
            Some(event) => {
                send::edit_with_buttons(
                    &self.shared,
                    room,
                    &event,
                    &text,
                    &reply.buttons,
                    kind,
                    self.thread.as_deref(),
                )
                .await?;
            }
            None if !text.is_empty() || has_buttons => {
                send::with_buttons(
                    &self.shared,
                    room,
                    &text,
                    &reply.buttons,
                    kind,
                    self.thread.as_deref(),
                )
                .await?;
            }
            None => {}
        }
        let mut failures = Vec::new();
        for file in &reply.files {
            if let Err(error) = send::attachment(room, file, self.thread.as_deref()).await {
                tracing::warn!(path = %file.path, "failed to upload a file: {error}");
                failures.push(format!("{}: {error}", file.path));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(MatrixError::refused(format!("upload files: {}", failures.join("; "))))
        }
    }
}

fn tool_marker(tool: &pb::ToolActivity) -> String {
    if tool.summary.is_empty() {
        format!("🔧 `{}`", tool.name)
    } else {
        format!("🔧 `{}` {}", tool.name, tool.summary)
    }
}
