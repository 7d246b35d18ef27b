//! The gateway end to end in one process: the real teloxide client against
//! the fake Bot API over loopback HTTP, the real Attach link against a
//! scripted core. Every assertion is on recorded Bot API calls or on what
//! core received.

use std::time::Duration;

use ductor_gateway_telegram::render::{html_to_plain, utf16_len};
use ductor_gateway_telegram::testing::harness::{self, delta, final_reply};
use ductor_gateway_telegram::testing::{
    Call, FakeBotApi, Fault, FaultKind, Harness, Options, updates,
};
use ductor_proto::pb;
use ductor_proto::pb::inbound_event::Kind as In;
use ductor_proto::pb::outbound_action::Kind as Out;

const WAIT: Duration = Duration::from_secs(20);

fn sends_to(calls: &[Call], chat: i64) -> Vec<Call> {
    calls
        .iter()
        .filter(|call| call.method == "sendmessage" && call.chat_id == Some(chat) && call.ok)
        .cloned()
        .collect()
}

#[tokio::test]
async fn unauthorized_senders_never_reach_core() {
    let harness = Harness::start(Options::default()).await;
    harness.api.push_update(updates::text(2, 2, 10, "stranger in private"));
    harness.api.push_update(updates::text(-100, 2, 11, "stranger in allowed group"));
    harness.api.push_update(updates::text(-200, 1, 12, "friend in unlisted group"));
    harness.api.push_update(updates::callback(2, 2, 13, "mq:1"));
    harness.api.push_update(updates::text(1, 1, 14, "friend in private"));
    let events = harness.core.wait_events(1, WAIT).await;
    // The allowed message came last: everything before it was already judged.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = if events.len() == 1 { harness.core.events() } else { events };
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(&events[0].kind, Some(In::Message(m)) if m.text == "friend in private"));
    assert_eq!(events[0].sender_id, "1");
    let leaves = harness.api.calls_of("leavechat");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].chat_id, Some(-200));
    assert!(
        sends_to(&harness.api.calls(), -200)
            .iter()
            .any(|call| call.str("text").is_some_and(|t| t.contains("private")))
    );
    // The refused button press was still answered (no spinning button), but not forwarded.
    assert_eq!(harness.api.calls_of("answercallbackquery").len(), 1);

    // Added to an unlisted group: the bot leaves before anyone writes there.
    harness.api.push_update(updates::bot_added(-300, 1));
    harness.api.push_update(updates::bot_added(-100, 1));
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls
                .iter()
                .any(|c| c.method == "leavechat" && c.chat_id == Some(-300)))
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !harness.api.calls_of("leavechat").iter().any(|c| c.chat_id == Some(-100)),
        "listed groups stay"
    );
}

#[tokio::test]
async fn mention_only_groups_need_a_mention_or_reply() {
    let harness = Harness::start(Options { group_mention_only: true, ..Options::default() }).await;
    harness.api.push_update(updates::text(-100, 1, 10, "chatter between humans"));
    harness.api.push_update(updates::text(-100, 1, 11, "/status@other_bot"));
    harness.api.push_update(updates::text(-100, 1, 12, "@ductor_test_bot what is up"));
    harness.api.push_update(updates::text(-100, 1, 13, "/new@Ductor_Test_Bot"));
    let events = harness.core.wait_events(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(harness.core.events().len(), 2);
    assert!(matches!(&events[0].kind, Some(In::Message(m)) if m.text == "what is up"));
    assert!(matches!(&events[1].kind, Some(In::Message(m)) if m.text == "/new"));
}

#[tokio::test]
async fn forum_topics_round_trip() {
    let harness = Harness::start(Options::default()).await;
    harness.api.push_update(updates::topic_text(-100, 1, 20, 77, "in a topic"));
    let events = harness.core.wait_events(1, WAIT).await;
    let chat = events[0].chat.clone().expect("events name their chat");
    assert_eq!((chat.chat_id.as_str(), chat.topic_id.as_str()), ("-100", "77"));
    let id = harness.act(-100, "77", "t1", final_reply("answer in topic"));
    let ack = harness.core.wait_ack(id, WAIT).await.expect("the final reply is acknowledged");
    assert_eq!(ack.error, "");
    let sends = sends_to(&harness.api.calls(), -100);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].int("message_thread_id"), Some(77));
    assert_eq!(sends[0].str("text"), Some("answer in topic"));
    assert!(!sends[0].silent(), "the final answer notifies");
}

