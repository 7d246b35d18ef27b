//! One run from spawn to reaping: read stdout line by line into events,
//! drain stderr, enforce timeouts, apply signals, and always end with exactly
//! one `Exited` event after the process group is gone.
//!
//! Invariants: the CLI's whole process group is SIGKILLed once its leader
//! has exited (no orphaned grandchildren), and so, for a fenced run, is every
//! process left in its user namespace (those that left the group with
//! `setsid`); the child is always reaped (`wait` on every path), the pid
//! record is removed only after that, and completion is decided by the
//! result line, not the exit code.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ductor_daemon::sync::Locked as _;
use ductor_proto::pb;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use crate::event::{ErrorKind, Event, Outcome, RunError, one_line};
use crate::lines::{Line, LineReader};
use crate::namespace::Fence;
use crate::namespace::members::{self, RunNs};
use crate::provider::{self, ExitInfo, Input, Parser};
use crate::registry::Registry;
use crate::sandbox::{self, Limits, Spawn, Spawner};
use crate::spec::RunSpec;

/// A request for a live run.
#[derive(Debug)]
pub enum Control {
    /// Stop the current turn: the CLI's own interrupt where its input is
    /// open, else SIGINT to the group.
    Interrupt,
    /// SIGTERM, then SIGKILL after the grace period.
    Stop,
    /// SIGKILL.
    Kill,
    /// Input for a streaming CLI; `reply` says whether it was taken.
    Respond {
        /// What to send.
        response: Response,
        /// True when the CLI got it.
        reply: oneshot::Sender<bool>,
    },
}

/// A caller's input to a running CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The answer to an `ApprovalRequested`.
    Approval {
        /// The request answered.
        request_id: String,
        /// Allowed or denied.
        allow: bool,
        /// Told to the agent with a denial.
        message: String,
    },
    /// A message into the running turn.
    Steer(String),
}

/// What the CLI reads on stdin.
#[derive(Debug)]
pub enum Stdin {
    /// The prompt file (removed once the CLI holds it open).
    Prompt(PathBuf),
    /// A live pipe of protocol lines, the first carrying this prompt.
    Stream(String),
}

/// Why the runner ended (or tried to end) a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Interrupt,
    Stop,
    Kill,
    Timeout,
    ClientGone,
}

/// Everything needed to start a prepared run.
#[derive(Debug)]
pub struct Prepared {
    /// The validated spec.
    pub spec: RunSpec,
    /// Resolved binary.
    pub binary: PathBuf,
    /// CLI version when known.
    pub cli_version: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Complete environment.
    pub env: BTreeMap<String, String>,
    /// Private TMPDIR (removed at the end).
    pub tmpdir: PathBuf,
    /// What the CLI reads on stdin.
    pub stdin: Stdin,
    /// The stdout parser (and, for a streaming CLI, its input protocol).
    pub parser: Parser,
    /// Landlock ruleset built in the parent, applied in the child (when sandboxed).
    pub ruleset: Option<OwnedFd>,
    /// Landlock applies (reported in `RunStarted.sandbox`).
    pub sandboxed: bool,
    /// The run's user and mount namespace, when fenced.
    pub fence: Option<Arc<Fence>>,
    /// Resource limits.
    pub limits: Limits,
    /// Longest stdout line.
    pub max_line_bytes: usize,
    /// SIGTERM → SIGKILL grace.
    pub stop_grace: Duration,
    /// Total timeout.
    pub total_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
}

/// The event stream of one run, numbering events.
#[derive(Debug)]
pub struct Sink {
    run_id: String,
    seq: u64,
    tx: mpsc::Sender<Result<pb::RunEvent, tonic::Status>>,
    /// The caller went away or stopped reading; events are dropped.
    gone: bool,
}

/// A caller that reads nothing for this long is treated as gone (so a stuck
/// client cannot keep a run, its timers and its signals hostage).
const SEND_PATIENCE: Duration = Duration::from_secs(30);

impl Sink {
    /// A sink sending to `tx`.
    pub fn new(run_id: String, tx: mpsc::Sender<Result<pb::RunEvent, tonic::Status>>) -> Self {
        Self { run_id, seq: 0, tx, gone: false }
    }

    /// Ends a run that never started: its error, then `exited` as failed.
    pub async fn fail(&mut self, error: RunError) {
        self.send(Event::Error(error)).await;
        let exited = Event::Exited {
            outcome: Outcome::Failed,
            exit_code: None,
            signal: None,
            duration_ms: 0,
        };
        self.send(exited).await;
    }

