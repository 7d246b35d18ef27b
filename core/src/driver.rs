//! The driver: one task owns the [`Machine`], feeds it events in arrival
//! order, and executes its effects: outbox sends, SQLite writes (awaited, so a
//! journal or session update is durable before the next event is handled),
//! runner calls (spawned, their results come back as events).
//!
//! [`CoreHandle`] is the small internal API for background work (automation):
//!
//! - [`CoreHandle::run_oneshot`]: a run that is not a chat session (cron,
//!   webhook jobs); its result is returned, nothing is sent anywhere.
//! - [`CoreHandle::deliver`]: a durable outbound action to a chat through the
//!   outbox (kept until the gateway acknowledges it).
//! - [`CoreHandle::inject`]: a prompt run in a chat's live session under its
//!   lock (queued behind a running turn), answered like a user message unless
//!   the options make it silent or quiet.
//!
//! Chat commands whose answer lives in automation's tables (`/cron`, the
//! failures after `/status`) come out of the machine as
//! [`Effect::Automation`]; the driver awaits automation's answer (bounded by
//! [`AUTOMATION_ANSWER_TIMEOUT`]) before the next event, so answers arrive in
//! the order the commands did. Automation must therefore never wait on the
//! driver while answering.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ductor_daemon::sync::LockedRw as _;
use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::background::{BackgroundReply, BackgroundRequest};
use crate::machine::{
    AutomationRequest, Effect, Env, Event, ImportOutcome, InjectOptions, Machine, SessionImport,
    TurnOutcome,
};
use crate::model::{OutKind, Outbound, SessionKey};
use crate::outbox::Outbox;
use crate::runner::{EventSink, OneshotResult, OneshotSpec, RunnerLink};
use crate::store::{self, Store, StoreError};

/// What the driver task receives.
#[derive(Debug)]
pub enum Input {
    /// An orchestrator event.
    Event(Event),
    /// An injected prompt with a reply channel.
    Inject {
        /// The chat.
        key: SessionKey,
        /// The prompt.
        prompt: String,
        /// Delivery options.
        options: InjectOptions,
        /// Gets the outcome when the turn ends.
        reply: oneshot::Sender<TurnOutcome>,
    },
    /// Imported sessions of a chat (`ductorctl import`).
    Import {
        /// What to import.
        import: SessionImport,
        /// Gets what was done, once it is saved.
        reply: oneshot::Sender<ImportOutcome>,
    },
}

/// Counters for `Describe`, updated after every event.
#[derive(Debug, Default)]
pub struct Stats {
    /// Running turns.
    pub active_turns: AtomicUsize,
    /// Queued messages.
    pub queued: AtomicUsize,
    /// The runner answered its last probe.
    pub runner_up: std::sync::atomic::AtomicBool,
}

/// Longest wait for the runner to prepare a received file; the runner bounds
/// each backend itself (`[transcription].timeout_seconds`), this only covers
/// a runner that stopped answering.
pub const MEDIA_PREPARE_TIMEOUT: Duration = Duration::from_secs(600);

/// A flush of a session still held by its last run is retried this often…
const FLUSH_ATTEMPTS: u32 = 20;
/// …this far apart.
const FLUSH_RETRY: Duration = Duration::from_millis(500);

/// Longest wait for automation's answer to a chat command.
pub const AUTOMATION_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Automation's side of the chat commands it answers (`/cron`, `/status`).
pub trait AutomationAnswers: Send + Sync + std::fmt::Debug {
    /// The notice text answering `request`.
    /// `chat` asked; `admin` = it is in `[agent].admin_chats` (else it sees
    /// and manages only its own jobs and hooks).
    fn answer(
        &self,
        request: AutomationRequest,
        chat: SessionKey,
        admin: bool,
    ) -> Pin<Box<dyn Future<Output = String> + Send>>;
}

/// Background work's side of the chat commands it answers.
pub trait BackgroundAnswers: Send + Sync + std::fmt::Debug {
    /// The answer to `request` from `key`'s chat.
    fn answer(
        &self,
        key: SessionKey,
        request: BackgroundRequest,
    ) -> Pin<Box<dyn Future<Output = BackgroundReply> + Send>>;
    /// Lines for `/status` about `key`'s chat.
    fn status_lines(&self, key: &SessionKey) -> Vec<String>;
}

