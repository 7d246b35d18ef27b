//! Issue 16, memory upkeep, end to end: the real runner and core, the real
//! claude against the fake model API, a test gateway playing the chat.
//!
//! - `/new` flushes the old session: a one-shot run resumes it (its history
//!   reaches the model) with the flush prompt; nothing of it reaches the chat.
//! - `/compact` (passed through to claude, which compacts for real) is
//!   preceded by a flush in the same session; the compaction claude reports
//!   does not flush a second time within the dedup window.
//! - Every n-th message carries the memory-check hint.
//! - A main memory over its cap is compacted by a one-shot run, once.
//!
//! Needs the pinned claude (`tests/setup/install-clis.sh`) and `cargo build --bins`.

use std::time::Duration;

use ductor_tests::fake_model::FakeModel;
use ductor_tests::gateway::Chat;
use ductor_tests::harness::{TestEnv, wait_for};
use ductor_tests::real_cli::{Cli, real_cli_home};

const TRANSPORT: &str = "testgw";
const CHAT: &str = "room";
const LONG: Duration = Duration::from_secs(90);

async fn stack(memory: &str) -> Option<(TestEnv, FakeModel, tempfile::TempDir)> {
    let (env, model, cli_home) =
        real_cli_home(Cli::Claude, "", &format!("[memory]\n{memory}\n")).await?;
    env.up().await;
    Some((env, model, cli_home))
}

/// Prompts the model got whose text contains `needle`.
fn prompts_with(model: &FakeModel, needle: &str) -> Vec<ductor_tests::fake_model::RecordedRequest> {
    model
        .generations()
        .into_iter()
        .filter(|r| r.prompt.as_deref().is_some_and(|p| p.contains(needle)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_flushes_the_old_session_without_a_word_in_the_chat() {
    let Some((env, model, _home)) = stack("check_every_messages = 0").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.gateway.say(CHAT, "my cat is called Miso").await;
    chat.expect(CHAT, "Miso", LONG).await;
    chat.gateway.say(CHAT, "/new").await;
    chat.expect(CHAT, "Fresh claude session", LONG).await;
    let flush =
        wait_for("the flush run", async || prompts_with(&model, "MEMORY FLUSH").into_iter().next())
            .await;
    assert!(flush.body_contains("my cat is called Miso"), "it resumed the old session: {flush:?}");
    chat.gateway.say(CHAT, "after the reset").await;
    chat.expect(CHAT, "after the reset", LONG).await;
    let fresh = prompts_with(&model, "after the reset");
    assert!(!fresh[0].body_contains("Miso"), "the chat's own session is new");
    assert!(
        chat.position("MEMORY FLUSH").is_none(),
        "nothing of the flush reached the chat: {:#?}",
        chat.all
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_is_preceded_by_one_flush_in_the_same_session() {
    let Some((env, model, _home)) = stack("check_every_messages = 0").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    chat.gateway.say(CHAT, "remember the blue door").await;
    chat.expect(CHAT, "blue door", LONG).await;
    chat.gateway.say(CHAT, "/compact").await;
    chat.expect(CHAT, "Done", LONG).await;
    let requests = model.generations();
    let at = |needle: &str| {
        requests.iter().position(|r| r.prompt.as_deref().is_some_and(|p| p.contains(needle)))
    };
    let flush = at("MEMORY FLUSH").expect("a flush turn");
    let summary = at("create a detailed summary of the conversation").expect("claude compacted");
    assert!(flush < summary, "the flush ran before the compaction");
    assert!(requests[flush].body_contains("remember the blue door"), "in the same session");
    // Claude reported the compaction; within the window it is not flushed again.
    chat.gateway.say(CHAT, "and now").await;
    chat.expect(CHAT, "and now", LONG).await;
    assert_eq!(prompts_with(&model, "MEMORY FLUSH").len(), 1);
    assert!(chat.position("MEMORY FLUSH").is_none(), "{:#?}", chat.all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_message_carries_the_memory_check() {
    let Some((env, model, _home)) = stack("check_every_messages = 2").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    for word in ["first", "second", "third", "fourth"] {
        chat.gateway.say(CHAT, &format!("the {word} message")).await;
        chat.expect(CHAT, &format!("the {word} message"), LONG).await;
    }
    let hinted: Vec<String> =
        prompts_with(&model, "MEMORY CHECK").iter().filter_map(|r| r.prompt.clone()).collect();
    assert_eq!(hinted.len(), 2, "{hinted:#?}");
    assert!(
        hinted[0].starts_with("the second message") && hinted[1].starts_with("the fourth message")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_over_its_cap_is_compacted_once() {
    let config =
        "compaction_trigger_lines = 5\ncompaction_target_lines = 3\ncompaction_check_seconds = 1";
    let Some((env, model, _home)) = stack(config).await else { return };
    let memory = env.home().join("workspace/memory_system/MAINMEMORY.md");
    let long: String = (0..20).map(|i| format!("- fact number {i}\n")).collect();
    std::fs::write(&memory, format!("# Main memory\n{long}")).unwrap();
    let asked = wait_for("a compaction run", async || {
        prompts_with(&model, "MEMORY COMPACTION").into_iter().next()
    })
    .await;
    assert!(asked.prompt.unwrap().contains("has 21 lines, more than 5"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        prompts_with(&model, "MEMORY COMPACTION").len(),
        1,
        "the unchanged file is not compacted again"
    );
}
