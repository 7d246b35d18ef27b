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

use std::sync::Arc;
use std::time::Duration;

use ductor_daemon::config::MatrixStreaming;
use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;
use fake_core::{Script, default_script, final_reply};
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::{OwnedEventId, room_id};
use matrix_sdk::test_utils::mocks::AnyRoomBuilder;
use matrix_sdk_test::InvitedRoomBuilder;
use matrix_sdk_test::event_factory::EventFactory;
use serde_json::json;
use world::{WAIT, World, alice, bob, bot, button_press, dm, group, mallory, message_text};

const ONE: &str = "1\u{fe0f}\u{20e3}";
const TWO: &str = "2\u{fe0f}\u{20e3}";
const THREE: &str = "3\u{fe0f}\u{20e3}";

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
async fn a_reloaded_allowlist_applies_to_the_next_message() {
    let world = World::start(default_script(), |_| {}).await;
    world.say(group(), mallory(), "before");
    world.say(group(), alice(), "sync point");
    world.inbound_text("sync point").await;
    world.reload(|m| m.allowed_users = vec![mallory().to_string()]);
    // The follower applies the change asynchronously; Mallory's messages get
    // through once it has, and Alice's stop.
    let mut n = 0;
    let event = world.inbound("mallory's message after the reload", |e| {
        (e.sender_id == mallory().as_str()).then(|| e.clone())
    });
    let poke = async {
        loop {
            n += 1;
            world.say(group(), mallory(), &format!("after {n}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let event = tokio::select! {
        event = event => event,
        () = poke => unreachable!(),
    };
    assert!(message_text(&event).is_some_and(|t| t.starts_with("after")), "{event:?}");
    assert!(!world.inbound_texts().iter().any(|t| t == "before"), "the old list dropped it");
    world.say(group(), alice(), "alice after");
    world.say(group(), mallory(), "mallory last");
    world.inbound_text("mallory last").await;
    assert!(
        !world.inbound_texts().iter().any(|t| t == "alice after"),
        "alice is no longer allowed"
    );
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
async fn a_selector_is_posted_as_options_and_reactions_or_numbers_press_its_buttons() {
    // The bot allowed too: its own events are still never input.
    let world = World::start(default_script(), |m| m.allowed_users.push(bot().to_string())).await;
    world.say(dm(), alice(), "!model");

    let menu = world.message(dm(), "sonnet").await;
    assert_eq!(world.inbound_texts(), ["/model"], "!model reached core as /model");
    assert_eq!(
        (menu.str("msgtype"), menu.str("body")),
        ("m.text", "Pick a **model**\n\n1\u{fe0f}\u{20e3} opus\n2\u{fe0f}\u{20e3} sonnet")
    );
    assert!(menu.str("formatted_body").contains("<strong>model</strong>"), "{menu:?}");
    let keys = world
        .hs
        .wait_for("the bot's two option reactions", WAIT, |hits| {
            let reactions: Vec<_> =
                hits.iter().filter(|h| h.event_type() == "m.reaction").collect();
            (reactions.len() == 2)
                .then(|| reactions.iter().map(|h| h.relates_to().clone()).collect::<Vec<_>>())
        })
        .await;
    let annotation = |key| json!({ "rel_type": "m.annotation", "event_id": menu.id(), "key": key });
    assert_eq!(keys, [annotation(ONE), annotation(TWO)]);

    // The bot's own reaction coming back and a key without an option press
    // nothing: they come before Alice's press in one sync, so anything they
    // sent core would be there before it.
    let react = |sender, key| {
        let id = world.new_event_id();
        (id.clone(), world.events(dm(), sender).reaction(&menu.id(), key).event_id(&id))
    };
    let (_, own) = react(bot(), ONE);
    let (_, unknown) = react(alice(), THREE);
    let (pressed, press) = react(alice(), TWO);
    world.timeline(dm(), vec![own.into_raw_sync(), unknown.into_raw_sync(), press.into_raw_sync()]);
    world.inbound_event(&pressed).await;
    let on_menu = |event: &OwnedEventId, id: &str| (format!("mx:{event}"), press_on(id, &menu));
    assert_eq!(world.presses(), [on_menu(&pressed, "ms:sonnet")]);
    world.message(dm(), "pressed ms:sonnet").await;

    let typed = world.say(dm(), alice(), "1");
    world.inbound_event(&typed).await;
    assert_eq!(world.presses(), [on_menu(&pressed, "ms:sonnet"), on_menu(&typed, "ms:opus")]);
    world.message(dm(), "pressed ms:opus").await;
    assert_eq!(world.inbound_texts(), ["/model"], "the typed number was a press, not a message");
    let reactions = world.hs.hits(|h| (h.event_type() == "m.reaction").then_some(()));
    assert_eq!(reactions.len(), 2, "the bot reacted once per option");
    world.done().await;
}

/// A turn with a tool call between two segments of text.
fn segmented_turn() -> Script {
    let tool = |finished| {
        let (name, summary) = ("Bash".into(), "ls".into());
        Kind::Tool(pb::ToolActivity { name, summary, finished, ok: finished })
    };
    Arc::new(move |_| {
        vec![
            Kind::TurnStarted(pb::TurnStarted::default()),
            delta("Looking "),
            delta("around."),
            tool(false),
            tool(true),
            delta("All **done**."),
            // The final text is the whole answer, the posted segment included.
            Kind::FinalReply(pb::FinalReply {
                text: "Looking around.\n\nAll **done**.".into(),
                footer: "opus".into(),
                notify: true,
                ..Default::default()
            }),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_tool_markers_on_for_the_next_turn() {
    let world = World::start(segmented_turn(), |_| {}).await;
    world.say(dm(), alice(), "first");
    world.message(dm(), "All **done**.").await;
    let markers = |world: &World| {
        world.messages(dm()).iter().filter(|m| m.str("body").starts_with("🔧")).count()
    };
    assert_eq!(markers(&world), 0, "markers are off by default");
    world.reload(|m| m.show_tool_markers = true);
    // The follower applies it asynchronously: turns run until one shows it.
    let mut turns = 1;
    while markers(&world) == 0 {
        assert!(turns < 50, "no tool marker after {turns} turns since the reload");
        turns += 1;
        let count = world.messages(dm()).len();
        world.say(dm(), alice(), &format!("turn {turns}"));
        world
            .hs
            .wait_for("the turn's answer", WAIT, |hits| {
                let answers = hits
                    .iter()
                    .filter(|h| h.room() == dm().as_str() && h.event_type() == "m.room.message")
                    .count();
                (answers > count + 1).then_some(())
            })
            .await;
    }
    let marker = world.messages(dm()).into_iter().find(|m| m.str("body").starts_with("🔧"));
    assert_eq!(marker.map(|m| m.str("body").to_owned()), Some("🔧 `Bash` ls".to_owned()));
    world.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_streaming_posts_text_between_tools_as_notices_then_the_answer() {
    let world = World::start(segmented_turn(), |_| {}).await;
    world.say(dm(), alice(), "stream");

    world.message(dm(), "All **done**.").await;
    let messages = world.messages(dm());
    let sent: Vec<(&str, &str)> =
        messages.iter().map(|m| (m.str("msgtype"), m.str("body"))).collect();
    assert_eq!(
        sent,
        [("m.notice", "Looking around."), ("m.text", "All **done**.\n\n_opus_")],
        "one notice per segment, the answer without the segment, no tool marker"
    );
    let answer = &messages[1];
    assert!(answer.str("formatted_body").contains("<strong>done</strong>"), "{answer:?}");
    assert!(answer.str("formatted_body").contains("<em>opus</em>"), "{answer:?}");
    assert!(messages.iter().all(|m| m.relates_to().is_null()), "no edits, no threads");
    // Typing while the turn ran, cleared at its end.
    let typing = world
        .hs
        .wait_for("typing cleared", WAIT, |hits| {
            let typing: Vec<bool> = hits
                .iter()
                .filter(|h| h.action() == "typing")
                .map(|h| h.body["typing"].as_bool().unwrap_or(false))
                .collect();
            (typing.last() == Some(&false)).then_some(typing)
        })
        .await;
    assert_eq!(typing.first(), Some(&true), "{typing:?}");
    let hello = world.hello();
    let caps = hello.capabilities.expect("capabilities");
    assert_eq!((hello.transport.as_str(), caps.can_edit), ("matrix", false));
    assert_eq!(caps.buttons, pb::ButtonStyle::Reactions as i32);
    world.done().await;
}

/// A press of button `id` on the bot message `menu`.
fn press_on(id: &str, menu: &homeserver::Hit) -> pb::ButtonPress {
    pb::ButtonPress { button_id: id.to_owned(), message_ref: menu.id().to_string() }
}

fn delta(text: &str) -> Kind {
    Kind::TextDelta(pb::TextDeltaAction { text: text.into() })
}

/// A turn: started, `deltas` streamed, then the final answer (all of them).
fn turn(deltas: &'static [&'static str]) -> Script {
    Arc::new(move |_| {
        let answer: String = deltas.concat();
        std::iter::once(Kind::TurnStarted(pb::TurnStarted::default()))
            .chain(deltas.iter().map(|d| delta(d)))
            .chain([final_reply(&answer)])
            .collect()
    })
}

/// The edits (`m.replace`) among `messages`: (edited event, new msgtype, new body).
fn edits(messages: &[homeserver::Hit]) -> Vec<(String, String, String)> {
    messages
        .iter()
        .filter(|m| m.relates_to()["rel_type"] == "m.replace")
        .map(|m| {
            let new = &m.body["m.new_content"];
            let field = |f: &str| new[f].as_str().unwrap_or("").to_owned();
            (
                m.relates_to()["event_id"].as_str().unwrap_or("").to_owned(),
                field("msgtype"),
                field("body"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_streaming_edits_the_streamed_message_into_the_answer() {
    let world = World::start(turn(&["part one", " part two"]), |m| {
        m.streaming = MatrixStreaming::Edit;
    })
    .await;
    world.say(dm(), alice(), "edit me");

    let edit = world.message(dm(), "* part one part two").await;
    let messages = world.messages(dm());
    assert_eq!(messages.len(), 2, "one message and one edit: {messages:?}");
    let first = &messages[0];
    assert_eq!((first.str("msgtype"), first.str("body")), ("m.notice", "part one"));
    assert!(first.relates_to().is_null());
    assert_eq!(
        edits(&messages),
        [(first.id().to_string(), "m.text".to_owned(), "part one part two".to_owned())],
        "the streamed message became the answer"
    );
    assert!(edit.body["m.new_content"]["formatted_body"].is_string(), "{edit:?}");
    let hello = world.hello();
    assert!(hello.capabilities.expect("capabilities").can_edit);
    world.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_streaming_starts_a_new_message_after_max_edits() {
    // A model streaming slower than one edit a second.
    let pace = Duration::from_millis(1_500);
    let world = World::start_paced(turn(&["alpha", " beta", " gamma"]), pace, |m| {
        m.streaming = MatrixStreaming::Edit;
        m.max_edits = 1;
    })
    .await;
    world.say(dm(), alice(), "stream slowly");

    world.message(dm(), "* gamma").await;
    let messages = world.messages(dm());
    let originals: Vec<(String, String, String)> = messages
        .iter()
        .filter(|m| m.relates_to().is_null())
        .map(|m| (m.id().to_string(), m.str("msgtype").to_owned(), m.str("body").to_owned()))
        .collect();
    let owned =
        |id: &str, msgtype: &str, body: &str| (id.to_owned(), msgtype.to_owned(), body.to_owned());
    let (first, second) = match &originals[..] {
        [(first, ..), (second, ..)] => (first.as_str(), second.as_str()),
        _ => panic!("one rollover, two messages: {originals:?}"),
    };
    assert_eq!(originals, [owned(first, "m.notice", "alpha"), owned(second, "m.notice", "gamma")]);
    assert_eq!(
        edits(&messages),
        [owned(first, "m.notice", "alpha beta"), owned(second, "m.text", "gamma")],
        "the first message took max_edits = 1 edit; the answer's tail ended in the second"
    );
    world.done().await;
}

/// What reached core (message text or button id) and in which topic.
fn topics(world: &World) -> Vec<(String, String)> {
    let events = world.inbound_events();
    let what = |e: &pb::InboundEvent| {
        let text = message_text(e).map(str::to_owned);
        text.or_else(|| button_press(e).map(|b| b.button_id.clone())).unwrap_or_default()
    };
    events.iter().map(|e| (what(e), e.chat.clone().unwrap_or_default().topic_id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_is_a_topic_and_is_answered_in_the_thread() {
    let world = World::start(default_script(), |_| {}).await;
    let root = world.say(dm(), alice(), "root");
    let outside = world.message(dm(), "echo: root").await;
    assert!(outside.relates_to().is_null(), "{outside:?}");

    let in_thread =
        world.events(dm(), alice()).text_msg("in thread").in_thread(&root, &outside.id());
    world.timeline(dm(), vec![in_thread.into_raw_sync()]);
    let answer = world.message(dm(), "echo: in thread").await;
    let in_root = |hit: &homeserver::Hit| {
        let relation = hit.relates_to();
        (
            relation["rel_type"].clone(),
            relation["event_id"].clone(),
            relation["m.in_reply_to"].clone(),
        )
    };
    let expected = (json!("m.thread"), json!(root), serde_json::Value::Null);
    assert_eq!(in_root(&answer), expected, "answered in the thread: {answer:?}");

    // A menu in the thread, and its button pressed: the press belongs to the thread too.
    let menu = world.events(dm(), alice()).text_msg("/model").in_thread(&root, &answer.id());
    world.timeline(dm(), vec![menu.into_raw_sync()]);
    let menu = world.message(dm(), "sonnet").await;
    assert_eq!(in_root(&menu), expected, "the menu is in the thread: {menu:?}");
    world.react(dm(), alice(), &menu.id(), ONE);
    let pressed = world.message(dm(), "pressed ms:opus").await;
    assert_eq!(in_root(&pressed), expected, "{pressed:?}");

    let topics = topics(&world);
    let topic = |what: &str, topic: &str| (what.to_owned(), topic.to_owned());
    assert_eq!(
        topics,
        [
            topic("root", ""),
            topic("in thread", root.as_str()),
            topic("/model", root.as_str()),
            topic("ms:opus", root.as_str())
        ],
        "a thread's events carry its root as topic"
    );
    world.done().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_request_from_core_ends_the_gateway_for_a_restart() {
    let world = World::start(default_script(), |_| {}).await;
    assert!(world.core.restart("an admin chat restarts the matrix gateway"));
    assert!(world.gateway_ended_for_restart().await, "the gateway exits for a restart (42)");
}
