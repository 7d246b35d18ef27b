//! Issue 15 end to end: the real claude against the fake model API, through
//! the real runner and core, with a test gateway playing the chat.
//!
//! - `ask` mode: a tool use that needs permission reaches the chat as a
//!   selector with the command in full; "allow once" lets it run, "allow for
//!   this session" answers the next request itself, "deny" keeps it from
//!   running and tells the agent; `/status` shows the decisions and the
//!   audit log (state.db) has every one.
//! - An unanswered request is denied after the timeout.
//! - A restart while a request waits is reported, never approved.
//! - `while_busy = "steer"`: a message during a turn goes into it and gets
//!   its own reply, with no queue.
//!
//! Needs the pinned claude (`tests/setup/install-clis.sh`) and `cargo build --bins`.

use std::time::Duration;

use ductor_tests::fake_model::{FakeModel, RISKY_COMMAND, RISKY_FILE, TOOL_DONE_TEXT};
use ductor_tests::gateway::Chat;
use ductor_tests::harness::TestEnv;
use ductor_tests::real_cli::{Cli, real_cli_home};

const TRANSPORT: &str = "testgw";
const CHAT: &str = "room";
const LONG: Duration = Duration::from_secs(60);

/// The real claude with `agent` settings appended to `[agent]`; `None`
/// (after a SKIP line) without it.
async fn stack(agent: &str) -> Option<(TestEnv, FakeModel, tempfile::TempDir)> {
    stack_of(Cli::Claude, agent).await
}

/// [`stack`] with `cli` as the chat's provider.
async fn stack_of(cli: Cli, agent: &str) -> Option<(TestEnv, FakeModel, tempfile::TempDir)> {
    let (env, model, cli_home) = real_cli_home(cli, agent, "").await?;
    env.up().await;
    Some((env, model, cli_home))
}

/// Waits until the runner has no live run (a turn's CLI may exit a little
/// after its answer went out; a message sent before that is queued).
async fn wait_until_idle(env: &TestEnv) {
    let mut runner = ductor_proto::pb::runner_client::RunnerClient::new(env.channel("runner"));
    ductor_tests::harness::wait_for("the runner to be idle", async || {
        let request = ductor_proto::pb::ListRunsRequest::default();
        let runs = runner.list_runs(request).await.ok()?.into_inner().runs;
        runs.is_empty().then_some(())
    })
    .await;
}

fn risky_file(env: &TestEnv) -> std::path::PathBuf {
    env.home().join("workspace").join(RISKY_FILE)
}

/// Asks for something risky and returns the approval menu's button ids.
async fn ask_risky(chat: &mut Chat) -> Vec<String> {
    chat.gateway.say(CHAT, "please do something risky").await;
    let menu = chat.expect(CHAT, "🔐 The agent asks to use Bash", LONG).await;
    assert_eq!(menu.kind, "menu", "{menu:?}");
    assert!(menu.text.contains(&format!("$ {RISKY_COMMAND}")), "the command in full: {menu:?}");
    assert_eq!(menu.buttons.len(), 3, "{menu:?}");
    menu.buttons
}

