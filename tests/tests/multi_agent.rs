//! Issue 18, end to end: `ductorctl up` with the real runner, core and two
//! Telegram gateways (the main agent's bot and the `researcher` agent's bot,
//! each against its own fake Bot API), the fake CLI as `claude`. Each bot's
//! chats reach their own agent (own workspace, own allowlist, own rule files
//! with the shared memory), a sub-agent's gateway killed with SIGKILL comes
//! back on its own, and agents ask each other through `ductorctl agents ask`
//! run by the agent itself: synchronously, in the background (the answer is
//! injected into the asking chat's session), and with the loop bound.
//! Needs `cargo build --bins` first.

use ductor_gateway_telegram::testing::{Call, FakeBotApi, updates};
use ductor_tests::harness::{TestEnv, binary, wait_for};

const MAIN_TOKEN: &str = "111:MAIN-SECRET-token";
const RESEARCHER_TOKEN: &str = "222:RESEARCHER-SECRET-token";
/// Allowed on the main bot only.
const ALICE: i64 = 1;
/// Allowed on the researcher's bot only.
const BOB: i64 = 2;
/// Allowed on the main bot, a second chat.
const CAROL: i64 = 3;

/// Added to the fake CLI's configuration (`TestEnv::with_fake_claude`).
fn config(main_api: &str, researcher_api: &str) -> String {
    format!(
        "[rules]\nsync_interval_seconds = 1\n\n\
         [telegram]\nenabled = true\ntoken = \"{MAIN_TOKEN}\"\napi_url = \"{main_api}\"\n\
         allowed_user_ids = [{ALICE}, {CAROL}]\n\n\
         [[agents]]\nname = \"researcher\"\ndescription = \"reads papers\"\n\
         [agents.telegram]\ntoken = \"{RESEARCHER_TOKEN}\"\napi_url = \"{researcher_api}\"\n\
         allowed_user_ids = [{BOB}]\n",
    )
}

struct Stack {
    main: FakeBotApi,
    researcher: FakeBotApi,
    env: TestEnv,
}

async fn up() -> Stack {
    let main = FakeBotApi::start(MAIN_TOKEN).await;
    let researcher = FakeBotApi::start(RESEARCHER_TOKEN).await;
    let env = TestEnv::with_fake_claude(&config(&main.url, &researcher.url));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    env.wait_healthy(&["runner", "core", "telegram", "telegram@researcher"]).await;
    Stack { main, researcher, env }
}

fn chat_calls(api: &FakeBotApi, chat: i64) -> Vec<Call> {
    api.calls().into_iter().filter(|call| call.chat_id == Some(chat) && call.ok).collect()
}

/// The notifying messages the bot sent to `chat`.
fn finals(api: &FakeBotApi, chat: i64) -> Vec<String> {
    chat_calls(api, chat)
        .iter()
        .filter(|c| c.method == "sendmessage" && !c.silent())
        .filter_map(|c| c.str("text").map(str::to_owned))
        .collect()
}

/// Every text the bot sent or edited to in `chat`.
fn texts(api: &FakeBotApi, chat: i64) -> Vec<String> {
    chat_calls(api, chat)
        .iter()
        .filter(|c| c.method == "sendmessage" || c.method == "editmessagetext")
        .filter_map(|c| c.str("text").map(str::to_owned))
        .collect()
}

/// Waits for a message in `chat` that contains `needle`.
async fn reply_containing(api: &FakeBotApi, chat: i64, needle: &str) -> String {
    wait_for(&format!("a reply containing {needle:?} in chat {chat}"), async || {
        texts(api, chat).into_iter().find(|t| t.contains(needle))
    })
    .await
}

fn ctl() -> String {
    binary("ductorctl").display().to_string()
}

