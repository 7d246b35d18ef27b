//! Core's client of the runner: starts runs and forwards their event streams
//! into the orchestrator, signals runs, probes the provider catalog, and runs
//! one-shot jobs for automation.
//!
//! The channel is `ductor_proto::transport::connect`'s lazy one: it dials on
//! first use and again after the runner restarts. A stream that breaks before
//! its `exited` event becomes [`Event::RunLost`] (the turn is reported as
//! interrupted, never re-run); [`health_loop`] re-probes with backoff so
//! `/status` and `/model` see the runner come back.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use ductor_proto::pb::runner_client::RunnerClient;
use ductor_proto::{Channel, pb};
use tokio_util::sync::CancellationToken;

use crate::machine::Event;
use crate::model::{ProviderInfo, RunEvent, RunRequest, RunResponse, RunResult, SignalKind};
use crate::wire::{providers_from_pb, run_event_from_pb, run_spec_to_pb};

/// Where runner events go (the driver's input queue).
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A handle on the runner service.
#[derive(Clone)]
pub struct RunnerLink {
    client: RunnerClient<Channel>,
    workspace: String,
    /// Sub-agents' workspaces by name (the main agent's is `workspace`).
    agent_workspaces: Arc<std::collections::HashMap<String, String>>,
    /// `[agent].permission_mode` as a `pb::PermissionMode`, shared by every
    /// clone so a reload of `config.toml` reaches them all.
    permission: Arc<AtomicI32>,
    /// Automation: the agent credential (and core's location) for chat runs.
    agent_env: Option<crate::automation::wiring::AgentEnv>,
}

impl std::fmt::Debug for RunnerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerLink").field("workspace", &self.workspace).finish()
    }
}

/// A one-shot run for automation (not a chat session).
#[derive(Debug, Clone, Default)]
pub struct OneshotSpec {
    /// Provider; empty = `[agent].provider`.
    pub provider: String,
    /// Model; empty = provider default.
    pub model: String,
    /// Reasoning effort.
    pub effort: String,
    /// The prompt.
    pub prompt: String,
    /// Working directory (absolute); `None` = the workspace.
    pub working_dir: Option<String>,
    /// Appended to the system prompt.
    pub append_system_prompt: String,
    /// Resume this provider session (empty = new).
    pub resume_session_id: String,
    /// Labels; `kind` should say what started it ("cron", "webhook", ...).
    pub labels: Vec<(String, String)>,
    /// Extra environment.
    pub extra_env: Vec<(String, String)>,
    /// Total timeout; 0 = `[agent].turn_timeout_seconds`.
    pub timeout_ms: u64,
    /// The agent it works for (workspace, defaults); empty = `main`.
    pub agent: String,
}

/// How a one-shot run ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OneshotResult {
    /// A non-error result arrived.
    pub ok: bool,
    /// The result text (or what text streamed, when there was no result).
    pub text: String,
    /// The provider session id.
    pub session_id: String,
    /// Error kind ("timeout", "crashed", ...) when not ok.
    pub error_kind: String,
    /// Error message when not ok.
    pub error_message: String,
    /// Cost, when reported.
    pub cost_usd: Option<f64>,
}

impl RunnerLink {
    /// A link over `channel`; runs use `workspace` as working directory.
    pub fn new(channel: Channel, workspace: String, permission: pb::PermissionMode) -> Self {
        let permission = Arc::new(AtomicI32::new(permission as i32));
        Self {
            client: RunnerClient::new(channel),
            workspace,
            agent_workspaces: Arc::default(),
            permission,
            agent_env: None,
        }
    }

    /// Runs of sub-agent `name` work in `workspaces[name]`.
    pub fn with_agent_workspaces(
        mut self,
        workspaces: std::collections::HashMap<String, String>,
    ) -> Self {
        self.agent_workspaces = Arc::new(workspaces);
        self
    }

    /// The workspace of `agent` (the main one for `main`, empty or unknown).
    pub fn workspace_of(&self, agent: &str) -> &str {
        self.agent_workspaces.get(agent).map_or(&self.workspace, String::as_str)
    }

