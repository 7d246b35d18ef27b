//! Setup for the real-CLI tests: finds the installed CLIs (or skips), writes each
//! provider's state files and a runner `config.toml` pointing the CLI at the fake model
//! API, starts the real `ductor-runner` on its socket, and reads run event streams.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ductor_proto::pb;
use ductor_proto::pb::run_event::Kind;
use ductor_proto::pb::runner_client::RunnerClient;
use ductor_tests::fake_model::{FakeModel, SlowPace};
use ductor_tests::harness::{bin_dir, command};
pub use ductor_tests::real_cli::Cli;
use ductor_tests::real_cli::{cli_cache, installed_cli, provider_files, provider_section};
use tonic::transport::Channel;

/// How long any one wait may take (`DUCTOR_TEST_PATIENCE_MS`, default 60 s). A bound
/// against hangs, not a time budget.
pub fn patience() -> Duration {
    let ms = std::env::var("DUCTOR_TEST_PATIENCE_MS").ok().and_then(|v| v.parse().ok());
    Duration::from_millis(ms.unwrap_or(60_000))
}

fn require_real() -> bool {
    std::env::var("DUCTOR_REQUIRE_REAL").is_ok_and(|v| v == "1")
}

/// Fails under `DUCTOR_REQUIRE_REAL=1`, else prints a loud SKIP line.
fn missing(test: &str, what: &str) {
    assert!(!require_real(), "{test}: {what} (DUCTOR_REQUIRE_REAL=1)");
    // Straight to the process's stderr: the test harness captures `eprintln!`, and a skip
    // must be seen.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIP real_cli::{test}: {what}");
}

/// A fake model, a runner configured for one CLI, and the directories they use.
pub struct Rig {
    pub cli: Cli,
    pub fake: FakeModel,
    pub client: RunnerClient<Channel>,
    /// The working directory of every run.
    pub work: PathBuf,
    /// Marker put in every run's environment, to find any process a run left behind.
    marker: String,
    log: PathBuf,
    runner: tokio::process::Child,
    runner_binary: PathBuf,
    home: PathBuf,
    // Last: removed after the runner is gone.
    dir: tempfile::TempDir,
    next_run: u32,
}

impl Rig {
    /// Everything up and serving, or `None` (after a SKIP line) when the CLI or the
    /// runner binary is missing and real parts are not required.
    pub async fn start(cli: Cli, test: &str) -> Option<Rig> {
        Rig::start_paced(cli, test, SlowPace::default()).await
    }

    /// [`Rig::start`] with the fake's `slow` script at `pace`.
    pub async fn start_paced(cli: Cli, test: &str, pace: SlowPace) -> Option<Rig> {
        let test = format!("{}::{test}", cli.name());
        let Some(binary) = installed_cli(cli) else {
            missing(
                &test,
                &format!(
                    "{} is not installed under {}; run tests/setup/install-clis.sh",
                    cli.name(),
                    cli_cache().display()
                ),
            );
            return None;
        };
        let runner_binary = bin_dir().join("ductor-runner");
        if !runner_binary.is_file() {
            missing(
                &test,
                &format!(
                    "{} is missing; build it first (`cargo build --bins`) or set DUCTOR_BIN_DIR",
                    runner_binary.display()
                ),
            );
            return None;
        }
        let fake = FakeModel::start_on(0, pace).await.expect("start the fake model API");
        let dir = tempfile::Builder::new()
            .prefix("ductor-real-cli-")
            .tempdir()
            .expect("create a temporary directory");
        let root = dir.path().to_path_buf();
        // Runs work in the runner's workspace: it refuses a working_dir outside it.
        let home = root.join("home");
        let (work, cli_home) = (home.join("workspace"), root.join("cli-home"));
        for d in [&home, &work, &cli_home] {
            std::fs::create_dir_all(d).expect("create a test directory");
        }
        let env = provider_files(cli, &cli_home, &fake.base_url());
        std::fs::write(home.join("config.toml"), runner_config(cli, &binary, &env))
            .expect("write config.toml");
        let log = root.join("runner.log");
        let runner = spawn_runner(&runner_binary, &home, &log);
        let channel = ductor_proto::transport::connect(home.join("run").join("runner.sock"));
        let mut rig = Rig {
            cli,
            fake,
            client: RunnerClient::new(channel),
            work,
            marker: format!("{}-{}", std::process::id(), root.display()),
            log,
            runner,
            runner_binary,
            home,
            dir,
            next_run: 0,
        };
        rig.wait_serving().await;
        Some(rig)
    }

