//! The `ductor.v1.Runner` gRPC service: the table of live runs, session
//! locks, and the conversion between the wire and the domain.
//!
//! Request errors (bad spec, duplicate id, too many runs, shutting down) are
//! `tonic::Status`es; anything that happens to an accepted run — including
//! "session busy" and "binary missing" — is reported in its event stream,
//! which always ends with one `exited` event.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ductor_daemon::DuctorHome;
use ductor_daemon::ServiceName;
use ductor_daemon::config::{ProvidersConfig, RunnerConfig, StateHome};
use ductor_daemon::sync::{Locked as _, LockedRw as _};
use ductor_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;

use crate::error::RunnerError;
use crate::event::{ErrorKind, RunError};
use crate::homes;
use crate::namespace::{self, Fencing};
use crate::probe;
use crate::provider::{self, Invocation};
use crate::registry::Registry;
use crate::sandbox::{self, Limits, PolicyInput, Support};
use crate::skills::Skills;
use crate::spec::{PermissionMode, Provider, RunSpec};
use crate::supervise::{self, Control, Hooks, Prepared, Sink};

type EventStream = ReceiverStream<Result<pb::RunEvent, tonic::Status>>;

/// Events buffered per run between the supervisor and the gRPC stream.
const EVENT_BUFFER: usize = 256;

struct RunEntry {
    provider: Provider,
    model: String,
    labels: BTreeMap<String, String>,
    started_at_ms: u64,
    pid: AtomicU32,
    session: Mutex<String>,
    control: mpsc::Sender<Control>,
}

/// Shared state of the service.
pub struct Runner {
    config: RunnerConfig,
    /// `[providers.*]`: replaced by a reload, read at each run's start.
    providers: std::sync::RwLock<Arc<ProvidersConfig>>,
    home: DuctorHome,
    support: Support,
    fencing: Fencing,
    registry: Registry,
    parent_env: BTreeMap<String, String>,
    runs: Mutex<HashMap<String, Arc<RunEntry>>>,
    sessions: Mutex<HashMap<(Provider, String), String>>,
    versions: probe::VersionCache,
    shutting_down: AtomicBool,
    tasks: TaskTracker,
    spawner: sandbox::Spawner,
    skills: Option<Arc<Skills>>,
    /// Sub-agents' workspaces (`[[agents]]`); a run of another agent is refused.
    agents: std::sync::RwLock<HashMap<String, PathBuf>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("sandbox", &self.support.mode()).finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Runner {
    /// A runner for `home` with the given settings.
    ///
    /// Must be called inside the Tokio runtime (it starts the spawner thread there).
    pub fn new(
        config: RunnerConfig,
        providers: ProvidersConfig,
        home: DuctorHome,
        support: Support,
        fencing: Fencing,
        skills: Option<Arc<Skills>>,
    ) -> std::io::Result<Arc<Self>> {
        let registry = Registry::new(home.run_dir());
        let spawner = sandbox::Spawner::start(tokio::runtime::Handle::current())?;
        Ok(Arc::new(Self {
            config,
            providers: std::sync::RwLock::new(Arc::new(providers)),
            home,
            support,
            fencing,
            registry,
            parent_env: sandbox::parent_env(),
            runs: Mutex::default(),
            sessions: Mutex::default(),
            versions: probe::VersionCache::default(),
            shutting_down: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            spawner,
            skills,
            agents: Default::default(),
        }))
    }

    /// Kills what a previous runner left behind and clears stale run TMPDIRs.
    pub fn sweep(&self) -> usize {
        let killed = self.registry.sweep();
        if let Ok(entries) = std::fs::read_dir(self.tmp_root()) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        killed
    }

    /// Stops every run (SIGTERM, then SIGKILL after the grace) and waits for them.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let controls: Vec<_> = self.lock_runs().values().map(|r| r.control.clone()).collect();
        for control in controls {
            let _ = control.try_send(Control::Stop);
        }
        self.tasks.close();
        let wait = Duration::from_millis(self.config.stop_grace_ms) + Duration::from_secs(5);
        if tokio::time::timeout(wait, self.tasks.wait()).await.is_err() {
            tracing::warn!("runs did not end in time during shutdown");
        }
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RunEntry>>> {
        self.runs.locked()
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<(Provider, String), String>> {
        self.sessions.locked()
    }

    fn tmp_root(&self) -> PathBuf {
        self.home.root().join("tmp")
    }

    /// `[providers.*]` as the last valid `config.toml` has them.
    fn providers(&self) -> Arc<ProvidersConfig> {
        self.providers.read_locked().clone()
    }

    /// Takes a reloaded `[providers.*]`: runs started from now on use it
    /// (binary, args, env, home state), and so does the next `Probe` (models).
    pub fn set_providers(&self, providers: ProvidersConfig) {
        *self.providers.write_locked() = Arc::new(providers);
    }

    /// Starts a run; returns its event stream.
    pub fn start(self: &Arc<Self>, spec: RunSpec) -> Result<EventStream, RunnerError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(RunnerError::ShuttingDown);
        }
        let (control_tx, control_rx) = mpsc::channel(8);
        let entry = Arc::new(RunEntry {
            provider: spec.provider,
            model: spec.model.clone().unwrap_or_default(),
            labels: spec.labels.clone(),
            started_at_ms: now_ms(),
            pid: AtomicU32::new(0),
            session: Mutex::new(spec.resume.clone().unwrap_or_default()),
            control: control_tx,
        });
        {
            let mut runs = self.lock_runs();
            if runs.contains_key(&spec.run_id) {
                return Err(RunnerError::DuplicateRun(spec.run_id));
            }
            if runs.len() >= self.config.max_concurrent_runs as usize {
                return Err(RunnerError::TooManyRuns(self.config.max_concurrent_runs));
            }
            runs.insert(spec.run_id.clone(), entry);
        }
        if let Some(session) = &spec.resume {
            let mut sessions = self.lock_sessions();
            let key = (spec.provider, session.clone());
            if let Some(holder) = sessions.get(&key).filter(|holder| **holder != spec.run_id) {
                let message = format!("session {session} is in use by run {holder}");
                drop(sessions);
                self.lock_runs().remove(&spec.run_id);
                return Ok(failed_stream(
                    spec.run_id,
                    RunError::fatal(ErrorKind::SessionBusy, message),
                ));
            }
            sessions.insert(key, spec.run_id.clone());
        }
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let sink = Sink::new(spec.run_id.clone(), tx);
        let runner = self.clone();
        self.tasks.spawn(async move { runner.execute(spec, sink, control_rx).await });
        Ok(ReceiverStream::new(rx))
    }

