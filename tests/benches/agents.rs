//! Issue 18's budgets through the real stack (`ductorctl up`: runner, core,
//! Telegram gateways against fake Bot APIs, the fake CLI as `claude`):
//!
//! - a sync inter-agent round trip (`Agents.AskAgent` as the operator, a new
//!   session each time) against the CLI's own time for the same prompt
//!   (`Runner.StartRun` straight to the runner, request to result): what the
//!   bus adds (budget < 5 ms);
//! - what each extra agent costs in RSS: its Telegram gateway (idle, polling
//!   its own fake bot) plus what core grows by per configured agent, from a
//!   home with no sub-agent to one with three (budget < 10 MB).
//!
//! Run: `cargo build --release --bins` then
//! `cargo bench -p ductor-tests --bench agents`.

use std::time::{Duration, Instant};

use ductor_gateway_telegram::testing::FakeBotApi;
use ductor_proto::pb;
use ductor_tests::harness::{TestEnv, rss_mib};

const ROUNDS: usize = 40;
const AGENTS: usize = 3;

fn report(name: &str, mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: n={} p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        values.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    at(0.5)
}

/// A home with the main bot and `agents` sub-agents, each on its own fake
/// bot, up and healthy; the fakes live as long as the returned vector.
async fn home(agents: usize) -> (TestEnv, Vec<FakeBotApi>) {
    let main = FakeBotApi::start("100:main-bench").await;
    let mut config = format!(
        "[telegram]\nenabled = true\ntoken = \"100:main-bench\"\napi_url = \"{}\"\n\
         allowed_user_ids = [1]\n",
        main.url
    );
    let mut fakes = vec![main];
    let mut services = vec!["runner".to_owned(), "core".to_owned(), "telegram".to_owned()];
    for i in 0..agents {
        let token = format!("{}:agent-bench", 200 + i);
        let fake = FakeBotApi::start(&token).await;
        config.push_str(&format!(
            "\n[[agents]]\nname = \"agent{i}\"\n[agents.telegram]\ntoken = \"{token}\"\n\
             api_url = \"{}\"\nallowed_user_ids = [1]\n",
            fake.url
        ));
        fakes.push(fake);
        services.push(format!("telegram@agent{i}"));
    }
    let env = TestEnv::with_fake_claude(&config);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    let names: Vec<&str> = services.iter().map(String::as_str).collect();
    env.wait_healthy(&names).await;
    (env, fakes)
}

async fn pid(env: &TestEnv, service: &str) -> u32 {
    let row = env.service_status(service).await.expect("listed");
    row["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).expect("running")
}

/// The same prompt straight to the runner: request → result event.
async fn direct_run(env: &TestEnv, workspace: &str, prompt: &str) -> f64 {
    let mut runner = pb::runner_client::RunnerClient::new(env.channel("runner"));
    let spec = pb::RunSpec {
        provider: "claude".into(),
        prompt: prompt.into(),
        working_dir: workspace.into(),
        agent: "agent0".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = runner.start_run(spec).await.expect("the runner takes the run").into_inner();
    while let Some(event) = stream.message().await.expect("the run streams") {
        if matches!(event.kind, Some(pb::run_event::Kind::Result(_))) {
            return started.elapsed().as_secs_f64() * 1000.0;
        }
    }
    panic!("the run ended without a result");
}

async fn bus_overhead(env: &TestEnv) {
    let admin = std::fs::read_to_string(env.home().join("secrets/admin.token")).expect("token");
    let workspace = env.home().join("agents/agent0/workspace").canonicalize().expect("workspace");
    let workspace = workspace.display().to_string();
    let mut agents = pb::agents_client::AgentsClient::new(env.channel("core"));
    let (mut asks, mut runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let message = format!("question {round}");
        let request = pb::AskAgentRequest {
            auth: Some(pb::AutomationAuth {
                admin_token: admin.trim().into(),
                ..Default::default()
            }),
            to: "agent0".into(),
            message: message.clone(),
            new_session: true,
            ..Default::default()
        };
        let started = Instant::now();
        let answer = agents.ask_agent(request).await.expect("answered").into_inner();
        asks.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(answer.text.contains(&message), "the answer echoes the question: {}", answer.text);
        // The CLI's own time for the very prompt the bus gave it.
        let prompt = answer.text.trim_start_matches("echo: ").to_owned();
        runs.push(direct_run(env, &workspace, &prompt).await);
    }
    let ask = report("sync inter-agent ask, round trip", asks);
    let run = report("the same prompt straight to the runner (the CLI's own time)", runs);
    println!("the bus adds {:.2} ms at p50 (budget < 5 ms)", ask - run);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (bare, _bare_fakes) = home(0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let core_alone = rss_mib(pid(&bare, "core").await);
    let main_gateway = rss_mib(pid(&bare, "telegram").await);
    let _ = bare.ductorctl(&["down"]).await;
    drop(bare);

    let (env, _fakes) = home(AGENTS).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let core_with = rss_mib(pid(&env, "core").await);
    let mut gateways = Vec::new();
    for i in 0..AGENTS {
        gateways.push(rss_mib(pid(&env, &format!("telegram@agent{i}")).await));
    }
    let gateway = gateways.iter().sum::<f64>() / AGENTS as f64;
    let core_per_agent = (core_with - core_alone) / AGENTS as f64;
    println!(
        "idle RSS: core {core_alone:.1} MiB alone, {core_with:.1} MiB with {AGENTS} agents; \
         main gateway {main_gateway:.1} MiB; agent gateways {gateways:.1?} MiB"
    );
    println!(
        "each extra agent: {:.1} MiB (its gateway {gateway:.1} + core {core_per_agent:.2}) \
         (budget < 10 MB)",
        gateway + core_per_agent
    );
    bus_overhead(&env).await;
    let _ = env.ductorctl(&["down"]).await;
}
