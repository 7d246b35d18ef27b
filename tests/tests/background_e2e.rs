//! Issue 14, end to end with the real runner, core and `ductorctl`: a named
//! background session runs while the chat keeps answering, is continued with
//! `@name` (resuming its own provider session), stopped and ended; an agent
//! delegates a task that asks its parent and finishes with the answer; a
//! restart mid-task reports the task interrupted (never re-run) while an idle
//! named session survives; and the real claude against the fake model API
//! runs a named session beside the chat. Needs `cargo build --bins`.

use std::time::Duration;

use ductor_tests::fake_model::FakeModel;
use ductor_tests::gateway::{Chat, Seen};
use ductor_tests::harness::{self, TestEnv, wait_for};
use ductor_tests::real_cli::{Cli, installed_cli, provider_files, provider_section};

const TRANSPORT: &str = "testgw";
const CHAT: &str = "room";

/// The name in a "🚀 Started **name** …" notice.
fn started_name(notice: &Seen) -> String {
    let rest = notice.text.split("**").nth(1).expect("the notice names the session");
    rest.to_owned()
}

/// Fake CLI processes of this home still alive.
fn fake_clis(env: &TestEnv) -> Vec<u32> {
    env.processes_of_this_home()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.ends_with("ductor-fake-cli"))
        })
        .collect()
}

/// The fake CLI's argv of its latest run.
fn last_argv(env: &TestEnv) -> Vec<String> {
    let path = env.home().join("fake-state/last-argv.json");
    let text = std::fs::read_to_string(&path).expect("the fake CLI wrote its argv");
    serde_json::from_str(&text).expect("argv is a JSON list")
}