    /// Sends `event`; false when the caller is gone.
    pub async fn send(&mut self, event: Event) -> bool {
        if self.gone {
            return false;
        }
        self.seq += 1;
        let at_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let event = pb::RunEvent {
            run_id: self.run_id.clone(),
            seq: self.seq,
            at_ms,
            kind: Some(event.into_kind()),
        };
        match tokio::time::timeout(SEND_PATIENCE, self.tx.send(Ok(event))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.gone = true;
                false
            }
            Err(_) => {
                tracing::warn!(run_id = %self.run_id, "the caller stopped reading events; treating it as gone");
                self.gone = true;
                false
            }
        }
    }

    /// The caller is gone (dropped the stream or stopped reading).
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// A handle that resolves when the caller dropped the stream.
    fn watcher(&self) -> mpsc::Sender<Result<pb::RunEvent, tonic::Status>> {
        self.tx.clone()
    }
}

/// Hooks from a run back to the service's tables.
pub trait Hooks: Send + Sync {
    /// The process started with `pid`.
    fn started(&self, pid: u32);
    /// The provider announced the session id.
    fn session(&self, session_id: &str);
    /// The process group is gone; called before `Exited` is sent, so a caller
    /// that reacts to `Exited` by resuming the session never finds it busy.
    fn finished(&self);
}

/// Last bytes of stderr.
#[derive(Debug, Default)]
struct StderrTail {
    bytes: Vec<u8>,
}

const STDERR_TAIL_BYTES: usize = 4096;
/// How long to keep reading stdout after the leader exited (pipe held by stragglers).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long a streaming CLI may stay quiet after a result while steered
/// messages are owed an answer, before its input is closed.
const OWED_ANSWER_GRACE: Duration = Duration::from_secs(5);
/// Malformed lines reported as events before going quiet.
const MAX_PROTOCOL_REPORTS: u32 = 10;

impl StderrTail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * STDERR_TAIL_BYTES {
            let cut = self.bytes.len() - STDERR_TAIL_BYTES;
            self.bytes.drain(..cut);
        }
    }

    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        text.trim().to_owned()
    }
}

/// Runs `prepared` to the end, reporting into `sink`.
pub async fn run(
    mut prepared: Prepared,
    spawner: Spawner,
    mut sink: Sink,
    control: mpsc::Receiver<Control>,
    registry: Registry,
    hooks: Arc<dyn Hooks>,
) {
    let started = Instant::now();
    let tmpdir = prepared.tmpdir.clone();
    match spawn(&mut prepared, &spawner).await {
        Ok(child) => {
            let ns = open_ns(&prepared, &child);
            let mut run = Supervisor::new(prepared, child, started, registry, hooks);
            run.ns = ns;
            run.drive(&mut sink, control).await;
        }
        Err(error) => {
            sink.send(Event::Error(error)).await;
            hooks.finished();
            let duration_ms = started.elapsed().as_millis() as u64;
            sink.send(Event::Exited {
                outcome: Outcome::Failed,
                exit_code: None,
                signal: None,
                duration_ms,
            })
            .await;
        }
    }
    if let Err(error) = std::fs::remove_dir_all(&tmpdir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %tmpdir.display(), %error, "failed to remove a run's TMPDIR");
    }
}

async fn spawn(
    prepared: &mut Prepared,
    spawner: &Spawner,
) -> Result<tokio::process::Child, RunError> {
    let ruleset = prepared.ruleset.take();
    let stdin = match &prepared.stdin {
        Stdin::Prompt(path) => {
            sandbox::StdinFrom::File(std::fs::File::open(path).map_err(|error| {
                RunError::fatal(ErrorKind::Internal, format!("open the prompt file: {error}"))
            })?)
        }
        Stdin::Stream(_) => sandbox::StdinFrom::Pipe,
    };
    let spawn = Spawn {
        program: &prepared.binary,
        args: &prepared.args,
        env: &prepared.env,
        cwd: &prepared.spec.working_dir,
        limits: prepared.limits,
        ruleset,
        stdin,
    };
    let fence = prepared.fence.clone();
    let child = spawner.spawn(sandbox::command_in(spawn, fence.clone())).await.map_err(|error| {
        let error = fence.map_or_else(|| error.to_string(), |fence| fence.explain(&error));
        RunError::fatal(
            ErrorKind::SpawnFailed,
            format!("spawn {}: {error}", prepared.binary.display()),
        )
    });
    // The CLI holds it open; nothing else needs the prompt on disk.
    if let Stdin::Prompt(path) = &prepared.stdin {
        let _ = std::fs::remove_file(path);
    }
    child
}

