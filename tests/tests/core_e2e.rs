//! Issue 4, end to end: `ductorctl up` with the real runner and core, the
//! fake claude CLI (`ductor-fake-cli`), and either `ductorctl ask` or a small
//! test gateway speaking `Core.Attach`. Needs `cargo build --bins` first.

use std::time::Duration;

use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use ductor_proto::pb::runner_client::RunnerClient;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::{self, TestEnv, wait_for};
use nix::sys::signal::Signal;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `--resume` argument of the fake CLI's last run, if any.
fn last_resume(env: &TestEnv) -> Option<String> {
    let path = env.home().join("fake-state/last-argv.json");
    let text = std::fs::read_to_string(path).ok()?;
    let argv: Vec<String> = serde_json::from_str(&text).ok()?;
    let at = argv.iter().position(|a| a == "--resume")?;
    argv.get(at + 1).cloned()
}

async fn ask(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let mut full = vec!["ask"];
    full.extend_from_slice(args);
    env.ductorctl(&full).await
}

async fn runs(env: &TestEnv) -> Vec<pb::RunInfo> {
    let mut client = RunnerClient::new(env.channel("runner"));
    match client.list_runs(pb::ListRunsRequest::default()).await {
        Ok(response) => response.into_inner().runs,
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_replies_and_the_next_ask_resumes_the_same_session() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let first = ask(&env, &["--chat", "c1", "hello", "there"]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("echo: hello there"), "{}", stdout(&first));
    assert_eq!(last_resume(&env), None, "the first turn starts a new session");

    let second = ask(&env, &["--chat", "c1", "again"]).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("echo: again"));
    let session = last_resume(&env).expect("the second ask resumes");

    let status = ask(&env, &["--chat", "c1", "/status"]).await;
    let text = stdout(&status);
    assert!(text.contains(&session[..8]), "{text}");
    assert!(text.contains("2 messages"), "{text}");

    // Another chat is another session.
    let other = ask(&env, &["--chat", "c2", "hi"]).await;
    assert!(other.status.success());
    assert_eq!(last_resume(&env), None);

    // /new starts over.
    let new = ask(&env, &["--chat", "c1", "/new"]).await;
    assert!(stdout(&new).contains("Fresh claude session"), "{}", stdout(&new));
    ask(&env, &["--chat", "c1", "fresh"]).await;
    assert_eq!(last_resume(&env), None);
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_switching_keeps_the_other_providers_bucket() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    assert!(ask(&env, &["one"]).await.status.success());
    assert!(ask(&env, &["two"]).await.status.success());
    let claude_session = last_resume(&env).expect("resumed");

    let switch = ask(&env, &["/model", "codex"]).await;
    assert!(switch.status.success());
    assert!(stdout(&switch).contains("codex"), "{}", stdout(&switch));
    assert!(stdout(&switch).contains("claude session is kept"), "{}", stdout(&switch));
    // No codex CLI here: the turn fails, with the reason on stderr.
    let failed = ask(&env, &["on codex"]).await;
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("codex"), "{}", stderr(&failed));

    let menu = ask(&env, &["/model"]).await;
    assert!(stdout(&menu).contains("1. claude"), "numbered options: {}", stdout(&menu));
    let back = ask(&env, &["/model", "claude"]).await;
    assert!(back.status.success());
    let resumed = ask(&env, &["back on claude"]).await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(last_resume(&env).as_deref(), Some(claude_session.as_str()));
    assert!(env.ductorctl(&["down"]).await.status.success());
}

const TRANSPORT: &str = "testgw";
const CHAT: &str = "room";

/// A test gateway that can edit, upload and show keyboards.
async fn attach(env: &TestEnv) -> Gateway {
    let capabilities = pb::Capabilities {
        max_message_len: 4096,
        can_edit: true,
        buttons: pb::ButtonStyle::Keyboard as i32,
        topics: false,
        file_upload: true,
    };
    let hello = pb::Hello { capabilities: Some(capabilities), ..gateway::hello(TRANSPORT) };
    Gateway::attach(env.channel("core"), hello).await
}

use pb::outbound_action::Kind;

fn final_text(action: &pb::OutboundAction, event: &str) -> Option<String> {
    match &action.kind {
        Some(Kind::FinalReply(reply)) if action.reply_to_event == event => Some(reply.text.clone()),
        _ => None,
    }
}

