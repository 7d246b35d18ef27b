//! Prints the Matrix gateway's budget figures against the local Synapse
//! (`tests/setup/synapse.sh`): idle RSS of the real `ductor-gateway-matrix`
//! process (target < 40 MB), restart to first answered message (< 3 s), and
//! an encrypted round trip after the first key exchange (< 1 s), and a
//! streamed turn (segment mode): its first segment and its final answer as
//! seen by the user, which must come as fast as a plain answer (nothing is
//! held back for pacing). Core is the scripted fake core on the real socket;
//! the user is a matrix-sdk client.
//!
//! Run: `cargo bench -p ductor-gateway-matrix --bench budgets` (release), or
//! add `--profile dev` for a quick debug-build figure.

#![recursion_limit = "256"]

#[path = "../tests/synapse/fake_core.rs"]
#[allow(dead_code)]
mod fake_core;
#[path = "../tests/synapse/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "../tests/synapse/user.rs"]
#[allow(dead_code)]
mod user;

use std::process::Child;
use std::time::{Duration, Instant};

use ductor_daemon::DuctorHome;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{RoomId, UserId};
use user::TestUser;

const BOT_PASSWORD: &str = "bot-password";

fn spawn_gateway(home: &DuctorHome) -> Child {
    support::command(gateway_binary())
        .arg("--home")
        .arg(home.root())
        .env("DUCTOR_LOG", "warn")
        .spawn()
        .expect("start ductor-gateway-matrix")
}

