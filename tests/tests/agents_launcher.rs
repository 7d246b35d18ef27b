//! Sub-agents under the launcher, end to end with the real binaries: main on
//! one fake Telegram bot and agent `researcher` on a second one (different
//! tokens). `ductorctl up` supervises `telegram@researcher` beside main's
//! gateway, gives it its own token and nobody else's, restarts only it after a
//! `kill -9`, keeps it stopped after `agents stop` until `agents start`, and
//! brings up an agent added with `agents add` while running. Needs
//! `cargo build --bins` first.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use ductor_tests::harness::fake_telegram::FakeTelegram;
use ductor_tests::harness::{TestEnv, signal, text, wait_for};
use nix::sys::signal::Signal;

const MAIN_TOKEN: &str = "111111:MAIN-secret-token";
const RESEARCHER_TOKEN: &str = "222222:RESEARCHER-secret-token";
const WRITER_TOKEN: &str = "333333:WRITER-secret-token";

/// A home with main's bot on `main_api` (its token only in the launcher's
/// environment) and researcher's on `agents_api` (its token in a file).
fn home(main_api: &FakeTelegram, agents_api: &FakeTelegram) -> TestEnv {
    let mut env = TestEnv::with_fake_claude("");
    let token_file = env.home().join("researcher.token");
    std::fs::write(&token_file, format!("{RESEARCHER_TOKEN}\n")).expect("write the token file");
    let base = std::fs::read_to_string(env.home().join("config.toml")).expect("config.toml");
    env.write_config(&format!(
        "{base}\n# the operator's own comment\n\
         [telegram]\nenabled = true\napi_url = \"{main}\"\nallowed_user_ids = [1]\n\n\
         [[agents]]\nname = \"researcher\"\ndescription = \"Reads papers\"\n\
         [agents.telegram]\ntoken_file = \"{file}\"\napi_url = \"{agents}\"\nallowed_user_ids = [1]\n",
        main = main_api.url(),
        agents = agents_api.url(),
        file = token_file.display(),
    ));
    env.set_env("DUCTOR_TELEGRAM_TOKEN", MAIN_TOKEN);
    env
}

fn row<'a>(status: &'a serde_json::Value, service: &str) -> &'a serde_json::Value {
    let rows = status["services"].as_array().expect("status lists services");
    rows.iter()
        .find(|r| r["service"] == service)
        .unwrap_or_else(|| panic!("no {service}: {status}"))
}

fn pid(status: &serde_json::Value, service: &str) -> u32 {
    let pid =
        row(status, service)["pid"].as_u64().unwrap_or_else(|| panic!("{service} has no pid"));
    u32::try_from(pid).expect("pid")
}

fn environ(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).expect("read the gateway's environ");
    bytes.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

async fn ok(env: &TestEnv, args: &[&str]) -> String {
    let output = env.ductorctl(args).await;
    assert!(output.status.success(), "ductorctl {args:?} failed: {}", text(&output.stderr));
    text(&output.stdout)
}