    /// Changes the permission mode of runs that do not choose one (for this
    /// link and every clone of it).
    pub fn set_permission(&self, permission: pb::PermissionMode) {
        self.permission.store(permission as i32, Ordering::Relaxed);
    }

    /// Adds automation's per-chat environment (the agent credential) to runs.
    pub fn with_agent_env(mut self, agent_env: crate::automation::wiring::AgentEnv) -> Self {
        self.agent_env = Some(agent_env);
        self
    }

    /// The default working directory.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    fn spec(&self, mut request: RunRequest, working_dir: Option<&str>) -> pb::RunSpec {
        if let Some(agent_env) = &self.agent_env {
            let extra = agent_env(&request.extra_env);
            request.extra_env.extend(extra);
        }
        let default = pb::PermissionMode::try_from(self.permission.load(Ordering::Relaxed))
            .unwrap_or(pb::PermissionMode::Default);
        let permission = request.permission.map_or(default, crate::wire::permission_to_pb);
        let workspace = self.workspace_of(&request.agent).to_owned();
        run_spec_to_pb(request, working_dir.unwrap_or(&workspace), permission)
    }

    /// Hands `response` to a live run; `Ok(false)` when the run or its CLI
    /// did not take it.
    pub async fn respond(
        &self,
        run_id: &str,
        response: RunResponse,
    ) -> Result<bool, tonic::Status> {
        let request = crate::wire::respond_to_pb(run_id, response);
        let answer = self.client.clone().respond(request).await?;
        Ok(answer.into_inner().delivered)
    }

    /// Starts a run in the background and forwards its events to `sink`.
    /// The run stops when `cancel` fires (dropping the stream stops it).
    pub fn spawn_run(&self, request: RunRequest, sink: EventSink, cancel: CancellationToken) {
        let mut client = self.client.clone();
        let run_id = request.run_id.clone();
        let spec = self.spec(request, None);
        tokio::spawn(async move {
            let lost = tokio::select! {
                lost = forward(&mut client, spec, &run_id, &sink) => lost,
                () = cancel.cancelled() => None,
            };
            if let Some(reason) = lost {
                tracing::warn!(run_id, reason, "run stream lost");
                sink(Event::RunLost { run_id, reason });
            }
        });
    }

    /// Gets a received file ready for its turn (transcript, resized image).
    pub async fn prepare_media(
        &self,
        media: &crate::model::Media,
        label: &str,
    ) -> Result<crate::model::PreparedMedia, tonic::Status> {
        let request = pb::PrepareMediaRequest {
            path: media.path.clone(),
            mime_type: media.mime_type.clone(),
            media_kind: media.media_kind.clone(),
            label: label.to_owned(),
        };
        let answer = self.client.clone().prepare_media(request).await?.into_inner();
        tracing::debug!(
            label,
            own_us = answer.own_micros,
            backend_us = answer.backend_micros,
            "media prepared"
        );
        Ok(crate::model::PreparedMedia {
            path: answer.path,
            mime_type: answer.mime_type,
            transcript: answer.transcript,
            transcribed_by: answer.transcribed_by,
            original: (answer.original_width, answer.original_height),
            size: (answer.width, answer.height),
            notes: answer.notes,
        })
    }

    /// Signals a run; `Ok(false)` when the runner has no such run.
    pub async fn signal(&self, run_id: &str, kind: SignalKind) -> Result<bool, tonic::Status> {
        let kind = crate::wire::signal_to_pb(kind) as i32;
        let request = pb::SignalRequest { run_id: run_id.to_owned(), kind };
        let response = self.client.clone().signal(request).await?;
        Ok(response.into_inner().found)
    }

    /// Asks the runner to exit for a restart; its answer names the pid that exits.
    pub async fn restart(&self, reason: &str) -> Result<pb::RestartResponse, tonic::Status> {
        let request = pb::RestartRequest { reason: reason.to_owned() };
        Ok(self.client.clone().restart(request).await?.into_inner())
    }

    /// The provider catalog.
    pub async fn probe(&self) -> Result<Vec<ProviderInfo>, tonic::Status> {
        let response = self.client.clone().probe(pb::ProbeRequest {}).await?;
        Ok(providers_from_pb(response.into_inner()))
    }

    /// Runs one prompt to completion and collects its outcome.
    pub async fn run_oneshot(&self, spec: OneshotSpec, run_id: String) -> OneshotResult {
        match self.start_oneshot(spec, &run_id).await {
            Ok(mut stream) => collect(&mut stream, self, &run_id, false).await,
            Err(failure) => failure,
        }
    }

    /// Like [`RunnerLink::run_oneshot`], but answers as soon as a good
    /// result arrives (what waits on it need not wait for the CLI to exit);
    /// the receiver resolves once the run has exited (its session is free).
    pub async fn run_oneshot_until_result(
        &self,
        spec: OneshotSpec,
        run_id: String,
    ) -> (OneshotResult, tokio::sync::oneshot::Receiver<()>) {
        let (exited, wait) = tokio::sync::oneshot::channel();
        let mut stream = match self.start_oneshot(spec, &run_id).await {
            Ok(stream) => stream,
            Err(failure) => {
                let _ = exited.send(());
                return (failure, wait);
            }
        };
        let result = collect(&mut stream, self, &run_id, true).await;
        tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {}
            let _ = exited.send(());
        });
        (result, wait)
    }

    async fn start_oneshot(
        &self,
        spec: OneshotSpec,
        run_id: &str,
    ) -> Result<tonic::Streaming<pb::RunEvent>, OneshotResult> {
        let request = RunRequest {
            run_id: run_id.to_owned(),
            provider: spec.provider,
            model: spec.model,
            effort: spec.effort,
            prompt: spec.prompt,
            resume_session_id: spec.resume_session_id,
            append_system_prompt: spec.append_system_prompt,
            labels: spec.labels,
            extra_env: spec.extra_env,
            total_timeout_ms: spec.timeout_ms,
            idle_timeout_ms: 0,
            permission: None,
            interactive: false,
            agent: spec.agent,
        };
        let mut spec = self.spec(request, spec.working_dir.as_deref());
        if spec.permission_mode == pb::PermissionMode::Ask as i32 {
            // Nobody answers a one-shot run's questions: the CLI's own headless rules apply.
            spec.permission_mode = pb::PermissionMode::Default as i32;
        }
        start_with_retry(&mut self.client.clone(), spec)
            .await
            .map_err(|status| failed("runner_unavailable", status.message()))
    }
}

