//! Issue 5, end to end: `ductorctl up` with the real runner, core and
//! Telegram gateway, the fake CLI as `claude`, and the gateway's fake Bot
//! API (in this test process) as Telegram. A user's message must come back
//! as one streamed preview, edited in place within the edit budget, ending
//! in the final reply. Needs `cargo build --bins` first.

use std::time::Duration;

use ductor_gateway_telegram::testing::{Call, FakeBotApi, updates};
use ductor_tests::harness::{TestEnv, binary, wait_for};

const TOKEN: &str = "123456:E2E-SECRET-token-xyz";
const EDIT_INTERVAL: Duration = Duration::from_millis(250);

fn config(api_url: &str, state: &std::path::Path) -> String {
    format!(
        "[launcher]\nrestart_backoff_ms = 20\nrestart_backoff_max_ms = 200\n\n\
         [runner]\nextra_writable_paths = [\"{state}\"]\n\n\
         [providers.claude]\nbinary = \"{fake}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n\n\
         [telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\n\
         allowed_user_ids = [1]\nedit_interval_ms = {interval}\n",
        state = state.display(),
        fake = binary("ductor-fake-cli").display(),
        interval = EDIT_INTERVAL.as_millis(),
    )
}

/// The fake Bot API and the whole stack up against it (runner, core,
/// Telegram gateway); the temporary directory is the fake CLI's state.
async fn up() -> (FakeBotApi, tempfile::TempDir, TestEnv) {
    let api = FakeBotApi::start(TOKEN).await;
    let state = tempfile::tempdir().expect("state dir");
    let state_path = state.path().canonicalize().expect("canonical state dir");
    let env = TestEnv::with_config(&config(&api.url, &state_path));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    env.wait_healthy(&["runner", "core", "telegram"]).await;
    (api, state, env)
}

