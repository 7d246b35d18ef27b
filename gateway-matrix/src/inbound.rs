//! Matrix events in: messages, media, reactions and invites, filtered by
//! [`Access`](crate::access::Access) and turned into `InboundEvent`s for core.
//!
//! A room is a chat (chat id = room id, stable across restarts). Event ids
//! are `mx:<event id>`, so a replayed event is dropped by core. On the very
//! first sync of a new device, events older than the gateway's start are
//! skipped; later starts continue from the persisted sync token.

use std::sync::Arc;

use ductor_daemon::sync::Locked as _;
use ductor_proto::pb;
use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::ruma::events::AnySyncMessageLikeEvent;
use matrix_sdk::ruma::events::AnySyncTimelineEvent;
use matrix_sdk::ruma::events::SyncMessageLikeEvent;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation,
};
use matrix_sdk::ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, UserId};
use matrix_sdk::{Client, Room, RoomState};

use crate::gateway::Shared;
use crate::{access, media, render};

/// Registers the event handlers on the shared client; the handles remove them
/// again (they hold the shared state, which holds the client).
pub fn register(shared: &Arc<Shared>) -> Vec<EventHandlerHandle> {
    let client = &shared.client;
    let s = shared.clone();
    let messages =
        client.add_event_handler(move |event: OriginalSyncRoomMessageEvent, room: Room| {
            let shared = s.clone();
            async move { on_message(&shared, event, room).await }
        });
    let s = shared.clone();
    let reactions =
        client.add_event_handler(move |event: OriginalSyncReactionEvent, room: Room| {
            let shared = s.clone();
            async move { on_reaction(&shared, event, room).await }
        });
    let s = shared.clone();
    let invites = client.add_event_handler(
        move |event: StrippedRoomMemberEvent, room: Room, client: Client| {
            let shared = s.clone();
            async move { on_invite(&shared, event, room, client).await }
        },
    );
    vec![messages, reactions, invites]
}

fn is_old(shared: &Shared, ts: MilliSecondsSinceUnixEpoch) -> bool {
    shared.cutoff.locked().is_some_and(|cutoff| ts < cutoff)
}

/// Common checks: not our own event, joined, new enough, sender and room allowed.
fn admitted(shared: &Shared, room: &Room, sender: &UserId, ts: MilliSecondsSinceUnixEpoch) -> bool {
    if sender == shared.own_user || room.state() != RoomState::Joined || is_old(shared, ts) {
        return false;
    }
    if !shared.access.user_allowed(sender) {
        tracing::info!(room = %room.room_id(), %sender, "ignored an event from a user not in matrix.allowed_users");
        return false;
    }
    if !shared.access.room_allowed(room) {
        tracing::info!(room = %room.room_id(), "ignored an event in a room not in matrix.allowed_rooms");
        return false;
    }
    true
}

async fn sender_name(room: &Room, sender: &UserId) -> String {
    match room.get_member_no_sync(sender).await {
        Ok(Some(member)) => member.display_name().unwrap_or(sender.localpart()).to_owned(),
        _ => sender.localpart().to_owned(),
    }
}

/// Where an event belongs: the room, and the thread root as topic (if any).
struct Origin<'a> {
    room: &'a Room,
    topic: String,
}

fn event(
    origin: &Origin<'_>,
    event_id: &EventId,
    sender: &UserId,
    name: String,
    kind: pb::inbound_event::Kind,
) -> pb::InboundEvent {
    pb::InboundEvent {
        event_id: format!("mx:{event_id}"),
        chat: Some(pb::ChatRef {
            chat_id: origin.room.room_id().to_string(),
            topic_id: origin.topic.clone(),
        }),
        sender_id: sender.to_string(),
        sender_name: name,
        kind: Some(kind),
    }
}