    async fn execute(
        self: Arc<Self>,
        spec: RunSpec,
        mut sink: Sink,
        control: mpsc::Receiver<Control>,
    ) {
        let run_id = spec.run_id.clone();
        // File system work (TMPDIR, state dirs, the Landlock ruleset) stays off the
        // async workers; the fork itself happens on a worker (see `sandbox::command`).
        let preparer = self.clone();
        let prepared = tokio::task::spawn_blocking(move || preparer.prepare(spec))
            .await
            .unwrap_or_else(|error| {
                Err(RunError::fatal(ErrorKind::Internal, format!("prepare the run: {error}")))
            });
        match prepared {
            Ok(prepared) => {
                let hooks = Arc::new(RunHooks { runner: self.clone(), run_id: run_id.clone() });
                supervise::run(
                    prepared,
                    self.spawner.clone(),
                    sink,
                    control,
                    self.registry.clone(),
                    hooks,
                )
                .await;
            }
            Err(error) => {
                self.release(&run_id);
                sink.fail(error).await;
            }
        }
        self.release(&run_id);
        if !self.fencing.available {
            self.kill_strays();
        }
    }

    /// Without namespaces: kills the orphans that left every live run's group.
    fn kill_strays(&self) {
        let live: std::collections::HashSet<u32> =
            self.lock_runs().values().map(|r| r.pid.load(Ordering::Relaxed)).collect();
        let killed = namespace::members::kill_strays(&live);
        if killed > 0 {
            tracing::info!(killed, "killed orphans of ended runs");
        }
    }

