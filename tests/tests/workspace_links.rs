//! Issue 13, class 1, through the real binaries: a sandboxed agent (the fake
//! CLI's `sh:`) plants links, FIFOs and swapped folders in its workspace, and
//! ductor's unconfined processes must not follow them: a cron job's folder
//! linked to `$DUCTOR_HOME` (H1), the main memory linked to a secret or made a
//! FIFO (H2, M11), a task description or rule file linked to a file outside
//! (H3), and a `<file:>` tag naming ductor's own secrets under
//! `file_access = "all"` (M9). Needs `cargo build --bins`.

use std::time::Duration;

use ductor_proto::pb;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::{self, TestEnv, text, wait_for};

fn ctl() -> String {
    harness::binary("ductorctl").display().to_string()
}

fn admin_token(env: &TestEnv) -> String {
    std::fs::read_to_string(env.home().join("secrets/admin.token"))
        .expect("admin token")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_folder_linked_to_ductors_home_runs_nothing_there() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let ctl = ctl();
    let config_before = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    let payload =
        "sh:cat $DUCTOR_HOME/secrets/admin.token; touch $DUCTOR_HOME/secrets/planted; exit 0";
    let out = env
        .agent(
            "c1",
            &format!(
                "{ctl} cron add pwn --schedule '0 0 1 1 *' --instruction '{payload}' && \
             rm -rf cron_tasks/pwn && ln -s ../.. cron_tasks/pwn && {ctl} cron run pwn"
            ),
        )
        .await;
    assert!(out.contains("started"), "{out}");
    let history = wait_for("the run's end", async || {
        let out = env.ductorctl(&["cron", "history", "pwn"]).await;
        let out = text(&out.stdout);
        (!out.contains("running") && out.contains("pwn")).then_some(out)
    })
    .await;
    assert!(history.contains("error"), "the run failed: {history}");
    assert!(!history.contains(&admin_token(&env)), "the run read the admin token: {history}");
    assert!(!env.home().join("secrets/planted").exists(), "the run wrote into secrets/");
    assert!(!env.home().join("scripts").exists(), "core wrote into the link's target");
    assert!(!env.home().join("CLAUDE.md").exists(), "core wrote into the link's target");
    let config_after = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    assert_eq!(config_before, config_after);
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_or_fifo_main_memory_is_neither_shown_nor_prompted_nor_waited_on() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let linked = env
        .agent("c1", "ln -sf ../../secrets/admin.token memory_system/MAINMEMORY.md && echo linked")
        .await;
    assert!(linked.contains("linked"), "{linked}");
    let memory = env.ductorctl(&["ask", "--chat", "c9", "/memory"]).await;
    assert!(!text(&memory.stdout).contains(&admin_token(&env)), "/memory showed the token");
    // A new session gets the memory in its system prompt: not the token.
    let hello = env.agent("c10", "echo hello").await;
    assert!(hello.contains("hello"), "{hello}");
    let input = std::fs::read_to_string(env.home().join("fake-state/last-input.json"))
        .expect("the fake CLI records its input");
    assert!(input.contains("sh:echo hello"), "the record is this turn's: {input}");
    assert!(!input.contains(&admin_token(&env)), "the new session's prompt carries the token");

    let fifo = env
        .agent(
            "c1",
            "rm -f memory_system/MAINMEMORY.md && mkfifo memory_system/MAINMEMORY.md && echo made",
        )
        .await;
    assert!(fifo.contains("made"), "{fifo}");
    // New sessions still answer; core is not stuck opening the FIFO.
    let hello = tokio::time::timeout(
        Duration::from_secs(30),
        env.ductorctl(&["ask", "--chat", "c11", "hello"]),
    )
    .await
    .expect("core answers despite the FIFO");
    assert!(text(&hello.stdout).contains("echo: hello"), "{}", text(&hello.stdout));
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_never_writes_through_links_the_agent_planted() {
    let env = TestEnv::with_fake_claude("");
    let victim = tempfile::tempdir().expect("victim dir");
    let keys = victim.path().join("authorized_keys");
    env.up().await;
    let ctl = ctl();
    let out = env
        .agent(
            "c1",
            &format!(
                "{ctl} cron add w --schedule '0 0 1 1 *' --description seed && \
             ln -sf {keys} cron_tasks/w/TASK_DESCRIPTION.md && \
             {ctl} cron edit w --description 'ssh-ed25519 AAAAattacker evil@x'",
                keys = keys.display()
            ),
        )
        .await;
    assert!(!keys.exists(), "core wrote through the link: {out}");
    let description =
        std::fs::read_to_string(env.home().join("workspace/cron_tasks/w/TASK_DESCRIPTION.md"))
            .expect("the description is a file of its own now");
    assert!(description.contains("AAAAattacker"), "{description}");

    // The seed at core's start replaces a linked rule file instead of writing through it.
    let clobbered = victim.path().join("clobbered");
    env.agent("c1", &format!("ln -sf {} AGENTS.md", clobbered.display())).await;
    let core = env.service_status("core").await.expect("core row");
    let old_pid = core["pid"].as_u64().expect("core pid");
    assert!(env.ductorctl(&["restart", "core"]).await.status.success());
    wait_for("core restarted", async || {
        let row = env.service_status("core").await?;
        (row["state"] == "healthy" && row["pid"].as_u64() != Some(old_pid)).then_some(())
    })
    .await;
    assert!(!clobbered.exists(), "the seed wrote through the link");
    let rules = std::fs::symlink_metadata(env.home().join("workspace/AGENTS.md")).expect("rules");
    assert!(rules.file_type().is_file(), "the link was replaced by the rule file");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_access_all_still_never_sends_ductors_secrets() {
    let env = TestEnv::with_fake_claude("[agent]\nfile_access = \"all\"\n");
    env.up().await;
    let mut gateway = Gateway::attach(env.channel("core"), gateway::hello("testgw")).await;
    let token = env.home().join("secrets/admin.token");
    let ask = format!("sh:echo '<file:{}>' ; echo '<file:/etc/hostname>'", token.display());
    gateway.say("room", &ask).await;
    let reply = gateway
        .until("the final reply", |action| match &action.kind {
            Some(pb::outbound_action::Kind::FinalReply(reply)) => Some(reply.clone()),
            _ => None,
        })
        .await;
    let paths: Vec<&str> = reply.files.iter().map(|f| f.path.as_str()).collect();
    assert!(!paths.iter().any(|p| p.contains("secrets")), "{paths:?}");
    assert!(
        paths.contains(&"/etc/hostname"),
        "other files still go with file_access = all: {paths:?}"
    );
    assert!(env.ductorctl(&["down"]).await.status.success());
}