async fn forward(shared: &Shared, event: pb::InboundEvent) {
    tracing::debug!(event_id = %event.event_id, "forwarding an inbound event to core");
    // Waits while core's backlog is full; fails only at shutdown.
    if let Err(closed) = shared.inbound.send(event).await {
        tracing::warn!("an inbound event was not forwarded: {closed}");
    }
}

/// The replied-to event's sender and text, when the message is a reply.
async fn replied_to(
    room: &Room,
    relation: Option<&Relation<impl Sized>>,
) -> Option<(OwnedEventId, String, String)> {
    let reply_id = match relation? {
        Relation::Reply(reply) => reply.in_reply_to.event_id.clone(),
        // A thread's fallback reply points at its latest event, not a real reply.
        Relation::Thread(thread) if !thread.is_falling_back => {
            thread.in_reply_to.as_ref()?.event_id.clone()
        }
        _ => return None,
    };
    let timeline = room.event(&reply_id, None).await.ok()?;
    let (sender, body) = match timeline.raw().deserialize().ok()? {
        AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
            SyncMessageLikeEvent::Original(original),
        )) => (original.sender.to_string(), original.content.body().to_owned()),
        other => (other.sender().to_string(), String::new()),
    };
    Some((reply_id, sender, body))
}

/// The text and HTML of a text-like message; empty for media.
fn text_of(msgtype: &MessageType) -> (&str, Option<&str>) {
    match msgtype {
        MessageType::Text(t) => (t.body.as_str(), t.formatted.as_ref().map(|f| f.body.as_str())),
        MessageType::Notice(t) => (t.body.as_str(), t.formatted.as_ref().map(|f| f.body.as_str())),
        MessageType::Emote(t) => (t.body.as_str(), t.formatted.as_ref().map(|f| f.body.as_str())),
        _ => ("", None),
    }
}

/// `group_mention_only`: in a room that is not a DM, a message must mention
/// the bot or reply to it (commands always pass).
async fn addressed(
    shared: &Shared,
    room: &Room,
    ev: &OriginalSyncRoomMessageEvent,
    text: &str,
    html: Option<&str>,
    reply_sender: Option<&str>,
) -> bool {
    let is_command = text.starts_with('!') || text.starts_with('/');
    if !shared.access.mention_only() || is_command || access::is_direct(room).await {
        return true;
    }
    if reply_sender == Some(shared.own_user.as_str()) {
        return true;
    }
    let mentioned: Vec<_> = ev
        .content
        .mentions
        .as_ref()
        .map(|m| m.user_ids.iter().cloned().collect())
        .unwrap_or_default();
    let own = room.get_member_no_sync(&shared.own_user).await.ok().flatten();
    let display = own.as_ref().and_then(|m| m.display_name());
    access::mentions_bot(&shared.own_user, display, text, html, &mentioned)
}

async fn on_message(shared: &Shared, ev: OriginalSyncRoomMessageEvent, room: Room) {
    tracing::debug!(event_id = %ev.event_id, room = %room.room_id(), "message event");
    if !admitted(shared, &room, &ev.sender, ev.origin_server_ts) {
        return;
    }
    if matches!(ev.content.relates_to, Some(Relation::Replacement(_))) {
        return; // Edits of earlier messages are not new input.
    }
    let reply = replied_to(&room, ev.content.relates_to.as_ref()).await;
    let (reply_sender, reply_quote) = match &reply {
        Some((_, sender, body)) => (Some(sender.as_str()), body.clone()),
        None => (None, String::new()),
    };
    let (text, html) = text_of(&ev.content.msgtype);
    let text = if reply.is_some() { render::strip_reply_fallback(text) } else { text };
    if !addressed(shared, &room, &ev, text, html, reply_sender).await {
        tracing::debug!(room = %room.room_id(), "group_mention_only: not addressed to the bot");
        return;
    }
    // A thread is a topic: its root event id.
    let mut origin = Origin { room: &room, topic: String::new() };
    if let Some(Relation::Thread(thread)) = &ev.content.relates_to {
        origin.topic = thread.event_id.to_string();
    }
    let kind = match &ev.content.msgtype {
        MessageType::Text(_) | MessageType::Notice(_) | MessageType::Emote(_) => {
            text_event(shared, &mut origin, text, reply_quote)
        }
        other => match media::download(shared, other).await {
            Ok(Some(mut media)) => {
                media.reply_quote = reply_quote;
                pb::inbound_event::Kind::Media(media)
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(room = %room.room_id(), "failed to receive a file: {error}");
                let note = format!("⚠️ Could not receive that file: {error}");
                let thread = EventId::parse(origin.topic.as_str()).ok();
                let kind = crate::send::Kind::Notice;
                let _ = crate::send::markdown(&room, &note, kind, thread.as_deref()).await;
                return;
            }
        },
    };
    let name = sender_name(&room, &ev.sender).await;
    forward(shared, event(&origin, &ev.event_id, &ev.sender, name, kind)).await;
}

