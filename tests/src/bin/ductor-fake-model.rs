//! Runs the fake model API by hand, for trying a real CLI against it from a shell:
//! `ductor-fake-model [--bodies] [PORT]` prints the base URL and one line per request
//! (with `--bodies`, also each request's JSON body) until Ctrl-C.

use std::time::Duration;

use anyhow::Context as _;
use ductor_tests::fake_model::{FakeModel, SlowPace};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0;
    let mut bodies = false;
    for arg in std::env::args().skip(1) {
        if arg == "--bodies" {
            bodies = true;
        } else {
            port = arg.parse::<u16>().context("parse PORT argument")?;
        }
    }
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
            if bodies {
                println!("{}", request.body);
            }
        }
        shown = requests.len();
        // Coalesce bursts of chunk notifications.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
