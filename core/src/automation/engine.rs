//! The automation engine: what ties the scheduler, the webhook listener, the
//! heartbeat and the sweep to core. It runs jobs as one-shot runs in their task
//! folders ([`CoreHandle::run_oneshot`]), delivers results through the durable
//! outbox ([`CoreHandle::deliver`]) and wakes chat sessions
//! ([`CoreHandle::inject`]).
//!
//! Delivery you can trust: every run gets a history row before it starts; its
//! result (or its failure) is sent as a durable action whose outbox id is kept
//! as a receipt; the gateway's acknowledgement settles the run's delivery as
//! `ok` or `failed` with the gateway's reason. A result produced while a
//! gateway is away waits in the outbox and is re-sent when it attaches; its
//! receipt settles then, also across core restarts.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use ductor_daemon::config::{CleanupConfig, Config, HeartbeatConfig};
use ductor_daemon::sync::{Locked as _, LockedRw as _};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::clock::SharedClock;
use super::core_port::CorePort;
use super::credential::Credentials;
use super::model::{ChatTarget, CronJob, DeliveryStatus, InvalidDefinition, RunKind};
use super::scheduler::{
    BoxFuture, Fire, JobHandler, Registration, Scheduler, Skip, SkipReason, Trigger,
};
use super::store::{self as db, AutomationStoreError};
use super::task_folder::{self, TaskFolderError};
use super::webhook::server::{HookRegistry, WebhookEvent};
use super::webhook::{HookMode, Webhook};
use super::{cleanup, heartbeat};

mod inbox;
pub mod manage;
mod policy;
use crate::machine::InjectOptions;
use crate::model::{FinalReply, OutKind, SessionKey};
use crate::runner::OneshotSpec;
use crate::store::{Store, StoreError};

