//! Issue 16, "rule files per provider", through the real binaries: the
//! workspace's and a cron task folder's `CLAUDE.md`, `AGENTS.md` and
//! `GEMINI.md` follow an edit of any one of them (and the real claude and
//! codex then send it to the model), a framework upgrade refreshes ductor's
//! block while keeping the user's text, and a planted link in place of a
//! rule file is replaced, never written through. Needs `cargo build --bins`
//! and, for the first test, the pinned CLIs (`tests/setup/install-clis.sh`).

use std::path::{Path, PathBuf};

use ductor_tests::fake_model::FakeModel;
use ductor_tests::harness::{TestEnv, text, wait_for};
use ductor_tests::real_cli::{Cli, installed_cli, provider_files, provider_section};
use sha2::Digest as _;

const RULE_FILES: [&str; 3] = ["CLAUDE.md", "AGENTS.md", "GEMINI.md"];
/// Fast passes, so the bounded waits stay short.
const FAST_SYNC: &str = "[rules]\nsync_interval_seconds = 1\n";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn append(path: &Path, line: &str) {
    let mut content = std::fs::read_to_string(path).expect("the rule file exists");
    content.push_str(line);
    std::fs::write(path, content).expect("edit the rule file");
}

/// Waits until every rule file in `dir` is a regular file containing `needle`.
async fn all_carry(dir: &Path, needle: &str) {
    wait_for(&format!("every rule file in {} to carry {needle:?}", dir.display()), async || {
        RULE_FILES
            .iter()
            .all(|name| {
                let path = dir.join(name);
                std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
                    && read(&path).contains(needle)
            })
            .then_some(())
    })
    .await;
}

