//! Issue 17, config hot reload, through the real binaries: an edit of
//! `config.toml` reaches the running services without a restart (same pids),
//! by the file watch and by `ductorctl reload` (SIGHUP); a bad edit is refused
//! naming the key and the running configuration stays in force; keys that
//! need a restart are named by `reload` and `config check`; a new time zone
//! moves the cron jobs that name none. The Telegram
//! gateway runs against its fake Bot API, the agent is `ductor-fake-cli`.
//! Needs `cargo build --bins`.

use ductor_gateway_telegram::testing::{FakeBotApi, updates};
use ductor_tests::harness::{TestEnv, binary, text, wait_for};

const TOKEN: &str = "123456:RELOAD-SECRET-token-xyz";

/// The config of the Telegram stack; `extra` is appended.
fn telegram_config(api_url: &str, state: &std::path::Path, allowed: &str, extra: &str) -> String {
    format!(
        "[launcher]\nrestart_backoff_ms = 20\nrestart_backoff_max_ms = 200\n\n\
         [runner]\nextra_writable_paths = [\"{state}\"]\n\n\
         [providers.claude]\nbinary = \"{fake}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n\n\
         [telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\n\
         allowed_user_ids = {allowed}\n\n{extra}",
        state = state.display(),
        fake = binary("ductor-fake-cli").display(),
    )
}

/// A service's log so far.
fn log(env: &TestEnv, service: &str) -> String {
    std::fs::read_to_string(env.home().join("logs").join(format!("{service}.log")))
        .unwrap_or_default()
}

/// Waits until `service`'s log holds `needle` `count` times.
async fn wait_log(env: &TestEnv, service: &str, needle: &str, count: usize) {
    wait_for(&format!("{count}× {needle:?} in {service}.log"), async || {
        (log(env, service).matches(needle).count() >= count).then_some(())
    })
    .await;
}

/// Waits for the final reply in a private chat that contains `needle`.
async fn wait_reply(api: &FakeBotApi, chat: i64, needle: &str) {
    wait_for(&format!("a reply with {needle:?} in chat {chat}"), async || {
        api.calls_of("sendmessage")
            .iter()
            .any(|c| c.chat_id == Some(chat) && c.str("text").is_some_and(|t| t.contains(needle)))
            .then_some(())
    })
    .await;
}

fn answered(api: &FakeBotApi, chat: i64) -> bool {
    api.calls().iter().any(|c| c.chat_id == Some(chat) && c.method == "sendmessage")
}

