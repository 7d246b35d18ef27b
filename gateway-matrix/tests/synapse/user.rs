//! A matrix-sdk client playing the human: its own SQLite store (so E2EE works),
//! a background sync, and a record of the messages and reactions it sees.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{
    FileMessageEventContent, MessageType, OriginalSyncRoomMessageEvent, Relation,
};
use matrix_sdk::ruma::events::typing::SyncTypingEvent;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::{Client, Room};
use tokio::sync::Notify;

use crate::support::Synapse;

/// Something the user's client received.
#[derive(Debug, Clone)]
pub enum Seen {
    Message {
        room: OwnedRoomId,
        sender: OwnedUserId,
        event_id: OwnedEventId,
        msgtype: String,
        body: String,
        html: Option<String>,
        encrypted: bool,
        file: Option<FileMessageEventContent>,
        /// The event this one edits (`m.replace`); `body` is then the new text.
        replaces: Option<OwnedEventId>,
        /// The thread root, for messages in a thread.
        thread: Option<OwnedEventId>,
    },
    Reaction {
        room: OwnedRoomId,
        sender: OwnedUserId,
        target: OwnedEventId,
        key: String,
    },
    /// The room's typing list changed: who is typing now.
    Typing {
        room: OwnedRoomId,
        users: Vec<OwnedUserId>,
    },
}

/// A logged-in test user.
pub struct TestUser {
    pub client: Client,
    pub user_id: OwnedUserId,
    seen: Arc<Mutex<Vec<Seen>>>,
    changed: Arc<Notify>,
    _store: tempfile::TempDir,
    sync: tokio::task::JoinHandle<()>,
}

impl Drop for TestUser {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

impl TestUser {
    /// Registers and logs in `name`, syncs once, then keeps syncing.
    pub async fn new(synapse: &Synapse, name: &str) -> Self {
        let password = "user-password";
        let user_id = synapse.register(name, password).await;
        let store = tempfile::tempdir().expect("temp dir");
        let client = Client::builder()
            .homeserver_url(&synapse.url)
            .sqlite_store(store.path(), None)
            .build()
            .await
            .expect("build the user client");
        client.matrix_auth().login_username(&user_id, password).send().await.expect("user login");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let (s, c) = (seen.clone(), changed.clone());
        client.add_event_handler(
            move |ev: OriginalSyncRoomMessageEvent,
                  room: Room,
                  enc: Option<matrix_sdk::deserialized_responses::EncryptionInfo>| {
                let (seen, changed) = (s.clone(), c.clone());
                async move {
                    let file = match &ev.content.msgtype {
                        MessageType::File(f) => Some(f.clone()),
                        _ => None,
                    };
                    let thread = match &ev.content.relates_to {
                        Some(Relation::Thread(t)) => Some(t.event_id.clone()),
                        _ => None,
                    };
                    let (replaces, msgtype) = match &ev.content.relates_to {
                        Some(Relation::Replacement(r)) => {
                            (Some(r.event_id.clone()), &r.new_content.msgtype)
                        }
                        _ => (None, &ev.content.msgtype),
                    };
                    let (body, html) = match msgtype {
                        MessageType::Text(t) => {
                            (t.body.clone(), t.formatted.as_ref().map(|f| f.body.clone()))
                        }
                        MessageType::Notice(t) => {
                            (t.body.clone(), t.formatted.as_ref().map(|f| f.body.clone()))
                        }
                        other => (other.body().to_owned(), None),
                    };
                    seen.locked().push(Seen::Message {
                        room: room.room_id().to_owned(),
                        sender: ev.sender,
                        event_id: ev.event_id,
                        msgtype: ev.content.msgtype().to_owned(),
                        body,
                        html,
                        encrypted: enc.is_some(),
                        file,
                        replaces,
                        thread,
                    });
                    changed.notify_waiters();
                }
            },
        );
        let (s, c) = (seen.clone(), changed.clone());
        client.add_event_handler(move |ev: OriginalSyncReactionEvent, room: Room| {
            let (seen, changed) = (s.clone(), c.clone());
            async move {
                seen.locked().push(Seen::Reaction {
                    room: room.room_id().to_owned(),
                    sender: ev.sender,
                    target: ev.content.relates_to.event_id,
                    key: ev.content.relates_to.key,
                });
                changed.notify_waiters();
            }
        });
        let (s, c) = (seen.clone(), changed.clone());
        client.add_event_handler(move |ev: SyncTypingEvent, room: Room| {
            let (seen, changed) = (s.clone(), c.clone());
            async move {
                seen.locked().push(Seen::Typing {
                    room: room.room_id().to_owned(),
                    users: ev.content.user_ids,
                });
                changed.notify_waiters();
            }
        });
        client.sync_once(SyncSettings::default()).await.expect("first user sync");
        let syncing = client.clone();
        // sync_once in a loop: Client::sync pauses a second between quick syncs.
        let sync = tokio::spawn(async move {
            let settings = SyncSettings::default().timeout(Duration::from_secs(10));
            loop {
                if syncing.sync_once(settings.clone()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let user_id = UserId::parse(user_id.as_str()).expect("user id");
        Self { client, user_id, seen, changed, _store: store, sync }
    }

    /// Waits for something matching `pick` (panics after `timeout`).
    pub async fn wait_seen<T>(
        &self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&Seen) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = self.seen.locked().iter().find_map(&pick) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen = self.seen.locked().clone();
                panic!("{}: timed out waiting for {what}; saw {seen:#?}", self.user_id);
            }
        }
    }

    /// Everything seen so far that `pick` accepts, in order.
    pub fn seen_now<T>(&self, pick: impl Fn(&Seen) -> Option<T>) -> Vec<T> {
        self.seen.locked().iter().filter_map(pick).collect()
    }

    /// Messages from `sender` in `room`: (msgtype, body, html).
    pub fn messages_from(
        &self,
        room: &RoomId,
        sender: &UserId,
    ) -> Vec<(String, String, Option<String>)> {
        let seen = self.seen.locked();
        seen.iter()
            .filter_map(|s| match s {
                Seen::Message { room: r, sender: f, msgtype, body, html, .. }
                    if r == room && f == sender =>
                {
                    Some((msgtype.clone(), body.clone(), html.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Waits for a message from `sender` in `room` whose body contains `needle`.
    pub async fn wait_message(&self, room: &RoomId, sender: &UserId, needle: &str) -> Seen {
        self.wait_seen(&format!("a message containing {needle:?}"), Duration::from_secs(30), |s| {
            match s {
                Seen::Message { room: r, sender: f, body, .. }
                    if r == room && f == sender && body.contains(needle) =>
                {
                    Some(s.clone())
                }
                _ => None,
            }
        })
        .await
    }

    /// Waits until `user` has joined `room` (as this client sees it).
    pub async fn wait_joined(&self, room: &RoomId, user: &UserId) {
        self.wait_membership(room, user, MembershipState::Join).await;
    }

    /// Waits until `user`'s membership in `room` is `state`.
    pub async fn wait_membership(&self, room: &RoomId, user: &UserId, state: MembershipState) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(room) = self.client.get_room(room)
                && let Ok(Some(member)) = room.get_member_no_sync(user).await
                && *member.membership() == state
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user} never reached {state} in {room}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A joined room by id.
    pub fn room(&self, room: &RoomId) -> Room {
        self.client.get_room(room).expect("the user knows the room")
    }
}
