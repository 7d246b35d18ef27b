//! Black-box harness: runs the real ductor binaries in a temporary
//! `$DUCTOR_HOME` and looks at them only from outside (exit codes, output,
//! sockets, Health, files).
//!
//! The binaries must be built first (`cargo build --workspace --bins`; `tests/run.sh`
//! does). They are found in `DUCTOR_BIN_DIR`, else in `target/<profile>/`
//! next to the test executable. Waits are bounded by
//! `DUCTOR_TEST_PATIENCE_MS` (default 30 s). On a failing test every log of
//! the home is printed, and every process the test started is killed.

pub mod fake_telegram;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use ductor_proto::pb;

/// The four services, with their binary names.
pub const SERVICES: [(&str, &str); 4] = [
    ("runner", "ductor-runner"),
    ("core", "ductor-core"),
    ("telegram", "ductor-gateway-telegram"),
    ("matrix", "ductor-gateway-matrix"),
];

/// The directory holding the ductor binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DUCTOR_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe.parent().expect("the test executable is in a directory").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Path of a ductor binary; panics with the build command when missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`), or set DUCTOR_BIN_DIR",
        path.display()
    );
    path
}

/// How long any single wait may take (`DUCTOR_TEST_PATIENCE_MS`, default 30 s).
pub fn patience() -> Duration {
    let ms = std::env::var("DUCTOR_TEST_PATIENCE_MS").ok().and_then(|v| v.parse().ok());
    Duration::from_millis(ms.unwrap_or(30_000))
}