#[tokio::test]
async fn replies_carry_the_quoted_text() {
    let harness = Harness::start(Options::default()).await;
    harness.api.push_update(updates::reply(1, 1, 30, "and why?", "The sky is blue."));
    let events = harness.core.wait_events(1, WAIT).await;
    assert!(
        matches!(&events[0].kind, Some(In::Message(m)) if m.text == "and why?" && m.reply_quote == "The sky is blue.")
    );
}

/// Streams `deltas` into `chat` with `pause` between them, then the final.
async fn stream_turn(
    harness: &Harness,
    chat: i64,
    turn: &str,
    deltas: usize,
    pause: Duration,
    final_text: &str,
) -> u64 {
    harness.act(chat, "", turn, Out::TurnStarted(pb::TurnStarted::default()));
    for i in 0..deltas {
        harness.act(chat, "", turn, delta(&format!("word{i} ")));
        if i % 5 == 0 {
            let tool = pb::ToolActivity {
                name: "Bash".into(),
                summary: "ls".into(),
                finished: i % 10 == 0,
                ok: true,
            };
            harness.act(chat, "", turn, Out::Tool(tool));
        }
        tokio::time::sleep(pause).await;
    }
    harness.act(chat, "", turn, final_reply(final_text))
}

/// Progress calls (edits and previews) of one chat, in order.
fn paced_calls(calls: &[Call], chat: i64) -> Vec<Call> {
    calls
        .iter()
        .filter(|call| {
            call.chat_id == Some(chat)
                && (call.method == "editmessagetext"
                    || (call.method == "sendmessage" && call.silent()))
        })
        .cloned()
        .collect()
}

/// Asserts that `calls` keep to a bucket of `burst` calls at once and one
/// per `interval` after: no window of length t holds more than
/// burst + t / interval of them (arrival times, with 20 ms for jitter).
fn assert_paced(calls: &[&Call], burst: usize, interval: Duration, what: &str) {
    for (i, first) in calls.iter().enumerate() {
        for (j, last) in calls.iter().enumerate().skip(i) {
            let window = last.at.duration_since(first.at) + Duration::from_millis(20);
            let allowed = burst + (window.as_millis() / interval.as_millis()) as usize;
            assert!(j - i < allowed, "{what}: {} calls within {window:?}", j - i + 1);
        }
    }
}

