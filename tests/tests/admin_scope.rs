//! Issue 17, the admin list: `/cron` (and the failures after `/status`) in a
//! chat manage only that chat's own jobs; chats in `[agent].admin_chats` and
//! the operator's own terminal (`ductorctl ask`) manage every chat's. Admin
//! chats also hear when ductor starts, browse the workspace (`/showfiles`),
//! list the chats (`/where`), see how to upgrade (`/upgrade`) and restart
//! the runner or everything (`/restart`). Real runner and core, the fake CLI as claude, a test
//! gateway as the chats.

use std::time::Duration;

use ductor_tests::gateway::Chat;
use ductor_tests::harness::{TestEnv, text, wait_for};

const TRANSPORT: &str = "testgw";
const WAIT: Duration = Duration::from_secs(30);

async fn ctl(env: &TestEnv, args: &[&str]) -> String {
    let out = env.ductorctl(args).await;
    assert!(out.status.success(), "ductorctl {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_manages_only_its_own_jobs_unless_it_is_an_admin() {
    let env = TestEnv::with_fake_claude("[agent]\nadmin_chats = [\"testgw:carol\"]\n");
    env.up().await;
    ctl(
        &env,
        &[
            "cron",
            "add",
            "alices-digest",
            "--schedule",
            "0 8 * * *",
            "--description",
            "summarise the news",
            "--transport",
            TRANSPORT,
            "--chat",
            "alice",
        ],
    )
    .await;
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let started = chat.expect("carol", "ductor", WAIT).await;
    assert!(started.text.contains("started"), "the admin chat hears of the start: {started:?}");

    chat.gateway.say("bob", "/cron").await;
    let listing = chat.expect("bob", "cron", WAIT).await;
    assert!(!listing.text.contains("alices-digest"), "bob sees alice's job: {listing:?}");
    chat.gateway.say("bob", "/cron disable alices-digest").await;
    let refused = chat.expect("bob", "⚠️", WAIT).await;
    assert!(!refused.text.contains("paused"), "{refused:?}");
    let listed = ctl(&env, &["cron", "list"]).await;
    assert!(!listed.contains("paused") && !listed.contains("⏸"), "still enabled: {listed}");

    chat.gateway.say("alice", "/cron").await;
    assert!(chat.expect("alice", "alices-digest", WAIT).await.text.contains("Cron jobs (1)"));

    chat.gateway.say("carol", "/cron disable alices-digest").await;
    chat.expect("carol", "paused", WAIT).await;

    let starts: Vec<&str> =
        chat.all.iter().filter(|s| s.text.contains("started.")).map(|s| s.chat.as_str()).collect();
    assert_eq!(starts, ["carol"], "only the admin chat hears of the start: {:#?}", chat.all);

    // The admin chat browses the workspace and gets a file; others cannot.
    let out = env.home().join("workspace/output_to_user");
    std::fs::write(out.join("report.txt"), "the quarterly numbers").unwrap();
    chat.gateway.say("bob", "/showfiles").await;
    chat.expect("bob", "Only admin chats", WAIT).await;
    chat.gateway.say("carol", "/showfiles").await;
    let root = chat.expect("carol", "📂 workspace/", WAIT).await;
    assert_eq!(root.buttons.first().map(String::as_str), Some("sf:d0"), "{root:?}");
    chat.gateway.press("carol", "sf:d0").await;
    let inside = chat.expect("carol", "📂 workspace/output_to_user", WAIT).await;
    let file = inside.buttons.iter().find(|b| b.starts_with("sf:f")).expect("a file button");
    chat.gateway.press("carol", file).await;
    let sent = chat.expect("carol", "📎 report.txt", WAIT).await;
    assert_eq!(sent.files, [out.join("report.txt").canonicalize().unwrap().display().to_string()]);

    let operator = ctl(&env, &["ask", "--chat", "ops", "/cron"]).await;
    assert!(
        operator.contains("alices-digest"),
        "the operator's terminal sees every job: {operator}"
    );

    // /where: the chats ductor has sessions in, for admins.
    chat.gateway.say("alice", "hello there").await;
    chat.expect("alice", "hello there", WAIT).await;
    chat.gateway.say("carol", "/where").await;
    let known = chat.expect("carol", "ductor knows", WAIT).await;
    assert!(known.text.contains("• alice · claude"), "{known:?}");

    // /upgrade: the running version and, for this build from source, what to run.
    chat.gateway.say("bob", "/upgrade").await;
    chat.expect("bob", "Only admin chats can see", WAIT).await;
    chat.gateway.say("carol", "/upgrade").await;
    let upgrade = chat.expect("carol", "is running", WAIT).await;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(
        upgrade.text.contains(&format!("source checkout at {}", repo.display()))
            && upgrade.text.contains("deploy/run.sh"),
        "{upgrade:?}"
    );

    // An admin chat restarts the runner alone, then everything, and hears
    // when each is back; others cannot; an unknown service is named.
    chat.gateway.say("bob", "/restart").await;
    chat.expect("bob", "Only admin chats can restart", WAIT).await;
    chat.gateway.say("carol", "/restart printer").await;
    let unknown = chat.expect("carol", "Unknown service", WAIT).await;
    assert!(unknown.text.contains("runner") && unknown.text.contains(TRANSPORT), "{unknown:?}");
    let pid =
        async |service: &str| env.service_status(service).await.expect(service)["pid"].as_u64();
    let (core_before, runner_before) = (pid("core").await, pid("runner").await);
    chat.gateway.say("carol", "/restart runner").await;
    chat.expect("carol", "Restarting the runner", WAIT).await;
    let back = chat.expect("carol", "runner restarted", WAIT).await;
    assert!(back.text.starts_with("✅"), "{back:?}");
    let runner_after = pid("runner").await;
    assert_ne!(runner_after, runner_before, "the runner has a new pid");
    assert_eq!(pid("core").await, core_before, "core was left alone");
    let status = env.service_status("runner").await.expect("runner");
    assert_eq!(status["restarts"].as_u64(), Some(1), "a restart, not a crash: {status}");

    chat.gateway.say("carol", "/restart").await;
    chat.expect("carol", "Restarting ductor (gateways, runner and core)", WAIT).await;
    wait_for("core and the runner back with new pids", async || {
        let (core, runner) =
            (env.service_status("core").await?, env.service_status("runner").await?);
        let healthy = core["state"] == "healthy" && runner["state"] == "healthy";
        (healthy && core["pid"].as_u64() != core_before && runner["pid"].as_u64() != runner_after)
            .then_some(())
    })
    .await;
    let status = env.service_status("core").await.expect("core");
    assert_eq!(status["restarts"].as_u64(), Some(1), "{status}");
    let mut again = Chat::attach(env.channel("core"), TRANSPORT).await;
    let back = again.expect("carol", "restarted", WAIT).await;
    assert!(back.text.contains("gateways, runner and core"), "{back:?}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