    /// Forgets a run and its session locks (idempotent).
    fn release(&self, run_id: &str) {
        self.lock_runs().remove(run_id);
        self.lock_sessions().retain(|_, holder| holder != run_id);
    }

    /// The sub-agents whose runs this runner takes, with their workspaces.
    pub fn set_agents(&self, agents: HashMap<String, PathBuf>) {
        *self.agents.write().unwrap_or_else(std::sync::PoisonError::into_inner) = agents;
    }

    /// The home as runs of `agent` see it: its workspace (`None`: no such agent).
    fn home_of(&self, agent: &str) -> Option<DuctorHome> {
        if agent == ductor_daemon::config::MAIN_AGENT {
            return Some(self.home.clone());
        }
        let agents = self.agents.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        agents.get(agent).map(|workspace| self.home.focused(agent, workspace.clone()))
    }

    /// Resolves binary, argv, environment and sandbox policy of a run.
    fn prepare(&self, mut spec: RunSpec) -> Result<Prepared, RunError> {
        self.support.admit().map_err(|why| RunError::fatal(ErrorKind::SpawnFailed, why))?;
        let granted = &self.config.extra_writable_paths;
        let home = self.home_of(&spec.agent).ok_or_else(|| {
            let why = format!(
                "no agent {:?} in [[agents]] (restart the runner after adding it)",
                spec.agent
            );
            RunError::fatal(ErrorKind::SpawnFailed, why)
        })?;
        spec.working_dir = crate::workdir::confine(&spec.working_dir, &home, granted)
            .map_err(|e| RunError::fatal(ErrorKind::SpawnFailed, e))?;
        let providers = self.providers();
        let settings = spec.provider.settings(&providers);
        let binary_name = settings.binary_or(spec.provider.as_str());
        let path_var = settings.env.get("PATH").or_else(|| self.parent_env.get("PATH"));
        let binary = sandbox::resolve_binary(&binary_name, path_var.map(String::as_str))
            .ok_or_else(|| {
                RunError::fatal(
                    ErrorKind::SpawnFailed,
                    format!("{binary_name}: not found or not executable"),
                )
            })?;
        let mode =
            spec.permission.unwrap_or_else(|| PermissionMode::from(self.config.permission_mode));
        let tmpdir = self.tmp_root().join(&spec.run_id);
        create_private_dir(&tmpdir).map_err(|e| {
            RunError::fatal(ErrorKind::Internal, format!("create {}: {e}", tmpdir.display()))
        })?;
        let invocation =
            provider::invocation(&spec, mode, &settings.args, self.support.landlock, &tmpdir);
        let stdin = write_inputs(&tmpdir, &invocation)
            .map_err(|e| RunError::fatal(ErrorKind::Internal, format!("write the prompt: {e}")))?;
        let parser = provider::Parser::for_run(&spec, &invocation);
        let stdin = if invocation.stream {
            let _ = std::fs::remove_file(&stdin);
            supervise::Stdin::Stream(invocation.stdin.clone())
        } else {
            supervise::Stdin::Prompt(stdin)
        };
        let mut env = sandbox::child_env(
            spec.provider,
            &self.parent_env,
            &[&invocation.env, &settings.env, &spec.extra_env],
            Some(&tmpdir),
        );
        let state = self.state_home(&spec, settings.state, &mut env)?;
        let ruleset = if self.support.landlock {
            let policy = sandbox::policy(&PolicyInput {
                working_dir: &spec.working_dir,
                binary: &binary,
                env: &env,
                state: &state,
                tmpdir: &tmpdir,
                extra_writable: &self.config.extra_writable_paths,
                extra_readable: &self.config.extra_readable_paths,
                excluded: &[self.home.root().to_path_buf(), self.home.run_dir().to_path_buf()],
                sockets: &[self.home.socket(ServiceName::Core)],
            });
            if let Some(root) = sandbox::writable_root_holding(&binary, &policy.writable) {
                let why = format!(
                    "{} lies in {}, which the agent can write; refused",
                    binary.display(),
                    root.display()
                );
                return Err(RunError::fatal(ErrorKind::SpawnFailed, why));
            }
            let fd = sandbox::landlock_ruleset(&policy)
                .map_err(|e| RunError::fatal(ErrorKind::SpawnFailed, e))?;
            Some(fd)
        } else {
            None
        };
        let fence = self.fence(&spec, &tmpdir, &state)?;
        let total =
            spec.total_timeout.unwrap_or(Duration::from_millis(self.config.total_timeout_ms));
        let idle = spec.idle_timeout.unwrap_or(Duration::from_millis(self.config.idle_timeout_ms));
        Ok(Prepared {
            cli_version: self.versions.cached(&binary).unwrap_or_default(),
            binary,
            args: invocation.args,
            env,
            tmpdir,
            stdin,
            parser,
            ruleset,
            sandboxed: self.support.landlock,
            fence,
            limits: Limits {
                max_processes: self.config.max_processes,
                max_file_bytes: self.config.max_file_size_mb.saturating_mul(1024 * 1024),
            },
            max_line_bytes: self.config.max_line_bytes,
            stop_grace: Duration::from_millis(self.config.stop_grace_ms),
            total_timeout: total,
            idle_timeout: idle,
            spec,
        })
    }

