//! Budgets of issue 5, measured on the real `ductor-gateway-telegram`
//! binary (release build) between a fake core on its Unix socket and the
//! fake Bot API on loopback:
//!
//! 1. idle RSS after attaching to core and long-polling (target < 10 MB);
//! 2. latency from core sending a final reply to the Bot API receiving the
//!    sendMessage (target p50 < 1 ms);
//! 3. 50 chats streaming at once with the default 1 s edit budget: the
//!    smallest gap between two edits of one chat, and whether every final
//!    reply arrived intact.
//!
//! Run: `cargo bench -p ductor-gateway-telegram --features testing`.
//! Prints figures; asserts nothing about wall-clock time.

use std::path::Path;
use std::time::{Duration, Instant};

use ductor_gateway_telegram::testing::{FakeBotApi, FakeCore, updates};
use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;

const TOKEN: &str = "123456:BENCH-token-abcdef";
const CHATS: i64 = 50;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn action(id: u64, chat: i64, turn: &str, kind: Kind) -> pb::OutboundAction {
    pb::OutboundAction {
        action_id: id,
        chat: Some(pb::ChatRef { chat_id: chat.to_string(), topic_id: String::new() }),
        turn_id: turn.to_owned(),
        durable: matches!(kind, Kind::FinalReply(_)),
        kind: Some(kind),
        ..Default::default()
    }
}

fn final_reply(text: &str) -> Kind {
    Kind::FinalReply(pb::FinalReply { text: text.to_owned(), notify: true, ..Default::default() })
}

