//! One mock-homeserver test's world (`tests/mock.rs`): the mock homeserver
//! with two rooms the bot is in (a DM with Alice, a group with Alice and Bob),
//! a fake core on a temporary `$DUCTOR_HOME`, and the real gateway between
//! them; plus the users' side (messages and reactions into rooms, as syncs)
//! and waits on what reached core and the homeserver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ductor_daemon::DuctorHome;
use ductor_daemon::config::MatrixConfig;
use ductor_proto::pb;
use matrix_sdk::ruma::events::AnySyncTimelineEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId, UserId, room_id,
    user_id,
};
use matrix_sdk_test::JoinedRoomBuilder;
use matrix_sdk_test::event_factory::EventFactory;

use crate::fake_core::{FakeCore, Script};
use crate::gateway::{Gateway, init_logging, matrix_config};
use crate::homeserver::{Hit, Homeserver};

/// Longest wait for anything (the gateway answers in well under a second).
pub const WAIT: Duration = Duration::from_secs(20);

/// The bot.
pub fn bot() -> &'static UserId {
    user_id!("@ductor:localhost")
}

/// The one allowed user.
pub fn alice() -> &'static UserId {
    user_id!("@alice:localhost")
}

/// Another member of the group room, not allowed.
pub fn bob() -> &'static UserId {
    user_id!("@bob:localhost")
}

/// A stranger.
pub fn mallory() -> &'static UserId {
    user_id!("@mallory:localhost")
}

/// The bot and Alice (a DM: two members).
pub fn dm() -> &'static RoomId {
    room_id!("!dm:localhost")
}

/// The bot, Alice and Bob (a group room).
pub fn group() -> &'static RoomId {
    room_id!("!group:localhost")
}

/// A homeserver, a fake core and the gateway between them.
pub struct World {
    pub hs: Homeserver,
    pub core: FakeCore,
    _dir: tempfile::TempDir,
    gateway: Gateway,
    next_event: AtomicU64,
}

impl World {
    /// Starts everything; `configure` adjusts `[matrix]` (Alice is allowed,
    /// segment streaming). Returns once the gateway has synced and attached.
    pub async fn start(script: Script, configure: impl FnOnce(&mut MatrixConfig)) -> Self {
        Self::start_paced(script, Duration::ZERO, configure).await
    }

    /// Like [`World::start`], the fake core sending a turn's actions `pace` apart.
    pub async fn start_paced(
        script: Script,
        pace: Duration,
        configure: impl FnOnce(&mut MatrixConfig),
    ) -> Self {
        init_logging();
        let hs = Homeserver::start(bot()).await;
        hs.sync([
            room(dm(), &[bot(), alice()]).into(),
            room(group(), &[bot(), alice(), bob()]).into(),
        ]);
        let dir = tempfile::tempdir().expect("temp home");
        let home = DuctorHome::at(dir.path());
        let core = FakeCore::start_paced(&home, script, pace).await;
        let mut config =
            matrix_config(&hs.url(), bot().as_str(), "bot-password", &[alice().as_str()]);
        configure(&mut config.matrix);
        let gateway = Gateway::start(&home, config);
        core.wait_for("the gateway's hello", WAIT, |r| (!r.hellos.is_empty()).then_some(())).await;
        Self { hs, core, _dir: dir, gateway, next_event: AtomicU64::new(1) }
    }

    /// Publishes a changed `[matrix]`, as a reload of `config.toml` does.
    pub fn reload(&self, configure: impl FnOnce(&mut MatrixConfig)) {
        let mut config = (**self.gateway.config.borrow()).clone();
        configure(&mut config.matrix);
        self.gateway.config.send_replace(std::sync::Arc::new(config));
    }

    /// Waits until the gateway ends on its own; whether it asked to be restarted.
    pub async fn gateway_ended_for_restart(self) -> bool {
        self.gateway.ended_for_restart().await
    }

    /// A fresh event id for a user's event.
    pub fn new_event_id(&self) -> OwnedEventId {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        OwnedEventId::try_from(format!("$user{n}")).expect("a valid event id")
    }

    /// Events by `sender` in `room`, sent now.
    pub fn events(&self, room: &RoomId, sender: &UserId) -> EventFactory {
        let now = MilliSecondsSinceUnixEpoch::now().get().into();
        EventFactory::new().room(room).sender(sender).server_ts(now)
    }

    /// One sync that brings these timeline events of `room`, in order.
    pub fn timeline(&self, room: &RoomId, events: Vec<Raw<AnySyncTimelineEvent>>) {
        self.hs.sync([JoinedRoomBuilder::new(room).add_timeline_bulk(events).into()]);
    }

    /// `sender` writes `text` in `room`; returns the event id.
    pub fn say(&self, room: &RoomId, sender: &UserId, text: &str) -> OwnedEventId {
        let id = self.new_event_id();
        let event = self.events(room, sender).text_msg(text).event_id(&id).into_raw_sync();
        self.timeline(room, vec![event]);
        id
    }