/// The agents' side of `/agents` and `/agent_start|stop|restart`.
pub trait AgentsAnswers: Send + Sync + std::fmt::Debug {
    /// The notice text answering `command` from `key`'s (admin) chat.
    fn answer(
        &self,
        key: SessionKey,
        command: crate::machine::AgentCommand,
    ) -> Pin<Box<dyn Future<Output = String> + Send>>;
}

/// Where the agents' control plugs in.
type AgentsSlot = Arc<OnceLock<Arc<dyn AgentsAnswers>>>;

/// Where automation plugs in once it has started (after the driver).
type AnswersSlot = Arc<OnceLock<Arc<dyn AutomationAnswers>>>;
/// Where background work plugs in.
type BackgroundSlot = Arc<OnceLock<Arc<dyn BackgroundAnswers>>>;

/// The core is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("core is shutting down")]
pub struct CoreGone;

/// `[agent]` defaults of one-shot runs (automation, memory flushes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OneshotDefaults {
    /// Provider of a run that names none.
    pub provider: String,
    /// Its model (empty = the provider's default).
    pub model: String,
    /// Timeout of a run that sets none.
    pub timeout_ms: u64,
    /// Sub-agents' own defaults, for their runs that name no provider.
    pub agents: HashMap<String, crate::machine::AgentDefaults>,
}

/// The defaults, shared by the handle's clones and the driver (a reload of
/// `config.toml` replaces them).
type SharedDefaults = Arc<std::sync::RwLock<OneshotDefaults>>;

/// Background work's way into the orchestrator. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    inputs: mpsc::UnboundedSender<Input>,
    outbox: Arc<Outbox>,
    runner: RunnerLink,
    defaults: SharedDefaults,
    answers: AnswersSlot,
    background: BackgroundSlot,
    agents: AgentsSlot,
}

impl CoreHandle {
    /// Lets the agents' control answer `/agents` and `/agent_*` (once).
    pub fn plug_agents(&self, agents: Arc<dyn AgentsAnswers>) {
        let _ = self.agents.set(agents);
    }

    /// Lets background work answer `/session`, `/sessions`, `/tasks` and
    /// add to `/status` (once; later calls are ignored).
    pub fn plug_background(&self, background: Arc<dyn BackgroundAnswers>) {
        let _ = self.background.set(background);
    }

    /// Lets automation answer `/cron` and add to `/status` (once; later calls
    /// are ignored).
    pub fn plug_automation(&self, answers: Arc<dyn AutomationAnswers>) {
        let _ = self.answers.set(answers);
    }

    /// Runs a one-shot prompt (not a chat session) and returns its outcome.
    /// Empty provider/model/timeout take the `[agent]` defaults; the working
    /// directory defaults to the workspace.
    pub async fn run_oneshot(&self, spec: OneshotSpec) -> OneshotResult {
        let spec = self.with_defaults(spec);
        self.runner.run_oneshot(spec, uuid::Uuid::now_v7().to_string()).await
    }

    /// [`CoreHandle::run_oneshot`] that answers at the result; the receiver
    /// resolves when the run has exited.
    pub async fn run_oneshot_until_result(
        &self,
        spec: OneshotSpec,
    ) -> (OneshotResult, oneshot::Receiver<()>) {
        let spec = self.with_defaults(spec);
        self.runner.run_oneshot_until_result(spec, uuid::Uuid::now_v7().to_string()).await
    }

    fn with_defaults(&self, mut spec: OneshotSpec) -> OneshotSpec {
        let defaults = self.defaults.read_locked().clone();
        if spec.provider.is_empty() {
            let (provider, model) = match defaults.agents.get(&spec.agent) {
                Some(agent) => (agent.provider.clone(), agent.model.clone()),
                None => (defaults.provider, defaults.model),
            };
            spec.provider = provider;
            if spec.model.is_empty() {
                spec.model = model;
            }
        }
        if spec.timeout_ms == 0 {
            spec.timeout_ms = defaults.timeout_ms;
        }
        spec
    }