    /// The CLI's home for this run (review H6): a ductor-owned one, which
    /// `env` is pointed at, or the operator's own. Returns what the run may
    /// write of it.
    fn state_home(
        &self,
        spec: &RunSpec,
        mode: StateHome,
        env: &mut BTreeMap<String, String>,
    ) -> Result<Vec<PathBuf>, RunError> {
        let Some(bucket) = homes::bucket(mode, &spec.labels) else {
            let mut writable = sandbox::prepare_state(spec.provider, env);
            writable.extend(self.skills_grant(&spec.working_dir));
            return Ok(writable);
        };
        let home = homes::prepare(spec.provider, &self.home.provider_homes(), &bucket, env)
            .map_err(|e| {
                RunError::fatal(ErrorKind::SpawnFailed, format!("prepare the CLI's home: {e}"))
            })?;
        if home.created
            && let Some(skills) = &self.skills
        {
            skills.link_new_home(spec.provider, &home.dir);
        }
        env.extend(home.env);
        let mut writable = home.writable;
        writable.extend(self.skills_grant(&spec.working_dir));
        Ok(writable)
    }

    /// The workspace, where chat runs work unless told otherwise.
    pub fn workspace(&self) -> PathBuf {
        self.home.workspace()
    }

    /// Makes an imported session resumable (`ductorctl import`): its
    /// transcript, found in the operator's CLI home, copied into the home
    /// runs with `labels` get (made now if it is new, like a first run).
    pub fn import_transcript(
        &self,
        request: &crate::transcripts::Request,
        labels: &BTreeMap<String, String>,
    ) -> Result<crate::transcripts::Outcome, RunnerError> {
        let provider = request.provider;
        let operator = homes::operator_dir(provider, &self.parent_env);
        let mode = provider.settings(&self.providers()).state;
        let home = match homes::bucket(mode, labels) {
            None => None,
            Some(_) if request.dry_run => None,
            Some(bucket) => {
                let home = homes::prepare(
                    provider,
                    &self.home.provider_homes(),
                    &bucket,
                    &self.parent_env,
                )
                .map_err(|e| RunnerError::Import(format!("prepare the home: {e}")))?;
                if home.created
                    && let Some(skills) = &self.skills
                {
                    skills.link_new_home(provider, &home.dir);
                }
                let tree = ductor_daemon::safe_fs::Tree::root(&home.dir)
                    .map_err(|e| RunnerError::Import(format!("open the home: {e}")))?;
                Some(tree)
            }
        };
        let outcome = crate::transcripts::import(request, operator.as_deref(), home.as_ref())
            .map_err(|e| RunnerError::Import(e.to_string()))?;
        tracing::info!(
            provider = provider.as_str(),
            found = outcome.found,
            copied = outcome.copied,
            "imported a session transcript"
        );
        Ok(outcome)
    }

