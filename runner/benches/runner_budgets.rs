//! Budget figures of the runner, printed (not asserted: the machine is shared):
//!
//! 1. latency from a CLI's stdout line to the event at a gRPC client over the
//!    runner's Unix socket, p50/p99, with 50 concurrent runs of
//!    `ductor-fake-cli` in `stamp:` mode (each delta carries its send time);
//! 2. the runner's idle RSS;
//! 3. open fds and RSS of the runner before and after 1 000 sequential runs.
//!
//! Run: `cargo build --release -p ductor-tests --bin ductor-fake-cli &&
//! cargo bench -p ductor-runner --bench runner_budgets`. The fake CLI is found via
//! `DUCTOR_FAKE_CLI`, else next to the runner binary, else in `target/debug`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ductor_proto::pb;
use ductor_proto::pb::run_event::Kind;
use ductor_proto::pb::runner_client::RunnerClient;
use tonic::transport::Channel;

const CONCURRENT: usize = 50;
const DELTAS_PER_RUN: usize = 100;
const SEQUENTIAL: usize = 1000;

fn fake_cli(runner: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("DUCTOR_FAKE_CLI") {
        return PathBuf::from(path);
    }
    let beside = runner.with_file_name("ductor-fake-cli");
    if beside.is_file() {
        return beside;
    }
    let debug = runner.parent().and_then(Path::parent).map(|t| t.join("debug/ductor-fake-cli"));
    debug.filter(|p| p.is_file()).expect("build ductor-fake-cli first (see the module doc)")
}

#[allow(clippy::disallowed_methods)]
fn start_runner(home: &Path, user_home: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ductor-runner"))
        .arg("--home")
        .arg(home)
        .env("HOME", user_home)
        .env("DUCTOR_LOG", "warn")
        .env_remove("DUCTOR_RUN_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ductor-runner")
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn spec(workspace: &Path, prompt: &str) -> pb::RunSpec {
    pb::RunSpec {
        provider: "claude".into(),
        prompt: prompt.into(),
        working_dir: workspace.display().to_string(),
        ..Default::default()
    }
}

/// One run; returns when its `started` event arrived and (send time, latency µs) per delta.
async fn stamped_run(
    client: RunnerClient<Channel>,
    workspace: PathBuf,
) -> (u128, Vec<(u128, u64)>) {
    let prompt = format!("stamp:{DELTAS_PER_RUN}");
    let mut stream =
        client.clone().start_run(spec(&workspace, &prompt)).await.expect("start").into_inner();
    let mut started = 0;
    let mut samples = Vec::new();
    while let Some(event) = stream.message().await.expect("stream") {
        let arrived = now_ns();
        match event.kind {
            Some(Kind::Started(_)) => started = arrived,
            Some(Kind::Text(delta)) => {
                if let Ok(sent) = delta.text.parse::<u128>() {
                    samples.push((sent, (arrived.saturating_sub(sent) / 1000) as u64));
                }
            }
            _ => {}
        }
    }
    (started, samples)
}

fn report(label: &str, mut latencies: Vec<u64>) {
    latencies.sort_unstable();
    if latencies.is_empty() {
        println!("{label}: no samples");
        return;
    }
    println!(
        "{label} ({} samples): p50 {} us, p99 {} us, max {} us",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let runner_bin = PathBuf::from(env!("CARGO_BIN_EXE_ductor-runner"));
    let fake = fake_cli(&runner_bin);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    let home = root.join("home");
    let workspace = home.join("workspace");
    let state = root.join("fake-state");
    let user_home = root.join("user");
    for d in [&workspace, &state, &user_home] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let config = format!(
        "[runner]\nextra_writable_paths = [\"{s}\"]\n[providers.claude]\nbinary = \"{f}\"\n\
         env = {{ DUCTOR_FAKE_CLI_STATE = \"{s}\" }}\n",
        s = state.display(),
        f = fake.display()
    );
    std::fs::write(home.join("config.toml"), config).expect("config");
    let mut runner = start_runner(&home, &user_home);
    let pid = runner.id().expect("runner pid");
    let channel = ductor_proto::transport::connect(home.join("run/runner.sock"));
    while ductor_proto::health::check(channel.clone(), Duration::from_secs(1)).await.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = RunnerClient::new(channel);
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("runner idle RSS: {} KiB (fds {})", status_kb(pid, "VmRSS:"), fds(pid));

    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| tokio::spawn(stamped_run(client.clone(), workspace.clone())))
        .collect();
    let mut runs = Vec::new();
    for task in tasks {
        runs.push(task.await.expect("run task"));
    }
    println!(
        "{CONCURRENT} concurrent runs x {DELTAS_PER_RUN} deltas in {:.1} s (load average {})",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let all_started = runs.iter().map(|(s, _)| *s).max().unwrap_or(0);
    let all: Vec<u64> = runs.iter().flat_map(|(_, v)| v.iter().map(|(_, l)| *l)).collect();
    let steady: Vec<u64> = runs
        .iter()
        .flat_map(|(_, v)| v.iter().filter(|(sent, _)| *sent > all_started).map(|(_, l)| *l))
        .collect();
    report("stdout line -> gRPC client, all samples (incl. the 50-spawn burst)", all);
    report("stdout line -> gRPC client, steady state (all 50 running)", steady);

    // Warm up once, then measure growth over sequential runs.
    stamped_run(client.clone(), workspace.clone()).await;
    // Two rounds: growth that continues in the second round is a leak, a step
    // in the first one is allocator warm-up.
    for round in 1..=2 {
        let (fd_before, rss_before) = (fds(pid), status_kb(pid, "VmRSS:"));
        let started = Instant::now();
        for _ in 0..SEQUENTIAL {
            let mut stream =
                client.clone().start_run(spec(&workspace, "hi")).await.expect("start").into_inner();
            while stream.message().await.expect("stream").is_some() {}
        }
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!(
            "round {round}: {SEQUENTIAL} sequential runs in {:.1} s ({:.1} ms/run): fds {fd_before} -> {}, \
             RSS {rss_before} -> {} KiB",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / SEQUENTIAL as f64,
            fds(pid),
            status_kb(pid, "VmRSS:")
        );
    }
    let _ = runner.start_kill();
}
