//! `ductorctl import` (issue 17) end to end: a home written by the real
//! Python ductor 0.20.1 (`tests/setup/install-python-ductor.sh`, its own
//! classes and agent tools driven by `tests/fixtures/python_ductor_home.py`)
//! imported into the real runner and core. A dry run changes nothing;
//! `--apply` brings the config keys, the secret (0600, never printed), the
//! cron job, the webhooks (the old bearer token and HMAC secret still
//! accepted by our listener), the memory, a chat's resume id (its next turn
//! resumes it, because the runner copied the transcript into the chat's CLI
//! home) and a named session; a second `--apply` changes nothing. Without
//! the Python install it is skipped, or fails under `DUCTOR_REQUIRE_REAL=1`.
//! Needs `cargo build --bins`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ductor_proto::pb;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::{self, TestEnv, text};
use sha2::Digest as _;

/// The venv's python from the install script, or `None` (skip).
fn python() -> Option<PathBuf> {
    let python =
        std::env::var_os("DUCTOR_PYDUCTOR_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/python-ductor/venv/bin/python")
        });
    if python.is_file() {
        return Some(python);
    }
    assert!(
        std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
        "Python ductor is not installed (tests/setup/install-python-ductor.sh) and DUCTOR_REQUIRE_REAL=1"
    );
    eprintln!("SKIP: Python ductor not installed (run tests/setup/install-python-ductor.sh)");
    None
}

/// Python ductor's home, written by its own code; returns the fixture's summary.
fn python_home(python: &Path, home: &Path, operator: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/python_ductor_home.py");
    #[allow(clippy::disallowed_methods)] // A test fixture, not a ductor process.
    let output = std::process::Command::new(python)
        .arg(script)
        .env("DUCTOR_HOME", home)
        .env("HOME", operator)
        .env_remove("DUCTOR_RUN_DIR")
        .output()
        .expect("run the Python fixture");
    assert!(output.status.success(), "the fixture failed: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the fixture prints JSON")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// HMAC-SHA256 (RFC 2104), hex.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    let outer = sha2::Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
    hex::encode(outer)
}

async fn import(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["import"];
    full.extend_from_slice(args);
    let output = env.ductorctl(&full).await;
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn line<'a>(report: &'a str, needle: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{report}"))
}

/// The final reply of `chat`'s next turn after saying `text` as Telegram.
async fn turn(gateway: &mut Gateway, chat: &str, text: &str) -> String {
    let event = gateway.say(chat, text).await;
    let actions = gateway.turn(&event, true).await;
    match actions.last().and_then(|a| a.kind.clone()) {
        Some(pb::outbound_action::Kind::FinalReply(reply)) => reply.text,
        other => panic!("no final reply: {other:?}"),
    }
}

/// The argv of the fake claude's latest run (empty while a run is writing it).
fn last_argv(env: &TestEnv) -> Vec<String> {
    let argv = std::fs::read_to_string(env.home().join("fake-state/last-argv.json")).expect("argv");
    serde_json::from_str(&argv).unwrap_or_default()
}