    /// `workspace/skills`, which the home's skill links point into, for a
    /// run whose working directory does not already hold it (a cron job's
    /// or task's folder).
    fn skills_grant(&self, working_dir: &std::path::Path) -> Option<PathBuf> {
        let dir = self.skills.as_ref()?.skills_dir();
        // Only runs in the main workspace share its skills (a sub-agent's run
        // must not get write access to the main agent's tree).
        let main = self.home.workspace();
        if !working_dir.starts_with(main.canonicalize().unwrap_or(main)) {
            return None;
        }
        (!dir.starts_with(working_dir) && dir.is_dir()).then_some(dir)
    }

    /// The run's socket fence: what it must keep (its working directory,
    /// TMPDIR, `$DUCTOR_HOME`, the run directory, granted paths, the CLI's
    /// state, `core.sock`).
    fn fence(
        &self,
        spec: &RunSpec,
        tmpdir: &std::path::Path,
        state: &[PathBuf],
    ) -> Result<Option<Arc<namespace::Fence>>, RunError> {
        if !self.fencing.available {
            return Ok(None);
        }
        let granted =
            self.config.extra_writable_paths.iter().chain(&self.config.extra_readable_paths);
        let mut protected = vec![
            spec.working_dir.clone(),
            tmpdir.to_path_buf(),
            self.home.root().to_path_buf(),
            self.home.run_dir().to_path_buf(),
        ];
        protected.extend(granted.map(PathBuf::from));
        protected.extend(state.iter().cloned());
        let keep = vec![self.home.socket(ServiceName::Core)];
        let uid = nix::unistd::geteuid().as_raw();
        let input = namespace::masks::default_input(uid, &self.parent_env, protected, keep);
        let plan = namespace::masks::plan(&input);
        if plan.truncated {
            tracing::warn!(run_id = %spec.run_id, "the socket scan hit its bound; some sockets stay reachable");
        }
        let fence =
            namespace::Fence::new(plan).map_err(|e| RunError::fatal(ErrorKind::SpawnFailed, e))?;
        Ok(Some(Arc::new(fence)))
    }

    /// Sends a signal to a run; false when there is no such run.
    pub fn signal(&self, run_id: &str, control: Control) -> bool {
        let entry = self.lock_runs().get(run_id).cloned();
        match entry {
            Some(entry) => {
                if let Err(error) = entry.control.try_send(control) {
                    tracing::warn!(run_id, control = ?error.into_inner(), "signal queue full or run ending");
                }
                true
            }
            None => false,
        }
    }