fn error_kind(action: &pb::OutboundAction, event: &str) -> Option<String> {
    match &action.kind {
        Some(Kind::Error(error)) if action.reply_to_event == event => Some(error.kind.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_cancel_interrupt_and_stop() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let mut gw = attach(&env).await;

    let long = gw.say(CHAT, "slow:60 first").await;
    gw.until("turn started", |a| matches!(a.kind, Some(Kind::TurnStarted(_))).then_some(())).await;
    let second = gw.say(CHAT, "second").await;
    let cancel = gw
        .until("queue notice", |a| match &a.kind {
            Some(Kind::QueueNotice(q)) if a.reply_to_event == second => {
                Some(q.buttons[0].buttons[0].id.clone())
            }
            _ => None,
        })
        .await;
    let third = gw.say(CHAT, "third").await;
    gw.until("second queue notice", |a| {
        matches!(&a.kind, Some(Kind::QueueNotice(_)) if a.reply_to_event == third).then_some(())
    })
    .await;
    // Quick commands answer while the turn runs.
    let status = gw.say(CHAT, "/status").await;
    let text = gw
        .until("status", |a| match &a.kind {
            Some(Kind::Notice(n)) if a.reply_to_event == status => Some(n.text.clone()),
            _ => None,
        })
        .await;
    assert!(text.contains("Running") && text.contains("2 queued"), "{text}");

    gw.press(CHAT, &cancel).await;
    gw.until("cancelled", |a| match &a.kind {
        Some(Kind::QueueClear(c)) if c.reason == "cancelled" => Some(()),
        _ => None,
    })
    .await;

    gw.say(CHAT, "/interrupt").await;
    let kind = gw
        .until("the interrupted turn ends", |a| {
            error_kind(a, &long).or_else(|| final_text(a, &long).map(|_| "final".to_owned()))
        })
        .await;
    assert!(kind == "interrupted" || kind == "final", "interrupt ends the turn: {kind}");
    // The queue survives an interrupt: "third" runs, "second" (cancelled) does not.
    let answer = gw.until("third's answer", |a| final_text(a, &third)).await;
    assert_eq!(answer, "echo: third");

    let long = gw.say(CHAT, "slow:60 fourth").await;
    gw.until("turn started", |a| matches!(a.kind, Some(Kind::TurnStarted(_))).then_some(())).await;
    let fifth = gw.say(CHAT, "fifth").await;
    gw.until("queued", |a| {
        matches!(&a.kind, Some(Kind::QueueNotice(_)) if a.reply_to_event == fifth).then_some(())
    })
    .await;
    gw.say(CHAT, "/stop").await;
    let mut dropped = false;
    let mut stopped = false;
    while !(dropped && stopped) {
        let action = gw.next().await;
        match &action.kind {
            Some(Kind::QueueClear(c)) if action.reply_to_event == fifth => {
                assert_eq!(c.reason, "dropped");
                dropped = true;
            }
            Some(Kind::Error(e)) if action.reply_to_event == long => {
                assert_eq!(e.kind, "stopped");
                stopped = true;
            }
            Some(Kind::FinalReply(_)) => panic!("nothing may answer after /stop: {action:?}"),
            _ => {}
        }
    }
    wait_for("no runs left", async || runs(&env).await.is_empty().then_some(())).await;
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_stream_still_gets_the_final_reply() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let mut gw = attach(&env).await;
    let event = gw.say(CHAT, "slow:15 streamed").await;
    gw.until("a delta", |a| matches!(a.kind, Some(Kind::TextDelta(_))).then_some(())).await;
    drop(gw);
    // The turn finishes while no gateway is attached: its reply waits in the outbox.
    wait_for("the reply waits in the outbox", async || {
        let mut core = CoreClient::new(env.channel("core"));
        let described = core.describe(pb::DescribeRequest {}).await.ok()?.into_inner();
        (described.active_turns == 0 && described.outbox_pending >= 1).then_some(())
    })
    .await;
    let mut gw = attach(&env).await;
    assert!(gw.welcome.pending >= 1, "the final reply waits in the outbox: {:?}", gw.welcome);
    let text = gw.until("the final reply", |a| final_text(a, &event)).await;
    assert_eq!(text, "echo: slow:15 streamed");
    // Acknowledged: a third connection gets nothing again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(gw);
    let gw = attach(&env).await;
    assert_eq!(gw.welcome.pending, 0);
    // Duplicate event ids are accepted but not run twice.
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_killed_mid_turn_reports_interrupted_and_keeps_the_session() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    assert!(ask(&env, &["--chat", "k", "remember me"]).await.status.success());
    assert!(ask(&env, &["--chat", "k", "still there"]).await.status.success());
    let session = last_resume(&env).expect("resumed");

    let mut waiting = env.command("ductorctl");
    waiting
        .args(["ask", "--chat", "k", "slow:100 long job"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let waiting = waiting.spawn().expect("spawn ductorctl ask");
    wait_for("the long turn runs", async || (!runs(&env).await.is_empty()).then_some(())).await;
    let core = env.service_status("core").await.expect("core row");
    let pid = core["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).expect("core pid");
    harness::signal(pid, Signal::SIGKILL);

    // The launcher restarts core; the waiting ask reconnects and is told.
    let output = tokio::time::timeout(harness::patience() * 2, waiting.wait_with_output())
        .await
        .expect("ask ends")
        .expect("ask ran");
    assert!(!output.status.success(), "an interrupted turn is a failure");
    assert!(stderr(&output).contains("interrupted"), "{}", stderr(&output));
    wait_for("the runner stopped the orphaned run", async || {
        runs(&env).await.is_empty().then_some(())
    })
    .await;

    let after = ask(&env, &["--chat", "k", "after the crash"]).await;
    assert!(after.status.success(), "{}", stderr(&after));
    assert_eq!(last_resume(&env).as_deref(), Some(session.as_str()), "the session survived");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_killed_mid_turn_is_reported_and_the_next_turn_resumes() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    assert!(ask(&env, &["--chat", "r", "first"]).await.status.success());
    assert!(ask(&env, &["--chat", "r", "second"]).await.status.success());
    let session = last_resume(&env).expect("resumed");

    let mut waiting = env.command("ductorctl");
    waiting
        .args(["ask", "--chat", "r", "slow:100 long job"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let waiting = waiting.spawn().expect("spawn ductorctl ask");
    wait_for("the long turn runs", async || (!runs(&env).await.is_empty()).then_some(())).await;
    let runner = env.service_status("runner").await.expect("runner row");
    let pid = runner["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).expect("runner pid");
    harness::signal(pid, Signal::SIGKILL);

    let output = tokio::time::timeout(harness::patience(), waiting.wait_with_output())
        .await
        .expect("ask ends")
        .expect("ask ran");
    assert!(!output.status.success());
    assert!(stderr(&output).contains("interrupted"), "{}", stderr(&output));
    env.wait_healthy(&["runner", "core"]).await;
    let after = ask(&env, &["--chat", "r", "after the runner crash"]).await;
    assert!(after.status.success(), "{}", stderr(&after));
    assert_eq!(last_resume(&env).as_deref(), Some(session.as_str()), "the session survived");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