#[tokio::test]
async fn streaming_keeps_to_the_chat_s_pace_and_the_final_notifies_as_a_new_message() {
    let interval = Duration::from_millis(300);
    let harness = Harness::start(Options { edit_interval: interval, ..Options::default() }).await;
    let (a, b) = tokio::join!(
        stream_turn(&harness, 1, "ta", 40, Duration::from_millis(25), "Final **answer** A"),
        stream_turn(&harness, 5, "tb", 40, Duration::from_millis(25), "Final answer B"),
    );
    // Chat 5 is not an allowed user, but outbound actions come from core: the gate is inbound only.
    for id in [a, b] {
        assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    }
    let calls = harness.api.calls();
    for chat in [1, 5] {
        let paced = paced_calls(&calls, chat);
        assert!(paced.len() >= 3, "chat {chat} streamed only {} updates", paced.len());
        let previews: Vec<&Call> = paced.iter().collect();
        // Previews leave the burst's last slot to the final: two at once at most.
        assert_paced(&previews, 2, interval, &format!("chat {chat} previews"));
        let all: Vec<&Call> = calls
            .iter()
            .filter(|c| c.chat_id == Some(chat) && c.ok)
            .filter(|c| c.method == "sendmessage" || c.method == "editmessagetext")
            .collect();
        assert_paced(&all, 3, interval, &format!("chat {chat}"));
        let sends: Vec<_> =
            calls.iter().filter(|c| c.method == "sendmessage" && c.chat_id == Some(chat)).collect();
        assert_eq!(sends.len(), 2, "one preview, edited in place, and the final");
        assert!(sends[0].silent(), "the preview is silent");
        assert!(!sends[1].silent(), "the final notifies");
        let preview_id = sends[0].message_id.expect("the preview was sent");
        assert!(
            calls.iter().any(|c| c.method == "deletemessage"
                && c.chat_id == Some(chat)
                && c.int("message_id") == Some(preview_id)),
            "chat {chat}: the preview is deleted once the final is out"
        );
    }
    let sends = sends_to(&calls, 1);
    assert_eq!(sends[1].str("text"), Some("Final <b>answer</b> A"));
    assert!(sends[0].str("text").is_some_and(|t| t.contains("word0")));
    let edits: Vec<_> =
        calls.iter().filter(|c| c.method == "editmessagetext" && c.chat_id == Some(1)).collect();
    assert!(
        edits.iter().any(|e| e.str("text").is_some_and(|t| t.contains("🔧 Bash"))),
        "tools show in the status line"
    );
    assert!(
        calls.iter().filter(|c| c.method == "sendchataction").count() >= 2,
        "typing is shown for both chats"
    );
}

#[tokio::test]
async fn the_final_text_arrives_despite_429s_and_failed_edits() {
    // With notify_final off the final is an edit of the preview, retried through 429s.
    let options = Options {
        edit_interval: Duration::from_millis(200),
        notify_final: false,
        ..Options::default()
    };
    let harness = Harness::start(options).await;
    harness.api.inject(Fault {
        method: "editmessagetext".into(),
        chat_id: Some(1),
        kind: FaultKind::RetryAfter(1),
        times: 3,
    });
    let id = stream_turn(&harness, 1, "t", 20, Duration::from_millis(20), "All done.").await;
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let calls = harness.api.calls();
    let chat: Vec<&Call> =
        calls.iter().filter(|c| c.chat_id == Some(1) && c.method != "sendchataction").collect();
    let rejected: Vec<&&Call> = chat.iter().filter(|c| !c.ok).collect();
    assert_eq!(rejected.len(), 3, "the three 429s were hit");
    for failed in &rejected {
        let next = chat.iter().find(|c| c.at > failed.at).expect("calls continue after a 429");
        assert!(
            next.at.duration_since(failed.at) >= Duration::from_secs(1),
            "retry_after honoured"
        );
    }
    let last_edit =
        chat.iter().rev().find(|c| c.method == "editmessagetext" && c.ok).expect("the final edit");
    let message_id = last_edit.int("message_id").expect("edits name the message");
    assert_eq!(harness.api.text_of(1, message_id).as_deref(), Some("All done."));

    // An edit that fails for good (the preview was deleted) falls back to a new message.
    harness.act(1, "", "t2", Out::TurnStarted(pb::TurnStarted::default()));
    harness.act(1, "", "t2", delta("partial"));
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().any(|c| c.str("text") == Some("partial")))
            .await
    );
    let preview_id = harness
        .api
        .calls()
        .iter()
        .rev()
        .find(|c| c.str("text") == Some("partial"))
        .map(|c| c.method.clone());
    assert_eq!(preview_id.as_deref(), Some("sendmessage"));
    harness.api.inject(Fault {
        method: "editmessagetext".into(),
        chat_id: Some(1),
        kind: FaultKind::BadEntities,
        times: 2,
    });
    let id = harness.act(1, "", "t2", final_reply("partial and **more**"));
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let calls = harness.api.calls();
    let last = calls
        .iter()
        .rev()
        .find(|c| c.chat_id == Some(1) && c.ok && c.method == "editmessagetext")
        .expect("an edit");
    assert_eq!(
        last.str("text"),
        Some("partial and more"),
        "plain-text retry after the HTML was refused"
    );
    assert!(last.str("parse_mode").is_none());
}