fn button<'a>(buttons: &'a [String], choice: &str) -> &'a str {
    buttons.iter().find(|b| b.ends_with(&format!(":{choice}"))).expect("the button")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_asked_in_the_chat_and_the_answers_reach_claude() {
    let Some((env, model, _home)) = stack("permission_mode = \"ask\"").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;

    // Allow once: it runs, and the menu says so.
    let buttons = ask_risky(&mut chat).await;
    assert!(!risky_file(&env).exists(), "nothing ran before the answer");
    chat.gateway.press(CHAT, button(&buttons, "y")).await;
    chat.expect(CHAT, "Allowed once", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(risky_file(&env).exists(), "the allowed command ran");

    // Deny: it does not run, and the agent hears why.
    std::fs::remove_file(risky_file(&env)).expect("remove the file");
    let buttons = ask_risky(&mut chat).await;
    chat.gateway.press(CHAT, button(&buttons, "n")).await;
    chat.expect(CHAT, "Denied", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(!risky_file(&env).exists(), "the denied command did not run");
    let told = model.generations().into_iter().rev().find(|r| r.body_contains("denied this tool"));
    assert!(told.is_some(), "the model was told of the denial");

    // Allow for this session: the next request is answered without asking.
    let buttons = ask_risky(&mut chat).await;
    chat.gateway.press(CHAT, button(&buttons, "s")).await;
    chat.expect(CHAT, "allowed for this session", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    std::fs::remove_file(risky_file(&env)).expect("remove the file");
    chat.gateway.say(CHAT, "please do something risky again").await;
    chat.expect(CHAT, "Bash allowed (allowed for this session)", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(risky_file(&env).exists(), "the session rule allowed it");
    assert!(chat.position("🔐").is_some());

    chat.gateway.say(CHAT, "/status").await;
    let status = chat.expect(CHAT, "Recent decisions", LONG).await;
    assert!(status.text.contains("Mode: ask"), "{status:?}");
    assert!(status.text.contains("allowed for this session: Bash"), "{status:?}");
    assert!(status.text.contains("Bash denied (button"), "{status:?}");

    // Every decision is in the audit log.
    let db = rusqlite::Connection::open(env.home().join("state.db")).expect("open state.db");
    let decisions: Vec<(String, String)> = db
        .prepare("SELECT decision, how FROM approvals ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("read the audit log");
    let expected = [
        ("allowed", "button"),
        ("denied", "button"),
        ("allowed_for_session", "button"),
        ("allowed", "session_rule"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(d, h)| ((*d).to_owned(), (*h).to_owned())).collect();
    assert_eq!(decisions, expected);
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_denied_after_the_timeout() {
    let agent = "permission_mode = \"ask\"\napproval_timeout_seconds = 2";
    let Some((env, _model, _home)) = stack(agent).await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    ask_risky(&mut chat).await;
    chat.expect(CHAT, "Not answered within 2s: denied", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(!risky_file(&env).exists(), "a timed-out request never runs");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_a_request_waits_is_reported_and_never_approved() {
    let Some((env, _model, _home)) = stack("permission_mode = \"ask\"").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let buttons = ask_risky(&mut chat).await;
    let restart = env.ductorctl(&["restart", "core"]).await;
    assert!(restart.status.success(), "restart core");
    env.wait_healthy(&["runner", "core"]).await;
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.expect(CHAT, "interrupted because ductor restarted", LONG).await;
    chat.gateway.press(CHAT, button(&buttons, "y")).await;
    chat.expect(CHAT, "no longer", LONG).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!risky_file(&env).exists(), "a restart never approves");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_during_a_turn_steers_it_and_gets_its_own_reply() {
    let Some((env, model, _home)) = stack("while_busy = \"steer\"").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.gateway.say(CHAT, "tell a slow story").await;
    assert!(model.wait_until(LONG, |p| p.chunks_sent >= 3).await, "the story streams");
    chat.gateway.say(CHAT, "and bananas").await;
    chat.expect(CHAT, "Sent into the running turn", LONG).await;
    let story = chat.expect(CHAT, "chunk49", LONG).await;
    assert_eq!(story.kind, "final", "{story:?}");
    let steered = chat.expect(CHAT, "You said: and bananas", LONG).await;
    assert_eq!(steered.kind, "final", "{steered:?}");
    assert!(chat.position("Queued").is_none(), "nothing was queued: {:#?}", chat.all);
    let asked =
        model.generations().into_iter().rfind(|r| r.prompt.as_deref() == Some("and bananas"));
    assert!(asked.is_some_and(|r| r.body_contains("tell a slow story")), "the same conversation");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// Codex (through `app-server`) asks in the chat too, and takes a steer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_asks_in_the_chat_and_takes_a_steer() {
    let agent = "permission_mode = \"ask\"\nwhile_busy = \"steer\"";
    let Some((env, model, _home)) = stack_of(Cli::Codex, agent).await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.gateway.say(CHAT, "please do something risky").await;
    let menu = chat.expect(CHAT, "🔐 The agent asks to use shell", LONG).await;
    assert!(menu.text.contains(RISKY_COMMAND), "{menu:?}");
    assert!(!risky_file(&env).exists());
    chat.gateway.press(CHAT, button(&menu.buttons, "y")).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(risky_file(&env).exists(), "the allowed command ran");

    wait_until_idle(&env).await;
    let before = model.progress().chunks_sent;
    chat.gateway.say(CHAT, "tell a slow story").await;
    let streaming = model.wait_until(LONG, |p| p.chunks_sent >= before + 3).await;
    assert!(streaming, "the story streams");
    chat.gateway.say(CHAT, "and bananas").await;
    chat.expect(CHAT, "Sent into the running turn", LONG).await;
    let steered = chat.expect(CHAT, "You said: and bananas", LONG).await;
    assert_eq!(steered.kind, "final", "{steered:?}");
    assert!(chat.position("Queued").is_none(), "nothing was queued: {:#?}", chat.all);
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// Gemini (through `--acp`) asks in the chat on a new session's turn; a
/// denied command does not run, an allowed one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_asks_in_the_chat() {
    let Some((env, _model, _home)) = stack_of(Cli::Gemini, "permission_mode = \"ask\"").await
    else {
        return;
    };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.gateway.say(CHAT, "please do something risky").await;
    let menu = chat.expect(CHAT, "🔐 The agent asks to use shell", LONG).await;
    assert!(menu.text.contains(RISKY_COMMAND), "{menu:?}");
    chat.gateway.press(CHAT, button(&menu.buttons, "n")).await;
    chat.expect(CHAT, "Denied", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(!risky_file(&env).exists(), "the denied command did not run");
    // Gemini asks only in a new session (its ACP cannot load one by id).
    chat.gateway.say(CHAT, "/new").await;
    chat.expect(CHAT, "Fresh gemini session", LONG).await;
    chat.gateway.say(CHAT, "please do something risky").await;
    let menu = chat.expect(CHAT, "🔐 The agent asks to use shell", LONG).await;
    chat.gateway.press(CHAT, button(&menu.buttons, "y")).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    assert!(risky_file(&env).exists(), "the allowed command ran");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// `/mode plan`: claude's request to leave plan mode is a "go ahead?" in the chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_approved_from_the_chat() {
    let Some((env, _model, _home)) = stack("").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.gateway.say(CHAT, "/mode plan").await;
    chat.expect(CHAT, "Mode: plan", LONG).await;
    chat.gateway.say(CHAT, "make a plan please").await;
    let menu = chat.expect(CHAT, "📋 The agent has a plan and asks to go ahead", LONG).await;
    let labels = menu.buttons.len();
    assert_eq!(labels, 2, "approve or keep planning, no session rule: {menu:?}");
    chat.gateway.press(CHAT, button(&menu.buttons, "y")).await;
    chat.expect(CHAT, "Plan approved", LONG).await;
    chat.expect(CHAT, TOOL_DONE_TEXT, LONG).await;
    chat.gateway.say(CHAT, "/status").await;
    let status = chat.expect(CHAT, "Mode: plan", LONG).await;
    assert!(status.text.contains("ExitPlanMode allowed (button"), "{status:?}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