/// A typed option number is a button press (in the menu's topic); anything
/// else is a message, `!cmd` becoming `/cmd`.
fn text_event(
    shared: &Shared,
    origin: &mut Origin<'_>,
    text: &str,
    reply_quote: String,
) -> pb::inbound_event::Kind {
    let room_id = origin.room.room_id();
    let pressed = shared.buttons.locked().by_typed(room_id, text);
    match pressed {
        Some(pressed) => {
            origin.topic = pressed.topic;
            pb::inbound_event::Kind::Button(pb::ButtonPress {
                button_id: pressed.button_id,
                message_ref: pressed.message.to_string(),
            })
        }
        None => pb::inbound_event::Kind::Message(pb::UserMessage {
            text: render::command_to_core(text),
            reply_quote,
        }),
    }
}

async fn on_reaction(shared: &Shared, ev: OriginalSyncReactionEvent, room: Room) {
    if !admitted(shared, &room, &ev.sender, ev.origin_server_ts) {
        return;
    }
    let target = &ev.content.relates_to.event_id;
    let key = &ev.content.relates_to.key;
    let button = shared.buttons.locked().by_reaction(target, key);
    let Some(pressed) = button else { return };
    let name = sender_name(&room, &ev.sender).await;
    let press = pb::ButtonPress { button_id: pressed.button_id, message_ref: target.to_string() };
    let kind = pb::inbound_event::Kind::Button(press);
    let origin = Origin { room: &room, topic: pressed.topic };
    forward(shared, event(&origin, &ev.event_id, &ev.sender, name, kind)).await;
}

async fn on_invite(shared: &Shared, ev: StrippedRoomMemberEvent, room: Room, client: Client) {
    if ev.state_key != shared.own_user
        || ev.content.membership != MembershipState::Invite
        || room.state() != RoomState::Invited
    {
        return;
    }
    let accepted = shared.access.invite_accepted(&ev.sender, &room);
    let room_id = room.room_id().to_owned();
    let inviter = ev.sender.clone();
    // Joining can race the invite on the server side: retry in the background,
    // never block the sync loop.
    tokio::spawn(async move {
        if !accepted {
            tracing::info!(room = %room_id, %inviter, "rejecting an invite (inviter or room not allowed)");
            if let Err(error) = room.leave().await {
                tracing::warn!(room = %room_id, %error, "reject an invite");
            }
            return;
        }
        let mut delay = std::time::Duration::from_millis(200);
        for attempt in 1..=6 {
            match client.join_room_by_id(&room_id).await {
                Ok(_) => {
                    tracing::info!(room = %room_id, %inviter, "joined on invite");
                    return;
                }
                Err(error) if attempt < 6 => {
                    tracing::debug!(room = %room_id, %error, attempt, "join on invite; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => tracing::warn!(room = %room_id, %error, "failed to join on invite"),
            }
        }
    });
}