fn stop_gateway(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// Resident memory of `pid` in KiB: total, anonymous (heap, stacks), file-backed (code).
fn rss_kib(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// The five mappings with the most resident memory, as "name KiB" pairs.
fn largest_mappings(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut current = String::new();
    let mut sizes: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            *sizes.entry(current.clone()).or_default() += kib;
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            current = line.split_whitespace().nth(5).unwrap_or("[anonymous]").to_owned();
        }
    }
    let mut sizes: Vec<_> = sizes.into_iter().collect();
    sizes.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    sizes
        .iter()
        .take(5)
        .map(|(name, kib)| format!("{name} {kib} KiB"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn round_trip(alice: &TestUser, room: &RoomId, bot: &UserId, text: &str) -> Duration {
    let started = Instant::now();
    alice.room(room).send(RoomMessageEventContent::text_plain(text)).await.expect("send");
    alice.wait_message(room, bot, &format!("echo: {text}")).await;
    started.elapsed()
}

fn write_config(home: &DuctorHome, url: &str, bot: &str, alice: &str) {
    let toml = format!(
        "[matrix]\nenabled = true\nhomeserver = \"{url}\"\nuser_id = \"{bot}\"\npassword = \"{BOT_PASSWORD}\"\nallowed_users = [\"{alice}\"]\n"
    );
    std::fs::create_dir_all(home.root()).expect("home");
    std::fs::write(home.config_file(), toml).expect("write config.toml");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(synapse) = support::synapse("budgets") else { return };
    let bot = synapse.register(&support::unique("ductor"), BOT_PASSWORD).await;
    let bot = UserId::parse(bot.as_str()).expect("bot id");
    let alice = TestUser::new(&synapse, &support::unique("alice")).await;
    let dir = tempfile::tempdir().expect("temp home");
    let home = DuctorHome::at(dir.path());
    write_config(&home, &synapse.url, bot.as_str(), alice.user_id.as_str());
    let core = fake_core::FakeCore::start(&home, fake_core::default_script()).await;

    let started = Instant::now();
    let gateway = spawn_gateway(&home);
    let hello = |n: usize| {
        move |r: &ductor_gateway_link::testing::Recorded| (r.hellos.len() >= n).then_some(())
    };
    core.wait_for("the gateway's hello", Duration::from_secs(60), hello(1)).await;
    let first_start = started.elapsed();

    let room = alice.client.create_dm(&bot).await.expect("create an encrypted DM");
    let room_id = room.room_id().to_owned();
    alice.wait_joined(&room_id, &bot).await;
    let first = round_trip(&alice, &room_id, &bot, "warm up").await;
    let mut trips = Vec::new();
    for i in 0..5 {
        trips.push(round_trip(&alice, &room_id, &bot, &format!("ping {i}")).await);
    }
    trips.sort();
    let mut segments = Vec::new();
    let mut finals = Vec::new();
    for _ in 0..5 {
        let (segment, answer) = streamed_turn(&alice, &room_id, &bot).await;
        segments.push(segment);
        finals.push(answer);
    }
    segments.sort();
    finals.sort();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(gateway.id());
    let mappings = largest_mappings(gateway.id());
    stop_gateway(gateway);

    // Restart: the message is sent right after the process starts; the
    // clock stops when the user sees the answer.
    let started = Instant::now();
    let gateway = spawn_gateway(&home);
    let restart = {
        room.send(RoomMessageEventContent::text_plain("after restart")).await.expect("send");
        alice.wait_message(&room_id, &bot, "echo: after restart").await;
        started.elapsed()
    };
    let after_restart = round_trip(&alice, &room_id, &bot, "ping after restart").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss_restarted = rss_kib(gateway.id());
    stop_gateway(gateway);

    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("matrix gateway budgets ({profile} build, local Synapse):");
    println!("  first start (login + first sync + attach): {first_start:?}");
    let show = |(total, anon, file): (u64, u64, u64)| {
        format!(
            "{:.1} MiB (anonymous {:.1}, file-backed {:.1})",
            total as f64 / 1024.0,
            anon as f64 / 1024.0,
            file as f64 / 1024.0
        )
    };
    println!("  idle RSS after 6 encrypted round trips:    {} (target < 40 MB)", show(idle_rss));
    println!("  idle RSS after a restart:                  {}", show(idle_rss_restarted));
    println!("  largest resident mappings: {mappings}");
    println!("  restart to first answered message:         {restart:?} (target < 3 s)");
    println!("  encrypted round trip, first (key exchange): {first:?}");
    println!(
        "  encrypted round trip after key exchange:   median {:?}, max {:?} (target < 1 s)",
        trips[trips.len() / 2],
        trips[trips.len() - 1]
    );
    println!("  encrypted round trip after the restart:    {after_restart:?}");
    println!(
        "  streamed turn (segment mode): first segment visible median {:?}, final answer median {:?} (a plain answer: {:?})",
        segments[segments.len() / 2],
        finals[finals.len() / 2],
        trips[trips.len() / 2]
    );
}

/// The default script's `stream` turn: when its first segment (text before
/// the tool call) and its final answer are visible to the user.
async fn streamed_turn(alice: &TestUser, room: &RoomId, bot: &UserId) -> (Duration, Duration) {
    let before = alice.messages_from(room, bot).len();
    let started = Instant::now();
    alice.room(room).send(RoomMessageEventContent::text_plain("stream")).await.expect("send");
    let mut segment = None;
    loop {
        let messages = alice.messages_from(room, bot);
        let new = &messages[before.min(messages.len())..];
        let has = |needle: &str| new.iter().any(|(_, body, _)| body.contains(needle));
        if segment.is_none() && has("Looking around.") {
            segment = Some(started.elapsed());
        }
        if has("All **done**.") {
            return (segment.unwrap_or_default(), started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the streamed turn never ended");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The binary under test: `DUCTOR_BENCH_GATEWAY` (e.g. the one `deploy/build.sh`
/// put in `target/release/`, or one from a `--workspace` build, whose features
/// are unified with the other services'), else the one cargo built for this bench.
fn gateway_binary() -> std::path::PathBuf {
    std::env::var_os("DUCTOR_BENCH_GATEWAY")
        .filter(|path| !path.is_empty())
        .map_or_else(|| env!("CARGO_BIN_EXE_ductor-gateway-matrix").into(), Into::into)
}