/// The fenced run's user namespace, opened before anything can reap the CLI.
fn open_ns(prepared: &Prepared, child: &tokio::process::Child) -> Option<RunNs> {
    prepared.fence.as_ref()?;
    let pid = child.id()?;
    RunNs::open(pid)
        .inspect_err(|error| {
            tracing::warn!(run_id = %prepared.spec.run_id, %error, "failed to hold the run's namespace; only its process group is killed at the end");
        })
        .ok()
}

/// Loop bookkeeping of [`Supervisor::event_loop`].
struct LoopState {
    /// `Some` once the leader was reaped (inner `None`: status unknown).
    status: Option<Option<std::process::ExitStatus>>,
    stdout_open: bool,
    /// Stop reading stdout at this instant (stragglers holding the pipe).
    drain_deadline: Option<tokio::time::Instant>,
    client_gone: bool,
    control_open: bool,
}

/// What woke the supervisor.
enum Wake {
    Line(Option<Line>),
    Exited(Option<std::process::ExitStatus>),
    Control(Option<Control>),
    ClientGone,
    TotalTimeout,
    IdleCheck,
    KillNow,
    CloseInput,
    DrainOver,
}

struct Supervisor {
    prepared: Prepared,
    child: Option<tokio::process::Child>,
    pgid: Option<Pid>,
    /// The fenced run's namespace: every process in it dies with the run.
    ns: Option<RunNs>,
    started: Instant,
    registry: Registry,
    hooks: Arc<dyn Hooks>,
    parser: Parser,
    activity_ms: Arc<AtomicU64>,
    stderr: Arc<Mutex<StderrTail>>,
    unknown: HashSet<String>,
    protocol_errors: u32,
    result: Option<bool>,
    reason: Option<Reason>,
    kill_at: Option<tokio::time::Instant>,
    fatal_reported: bool,
    /// A text event was seen (logged once, for latency traces).
    text_seen: bool,
    /// The streaming CLI's input, while open.
    input: Option<mpsc::Sender<(String, bool)>>,
    /// Approval requests not answered yet: their tool input.
    pending: std::collections::HashMap<String, serde_json::Value>,
    /// Steering messages written (each ends in a result of its own).
    steers: u32,
    /// Result lines seen.
    results: u32,
    /// More answers are owed but the CLI went quiet: close its input then
    /// (it may have taken a steer into the turn that just ended).
    close_input_at: Option<tokio::time::Instant>,
}

impl Supervisor {
    fn new(
        prepared: Prepared,
        child: tokio::process::Child,
        started: Instant,
        registry: Registry,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        let pgid = child.id().map(|pid| Pid::from_raw(pid as i32));
        let mut prepared = prepared;
        let parser = std::mem::replace(&mut prepared.parser, Parser::new(prepared.spec.provider));
        Self {
            prepared,
            child: Some(child),
            pgid,
            ns: None,
            started,
            registry,
            hooks,
            parser,
            activity_ms: Arc::new(AtomicU64::new(0)),
            stderr: Arc::default(),
            unknown: HashSet::new(),
            protocol_errors: 0,
            result: None,
            reason: None,
            kill_at: None,
            fatal_reported: false,
            text_seen: false,
            input: None,
            pending: std::collections::HashMap::new(),
            steers: 0,
            results: 0,
            close_input_at: None,
        }
    }

    async fn drive(mut self, sink: &mut Sink, mut control: mpsc::Receiver<Control>) {
        let pid = self.pgid.map_or(0, |p| p.as_raw() as u32);
        let ns = self.ns.as_ref().map(RunNs::id);
        if let Err(error) = self.registry.record(&self.prepared.spec.run_id, pid, ns) {
            tracing::warn!(%error, "failed to record the run's pid");
        }
        self.hooks.started(pid);
        tracing::debug!(run_id = %self.prepared.spec.run_id, pid, "spawned");
        let started = Event::Started {
            pid,
            sandbox: if self.prepared.sandboxed { "landlock" } else { "none" }.into(),
            binary: self.prepared.binary.display().to_string(),
            cli_version: self.prepared.cli_version.clone(),
        };
        if !sink.send(started).await {
            self.request(Reason::ClientGone);
        }
        let mut lines = self.spawn_readers();
        self.spawn_writer();
        let mut exit = self.spawn_waiter();
        let status = self.event_loop(sink, &mut lines, &mut exit, &mut control).await;
        self.finish(sink, status, exit).await;
    }

