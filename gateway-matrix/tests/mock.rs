//! The Matrix gateway against matrix-sdk's mock homeserver (`MatrixMockServer`,
//! wiremock): no homeserver needed, so these run in every `cargo test`. The
//! real gateway logs in with its `[matrix]` config, syncs room updates the
//! tests queue, and talks to the scripted fake core on the real core socket
//! of a temporary `$DUCTOR_HOME`. Each test checks what reached core and the
//! request bodies that reached the homeserver. Rooms are unencrypted: the
//! Synapse tests (`tests/synapse.rs`) cover E2EE.

#![recursion_limit = "256"]

// Shared with tests/synapse.rs, which uses all of their helpers.
#[allow(dead_code)]
#[path = "synapse/fake_core.rs"]
mod fake_core;
#[allow(dead_code)]
#[path = "synapse/gateway.rs"]
mod gateway;
#[path = "mock/homeserver.rs"]
mod homeserver;
#[path = "mock/world.rs"]
mod world;

use ductor_proto::pb;
use fake_core::default_script;
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::room_id;
use matrix_sdk::test_utils::mocks::AnyRoomBuilder;
use matrix_sdk_test::InvitedRoomBuilder;
use matrix_sdk_test::event_factory::EventFactory;
use world::{WAIT, World, alice, bob, bot, dm, group, mallory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_users_reach_core() {
    let world = World::start(default_script(), |_| {}).await;
    let stranger = world.events(group(), mallory()).text_msg("let me in").into_raw_sync();
    let friend = world.events(group(), alice()).text_msg("hello bot").into_raw_sync();
    world.timeline(group(), vec![stranger, friend]);

    let event = world.inbound_text("hello bot").await;
    assert_eq!(event.sender_id, alice().as_str());
    let chat = event.chat.clone().unwrap_or_default();
    assert_eq!((chat.chat_id.as_str(), chat.topic_id.as_str()), (group().as_str(), ""));
    assert!(event.event_id.starts_with("mx:$"), "event id {}", event.event_id);
    world.message(group(), "echo: hello bot").await;
    world.acks().await;
    assert_eq!(world.inbound_texts(), ["hello bot"], "the stranger's message was dropped");
    let bodies: Vec<String> =
        world.messages(group()).iter().map(|m| m.str("body").into()).collect();
    assert_eq!(bodies, ["echo: hello bot"], "the bot answered the allowed user only");
    world.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_rooms_restricts_where_the_bot_listens() {
    let world = World::start(default_script(), |m| {
        m.allowed_rooms = vec![group().to_string()];
    })
    .await;
    world.say(dm(), alice(), "in the dm");
    world.say(group(), alice(), "in the group");

    world.message(group(), "echo: in the group").await;
    world.acks().await;
    assert_eq!(world.inbound_texts(), ["in the group"], "the DM is not an allowed room");
    assert!(world.messages(dm()).is_empty(), "nothing was sent to the DM");
    world.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_mention_only_needs_a_mention_or_a_reply_to_the_bot() {
    let world = World::start(default_script(), |m| m.group_mention_only = true).await;
    world.say(group(), alice(), "just chatting");
    let mention = format!("{} ping", bot());
    let pill = world
        .events(group(), alice())
        .text_msg(&mention)
        .mentions(Mentions::with_user_ids([bot().to_owned()]))
        .into_raw_sync();
    world.timeline(group(), vec![pill]);
    let answer = world.message(group(), "echo: ").await;

    // Replies: to the bot's answer (addressed), to Bob (not addressed). The
    // gateway fetches the replied-to events from the homeserver.
    let bobs = world.new_event_id();
    for (id, sender, body) in
        [(answer.id(), bot(), answer.str("body")), (bobs.clone(), bob(), "hm")]
    {
        let event = world.events(group(), sender).text_msg(body).event_id(&id).into_event();
        let mock = world.hs.server.mock_room_event().room(group()).match_event_id();
        mock.ok(event).mount().await;
    }
    let to_bob = world.events(group(), alice()).text_msg("agreed").reply_to(&bobs).into_raw_sync();
    let to_bot = world.events(group(), alice()).text_msg("thanks").reply_to(&answer.id());
    world.timeline(group(), vec![to_bob, to_bot.into_raw_sync()]);
    // A DM needs no mention.
    world.say(dm(), alice(), "plain in the dm");

    world.inbound_text("plain in the dm").await;
    assert_eq!(world.inbound_texts(), [mention.as_str(), "thanks", "plain in the dm"]);
    let thanks = world.inbound_text("thanks").await;
    let Some(pb::inbound_event::Kind::Message(thanks)) = thanks.kind else { unreachable!() };
    assert_eq!(thanks.reply_quote, format!("echo: {mention}"), "the replied-to text is quoted");
    world.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_from_allowed_users_are_joined_and_others_rejected() {
    let world = World::start(default_script(), |_| {}).await;
    let (welcome, unwelcome) = (room_id!("!welcome:localhost"), room_id!("!unwelcome:localhost"));
    let invite = |room, inviter| -> AnyRoomBuilder {
        let event = EventFactory::new().room(room).member(inviter).invited(bot());
        InvitedRoomBuilder::new(room).add_state_event(event).into()
    };
    world.hs.sync([invite(welcome, alice()), invite(unwelcome, mallory())]);

    let membership = |room: &str, action: &str| {
        world.hs.hits(|h| (h.room() == room && h.action() == action).then(|| h.method.clone()))
    };
    world
        .hs
        .wait_for("the join and the rejection", WAIT, |hits| {
            let done =
                |room: &str, action| hits.iter().any(|h| h.room() == room && h.action() == action);
            (done(welcome.as_str(), "join") && done(unwelcome.as_str(), "leave")).then_some(())
        })
        .await;
    assert_eq!(membership(welcome.as_str(), "join"), ["POST"]);
    assert!(
        membership(welcome.as_str(), "leave").is_empty(),
        "the welcome invite was not rejected"
    );
    assert_eq!(membership(unwelcome.as_str(), "leave"), ["POST"]);
    assert!(
        membership(unwelcome.as_str(), "join").is_empty(),
        "the stranger's room was not joined"
    );
    assert!(world.inbound_events().is_empty(), "nothing reached core");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_acknowledged_and_a_failed_delivery_says_why() {
    let world = World::start(default_script(), |_| {}).await;
    world.hs.refuse("echo: refuse me");
    world.say(dm(), alice(), "stream");
    world.say(dm(), alice(), "refuse me");

    world.message(dm(), "echo: refuse me").await;
    let refused_turn = world.inbound_text("refuse me").await.event_id;
    let acks = world.acks().await;
    let actions = world.actions();
    assert_eq!(actions.len(), 8, "a streamed turn of 7 actions and one answer: {actions:?}");
    assert_eq!(acks.len(), actions.len(), "{acks:?}");
    for action in &actions {
        let error = &acks[&action.action_id];
        if action.turn_id == refused_turn {
            assert!(
                error.contains("send a message") && error.contains("refused by the test"),
                "{error}"
            );
        } else {
            assert_eq!(error, "", "delivered: {action:?}");
        }
    }
    world.stop().await;
}
