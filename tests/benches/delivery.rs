//! Issue 12's delivery budgets, measured as the user sees them: a reply
//! counts when its text is visible at the fake Bot API, through the real
//! binaries (`ductorctl up`: runner, core, Telegram gateway) and the real
//! `claude` against the fake model API on loopback.
//!
//! 1. The CLI alone: `claude` spawned directly with the runner's argv, the
//!    time from spawn to its first text delta and to its `result` line.
//! 2. Through ductor, from the user's message reaching the Bot API: the first
//!    bot message (and whether it is real text), the answer text visible,
//!    the notifying final; for a short reply (`echo`) and a slow one (20
//!    chunks over 4 s).
//! 3. Ten chats at once: when all are answered, and the CPU the ductor
//!    processes used against the machine's.
//! 4. A soak (`DUCTOR_BENCH_SOAK_SECS`, default 600; 0 skips): 50 chats
//!    streaming turns of the fake CLI with tool lines, 429s injected, then
//!    every call checked against Telegram's limits and every final counted.
//!
//! Run: `cargo build --release --workspace --bins && bash tests/setup/install-clis.sh &&
//! DUCTOR_BIN_DIR=target/release cargo bench -p ductor-tests --bench delivery`.
//! Prints figures; asserts nothing about wall-clock time.

#[path = "delivery/soak.rs"]
mod soak;
#[path = "delivery/stack.rs"]
mod stack;

use std::time::Duration;

use ductor_tests::fake_model::{FakeModel, SlowPace};
use ductor_tests::real_cli::{Cli, installed_cli};

/// Turns per figure.
const ROUNDS: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(claude) = installed_cli(Cli::Claude) else {
        eprintln!("claude is not installed: run tests/setup/install-clis.sh");
        std::process::exit(1);
    };
    let slow = SlowPace { chunks: 20, delay: Duration::from_millis(200) };
    let model = FakeModel::start_on(0, slow).await.expect("start the fake model API");

    let stack = stack::Stack::up(&claude, &model).await;
    let base = stack.baseline(&claude);
    // The machine is shared and noisy: each ductor turn is paired with a run
    // of the CLI alone just before it, and the figures are the medians of
    // both and of the per-pair differences.
    println!(
        "== {ROUNDS} pairs each: the CLI alone (from spawn, same workspace, fresh TMPDIR), then a turn through ductor (from the user's message)"
    );
    let mut chat = 1000;
    for kind in ["echo", "slow"] {
        let mut alone = stack::Alone::default();
        let mut turns = stack::Turns::default();
        for round in 0..ROUNDS {
            alone.push(stack::one_cli(&base, format!("{kind} alone round{round}")).await);
            turns.push(stack.turn(kind, chat).await);
            chat += 1;
        }
        println!(
            "{kind} alone: first text delta p50 {}, last text delta p50 {}, result line p50 {}",
            ms(alone.first_p50()),
            ms(alone.last_p50()),
            ms(alone.result_p50())
        );
        turns.print(kind);
        let visible = stack::pairwise(&turns.visible(), &alone.results());
        let first = stack::pairwise(&turns.first_texts(), &alone.firsts());
        println!(
            "{kind}: ductor's cost per pair p50: answer visible - CLI result {} (budget +20 ms); first real text - CLI first delta {} (budget +50 ms)",
            ms_signed(visible),
            ms_signed(first),
        );
    }
    let together = stack::cli_alone_together(&base, 10).await;

    println!("\n== ten chats at once");
    stack.ten_at_once(3000, &together).await;
    stack.down().await;

    let soak_secs =
        std::env::var("DUCTOR_BENCH_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(600u64);
    if soak_secs > 0 {
        println!("\n== soak: 50 chats for {soak_secs} s (fake CLI)");
        soak::run(Duration::from_secs(soak_secs)).await;
    }
}

/// A duration in milliseconds, for the tables.
pub fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// A signed figure in milliseconds.
pub fn ms_signed(millis: f64) -> String {
    format!("{millis:+.0} ms")
}

/// The median of `values` (zero when empty).
pub fn p50(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
