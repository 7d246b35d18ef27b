//! The Matrix gateway against a real Synapse (installed and started by
//! `tests/setup/synapse.sh`, shared by all tests of this binary), with a
//! matrix-sdk client playing the user and a scripted fake core on the real
//! core socket of a temporary `$DUCTOR_HOME`. Without Synapse the tests print
//! SKIP, or fail when `DUCTOR_REQUIRE_REAL=1`.

#![recursion_limit = "256"]

#[path = "synapse/fake_core.rs"]
mod fake_core;
#[path = "synapse/gateway.rs"]
mod gateway;
#[path = "synapse/support.rs"]
mod support;
#[path = "synapse/user.rs"]
mod user;

use std::sync::Arc;
use std::time::Duration;

use ductor_daemon::DuctorHome;
use ductor_proto::pb;
use fake_core::{FakeCore, Script, default_script};
use gateway::{Gateway, matrix_config};
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoom;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::Annotation;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use support::{Synapse, synapse, unique};
use user::{Seen, TestUser};

const WAIT: Duration = Duration::from_secs(30);
const BOT_PASSWORD: &str = "bot-password";

/// A bot account, a temporary home with a fake core, and the allowed user.
struct World {
    synapse: Synapse,
    _dir: tempfile::TempDir,
    home: DuctorHome,
    core: FakeCore,
    bot: OwnedUserId,
    alice: TestUser,
}

impl World {
    async fn new(synapse: Synapse, script: Script) -> Self {
        Self::paced(synapse, script, Duration::ZERO).await
    }

    /// Like [`World::new`], the fake core sending a turn's actions `pace` apart.
    async fn paced(synapse: Synapse, script: Script, pace: Duration) -> Self {
        gateway::init_logging();
        let bot = synapse.register(&unique("ductor"), BOT_PASSWORD).await;
        let bot = UserId::parse(bot.as_str()).expect("bot id");
        let alice = TestUser::new(&synapse, &unique("alice")).await;
        let dir = tempfile::tempdir().expect("temp home");
        let home = DuctorHome::at(dir.path());
        let core = FakeCore::start_paced(&home, script, pace).await;
        Self { synapse, _dir: dir, home, core, bot, alice }
    }

    fn config(&self) -> ductor_daemon::Config {
        matrix_config(
            &self.synapse.url,
            self.bot.as_str(),
            BOT_PASSWORD,
            &[self.alice.user_id.as_str()],
        )
    }

    fn start_gateway(&self) -> Gateway {
        Gateway::start(&self.home, self.config())
    }

    /// Alice creates an unencrypted room, invites the bot (and `others`) and
    /// waits until the bot has joined.
    async fn plain_room(&self, others: &[&UserId]) -> OwnedRoomId {
        let mut request = CreateRoom::new();
        request.name = Some("ductor test".to_owned());
        request.invite = std::iter::once(self.bot.clone())
            .chain(others.iter().map(|u| (*u).to_owned()))
            .collect();
        let room = self.alice.client.create_room(request).await.expect("create a room");
        self.alice.wait_joined(room.room_id(), &self.bot).await;
        room.room_id().to_owned()
    }

    /// Waits for the bot's edit (`m.replace`) whose new body contains
    /// `needle`; returns the edited event and the new body.
    async fn bot_edit_containing(&self, what: &str, needle: &str) -> (OwnedEventId, String) {
        self.alice
            .wait_seen(what, WAIT, |s| match s {
                Seen::Message { sender, replaces: Some(target), body, .. }
                    if *sender == self.bot && body.contains(needle) =>
                {
                    Some((target.clone(), body.clone()))
                }
                _ => None,
            })
            .await
    }