fn real(cli: Cli) -> Option<PathBuf> {
    let found = installed_cli(cli);
    if found.is_none() {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
            "{} is not installed (tests/setup/install-clis.sh) and DUCTOR_REQUIRE_REAL=1",
            cli.name()
        );
        eprintln!("SKIP: {} not installed", cli.name());
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_gemini_md_reaches_claude_md_and_agents_md_and_both_clis_send_it() {
    let (Some(claude), Some(codex)) = (real(Cli::Claude), real(Cli::Codex)) else { return };
    let model = FakeModel::start().await.expect("start the fake model");
    let claude_home = tempfile::Builder::new().prefix("op").tempdir_in("/tmp").expect("home");
    let codex_home = tempfile::Builder::new().prefix("op").tempdir_in("/tmp").expect("home");
    let claude_env = provider_files(Cli::Claude, claude_home.path(), &model.base_url());
    let codex_env = provider_files(Cli::Codex, codex_home.path(), &model.base_url());
    let env = TestEnv::with_config(&format!(
        "[agent]\nprovider = \"claude\"\n\n{FAST_SYNC}\n{}\n{}",
        provider_section(Cli::Claude, &claude, &claude_env),
        provider_section(Cli::Codex, &codex, &codex_env),
    ));
    env.up().await;
    let ws = env.home().join("workspace");
    let marker = format!("RULE-MARKER-{}", std::process::id());
    append(&ws.join("GEMINI.md"), &format!("\n- {marker}: greet the user by name.\n"));
    all_carry(&ws, &marker).await;

    let out = env.ductorctl(&["ask", "--chat", "alice", "hello from alice"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let to_model = |prompt: &str| {
        model
            .generations()
            .into_iter()
            // By body: codex's prompt opens with ductor's `<instructions>` (the
            // main memory), which the fake's prompt finder skips as a wrapper.
            .rfind(|r| r.body_contains(prompt))
            .unwrap_or_else(|| {
                let seen: Vec<_> =
                    model.generations().into_iter().map(|r| (r.path, r.prompt)).collect();
                panic!("{prompt:?} did not reach the model: {seen:#?}")
            })
    };
    let sent = to_model("hello from alice");
    assert!(sent.body_contains(&marker), "claude did not send CLAUDE.md's edit: {}", sent.body);

    let switched = env.ductorctl(&["ask", "--chat", "bob", "/model codex"]).await;
    assert!(text(&switched.stdout).contains("codex"), "{}", text(&switched.stdout));
    let out = env.ductorctl(&["ask", "--chat", "bob", "hello from bob"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sent = to_model("hello from bob");
    assert!(sent.path.starts_with("/v1/responses"), "codex answered: {}", sent.path);
    assert!(sent.body_contains(&marker), "codex did not send AGENTS.md's edit: {}", sent.body);
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// A rule file as an older ductor would have left it: its block holds
/// `inner` under the hash of `inner`, the user's text around it.
fn old_version_file(inner: &str, before: &str, after: &str) -> String {
    let sha = hex::encode(&sha2::Sha256::digest(inner.as_bytes())[..8]);
    format!(
        "{before}<!-- ductor:begin sha256={sha}: ductor's rules, updated by ductor. -->\n\
         {inner}<!-- ductor:end -->\n{after}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_upgrade_refreshes_the_block_and_keeps_the_users_text() {
    let env = TestEnv::with_fake_claude(FAST_SYNC);
    env.up().await;
    let ws = env.home().join("workspace");
    let current = read(&ws.join("CLAUDE.md"));
    assert!(
        current.contains("<!-- ductor:begin sha256=") && current.contains("# ductor workspace")
    );
    assert!(env.ductorctl(&["down"]).await.status.success());

    let old = old_version_file(
        "# ductor workspace\n\nOLD-FRAMEWORK-TEXT from an older ductor.\n",
        "USER-INTRO: my rules come first.\n\n",
        "\nUSER-OUTRO: and last.\n",
    );
    for name in RULE_FILES {
        std::fs::write(ws.join(name), &old).expect("leave an old version's file");
    }
    env.up().await;
    for name in RULE_FILES {
        let now = read(&ws.join(name));
        assert!(!now.contains("OLD-FRAMEWORK-TEXT"), "{name}: the block was not refreshed: {now}");
        assert!(now.contains("## Sending files"), "{name}: today's rules are in: {now}");
        assert!(now.starts_with("USER-INTRO: my rules come first.\n\n<!-- ductor:begin"), "{now}");
        assert!(now.ends_with("<!-- ductor:end -->\n\nUSER-OUTRO: and last.\n"), "{now}");
    }
    let log = read(&env.home().join("logs/core.log"));
    assert!(log.contains("its block was refreshed"), "the upgrade is logged");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_task_folders_rule_files_follow_an_edit_of_its_agents_md() {
    let env = TestEnv::with_fake_claude(FAST_SYNC);
    env.up().await;
    let added = env
        .ductorctl(&["cron", "add", "digest", "--schedule", "0 0 1 1 *", "--description", "d"])
        .await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    let dir = env.home().join("workspace/cron_tasks/digest");
    let rules = read(&dir.join("CLAUDE.md"));
    assert!(rules.contains("<!-- ductor:begin") && rules.contains("digest_MEMORY.md"), "{rules}");
    append(&dir.join("AGENTS.md"), "\nCRON-RULE-MARKER: only report failures.\n");
    all_carry(&dir, "CRON-RULE-MARKER").await;
    // Editing the job again does not throw the user's rules away.
    let edited = env.ductorctl(&["cron", "edit", "digest", "--description", "e"]).await;
    assert!(edited.status.success(), "{}", text(&edited.stderr));
    all_carry(&dir, "CRON-RULE-MARKER").await;
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_claude_md_link_is_replaced_never_written_through() {
    let env = TestEnv::with_fake_claude(FAST_SYNC);
    let victim_dir = tempfile::tempdir().expect("victim dir");
    let victim = victim_dir.path().join("authorized_keys");
    std::fs::write(&victim, "PRECIOUS-OUTSIDE-FILE\n").expect("victim");
    env.up().await;
    let planted =
        env.agent("c1", &format!("ln -sf {} CLAUDE.md && echo planted", victim.display())).await;
    assert!(planted.contains("planted"), "{planted}");
    let ws = env.home().join("workspace");
    append(&ws.join("AGENTS.md"), "\nLINK-TEST-MARKER\n");
    all_carry(&ws, "LINK-TEST-MARKER").await;
    assert_eq!(read(&victim), "PRECIOUS-OUTSIDE-FILE\n", "core wrote through the planted link");
    for name in RULE_FILES {
        assert!(!read(&ws.join(name)).contains("PRECIOUS"), "{name}: the link's target was read");
    }
    assert!(env.ductorctl(&["down"]).await.status.success());
}