#[allow(clippy::disallowed_methods)] // The bench's one spawn site: the binary under test.
fn spawn_gateway(home: &Path) -> tokio::process::Child {
    tokio::process::Command::new(gateway_binary())
        .arg("--home")
        .arg(home)
        .env("DUCTOR_LOG", "warn")
        .env_remove("DUCTOR_TELEGRAM_TOKEN")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ductor-gateway-telegram")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let api = FakeBotApi::start(TOKEN).await;
    let home = tempfile::Builder::new().prefix("dtb").tempdir_in("/tmp").expect("temporary home");
    let allowed: Vec<String> = (1..=CHATS).map(|id| id.to_string()).collect();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\nallowed_user_ids = [{}]\n",
            api.url,
            allowed.join(", ")
        ),
    )
    .expect("write config.toml");
    let core = FakeCore::default();
    let _serving = core.serve(&ductor_daemon::DuctorHome::at(home.path())).await;
    let mut gateway = spawn_gateway(home.path());
    let pid = gateway.id().expect("the gateway runs");
    assert!(
        core.wait_attached(Duration::from_secs(30)).await,
        "the gateway attached to the fake core"
    );

    // A round trip first, so the idle figure includes a warmed-up HTTP client.
    api.push_update(updates::text(1, 1, 1, "warm up"));
    core.wait_events(1, Duration::from_secs(10)).await;
    let mut next_id = 1u64;
    core.send(action(next_id, 1, "warm", final_reply("warm")));
    core.wait_ack(next_id, Duration::from_secs(10)).await;
    next_id += 1;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid).unwrap_or(0);
    println!("idle RSS: {:.1} MB ({idle} KiB; target < 10 MB)", idle as f64 / 1024.0);
    if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        let pick = |key: &str| {
            rollup
                .lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
                .unwrap_or_default()
        };
        println!(
            "  of which anonymous {} KiB, file-backed (binary, libs) {} KiB",
            pick("Anonymous:"),
            pick("Rss:")
                .parse::<u64>()
                .unwrap_or(0)
                .saturating_sub(pick("Anonymous:").parse().unwrap_or(0))
        );
    }

    // 2. Final reply action -> sendMessage at the Bot API.
    let mut latencies = Vec::new();
    for round in 0..300 {
        let chat = 1 + (round % CHATS);
        let text = format!("latency probe {round}");
        let start = Instant::now();
        core.send(action(next_id, chat, &format!("l{round}"), final_reply(&text)));
        next_id += 1;
        let arrived = api
            .wait_until(Duration::from_secs(10), |calls| {
                calls.iter().rev().take(4).any(|c| c.str("text") == Some(text.as_str()))
            })
            .await;
        assert!(arrived, "probe {round} arrived");
        let at = api
            .calls()
            .iter()
            .rev()
            .find(|c| c.str("text") == Some(text.as_str()))
            .map(|c| c.at)
            .expect("recorded");
        latencies.push(at.duration_since(start));
    }
    latencies.sort();
    println!(
        "final reply -> Bot API request: p50 {:?}, p90 {:?}, p99 {:?} over {} replies (target p50 < 1 ms)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.len()
    );

    // 3. 50 chats streaming at once (default budget: one edit per second per chat).
    let interval = Duration::from_millis(1000);
    let stream_start = Instant::now();
    let mut finals = Vec::new();
    for step in 0..40u64 {
        for chat in 1..=CHATS {
            let turn = format!("s{chat}");
            if step == 0 {
                core.send(action(
                    next_id,
                    chat,
                    &turn,
                    Kind::TurnStarted(pb::TurnStarted::default()),
                ));
                next_id += 1;
            }
            core.send(action(
                next_id,
                chat,
                &turn,
                Kind::TextDelta(pb::TextDeltaAction { text: format!("token{step} ") }),
            ));
            next_id += 1;
            if step % 8 == 0 {
                let tool = pb::ToolActivity {
                    name: "Bash".into(),
                    summary: "cargo test".into(),
                    finished: false,
                    ok: true,
                };
                core.send(action(next_id, chat, &turn, Kind::Tool(tool)));
                next_id += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for chat in 1..=CHATS {
        let text = format!("Final answer for chat {chat}: **done**.");
        core.send(action(next_id, chat, &format!("s{chat}"), final_reply(&text)));
        finals.push((next_id, chat));
        next_id += 1;
    }
    let mut delivered = 0;
    for (id, _) in &finals {
        if core.wait_ack(*id, Duration::from_secs(60)).await.is_some_and(|ack| ack.error.is_empty())
        {
            delivered += 1;
        }
    }
    let elapsed = stream_start.elapsed();
    let calls = api.calls();
    let mut min_gap = Duration::MAX;
    let mut over_budget = 0;
    let mut edits_total = 0;
    let mut intact = 0;
    for chat in 1..=CHATS {
        let paced: Vec<_> = calls
            .iter()
            .filter(|c| c.chat_id == Some(chat) && c.at >= stream_start)
            .filter(|c| c.method == "editmessagetext" || (c.method == "sendmessage" && c.silent()))
            .collect();
        edits_total += paced.len();
        for pair in paced.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].at);
            min_gap = min_gap.min(gap);
            if gap < interval {
                over_budget += 1;
            }
        }
        let expected = format!("Final answer for chat {chat}: <b>done</b>.");
        let last_text = calls
            .iter()
            .rev()
            .find(|c| {
                c.chat_id == Some(chat)
                    && c.ok
                    && (c.method == "editmessagetext" || c.method == "sendmessage")
            })
            .and_then(|c| c.str("text"));
        if last_text == Some(expected.as_str()) {
            intact += 1;
        }
    }
    println!(
        "50 chats streaming: {edits_total} paced updates in {elapsed:?}, smallest gap between two updates of one chat {min_gap:?} (budget {interval:?}), {over_budget} over budget, finals acknowledged {delivered}/{CHATS}, final text shown {intact}/{CHATS}"
    );
    println!("RSS after streaming: {:.1} MB", rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
    let _ = gateway.start_kill();
    let _ = gateway.wait().await;
}

/// The binary under test: `DUCTOR_BENCH_GATEWAY` (e.g. the one `deploy/build.sh`
/// put in `target/release/`, or one from a `--workspace` build, whose features
/// are unified with the other services'), else the one cargo built for this bench.
fn gateway_binary() -> std::path::PathBuf {
    std::env::var_os("DUCTOR_BENCH_GATEWAY")
        .filter(|path| !path.is_empty())
        .map_or_else(|| env!("CARGO_BIN_EXE_ductor-gateway-telegram").into(), Into::into)
}