async fn pid_of(env: &TestEnv, service: &str) -> u64 {
    let row = env.service_status(service).await.unwrap_or_else(|| panic!("{service} is listed"));
    row["pid"].as_u64().unwrap_or_else(|| panic!("{service} runs: {row}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_on_two_bots_keep_their_chats_workspaces_and_allowlists() {
    let Stack { main, researcher, env, .. } = up().await;
    let home = env.home().canonicalize().expect("canonical home");

    // Strangers first (each allowed on the other bot only): never answered.
    researcher.push_update(updates::text(ALICE, ALICE, 1, "sh:pwd"));
    main.push_update(updates::text(BOB, BOB, 2, "sh:pwd"));
    main.push_update(updates::text(ALICE, ALICE, 3, "sh:pwd"));
    researcher.push_update(updates::text(BOB, BOB, 4, "sh:pwd"));
    let mine = reply_containing(&main, ALICE, "/workspace").await;
    let theirs = reply_containing(&researcher, BOB, "/workspace").await;
    let main_ws = home.join("workspace");
    let researcher_ws = home.join("agents/researcher/workspace");
    assert!(mine.contains(&main_ws.display().to_string()), "main works in its workspace: {mine}");
    assert!(
        theirs.contains(&researcher_ws.display().to_string()),
        "the researcher works in its own workspace: {theirs}"
    );
    assert!(
        chat_calls(&researcher, ALICE).is_empty(),
        "Alice is not allowed on the researcher's bot"
    );
    assert!(chat_calls(&main, BOB).is_empty(), "Bob is not allowed on the main bot");

    // Neither agent's runs can read the other's workspace (Landlock).
    let main_memory = main_ws.join("memory_system/MAINMEMORY.md");
    let peek = format!("sh:cat {} || echo refused-read", main_memory.display());
    researcher.push_update(updates::text(BOB, BOB, 7, &peek));
    let refused = reply_containing(&researcher, BOB, "refused-read").await;
    assert!(!refused.contains("# Main memory"), "the researcher read main's memory: {refused}");
    let theirs_memory = researcher_ws.join("memory_system/MAINMEMORY.md");
    let peek = format!("sh:cat {} || echo refused-read", theirs_memory.display());
    main.push_update(updates::text(ALICE, ALICE, 8, &peek));
    let refused = reply_containing(&main, ALICE, "refused-read").await;
    assert!(!refused.contains("# Main memory"), "main read the researcher's memory: {refused}");

    // /status names the agent; the sessions are the researcher's own.
    researcher.push_update(updates::text(BOB, BOB, 5, "/status"));
    reply_containing(&researcher, BOB, "Agent: researcher").await;

    // Every agent's rule files say who it is and carry the shared memory.
    let shared = main_ws.join("memory_system/SHAREDMEMORY.md");
    let seeded = std::fs::read_to_string(&shared).expect("the shared memory is seeded");
    std::fs::write(&shared, format!("{seeded}\nThe launch colour is teal.\n")).expect("edit it");
    for (workspace, me) in [(&researcher_ws, "researcher"), (&main_ws, "main")] {
        let rules = workspace.join("CLAUDE.md");
        wait_for(&format!("{} updated", rules.display()), async || {
            let text = std::fs::read_to_string(&rules).ok()?;
            (text.contains("launch colour is teal")
                && text.contains(&format!("You are the agent `{me}`")))
            .then_some(())
        })
        .await;
    }

    // `ductorctl reload` reaches the sub-agent's gateway too.
    let reload = env.ductorctl(&["reload"]).await;
    let said = String::from_utf8_lossy(&reload.stdout).into_owned();
    assert!(reload.status.success(), "reload: {said}");
    assert!(said.contains("telegram@researcher: reloaded"), "{said}");

    // The researcher's gateway killed: only it restarts, and its bot answers again.
    let before_main = pid_of(&env, "telegram").await;
    let before_core = pid_of(&env, "core").await;
    let victim = pid_of(&env, "telegram@researcher").await;
    ductor_tests::harness::signal(victim as u32, nix::sys::signal::Signal::SIGKILL);
    wait_for("the researcher's gateway restarted", async || {
        let row = env.service_status("telegram@researcher").await?;
        (row["state"] == "healthy" && row["pid"].as_u64()? != victim).then_some(())
    })
    .await;
    researcher.push_update(updates::text(BOB, BOB, 6, "back again"));
    reply_containing(&researcher, BOB, "echo: back again").await;
    assert_eq!(pid_of(&env, "telegram").await, before_main, "the main gateway was not touched");
    assert_eq!(pid_of(&env, "core").await, before_core, "core was not touched");

    let logs = std::fs::read_dir(env.home().join("logs")).expect("logs").flatten();
    for log in logs {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert!(!text.contains("SECRET-token"), "{} leaks a token", log.path().display());
    }
    // The sub-agent's gateway names its agent on every line.
    let log = std::fs::read_to_string(env.home().join("logs/telegram@researcher.log"))
        .expect("the researcher's gateway has its own log");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" INFO ")).collect();
    assert!(!lines.is_empty(), "{log}");
    assert!(lines.iter().all(|l| l.starts_with("[telegram@researcher] ")), "{log}");
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_ask_each_other_sync_in_the_background_and_never_in_a_loop() {
    let Stack { main, env, .. } = up().await;
    let ctl = ctl();

    // Sync: the researcher's answer is the output of the asking agent's tool.
    let ask = format!("sh:{ctl} agents ask researcher 'what is two plus two'");
    main.push_update(updates::text(ALICE, ALICE, 1, &ask));
    let answer = reply_containing(&main, ALICE, "what is two plus two").await;
    assert!(
        answer.contains("[Message from agent main"),
        "the researcher was asked by main: {answer}"
    );

    // An unknown agent is a clear error naming the agents.
    main.push_update(updates::text(ALICE, ALICE, 2, &format!("sh:{ctl} agents ask nobody hi")));
    let refused = reply_containing(&main, ALICE, "nobody").await;
    assert!(refused.contains("main, researcher"), "{refused}");

    // Background: answered at once with a task id, then the answer comes
    // into the asking chat (and only there) as a turn of its own.
    let ask = format!("sh:{ctl} agents ask --background researcher 'name a colour'");
    main.push_update(updates::text(CAROL, CAROL, 3, "hello from carol"));
    reply_containing(&main, CAROL, "echo: hello from carol").await;
    main.push_update(updates::text(ALICE, ALICE, 4, &ask));
    let queued = reply_containing(&main, ALICE, "ia-").await;
    let task = queued
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with("ia-"))
        .unwrap_or_else(|| panic!("a task id in {queued}"))
        .to_owned();
    let injected = reply_containing(
        &main,
        ALICE,
        &format!("Answer from agent researcher to your background question {task}"),
    )
    .await;
    assert!(injected.contains("name a colour"), "the researcher's answer is in it: {injected}");
    assert!(
        finals(&main, CAROL).iter().all(|t| !t.contains(&task)),
        "the answer went to the asking chat only"
    );

    // A loop (main → researcher → main → researcher) is refused at the third ask.
    let innermost = format!("sh:{ctl} agents ask researcher deep");
    let middle = format!("sh:{ctl} agents ask main '{innermost}'");
    let outer = format!("sh:{ctl} agents ask researcher \"{middle}\"");
    main.push_update(updates::text(ALICE, ALICE, 5, &outer));
    let looped = reply_containing(&main, ALICE, "a loop").await;
    assert!(looped.contains("already answering main"), "{looped}");

    // An answering run has no chat behind it: it may ask, not schedule.
    let schedule = format!("sh:{ctl} agents ask researcher \"sh:{ctl} cron list\"");
    main.push_update(updates::text(ALICE, ALICE, 6, &schedule));
    let refused = reply_containing(&main, ALICE, "not manage automation").await;
    assert!(refused.contains("ask agents"), "{refused}");

    // Every hop is logged with the conversation's trace id.
    let log = std::fs::read_to_string(env.home().join("logs/core.log")).unwrap_or_default();
    let hops: Vec<&str> = log.lines().filter(|l| l.contains("inter-agent ask")).collect();
    assert!(hops.len() >= 5, "each ask is logged: {hops:#?}");
    assert!(hops.iter().all(|l| l.contains("trace=")), "{hops:#?}");
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success());
}