    /// A streaming CLI: writes its opening lines (the prompt, or a
    /// handshake), then whatever [`Self::send_input`] and the protocol queue;
    /// dropping the sender closes its stdin.
    fn spawn_writer(&mut self) {
        use tokio::io::AsyncWriteExt as _;
        let Stdin::Stream(prompt) = &self.prepared.stdin else { return };
        let opening = self.parser.opening(prompt);
        if opening.is_empty() {
            return;
        }
        let Some(mut stdin) = self.child.as_mut().and_then(|c| c.stdin.take()) else { return };
        let (tx, mut rx) = mpsc::channel::<(String, bool)>(32);
        let run_id = self.prepared.spec.run_id.clone();
        tokio::spawn(async move {
            let mut queued: std::collections::VecDeque<(String, bool)> =
                opening.into_iter().map(|line| (line, false)).collect();
            loop {
                let next = match queued.pop_front() {
                    Some(next) => Some(next),
                    None => rx.recv().await,
                };
                let Some((line, answer)) = next else { break };
                let written = stdin.write_all(line.as_bytes()).await;
                if let Err(error) = written.and(stdin.flush().await) {
                    tracing::debug!(%run_id, %error, "the CLI's input is closed");
                    break;
                }
                if answer {
                    tracing::info!(%run_id, bytes = line.len(), "wrote to the CLI's input");
                }
            }
        });
        self.input = Some(tx);
    }

    /// Queues a caller's input for the CLI; false when it cannot take it.
    fn send_input(&mut self, input: &Input) -> bool {
        let Some(line) = self.parser.encode(input) else { return false };
        match &self.input {
            Some(tx) => tx.try_send((line, true)).is_ok(),
            None => false,
        }
    }

    /// Writes what the protocol asked for while parsing.
    fn flush_protocol(&mut self) {
        for line in self.parser.take_outgoing() {
            if let Some(tx) = &self.input
                && tx.try_send((line, false)).is_err()
            {
                tracing::warn!(run_id = %self.prepared.spec.run_id, "the CLI's input is full or closed");
            }
        }
    }

    /// Applies a caller's response; true when the CLI got it.
    async fn respond(&mut self, response: Response, sink: &mut Sink) -> bool {
        match response {
            Response::Approval { request_id, allow, message } => {
                let Some(input) = self.pending.remove(&request_id) else { return false };
                let answer = Input::Approval { request_id, allow, message, input };
                self.send_input(&answer)
            }
            Response::Steer(text) => {
                if self.reason.is_some() || !self.send_input(&Input::User(text.clone())) {
                    return false;
                }
                self.steers += 1;
                if !self.parser.confirms_steers() {
                    sink.send(Event::Steered(text)).await;
                }
                true
            }
        }
    }

    /// Stops the current turn through the CLI's input (it stays alive until
    /// the turn's result, then its input is closed); false when it has none.
    fn interrupt_by_input(&mut self) -> bool {
        let request_id = format!("interrupt-{}", self.results);
        if !self.send_input(&Input::Interrupt { request_id }) {
            return false;
        }
        tracing::info!(run_id = %self.prepared.spec.run_id, "interrupting through the CLI's input");
        if self.reason.is_none() {
            self.reason = Some(Reason::Interrupt);
        }
        true
    }

    /// Reaps the child in its own task (so it is reaped on every path).
    fn spawn_waiter(&mut self) -> oneshot::Receiver<Option<std::process::ExitStatus>> {
        let (tx, rx) = oneshot::channel();
        if let Some(mut child) = self.child.take() {
            tokio::spawn(async move {
                let status = child.wait().await.ok();
                let _ = tx.send(status);
            });
        }
        rx
    }