    /// Sends a durable action to a chat (kept until the gateway acknowledges it).
    pub async fn deliver(&self, key: SessionKey, kind: OutKind) -> Result<u64, StoreError> {
        self.outbox
            .send(Outbound { key, turn_id: String::new(), reply_to: String::new(), kind })
            .await
    }

    /// Runs `prompt` in the chat's session under its lock and waits for the
    /// turn to end.
    pub async fn inject(
        &self,
        key: SessionKey,
        prompt: String,
        options: InjectOptions,
    ) -> Result<TurnOutcome, CoreGone> {
        let (reply, wait) = oneshot::channel();
        self.inputs.send(Input::Inject { key, prompt, options, reply }).map_err(|_| CoreGone)?;
        wait.await.map_err(|_| CoreGone)
    }

    /// Merges imported sessions into a chat's record (see
    /// [`crate::machine::SessionImport`]); answers once it is saved.
    pub async fn import_session(&self, import: SessionImport) -> Result<ImportOutcome, CoreGone> {
        let (reply, wait) = oneshot::channel();
        self.inputs.send(Input::Import { import, reply }).map_err(|_| CoreGone)?;
        wait.await.map_err(|_| CoreGone)
    }

    /// Feeds an event to the orchestrator (used by the gRPC service).
    pub fn event(&self, event: Event) -> Result<(), CoreGone> {
        self.inputs.send(Input::Event(event)).map_err(|_| CoreGone)
    }

    /// A reloaded `config.toml`: the machine's new configuration (for the
    /// next event), the one-shot defaults and the runs' default permission.
    pub fn reconfigure(
        &self,
        machine: crate::machine::MachineConfig,
        defaults: OneshotDefaults,
        permission: ductor_proto::pb::PermissionMode,
    ) -> Result<(), CoreGone> {
        *self.defaults.write_locked() = defaults;
        self.runner.set_permission(permission);
        self.event(Event::Reconfigure(Box::new(machine)))
    }

    /// The outbox (used by the gRPC service).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

/// The driver task's state.
pub struct Driver<E: Env> {
    machine: Machine<E>,
    store: Store,
    outbox: Arc<Outbox>,
    runner: RunnerLink,
    sink: EventSink,
    probe: Arc<Notify>,
    injects: HashMap<u64, oneshot::Sender<TurnOutcome>>,
    next_inject: u64,
    imports: HashMap<u64, oneshot::Sender<ImportOutcome>>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    answers: AnswersSlot,
    background: BackgroundSlot,
    agents: AgentsSlot,
    /// One-shot defaults; a flush run's longest time is their timeout.
    defaults: SharedDefaults,
    /// Where `/restart` goes (the service's main task), when it can.
    restart: Option<mpsc::UnboundedSender<crate::restart::Request>>,
}

/// What [`Driver::new`] needs.
pub struct DriverParts<E: Env> {
    /// The orchestrator.
    pub machine: Machine<E>,
    /// The database.
    pub store: Store,
    /// The outbox.
    pub outbox: Arc<Outbox>,
    /// The runner.
    pub runner: RunnerLink,
    /// Woken to re-probe the runner.
    pub probe: Arc<Notify>,
    /// Shared counters.
    pub stats: Arc<Stats>,
    /// Stops runs and the loop.
    pub shutdown: CancellationToken,
    /// `[agent]` defaults for one-shot runs.
    pub defaults: OneshotDefaults,
    /// Gets each `/restart`; `None` refuses restarts.
    pub restart: Option<mpsc::UnboundedSender<crate::restart::Request>>,
}

impl<E: Env + 'static> Driver<E> {
    /// Builds the driver, its input queue and the handle.
    pub fn new(parts: DriverParts<E>) -> (Self, mpsc::UnboundedReceiver<Input>, CoreHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let events = tx.clone();
        let sink: EventSink = Arc::new(move |event| {
            let _ = events.send(Input::Event(event));
        });
        let answers = AnswersSlot::default();
        let background = BackgroundSlot::default();
        let agents = AgentsSlot::default();
        let defaults: SharedDefaults = Arc::new(std::sync::RwLock::new(parts.defaults));
        let handle = CoreHandle {
            inputs: tx,
            outbox: parts.outbox.clone(),
            runner: parts.runner.clone(),
            defaults: defaults.clone(),
            answers: answers.clone(),
            background: background.clone(),
            agents: agents.clone(),
        };
        let driver = Self {
            machine: parts.machine,
            store: parts.store,
            outbox: parts.outbox,
            runner: parts.runner,
            sink,
            probe: parts.probe,
            injects: HashMap::new(),
            next_inject: 0,
            imports: HashMap::new(),
            stats: parts.stats,
            shutdown: parts.shutdown,
            answers,
            background,
            agents,
            defaults,
            restart: parts.restart,
        };
        (driver, rx, handle)
    }