/// The harness's one spawn site: a command with no inherited ductor
/// environment (so the developer's own ductor is never touched).
#[allow(clippy::disallowed_methods)]
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    for name in [
        "DUCTOR_HOME",
        "DUCTOR_RUN_DIR",
        "DUCTOR_BIN_DIR",
        "DUCTOR_TELEGRAM_TOKEN",
        "DUCTOR_MATRIX_PASSWORD",
        "DUCTOR_LOG_FORMAT",
        "XDG_RUNTIME_DIR",
        "NOTIFY_SOCKET",
    ] {
        command.env_remove(name);
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Polls `check` until it returns `Some`, or panics naming `what` after [`patience`].
pub async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < patience(),
            "timed out after {:?} waiting for {what}",
            patience()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    match stat {
        Ok(stat) => {
            !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// Sends a signal to a pid (errors ignored: the process may be gone).
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
    }
}

/// Asks Health once over `channel`.
pub async fn health(channel: &ductor_proto::Channel) -> Option<pb::HealthCheckResponse> {
    ductor_proto::health::check(channel.clone(), Duration::from_secs(2)).await
}

/// Bytes as text, lossily (process output in assertions).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary `$DUCTOR_HOME` under /tmp (short, so socket paths stay far
/// below the 108-byte limit), and the commands that run against it.
pub struct TestEnv {
    dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
    bin_dir: PathBuf,
}

impl TestEnv {
    /// A fresh home with no config.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dt")
            .tempdir_in("/tmp")
            .expect("create a temporary DUCTOR_HOME under /tmp");
        Self { dir, extra_env: Vec::new(), bin_dir: bin_dir() }
    }

    /// A fresh home with this `config.toml`.
    pub fn with_config(config: &str) -> Self {
        let env = Self::new();
        env.write_config(config);
        env
    }

    /// A fresh home whose `claude` is `ductor-fake-cli` (its state in
    /// `<home>/fake-state`), with fast restarts; `extra` is appended to the config.
    pub fn with_fake_claude(extra: &str) -> Self {
        let env = Self::new();
        let state = env.home().join("fake-state");
        std::fs::create_dir_all(&state).expect("create the fake CLI state dir");
        env.write_config(&format!(
            "[runner]\nextra_writable_paths = [\"{state}\"]\n\n\
             [providers.claude]\nbinary = \"{bin}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n\n\
             [launcher]\nrestart_backoff_ms = 20\nrestart_backoff_max_ms = 200\n\n{extra}",
            state = state.display(),
            bin = binary("ductor-fake-cli").display(),
        ));
        env
    }

    /// Replaces `config.toml`.
    pub fn write_config(&self, config: &str) {
        std::fs::write(self.home().join("config.toml"), config).expect("write config.toml");
    }

    /// Runs services from `dir` instead of the build directory.
    pub fn set_bin_dir(&mut self, dir: impl Into<PathBuf>) {
        self.bin_dir = dir.into();
    }

    /// Adds an environment variable for every process started from here.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    /// `$DUCTOR_HOME`.
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// The private run directory (sockets, pid files, lock).
    pub fn run_dir(&self) -> PathBuf {
        self.home().join("run")
    }

    /// The socket of a service.
    pub fn socket(&self, service: &str) -> PathBuf {
        self.run_dir().join(format!("{service}.sock"))
    }

    /// A lazy, reconnecting channel to a service.
    pub fn channel(&self, service: &str) -> ductor_proto::Channel {
        ductor_proto::transport::connect(self.socket(service))
    }

    /// A command for a ductor binary with this home in its environment.
    /// `ductorctl` always comes from the build; services from the bin dir.
    pub fn command(&self, binary: &str) -> tokio::process::Command {
        let program = self.bin_dir.join(binary);
        let program =
            if binary != "ductorctl" && program.is_file() { program } else { self::binary(binary) };
        let mut command = command(program);
        command.env("DUCTOR_HOME", self.home()).env("DUCTOR_BIN_DIR", &self.bin_dir);
        for (name, value) in &self.extra_env {
            command.env(name, value);
        }
        command
    }

    /// Runs `ductorctl ARGS` to completion (bounded by [`patience`]).
    pub async fn ductorctl(&self, args: &[&str]) -> Output {
        let mut command = self.command("ductorctl");
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = tokio::time::timeout(patience() * 2, command.output())
            .await
            .unwrap_or_else(|_| panic!("ductorctl {args:?} did not finish"))
            .expect("run ductorctl");
        eprintln!(
            "$ ductorctl {} -> {}\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `ductorctl up --detach`, then waits for runner and core to be healthy.
    pub async fn up(&self) {
        let up = self.ductorctl(&["up", "--detach"]).await;
        assert!(up.status.success(), "up failed: {}", text(&up.stderr));
        self.wait_healthy(&["runner", "core"]).await;
    }

    /// What the (fake) agent of `chat` printed, stdout then stderr, for
    /// `sh:<command>`: the attacker's commands run inside the sandbox.
    pub async fn agent(&self, chat: &str, command: &str) -> String {
        let output = self.ductorctl(&["ask", "--chat", chat, &format!("sh:{command}")]).await;
        text(&output.stdout) + &text(&output.stderr)
    }

    /// Starts a long-running `ductorctl ARGS` (e.g. a foreground `up`),
    /// killed when the handle drops.
    pub fn spawn_ductorctl(&self, args: &[&str]) -> tokio::process::Child {
        let mut command = self.command("ductorctl");
        command.args(args).stdout(Stdio::null()).stderr(Stdio::inherit());
        command.spawn().expect("spawn ductorctl")
    }

    /// `ductorctl status --json`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        let output = self.ductorctl(&["status", "--json"]).await;
        assert!(output.status.success(), "status failed");
        serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
    }

    /// The status row of `service`, if listed.
    pub async fn service_status(&self, service: &str) -> Option<serde_json::Value> {
        let status = self.status().await;
        status["services"].as_array()?.iter().find(|row| row["service"] == service).cloned()
    }

    /// Waits until `ductorctl status` shows every listed service healthy.
    pub async fn wait_healthy(&self, services: &[&str]) -> serde_json::Value {
        wait_for(&format!("{services:?} healthy"), async || {
            let status = self.status().await;
            let rows = status["services"].as_array()?;
            services
                .iter()
                .all(|s| rows.iter().any(|r| r["service"] == *s && r["state"] == "healthy"))
                .then_some(status)
        })
        .await
    }

    /// Pids of every ductor process this home knows of (launcher, pid files).
    pub fn known_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let lock =
            std::fs::read_to_string(self.run_dir().join("ductorctl.lock")).unwrap_or_default();
        pids.extend(lock.trim().parse::<u32>().ok());
        for (service, _) in SERVICES {
            let file = self.run_dir().join(format!("{service}.pid"));
            let text = std::fs::read_to_string(file).unwrap_or_default();
            pids.extend(text.trim().parse::<u32>().ok());
        }
        pids.into_iter().filter(|p| alive(*p)).collect()
    }

    /// Every process whose environment names this home (catches orphans no
    /// pid file mentions).
    pub fn processes_of_this_home(&self) -> Vec<u32> {
        let needle = format!("DUCTOR_HOME={}", self.home().display());
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id() && alive(*pid))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
            })
            .collect()
    }

    /// Prints the last lines of every log file of this home.
    pub fn dump_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.home().join("logs")) else { return };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("==> {} <==", entry.path().display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let mut pids = self.known_pids();
        pids.extend(self.processes_of_this_home());
        for pid in pids {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The resident memory of `pid` in MiB (`VmRSS`), 0 when it is gone; the
/// benches' one reader.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}
