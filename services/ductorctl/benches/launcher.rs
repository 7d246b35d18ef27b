//! Issue 2 budgets, measured on the real release binaries (not asserted in
//! tests: the machine is shared and noisy). Prints:
//!
//! - cold `ductorctl up` to all-healthy for runner + core (budget < 300 ms);
//! - idle RSS of launcher + core + runner together (budget < 30 MB);
//! - unary gRPC round trip (Health.Check) over the local socket, p50 (< 200 µs).
//!
//! Run: `cargo build --release -p ductorctl -p ductor-core -p ductor-runner &&
//! cargo bench -p ductorctl --bench launcher` (binaries are taken from
//! `DUCTOR_BIN_DIR`, else from the directory of the `ductorctl` cargo built
//! for the bench, `target/release`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ductorctl::state::{LauncherState, Phase};

const UP_RUNS: usize = 10;
const RPC_CALLS: usize = 5_000;

/// `DUCTOR_BIN_DIR`, else where cargo put the `ductorctl` it built for this
/// bench. (`ductor_tests::harness::bin_dir` is not used: as a dev-dependency,
/// `ductor-tests` would bring reqwest and axum into this package's bench
/// build and rebuild its gRPC stack with their features.)
fn bin_dir() -> PathBuf {
    match std::env::var_os("DUCTOR_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_ductorctl")).parent().expect("a dir").to_path_buf(),
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Up {
    child: tokio::process::Child,
    home: tempfile::TempDir,
}

impl Up {
    fn state(&self) -> Option<LauncherState> {
        LauncherState::read(&self.home.path().join("run/state.json"))
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = ductorctl::procs::signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// Starts a foreground `ductorctl up` and returns once the state file says
/// every service is healthy, with the elapsed time since spawn.
async fn cold_up(bins: &Path) -> (Up, Duration) {
    let home = tempfile::Builder::new().prefix("db").tempdir_in("/tmp").expect("temp home");
    let started = Instant::now();
    let child = ductorctl::supervisor::command(bins.join("ductorctl"))
        .arg("up")
        .env("DUCTOR_HOME", home.path())
        .env("DUCTOR_BIN_DIR", bins)
        .env("DUCTOR_LOG", "warn")
        .env_remove("DUCTOR_RUN_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ductorctl up");
    let up = Up { child, home };
    loop {
        if up.state().is_some_and(|s| s.phase == Phase::Running) {
            return (up, started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "up did not become healthy");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bins = bin_dir();
    for binary in ["ductorctl", "ductor-runner", "ductor-core"] {
        assert!(
            bins.join(binary).is_file(),
            "{} missing: build the release binaries first",
            binary
        );
    }
    println!("binaries: {}", bins.display());

    let mut ups = Vec::new();
    for _ in 0..UP_RUNS {
        let (up, elapsed) = cold_up(&bins).await;
        ups.push(elapsed);
        up.stop().await;
    }
    ups.sort();
    println!(
        "cold up to all-healthy (runner+core, {UP_RUNS} runs): p50 {:.1} ms, max {:.1} ms  [budget 300 ms]",
        percentile(&ups, 0.5).as_secs_f64() * 1e3,
        ups[ups.len() - 1].as_secs_f64() * 1e3
    );

    let (up, _) = cold_up(&bins).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = up.state().expect("state file");
    let mut pids = vec![(String::from("ductorctl"), state.launcher_pid)];
    pids.extend(state.services.iter().filter_map(|r| Some((r.service.clone(), r.pid?))));
    let mut total = 0;
    for (name, pid) in &pids {
        let rss = vm_rss_kib(*pid);
        total += rss;
        println!("idle RSS {name:<9} {:>6.1} MB", rss as f64 / 1024.0);
    }
    println!("idle RSS launcher+runner+core: {:.1} MB  [budget 30 MB]", total as f64 / 1024.0);

    let channel = ductor_proto::transport::connect(up.home.path().join("run/core.sock"));
    let mut client = ductor_proto::pb::health_client::HealthClient::new(channel);
    for _ in 0..500 {
        client.check(ductor_proto::pb::HealthCheckRequest {}).await.expect("warm-up call");
    }
    let mut rtts = Vec::with_capacity(RPC_CALLS);
    for _ in 0..RPC_CALLS {
        let start = Instant::now();
        client.check(ductor_proto::pb::HealthCheckRequest {}).await.expect("Health.Check");
        rtts.push(start.elapsed());
    }
    rtts.sort();
    println!(
        "Health.Check round trip over core.sock ({RPC_CALLS} calls): p50 {:.0} µs, p99 {:.0} µs  [budget p50 200 µs]",
        percentile(&rtts, 0.5).as_secs_f64() * 1e6,
        percentile(&rtts, 0.99).as_secs_f64() * 1e6
    );
    up.stop().await;
}