/// The argv of the fake CLI's last run.
fn last_argv(state: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(state.join("last-argv.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_allowlist_and_model_apply_without_a_restart_and_a_bad_edit_changes_nothing() {
    let api = FakeBotApi::start(TOKEN).await;
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path().canonicalize().expect("canonical state dir");
    let env = TestEnv::with_config(&telegram_config(&api.url, &state, "[1]", ""));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", text(&up.stderr));
    env.wait_healthy(&["runner", "core", "telegram"]).await;
    let pids = env.known_pids();

    // User 2 is not allowed: refused (user 1's answer shows the gateway got both).
    api.push_update(updates::text(2, 2, 10, "hello from two"));
    api.push_update(updates::text(1, 1, 11, "hello from one"));
    wait_reply(&api, 1, "echo: hello from one").await;
    assert!(!answered(&api, 2), "user 2 is refused");

    // A bad edit (wrong type): the key is named and the old allowlist holds.
    env.write_config(&telegram_config(&api.url, &state, "\"everyone\"", ""));
    wait_log(&env, "telegram", "keeping the running configuration", 1).await;
    assert!(log(&env, "telegram").contains("telegram.allowed_user_ids"), "the key is named");
    api.push_update(updates::text(2, 2, 12, "still two"));
    api.push_update(updates::text(1, 1, 13, "still one"));
    wait_reply(&api, 1, "echo: still one").await;
    assert!(!answered(&api, 2), "the running allowlist still refuses user 2");

    // A good edit: user 2 allowed, and new sessions get another model.
    let extra = "[agent]\nmodel = \"reloaded-model\"\n";
    env.write_config(&telegram_config(&api.url, &state, "[1, 2]", extra));
    wait_log(&env, "telegram", "applied live: telegram.allowed_user_ids", 1).await;
    wait_log(&env, "core", "applied live: agent.model", 1).await;
    api.push_update(updates::text(2, 2, 14, "now two"));
    wait_reply(&api, 2, "echo: now two").await;
    let argv = last_argv(&state);
    let model = argv.iter().position(|a| a == "--model").and_then(|i| argv.get(i + 1));
    assert_eq!(model.map(String::as_str), Some("reloaded-model"), "{argv:?}");
    assert_eq!(env.known_pids(), pids, "nothing was restarted");
    for service in ["runner", "core", "telegram"] {
        assert!(!log(&env, service).contains("RELOAD-SECRET"), "{service}.log leaks the token");
    }
    let record = env.run_dir().join("applied").join("telegram");
    let record = std::fs::read_to_string(record).expect("the telegram gateway's record");
    assert!(!record.contains("RELOAD-SECRET"), "the record holds no secret: {record}");
    let _ = env.ductorctl(&["down"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ductorctl_reload_refuses_a_bad_file_and_reports_live_and_restart_keys() {
    let env = TestEnv::with_fake_claude("");
    let base = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    env.up().await;
    let pids = env.known_pids();
    // Before any change, `config check` has nothing waiting.
    let check = env.ductorctl(&["config", "check"]).await;
    assert!(check.status.success() && !text(&check.stdout).contains("needs a restart"));

    // A bad file: exit 64 naming the key, and no service was signalled.
    env.write_config(&format!("{base}\n[agent]\nmodell = \"m2\"\n"));
    let reload = env.ductorctl(&["reload"]).await;
    assert_eq!(reload.status.code(), Some(64), "{}", text(&reload.stderr));
    assert!(text(&reload.stderr).contains("agent.modell"), "{}", text(&reload.stderr));
    assert!(!log(&env, "core").contains("SIGHUP"), "nothing was signalled");

    // A good file: live and restart-needing keys are reported per service.
    let good = format!("{base}\n[agent]\nmodel = \"m2\"\n");
    let good = good.replace("[runner]\n", "[runner]\nsandbox = \"none\"\n");
    let good = good.replace("[launcher]\n", "[launcher]\nmax_crashes = 9\n");
    env.write_config(&good);
    let reload = env.ductorctl(&["reload"]).await;
    let out = text(&reload.stdout);
    assert!(reload.status.success(), "{out}{}", text(&reload.stderr));
    assert!(out.contains("core: applied live: agent.model"), "{out}");
    assert!(out.contains("runner: needs `ductorctl restart runner` for: runner.sandbox"), "{out}");
    let launcher = "launcher: needs `ductorctl down && ductorctl up` for: launcher.max_crashes";
    assert!(out.contains(launcher), "{out}");
    wait_log(&env, "core", "SIGHUP: checking config.toml", 1).await;
    wait_log(&env, "runner", "SIGHUP: checking config.toml", 1).await;

    // `config check` still names the key that waits for a restart.
    let check = env.ductorctl(&["config", "check"]).await;
    let out = text(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(out.contains("runner: needs a restart"), "{out}");
    assert!(out.contains("runner.sandbox"), "{out}");
    assert!(out.contains(launcher), "{out}");
    assert!(!out.contains("agent.model"), "agent.model is applied: {out}");

    // The next turn's CLI gets the new model; nothing was restarted.
    let ask = env.ductorctl(&["ask", "--chat", "reload", "hello"]).await;
    assert!(ask.status.success(), "{}", text(&ask.stderr));
    let argv = last_argv(&env.home().join("fake-state"));
    let model = argv.iter().position(|a| a == "--model").and_then(|i| argv.get(i + 1));
    assert_eq!(model.map(String::as_str), Some("m2"), "{argv:?}");
    assert_eq!(env.known_pids(), pids, "nothing was restarted");
    let _ = env.ductorctl(&["down"]).await;
}

/// A new `[agent].timezone` moves the cron jobs that name no zone of their
/// own: a daily job set for a minute from now in Tokyo (UTC+9, no DST) is
/// nine hours away while the zone is UTC, and fires once the edit applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_time_zone_moves_the_cron_jobs_that_name_none() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    // The next minute boundary at least 20 s away: the reload has time to apply.
    let mut fire = now.as_secs().div_ceil(60) * 60;
    if fire - now.as_secs() < 20 {
        fire += 60;
    }
    let tokyo = fire + 9 * 3600;
    let schedule = format!("{} {} * * *", (tokyo / 60) % 60, (tokyo / 3600) % 24);
    let args = ["cron", "add", "zoned", "--schedule", &schedule, "--description", "say hi"];
    let added = env.ductorctl(&args).await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    let listed = text(&env.ductorctl(&["cron", "list"]).await.stdout);
    assert!(listed.contains("(default zone)"), "the job names no zone: {listed}");

    let before = env.service_status("core").await.expect("core")["pid"].as_u64();
    let config = std::fs::read_to_string(env.home().join("config.toml")).unwrap();
    env.write_config(&format!("{config}\n[agent]\ntimezone = \"Asia/Tokyo\"\n"));
    wait_log(&env, "core", "follow the new time zone", 1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    loop {
        let history = text(&env.ductorctl(&["cron", "history", "zoned"]).await.stdout);
        if history.lines().next().is_some_and(|l| l.contains("scheduled")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job did not fire in Tokyo's time");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let after = env.service_status("core").await.expect("core")["pid"].as_u64();
    assert_eq!(before, after, "no restart");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// `[providers.*]` is live in the runner: the run after a reload gets the
/// new arguments, from the same runner process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_provider_arguments_reach_the_next_run_without_a_restart() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let state = env.home().join("fake-state");
    let ask = ["ask", "--chat", "c1", "hello"];
    assert!(env.ductorctl(&ask).await.status.success());
    assert!(!last_argv(&state).iter().any(|a| a == "--reload-probe"), "{:?}", last_argv(&state));
    let runner = env.service_status("runner").await.expect("runner")["pid"].as_u64();

    let config = std::fs::read_to_string(env.home().join("config.toml")).unwrap();
    let edited = config.replacen(
        "[providers.claude]\n",
        "[providers.claude]\nargs = [\"--reload-probe\"]\n",
        1,
    );
    assert_ne!(edited, config, "the fake claude's section is in the config");
    env.write_config(&edited);
    let reload = env.ductorctl(&["reload"]).await;
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    let report = text(&reload.stdout);
    assert!(report.contains("runner: applied live: providers.claude.args"), "{report}");

    assert!(env.ductorctl(&ask).await.status.success());
    assert!(last_argv(&state).iter().any(|a| a == "--reload-probe"), "{:?}", last_argv(&state));
    let after = env.service_status("runner").await.expect("runner")["pid"].as_u64();
    assert_eq!(runner, after, "the runner was not restarted");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