/// Why an automation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// The definition is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidDefinition),
    /// Our tables said no (exists, not found, corrupt).
    #[error(transparent)]
    Store(#[from] AutomationStoreError),
    /// The database itself failed.
    #[error("state database: {0}")]
    Database(#[from] StoreError),
    /// The task folder could not be prepared.
    #[error(transparent)]
    Folder(#[from] TaskFolderError),
    /// The caller may not touch this item.
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// No such job or hook (or not visible to the caller).
    #[error("{0} not found")]
    NotFound(String),
    /// The scheduler stopped (shutdown).
    #[error("automation is shutting down")]
    Stopped,
    /// A request field is missing or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The caller presented no valid credentials.
    #[error(transparent)]
    Unauthenticated(#[from] super::credential::Unauthorized),
    /// A limit on what an agent may set up (`[automation]`).
    #[error("{0}")]
    Limit(String),
}

/// Replaces `current` with `new`; `true` when they differed.
fn replace<T: Clone + PartialEq>(current: &mut T, new: &T) -> bool {
    let changed = current != new;
    if changed {
        current.clone_from(new);
    }
    changed
}

/// Prefix of the fire ids of webhook `cron_task` runs in the dependency queue.
const HOOK_FIRE_PREFIX: &str = "hook:";
/// Webhook events handled at once.
pub(super) const WEBHOOK_CONCURRENCY: usize = 16;
/// Recent acknowledgements remembered for receipts recorded after the ack.
const EARLY_ACKS: usize = 4096;
/// Longest result text kept in the history of a failed run.
const FAILURE_TEXT_MAX: usize = 4000;

/// The running automation. Cheap to clone.
#[derive(Clone)]
pub struct Automation {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Automation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Automation")
    }
}

struct Inner {
    store: Store,
    core: Arc<dyn CorePort>,
    credentials: Credentials,
    clock: SharedClock,
    workspace: PathBuf,
    /// Sub-agents' workspaces: a job of a sub-agent's chat has its folder there.
    agent_workspaces: HashMap<String, PathBuf>,
    /// `[agent].timezone` (name, empty = UTC) and the zone it resolves to:
    /// the default of jobs that name none, quiet hours, the sweep's hour.
    /// Replaced by a reload.
    zone: watch::Sender<(String, TimeZone)>,
    scheduler: OnceLock<Scheduler>,
    hooks: Arc<HookRegistry>,
    hook_events: Mutex<HashMap<String, WebhookEvent>>,
    next_hook_fire: AtomicU64,
    early_acks: Mutex<VecDeque<(String, u64, String)>>,
    /// `[automation]`, `[heartbeat]` and `[cleanup]`: replaced by a reload.
    limits: RwLock<ductor_daemon::config::AutomationConfig>,
    heartbeat: watch::Sender<HeartbeatConfig>,
    cleanup: watch::Sender<CleanupConfig>,
}

/// What [`Automation::start`] needs.
pub struct Parts {
    /// Core's database (automation's migrations already applied).
    pub store: Store,
    /// The rest of core.
    pub core: Arc<dyn CorePort>,
    /// Agent credentials.
    pub credentials: Credentials,
    /// Time.
    pub clock: SharedClock,
    /// `$DUCTOR_HOME/workspace`.
    pub workspace: PathBuf,
    /// Sub-agents' workspaces by name.
    pub agent_workspaces: HashMap<String, PathBuf>,
    /// The whole configuration.
    pub config: Config,
    /// Stops everything.
    pub shutdown: CancellationToken,
}

impl Automation {
    /// Loads jobs and hooks, closes runs a previous process left open, and
    /// starts the scheduler, the webhook listener (when enabled), the
    /// heartbeat and the sweep.
    pub async fn start(parts: Parts) -> anyhow::Result<Self> {
        let default_zone = parts.config.agent.timezone.clone();
        let zone = super::schedule::resolve_zone(&default_zone).unwrap_or(TimeZone::UTC);
        let inner = Arc::new(Inner {
            store: parts.store,
            core: parts.core,
            credentials: parts.credentials,
            clock: parts.clock,
            workspace: parts.workspace,
            agent_workspaces: parts.agent_workspaces,
            zone: watch::Sender::new((default_zone, zone)),
            scheduler: OnceLock::new(),
            hooks: Arc::new(HookRegistry::default()),
            hook_events: Mutex::default(),
            next_hook_fire: AtomicU64::new(0),
            early_acks: Mutex::default(),
            limits: RwLock::new(parts.config.automation.clone()),
            heartbeat: watch::Sender::new(parts.config.heartbeat.clone()),
            cleanup: watch::Sender::new(parts.config.cleanup.clone()),
        });
        let this = Self { inner };
        let now = this.inner.clock.now();
        let interrupted = this.db(move |c| db::interrupt_unfinished(c, now)).await?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "closed automation runs interrupted by a restart");
        }
        let scheduler = Scheduler::spawn(
            this.inner.clock.clone(),
            Arc::new(this.clone()),
            parts.shutdown.clone(),
        );
        let _ = this.inner.scheduler.set(scheduler.clone());
        for job in this.db(db::list_jobs).await? {
            match job.spec(&this.default_zone()) {
                Ok(spec) => scheduler
                    .upsert(spec, Registration::Startup)
                    .map_err(|_| AutomationError::Stopped)?,
                Err(error) => tracing::error!(job = job.id, %error, "cron job not scheduled"),
            }
        }
        for (id, error) in this.inner.hooks.replace_all(this.db(db::list_hooks).await?) {
            tracing::error!(hook = id, %error, "webhook not loaded");
        }
        // Before the listener: the journal then holds only what the last process left.
        this.replay_journal().await?;
        let config = &parts.config;
        // A taken port must not take the chats down with it: logged, and the
        // rest of core (and automation) runs without the listener.
        if config.webhooks.enabled
            && let Err(error) = this.start_listener(config, parts.shutdown.clone()).await
        {
            tracing::error!(
                error = format!("{error:#}"),
                "webhook listener not started; webhooks are unavailable until core restarts"
            );
        }
        // Both loops run even while disabled: a reload may enable them.
        let port = Arc::new(super::ports::HeartbeatCore::new(this.inner.core.clone()));
        tokio::spawn(heartbeat::run(
            this.inner.heartbeat.subscribe(),
            this.zones(),
            this.inner.clock.clone(),
            port,
            parts.shutdown.clone(),
        ));
        let mut workspaces = vec![this.inner.workspace.clone()];
        workspaces.extend(this.inner.agent_workspaces.values().cloned());
        tokio::spawn(cleanup::run(
            this.inner.cleanup.subscribe(),
            workspaces,
            this.zones(),
            this.inner.clock.clone(),
            parts.shutdown.clone(),
        ));
        Ok(this)
    }

    /// A reloaded `config.toml`: the new `[automation]` limits apply to the
    /// next request, `[heartbeat]` to the next tick, `[cleanup]` at once, and
    /// a new `[agent].timezone` to every job that names no zone (rescheduled
    /// from now), quiet hours and the sweep's hour. (The webhook listener
    /// keeps its settings until core restarts.)
    pub async fn reconfigure(&self, config: &Config) {
        *self.inner.limits.write_locked() = config.automation.clone();
        self.inner.heartbeat.send_if_modified(|current| replace(current, &config.heartbeat));
        self.inner.cleanup.send_if_modified(|current| replace(current, &config.cleanup));
        let name = &config.agent.timezone;
        if *name != self.default_zone() {
            let zone = super::schedule::resolve_zone(name).unwrap_or(TimeZone::UTC);
            self.inner.zone.send_replace((name.clone(), zone));
            if let Err(error) = self.reschedule_zoneless().await {
                tracing::error!(%error, "failed to move cron jobs to the new time zone");
            }
        }
    }

    /// Schedules again every job that names no zone, in the default zone
    /// as it is now: only fires from now on count.
    async fn reschedule_zoneless(&self) -> Result<(), AutomationError> {
        let zone = self.default_zone();
        let scheduler = self.scheduler()?;
        for job in self.db(db::list_jobs).await? {
            if !job.timezone.is_empty() {
                continue;
            }
            match job.spec(&zone) {
                Ok(spec) => scheduler
                    .upsert(spec, Registration::Live)
                    .map_err(|_| AutomationError::Stopped)?,
                Err(error) => tracing::error!(job = job.id, %error, "cron job not rescheduled"),
            }
        }
        tracing::info!(
            zone = if zone.is_empty() { "UTC" } else { &zone },
            "cron jobs without a zone of their own follow the new time zone"
        );
        Ok(())
    }

    /// `[automation]` as it is now.
    pub(super) fn limits(&self) -> ductor_daemon::config::AutomationConfig {
        self.inner.limits.read_locked().clone()
    }

    async fn start_listener(
        &self,
        config: &Config,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        use super::webhook::server::{ServerSettings, router, serve};
        use anyhow::Context as _;
        let settings = ServerSettings::from_config(&config.webhooks);
        let (router, events) = router(
            &settings,
            self.inner.hooks.clone(),
            self.inner.clock.clone(),
            self.inner.store.clone(),
        );
        let address = format!("{}:{}", config.webhooks.host, config.webhooks.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("bind the webhook listener to {address}"))?;
        tracing::info!(%address, "webhook listener started");
        tokio::spawn(async move {
            if let Err(error) = serve(listener, settings.connections, router, shutdown).await {
                tracing::error!(%error, "webhook listener stopped");
            }
        });
        tokio::spawn(self.clone().dispatch_webhooks(events));
        Ok(())
    }

    /// Whom `presented` credentials name (the operator or an agent's chat).
    pub(super) fn authorize(
        &self,
        presented: &super::credential::Presented,
    ) -> Result<super::credential::Caller, super::credential::Unauthorized> {
        self.inner.credentials.authorize(presented)
    }

    /// `[agent].timezone`: the zone of jobs that name none (empty = UTC).
    pub(super) fn default_zone(&self) -> String {
        self.inner.zone.borrow().0.clone()
    }

    /// The user's time zone, as `[agent].timezone` resolves now.
    pub(super) fn zone(&self) -> TimeZone {
        self.inner.zone.borrow().1.clone()
    }

    /// The user's time zone, following reloads (heartbeat, cleanup).
    fn zones(&self) -> watch::Receiver<TimeZone> {
        let (tx, rx) = watch::channel(self.zone());
        let mut names = self.inner.zone.subscribe();
        tokio::spawn(async move {
            while names.changed().await.is_ok() {
                let zone = names.borrow_and_update().1.clone();
                if tx.send(zone).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Runs `work` on automation's tables in core's database.
    async fn db<T, F>(&self, work: F) -> Result<T, AutomationError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, AutomationStoreError> + Send + 'static,
    {
        Ok(self.inner.store.call(move |c| Ok(work(c))).await??)
    }

    fn scheduler(&self) -> Result<&Scheduler, AutomationError> {
        self.inner.scheduler.get().ok_or(AutomationError::Stopped)
    }

    /// A gateway acknowledged `action_id` (error empty = delivered).
    pub async fn on_ack(&self, transport: &str, action_id: u64, error: &str) {
        let (owned, err) = (transport.to_owned(), error.to_owned());
        match self.db(move |c| db::settle_receipt(c, &owned, action_id, &err)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let mut recent = self.inner.early_acks.locked();
                if recent.len() == EARLY_ACKS {
                    recent.pop_front();
                }
                recent.push_back((transport.to_owned(), action_id, error.to_owned()));
            }
            Err(error) => tracing::error!(%error, "failed to record a delivery receipt"),
        }
    }

    /// The chats a broadcast goes to: every chat core has a session with
    /// (gateways only let allowed chats in), excluding terminal clients.
    async fn broadcast_targets(&self) -> Result<Vec<SessionKey>, AutomationError> {
        self.db(|c| {
            let mut statement = c.prepare(
                "SELECT DISTINCT transport, chat_id FROM sessions WHERE transport != 'cli' ORDER BY transport, chat_id",
            )?;
            let rows = statement.query_map([], |row| Ok(SessionKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?, "")))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Sends `text` for run `run_id` to `target` (or every known chat) as a
    /// durable reply and records receipts; failures are recorded on the run.
    async fn deliver(
        &self,
        run_id: i64,
        target: Option<&ChatTarget>,
        text: String,
        footer: String,
    ) {
        let targets = match target {
            Some(t) => vec![SessionKey::new(&t.transport, &t.chat_id, &t.topic_id)],
            None => match self.broadcast_targets().await {
                Ok(targets) => targets,
                Err(error) => {
                    self.record_delivery(
                        run_id,
                        DeliveryStatus::Failed,
                        &format!("find chats: {error}"),
                    )
                    .await;
                    return;
                }
            },
        };
        if targets.is_empty() {
            let why =
                "no chat to deliver to: nobody has talked to the bot yet, and the job has no chat";
            self.record_delivery(run_id, DeliveryStatus::Failed, why).await;
            return;
        }
        for key in targets {
            let reply = FinalReply {
                text: text.clone(),
                buttons: Vec::new(),
                files: Vec::new(),
                footer: footer.clone(),
                notify: true,
            };
            let transport = key.transport.clone();
            match self.inner.core.deliver(key, OutKind::Final(reply)).await {
                Ok(action_id) => {
                    let owned = transport.clone();
                    if let Err(error) =
                        self.db(move |c| db::add_receipt(c, &owned, action_id, run_id)).await
                    {
                        tracing::error!(%error, "failed to record a receipt");
                    }
                    self.replay_early_ack(&transport, action_id).await;
                }
                Err(error) => {
                    self.record_delivery(
                        run_id,
                        DeliveryStatus::Failed,
                        &format!("{transport}: outbox: {error}"),
                    )
                    .await;
                }
            }
        }
    }

    async fn replay_early_ack(&self, transport: &str, action_id: u64) {
        let early = {
            let mut recent = self.inner.early_acks.locked();
            let found = recent.iter().position(|(t, id, _)| t == transport && *id == action_id);
            found.and_then(|i| recent.remove(i))
        };
        if let Some((transport, action_id, error)) = early {
            self.on_ack(&transport, action_id, &error).await;
        }
    }

    async fn record_delivery(&self, run_id: i64, delivery: DeliveryStatus, error: &str) {
        let error = error.to_owned();
        if !error.is_empty() {
            tracing::warn!(run_id, error, "automation delivery failed");
        }
        if let Err(e) = self.db(move |c| db::set_delivery(c, run_id, delivery, &error)).await {
            tracing::error!(error = %e, "failed to record a delivery");
        }
    }

    fn local_now(&self, zone_name: &str) -> String {
        let zone = super::schedule::resolve_zone(zone_name).unwrap_or_else(|_| self.zone());
        let now = self.inner.clock.now().to_zoned(zone);
        format!(
            "{} ({})",
            now.strftime("%Y-%m-%d %H:%M"),
            now.time_zone().iana_name().unwrap_or("UTC")
        )
    }

    /// Runs one fire of a cron job, start to receipt.
    async fn run_cron(self, fire: Fire) {
        let id = fire.job_id.clone();
        let Ok(Some(job)) = self.db(move |c| db::get_job(c, &id)).await else {
            tracing::warn!(job = fire.job_id, "a fired cron job is gone");
            return;
        };
        let (id, at) = (job.id.clone(), fire.scheduled_at);
        if let Err(error) = self.db(move |c| db::set_last_fire(c, &id, at)).await {
            tracing::error!(%error, "failed to record a fire time");
        }
        let trigger = match &fire.trigger {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
            Trigger::CatchUp { .. } => "catch_up",
        };
        let prompt = task_folder::enrich_instruction(
            &job.id,
            &job.instruction,
            &self.local_now(job.zone_or(&self.default_zone())),
        );
        let note = match fire.trigger {
            Trigger::CatchUp { missed, .. } => format!(
                "\n\n_(Catch-up: {missed} scheduled run{} missed while ductor was down; ran once now.)_",
                if missed == 1 { " was" } else { "s were" }
            ),
            _ => String::new(),
        };
        let run = Job {
            kind: RunKind::Cron,
            source: job.id.clone(),
            folder: job.id.clone(),
            title: job.title.clone(),
            overrides: job.overrides.clone(),
            env_chat: job.target.clone().or(job.owner.clone()),
            target: job.target.clone(),
            silent_on_success: job.silent_on_success,
            trigger: trigger.to_owned(),
            scheduled_at: fire.scheduled_at,
            prompt,
            note,
            inbox: None,
        };
        self.execute(run).await;
    }

    /// Runs a one-shot job in its folder, records it and delivers the result.
    async fn execute(&self, job: Job) {
        let now = self.inner.clock.now();
        let (kind, source, trigger, scheduled, inbox) =
            (job.kind, job.source.clone(), job.trigger.clone(), job.scheduled_at, job.inbox);
        let run_id = match self
            .db(move |c| {
                db::claiming(c, inbox, |c| {
                    db::start_run(c, kind, &source, &trigger, scheduled, now, "running")
                })
            })
            .await
        {
            Ok(id) => id,
            Err(error) => {
                tracing::error!(%error, source = job.source, "failed to record a run; not running it");
                return;
            }
        };
        let label = if job.kind == RunKind::Cron { "Cron job" } else { "Webhook" };
        let agent = agent_of_chat(job.env_chat.as_ref()).to_owned();
        let workspace = self.workspace_of(job.env_chat.as_ref());
        let (status, text, ok) =
            match task_folder::ensure(&workspace, &job.folder, &job.title, "", false) {
                Err(error) => ("error:folder".to_owned(), error.to_string(), false),
                Ok(dir) => {
                    let mut extra_env = job
                        .env_chat
                        .as_ref()
                        .map(|c| self.automation_run_env(c))
                        .unwrap_or_default();
                    extra_env.push((
                        "DUCTOR_AUTOMATION".into(),
                        format!("{}:{}", job.kind.as_str(), job.source),
                    ));
                    let spec = OneshotSpec {
                        provider: job.overrides.provider.clone(),
                        model: job.overrides.model.clone(),
                        effort: job.overrides.effort.clone(),
                        prompt: job.prompt.clone(),
                        working_dir: Some(dir.to_string_lossy().into_owned()),
                        labels: vec![
                            ("kind".into(), job.kind.as_str().into()),
                            ("job".into(), job.source.clone()),
                        ],
                        extra_env,
                        agent,
                        ..OneshotSpec::default()
                    };
                    let result = self.inner.core.run_oneshot(spec).await;
                    if result.ok {
                        ("success".to_owned(), result.text, true)
                    } else {
                        let kind = if result.error_kind.is_empty() {
                            "failed".to_owned()
                        } else {
                            result.error_kind.clone()
                        };
                        let why = if result.error_message.is_empty() {
                            result.text
                        } else {
                            result.error_message
                        };
                        (format!("error:{kind}"), why, false)
                    }
                }
            };
        let finished = self.inner.clock.now();
        let failure_text: String =
            if ok { String::new() } else { text.chars().take(FAILURE_TEXT_MAX).collect() };
        let owned_status = status.clone();
        if let Err(error) = self
            .db(move |c| db::finish_run(c, run_id, finished, &owned_status, &failure_text))
            .await
        {
            tracing::error!(%error, "failed to record a run's end");
        }
        if ok && job.silent_on_success {
            self.record_delivery(run_id, DeliveryStatus::Skipped, "").await;
            return;
        }
        let body = if ok {
            format!("⏰ **{}**\n\n{}{}", job.title_or_source(), text.trim(), job.note)
        } else {
            format!(
                "❌ {label} **{}** failed ({status}): {}{}",
                job.title_or_source(),
                text.trim(),
                job.note
            )
        };
        let footer = format!("{} · {}", job.kind.as_str(), job.source);
        self.deliver(run_id, job.target.as_ref(), body, footer).await;
    }

    /// Handles accepted webhook requests until the listener's queue closes.
    async fn dispatch_webhooks(self, mut events: mpsc::Receiver<WebhookEvent>) {
        let permits = Arc::new(Semaphore::new(WEBHOOK_CONCURRENCY));
        while let Some(event) = events.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let this = self.clone();
            tokio::spawn(async move {
                this.handle_webhook(event).await;
                drop(permit);
            });
        }
    }

    /// One accepted webhook request: telemetry, quiet hours, then its mode.
    pub async fn handle_webhook(&self, event: WebhookEvent) {
        let hook = event.hook.clone();
        let (id, at) = (hook.id.clone(), event.received_at);
        if let Err(error) = self.db(move |c| db::record_trigger(c, &id, at)).await {
            tracing::error!(%error, "failed to count a webhook trigger");
        }
        let quiet = super::model::quiet_hours(hook.quiet_start, hook.quiet_end).ok().flatten();
        if quiet.is_some_and(|q| q.contains(event.received_at, &self.zone())) {
            let (id, now) = (hook.id.clone(), self.inner.clock.now());
            let (inbox, trigger) = (event.inbox, event.trigger("webhook"));
            let run = self
                .db(move |c| {
                    db::claiming(c, inbox, |c| {
                        let status = "skipped:quiet_hours";
                        db::start_run(c, RunKind::Webhook, &id, &trigger, at, now, status)
                    })
                })
                .await;
            if let Ok(run_id) = run {
                self.record_delivery(run_id, DeliveryStatus::Skipped, "").await;
            }
            return;
        }
        match hook.mode {
            HookMode::Wake => self.wake(&hook, event).await,
            HookMode::CronTask => {
                let n = self.inner.next_hook_fire.fetch_add(1, Ordering::Relaxed);
                let fire_id = format!("{HOOK_FIRE_PREFIX}{}#{n}", hook.id);
                self.inner.hook_events.locked().insert(fire_id.clone(), event.clone());
                let fire = Fire {
                    job_id: fire_id.clone(),
                    scheduled_at: event.received_at,
                    trigger: Trigger::Manual,
                };
                let submitted = match self.scheduler() {
                    Ok(scheduler) => scheduler.submit(fire, hook.dependency.clone()).is_ok(),
                    Err(_) => false,
                };
                if !submitted {
                    self.inner.hook_events.locked().remove(&fire_id);
                    self.set_hook_error(&hook.id, "error:shutting_down").await;
                }
            }
        }
    }

    /// `wake`: runs the prompt in each target chat's live session, under its lock.
    async fn wake(&self, hook: &Webhook, event: WebhookEvent) {
        let targets = match &hook.target {
            Some(t) => vec![SessionKey::new(&t.transport, &t.chat_id, &t.topic_id)],
            None => self.broadcast_targets().await.unwrap_or_default(),
        };
        let now = self.inner.clock.now();
        let (id, inbox, trigger, at) =
            (hook.id.clone(), event.inbox, event.trigger("wake"), event.received_at);
        let Ok(run_id) = self
            .db(move |c| {
                db::claiming(c, inbox, |c| {
                    db::start_run(c, RunKind::Webhook, &id, &trigger, at, now, "running")
                })
            })
            .await
        else {
            return;
        };
        let prompt = event.prompt;
        if targets.is_empty() {
            self.finish_hook_run(run_id, &hook.id, "error:no_chat", "no chat to wake").await;
            self.record_delivery(run_id, DeliveryStatus::Failed, "no chat to wake").await;
            return;
        }
        let mut errors = Vec::new();
        for key in targets {
            let options = InjectOptions { kind: "webhook".into(), ..InjectOptions::default() };
            match self.inner.core.inject(key.clone(), prompt.clone(), options).await {
                Ok(outcome) if outcome.ok => {}
                Ok(outcome) => errors.push(format!(
                    "{}: {} {}",
                    key.storage_key(),
                    outcome.error_kind,
                    outcome.text
                )),
                Err(gone) => errors.push(format!("{}: {gone}", key.storage_key())),
            }
        }
        if errors.is_empty() {
            self.finish_hook_run(run_id, &hook.id, "success", "").await;
            // The reply went out as the session's own durable final answer.
            self.record_delivery(run_id, DeliveryStatus::Ok, "").await;
        } else {
            let text = errors.join("; ");
            self.finish_hook_run(run_id, &hook.id, "error:wake", &text).await;
            self.record_delivery(run_id, DeliveryStatus::Failed, &text).await;
        }
    }

    async fn finish_hook_run(&self, run_id: i64, hook_id: &str, status: &str, text: &str) {
        let (status_owned, text_owned, now) =
            (status.to_owned(), text.to_owned(), self.inner.clock.now());
        let _ = self.db(move |c| db::finish_run(c, run_id, now, &status_owned, &text_owned)).await;
        let error = if status == "success" { String::new() } else { format!("{status}: {text}") };
        self.set_hook_error(hook_id, &error).await;
    }

    async fn set_hook_error(&self, hook_id: &str, error: &str) {
        let (id, error) = (hook_id.to_owned(), error.to_owned());
        if let Err(e) = self.db(move |c| db::set_hook_error(c, &id, &error)).await {
            tracing::error!(error = %e, "failed to record a webhook error");
        }
    }

    /// A `cron_task` webhook's turn in the dependency queue.
    async fn run_hook_task(self, fire: Fire) {
        let event = self.inner.hook_events.locked().remove(&fire.job_id);
        let Some(event) = event else { return };
        let hook = event.hook.clone();
        let now_local = self.local_now(&self.default_zone());
        let prompt = task_folder::enrich_instruction(&hook.task_folder, &event.prompt, &now_local);
        let job = Job {
            kind: RunKind::Webhook,
            source: hook.id.clone(),
            folder: hook.task_folder.clone(),
            title: hook.title.clone(),
            overrides: hook.overrides.clone(),
            env_chat: hook.target.clone().or(hook.owner.clone()),
            target: hook.target.clone(),
            silent_on_success: false,
            trigger: event.trigger("webhook"),
            scheduled_at: event.received_at,
            prompt,
            note: String::new(),
            inbox: event.inbox,
        };
        self.execute(job).await;
        let id = hook.id.clone();
        let last = self.db(move |c| db::list_runs(c, Some((RunKind::Webhook, &id)), 1)).await;
        if let Ok(Some(run)) = last.map(|runs| runs.into_iter().next()) {
            let error = if run.status == "success" {
                String::new()
            } else {
                format!("{}: {}", run.status, run.result_text)
            };
            self.set_hook_error(&hook.id, &error).await;
        }
    }

    /// Tells the job's chat about a skip that the user should know of.
    async fn report_skip(self, skip: Skip) {
        let id = skip.job_id.clone();
        let job = match self.db(move |c| db::get_job(c, &id)).await {
            Ok(Some(job)) => job,
            _ => return,
        };
        let (id, at, now) = (job.id.clone(), skip.scheduled_at, self.inner.clock.now());
        let status = skip.reason.status();
        let _ = self.db(move |c| db::set_last_fire(c, &id, at)).await;
        // Quiet hours are quiet: no history row (it would push real runs out), no message.
        if skip.reason == SkipReason::QuietHours {
            return;
        }
        let id = job.id.clone();
        let Ok(run_id) = self
            .db(move |c| db::start_run(c, RunKind::Cron, &id, "scheduled", at, now, status))
            .await
        else {
            return;
        };
        let text = match skip.reason {
            SkipReason::Missed { missed } => format!(
                "⏭ Cron job **{}**: {missed} scheduled run{} missed while ductor was down and {} skipped \
                 (missed-run policy: skip). The next run is on schedule.",
                job.title_or_id(),
                if missed == 1 { " was" } else { "s were" },
                if missed == 1 { "was" } else { "were" },
            ),
            // In the history, not announced: it would repeat at every fire.
            SkipReason::StillRunning | SkipReason::QuietHours => {
                self.record_delivery(run_id, DeliveryStatus::Skipped, "").await;
                return;
            }
        };
        self.deliver(run_id, job.target.as_ref(), text, format!("cron · {}", job.id)).await;
    }
}

/// One one-shot run to execute (a cron job's or a `cron_task` hook's).
struct Job {
    kind: RunKind,
    source: String,
    folder: String,
    title: String,
    overrides: super::model::RunOverrides,
    /// Whose agent credential the run gets.
    env_chat: Option<ChatTarget>,
    target: Option<ChatTarget>,
    silent_on_success: bool,
    trigger: String,
    scheduled_at: Timestamp,
    prompt: String,
    note: String,
    /// The journaled webhook request this run handles.
    inbox: Option<i64>,
}

impl Job {
    fn title_or_source(&self) -> &str {
        if self.title.trim().is_empty() { &self.source } else { &self.title }
    }
}

impl CronJob {
    /// The title, or the id when there is none.
    pub fn title_or_id(&self) -> &str {
        if self.title.trim().is_empty() { &self.id } else { &self.title }
    }
}

impl JobHandler for Automation {
    fn run(&self, fire: Fire) -> BoxFuture {
        let this = self.clone();
        if fire.job_id.starts_with(HOOK_FIRE_PREFIX) {
            Box::pin(this.run_hook_task(fire))
        } else {
            Box::pin(this.run_cron(fire))
        }
    }

    fn skipped(&self, skip: Skip) {
        tokio::spawn(self.clone().report_skip(skip));
    }
}

/// The agent a job or hook works for: the agent of the chat it reports to
/// (or its owner's); `main` for the operator's own.
pub(super) fn agent_of_chat(chat: Option<&ChatTarget>) -> &str {
    chat.map_or(ductor_daemon::config::MAIN_AGENT, |c| crate::model::agent_of(&c.transport))
}

impl Automation {
    /// The workspace that holds the task folders of `chat`'s agent.
    pub(super) fn workspace_of(&self, chat: Option<&ChatTarget>) -> PathBuf {
        let agent = agent_of_chat(chat);
        self.inner.agent_workspaces.get(agent).unwrap_or(&self.inner.workspace).clone()
    }
}