    /// Hands `response` to a live run; false when there is no such run or
    /// its CLI did not take it.
    pub async fn respond(&self, run_id: &str, response: supervise::Response) -> bool {
        let Some(entry) = self.lock_runs().get(run_id).cloned() else { return false };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if entry.control.send(Control::Respond { response, reply }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// The live runs whose labels contain all of `filter`.
    pub fn list(&self, filter: &HashMap<String, String>) -> Vec<pb::RunInfo> {
        let runs = self.lock_runs();
        let mut list: Vec<pb::RunInfo> = runs
            .iter()
            .filter(|(_, e)| filter.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            .map(|(id, e)| pb::RunInfo {
                run_id: id.clone(),
                provider: e.provider.as_str().to_owned(),
                model: e.model.clone(),
                pid: e.pid.load(Ordering::Relaxed),
                started_at_ms: e.started_at_ms,
                labels: e.labels.clone().into_iter().collect(),
                session_id: e.session.locked().clone(),
            })
            .collect();
        list.sort_by_key(|info| info.started_at_ms);
        list
    }

    /// Installed CLIs, versions, auth hints, models; and the sandbox mode.
    pub async fn probe(&self) -> pb::ProbeResponse {
        let fence = probe::Fence::of(&self.home, &self.config, self.support.landlock);
        let mut answer = probe::probe(
            &self.providers(),
            &self.parent_env,
            &self.versions,
            &self.support,
            &fence,
        )
        .await;
        answer.skill_conflicts = self.skills.as_ref().map(|s| s.conflicts()).unwrap_or_default();
        answer
    }
}

/// A 0700 directory (fresh).
fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.exists() {
        std::fs::remove_dir_all(path)?;
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Writes the invocation's files and its prompt (0600, in the run's fresh
/// private directory) and returns the prompt file, for the CLI's stdin.
fn write_inputs(dir: &std::path::Path, invocation: &Invocation) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let prompt = dir.join("prompt.txt");
    let files = invocation.files.iter().map(|(p, c)| (p.as_path(), c.as_str()));
    for (path, contents) in files.chain([(prompt.as_path(), invocation.stdin.as_str())]) {
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(contents.as_bytes())?;
    }
    Ok(prompt)
}

/// A stream holding just an error and `exited`.
fn failed_stream(run_id: String, error: RunError) -> EventStream {
    let (tx, rx) = mpsc::channel(2);
    let mut sink = Sink::new(run_id, tx);
    tokio::spawn(async move { sink.fail(error).await });
    ReceiverStream::new(rx)
}

struct RunHooks {
    runner: Arc<Runner>,
    run_id: String,
}

impl Hooks for RunHooks {
    fn finished(&self) {
        self.runner.release(&self.run_id);
    }

    fn started(&self, pid: u32) {
        if let Some(entry) = self.runner.lock_runs().get(&self.run_id) {
            entry.pid.store(pid, Ordering::Relaxed);
        }
    }

    fn session(&self, session_id: &str) {
        if session_id.is_empty() {
            return;
        }
        let entry = self.runner.lock_runs().get(&self.run_id).cloned();
        if let Some(entry) = entry {
            entry.session.locked().clone_from(&session_id.to_owned());
            self.runner
                .lock_sessions()
                .entry((entry.provider, session_id.to_owned()))
                .or_insert_with(|| self.run_id.clone());
        }
    }
}

/// The tonic face of [`Runner`].
#[derive(Debug, Clone)]
pub struct RunnerService {
    runner: Arc<Runner>,
    media: Option<Arc<crate::media::Media>>,
    restart: Option<ductor_daemon::daemon::RestartSwitch>,
}

impl RunnerService {
    /// Wraps `runner`.
    pub fn new(runner: Arc<Runner>) -> Self {
        Self { runner, media: None, restart: None }
    }

    /// Serves `Restart` by flipping `restart` (without it, `Restart` is refused).
    pub fn with_restart(mut self, restart: ductor_daemon::daemon::RestartSwitch) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Serves `PrepareMedia` with `media` (without it, files pass unchanged).
    pub fn with_media(mut self, media: Arc<crate::media::Media>) -> Self {
        self.media = Some(media);
        self
    }

    /// The tonic server.
    pub fn into_server(self) -> pb::runner_server::RunnerServer<Self> {
        pb::runner_server::RunnerServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::runner_server::Runner for RunnerService {
    type StartRunStream = EventStream;

    async fn start_run(
        &self,
        request: tonic::Request<pb::RunSpec>,
    ) -> Result<tonic::Response<Self::StartRunStream>, tonic::Status> {
        let spec = RunSpec::try_from(request.into_inner())?;
        tracing::info!(run_id = %spec.run_id, agent = spec.agent, provider = spec.provider.as_str(), resume = spec.resume.is_some(), interactive = spec.interactive, "starting a run");
        Ok(tonic::Response::new(self.runner.start(spec)?))
    }

    async fn signal(
        &self,
        request: tonic::Request<pb::SignalRequest>,
    ) -> Result<tonic::Response<pb::SignalResponse>, tonic::Status> {
        let request = request.into_inner();
        let control = match pb::SignalKind::try_from(request.kind) {
            Ok(pb::SignalKind::Interrupt) => Control::Interrupt,
            Ok(pb::SignalKind::Stop) => Control::Stop,
            Ok(pb::SignalKind::Kill) => Control::Kill,
            _ => {
                return Err(tonic::Status::invalid_argument(format!(
                    "unknown signal kind {}",
                    request.kind
                )));
            }
        };
        let found = self.runner.signal(&request.run_id, control);
        Ok(tonic::Response::new(pb::SignalResponse { found }))
    }

    async fn list_runs(
        &self,
        request: tonic::Request<pb::ListRunsRequest>,
    ) -> Result<tonic::Response<pb::ListRunsResponse>, tonic::Status> {
        let runs = self.runner.list(&request.into_inner().label_filter);
        Ok(tonic::Response::new(pb::ListRunsResponse { runs }))
    }

    async fn respond(
        &self,
        request: tonic::Request<pb::RespondRequest>,
    ) -> Result<tonic::Response<pb::RespondResponse>, tonic::Status> {
        use pb::respond_request::What;
        let request = request.into_inner();
        let response = match request.what {
            Some(What::Approval(answer)) => supervise::Response::Approval {
                request_id: answer.request_id,
                allow: answer.allow,
                message: answer.message,
            },
            Some(What::Steer(steer)) if !steer.text.trim().is_empty() => {
                supervise::Response::Steer(steer.text)
            }
            _ => return Err(tonic::Status::invalid_argument("an approval answer or a steer text")),
        };
        let delivered = self.runner.respond(&request.run_id, response).await;
        tracing::info!(run_id = %request.run_id, delivered, "response to a run");
        Ok(tonic::Response::new(pb::RespondResponse { delivered }))
    }

    async fn probe(
        &self,
        _request: tonic::Request<pb::ProbeRequest>,
    ) -> Result<tonic::Response<pb::ProbeResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.runner.probe().await))
    }

    async fn restart(
        &self,
        request: tonic::Request<pb::RestartRequest>,
    ) -> Result<tonic::Response<pb::RestartResponse>, tonic::Status> {
        let Some(restart) = self.restart.clone() else {
            return Err(tonic::Status::unimplemented("this runner cannot restart itself"));
        };
        let reason = request.into_inner().reason;
        let live_runs = self.runner.list(&HashMap::new()).len() as u32;
        tracing::info!(reason, live_runs, "restart asked");
        // Answer first: shutdown stops accepting calls.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            restart.ask(&reason);
        });
        Ok(tonic::Response::new(pb::RestartResponse { pid: std::process::id(), live_runs }))
    }