    /// The sink runner events and health probes report to.
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// Runs until shutdown or until every sender is gone.
    pub async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<Input>) {
        loop {
            let input = tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => input,
                    None => return,
                },
                () = self.shutdown.cancelled() => return,
            };
            let event = match input {
                Input::Event(event) => event,
                Input::Inject { key, prompt, options, reply } => {
                    self.next_inject += 1;
                    self.injects.insert(self.next_inject, reply);
                    Event::Inject { inject_id: self.next_inject, key, prompt, options }
                }
                Input::Import { import, reply } => {
                    self.next_inject += 1;
                    self.imports.insert(self.next_inject, reply);
                    Event::ImportSession { import_id: self.next_inject, import }
                }
            };
            if let Event::RunnerHealth(up) = &event {
                self.stats.runner_up.store(*up, Ordering::Relaxed);
            }
            let effects = self.machine.handle(event, Timestamp::now());
            for effect in effects {
                self.execute(effect).await;
            }
            self.stats.active_turns.store(self.machine.active_turns(), Ordering::Relaxed);
            self.stats.queued.store(self.machine.queued(), Ordering::Relaxed);
        }
    }

    /// `/status` text followed by what runs in the chat's background.
    fn with_background_status(&self, key: &SessionKey, mut text: String) -> String {
        if let Some(background) = self.background.get() {
            for line in background.status_lines(key) {
                text.push('\n');
                text.push_str(&line);
            }
        }
        text
    }

    /// Background work's answer, as a notice or a menu.
    async fn background_answer(&self, key: SessionKey, request: BackgroundRequest) -> OutKind {
        let Some(background) = self.background.get() else {
            let text = "Background work is not running yet.".to_owned();
            return OutKind::Notice { text, notify: false };
        };
        let reply =
            tokio::time::timeout(AUTOMATION_ANSWER_TIMEOUT, background.answer(key, request))
                .await
                .unwrap_or_else(|_| {
                    BackgroundReply::notice("⚠️ Background work did not answer in time.")
                });
        match reply.selector {
            Some(selector_id) => {
                OutKind::Selector { selector_id, text: reply.text, buttons: reply.buttons }
            }
            None => OutKind::Notice { text: reply.text, notify: false },
        }
    }

    /// Automation's answer to a chat command, or what can be said without it.
    async fn automation_answer(
        &self,
        request: AutomationRequest,
        chat: SessionKey,
        admin: bool,
    ) -> String {
        let Some(answers) = self.answers.get() else {
            return match request {
                AutomationRequest::Status(text) => text,
                AutomationRequest::Cron(_) => "Automation is not running yet.".to_owned(),
            };
        };
        let fallback = match &request {
            AutomationRequest::Status(text) => format!("{text}\n⚠️ Automation did not answer."),
            AutomationRequest::Cron(_) => "⚠️ Automation did not answer in time.".to_owned(),
        };
        tokio::time::timeout(AUTOMATION_ANSWER_TIMEOUT, answers.answer(request, chat, admin))
            .await
            .unwrap_or(fallback)
    }

    /// Asks the runner to prepare `media`; whatever happens, the turn gets
    /// an answer (the file as it is, with a note, when the runner fails).
    fn prepare_media(&self, key: SessionKey, turn_id: String, media: crate::model::Media) {
        let runner = self.runner.clone();
        let sink = self.sink.clone();
        let shutdown = self.shutdown.child_token();
        tokio::spawn(async move {
            let label = key.storage_key();
            let asked =
                tokio::time::timeout(MEDIA_PREPARE_TIMEOUT, runner.prepare_media(&media, &label));
            let answer = tokio::select! {
                answer = asked => answer,
                () = shutdown.cancelled() => return,
            };
            let prepared = match answer {
                Ok(Ok(prepared)) => prepared,
                Ok(Err(status)) => {
                    tracing::warn!(session = %key, error = status.message(), "failed to prepare a received file");
                    as_received(
                        &media,
                        format!("ductor could not prepare the file: {}", status.message()),
                    )
                }
                Err(_) => as_received(
                    &media,
                    "ductor's file preparation did not finish in time".to_owned(),
                ),
            };
            sink(Event::MediaPrepared { key, turn_id, prepared });
        });
    }

    /// Resumes a session about to be reset with the flush prompt, as a
    /// one-shot run in the chat's own CLI home; its reply goes nowhere.
    fn flush_memory(&self, key: SessionKey, provider: String, model: String, session_id: String) {
        let runner = self.runner.clone();
        let timeout_ms = self.defaults.read_locked().timeout_ms;
        let spec = OneshotSpec {
            provider,
            model,
            prompt: crate::machine::FLUSH_PROMPT.to_owned(),
            resume_session_id: session_id,
            labels: vec![
                ("transport".into(), key.transport.clone()),
                ("chat_id".into(), key.chat_id.clone()),
                ("topic_id".into(), key.topic_id.clone()),
                ("kind".into(), "memory_flush".into()),
                ("session_key".into(), key.storage_key()),
            ],
            timeout_ms,
            agent: key.agent().to_owned(),
            ..OneshotSpec::default()
        };
        tokio::spawn(async move {
            // The reset chat's last CLI may still be exiting (its answer went
            // out with the result line): wait for its session to be free.
            let mut result = OneshotResult::default();
            for attempt in 0..FLUSH_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(FLUSH_RETRY).await;
                }
                result = runner.run_oneshot(spec.clone(), uuid::Uuid::now_v7().to_string()).await;
                if result.error_kind != "session_busy" {
                    break;
                }
            }
            let saved = result.ok && result.text.trim() != crate::machine::FLUSH_TOKEN;
            tracing::info!(session = %key, ok = result.ok, saved, error = result.error_message, "memory flush before a reset");
        });
    }

    async fn execute(&mut self, effect: Effect) {
        let failure = match effect {
            Effect::Send(action) => {
                match &action.kind {
                    OutKind::Final(_) => {
                        tracing::debug!(turn_id = action.turn_id, "sending the final reply")
                    }
                    OutKind::Delta(_) => {
                        tracing::trace!(turn_id = action.turn_id, "sending a delta")
                    }
                    _ => {}
                }
                self.outbox.send(action).await.err().map(|e| ("send an action", e))
            }
            Effect::StartRun(request) => {
                tracing::debug!(run_id = request.run_id, "starting a run");
                self.runner.spawn_run(request, self.sink.clone(), self.shutdown.child_token());
                None
            }
            Effect::Restart { key, target } => {
                match &self.restart {
                    Some(restart) => {
                        let _ = restart.send(crate::restart::Request { key, target });
                    }
                    None => {
                        tracing::warn!(session = %key, "a restart was asked but cannot be done here")
                    }
                }
                None
            }
            Effect::MemoryFlush { key, provider, model, session_id } => {
                self.flush_memory(key, provider, model, session_id);
                None
            }
            Effect::PrepareMedia { key, turn_id, media } => {
                self.prepare_media(key, turn_id, media);
                None
            }
            Effect::Signal { run_id, kind } => {
                let runner = self.runner.clone();
                let sink = self.sink.clone();
                tokio::spawn(async move {
                    if let Err(status) = runner.signal(&run_id, kind).await {
                        tracing::warn!(run_id, error = status.message(), "failed to signal a run");
                        sink(Event::Error(format!("signal {run_id}: {}", status.message())));
                    }
                });
                None
            }
            Effect::Respond { run_id, response, steer } => {
                let runner = self.runner.clone();
                let sink = self.sink.clone();
                tokio::spawn(async move {
                    let delivered = runner.respond(&run_id, response).await;
                    if let Err(status) = &delivered {
                        tracing::warn!(
                            run_id,
                            error = status.message(),
                            "a response was not delivered"
                        );
                    }
                    if let Some((key, event_id)) = steer
                        && !matches!(delivered, Ok(true))
                    {
                        sink(Event::SteerRefused { key, event_id });
                    }
                });
                None
            }
            Effect::ApprovalTimer { approval_id, after_ms } => {
                let sink = self.sink.clone();
                let shutdown = self.shutdown.child_token();
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(after_ms)) => {
                            sink(Event::ApprovalTimeout { approval_id });
                        }
                        () = shutdown.cancelled() => {}
                    }
                });
                None
            }
            Effect::Audit(record) => {
                tracing::info!(
                    session = %record.key,
                    run_id = record.run_id,
                    tool = record.tool,
                    decision = record.decision,
                    how = record.how,
                    "approval decision"
                );
                self.store
                    .call(move |c| store::record_approval(c, &record))
                    .await
                    .err()
                    .map(|e| ("record an approval", e))
            }
            Effect::SaveSession(record) => self
                .store
                .call(move |c| store::save_session(c, &record))
                .await
                .err()
                .map(|e| ("save a session", e)),
            Effect::Journal { transport, event_id, state, turn_id } => self
                .store
                .call(move |c| store::set_inbound_state(c, &transport, &event_id, state, &turn_id))
                .await
                .err()
                .map(|e| ("update the inbound journal", e)),
            Effect::InjectDone { inject_id, outcome } => {
                if let Some(reply) = self.injects.remove(&inject_id) {
                    let _ = reply.send(outcome);
                }
                None
            }
            Effect::ImportDone { import_id, outcome } => {
                if let Some(reply) = self.imports.remove(&import_id) {
                    let _ = reply.send(outcome);
                }
                None
            }
            Effect::Probe => {
                self.probe.notify_one();
                None
            }
            Effect::Background { key, reply_to, request } => {
                let kind = self.background_answer(key.clone(), request).await;
                let reply = Outbound { key, turn_id: String::new(), reply_to, kind };
                self.outbox.send(reply).await.err().map(|e| ("answer a command", e))
            }
            Effect::Agents { key, reply_to, command } => {
                let text = match self.agents.get() {
                    Some(agents) => agents.answer(key.clone(), command).await,
                    None => "Agents are not available yet; try again in a moment.".to_owned(),
                };
                let kind = OutKind::Notice { text, notify: false };
                let notice = Outbound { key, turn_id: String::new(), reply_to, kind };
                self.outbox.send(notice).await.err().map(|e| ("answer a command", e))
            }
            Effect::Automation { key, reply_to, request, admin } => {
                let request = match request {
                    AutomationRequest::Status(text) => {
                        AutomationRequest::Status(self.with_background_status(&key, text))
                    }
                    other => other,
                };
                let text = self.automation_answer(request, key.clone(), admin).await;
                let kind = OutKind::Notice { text, notify: false };
                let notice = Outbound { key, turn_id: String::new(), reply_to, kind };
                self.outbox.send(notice).await.err().map(|e| ("answer a command", e))
            }
        };
        if let Some((action, error)) = failure {
            tracing::error!("failed to {action}: {error}");
            let _ =
                self.machine.handle(Event::Error(format!("{action}: {error}")), Timestamp::now());
        }
    }
}

/// The file as it was received, with `note`.
fn as_received(media: &crate::model::Media, note: String) -> crate::model::PreparedMedia {
    crate::model::PreparedMedia {
        path: media.path.clone(),
        mime_type: media.mime_type.clone(),
        notes: vec![note],
        ..Default::default()
    }
}
