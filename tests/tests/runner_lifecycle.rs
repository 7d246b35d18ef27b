//! Black-box lifecycle and sandbox tests of `ductor-runner`: the real runner
//! binary on its Unix socket, driving `ductor-fake-cli` as "claude".
//!
//! Needs `ductor-runner` and `ductor-fake-cli` built (`cargo build --bins`;
//! found by the harness: `DUCTOR_BIN_DIR` or next to the test executable).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ductor_proto::pb;
use ductor_proto::pb::run_event::Kind;
use ductor_proto::pb::runner_client::RunnerClient;
use ductor_tests::harness::{binary, command};
use tonic::transport::Channel;

const SECRET: &str = "123456789:AAsekritRunnerEnv7f3a";

/// A runner in a temporary home with the fake CLI as claude.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    workspace: PathBuf,
    process: Option<tokio::process::Child>,
    client: RunnerClient<Channel>,
}

fn config(root: &Path, extra_runner: &str) -> String {
    format!(
        "[runner]\nstop_grace_ms = 300\nextra_writable_paths = [\"{state}\"]\n{extra_runner}\n\
         [providers.claude]\nbinary = \"{fake}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n",
        state = root.join("fake-state").display(),
        fake = binary("ductor-fake-cli").display(),
    )
}

impl Fixture {
    async fn start(extra_runner: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        let home = root.join("ductor-home");
        let workspace = home.join("workspace");
        for d in [&workspace, &root.join("fake-state"), &root.join("user-home")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(home.join("config.toml"), config(&root, extra_runner)).expect("config");
        let mut fixture = Self {
            client: RunnerClient::new(ductor_proto::transport::connect(
                home.join("run/runner.sock"),
            )),
            _dir: dir,
            root,
            home,
            workspace,
            process: None,
        };
        fixture.spawn_runner().await;
        fixture
    }

    async fn spawn_runner(&mut self) {
        let mut cmd = command(binary("ductor-runner"));
        cmd.arg("--home")
            .arg(&self.home)
            .env_remove("DUCTOR_RUN_DIR")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", self.root.join("user-home"))
            .env("DUCTOR_TELEGRAM_TOKEN", SECRET)
            .env("SOME_OTHER_SECRET", SECRET)
            .env("DUCTOR_LOG", "warn");
        self.process = Some(cmd.spawn().expect("start ductor-runner"));
        let channel = ductor_proto::transport::connect(self.home.join("run/runner.sock"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while ductor_proto::health::check(channel.clone(), Duration::from_secs(1)).await.is_none() {
            assert!(Instant::now() < deadline, "runner did not serve Health in 30 s");
            let exited = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            assert!(exited.is_none(), "runner exited early: {exited:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.client = RunnerClient::new(channel);
    }

    fn spec(&self, prompt: &str) -> pb::RunSpec {
        pb::RunSpec {
            provider: "claude".into(),
            prompt: prompt.into(),
            working_dir: self.workspace.display().to_string(),
            ..Default::default()
        }
    }

    async fn stream(&self, spec: pb::RunSpec) -> tonic::Streaming<pb::RunEvent> {
        self.client.clone().start_run(spec).await.expect("StartRun accepted").into_inner()
    }

    async fn run(&self, spec: pb::RunSpec) -> Vec<Kind> {
        collect(self.stream(spec).await).await
    }

    async fn signal(&self, run_id: &str, kind: pb::SignalKind) -> bool {
        let request = pb::SignalRequest { run_id: run_id.into(), kind: kind as i32 };
        self.client.clone().signal(request).await.expect("Signal").into_inner().found
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(child) = self.process.as_mut() {
            let _ = child.start_kill();
        }
    }
}

async fn next(stream: &mut tonic::Streaming<pb::RunEvent>) -> Option<Kind> {
    let item = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("an event within 60 s");
    item.expect("stream ok").map(|event| event.kind.expect("event has a kind"))
}

async fn collect(mut stream: tonic::Streaming<pb::RunEvent>) -> Vec<Kind> {
    let mut events = Vec::new();
    while let Some(kind) = next(&mut stream).await {
        events.push(kind);
    }
    events
}

/// Reads events until `pred` matches one; returns everything seen.
async fn until(
    stream: &mut tonic::Streaming<pb::RunEvent>,
    pred: impl Fn(&Kind) -> bool,
) -> Vec<Kind> {
    let mut seen = Vec::new();
    while let Some(kind) = next(stream).await {
        let hit = pred(&kind);
        seen.push(kind);
        if hit {
            return seen;
        }
    }
    panic!("stream ended before the awaited event: {seen:?}");
}

fn exited(events: &[Kind]) -> pb::RunExited {
    match events.last() {
        Some(Kind::Exited(exited)) => *exited,
        other => panic!("last event is not `exited`: {other:?} in {events:?}"),
    }
}

fn outcome(events: &[Kind]) -> pb::RunOutcome {
    pb::RunOutcome::try_from(exited(events).outcome).expect("known outcome")
}

fn errors(events: &[Kind]) -> Vec<(pb::ErrorKind, bool)> {
    events
        .iter()
        .filter_map(|k| match k {
            Kind::Error(e) => Some((pb::ErrorKind::try_from(e.kind).expect("kind"), e.recoverable)),
            _ => None,
        })
        .collect()
}

fn text(events: &[Kind]) -> String {
    events
        .iter()
        .filter_map(|k| if let Kind::Text(t) = k { Some(t.text.as_str()) } else { None })
        .collect()
}

fn result(events: &[Kind]) -> pb::RunResult {
    events
        .iter()
        .find_map(|k| if let Kind::Result(r) = k { Some(r.clone()) } else { None })
        .unwrap_or_else(|| panic!("no result in {events:?}"))
}

fn pid(events: &[Kind]) -> u32 {
    events
        .iter()
        .find_map(|k| if let Kind::Started(s) = k { Some(s.pid) } else { None })
        .expect("started")
}

/// True once `pid` is gone or a zombie (waits up to 10 s).
async fn dies(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).unwrap_or("");
        if stat.is_empty() || state == "Z" || state == "X" {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_streams_deltas_resumes_and_reports_unknown_sessions() {
    let fx = Fixture::start("").await;
    let first = fx.run(fx.spec("hello there")).await;
    assert!(matches!(first.first(), Some(Kind::Started(s)) if s.pid > 0), "{first:?}");
    let deltas = first.iter().filter(|k| matches!(k, Kind::Text(_))).count();
    assert!(deltas >= 3, "expected several deltas: {first:?}");
    assert_eq!(text(&first), "echo: hello there");
    let session = result(&first).session_id;
    assert!(first.iter().any(|k| matches!(k, Kind::Session(s) if s.session_id == session)));
    assert_eq!(outcome(&first), pb::RunOutcome::Completed);

    let mut resume = fx.spec("second turn");
    resume.resume_session_id = session.clone();
    let second = fx.run(resume).await;
    assert_eq!(result(&second).session_id, session);
    assert_eq!(result(&second).num_turns, 2, "resume continues the session");

    let mut unknown = fx.spec("third");
    unknown.resume_session_id = "00000000-dead-beef-0000-000000000000".into();
    let third = fx.run(unknown).await;
    assert!(errors(&third).contains(&(pb::ErrorKind::SessionNotFound, false)), "{third:?}");
    assert!(result(&third).is_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_cli_hits_the_idle_timeout() {
    let fx = Fixture::start("").await;
    let mut spec = fx.spec("hang");
    spec.idle_timeout_ms = 800;
    let events = fx.run(spec).await;
    assert!(errors(&events).contains(&(pb::ErrorKind::IdleTimeout, false)), "{events:?}");
    assert_eq!(outcome(&events), pb::RunOutcome::TimedOut);
    assert!(dies(pid(&events)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let fx = Fixture::start("").await;
    let mut spec = fx.spec("ignore-sigterm");
    spec.run_id = "stubborn".into();
    spec.labels = HashMap::from([("chat_id".to_owned(), "7".to_owned())]);
    let mut stream = fx.stream(spec).await;
    let seen = until(&mut stream, |k| matches!(k, Kind::Session(_))).await;
    let list = |chat: &str| {
        let filter = HashMap::from([("chat_id".to_owned(), chat.to_owned())]);
        let mut client = fx.client.clone();
        async move {
            let request = pb::ListRunsRequest { label_filter: filter };
            client.list_runs(request).await.expect("list").into_inner().runs
        }
    };
    let mine = list("7").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!((mine[0].run_id.as_str(), mine[0].pid), ("stubborn", pid(&seen)));
    assert!(!mine[0].session_id.is_empty());
    assert!(list("8").await.is_empty());
    assert!(fx.signal("stubborn", pb::SignalKind::Stop).await);
    let rest = collect(stream).await;
    assert_eq!(outcome(&rest), pb::RunOutcome::Stopped);
    assert_eq!(exited(&rest).signal, Some(9), "SIGTERM was ignored, SIGKILL ended it: {rest:?}");
    assert!(!fx.signal("stubborn", pb::SignalKind::Stop).await, "gone from the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grandchildren_die_with_the_run() {
    let fx = Fixture::start("").await;
    let events = fx.run(fx.spec("fork-grandchildren")).await;
    let pids: Vec<u32> = events
        .iter()
        .find_map(|k| match k {
            Kind::Status(s) if s.status.starts_with("grandchildren") => {
                Some(s.status.split_whitespace().skip(1).filter_map(|p| p.parse().ok()).collect())
            }
            _ => None,
        })
        .expect("grandchildren status");
    assert_eq!(pids.len(), 2, "{events:?}");
    assert_eq!(outcome(&events), pb::RunOutcome::Completed);
    for pid in pids {
        assert!(dies(pid).await, "grandchild {pid} outlived its run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_20_mib_line_are_reported_and_the_run_goes_on() {
    let fx = Fixture::start("").await;
    let events = fx.run(fx.spec("garbage huge-line")).await;
    let errs = errors(&events);
    assert!(errs.contains(&(pb::ErrorKind::Protocol, true)), "{errs:?}");
    assert!(errs.contains(&(pb::ErrorKind::OutputTooLarge, true)), "{errs:?}");
    assert_eq!(text(&events), "echo: garbage huge-line");
    assert_eq!(outcome(&events), pb::RunOutcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_is_crashed_and_no_result_is_failed() {
    let fx = Fixture::start("").await;
    let crash = fx.run(fx.spec("crash-mid-stream")).await;
    assert!(!text(&crash).is_empty(), "deltas before the crash: {crash:?}");
    assert!(errors(&crash).contains(&(pb::ErrorKind::Crashed, false)), "{crash:?}");
    assert_eq!(outcome(&crash), pb::RunOutcome::Failed);
    assert_eq!(exited(&crash).signal, Some(6));

    let silent = fx.run(fx.spec("no-result")).await;
    assert!(errors(&silent).contains(&(pb::ErrorKind::Crashed, false)), "{silent:?}");
    assert_eq!(outcome(&silent), pb::RunOutcome::Failed);
    assert_eq!(exited(&silent).exit_code, Some(0), "exit 0 without a result is still a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_model_errors_and_interrupts_map_to_events() {
    let fx = Fixture::start("").await;
    let tool = fx.run(fx.spec("tool")).await;
    assert!(
        tool.iter().any(
            |k| matches!(k, Kind::ToolStarted(t) if t.name == "Bash" && t.summary == "echo hi")
        )
    );
    assert!(tool.iter().any(
        |k| matches!(k, Kind::ToolFinished(t) if t.ok && t.output == "hi" && t.name == "Bash")
    ));

    let timed = result(&fx.run(fx.spec("no-duration")).await);
    assert!(timed.duration_ms > 0, "the runner's clock fills a missing duration: {timed:?}");

    let error = fx.run(fx.spec("error")).await;
    assert!(errors(&error).contains(&(pb::ErrorKind::ModelApi, false)), "{error:?}");
    assert!(result(&error).is_error);
    assert_eq!(outcome(&error), pb::RunOutcome::Completed);

    let mut spec = fx.spec("slow:40");
    spec.run_id = "to-interrupt".into();
    let mut stream = fx.stream(spec).await;
    let first = until(&mut stream, |k| matches!(k, Kind::Text(_))).await;
    assert!(fx.signal("to-interrupt", pb::SignalKind::Interrupt).await);
    let rest = collect(stream).await;
    assert_eq!(outcome(&rest), pb::RunOutcome::Interrupted, "{rest:?}");
    let interrupted = result(&rest);
    assert!(interrupted.is_error);
    let streamed = text(&first) + &text(&rest);
    assert_eq!(interrupted.text, streamed, "the partial reply, never claude's diagnostic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_never_resumed_twice_at_once() {
    let fx = Fixture::start("").await;
    let session = result(&fx.run(fx.spec("make a session")).await).session_id;
    let mut holder = fx.spec("hang");
    holder.resume_session_id = session.clone();
    holder.run_id = "holder".into();
    let mut held = fx.stream(holder).await;
    until(&mut held, |k| matches!(k, Kind::Started(_))).await;
    let mut second = fx.spec("me too");
    second.resume_session_id = session;
    let refused = fx.run(second).await;
    assert_eq!(errors(&refused), vec![(pb::ErrorKind::SessionBusy, false)]);
    assert_eq!(outcome(&refused), pb::RunOutcome::Failed);
    assert!(fx.signal("holder", pb::SignalKind::Kill).await);
    assert_eq!(outcome(&collect(held).await), pb::RunOutcome::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_the_run() {
    let fx = Fixture::start("").await;
    let mut stream = fx.stream(fx.spec("hang")).await;
    let seen = until(&mut stream, |k| matches!(k, Kind::Session(_))).await;
    drop(stream);
    assert!(dies(pid(&seen)).await, "the CLI outlived its caller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_takes_its_clis_along_and_the_next_one_sweeps() {
    let mut fx = Fixture::start("").await;
    let mut stream = fx.stream(fx.spec("ignore-sigterm")).await;
    let cli = pid(&until(&mut stream, |k| matches!(k, Kind::Session(_))).await);
    let records = fx.home.join("run/runs");
    assert_eq!(std::fs::read_dir(&records).expect("records").count(), 1);
    let runner = fx.process.as_mut().expect("runner");
    runner.start_kill().expect("SIGKILL the runner");
    runner.wait().await.expect("reap the runner");
    assert!(dies(cli).await, "the CLI survived a SIGKILLed runner");

    // A leftover group recorded by a "crashed runner": the next start kills it.
    let mut orphan = command("setsid");
    let mut orphan = orphan.arg("sleep").arg("600").spawn().expect("spawn an orphan group");
    let orphan_pid = orphan.id().expect("orphan pid");
    let stat = std::fs::read_to_string(format!("/proc/{orphan_pid}/stat")).expect("stat");
    let start_time =
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(19)).expect("starttime");
    std::fs::write(records.join("orphan.pid"), format!("{orphan_pid} {start_time}\n"))
        .expect("record");
    fx.spawn_runner().await;
    let status =
        tokio::time::timeout(Duration::from_secs(10), orphan.wait()).await.expect("orphan killed");
    assert!(!status.expect("status").success());
    assert_eq!(std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0), 0, "records swept");
}

/// Reaps `pid` (a child of this process) within 10 s; true when it was reaped.
async fn reap(pid: u32) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return true,
            Ok(_) if Instant::now() < deadline => {}
            _ => return false,
        }
    }
}

/// The native codex under its npm wrapper: the wrapper (group leader) dies
/// with the runner and a reaping init removes it at once, while the native
/// child, without a parent-death signal, lives on in the recorded group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_kills_a_group_whose_leader_is_already_reaped() {
    // Orphans come to this process, which reaps the dead CLI as an init would.
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let mut fx = Fixture::start("").await;
    let mut stream = fx.stream(fx.spec("leave-member")).await;
    let seen =
        until(&mut stream, |k| matches!(k, Kind::Status(s) if s.status.starts_with("member ")))
            .await;
    let cli = pid(&seen);
    let member: u32 = seen
        .iter()
        .find_map(|k| match k {
            Kind::Status(s) => s.status.strip_prefix("member ").and_then(|p| p.parse().ok()),
            _ => None,
        })
        .expect("member pid");
    let runner = fx.process.as_mut().expect("runner");
    runner.start_kill().expect("SIGKILL the runner");
    runner.wait().await.expect("reap the runner");
    assert!(reap(cli).await, "the CLI (group leader) did not die with the runner");
    let stat = std::fs::read_to_string(format!("/proc/{member}/stat")).expect("member alive");
    let pgid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(2));
    assert_eq!(pgid, Some(cli.to_string().as_str()), "the member is in the CLI's group");
    fx.spawn_runner().await;
    assert!(dies(member).await, "the next runner did not sweep the leaderless group");
    assert!(reap(member).await, "reap the swept member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_the_fake_cli_and_the_sandbox() {
    let fx = Fixture::start("").await;
    let probe =
        fx.client.clone().probe(pb::ProbeRequest::default()).await.expect("probe").into_inner();
    let claude = probe.providers.iter().find(|p| p.name == "claude").expect("claude listed");
    assert!(claude.installed);
    assert_eq!(claude.version, "9.9.9");
    assert_eq!(claude.default_model, "opus");
    assert!(claude.efforts.contains(&"high".to_owned()));
    assert!(["landlock", "none"].contains(&probe.sandbox.as_str()));
}

/// Sandbox: Landlock fences files; the environment allowlist fences secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_run_is_fenced() {
    let fx = Fixture::start("").await;
    let probe =
        fx.client.clone().probe(pb::ProbeRequest::default()).await.expect("probe").into_inner();
    let outside = fx.root.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    let config = fx.home.join("config.toml");
    let token_file = fx.home.join("run/.local-token");
    let script = format!(
        "sh:env; cat {config}; cat {token}; touch {out}/escaped; touch {ws}/inside && echo WROTE-INSIDE",
        config = config.display(),
        token = token_file.display(),
        out = outside.display(),
        ws = fx.workspace.display()
    );
    let mut spec = fx.spec(&script);
    spec.extra_env = HashMap::from([("DUCTOR_CHAT_ID".to_owned(), "4242".to_owned())]);
    let events = fx.run(spec).await;
    let reply = text(&events);
    assert!(reply.contains("DUCTOR_CHAT_ID=4242"), "{reply}");
    assert!(!reply.contains(SECRET), "a runner secret reached the CLI: {reply}");
    assert!(!reply.contains("DUCTOR_TELEGRAM_TOKEN"), "{reply}");
    assert!(reply.contains("WROTE-INSIDE") && fx.workspace.join("inside").exists(), "{reply}");
    if probe.sandbox != "landlock" {
        let msg = format!("SKIP file-fence checks: no Landlock here ({})", probe.sandbox_detail);
        assert!(std::env::var("DUCTOR_REQUIRE_REAL").is_err(), "{msg}");
        eprintln!("{msg}");
        return;
    }
    assert!(events.iter().any(|k| matches!(k, Kind::Started(s) if s.sandbox == "landlock")));
    assert!(!reply.contains("stop_grace_ms"), "config.toml was readable: {reply}");
    if let Ok(token) = std::fs::read_to_string(&token_file) {
        assert!(!reply.contains(token.trim()), "the socket token was readable: {reply}");
    }
    assert!(!outside.join("escaped").exists(), "wrote outside the workspace: {reply}");
    assert!(reply.contains("Permission denied"), "{reply}");
    // Nor through /proc: the runner is non-dumpable, so a CLI of the same (non-root)
    // user cannot open /proc/<runner>/environ. Root keeps that power (caps), so the
    // check only means something for a non-root runner.
    if nix::unistd::geteuid().is_root() {
        eprintln!("SKIP /proc/<runner>/environ check: running as root");
        return;
    }
    let runner_pid = fx.process.as_ref().and_then(|p| p.id()).expect("runner pid");
    let peek = fx.run(fx.spec(&format!("sh:tr '\\0' '\\n' < /proc/{runner_pid}/environ"))).await;
    let peeked = text(&peek);
    assert!(!peeked.contains(SECRET), "read the runner's environment via /proc: {peeked}");
    assert!(peeked.contains("Permission denied"), "{peeked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_runner_stops_every_run_first() {
    let mut fx = Fixture::start("").await;
    let mut stream = fx.stream(fx.spec("hang")).await;
    let cli = pid(&until(&mut stream, |k| matches!(k, Kind::Session(_))).await);
    let runner = fx.process.as_mut().expect("runner");
    let runner_pid = nix::unistd::Pid::from_raw(runner.id().expect("runner pid") as i32);
    nix::sys::signal::kill(runner_pid, nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM the runner");
    let rest = collect(stream).await;
    assert_eq!(outcome(&rest), pb::RunOutcome::Stopped, "{rest:?}");
    let status = tokio::time::timeout(Duration::from_secs(20), runner.wait())
        .await
        .expect("runner exits after its runs")
        .expect("status");
    assert!(status.success(), "runner exit status {status:?}");
    assert!(dies(cli).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_none_is_reported_and_still_filters_the_environment() {
    let fx = Fixture::start("sandbox = \"none\"").await;
    let probe = fx.client.clone().probe(pb::ProbeRequest::default()).await.expect("probe");
    assert_eq!(probe.into_inner().sandbox, "none");
    let events = fx.run(fx.spec("sh:env")).await;
    assert!(events.iter().any(|k| matches!(k, Kind::Started(s) if s.sandbox == "none")));
    let reply = text(&events);
    assert!(reply.contains("PATH="), "{reply}");
    assert!(!reply.contains(SECRET), "{reply}");
}