#[tokio::test]
async fn html_rejected_by_telegram_is_resent_as_plain_text() {
    let harness = Harness::start(Options::default()).await;
    harness.api.inject(Fault {
        method: "sendmessage".into(),
        chat_id: Some(1),
        kind: FaultKind::BadEntities,
        times: 1,
    });
    let id = harness.act(1, "", "t", final_reply("**bold** <tag> & `code`"));
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let sends = harness.api.calls_of("sendmessage");
    assert_eq!(sends.len(), 2);
    assert!(!sends[0].ok);
    assert_eq!(sends[0].str("parse_mode"), Some("HTML"));
    assert_eq!(sends[0].str("text"), Some("<b>bold</b> &lt;tag&gt; &amp; <code>code</code>"));
    assert!(sends[1].ok);
    assert!(sends[1].str("parse_mode").is_none());
    assert_eq!(sends[1].str("text"), Some("bold <tag> & code"));
}

#[tokio::test]
async fn long_replies_split_under_the_utf16_limit_without_breaking_code() {
    let harness = Harness::start(Options::default()).await;
    let code: String = (0..250).map(|i| format!("println!(\"{i} 😀\");\n")).collect();
    let text =
        format!("{}\n\n```rust\n{code}```\n\n{}", "Emoji 🎉 galore. ".repeat(200), "The end 🧪.");
    let id = harness.act(1, "", "t", final_reply(&text));
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let sends = sends_to(&harness.api.calls(), 1);
    assert!(sends.len() >= 3, "{} parts", sends.len());
    let mut plain = String::new();
    for send in &sends {
        let html = send.str("text").expect("text messages");
        assert!(utf16_len(html) <= 4096, "{} units", utf16_len(html));
        assert_eq!(
            html.matches("<pre>").count(),
            html.matches("</pre>").count(),
            "balanced code block in {html:.80}"
        );
        plain.push_str(&html_to_plain(html));
        plain.push('\n');
    }
    for i in 0..250 {
        assert_eq!(
            plain.matches(&format!("println!(\"{i} 😀\");")).count(),
            1,
            "code line {i} kept whole"
        );
    }
    assert!(plain.contains("The end 🧪."));
    let notifying = sends.iter().filter(|s| !s.silent()).count();
    assert_eq!(notifying, 1, "a long answer notifies once");
}

#[tokio::test]
async fn buttons_round_trip_through_core_and_callbacks() {
    let harness = Harness::start(Options::default()).await;
    let buttons = vec![pb::ButtonRow {
        buttons: vec![pb::Button { id: "ms:opus".into(), label: "Opus".into() }],
    }];
    let reply =
        pb::FinalReply { text: "Pick a model".into(), buttons, notify: true, ..Default::default() };
    let id = harness.act(1, "", "t", Out::FinalReply(reply));
    harness.core.wait_ack(id, WAIT).await.expect("acknowledged");
    let send = sends_to(&harness.api.calls(), 1).pop().expect("the menu was sent");
    let keyboard = &send.params["reply_markup"]["inline_keyboard"];
    assert_eq!(keyboard[0][0]["text"], "Opus");
    assert_eq!(keyboard[0][0]["callback_data"], "ms:opus");
    harness.api.push_update(updates::callback(1, 1, 1001, "ms:opus"));
    let events = harness.core.wait_events(1, WAIT).await;
    assert!(
        matches!(&events[0].kind, Some(In::Button(b)) if b.button_id == "ms:opus" && b.message_ref == "1001")
    );
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().any(|c| c.method == "answercallbackquery"))
            .await
    );

    // A keyboard sent before core parsed the agent's markers carries the
    // label as `ductor:say:`; a press on it reaches core as that agent button.
    harness.api.push_update(updates::callback(1, 1, 1002, "ductor:say:No"));
    let events = harness.core.wait_events(2, WAIT).await;
    assert!(matches!(&events[1].kind, Some(In::Button(b)) if b.button_id == "b:No"));
}