fn chat_calls(api: &FakeBotApi, chat: i64) -> Vec<Call> {
    api.calls().into_iter().filter(|call| call.chat_id == Some(chat) && call.ok).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_message_becomes_a_streamed_preview_and_a_notifying_final_reply() {
    let (api, _state, env) = up().await;

    // A stranger first: never answered, never run.
    api.push_update(updates::text(2, 2, 9, "stranger says hi"));
    api.push_update(updates::text(1, 1, 10, "slow:12 hello from telegram"));
    let final_call = wait_for("the final reply in chat 1", async || {
        let calls = chat_calls(&api, 1);
        let last = calls.iter().rev().find(|c| c.method == "sendmessage" && !c.silent())?;
        let text = last.str("text")?;
        text.contains("echo: slow:12 hello from telegram").then(|| last.clone())
    })
    .await;
    let final_text = final_call.str("text").unwrap_or_default();
    assert!(!final_text.contains("🔧"), "no status line in the final: {final_text}");

    let calls = chat_calls(&api, 1);
    let sends: Vec<&Call> = calls.iter().filter(|c| c.method == "sendmessage").collect();
    assert_eq!(sends.len(), 2, "one preview, edited in place, then the final: {sends:#?}");
    assert!(sends[0].silent(), "the streamed preview does not notify");
    let first = sends[0].str("text").unwrap_or_default();
    assert!(!first.contains('⏳'), "the first message is real text, not a placeholder: {first}");
    let edits: Vec<&Call> = calls.iter().filter(|c| c.method == "editmessagetext").collect();
    assert!(edits.len() >= 2, "the reply was streamed in several edits, got {}", edits.len());
    let preview = sends[0].message_id.expect("the preview has an id");
    wait_for("the preview deleted", async || {
        chat_calls(&api, 1)
            .iter()
            .any(|c| c.method == "deletemessage" && c.int("message_id") == Some(preview))
            .then_some(())
    })
    .await;
    // The chat's pace: 3 at once (the burst), then one per interval.
    let paced: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "sendmessage" || c.method == "editmessagetext")
        .collect();
    for (i, first) in paced.iter().enumerate() {
        for (j, last) in paced.iter().enumerate().skip(i) {
            let window = last.at.duration_since(first.at) + Duration::from_millis(20);
            let allowed = 3 + (window.as_millis() / EDIT_INTERVAL.as_millis()) as usize;
            assert!(j - i < allowed, "{} calls within {window:?}", j - i + 1);
        }
    }
    assert!(calls.iter().any(|c| c.method == "sendchataction"), "typing was shown");
    assert!(chat_calls(&api, 2).is_empty(), "the stranger got nothing");
    let logs = std::fs::read_dir(env.home().join("logs")).expect("logs").flatten();
    for log in logs {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert!(!text.contains("E2E-SECRET"), "{} leaks the token", log.path().display());
    }
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_menu_is_core_s_list_and_core_answers_every_command_in_it() {
    let (api, _state, env) = up().await;

    let names: Vec<String> = wait_for("setMyCommands from core's Welcome", async || {
        let call = api.calls_of("setmycommands").pop()?;
        let list = call.params["commands"].as_array()?.clone();
        Some(list.iter().filter_map(|c| c["command"].as_str().map(str::to_owned)).collect())
    })
    .await;
    let known = ["new", "stop", "stop_all", "interrupt", "model", "effort", "status", "cron"];
    for known in known.iter().chain(&["session", "sessions", "tasks"]) {
        assert!(names.iter().any(|n| n == known), "/{known} is in the menu: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "start"), "/start is not offered: {names:?}");

    // Every command in the menu is answered by core, none reaches the agent.
    for (i, name) in names.iter().enumerate() {
        let message_id = 100 + i64::try_from(i).expect("few commands");
        api.push_update(updates::text(1, 1, message_id, &format!("/{name}")));
    }
    let texts = wait_for("an answer to every command", async || {
        let texts: Vec<String> = chat_calls(&api, 1)
            .iter()
            .filter(|c| c.method == "sendmessage")
            .filter_map(|c| c.str("text").map(str::to_owned))
            .collect();
        (texts.len() >= names.len()).then_some(texts)
    })
    .await;
    assert!(texts.iter().all(|t| !t.contains("echo:")), "a command went to the agent: {texts:#?}");
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success());
}

/// Texts the bot sent (or edited to) in `chat`, with their inline keyboards' callback data.
fn bot_texts(api: &FakeBotApi, chat: i64) -> Vec<(String, Vec<String>)> {
    chat_calls(api, chat)
        .iter()
        .filter(|c| c.method == "sendmessage" || c.method == "editmessagetext")
        .map(|c| {
            let keyboard = c.params["reply_markup"]["inline_keyboard"].as_array().cloned();
            let data = keyboard
                .unwrap_or_default()
                .iter()
                .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
                .collect();
            (c.str("text").unwrap_or_default().to_owned(), data)
        })
        .collect()
}

async fn bot_text(api: &FakeBotApi, chat: i64, needle: &str) -> (String, Vec<String>) {
    wait_for(&format!("{needle:?} in chat {chat}"), async || {
        bot_texts(api, chat).into_iter().rev().find(|(text, _)| text.contains(needle))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_sessions_and_tasks_have_their_menus_on_telegram() {
    let (api, _state, env) = up().await;
    api.push_update(updates::text(1, 1, 10, "/session remember-this"));
    let (started, _) = bot_text(&api, 1, "in the background").await;
    let name = started.split(['<', '>']).nth(2).expect("the name is in bold").to_owned();
    let (answer, _) = bot_text(&api, 1, "echo: remember-this").await;
    assert!(answer.contains(&name), "the answer carries the session's name: {answer}");

    api.push_update(updates::text(1, 1, 11, "/sessions"));
    let (menu, buttons) = bot_text(&api, 1, "Named sessions").await;
    assert!(menu.contains(&name) && menu.contains("idle"), "{menu}");
    let end = format!("ns:end:{name}");
    assert!(buttons.contains(&end), "an End button: {buttons:?}");
    let menu_id = chat_calls(&api, 1)
        .iter()
        .rev()
        .find(|c| c.str("text").is_some_and(|t| t.contains("Named sessions")))
        .and_then(|c| c.message_id)
        .expect("the menu's message");
    api.push_update(updates::callback(1, 1, menu_id, &end));
    let (ended, _) = bot_text(&api, 1, "Ended").await;
    assert!(ended.contains(&name), "{ended}");

    api.push_update(updates::text(1, 1, 12, "/tasks"));
    let (tasks, buttons) = bot_text(&api, 1, "No tasks").await;
    assert!(tasks.contains("ductorctl task create"), "{tasks}");
    assert!(buttons.contains(&"tk:refresh".to_owned()), "{buttons:?}");
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success());
}