/// Pumps one run's stream into `sink`; `Some(reason)` when it broke before
/// the exit event.
async fn forward(
    client: &mut RunnerClient<Channel>,
    spec: pb::RunSpec,
    run_id: &str,
    sink: &EventSink,
) -> Option<String> {
    let mut stream = match start_with_retry(client, spec).await {
        Ok(stream) => stream,
        Err(status) => return Some(format!("the runner is unavailable: {}", status.message())),
    };
    loop {
        match stream.message().await {
            Ok(Some(event)) => match run_event_from_pb(event) {
                Ok(Some(event)) => {
                    let exited = matches!(event, RunEvent::Exited(_));
                    sink(Event::Run { run_id: run_id.to_owned(), event });
                    if exited {
                        return None;
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(run_id, %error, "skipped a malformed run event"),
            },
            Ok(None) => return Some("the run stream ended without an exit".to_owned()),
            Err(status) => return Some(status.message().to_owned()),
        }
    }
}

/// How long a turn waits for a restarting runner before it fails.
const RUNNER_RESTART_PATIENCE: Duration = Duration::from_secs(10);

/// Starts a run; while the runner is unreachable (restarting after a crash),
/// tries again with backoff for up to [`RUNNER_RESTART_PATIENCE`], so a
/// message sent in that window waits instead of failing.
async fn start_with_retry(
    client: &mut RunnerClient<Channel>,
    spec: pb::RunSpec,
) -> Result<tonic::Streaming<pb::RunEvent>, tonic::Status> {
    let started = tokio::time::Instant::now();
    let mut backoff = ductor_proto::transport::Backoff::default();
    loop {
        match client.start_run(spec.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    && started.elapsed() < RUNNER_RESTART_PATIENCE =>
            {
                tracing::debug!(
                    run_id = spec.run_id,
                    error = status.message(),
                    "runner unavailable, retrying"
                );
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(status) => return Err(status),
        }
    }
}

/// The outcome of a one-shot run's stream; with `until_result`, it stops
/// reading at the first good result (the caller drains the rest).
async fn collect(
    stream: &mut tonic::Streaming<pb::RunEvent>,
    link: &RunnerLink,
    run_id: &str,
    until_result: bool,
) -> OneshotResult {
    let mut text = String::new();
    let mut result: Option<RunResult> = None;
    let mut error: Option<(String, String)> = None;
    let mut session = String::new();
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(status) => {
                error.get_or_insert(("interrupted".into(), status.message().to_owned()));
                break;
            }
        };
        match run_event_from_pb(event) {
            Ok(Some(RunEvent::Text(delta))) => text.push_str(&delta),
            Ok(Some(RunEvent::Session(id))) => session = id,
            Ok(Some(RunEvent::Result(r))) => {
                let good = !r.is_error;
                result = Some(r);
                if until_result && good {
                    break;
                }
            }
            Ok(Some(RunEvent::Error(e))) if !e.recoverable => {
                error.get_or_insert((e.kind.as_str().to_owned(), e.message));
            }
            Ok(Some(RunEvent::Exited(_))) => break,
            Ok(Some(RunEvent::ApprovalRequested(asked))) => {
                // Nobody answers a one-shot run (plan mode asks to leave the plan): deny.
                let response = RunResponse::Approval {
                    request_id: asked.request_id,
                    allow: false,
                    message: "This run is unattended: nothing that needs permission is allowed."
                        .to_owned(),
                };
                if let Err(status) = link.respond(run_id, response).await {
                    tracing::warn!(run_id, error = status.message(), "could not deny a request");
                }
            }
            _ => {}
        }
    }
    match result {
        Some(r) if !r.is_error => OneshotResult {
            ok: true,
            session_id: if r.session_id.is_empty() { session } else { r.session_id },
            text: r.text,
            cost_usd: r.cost_usd,
            ..OneshotResult::default()
        },
        Some(r) => OneshotResult {
            session_id: r.session_id,
            error_kind: error.map_or_else(|| "model_api".to_owned(), |e| e.0),
            error_message: r.text,
            text,
            ..OneshotResult::default()
        },
        None => {
            let (kind, message) = error
                .unwrap_or_else(|| ("crashed".into(), "the run ended without a result".into()));
            OneshotResult { text, session_id: session, ..failed(&kind, &message) }
        }
    }
}

fn failed(kind: &str, message: &str) -> OneshotResult {
    OneshotResult {
        error_kind: kind.to_owned(),
        error_message: message.to_owned(),
        ..OneshotResult::default()
    }
}

/// Probes the runner until shutdown: every 30 s while it answers, with a
/// capped backoff while it does not, and at once when `wake` fires.
pub async fn health_loop(
    link: RunnerLink,
    sink: EventSink,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff =
        ductor_proto::transport::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut was_up: Option<bool> = None;
    loop {
        let delay = match tokio::time::timeout(Duration::from_secs(5), link.probe()).await {
            Ok(Ok(catalog)) => {
                sink(Event::Catalog(catalog));
                sink(Event::RunnerHealth(true));
                if was_up != Some(true) {
                    tracing::info!("runner reachable");
                }
                was_up = Some(true);
                backoff.reset();
                Duration::from_secs(30)
            }
            failure => {
                let reason = match failure {
                    Ok(Err(status)) => status.message().to_owned(),
                    _ => "probe timed out".to_owned(),
                };
                if was_up != Some(false) {
                    tracing::warn!(reason, "runner not reachable");
                    sink(Event::Error(format!("runner not reachable: {reason}")));
                }
                sink(Event::RunnerHealth(false));
                was_up = Some(false);
                backoff.next_delay()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}