    async fn wait_serving(&mut self) {
        let channel = ductor_proto::transport::connect(self.home.join("run").join("runner.sock"));
        if ductor_proto::health::wait_serving(channel.clone(), patience()).await.is_none() {
            let status = self.runner.try_wait();
            panic!("the runner did not serve (status {status:?}); log:\n{}", self.runner_log());
        }
        self.client = RunnerClient::new(channel);
    }

    /// SIGKILLs the runner (no chance to clean up) and waits for it.
    pub async fn kill_runner(&mut self) {
        self.runner.kill().await.expect("kill the runner");
    }

    /// Starts a new runner on the same home (after [`Rig::kill_runner`]).
    pub async fn restart_runner(&mut self) {
        self.runner = spawn_runner(&self.runner_binary, &self.home, &self.log);
        self.wait_serving().await;
    }

    /// Live processes carrying this rig's marker: `(pid, command line)`.
    pub fn leftovers(&self) -> Vec<(u32, String)> {
        processes_with_marker(&self.marker)
    }

    pub fn runner_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A spec for this rig's CLI in its working directory.
    pub fn spec(&mut self, prompt: &str) -> pb::RunSpec {
        self.next_run += 1;
        pb::RunSpec {
            run_id: format!("real-{}-{}-{}", self.cli.name(), std::process::id(), self.next_run),
            provider: self.cli.name().to_owned(),
            prompt: prompt.to_owned(),
            working_dir: self.work.display().to_string(),
            extra_env: HashMap::from([("DUCTOR_TEST_MARKER".to_owned(), self.marker.clone())]),
            labels: HashMap::from([("kind".to_owned(), "test".to_owned())]),
            ..Default::default()
        }
    }

    /// What `Probe` says about this rig's CLI, and the sandbox runs get.
    pub async fn probe(&mut self) -> (pb::ProviderInfo, String) {
        let probe = self.client.probe(pb::ProbeRequest {}).await.expect("Probe").into_inner();
        let info = probe
            .providers
            .into_iter()
            .find(|p| p.name == self.cli.name())
            .unwrap_or_else(|| panic!("Probe lists {}", self.cli.name()));
        (info, probe.sandbox)
    }

    /// Starts a run and returns its event stream.
    pub async fn start_run(&mut self, spec: pb::RunSpec) -> tonic::Streaming<pb::RunEvent> {
        self.client.start_run(spec).await.expect("StartRun is accepted").into_inner()
    }

    /// Runs `spec` to its end.
    pub async fn run(&mut self, spec: pb::RunSpec) -> Transcript {
        let mut stream = self.start_run(spec).await;
        let mut transcript = Transcript::default();
        self.read_to_end(&mut stream, &mut transcript).await;
        transcript
    }

    /// Reads events until one matches `stop` (returned) or the stream ends (`None`).
    pub async fn read_until(
        &self,
        stream: &mut tonic::Streaming<pb::RunEvent>,
        transcript: &mut Transcript,
        stop: impl Fn(&Kind) -> bool,
    ) -> Option<Kind> {
        loop {
            let next = tokio::time::timeout(patience(), stream.message()).await;
            let event = match next {
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => return None,
                Ok(Err(status)) => panic!(
                    "the run stream failed: {status}\n{}\nrunner log:\n{}",
                    transcript.dump(),
                    self.runner_log()
                ),
                Err(_) => panic!(
                    "no run event within {:?}\n{}\nrunner log:\n{}",
                    patience(),
                    transcript.dump(),
                    self.runner_log()
                ),
            };
            transcript.push(event);
            let kind = transcript.events.last().and_then(|e| e.kind.clone());
            if let Some(kind) = kind.filter(|k| stop(k)) {
                return Some(kind);
            }
        }
    }

    /// Reads the rest of a stream; it must end with exactly one `exited` event.
    pub async fn read_to_end(
        &self,
        stream: &mut tonic::Streaming<pb::RunEvent>,
        transcript: &mut Transcript,
    ) {
        self.read_until(stream, transcript, |_| false).await;
        let exits = transcript.kinds().filter(|k| matches!(k, Kind::Exited(_))).count();
        assert!(
            exits == 1
                && matches!(
                    transcript.events.last().and_then(|e| e.kind.as_ref()),
                    Some(Kind::Exited(_))
                ),
            "the stream must end with one exited event\n{}\nrunner log:\n{}",
            transcript.dump(),
            self.runner_log()
        );
        if std::env::var_os("DUCTOR_TEST_VERBOSE").is_some() {
            eprintln!("{} run:\n{}", self.cli.name(), transcript.dump());
        }
    }

