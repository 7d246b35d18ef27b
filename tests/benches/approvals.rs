//! Issue 15's budgets through the real stack (runner, core, a test gateway)
//! and the real claude against the fake model:
//!
//! - request visible: the runner reads claude's `can_use_tool` line (its log
//!   line "the CLI asks for approval") → the selector arrives at the gateway
//!   (budget < 100 ms);
//! - answer to the CLI: the gateway presses "allow once" → the runner has
//!   written the answer into claude's stdin ("wrote to the CLI's input")
//!   (budget < 50 ms).
//!
//! Both ends are on this machine's wall clock (the runner's log stamps in
//! µs). Run: `cargo build --release --bins` then
//! `cargo bench -p ductor-tests --bench approvals`.

use std::time::{Duration, SystemTime};

use ductor_tests::fake_model::FakeModel;
use ductor_tests::gateway::Chat;
use ductor_tests::harness::TestEnv;
use ductor_tests::real_cli::{Cli, installed_cli, provider_files, provider_section};

const ROUNDS: usize = 15;
const CHAT: &str = "room";
const LONG: Duration = Duration::from_secs(60);

/// Wall-clock stamps of the runner's log lines containing `needle`.
fn stamps(log: &str, needle: &str) -> Vec<SystemTime> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().next()?.parse::<jiff::Timestamp>().ok())
        .map(SystemTime::from)
        .collect()
}

fn millis(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

fn report(name: &str, mut values: Vec<f64>, budget: f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: n={} p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (budget < {budget} ms)",
        values.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(claude) = installed_cli(Cli::Claude) else {
        eprintln!("claude is not installed: run tests/setup/install-clis.sh");
        std::process::exit(1);
    };
    let model = FakeModel::start().await.expect("start the fake model");
    let cli_home = tempfile::tempdir().expect("a CLI home");
    let cli_env = provider_files(Cli::Claude, cli_home.path(), &model.base_url());
    let env = TestEnv::with_config(&format!(
        "[agent]\nprovider = \"claude\"\npermission_mode = \"ask\"\n\n{}",
        provider_section(Cli::Claude, &claude, &cli_env)
    ));
    env.up().await;
    let mut chat = Chat::attach(env.channel("core"), "benchgw").await;
    let mut seen = Vec::new();
    let mut pressed = Vec::new();
    for round in 0..ROUNDS {
        chat.gateway.say(CHAT, &format!("please do something risky {round}")).await;
        let menu = chat.expect(CHAT, "🔐 The agent asks to use Bash", LONG).await;
        seen.push(SystemTime::now());
        let allow = menu.buttons.iter().find(|b| b.ends_with(":y")).expect("allow once").clone();
        pressed.push(SystemTime::now());
        chat.gateway.press(CHAT, &allow).await;
        chat.expect(CHAT, "Allowed once", LONG).await;
        chat.expect(CHAT, "The command ran", LONG).await;
    }
    let log = std::fs::read_to_string(env.home().join("logs/runner.log")).expect("runner log");
    let asked = stamps(&log, "the CLI asks for approval");
    let written = stamps(&log, "wrote to the CLI's input");
    assert_eq!((asked.len(), written.len()), (ROUNDS, ROUNDS), "one of each per round");
    let visible = seen.iter().zip(&asked).map(|(s, a)| millis(*s, *a)).collect();
    let answered = written.iter().zip(&pressed).map(|(w, p)| millis(*w, *p)).collect();
    report("approval request visible at the gateway after the CLI asked", visible, 100.0);
    report("answer in the CLI's stdin after the button press", answered, 50.0);
    let _ = env.ductorctl(&["down"]).await;
}