#[tokio::test]
async fn selector_menus_edit_in_place_and_queue_notices_clear() {
    let harness = Harness::start(Options::default()).await;
    let menu = |text: &str| {
        Out::Selector(pb::SelectorMenu {
            selector_id: "model".into(),
            text: text.into(),
            buttons: vec![pb::ButtonRow {
                buttons: vec![pb::Button { id: "ms:x".into(), label: "X".into() }],
            }],
        })
    };
    let first = harness.act(1, "", "", menu("Step 1"));
    harness.core.wait_ack(first, WAIT).await.expect("acknowledged");
    let second = harness.act(1, "", "", menu("Step 2"));
    harness.core.wait_ack(second, WAIT).await.expect("acknowledged");
    let sends = sends_to(&harness.api.calls(), 1);
    assert_eq!(sends.len(), 1);
    let edits = harness.api.calls_of("editmessagetext");
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].str("text"), Some("Step 2"));
    assert!(edits[0].params.get("reply_markup").is_some());

    let notice = pb::QueueNotice {
        entry_id: "e1".into(),
        text: "Queued (1 ahead)".into(),
        buttons: vec![pb::ButtonRow {
            buttons: vec![pb::Button { id: "mq:e1".into(), label: "Cancel".into() }],
        }],
    };
    let id = harness.act(1, "", "", Out::QueueNotice(notice));
    harness.core.wait_ack(id, WAIT).await.expect("acknowledged");
    let sent = sends_to(&harness.api.calls(), 1).pop().expect("the notice");
    assert_eq!(sent.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"], "mq:e1");
    let id = harness.act(
        1,
        "",
        "",
        Out::QueueClear(pb::QueueNoticeClear { entry_id: "e1".into(), reason: "started".into() }),
    );
    harness.core.wait_ack(id, WAIT).await.expect("acknowledged");
    assert_eq!(harness.api.calls_of("deletemessage").len(), 1);
}

#[tokio::test]
async fn documents_are_downloaded_into_the_workspace() {
    let harness = Harness::start(Options { max_download_bytes: 1000, ..Options::default() }).await;
    harness.api.add_file("doc1", "documents/file_1.txt", b"hello from a file".to_vec());
    harness.api.push_update(updates::document(1, 1, 40, "doc1", "notes.txt", 17, "please read"));
    let events = harness.core.wait_events(1, WAIT).await;
    let Some(In::Media(media)) = &events[0].kind else { panic!("a media event: {events:?}") };
    assert_eq!(media.caption, "please read");
    assert_eq!(media.media_kind, "document");
    assert_eq!(media.original_filename, "notes.txt");
    assert_eq!(media.size_bytes, 17);
    let path = std::path::Path::new(&media.path);
    assert!(path.starts_with(harness.workspace.path().join("telegram_files")));
    assert_eq!(std::fs::read(path).expect("the file was written"), b"hello from a file");

    // Photos: the largest size, named after the remote file.
    harness.api.add_file("ph1", "photos/file_9.jpg", vec![0xff; 64]);
    harness.api.push_update(updates::photo(1, 1, 42, "ph1", 64));
    let events = harness.core.wait_events(2, WAIT).await;
    let Some(In::Media(photo)) = &events[1].kind else { panic!("a photo event: {events:?}") };
    assert_eq!((photo.media_kind.as_str(), photo.mime_type.as_str()), ("photo", "image/jpeg"));
    assert!(photo.path.ends_with("42_photo.jpg"), "{}", photo.path);
    assert_eq!(std::fs::read(&photo.path).expect("written").len(), 64);

    // Too big: not downloaded, not forwarded, the user is told.
    harness.api.add_file("big", "documents/big.bin", vec![0; 5000]);
    harness.api.push_update(updates::document(1, 1, 41, "big", "big.bin", 5000, ""));
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls
                .iter()
                .any(|c| c.str("text").is_some_and(|t| t.contains("limit"))))
            .await
    );
    assert_eq!(harness.core.events().len(), 2);
}

