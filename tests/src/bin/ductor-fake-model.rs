//! Runs the fake model API by hand, for trying a real CLI against it from a shell:
//! `ductor-fake-model [PORT]` prints the base URL and one line per request until Ctrl-C.

use std::time::Duration;

use anyhow::Context as _;
use ductor_tests::fake_model::{FakeModel, SlowPace};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(arg) => arg.parse::<u16>().context("parse PORT argument")?,
        None => 0,
    };
    let fake =
        FakeModel::start_on(port, SlowPace::default()).await.context("start fake model server")?;
    let base = fake.base_url();
    println!("fake model API listening on {base}");
    println!("  claude: ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY=sk-ant-fake");
    println!("  codex:  [model_providers.fake] base_url = \"{base}/v1\", wire_api = \"responses\"");
    println!("  gemini: GOOGLE_GEMINI_BASE_URL={base} GEMINI_API_KEY=fake");
    println!("prompt keywords: slow, tool, error (else a plain text reply)");

    let mut changes = fake.subscribe();
    let mut shown = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        let requests = fake.requests();
        for request in requests.iter().skip(shown) {
            println!(
                "{} {} api={:?} scenario={:?} prompt={:?}",
                request.method, request.path, request.api, request.scenario, request.prompt
            );
        }
        shown = requests.len();
        // Coalesce bursts of chunk notifications.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
