//! The CLIs' own state through the real binaries (security review H6): an
//! agent run gets a ductor-owned home per chat, seeded from the operator's
//! settings and linked to the operator's login, and can neither plant
//! anything in the operator's home nor read another chat's.
//! Needs `cargo build --bins`.

use std::path::{Path, PathBuf};

use ductor_tests::fake_model::FakeModel;
use ductor_tests::harness::TestEnv;
use ductor_tests::real_cli::{Cli, installed_cli, provider_files, provider_section};

const OPERATOR_SETTINGS: &str = r#"{"operator":"settings"}"#;
const OPERATOR_LOGIN: &str = r#"{"claudeAiOauth":"operator-login"}"#;

/// An operator home with a claude login, settings and private history.
fn operator_home(env: &mut TestEnv) -> tempfile::TempDir {
    let home = tempfile::Builder::new().prefix("op").tempdir_in("/tmp").expect("operator home");
    let claude = home.path().join(".claude");
    std::fs::create_dir_all(&claude).expect("mkdir .claude");
    std::fs::write(claude.join("settings.json"), OPERATOR_SETTINGS).expect("settings");
    std::fs::write(claude.join(".credentials.json"), OPERATOR_LOGIN).expect("login");
    std::fs::write(claude.join("history.jsonl"), "operator-private-history").expect("history");
    env.set_env("HOME", &home.path().display().to_string());
    home
}

fn homes(env: &TestEnv) -> PathBuf {
    env.home().join("providers/claude")
}

/// The home of each chat that has run, by directory name.
fn chat_homes(env: &TestEnv) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(homes(env))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("chat-")));
    dirs.sort();
    dirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_plant_state_in_the_operators_home_or_read_another_chats() {
    let mut env = TestEnv::with_fake_claude("");
    let operator = operator_home(&mut env);
    let op_claude = operator.path().join(".claude");
    env.up().await;

    let out = env
        .agent(
            "alice",
            "echo HOME_IS=$CLAUDE_CONFIG_DIR; cat $CLAUDE_CONFIG_DIR/settings.json; echo; \
             cat $CLAUDE_CONFIG_DIR/.credentials.json; echo; \
             echo '{\"hooks\":\"evil\"}' > $CLAUDE_CONFIG_DIR/settings.json && echo OWN_WRITTEN; \
             echo alice-transcript > $CLAUDE_CONFIG_DIR/alice.jsonl; \
             echo '{\"hooks\":\"evil\"}' > $HOME/.claude/settings.json && echo OPERATOR_WRITTEN; \
             echo x > $HOME/.claude/CLAUDE.md && echo OPERATOR_MEMORY_WRITTEN; \
             cat $HOME/.claude/history.jsonl || echo HISTORY_REFUSED",
        )
        .await;
    let alice = chat_homes(&env);
    assert_eq!(alice.len(), 1, "one home for the one chat: {alice:?}\n{out}");
    let alice = &alice[0];
    assert!(out.contains(&format!("HOME_IS={}", alice.display())), "{out}");
    assert!(
        out.contains(OPERATOR_SETTINGS),
        "the home is seeded with the operator's settings: {out}"
    );
    assert!(out.contains(OPERATOR_LOGIN), "the operator's login is usable: {out}");
    assert!(out.contains("OWN_WRITTEN"), "the agent may write its own home: {out}");
    assert!(!out.contains("OPERATOR_WRITTEN"), "{out}");
    assert!(!out.contains("OPERATOR_MEMORY_WRITTEN"), "{out}");
    assert!(!out.contains("operator-private-history"), "{out}");
    assert!(out.contains("HISTORY_REFUSED"), "{out}");
    let settings = std::fs::read_to_string(op_claude.join("settings.json")).unwrap();
    assert_eq!(settings, OPERATOR_SETTINGS, "the operator's settings are untouched");
    assert!(!op_claude.join("CLAUDE.md").exists());

    let alice_file = alice.join("alice.jsonl");
    let out = env
        .agent(
            "bob",
            &format!(
                "ls $CLAUDE_CONFIG_DIR; cat {} || echo ALICE_REFUSED; \
                 ls {} || echo ALICE_LIST_REFUSED",
                alice_file.display(),
                alice.display()
            ),
        )
        .await;
    assert_eq!(chat_homes(&env).len(), 2, "bob has a home of his own");
    assert!(!out.contains("alice-transcript"), "bob read alice's transcript: {out}");
    assert!(out.contains("ALICE_REFUSED") && out.contains("ALICE_LIST_REFUSED"), "{out}");

    // Alice's planted hook is gone at her next run: the operator's settings win.
    let out = env.agent("alice", "cat $CLAUDE_CONFIG_DIR/settings.json").await;
    assert!(out.contains(OPERATOR_SETTINGS) && !out.contains("evil"), "{out}");
    assert_eq!(std::fs::read_to_string(&alice_file).unwrap(), "alice-transcript\n");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// The conversation files under `dir` (claude's `projects/<cwd>/<id>.jsonl`).
fn transcripts(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                found.push(path);
            }
        }
    }
    found
}

/// The real claude keeps each chat's conversation in that chat's home, and
/// resumes it there; nothing lands in the operator's home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_keeps_each_chats_conversation_in_its_own_home() {
    let Some(claude) = installed_cli(Cli::Claude) else {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
            "claude is not installed (tests/setup/install-clis.sh) and DUCTOR_REQUIRE_REAL=1"
        );
        eprintln!("SKIP: claude not installed");
        return;
    };
    let model = FakeModel::start().await.expect("start the fake model");
    let cli_home = tempfile::Builder::new().prefix("op").tempdir_in("/tmp").expect("CLI home");
    let cli_env = provider_files(Cli::Claude, cli_home.path(), &model.base_url());
    let env = TestEnv::with_config(&format!(
        "[agent]\nprovider = \"claude\"\n\n{}",
        provider_section(Cli::Claude, &claude, &cli_env)
    ));
    env.up().await;
    for (chat, said) in [("alice", "alpha one"), ("bob", "bravo one"), ("alice", "alpha two")] {
        let out = env.ductorctl(&["ask", "--chat", chat, said]).await;
        assert!(out.status.success(), "{chat}: {said}");
    }
    let generations = model.generations();
    let second = generations
        .iter()
        .rfind(|r| r.prompt.as_deref().is_some_and(|p| p.contains("alpha two")))
        .expect("alice's second turn reached the model");
    assert!(second.body_contains("alpha one"), "alice's conversation was resumed");
    assert!(!second.body_contains("bravo one"), "bob's conversation is not alice's");

    let homes = chat_homes(&env);
    assert_eq!(homes.len(), 2, "{homes:?}");
    for home in &homes {
        let files = transcripts(home);
        assert!(!files.is_empty(), "no conversation in {}", home.display());
        let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
        let alice = text.contains("alpha one");
        assert_ne!(alice, text.contains("bravo one"), "one chat per home: {}", home.display());
    }
    let leaked = transcripts(&cli_home.path().join(".claude"));
    assert!(leaked.is_empty(), "conversations in the operator's home: {leaked:?}");
    assert!(!cli_home.path().join(".claude.json").exists(), "state in the operator's home");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