/// The workspace is agent-writable: a dated folder or a file name the agent
/// planted as a link is not written through (review M1).
#[tokio::test]
async fn downloads_never_write_through_a_planted_link() {
    let harness = Harness::start(Options::default()).await;
    let victim = tempfile::tempdir().expect("victim");
    let files = harness.workspace.path().join("telegram_files");
    std::fs::create_dir_all(&files).expect("files");
    let day = jiff::Zoned::now().strftime("%Y-%m-%d").to_string();
    std::os::unix::fs::symlink(victim.path(), files.join(&day)).expect("link today");
    harness.api.add_file("f1", "documents/x", b"payload".to_vec());
    harness.api.push_update(updates::document(1, 1, 77, "f1", "notes.txt", 7, ""));
    assert!(
        harness.api.wait_until(WAIT, |calls| calls.iter().any(|c| c.method == "sendmessage")).await,
        "the user is told the file could not be taken"
    );
    assert!(!victim.path().join("77_notes.txt").exists(), "nothing written through the link");
    // The file name itself planted as a link to a file to clobber.
    std::fs::remove_file(files.join(&day)).expect("unlink");
    std::fs::create_dir(files.join(&day)).expect("today");
    let target = victim.path().join("config.toml");
    std::fs::write(&target, "precious").expect("target");
    std::os::unix::fs::symlink(&target, files.join(&day).join("78_notes.txt")).expect("link");
    harness.api.add_file("f2", "documents/y", b"payload".to_vec());
    harness.api.push_update(updates::document(1, 1, 78, "f2", "notes.txt", 7, ""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "precious");
    assert!(
        harness.core.events().is_empty(),
        "neither download reached core: {:?}",
        harness.core.events()
    );
}

/// A file approved by core and then swapped (for a link to a secret, or for
/// another file) is not sent (review M2).
#[tokio::test]
async fn a_file_swapped_after_core_approved_it_is_not_sent() {
    let harness = Harness::start(Options::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.txt");
    std::fs::write(&path, b"harmless").expect("write");
    let (id, size) = ductor_daemon::safe_fs::identify(&path, 1 << 20).expect("identify");
    let secret = dir.path().join("config.toml");
    std::fs::write(&secret, b"TOKEN=SECRET").expect("secret");
    std::fs::remove_file(&path).expect("unlink");
    std::os::unix::fs::symlink(&secret, &path).expect("swap for a link");
    let files = vec![pb::Attachment {
        path: path.to_string_lossy().into(),
        mime_type: "text/plain".into(),
        file_name: "a.txt".into(),
        dev: id.dev,
        ino: id.ino,
        changed_ns: id.changed_ns,
        size,
        ..Default::default()
    }];
    let reply = pb::FinalReply { text: "Here".into(), files, ..Default::default() };
    let action = harness.act(1, "", "t", Out::FinalReply(reply));
    let ack = harness.core.wait_ack(action, WAIT).await.expect("acknowledged");
    assert!(ack.error.contains("not sent"), "{}", ack.error);
    assert!(harness.api.calls_of("senddocument").is_empty(), "nothing uploaded");
}

#[tokio::test]
async fn attached_files_go_out_as_photos_and_documents() {
    let harness = Harness::start(Options::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("chart.png");
    let report = dir.path().join("report.txt");
    std::fs::write(&image, b"\x89PNG fake").expect("write");
    std::fs::write(&report, b"report").expect("write");
    let files = vec![
        pb::Attachment {
            path: image.to_string_lossy().into(),
            mime_type: "image/png".into(),
            is_image: true,
            file_name: "chart.png".into(),
            ..Default::default()
        },
        pb::Attachment {
            path: report.to_string_lossy().into(),
            mime_type: "text/plain".into(),
            is_image: false,
            file_name: "report.txt".into(),
            ..Default::default()
        },
    ];
    let id = harness.act(
        1,
        "",
        "t",
        Out::FinalReply(pb::FinalReply { text: "Here you go".into(), files, ..Default::default() }),
    );
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let photos = harness.api.calls_of("sendphoto");
    let documents = harness.api.calls_of("senddocument");
    assert_eq!(photos.len(), 1);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].params["document"]["file_name"], "report.txt");
}

#[tokio::test]
async fn core_s_command_list_is_registered_and_the_token_is_never_in_errors() {
    let harness = Harness::start(Options::default()).await;
    let registered = |api: &FakeBotApi| {
        api.calls_of("setmycommands")
            .iter()
            .map(|call| {
                let list = call.params["commands"].as_array().expect("a list");
                list.iter()
                    .map(|c| {
                        (
                            c["command"].as_str().unwrap_or("").to_owned(),
                            c["description"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().any(|c| c.method == "setmycommands"))
            .await
    );
    let expected: Vec<(String, String)> =
        harness::COMMANDS.iter().map(|(n, d)| ((*n).to_owned(), (*d).to_owned())).collect();
    assert_eq!(registered(&harness.api), vec![expected.clone()], "exactly core's list, once");

    // A reattach with the same list registers nothing; a new list is registered.
    harness.core.disconnect();
    assert!(harness.core.wait_hellos(2, WAIT).await);
    harness.core.set_commands(&[("new", "Fresh session"), ("cron", "Scheduled jobs")]);
    harness.core.disconnect();
    assert!(harness.core.wait_hellos(3, WAIT).await);
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().filter(|c| c.method == "setmycommands").count()
                == 2)
            .await
    );
    assert_eq!(
        registered(&harness.api)[1],
        vec![
            ("new".to_owned(), "Fresh session".to_owned()),
            ("cron".to_owned(), "Scheduled jobs".to_owned())
        ]
    );

    // A Bot API that is down: the error text must not carry the token.
    let config = ductor_daemon::config::TelegramConfig {
        token: ductor_daemon::Secret::new(harness::TOKEN),
        api_url: "http://127.0.0.1:9".into(),
        ..Default::default()
    };
    let telegram = ductor_gateway_telegram::telegram_from_config(&config).expect("valid");
    let target = ductor_gateway_telegram::telegram::Target {
        chat: teloxide::types::ChatId(1),
        thread: None,
    };
    let failure = telegram
        .send(target, ductor_gateway_telegram::telegram::Body::Plain("x"), true, None)
        .await
        .expect_err("nothing listens on port 9");
    let text = format!("{failure} {failure:?}");
    assert!(!text.contains("TEST-SECRET"), "{text}");
}

#[tokio::test]
async fn the_core_link_survives_a_core_restart_without_losing_or_repeating_anything() {
    let harness = Harness::start(Options::default()).await;
    // Core receives an event but goes away before confirming it.
    harness.core.set_accepting(false);
    harness.api.push_update(updates::text(1, 1, 50, "do not lose me"));
    assert!(harness.core.wait_received(1, WAIT).await);
    harness.core.set_accepting(true);
    harness.core.disconnect();
    assert!(harness.core.wait_hellos(2, WAIT).await, "the gateway reattached");
    assert!(harness.core.wait_received(2, WAIT).await, "the unconfirmed event was sent again");
    assert_eq!(harness.core.events().len(), 1);

    // An action delivered before a restart and re-sent after it is acked, not re-delivered.
    let id = harness.act(1, "", "t", final_reply("exactly once"));
    harness.core.wait_ack(id, WAIT).await.expect("acknowledged");
    harness.core.disconnect();
    assert!(harness.core.wait_hellos(3, WAIT).await);
    assert!(harness.core.wait_attached(WAIT).await);
    let again = pb::OutboundAction {
        action_id: id,
        chat: Some(pb::ChatRef { chat_id: "1".into(), topic_id: String::new() }),
        turn_id: "t".into(),
        durable: true,
        kind: Some(final_reply("exactly once")),
        ..Default::default()
    };
    assert!(harness.core.send(again));
    let acked_twice = async {
        while harness.core.acks().iter().filter(|ack| ack.action_id == id).count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, acked_twice).await.expect("the re-sent action is acked");
    let sends = sends_to(&harness.api.calls(), 1);
    assert_eq!(sends.iter().filter(|s| s.str("text") == Some("exactly once")).count(), 1);
    assert_eq!(harness.core.received(), 2, "the confirmed event is not sent a third time");
}

#[tokio::test]
async fn an_error_ends_the_turn_below_the_streamed_text() {
    let harness = Harness::start(Options::default()).await;
    harness.act(1, "", "t", Out::TurnStarted(pb::TurnStarted::default()));
    harness.act(1, "", "t", delta("Half an answer"));
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().any(|c| c.str("text") == Some("Half an answer")))
            .await
    );
    let error = pb::ErrorReply {
        message: "the run timed out <after 10 min>".into(),
        kind: "timeout".into(),
    };
    let id = harness.act(1, "", "t", Out::Error(error));
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let sends = sends_to(&harness.api.calls(), 1);
    assert!(sends[0].silent(), "the preview is silent");
    assert!(!sends[1].silent(), "the error notifies");
    assert_eq!(
        sends[1].str("text"),
        Some("Half an answer\n\n⚠️ the run timed out &lt;after 10 min&gt;")
    );
    let preview_id = sends[0].message_id.expect("the preview was sent");
    let deleted = harness.api.calls_of("deletemessage");
    assert!(deleted.iter().any(|c| c.int("message_id") == Some(preview_id)));
}

#[tokio::test]
async fn a_status_alone_sends_nothing_and_a_final_after_a_preview_is_not_held_back() {
    // A long interval: a final that waited for the pace would be seconds late.
    let interval = Duration::from_secs(5);
    let harness = Harness::start(Options { edit_interval: interval, ..Options::default() }).await;
    harness.act(1, "", "t", Out::TurnStarted(pb::TurnStarted::default()));
    let requesting = pb::StatusAction { status: "requesting".into(), detail: String::new() };
    harness.act(1, "", "t", Out::Status(requesting));
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().any(|c| c.method == "sendchataction"))
            .await,
        "typing covers \"working\""
    );
    // Nothing else may come: give a wrong placeholder every chance to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sends_to(&harness.api.calls(), 1).is_empty(), "no placeholder message");

    harness.act(1, "", "t", delta("Hello"));
    assert!(
        harness
            .api
            .wait_until(WAIT, |calls| calls.iter().any(|c| c.str("text") == Some("Hello")))
            .await,
        "the first message is the real text"
    );
    let id = harness.act(1, "", "t", final_reply("Hello there"));
    assert_eq!(harness.core.wait_ack(id, WAIT).await.map(|ack| ack.error), Some(String::new()));
    let sends = sends_to(&harness.api.calls(), 1);
    assert_eq!(sends.len(), 2, "{sends:#?}");
    assert_eq!(sends[1].str("text"), Some("Hello there"));
    let held = sends[1].at.duration_since(sends[0].at);
    assert!(held < interval, "the final waited {held:?} behind its preview");
}