/// `agents list --json`, the row of `name`.
async fn listed(env: &TestEnv, name: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&ok(env, &["agents", "list", "--json"]).await).expect("JSON");
    let agents = list["agents"].as_array().expect("agents");
    agents.iter().find(|a| a["name"] == name).cloned().unwrap_or_else(|| panic!("{name}: {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_gateways_are_supervised_alone_with_their_own_token() {
    let main_api = FakeTelegram::start().await;
    let agents_api = FakeTelegram::start().await;
    let env = home(&main_api, &agents_api);
    env.up().await;
    let status = env.wait_healthy(&["runner", "core", "telegram", "telegram@researcher"]).await;
    assert_eq!(row(&status, "telegram@researcher")["agent"], "researcher");
    assert_eq!(row(&status, "telegram")["agent"], "main");
    let table = ok(&env, &["status"]).await;
    assert!(table.contains("agent researcher:\ntelegram@researcher"), "{table}");

    // Each bot talks to its own Bot API.
    wait_for("both bots polling", async || {
        (main_api.calls("getUpdates") > 0 && agents_api.calls("getUpdates") > 0).then_some(())
    })
    .await;
    // Listed, and attached to core under its own name.
    let researcher = wait_for("telegram@researcher attached to core", async || {
        let row = listed(&env, "researcher").await;
        (row["gateways"][0]["attached"] == true).then_some(row)
    })
    .await;
    assert_eq!(researcher["gateways"][0]["service"], "telegram@researcher");
    assert_eq!(researcher["gateways"][0]["state"], "healthy");
    assert_eq!(researcher["description"], "Reads papers");
    assert_eq!(listed(&env, "main").await["gateways"][0]["service"], "telegram");

    // Its environment: its agent, its token, nothing of main's.
    let researcher_pid = pid(&status, "telegram@researcher");
    let vars = environ(researcher_pid);
    assert!(vars.contains(&"DUCTOR_AGENT=researcher".to_owned()), "{vars:?}");
    assert!(vars.contains(&format!("DUCTOR_TELEGRAM_TOKEN={RESEARCHER_TOKEN}")), "{vars:?}");
    assert!(!vars.iter().any(|v| v.contains(MAIN_TOKEN)), "main's token leaked: {vars:?}");
    let main_vars = environ(pid(&status, "telegram"));
    assert!(main_vars.contains(&format!("DUCTOR_TELEGRAM_TOKEN={MAIN_TOKEN}")));
    assert!(!main_vars.iter().any(|v| v.starts_with("DUCTOR_AGENT=")), "{main_vars:?}");
    assert!(!environ(pid(&status, "core")).iter().any(|v| v.contains("secret-token")));

    // kill -9 of the agent's gateway restarts only it.
    let others: Vec<(&str, u32)> =
        ["runner", "core", "telegram"].into_iter().map(|s| (s, pid(&status, s))).collect();
    signal(researcher_pid, Signal::SIGKILL);
    let after = wait_for("telegram@researcher restarted", async || {
        let status = env.status().await;
        let row = row(&status, "telegram@researcher").clone();
        (row["state"] == "healthy" && row["pid"].as_u64() != Some(researcher_pid.into()))
            .then_some(status)
    })
    .await;
    assert_eq!(row(&after, "telegram@researcher")["restarts"], 1);
    for (service, before) in &others {
        assert_eq!(pid(&after, service), *before, "{service} must keep its pid");
        assert_eq!(row(&after, service)["restarts"], 0, "{service} was not restarted");
    }

    // Stopped on request: stays stopped, is no crash.
    let stop = ok(&env, &["agents", "stop", "researcher"]).await;
    assert!(stop.contains("telegram@researcher stopped"), "{stop}");
    let restarted = pid(&after, "telegram@researcher");
    assert!(!ductor_tests::harness::alive(restarted), "the gateway process is gone");
    // Longer than the whole backoff (200 ms max): a crash would have been restarted by now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let stopped = env.status().await;
    assert_eq!(row(&stopped, "telegram@researcher")["state"], "stopped");
    assert_eq!(row(&stopped, "telegram@researcher")["restarts"], 1, "a stop is no restart");
    assert!(row(&stopped, "telegram@researcher").get("pid").is_none_or(|p| p.is_null()));

    let start = ok(&env, &["agents", "start", "researcher"]).await;
    assert!(start.contains("telegram@researcher started"), "{start}");
    assert!(!start.contains("restarting runner"), "core knew researcher: {start}");
    let back = env.wait_healthy(&["telegram@researcher"]).await;
    assert_ne!(pid(&back, "telegram@researcher"), restarted);

    // The operator asks the agent (admin token), and talks to it from the terminal.
    let answer = ok(&env, &["agents", "ask", "researcher", "what is new?"]).await;
    assert!(answer.contains("echo: "), "{answer}");
    let unknown = env.ductorctl(&["agents", "ask", "ghost", "hi"]).await;
    assert!(!unknown.status.success(), "an unknown agent is an error");
    assert!(
        text(&unknown.stderr).contains("researcher"),
        "lists the agents: {}",
        text(&unknown.stderr)
    );
    let chat = ok(&env, &["ask", "--agent", "researcher", "hello researcher"]).await;
    assert!(chat.contains("echo: hello researcher"), "{chat}");

    // `down` finds the agent's gateway too.
    ok(&env, &["down"]).await;
    assert!(env.processes_of_this_home().is_empty(), "{:?}", env.processes_of_this_home());
    assert!(!env.socket("telegram@researcher").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_added_while_running_starts_and_is_removed_again() {
    let main_api = FakeTelegram::start().await;
    let agents_api = FakeTelegram::start().await;
    let env = home(&main_api, &agents_api);
    env.up().await;
    env.wait_healthy(&["telegram", "telegram@researcher"]).await;
    let before = env.status().await;

    let token = env.home().join("writer-token.txt");
    std::fs::write(&token, WRITER_TOKEN).expect("write the writer's token");
    let refused = env.ductorctl(&["agents", "add", "main"]).await;
    assert!(!refused.status.success(), "main is taken by the main agent");
    let refused = env.ductorctl(&["agents", "add", "researcher"]).await;
    assert!(text(&refused.stderr).contains("already"), "{}", text(&refused.stderr));
    let bad = env.ductorctl(&["agents", "add", "writer", "--workspace", "relative/ws"]).await;
    assert_eq!(bad.status.code(), Some(64), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("agents.writer.workspace"), "{}", text(&bad.stderr));

    let token_arg = token.display().to_string();
    let added = ok(
        &env,
        &[
            "agents",
            "add",
            "writer",
            "--telegram-token-file",
            &token_arg,
            "--allowed-user-id",
            "1",
            "--telegram-api-url",
            agents_api.url(),
            "--provider",
            "claude",
            "--description",
            "Writes",
        ],
    )
    .await;
    assert!(added.contains("agents start writer"), "says what to do next: {added}");
    let secret = env.home().join("secrets/writer-telegram.token");
    assert_eq!(std::fs::read_to_string(&secret).expect("the copied token"), WRITER_TOKEN);
    assert_eq!(std::fs::metadata(&secret).expect("stat").mode() & 0o777, 0o600);
    let config = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    assert!(config.contains("# the operator's own comment"), "{config}");
    assert!(config.contains(&format!("token_file = \"{}\"", secret.display())), "{config}");
    assert!(!config.contains(WRITER_TOKEN), "the token itself is not in config.toml");

    let start = ok(&env, &["agents", "start", "writer"]).await;
    assert!(start.contains("restarting runner, then core"), "core learns the agent: {start}");
    assert!(start.contains("telegram@writer started"), "{start}");
    let status =
        env.wait_healthy(&["runner", "core", "telegram@writer", "telegram@researcher"]).await;
    assert_eq!(pid(&status, "telegram"), pid(&before, "telegram"), "main's gateway kept running");
    let writer = wait_for("telegram@writer attached to core", async || {
        let row = listed(&env, "writer").await;
        (row["gateways"][0]["attached"] == true).then_some(row)
    })
    .await;
    assert_eq!(writer["provider"], "claude");
    let vars = environ(pid(&status, "telegram@writer"));
    assert!(vars.contains(&format!("DUCTOR_TELEGRAM_TOKEN={WRITER_TOKEN}")), "{vars:?}");
    assert!(!vars.iter().any(|v| v.contains(MAIN_TOKEN) || v.contains(RESEARCHER_TOKEN)));

    let writer_pid = pid(&status, "telegram@writer");
    let removed = ok(&env, &["agents", "remove", "writer"]).await;
    assert!(removed.contains("workspace stays"), "{removed}");
    assert!(!ductor_tests::harness::alive(writer_pid), "its gateway was stopped");
    let config = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    assert!(!config.contains("writer"), "{config}");
    assert!(config.contains("name = \"researcher\""), "{config}");
    assert!(secret.exists(), "its secret stays");
    assert_eq!(row(&env.status().await, "telegram@writer")["state"], "stopped");
    let restart = env.ductorctl(&["agents", "start", "writer"]).await;
    assert!(!restart.status.success(), "a removed agent cannot be started");
    ok(&env, &["down"]).await;
}