#[tokio::test]
async fn a_python_ductor_home_moves_in_and_a_second_apply_changes_nothing() {
    let Some(python) = python() else { return };
    let port = free_port();
    let mut env =
        TestEnv::with_fake_claude(&format!("[webhooks]\nenabled = true\nport = {port}\n"));
    let operator = tempfile::tempdir().expect("an operator home");
    env.set_env("HOME", &operator.path().display().to_string());
    let py_dir = tempfile::tempdir().expect("a Python ductor home");
    let py = py_dir.path().join(".ductor");
    let summary = python_home(&python, &py, operator.path());
    let py_arg = py.display().to_string();
    let config_before = std::fs::read_to_string(env.home().join("config.toml")).unwrap();

    // A dry run without ductor running reports and writes nothing.
    let (ok, report, stderr) = import(&env, &[&py_arg]).await;
    assert!(ok, "{stderr}");
    assert!(report.contains("dry run"), "{report}");
    assert!(line(&report, "telegram_token → telegram.token_file").contains("(set)"));
    assert!(
        !report.contains("PY-DUCTOR-TELEGRAM-SECRET")
            && !report.contains("PY-DUCTOR-SUBAGENT-SECRET")
    );
    assert!(!report.contains("PY-DUCTOR-MATRIX-AGENT-SECRET"), "{report}");
    let researcher = line(&report, "researcher (telegram)");
    assert!(researcher.starts_with("  +") && researcher.contains("[[agents]] entry"), "{report}");
    assert!(researcher.contains("(set) in") && researcher.contains("researcher-telegram.token"));
    assert!(line(&report, "coder (matrix)").contains("coder-matrix.password"), "{report}");
    assert!(line(&report, "coder: idle_timeout_minutes").starts_with("  -"), "{report}");
    assert!(!env.home().join("secrets/researcher-telegram.token").exists(), "a dry run");
    assert_eq!(std::fs::read_to_string(env.home().join("config.toml")).unwrap(), config_before);
    assert!(!env.home().join("secrets/telegram_token").exists());
    assert!(!env.home().join("state.db").exists(), "nothing was started or written");
    // --apply refuses without ductor, before writing anything.
    let (ok, _, stderr) = import(&env, &[&py_arg, "--apply"]).await;
    assert!(!ok && stderr.contains("ductorctl up"), "{stderr}");
    assert_eq!(std::fs::read_to_string(env.home().join("config.toml")).unwrap(), config_before);

    env.up().await;
    // A dry run with ductor running checks more and still changes nothing.
    let (ok, report, stderr) = import(&env, &[&py_arg]).await;
    assert!(ok, "{stderr}");
    assert!(
        line(&report, "tg:4242 → telegram:4242 claude").contains("transcript found"),
        "{report}"
    );
    assert!(line(&report, "tg:5151").contains("not resumable"), "{report}");
    let cron = env.ductorctl(&["cron", "list"]).await;
    assert!(!text(&cron.stdout).contains("daily-report"), "a dry run added a job");

    let (ok, report, stderr) = import(&env, &[&py_arg, "--apply"]).await;
    assert!(ok, "{stderr}");
    assert!(report.contains("(applied)"), "{report}");
    assert!(!report.contains("PY-DUCTOR-TELEGRAM-SECRET"), "{report}");
    assert!(line(&report, "daily-report").starts_with("  +"), "{report}");
    assert!(line(&report, "custom-prefix").starts_with("  +"), "{report}");
    assert!(
        line(&report, "tg:5151").starts_with("  -"),
        "an id without transcript is not imported"
    );

    // Config: mapped keys, the token in a 0600 file referenced by token_file.
    let config = std::fs::read_to_string(env.home().join("config.toml")).unwrap();
    assert!(config.starts_with(&config_before[..config_before.find('\n').unwrap()]), "{config}");
    for want in [
        "allowed_user_ids = [4242]",
        "timezone = \"Europe/Berlin\"",
        "model = \"sonnet\"",
        "token_file = ",
    ] {
        assert!(config.contains(want), "{want:?} not in:\n{config}");
    }
    assert!(config.contains(&format!("port = {port}")), "our webhook port is kept: {config}");
    let token = env.home().join("secrets/telegram_token");
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "123456:PY-DUCTOR-TELEGRAM-SECRET");
    assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!config.contains("PY-DUCTOR-TELEGRAM-SECRET"));

    // Sub-agents: [[agents]] entries, their secrets in their own 0600 files.
    let entries: toml::Table = config.parse().expect("config.toml is TOML");
    let agents = entries["agents"].as_array().expect("[[agents]]");
    let researcher = &agents.iter().find(|a| a["name"].as_str() == Some("researcher")).unwrap();
    assert_eq!(researcher["provider"].as_str(), Some("claude"));
    assert_eq!(researcher["model"].as_str(), Some("sonnet"));
    let bot = researcher["telegram"].as_table().expect("[agents.telegram]");
    assert_eq!(bot["allowed_user_ids"].as_array().unwrap(), &[toml::Value::Integer(4242)]);
    let token = env.home().join("secrets/researcher-telegram.token");
    assert_eq!(bot["token_file"].as_str(), Some(token.to_str().unwrap()));
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "999:PY-DUCTOR-SUBAGENT-SECRET");
    assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
    let coder = &agents.iter().find(|a| a["name"].as_str() == Some("coder")).unwrap();
    assert_eq!(coder["provider"].as_str(), Some("codex"));
    assert_eq!(coder["reasoning_effort"].as_str(), Some("high"));
    let account = coder["matrix"].as_table().expect("[agents.matrix]");
    assert_eq!(account["user_id"].as_str(), Some("@coder:example.com"));
    assert_eq!(account["allowed_rooms"].as_array().unwrap().len(), 1);
    let password = env.home().join("secrets/coder-matrix.password");
    assert_eq!(account["password_file"].as_str(), Some(password.to_str().unwrap()));
    assert_eq!(std::fs::read_to_string(&password).unwrap(), "PY-DUCTOR-MATRIX-AGENT-SECRET");
    assert!(!config.contains("PY-DUCTOR-SUBAGENT-SECRET") && !config.contains("MATRIX-AGENT"));

    // Cron job and memory.
    let cron = env.ductorctl(&["cron", "list"]).await;
    assert!(text(&cron.stdout).contains("daily-report"), "{}", text(&cron.stdout));
    let memory =
        std::fs::read_to_string(env.home().join("workspace/memory_system/MAINMEMORY.md")).unwrap();
    assert!(memory.contains("Pixel"), "{memory}");
    let task = "cron_tasks/daily-report/TASK_DESCRIPTION.md";
    assert_eq!(
        std::fs::read_to_string(env.home().join("workspace").join(task)).unwrap(),
        std::fs::read_to_string(py.join("workspace").join(task)).unwrap(),
        "the job's assignment is Python's"
    );

    // The old senders still get in: the bearer token and the GitHub-style HMAC secret.
    let client = reqwest::Client::new();
    let url = |id: &str| format!("http://127.0.0.1:{port}/hooks/{id}");
    let bearer = summary["bearer_token"].as_str().unwrap();
    let sent = client
        .post(url("ci-failure"))
        .header("content-type", "application/json")
        .bearer_auth(bearer)
        .body(r#"{"branch":"main"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 202, "{:?}", sent.text().await);
    let body = r#"{"ref":"refs/heads/main"}"#;
    let signature = format!("sha256={}", hmac_sha256(b"gh-shared-secret", body.as_bytes()));
    let signed = |sig: String| {
        client
            .post(url("gh-push"))
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", sig)
            .body(body)
            .send()
    };
    let bad = signed(format!("sha256={}", hmac_sha256(b"other", body.as_bytes()))).await.unwrap();
    assert_eq!(bad.status().as_u16(), 401, "a wrong signature is refused");
    let good = signed(signature).await.unwrap();
    assert_eq!(good.status().as_u16(), 202, "{:?}", good.text().await);
    // Python's payload prefix regex: the header's `t=` is signed before the body.
    let stripe = format!(
        "t=1700000000,v1={}",
        hmac_sha256(b"s3cr3t", format!("1700000000.{body}").as_bytes())
    );
    let sent = client
        .post(url("custom-prefix"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", stripe)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 202, "{:?}", sent.text().await);

    // The chat's next turn resumes the imported session.
    let resumable = summary["resumable_session"].as_str().unwrap();
    let mut telegram = Gateway::attach(env.channel("core"), gateway::hello("telegram")).await;
    let reply = turn(&mut telegram, "4242", "hello again").await;
    assert!(reply.contains("echo: hello again"), "{reply}");
    let argv = last_argv(&env);
    let at = argv
        .iter()
        .position(|a| a == "--resume")
        .unwrap_or_else(|| panic!("no --resume: {argv:?}"));
    assert_eq!(argv[at + 1], resumable, "{argv:?}");
    // The chat whose transcript was missing starts fresh.
    turn(&mut telegram, "5151", "hi").await;
    assert!(!last_argv(&env).contains(&"--resume".to_owned()), "{:?}", last_argv(&env));
    // The named session continues its own session.
    let named = &summary["named_session"];
    let name = named["name"].as_str().unwrap();
    telegram.say("4242", &format!("@{name} go on")).await;
    let argv = harness::wait_for("the named session's run", async || {
        let argv = last_argv(&env);
        argv.contains(&named["session_id"].as_str().unwrap().to_owned()).then_some(argv)
    })
    .await;
    assert!(argv.contains(&"--resume".to_owned()), "{argv:?}");

    // A second apply changes nothing.
    let config_after = std::fs::read_to_string(env.home().join("config.toml")).unwrap();
    let (ok, again, stderr) = import(&env, &[&py_arg, "--apply"]).await;
    assert!(ok, "{stderr}");
    assert!(again.contains("Nothing changed"), "{again}");
    assert!(again.contains("\n0 imported,"), "{again}");
    assert!(
        !again.contains("\n  ! 1 files"),
        "the workspace is as the first apply left it: {again}"
    );
    assert_eq!(std::fs::read_to_string(env.home().join("config.toml")).unwrap(), config_after);
}

#[tokio::test]
async fn a_directory_that_is_no_python_ductor_home_is_refused_clearly() {
    let env = TestEnv::new();
    let empty = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = import(&env, &[&empty.path().display().to_string()]).await;
    assert!(!ok);
    assert!(
        stderr.contains("is not a Python ductor home") && stderr.contains("config/config.json"),
        "{stderr}"
    );
    let (ok, _, stderr) = import(&env, &["/nonexistent/ductor-home"]).await;
    assert!(!ok && stderr.contains("is not a Python ductor home"), "{stderr}");
}

#[tokio::test]
async fn importing_a_home_into_itself_keeps_the_workspace_in_place() {
    let Some(python) = python() else { return };
    let env = TestEnv::new();
    let operator = tempfile::tempdir().unwrap();
    // Python ductor's files beside our config.toml: PATH is our home.
    python_home(&python, env.home(), operator.path());
    let (ok, report, stderr) = import(&env, &[&env.home().display().to_string()]).await;
    assert!(ok, "{stderr}");
    assert!(line(&report, "/workspace:").contains("PATH is this ductor's home"), "{report}");
    assert!(line(&report, "memory_system/MAINMEMORY.md").contains("already in place"), "{report}");
    // The same report as JSON, without a secret in it.
    let (ok, json, stderr) = import(&env, &[&env.home().display().to_string(), "--json"]).await;
    assert!(ok, "{stderr}");
    assert!(!json.contains("PY-DUCTOR-TELEGRAM-SECRET"), "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    let titles: Vec<&str> =
        json["sections"].as_array().unwrap().iter().map(|s| s["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 8, "{titles:?}");
    assert!(
        titles.iter().any(|t| t.starts_with("Config")) && titles.contains(&"Sessions"),
        "{titles:?}"
    );
}