    /// Starts the stdout and stderr readers; returns the line channel.
    fn spawn_readers(&mut self) -> mpsc::Receiver<Line> {
        let (tx, rx) = mpsc::channel(64);
        let started = self.started;
        let Some(child) = self.child.as_mut() else { return rx };
        if let Some(stdout) = child.stdout.take() {
            let activity = self.activity_ms.clone();
            let max = self.prepared.max_line_bytes;
            tokio::spawn(async move {
                let mut reader = LineReader::new(stdout, max);
                while let Ok(Some(line)) = reader.next_line().await {
                    activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(mut stderr) = child.stderr.take() {
            let activity = self.activity_ms.clone();
            let tail = self.stderr.clone();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 8192];
                while let Ok(n) = stderr.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    tail.locked().push(&chunk[..n]);
                }
            });
        }
        rx
    }

    async fn event_loop(
        &mut self,
        sink: &mut Sink,
        lines: &mut mpsc::Receiver<Line>,
        exit: &mut oneshot::Receiver<Option<std::process::ExitStatus>>,
        control: &mut mpsc::Receiver<Control>,
    ) -> Option<Option<std::process::ExitStatus>> {
        let mut state = LoopState {
            status: None,
            stdout_open: true,
            drain_deadline: None,
            client_gone: false,
            control_open: true,
        };
        let watcher = sink.watcher();
        while state.stdout_open || state.status.is_none() {
            let wake = self.wait(&state, lines, exit, control, &watcher).await;
            if !self.handle(wake, &mut state, sink).await {
                break;
            }
        }
        state.status
    }

    /// Waits for the next thing that needs attention.
    async fn wait(
        &self,
        state: &LoopState,
        lines: &mut mpsc::Receiver<Line>,
        exit: &mut oneshot::Receiver<Option<std::process::ExitStatus>>,
        control: &mut mpsc::Receiver<Control>,
        watcher: &mpsc::Sender<Result<pb::RunEvent, tonic::Status>>,
    ) -> Wake {
        let start = tokio::time::Instant::from_std(self.started);
        let total_deadline = start + self.prepared.total_timeout;
        let idle_deadline = start
            + Duration::from_millis(self.activity_ms.load(Ordering::Relaxed))
            + self.prepared.idle_timeout;
        let timers = self.reason != Some(Reason::Timeout) && state.status.is_none();
        let far = total_deadline + self.prepared.idle_timeout;
        tokio::select! {
            line = lines.recv(), if state.stdout_open => Wake::Line(line),
            reaped = &mut *exit, if state.status.is_none() => Wake::Exited(reaped.ok().flatten()),
            request = control.recv(), if state.control_open => Wake::Control(request),
            () = watcher.closed(), if !state.client_gone => Wake::ClientGone,
            () = sleep_until(total_deadline), if timers => Wake::TotalTimeout,
            () = sleep_until(idle_deadline), if timers => Wake::IdleCheck,
            () = sleep_until(self.kill_at.unwrap_or(far)), if self.kill_at.is_some() => Wake::KillNow,
            () = sleep_until(self.close_input_at.unwrap_or(far)), if self.close_input_at.is_some() => {
                Wake::CloseInput
            }
            () = sleep_until(state.drain_deadline.unwrap_or(far)), if state.drain_deadline.is_some() => {
                Wake::DrainOver
            }
        }
    }