    /// Waits until no process carrying this rig's marker is left (bounded by patience):
    /// every process a run started, in its group or not, is gone once the run ended.
    pub async fn assert_no_processes_left(&self) {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "processes outlived their run: {left:?}\nrunner log:\n{}",
                self.runner_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The temporary root (for debugging output).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} rig in {} — runner log:\n{}",
                self.cli.name(),
                self.root().display(),
                self.runner_log()
            );
        }
        // kill_on_drop ends the runner; its runs die with it (parent-death signal).
        let _ = self.runner.start_kill();
    }
}

/// Starts `ductor-runner` on `home`, appending its output to `log`.
fn spawn_runner(binary: &Path, home: &Path, log: &Path) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the runner log");
    command(binary)
        .env("DUCTOR_HOME", home)
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn ductor-runner")
}

/// `(pid, command line)` of every live process whose environment has the marker.
fn processes_with_marker(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("DUCTOR_TEST_MARKER={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        // A zombie has an empty environ; it is its parent's to reap, not a survivor.
        if environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline));
        }
    }
    found
}

/// The runner's `config.toml`: the CLI's binary and environment, and short timeouts
/// so a wedged CLI fails the test instead of hanging it.
fn runner_config(cli: Cli, binary: &Path, env: &[(&str, String)]) -> String {
    format!(
        "[runner]\nstop_grace_ms = 1000\ntotal_timeout_ms = 120000\nidle_timeout_ms = 60000\n\n{}",
        provider_section(cli, binary, env)
    )
}

/// The events of one run.
#[derive(Debug, Default)]
pub struct Transcript {
    pub events: Vec<pb::RunEvent>,
}

impl Transcript {
    fn push(&mut self, event: pb::RunEvent) {
        if let Some(last) = self.events.last() {
            assert!(event.seq > last.seq, "seq must increase: {} after {}", event.seq, last.seq);
        }
        self.events.push(event);
    }

    pub fn kinds(&self) -> impl Iterator<Item = &Kind> {
        self.events.iter().filter_map(|e| e.kind.as_ref())
    }

    pub fn started(&self) -> &pb::RunStarted {
        self.kinds()
            .find_map(|k| match k {
                Kind::Started(s) => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no started event\n{}", self.dump()))
    }

    pub fn session(&self) -> Option<&str> {
        self.kinds().find_map(|k| match k {
            Kind::Session(s) => Some(s.session_id.as_str()),
            _ => None,
        })
    }

    /// All text deltas joined.
    pub fn text(&self) -> String {
        self.kinds()
            .filter_map(|k| match k {
                Kind::Text(t) => Some(t.text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn text_deltas(&self) -> usize {
        self.kinds().filter(|k| matches!(k, Kind::Text(_))).count()
    }

    pub fn result(&self) -> Option<&pb::RunResult> {
        self.kinds().find_map(|k| match k {
            Kind::Result(r) => Some(r),
            _ => None,
        })
    }

    pub fn errors(&self) -> Vec<&pb::RunError> {
        self.kinds()
            .filter_map(|k| match k {
                Kind::Error(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn tools_started(&self) -> Vec<&pb::ToolStarted> {
        self.kinds()
            .filter_map(|k| match k {
                Kind::ToolStarted(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub fn tools_finished(&self) -> Vec<&pb::ToolFinished> {
        self.kinds()
            .filter_map(|k| match k {
                Kind::ToolFinished(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub fn exited(&self) -> &pb::RunExited {
        self.kinds()
            .find_map(|k| match k {
                Kind::Exited(e) => Some(e),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no exited event\n{}", self.dump()))
    }

    pub fn outcome(&self) -> pb::RunOutcome {
        pb::RunOutcome::try_from(self.exited().outcome).unwrap_or(pb::RunOutcome::Unspecified)
    }

    /// One line per event, for assertion messages.
    pub fn dump(&self) -> String {
        let mut out = String::from("events:\n");
        for event in &self.events {
            out.push_str(&format!("  {:>3} {:?}\n", event.seq, event.kind));
        }
        out
    }
}