fn ductorctl() -> String {
    harness::binary("ductorctl").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_session_works_in_the_background_while_the_chat_keeps_answering() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;

    chat.gateway.say(CHAT, "/session slow:40 the long job").await;
    let name = started_name(&chat.soon(CHAT, "Started **").await);
    // Four seconds of background work; the chat answers meanwhile.
    chat.gateway.say(CHAT, "quick question").await;
    chat.soon(CHAT, "echo: quick question").await;
    let answer = chat.soon(CHAT, &format!("💬 **{name}**")).await;
    assert_eq!(answer.kind, "final");
    assert!(answer.text.contains("the long job"), "{answer:?}");
    assert!(
        chat.position("echo: quick question") < chat.position(&format!("💬 **{name}**")),
        "the chat's answer came first: {:#?}",
        chat.all
    );

    chat.gateway.say(CHAT, &format!("@{name} and the follow-up")).await;
    chat.soon(CHAT, &format!("**{name}** is on it")).await;
    let answer = chat.soon(CHAT, "echo: and the follow-up").await;
    assert!(answer.text.starts_with(&format!("💬 **{name}**")), "{answer:?}");
    let argv = last_argv(&env);
    assert!(argv.iter().any(|a| a == "--resume"), "the follow-up resumes its session: {argv:?}");

    chat.gateway.say(CHAT, "/sessions").await;
    let menu = chat.soon(CHAT, "Named sessions:").await;
    assert!(menu.text.contains(&format!("**{name}**: idle")), "{menu:?}");
    assert!(menu.buttons.contains(&format!("ns:end:{name}")), "{menu:?}");

    // A hanging turn: /stop leaves it alone, /status shows it, /stop @name stops it.
    chat.gateway.say(CHAT, &format!("@{name} hang")).await;
    chat.soon(CHAT, &format!("**{name}** is on it")).await;
    wait_for("the named turn's CLI", async || (!fake_clis(&env).is_empty()).then_some(())).await;
    chat.gateway.say(CHAT, "/stop").await;
    chat.gateway.say(CHAT, "/status").await;
    let status = chat.soon(CHAT, "Background sessions").await;
    assert!(status.text.contains(&format!("{name} running")), "{status:?}");
    chat.gateway.say(CHAT, &format!("/stop @{name}")).await;
    chat.soon(CHAT, &format!("Stopped **{name}**'s turn")).await;
    wait_for("the stopped CLI gone", async || fake_clis(&env).is_empty().then_some(())).await;

    chat.gateway.press(CHAT, &format!("ns:end:{name}")).await;
    chat.soon(CHAT, &format!("Ended **{name}**")).await;
    // An ended session's name is just text again.
    chat.gateway.say(CHAT, &format!("@{name} hello")).await;
    chat.soon(CHAT, &format!("echo: @{name} hello")).await;
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// The task id in "task <id> (<name>) started".
fn task_id(reply: &str) -> String {
    let at = reply.find("task ").expect("ductorctl printed the task");
    reply[at + 5..].split_whitespace().next().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_asks_its_parent_and_finishes_with_the_answer() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let ctl = ductorctl();

    chat.gateway
        .say(CHAT, &format!("sh:{ctl} task create --name probe 'sh:{ctl} task ask which-colour'"))
        .await;
    let created = chat.soon(CHAT, "(probe) started").await;
    let id = task_id(&created.text);
    let folder = env.home().join("workspace/tasks").join(&id);
    assert!(folder.join("TASKMEMORY.md").is_file(), "the task has its folder");

    // The question reaches the chat and, injected, the parent's session.
    chat.soon(CHAT, &format!("Task **probe** ({id}) asks: which-colour")).await;
    chat.soon(CHAT, &format!("echo: [Task probe ({id}) asks you]: which-colour")).await;
    let listed = env.ductorctl(&["task", "list"]).await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&id) && listed.contains("waiting"), "{listed}");

    // Another chat's agent cannot answer it.
    chat.gateway.say("other", &format!("sh:{ctl} task answer {id} red")).await;
    let refused = chat.expect("other", "there is no task", harness::patience()).await;
    assert!(!refused.text.contains("red"), "{refused:?}");

    // The parent's agent answers; the task resumes its own session with it.
    chat.gateway.say(CHAT, &format!("sh:{ctl} task answer {id} blue")).await;
    let done = chat.soon(CHAT, &format!("Task **probe** ({id}) finished")).await;
    assert!(done.text.contains("Answer from the agent that started you: blue"), "{done:?}");
    chat.soon(CHAT, &format!("echo: [Task probe ({id}) finished")).await;
    let argv = last_argv(&env);
    assert!(argv.iter().any(|a| a == "--resume"), "resumed, not started over: {argv:?}");

    // The operator continues the finished task with a new instruction.
    let resumed = env.ductorctl(&["task", "resume", &id, "one more pass"]).await;
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let again = chat.soon(CHAT, "echo: one more pass").await;
    assert!(again.text.contains(&format!("Task **probe** ({id}) finished")), "{again:?}");

    chat.gateway.say(CHAT, "/tasks").await;
    let menu = chat.soon(CHAT, "Finished:").await;
    assert!(menu.text.contains(&format!("**probe** ({id})")), "{menu:?}");
    assert!(menu.buttons.contains(&format!("tk:del:{id}")), "{menu:?}");
    chat.gateway.press(CHAT, &format!("tk:del:{id}")).await;
    chat.soon(CHAT, "Deleted task **probe**").await;
    assert!(!folder.exists(), "its folder went with it");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reports_a_running_task_interrupted_and_keeps_idle_sessions() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let ctl = ductorctl();

    chat.gateway.say(CHAT, "/session remember-me").await;
    let name = started_name(&chat.soon(CHAT, "Started **").await);
    chat.soon(CHAT, "echo: remember-me").await;
    chat.gateway.say(CHAT, &format!("sh:{ctl} task create --name stuck ha''ng")).await;
    let id = task_id(&chat.soon(CHAT, "(stuck) started").await.text);
    wait_for("the task's CLI", async || (!fake_clis(&env).is_empty()).then_some(())).await;

    let core = env.service_status("core").await.expect("core row");
    let old_pid = core["pid"].as_u64().expect("core pid") as u32;
    harness::signal(old_pid, nix::sys::signal::Signal::SIGKILL);
    wait_for("core restarted", async || {
        let row = env.service_status("core").await?;
        (row["state"] == "healthy" && row["pid"].as_u64() != Some(u64::from(old_pid))).then_some(())
    })
    .await;
    // The runner stops the run whose caller died; nothing re-runs it.
    wait_for("the task's CLI gone", async || fake_clis(&env).is_empty().then_some(())).await;

    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.soon(CHAT, &format!("Task **stuck** ({id}) was interrupted")).await;
    let listed = env.ductorctl(&["task", "list"]).await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("interrupted"), "{listed}");
    assert!(fake_clis(&env).is_empty(), "not re-run");
    // It never reported a session, so there is nothing to resume; it says so.
    let resume = env.ductorctl(&["task", "resume", &id, "go on"]).await;
    assert!(!resume.status.success());
    assert!(String::from_utf8_lossy(&resume.stderr).contains("no session"), "{resume:?}");

    chat.gateway.say(CHAT, &format!("@{name} still there?")).await;
    let answer = chat.soon(CHAT, "echo: still there?").await;
    assert!(answer.text.starts_with(&format!("💬 **{name}**")), "{answer:?}");
    let argv = last_argv(&env);
    assert!(argv.iter().any(|a| a == "--resume"), "the idle session survived: {argv:?}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// The real claude: a named session streams its slow answer in the
/// background while the chat's own turn answers, and its follow-up resumes
/// the same conversation (the model sees the earlier answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_runs_a_named_session_beside_the_chat() {
    let Some(claude) = installed_cli(Cli::Claude) else {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
            "claude is not installed (tests/setup/install-clis.sh) and DUCTOR_REQUIRE_REAL=1"
        );
        eprintln!(
            "SKIP the_real_claude_runs_a_named_session_beside_the_chat: claude not installed"
        );
        return;
    };
    let model = FakeModel::start().await.expect("start the fake model");
    let cli_home = tempfile::tempdir().expect("a CLI home");
    let cli_env = provider_files(Cli::Claude, cli_home.path(), &model.base_url());
    let env = TestEnv::with_config(&format!(
        "[agent]\nprovider = \"claude\"\n\n{}",
        provider_section(Cli::Claude, &claude, &cli_env)
    ));
    env.up().await;
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;

    chat.gateway.say(CHAT, "/session tell a slow story").await;
    let name = started_name(&chat.soon(CHAT, "Started **").await);
    chat.gateway.say(CHAT, "hello there").await;
    chat.expect(CHAT, "You said: hello there", Duration::from_secs(60)).await;
    let story = chat.expect(CHAT, &format!("💬 **{name}**"), Duration::from_secs(60)).await;
    assert!(story.text.contains("chunk00"), "{story:?}");
    assert!(
        chat.position("You said: hello there") < chat.position(&format!("💬 **{name}**")),
        "the chat answered during the background story: {:#?}",
        chat.all
    );

    chat.gateway.say(CHAT, &format!("@{name} and then")).await;
    let next = chat.expect(CHAT, "You said: and then", Duration::from_secs(60)).await;
    assert!(next.text.starts_with(&format!("💬 **{name}**")), "{next:?}");
    let follow_up = model
        .generations()
        .into_iter()
        .rfind(|r| r.prompt.as_deref().is_some_and(|p| p.contains("and then")))
        .expect("the follow-up reached the model");
    assert!(follow_up.body_contains("chunk00"), "the same conversation, resumed");
    assert!(!follow_up.body_contains("hello there"), "the named session is not the chat's session");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
