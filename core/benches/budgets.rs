//! Core's budgets, measured through the real processes: `ductor-runner` and
//! `ductor-core` in a temporary home, the fake claude CLI (`stamp:<n>` makes
//! it print n deltas, each carrying its send time in ns), and a gateway
//! client on the Attach stream (`ductor_tests::gateway`). Prints:
//!
//! - added latency from a CLI output line to the outbound action at the
//!   gateway (runner parse + runner→core hop + core + core→gateway hop),
//!   p50/p99, one chat and under load;
//! - 100 chats streaming 200 deltas each at once: lost, duplicated,
//!   misrouted or reordered deltas (all must be 0);
//! - core's idle RSS (and after the load).
//!
//! Run: `cargo build --release --bins -p ductor-runner -p ductor-core -p ductor-tests`
//! then `cargo bench -p ductor-core --bench budgets` (binaries are taken from
//! `DUCTOR_BIN_DIR`, else from the bench executable's target directory).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ductor_proto::pb;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::bin_dir;

const CHATS: usize = 100;
const DELTAS: usize = 200;

/// The bench's one spawn site.
#[allow(clippy::disallowed_methods)]
fn spawn(binary: &Path, home: &Path) -> tokio::process::Child {
    tokio::process::Command::new(binary)
        .arg("--home")
        .arg(home)
        .env("DUCTOR_LOG", "warn")
        .env_remove("DUCTOR_RUN_DIR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()))
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The next action at the gateway, stamped when it arrived (then acknowledged).
async fn next_action(gw: &mut Gateway) -> Option<(pb::OutboundAction, u128)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let message = gw.message(deadline).await?;
        let at = now_ns();
        if let pb::core_message::Msg::Action(action) = message {
            gw.ack(action.action_id).await;
            return Some((action, at));
        }
    }
}

#[derive(Default)]
struct ChatLog {
    turn: String,
    stamps: Vec<u128>,
    foreign: usize,
    finished: bool,
}

/// Runs `prompt` in every chat at once; returns per-chat logs and latencies (ms).
async fn stream(
    gw: &mut Gateway,
    chats: &[String],
    prompt: &str,
) -> (HashMap<String, ChatLog>, Vec<f64>) {
    for chat in chats {
        gw.say(chat, prompt).await;
    }
    let mut logs: HashMap<String, ChatLog> = HashMap::new();
    let mut latencies = Vec::new();
    let mut done = 0;
    while done < chats.len() {
        let Some((action, at)) = next_action(gw).await else {
            eprintln!("timed out with {done}/{} chats finished", chats.len());
            break;
        };
        let chat = action.chat.as_ref().map(|c| c.chat_id.clone()).unwrap_or_default();
        let log = logs.entry(chat).or_default();
        match action.kind {
            Some(pb::outbound_action::Kind::TurnStarted(_)) => log.turn = action.turn_id,
            Some(pb::outbound_action::Kind::TextDelta(delta)) => {
                if action.turn_id != log.turn {
                    log.foreign += 1;
                }
                if let Ok(sent) = delta.text.trim().parse::<u128>() {
                    latencies.push(at.saturating_sub(sent) as f64 / 1e6);
                    log.stamps.push(sent);
                }
            }
            Some(
                pb::outbound_action::Kind::FinalReply(_) | pb::outbound_action::Kind::Error(_),
            ) => {
                log.finished = true;
                done += 1;
            }
            _ => {}
        }
    }
    latencies.sort_by(f64::total_cmp);
    (logs, latencies)
}

fn print_latency(label: &str, latencies: &[f64]) {
    println!(
        "{label}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}

async fn wait_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = ductor_proto::transport::connect(path);
    while ductor_proto::health::check(channel.clone(), Duration::from_millis(500)).await.is_none() {
        assert!(Instant::now() < deadline, "{} never answered Health", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bins = bin_dir();
    let home = tempfile::Builder::new().prefix("dbench").tempdir_in("/tmp").expect("temp home");
    let state = home.path().join("fake-state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[runner]\nmax_concurrent_runs = 128\nextra_writable_paths = [\"{s}\"]\n\n\
             [providers.claude]\nbinary = \"{b}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{s}\" }}\n",
            s = state.display(),
            b = bins.join("ductor-fake-cli").display()
        ),
    )
    .expect("write config");
    let run = home.path().join("run");
    let _runner = spawn(&bins.join("ductor-runner"), home.path());
    wait_socket(&run.join("runner.sock")).await;
    let core = spawn(&bins.join("ductor-core"), home.path());
    let core_pid = core.id().expect("core runs");
    wait_socket(&run.join("core.sock")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("core idle RSS: {:.1} MiB", rss_kib(core_pid) as f64 / 1024.0);

    let channel = ductor_proto::transport::connect(run.join("core.sock"));
    let mut gw = Gateway::attach(channel, gateway::hello("bench")).await;
    let warm = vec!["warmup".to_owned()];
    stream(&mut gw, &warm, "stamp:20").await;
    let single = vec!["latency".to_owned()];
    let (_, latencies) = stream(&mut gw, &single, &format!("stamp:{DELTAS}")).await;
    print_latency("CLI line -> gateway action, 1 chat", &latencies);

    let chats: Vec<String> = (0..CHATS).map(|i| format!("chat-{i}")).collect();
    let started = Instant::now();
    let (logs, latencies) = stream(&mut gw, &chats, &format!("stamp:{DELTAS}")).await;
    let elapsed = started.elapsed();
    print_latency(&format!("CLI line -> gateway action, {CHATS} chats at once"), &latencies);
    let mut lost = 0;
    let mut duplicated = 0;
    let mut misrouted = 0;
    let mut reordered = 0;
    let mut unfinished = 0;
    for chat in &chats {
        let Some(log) = logs.get(chat) else {
            lost += DELTAS;
            unfinished += 1;
            continue;
        };
        let mut unique = log.stamps.clone();
        unique.dedup();
        duplicated += log.stamps.len() - unique.len();
        lost += DELTAS.saturating_sub(unique.len());
        misrouted += log.foreign;
        reordered += log.stamps.windows(2).filter(|w| w[0] > w[1]).count();
        unfinished += usize::from(!log.finished);
    }
    println!(
        "{CHATS} chats x {DELTAS} deltas in {:.2} s: lost={lost} duplicated={duplicated} \
         misrouted={misrouted} reordered={reordered} unfinished={unfinished}",
        elapsed.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("core RSS after the load: {:.1} MiB", rss_kib(core_pid) as f64 / 1024.0);
    drop(core);
}