    async fn say(&self, room: &OwnedRoomId, text: &str) {
        self.alice
            .room(room)
            .send(RoomMessageEventContent::text_plain(text))
            .await
            .expect("send a message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_room_round_trip_with_segment_streaming() {
    let Some(synapse) = synapse("plain_room_round_trip_with_segment_streaming") else { return };
    let world = World::new(synapse, default_script()).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[]).await;

    tracing::debug!("alice says hello bot");
    world.say(&room, "hello bot").await;
    tracing::debug!("alice said hello bot");
    world.alice.wait_message(&room, &world.bot, "echo: hello bot").await;
    tracing::debug!("alice saw the echo");
    let event = world
        .core
        .wait_for("the inbound message", WAIT, |r| r.events.iter().find(|e| matches!(&e.kind, Some(pb::inbound_event::Kind::Message(m)) if m.text == "hello bot")).cloned())
        .await;
    assert_eq!(
        event.chat.as_ref().map(|c| c.chat_id.as_str()),
        Some(room.as_str()),
        "chat id = room id"
    );
    assert_eq!(event.sender_id, world.alice.user_id.as_str());
    assert!(event.event_id.starts_with("mx:$"), "event id {}", event.event_id);
    let hello = world.core.recorded().hellos[0].clone();
    assert_eq!(hello.transport, "matrix");
    let caps = hello.capabilities.expect("capabilities");
    assert_eq!(caps.buttons, pb::ButtonStyle::Reactions as i32);
    assert!(caps.file_upload);

    // A streamed turn: the text before the tool call is its own quiet notice,
    // the final answer comes last as m.text with HTML; no tool marker.
    world.say(&room, "stream").await;
    world.alice.wait_message(&room, &world.bot, "All **done**.").await;
    let from_bot = world.alice.messages_from(&room, &world.bot);
    let segment = from_bot
        .iter()
        .find(|(_, body, _)| body == "Looking around.")
        .expect("the segment was sent");
    assert_eq!(segment.0, "m.notice");
    let last = from_bot.last().expect("a final message");
    assert_eq!(last.0, "m.text");
    assert!(last.1.starts_with("All **done**."), "final body: {:?}", last.1);
    assert!(
        !last.1.contains("Looking"),
        "the final answer does not repeat the segment: {:?}",
        last.1
    );
    assert!(
        last.2.as_deref().is_some_and(|h| h.contains("<strong>done</strong>")),
        "html: {:?}",
        last.2
    );
    assert!(
        !from_bot.iter().any(|(_, body, _)| body.contains("Bash")),
        "tool markers are suppressed"
    );

    // Every action was acknowledged without error.
    world.core.wait_for("acks of all 8 actions", WAIT, |r| (r.acks.len() >= 8).then_some(())).await;
    let acks = world.core.recorded().acks.clone();
    assert!(acks.iter().all(|a| a.error.is_empty()), "acks: {acks:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_dm_round_trip_with_files() {
    let Some(synapse) = synapse("encrypted_dm_round_trip_with_files") else { return };
    let outgoing = tempfile::tempdir().expect("temp dir");
    let report = outgoing.path().join("report.txt");
    std::fs::write(&report, "the report").expect("write the report");
    let report_path = report.to_string_lossy().into_owned();
    let base = default_script();
    let script: Script = Arc::new(move |event| match &event.kind {
        Some(pb::inbound_event::Kind::Message(m)) if m.text == "send the report" => {
            vec![pb::outbound_action::Kind::FinalReply(pb::FinalReply {
                text: "here it is".into(),
                files: vec![pb::Attachment {
                    path: report_path.clone(),
                    mime_type: "text/plain".into(),
                    is_image: false,
                    file_name: "report.txt".into(),
                    ..Default::default()
                }],
                notify: true,
                ..Default::default()
            })]
        }
        _ => base(event),
    });
    let world = World::new(synapse, script).await;
    let gateway = world.start_gateway();
    let room = world.alice.client.create_dm(&world.bot).await.expect("create an encrypted DM");
    let room_id = room.room_id().to_owned();
    world.alice.wait_joined(&room_id, &world.bot).await;
    assert!(room.latest_encryption_state().await.expect("encryption state").is_encrypted());

    world.say(&room_id, "secret hello").await;
    let reply = world.alice.wait_message(&room_id, &world.bot, "echo: secret hello").await;
    assert!(
        matches!(reply, Seen::Message { encrypted: true, .. }),
        "the answer was encrypted: {reply:?}"
    );

    // An encrypted attachment in: downloaded, decrypted, handed to core.
    let config = AttachmentConfig::new();
    room.send_attachment("notes.txt", &mime::TEXT_PLAIN, b"file body".to_vec(), config)
        .await
        .expect("send a file");
    let media = world
        .core
        .wait_for("the media event", WAIT, |r| {
            r.events.iter().find_map(|e| match &e.kind {
                Some(pb::inbound_event::Kind::Media(m)) => Some(m.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(std::fs::read(&media.path).expect("the downloaded file"), b"file body");
    assert!(
        media.path.starts_with(
            &world.home.workspace().join("matrix_files").to_string_lossy().into_owned()
        ),
        "{}",
        media.path
    );
    assert_eq!(
        (media.media_kind.as_str(), media.original_filename.as_str()),
        ("file", "notes.txt")
    );
    world.alice.wait_message(&room_id, &world.bot, "got notes.txt").await;

    // A file out: uploaded encrypted, readable by the user.
    world.say(&room_id, "send the report").await;
    let file = world
        .alice
        .wait_seen("the report file", WAIT, |s| match s {
            Seen::Message { sender, file: Some(file), encrypted, .. } if *sender == world.bot => {
                Some((file.clone(), *encrypted))
            }
            _ => None,
        })
        .await;
    assert!(file.1, "the file message was encrypted");
    let data = world
        .alice
        .client
        .media()
        .get_file(&file.0, false)
        .await
        .expect("download")
        .expect("has a file");
    assert_eq!(data, b"the report");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_chooses_a_model_option() {
    let Some(synapse) = synapse("reaction_chooses_a_model_option") else { return };
    let world = World::new(synapse, default_script()).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[]).await;

    world.say(&room, "!model").await;
    let menu = world.alice.wait_message(&room, &world.bot, "sonnet").await;
    let Seen::Message { event_id: menu_id, body, .. } = menu else {
        unreachable!("wait_message returns messages")
    };
    assert!(
        body.contains("1\u{fe0f}\u{20e3} opus") && body.contains("2\u{fe0f}\u{20e3} sonnet"),
        "{body}"
    );
    assert!(world.core.texts().contains(&"/model".to_owned()), "!model reached core as /model");
    for key in ["1\u{fe0f}\u{20e3}", "2\u{fe0f}\u{20e3}"] {
        world
            .alice
            .wait_seen(&format!("the bot's {key} reaction"), WAIT, |s| match s {
                Seen::Reaction { room: r, sender, target, key: k }
                    if *r == room && *sender == world.bot && *target == menu_id && k == key =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
    }

    let reaction =
        ReactionEventContent::new(Annotation::new(menu_id.clone(), "2\u{fe0f}\u{20e3}".to_owned()));
    world.alice.room(&room).send(reaction).await.expect("react");
    let press = world
        .core
        .wait_for("the button press", WAIT, |r| {
            r.events.iter().find_map(|e| match &e.kind {
                Some(pb::inbound_event::Kind::Button(b)) => Some(b.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(press.button_id, "ms:sonnet");
    assert_eq!(press.message_ref, menu_id.as_str());
    world.alice.wait_message(&room, &world.bot, "pressed ms:sonnet").await;

    // Typing the option's number works too.
    world.say(&room, "1").await;
    world.alice.wait_message(&room, &world.bot, "pressed ms:opus").await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_device_and_does_not_answer_old_messages() {
    let Some(synapse) = synapse("restart_keeps_the_device_and_does_not_answer_old_messages") else {
        return;
    };
    let world = World::new(synapse, default_script()).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[]).await;
    world.say(&room, "before restart").await;
    world.alice.wait_message(&room, &world.bot, "echo: before restart").await;
    world.say(&room, "/model").await;
    let menu = world.alice.wait_message(&room, &world.bot, "sonnet").await;
    let Seen::Message { event_id: menu_id, .. } = menu else { unreachable!("a message") };
    let device = gateway.device_id();
    let matrix_dir = world.home.root().join("matrix");
    assert_eq!(mode(&matrix_dir), 0o700, "the store and session are private");
    assert_eq!(mode(&matrix_dir.join("session.json")), 0o600);
    gateway.stop().await;

    world.say(&room, "while down").await;
    let gateway = world.start_gateway();
    world.alice.wait_message(&room, &world.bot, "echo: while down").await;
    world.say(&room, "after restart").await;
    world.alice.wait_message(&room, &world.bot, "echo: after restart").await;
    assert_eq!(gateway.device_id(), device, "the session was restored, not a new login");
    // A menu sent before the restart still answers to its reactions.
    let reaction =
        ReactionEventContent::new(Annotation::new(menu_id, "2\u{fe0f}\u{20e3}".to_owned()));
    world.alice.room(&room).send(reaction).await.expect("react");
    world.alice.wait_message(&room, &world.bot, "pressed ms:sonnet").await;

    let texts = world.core.texts();
    assert_eq!(
        texts.iter().filter(|t| *t == "before restart").count(),
        1,
        "old message replayed: {texts:?}"
    );
    let hellos = world.core.recorded().hellos.clone();
    assert_eq!(hellos.len(), 2);
    assert_ne!(hellos[0].instance_id, hellos[1].instance_id);
    let devices = bot_devices(&world).await;
    assert_eq!(devices, vec![device], "the bot has exactly one device");
    gateway.stop().await;
}

/// The bot's devices as the homeserver lists them (with the bot's own token).
async fn bot_devices(world: &World) -> Vec<String> {
    let session: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.home.root().join("matrix/session.json")).expect("session.json"),
    )
    .expect("session json");
    let token = session["access_token"].as_str().expect("token");
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/devices", world.synapse.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("list devices")
        .json()
        .await
        .expect("devices json");
    answer["devices"]
        .as_array()
        .expect("devices array")
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_user_never_reaches_core() {
    let Some(synapse) = synapse("unauthorized_user_never_reaches_core") else { return };
    let world = World::new(synapse.clone(), default_script()).await;
    let mallory = TestUser::new(&synapse, &unique("mallory")).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[&mallory.user_id]).await;
    mallory.client.join_room_by_id(&room).await.expect("mallory joins");
    world.alice.wait_joined(&room, &mallory.user_id).await;

    let mallory_room = mallory.room(&room);
    mallory_room
        .send(RoomMessageEventContent::text_plain("from mallory"))
        .await
        .expect("mallory speaks");
    mallory_room
        .send(RoomMessageEventContent::text_plain("!model"))
        .await
        .expect("mallory commands");
    world.say(&room, "from alice").await;
    world.alice.wait_message(&room, &world.bot, "echo: from alice").await;
    // Give a straggler a moment to show up before asserting it never did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inbound = world.core.recorded().events.clone();
    assert!(
        inbound.iter().all(|e| e.sender_id == world.alice.user_id.as_str()),
        "only alice reached core: {inbound:?}"
    );
    let from_bot = world.alice.messages_from(&room, &world.bot);
    assert!(
        !from_bot.iter().any(|(_, body, _)| body.contains("mallory") || body.contains("opus")),
        "{from_bot:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_from_a_stranger_is_rejected() {
    let Some(synapse) = synapse("invite_from_a_stranger_is_rejected") else { return };
    let world = World::new(synapse.clone(), default_script()).await;
    let mallory = TestUser::new(&synapse, &unique("mallory")).await;
    let gateway = world.start_gateway();
    let mut request = CreateRoom::new();
    request.invite = vec![world.bot.clone()];
    let room = mallory.client.create_room(request).await.expect("mallory creates a room");
    mallory.wait_membership(room.room_id(), &world.bot, MembershipState::Leave).await;
    // The allowed user's invite, sent after, is accepted.
    let allowed = world.plain_room(&[]).await;
    world.say(&allowed, "still here").await;
    world.alice.wait_message(&allowed, &world.bot, "echo: still here").await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_mention_only_needs_a_mention_or_a_reply() {
    let Some(synapse) = synapse("group_mention_only_needs_a_mention_or_a_reply") else { return };
    let world = World::new(synapse.clone(), default_script()).await;
    let carol = TestUser::new(&synapse, &unique("carol")).await;
    let mut config = world.config();
    config.matrix.group_mention_only = true;
    config.matrix.allowed_users.push(carol.user_id.to_string());
    let gateway = Gateway::start(&world.home, config);
    let room = world.plain_room(&[&carol.user_id]).await;
    carol.client.join_room_by_id(&room).await.expect("carol joins");
    world.alice.wait_joined(&room, &carol.user_id).await;

    world.say(&room, "hello everyone").await;
    let mention = format!("{} what is up", world.bot.localpart());
    world.say(&room, &mention).await;
    let answer = world.alice.wait_message(&room, &world.bot, "echo: ").await;
    let Seen::Message { event_id, body, .. } = answer else { unreachable!("a message") };
    assert_eq!(body, format!("echo: {mention}"), "the unaddressed message was not answered first");

    // A reply to the bot counts as addressing it.
    let reply = serde_json::json!({
        "msgtype": "m.text",
        "body": "thanks",
        "m.relates_to": { "m.in_reply_to": { "event_id": event_id } },
    });
    world.alice.room(&room).send_raw("m.room.message", reply).await.expect("reply");
    world.alice.wait_message(&room, &world.bot, "echo: thanks").await;
    let texts = world.core.texts();
    assert!(!texts.contains(&"hello everyone".to_owned()), "{texts:?}");
    let event = world
        .core
        .wait_for("the reply", WAIT, |r| {
            r.events.iter().find_map(|e| match &e.kind {
                Some(pb::inbound_event::Kind::Message(m)) if m.text == "thanks" => Some(m.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(event.reply_quote, format!("echo: {mention}"), "the replied-to text is quoted");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_streaming_turns_the_streamed_message_into_the_answer() {
    let Some(synapse) = synapse("edit_streaming_turns_the_streamed_message_into_the_answer") else {
        return;
    };
    let base = default_script();
    let script: Script = Arc::new(move |event| match &event.kind {
        Some(pb::inbound_event::Kind::Message(m)) if m.text == "edit me" => vec![
            pb::outbound_action::Kind::TurnStarted(pb::TurnStarted::default()),
            pb::outbound_action::Kind::TextDelta(pb::TextDeltaAction { text: "part one".into() }),
            pb::outbound_action::Kind::TextDelta(pb::TextDeltaAction { text: " part two".into() }),
            pb::outbound_action::Kind::FinalReply(pb::FinalReply {
                text: "part one part two".into(),
                notify: true,
                ..Default::default()
            }),
        ],
        _ => base(event),
    });
    let world = World::new(synapse, script).await;
    let mut config = world.config();
    config.matrix.streaming = ductor_daemon::config::MatrixStreaming::Edit;
    let gateway = Gateway::start(&world.home, config);
    let room = world.plain_room(&[]).await;
    world.say(&room, "edit me").await;
    let (edited, body) =
        world.bot_edit_containing("the edit into the final answer", "part two").await;
    assert_eq!(body, "part one part two");
    let original = world
        .alice
        .wait_seen("the streamed message", WAIT, |s| match s {
            Seen::Message { event_id, body, replaces: None, .. } if *event_id == edited => {
                Some(body.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(original, "part one", "the first delta was sent, the rest arrived as an edit");
    let hello = world.core.recorded().hellos[0].clone();
    assert!(hello.capabilities.expect("capabilities").can_edit);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_streaming_rolls_over_to_a_new_message_after_max_edits() {
    let Some(synapse) = synapse("edit_streaming_rolls_over_to_a_new_message_after_max_edits")
    else {
        return;
    };
    let delta = |text: &str| {
        pb::outbound_action::Kind::TextDelta(pb::TextDeltaAction { text: text.into() })
    };
    let script: Script = Arc::new(move |_| {
        vec![
            pb::outbound_action::Kind::TurnStarted(pb::TurnStarted::default()),
            delta("alpha"),
            delta(" beta"),
            delta(" gamma"),
            delta(" delta"),
            fake_core::final_reply("alpha beta gamma delta"),
        ]
    });
    // A turn streaming slower than the one-edit-per-second budget, with room
    // for a loaded machine (at 1.1 s apart two deltas could share one edit).
    let world = World::paced(synapse, script, Duration::from_millis(1_500)).await;
    let mut config = world.config();
    config.matrix.streaming = ductor_daemon::config::MatrixStreaming::Edit;
    config.matrix.max_edits = 1;
    let gateway = Gateway::start(&world.home, config);
    let room = world.plain_room(&[]).await;
    world.say(&room, "stream slowly").await;
    // The second message ends as the rest of the answer…
    let (second, tail) =
        world.bot_edit_containing("the rolled-over message's final edit", "delta").await;
    assert_eq!(tail, "gamma delta", "the answer's head stays in the first message");
    // …and the first one, edited once (its budget), holds the head.
    let originals: Vec<(OwnedEventId, String)> = world.alice.seen_now(|s| match s {
        Seen::Message { sender, event_id, body, replaces: None, .. } if *sender == world.bot => {
            Some((event_id.clone(), body.clone()))
        }
        _ => None,
    });
    assert_eq!(originals.len(), 2, "one rollover, two messages: {originals:?}");
    assert_eq!(originals[0].1, "alpha");
    assert_eq!(originals[1], (second, "gamma".to_owned()));
    let edits_of_first: Vec<String> = world.alice.seen_now(|s| match s {
        Seen::Message { replaces: Some(target), body, .. } if *target == originals[0].0 => {
            Some(body.clone())
        }
        _ => None,
    });
    assert_eq!(edits_of_first, ["alpha beta"], "max_edits = 1");
    // The bot typed while the turn ran, and stopped when it ended.
    let bot_typing = || {
        world.alice.seen_now(|s| match s {
            Seen::Typing { room: r, users } if *r == room => Some(users.contains(&world.bot)),
            _ => None,
        })
    };
    let typing: Vec<bool> = bot_typing();
    let started = typing.iter().position(|&bot| bot);
    let started = started.unwrap_or_else(|| panic!("no typing while the turn ran: {typing:?}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let typing = bot_typing();
        if typing[started..].iter().any(|&bot| !bot) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "typing never stopped: {typing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.stop().await;
}

/// The ductor binaries for the end-to-end test: `DUCTOR_BIN_DIR`, else the
/// directory of this test's build (`cargo build --bins` puts them there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_real_core_runner_and_fake_cli() {
    let test = "end_to_end_with_real_core_runner_and_fake_cli";
    let Some(synapse) = synapse(test) else { return };
    let bins = ductor_tests::harness::bin_dir();
    let needed =
        ["ductorctl", "ductor-core", "ductor-runner", "ductor-gateway-matrix", "ductor-fake-cli"];
    if let Some(missing) = needed.iter().find(|b| !bins.join(b).is_file()) {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").as_deref() != Ok("1"),
            "{missing} is missing in {}: run `cargo build --workspace --bins` first",
            bins.display()
        );
        eprintln!("SKIP {test}: {missing} is not built (cargo build --workspace --bins)");
        return;
    }
    let bot = synapse.register(&unique("ductor"), BOT_PASSWORD).await;
    let bot = UserId::parse(bot.as_str()).expect("bot id");
    let alice = TestUser::new(&synapse, &unique("alice")).await;
    let home = tempfile::Builder::new().prefix("dm").tempdir_in("/tmp").expect("temp home");
    let state = tempfile::tempdir().expect("fake CLI state");
    let state = state.path().canonicalize().expect("canonical state dir");
    let config = format!(
        "[launcher]\nrestart_backoff_ms = 20\nrestart_backoff_max_ms = 200\n\n\
         [runner]\nextra_writable_paths = [\"{state}\"]\n\n\
         [providers.claude]\nbinary = \"{fake}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n\n\
         [matrix]\nenabled = true\nhomeserver = \"{url}\"\nuser_id = \"{bot}\"\npassword = \"{BOT_PASSWORD}\"\n\
         allowed_users = [\"{alice}\"]\n",
        state = state.display(),
        fake = bins.join("ductor-fake-cli").display(),
        url = synapse.url,
        alice = alice.user_id,
    );
    std::fs::write(home.path().join("config.toml"), config).expect("write config.toml");
    let ductorctl = |args: &[&str]| {
        let mut command = support::command(bins.join("ductorctl"));
        command.args(args).env("DUCTOR_HOME", home.path()).env("DUCTOR_BIN_DIR", &bins);
        for name in ["DUCTOR_RUN_DIR", "DUCTOR_MATRIX_PASSWORD", "XDG_RUNTIME_DIR", "NOTIFY_SOCKET"]
        {
            command.env_remove(name);
        }
        command.output().expect("run ductorctl")
    };
    let up = ductorctl(&["up", "--detach"]);
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    // Whatever happens below, the services go down with the test.
    struct Down<F: Fn(&[&str]) -> std::process::Output>(F);
    impl<F: Fn(&[&str]) -> std::process::Output> Drop for Down<F> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down"]);
        }
    }
    let guard = Down(&ductorctl);

    let room = alice.client.create_dm(&bot).await.expect("create an encrypted DM");
    let room_id = room.room_id().to_owned();
    alice.wait_joined(&room_id, &bot).await;
    room.send(RoomMessageEventContent::text_plain("hello from matrix")).await.expect("send");
    let reply = alice.wait_message(&room_id, &bot, "echo: hello from matrix").await;
    assert!(matches!(reply, Seen::Message { encrypted: true, .. }), "{reply:?}");

    let down = ductorctl(&["down"]);
    std::mem::forget(guard);
    let session: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("matrix/session.json")).expect("session.json"),
    )
    .expect("session json");
    let token = session["access_token"].as_str().expect("token").to_owned();
    for log in std::fs::read_dir(home.path().join("logs")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert!(!text.contains(&token), "{} leaks the access token", log.path().display());
        assert!(!text.contains(BOT_PASSWORD), "{} leaks the password", log.path().display());
    }
    if !down.status.success() || std::env::var_os("DUCTOR_E2E_LOGS").is_some() {
        for log in std::fs::read_dir(home.path().join("logs")).into_iter().flatten().flatten() {
            eprintln!(
                "== {}\n{}",
                log.path().display(),
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
    }
    assert!(down.status.success(), "down failed: {}", String::from_utf8_lossy(&down.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_is_a_topic_and_is_answered_in_the_thread() {
    let Some(synapse) = synapse("a_thread_is_a_topic_and_is_answered_in_the_thread") else {
        return;
    };
    let world = World::new(synapse, default_script()).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[]).await;
    let root = world.alice.room(&room).send(RoomMessageEventContent::text_plain("root")).await;
    let root = root.expect("send the root").response.event_id;
    world.alice.wait_message(&room, &world.bot, "echo: root").await;
    let in_thread = serde_json::json!({
        "msgtype": "m.text",
        "body": "in thread",
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": true,
            "m.in_reply_to": { "event_id": root },
        },
    });
    world.alice.room(&room).send_raw("m.room.message", in_thread).await.expect("thread message");
    let answer = world.alice.wait_message(&room, &world.bot, "echo: in thread").await;
    let Seen::Message { thread, .. } = answer else { unreachable!("a message") };
    assert_eq!(thread.as_ref(), Some(&root), "answered inside the thread");
    let inbound = world.core.recorded().events.clone();
    let topics: Vec<(String, String)> = inbound
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::inbound_event::Kind::Message(m)) => {
                Some((m.text.clone(), e.chat.clone().unwrap_or_default().topic_id))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        topics,
        vec![("root".to_owned(), String::new()), ("in thread".to_owned(), root.to_string())],
        "a thread's messages carry its root as topic; the thread fallback is not a reply quote"
    );
    assert!(
        inbound.iter().all(|e| match &e.kind {
            Some(pb::inbound_event::Kind::Message(m)) => m.reply_quote.is_empty(),
            _ => true,
        }),
        "{inbound:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_does_not_answer_history() {
    let Some(synapse) = synapse("a_new_device_does_not_answer_history") else { return };
    let world = World::new(synapse, default_script()).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[]).await;
    world.say(&room, "old message").await;
    world.alice.wait_message(&room, &world.bot, "echo: old message").await;
    gateway.stop().await;

    // A fresh home: a new login, a first sync that carries the room's history.
    let dir = tempfile::tempdir().expect("second home");
    let home = DuctorHome::at(dir.path());
    let core = FakeCore::start(&home, default_script()).await;
    let second = Gateway::start(&home, world.config());
    core.wait_for("the new gateway's hello", WAIT, |r| (!r.hellos.is_empty()).then_some(())).await;
    world.say(&room, "new message").await;
    world.alice.wait_message(&room, &world.bot, "echo: new message").await;
    assert_eq!(core.texts(), vec!["new message".to_owned()], "history was not forwarded");
    assert_ne!(second.device_id(), gateway_device(&world.home));
    second.stop().await;
}

fn gateway_device(home: &DuctorHome) -> String {
    let path = home.root().join("matrix/session.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("session.json")).expect("json");
    json["device_id"].as_str().expect("device_id").to_owned()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_core_to_come_back() {
    let Some(synapse) = synapse("messages_wait_for_core_to_come_back") else { return };
    let mut world = World::new(synapse, default_script()).await;
    let gateway = world.start_gateway();
    let room = world.plain_room(&[]).await;
    world.say(&room, "core is up").await;
    world.alice.wait_message(&room, &world.bot, "echo: core is up").await;

    // Core goes away; a message sent meanwhile is delivered once it is back.
    let core = std::mem::replace(&mut world.core, FakeCore::start_later());
    core.stop().await;
    world.say(&room, "while core is down").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.core = FakeCore::start(&world.home, default_script()).await;
    world.alice.wait_message(&room, &world.bot, "echo: while core is down").await;
    let hellos = world.core.recorded().hellos.len();
    assert_eq!(hellos, 1, "the gateway attached again to the new core");
    gateway.stop().await;
}