    /// `sender` reacts with `key` to `target` in `room`.
    pub fn react(&self, room: &RoomId, sender: &UserId, target: &EventId, key: &str) {
        let id = self.new_event_id();
        let event = self.events(room, sender).reaction(target, key).event_id(&id).into_raw_sync();
        self.timeline(room, vec![event]);
    }

    /// The message events the bot sent to `room`, in order.
    pub fn messages(&self, room: &RoomId) -> Vec<Hit> {
        self.hs.hits(|h| {
            (h.room() == room.as_str() && h.event_type() == "m.room.message").then(|| h.clone())
        })
    }

    /// Waits for a message of the bot in `room` whose body contains `needle`.
    pub async fn message(&self, room: &RoomId, needle: &str) -> Hit {
        let what = format!("a message containing {needle:?} in {room}");
        self.hs
            .wait_for(&what, WAIT, |hits| {
                hits.iter()
                    .find(|h| {
                        h.room() == room.as_str()
                            && h.event_type() == "m.room.message"
                            && h.str("body").contains(needle)
                    })
                    .cloned()
            })
            .await
    }

    /// Waits for an inbound event that `pick` accepts.
    pub async fn inbound<T>(&self, what: &str, pick: impl Fn(&pb::InboundEvent) -> Option<T>) -> T {
        self.core.wait_for(what, WAIT, |r| r.events.iter().find_map(&pick)).await
    }

    /// Waits for the inbound event made of the user's event `id`.
    pub async fn inbound_event(&self, id: &EventId) -> pb::InboundEvent {
        let event_id = format!("mx:{id}");
        let what = format!("the inbound event {event_id}");
        self.inbound(&what, |e| (e.event_id == event_id).then(|| e.clone())).await
    }

    /// The button presses that reached core: (event id, press), in order.
    pub fn presses(&self) -> Vec<(String, pb::ButtonPress)> {
        let events = self.inbound_events();
        events.iter().filter_map(|e| Some((e.event_id.clone(), button_press(e)?.clone()))).collect()
    }

    /// Waits for the inbound message with this text.
    pub async fn inbound_text(&self, text: &str) -> pb::InboundEvent {
        let what = format!("the inbound message {text:?}");
        self.inbound(&what, |e| (message_text(e) == Some(text)).then(|| e.clone())).await
    }

    /// Everything the gateway sent core so far, in order.
    pub fn inbound_events(&self) -> Vec<pb::InboundEvent> {
        self.core.recorded().events.clone()
    }

    /// The gateway's (first) hello to core.
    pub fn hello(&self) -> pb::Hello {
        self.core.recorded().hellos[0].clone()
    }

    /// The actions core sent so far, in order.
    pub fn actions(&self) -> Vec<pb::OutboundAction> {
        self.core.recorded().actions.clone()
    }

    /// Texts of the inbound user messages, in order.
    pub fn inbound_texts(&self) -> Vec<String> {
        self.core.texts()
    }

    /// Waits until core sent actions and every one is acknowledged; action
    /// id to error.
    pub async fn acks(&self) -> HashMap<u64, String> {
        self.core
            .wait_for("an ack for every action", WAIT, |r| {
                let acks: HashMap<u64, String> =
                    r.acks.iter().map(|a| (a.action_id, a.error.clone())).collect();
                let all = r.actions.iter().all(|a| acks.contains_key(&a.action_id));
                (all && !r.actions.is_empty()).then_some(acks)
            })
            .await
    }

    /// Checks that every action was delivered (acknowledged without error),
    /// then stops the gateway.
    pub async fn done(self) {
        let acks = self.acks().await;
        assert_eq!(acks.len(), self.actions().len(), "one ack per action: {acks:?}");
        assert!(acks.values().all(String::is_empty), "every action was delivered: {acks:?}");
        self.stop().await;
    }

    /// Stops the gateway (it must end without error).
    pub async fn stop(self) {
        self.gateway.stop().await;
    }
}

/// A joined room created by Alice whose members are `members`.
fn room(id: &RoomId, members: &[&UserId]) -> JoinedRoomBuilder {
    let events = EventFactory::new().room(id);
    let create = events.create(alice(), RoomVersionId::V11).into_raw_sync_state();
    let power = events.default_power_levels().sender(alice()).into_raw_sync_state();
    let joined = members.iter().map(|m| events.member(m).into_raw_sync_state());
    JoinedRoomBuilder::new(id).add_state_bulk([create, power].into_iter().chain(joined))
}

/// The text of an inbound user message.
pub fn message_text(event: &pb::InboundEvent) -> Option<&str> {
    match &event.kind {
        Some(pb::inbound_event::Kind::Message(m)) => Some(m.text.as_str()),
        _ => None,
    }
}

/// The button press of an inbound event.
pub fn button_press(event: &pb::InboundEvent) -> Option<&pb::ButtonPress> {
    match &event.kind {
        Some(pb::inbound_event::Kind::Button(b)) => Some(b),
        _ => None,
    }
}