    /// Acts on `wake`; false ends the loop.
    async fn handle(&mut self, wake: Wake, state: &mut LoopState, sink: &mut Sink) -> bool {
        match wake {
            Wake::Line(Some(line)) => {
                self.on_line(sink, line).await;
                if sink.is_gone() && !state.client_gone {
                    state.client_gone = true;
                    self.request(Reason::ClientGone);
                }
            }
            Wake::Line(None) => state.stdout_open = false,
            Wake::Exited(status) => {
                tracing::debug!(run_id = %self.prepared.spec.run_id, ?status, "the CLI exited");
                state.status = Some(status);
                self.kill_group(Signal::SIGKILL);
                state.drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            Wake::Control(Some(Control::Interrupt)) => {
                if !self.interrupt_by_input() {
                    self.request(Reason::Interrupt);
                }
            }
            Wake::Control(Some(Control::Stop)) => self.request(Reason::Stop),
            Wake::Control(Some(Control::Kill)) => self.request(Reason::Kill),
            Wake::Control(Some(Control::Respond { response, reply })) => {
                let taken = self.respond(response, sink).await;
                let _ = reply.send(taken);
            }
            Wake::Control(None) => state.control_open = false,
            Wake::ClientGone => {
                state.client_gone = true;
                self.request(Reason::ClientGone);
            }
            Wake::TotalTimeout => {
                self.timeout(sink, ErrorKind::Timeout, self.prepared.total_timeout).await;
            }
            Wake::IdleCheck => {
                let now = self.started.elapsed().as_millis() as u64;
                if !self.pending.is_empty() {
                    // Waiting for a human is not idling; the caller times approvals out.
                    self.activity_ms.store(now, Ordering::Relaxed);
                    return true;
                }
                let idle = now.saturating_sub(self.activity_ms.load(Ordering::Relaxed));
                if idle >= self.prepared.idle_timeout.as_millis() as u64 {
                    self.timeout(sink, ErrorKind::IdleTimeout, self.prepared.idle_timeout).await;
                }
            }
            Wake::KillNow => {
                self.kill_at = None;
                self.kill_group(Signal::SIGKILL);
            }
            Wake::CloseInput => {
                tracing::debug!(run_id = %self.prepared.spec.run_id, "no further answer came; closing the CLI's input");
                self.close_input_at = None;
                self.input = None;
                self.pending.clear();
            }
            Wake::DrainOver => {
                tracing::warn!(run_id = %self.prepared.spec.run_id, "stdout still open after exit; giving up on it");
                return false;
            }
        }
        true
    }

    async fn timeout(&mut self, sink: &mut Sink, kind: ErrorKind, after: Duration) {
        let what = if kind == ErrorKind::Timeout { "total timeout" } else { "idle timeout" };
        let mut error =
            RunError::fatal(kind, format!("{what} of {} s reached; stopping", after.as_secs_f64()));
        error.stderr_tail = self.stderr_tail();
        self.fatal_reported = true;
        sink.send(Event::Error(error)).await;
        self.request(Reason::Timeout);
    }

    /// Applies a stop/interrupt/kill request.
    fn request(&mut self, reason: Reason) {
        // A timeout or kill outranks what follows; a stop outranks an interrupt.
        let keep = matches!(
            (self.reason, reason),
            (Some(Reason::Kill | Reason::Timeout), _)
                | (Some(Reason::Stop | Reason::ClientGone), Reason::Interrupt)
        );
        if !keep {
            self.reason = Some(reason);
        }
        match reason {
            Reason::Interrupt => self.kill_group(Signal::SIGINT),
            Reason::Kill => self.kill_group(Signal::SIGKILL),
            Reason::Stop | Reason::ClientGone | Reason::Timeout => {
                self.kill_group(Signal::SIGTERM);
                if self.kill_at.is_none() {
                    self.kill_at = Some(tokio::time::Instant::now() + self.prepared.stop_grace);
                }
            }
        }
    }

    fn kill_group(&self, signal: Signal) {
        if let Some(pgid) = self.pgid
            && let Err(error) = killpg(pgid, signal)
            && error != nix::errno::Errno::ESRCH
        {
            tracing::warn!(%pgid, %signal, %error, "failed to signal a run's process group");
        }
    }

    fn stderr_tail(&self) -> String {
        self.stderr.locked().text()
    }

    async fn on_line(&mut self, sink: &mut Sink, line: Line) {
        let bytes = match line {
            Line::Text(bytes) => bytes,
            Line::TooLong(size) => {
                let message = format!(
                    "skipped a {size}-byte output line (limit {} bytes)",
                    self.prepared.max_line_bytes
                );
                sink.send(Event::Error(RunError::recoverable(ErrorKind::OutputTooLarge, message)))
                    .await;
                return;
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.close_input_at = None;
        let value = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) if value.is_object() => value,
            _ => return self.malformed(sink, &bytes).await,
        };
        let mut events = Vec::new();
        if let Err(provider::Unknown(kind)) = self.parser.parse(&value, &mut events)
            && self.unknown.insert(kind.clone())
        {
            tracing::info!(
                provider = self.prepared.spec.provider.as_str(),
                kind,
                "ignoring an unknown event type"
            );
        }
        self.flush_protocol();
        if self.parser.done()
            && self.input.is_some()
            && !matches!(events.last(), Some(Event::Result(_)))
        {
            // The protocol ended the run before a result (e.g. a refused resume).
            self.input = None;
        }
        for mut event in events {
            match &mut event {
                Event::Text(_) if !self.text_seen => {
                    self.text_seen = true;
                    tracing::debug!(run_id = %self.prepared.spec.run_id, "first text");
                }
                Event::Session(id) => self.hooks.session(id),
                Event::Result(result) => {
                    tracing::debug!(run_id = %self.prepared.spec.run_id, "result line");
                    if result.duration_ms == 0 {
                        // The CLI gave none (codex): the runner's own clock since spawn.
                        result.duration_ms = self.started.elapsed().as_millis() as u64;
                    }
                    self.result = Some(result.is_error);
                    self.hooks.session(&result.session_id);
                    self.results += 1;
                    let folded = !self.parser.steer_has_own_result();
                    if folded || self.results > self.steers || self.reason.is_some() {
                        // Every message has its answer (or the turn was stopped): EOF ends the CLI.
                        self.input = None;
                        self.pending.clear();
                    } else if self.input.is_some() {
                        self.close_input_at = Some(tokio::time::Instant::now() + OWED_ANSWER_GRACE);
                    }
                }
                Event::ApprovalRequested { request_id, input, .. } => {
                    tracing::info!(run_id = %self.prepared.spec.run_id, request_id, "the CLI asks for approval");
                    self.pending.insert(request_id.clone(), input.clone());
                }
                Event::Error(error) if !error.recoverable => {
                    self.fatal_reported = true;
                    error.stderr_tail = self.stderr_tail();
                }
                _ => {}
            }
            sink.send(event).await;
        }
    }

    async fn malformed(&mut self, sink: &mut Sink, bytes: &[u8]) {
        self.protocol_errors += 1;
        let text = String::from_utf8_lossy(bytes);
        if self.protocol_errors <= MAX_PROTOCOL_REPORTS {
            let message =
                format!("skipped a line that is not a JSON object: {}", one_line(&text, 200));
            sink.send(Event::Error(RunError::recoverable(ErrorKind::Protocol, message))).await;
        } else if self.protocol_errors == MAX_PROTOCOL_REPORTS + 1 {
            tracing::warn!(run_id = %self.prepared.spec.run_id, "more malformed lines; no longer reporting them");
        }
    }

    async fn finish(
        mut self,
        sink: &mut Sink,
        status: Option<Option<std::process::ExitStatus>>,
        exit: oneshot::Receiver<Option<std::process::ExitStatus>>,
    ) {
        // Whatever is left of the group goes now; then the leader is reaped for sure.
        self.kill_group(Signal::SIGKILL);
        let status = match status {
            Some(status) => status,
            None => exit.await.ok().flatten(),
        };
        self.kill_namespace().await;
        self.registry.forget(&self.prepared.spec.run_id);
        let exit = exit_info(status);
        let outcome = self.outcome();
        if outcome == Outcome::Failed && !self.fatal_reported {
            let mut error = provider::classify_failure(
                self.prepared.spec.provider,
                self.prepared.spec.resume.is_some(),
                exit,
                &self.stderr_tail(),
                self.parser.pending_error(),
            );
            error.stderr_tail = self.stderr_tail();
            sink.send(Event::Error(error)).await;
        }
        self.hooks.finished();
        let duration_ms = self.started.elapsed().as_millis() as u64;
        sink.send(Event::Exited {
            outcome,
            exit_code: exit.code,
            signal: exit.signal,
            duration_ms,
        })
        .await;
    }

    /// SIGKILLs every process left in the run's namespace (off the async workers).
    async fn kill_namespace(&mut self) {
        let Some(ns) = self.ns.take() else { return };
        let run_id = self.prepared.spec.run_id.clone();
        match tokio::task::spawn_blocking(move || members::kill_members(&ns)).await {
            Ok(0) => {}
            Ok(killed) => {
                tracing::info!(%run_id, killed, "killed processes that left the run's group")
            }
            Err(error) => tracing::warn!(%run_id, %error, "failed to kill the run's namespace"),
        }
    }

    fn outcome(&self) -> Outcome {
        match (self.reason, self.result) {
            (Some(Reason::Kill), _) => Outcome::Killed,
            (Some(Reason::Timeout), _) => Outcome::TimedOut,
            (Some(Reason::Stop | Reason::ClientGone), _) => Outcome::Stopped,
            (Some(Reason::Interrupt), Some(false)) => Outcome::Completed,
            (Some(Reason::Interrupt), _) => Outcome::Interrupted,
            (None, Some(_)) => Outcome::Completed,
            (None, None) => Outcome::Failed,
        }
    }
}

fn exit_info(status: Option<std::process::ExitStatus>) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(status) => ExitInfo { code: status.code(), signal: status.signal() },
        None => ExitInfo { code: None, signal: None },
    }
}