    async fn import_transcript(
        &self,
        request: tonic::Request<pb::ImportTranscriptRequest>,
    ) -> Result<tonic::Response<pb::ImportTranscriptResponse>, tonic::Status> {
        let request = request.into_inner();
        let provider = Provider::parse(&request.provider).ok_or_else(|| {
            tonic::Status::invalid_argument(format!("unknown provider {:?}", request.provider))
        })?;
        let import = crate::transcripts::Request {
            provider,
            session_id: request.session_id,
            source_cwd: request.source_cwd,
            working_dir: if request.working_dir.is_empty() {
                self.runner.workspace()
            } else {
                PathBuf::from(request.working_dir)
            },
            dry_run: request.dry_run,
        };
        let outcome =
            self.runner.import_transcript(&import, &request.labels.into_iter().collect())?;
        let shown = |p: Option<PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        Ok(tonic::Response::new(pb::ImportTranscriptResponse {
            found: outcome.found,
            copied: outcome.copied,
            source_path: shown(outcome.source),
            target_path: shown(outcome.target),
            reason: outcome.reason,
        }))
    }

    async fn prepare_media(
        &self,
        request: tonic::Request<pb::PrepareMediaRequest>,
    ) -> Result<tonic::Response<pb::PrepareMediaResponse>, tonic::Status> {
        let request = request.into_inner();
        let Some(media) = &self.media else {
            return Ok(tonic::Response::new(pb::PrepareMediaResponse {
                path: request.path,
                mime_type: request.mime_type,
                ..Default::default()
            }));
        };
        let request = crate::media::Request {
            path: request.path,
            mime: request.mime_type,
            kind: request.media_kind,
            label: request.label,
        };
        let prepared = media
            .prepare(request)
            .await
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        Ok(tonic::Response::new(pb::PrepareMediaResponse {
            path: prepared.path,
            mime_type: prepared.mime,
            transcript: prepared.transcript,
            transcribed_by: prepared.transcribed_by,
            original_width: prepared.original.0,
            original_height: prepared.original.1,
            width: prepared.size.0,
            height: prepared.size.1,
            notes: prepared.notes,
            backend_micros: prepared.backend.as_micros() as u64,
            own_micros: prepared.own.as_micros() as u64,
        }))
    }
}
