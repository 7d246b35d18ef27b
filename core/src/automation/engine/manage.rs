//! Managing jobs and hooks: the operations behind the gRPC `Automation`
//! service (`ductorctl cron …`, `ductorctl webhook …`) and the `/cron` chat
//! command, each checked against the [`Caller`]: an agent run sees and changes
//! only what its own chat owns, and what it creates reports to its chat.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{Automation, AutomationError};
use crate::automation::credential::Caller;
use crate::automation::model::{ChatTarget, CronJob, RunKind, RunRecord};
use crate::automation::schedule::Schedule;
use crate::automation::scheduler::Registration;
use crate::automation::store::{self as db, AutomationStoreError};
use crate::automation::task_folder;
use crate::automation::webhook::auth::generate_token;
use crate::automation::webhook::server::WebhookEvent;
use crate::automation::webhook::{HookAuth, Webhook, template};

/// A job with what `list` shows about it.
#[derive(Debug, Clone)]
pub struct JobView {
    /// The job.
    pub job: CronJob,
    /// Its next fire (when enabled).
    pub next_fire: Option<Timestamp>,
    /// Its latest run.
    pub last_run: Option<RunRecord>,
}

impl Automation {
    fn forbidden(what: &str, id: &str) -> AutomationError {
        AutomationError::Forbidden(format!(
            "{what} {id:?} belongs to another chat; a chat may only manage its own {what}s"
        ))
    }

    /// Scopes a new item to an agent's chat, or keeps the operator's choice.
    fn scope_new(
        caller: &Caller,
        target: &mut Option<ChatTarget>,
        owner: &mut Option<ChatTarget>,
    ) -> Result<(), AutomationError> {
        if let Caller::Agent(chat) = caller {
            if target.as_ref().is_some_and(|t| t != chat) {
                return Err(AutomationError::Forbidden(
                    "an agent can only deliver to its own chat".into(),
                ));
            }
            *target = Some(chat.clone());
            *owner = Some(chat.clone());
        } else {
            *owner = None;
        }
        Ok(())
    }

    async fn job_for(&self, caller: &Caller, id: &str) -> Result<CronJob, AutomationError> {
        let owned = id.to_owned();
        let job = self
            .db(move |c| db::get_job(c, &owned))
            .await?
            .ok_or_else(|| AutomationError::NotFound(format!("cron job {id:?}")))?;
        if !caller.may_manage(job.owner.as_ref(), job.target.as_ref()) {
            return Err(Self::forbidden("cron job", id));
        }
        Ok(job)
    }

    async fn hook_for(&self, caller: &Caller, id: &str) -> Result<Webhook, AutomationError> {
        let owned = id.to_owned();
        let hook = self
            .db(move |c| db::get_hook(c, &owned))
            .await?
            .ok_or_else(|| AutomationError::NotFound(format!("webhook {id:?}")))?;
        if !caller.may_manage(hook.owner.as_ref(), hook.target.as_ref()) {
            return Err(Self::forbidden("webhook", id));
        }
        Ok(hook)
    }

    fn reschedule(&self, job: &CronJob) -> Result<(), AutomationError> {
        let spec = job.spec(&self.default_zone())?;
        self.scheduler()?.upsert(spec, Registration::Live).map_err(|_| AutomationError::Stopped)
    }

    /// Jobs the caller may see, with next fire and last run.
    pub async fn list_jobs(&self, caller: &Caller) -> Result<Vec<JobView>, AutomationError> {
        let jobs = self.db(db::list_jobs).await?;
        let now = self.inner.clock.now();
        let mut views = Vec::new();
        for job in
            jobs.into_iter().filter(|j| caller.may_manage(j.owner.as_ref(), j.target.as_ref()))
        {
            let id = job.id.clone();
            let last_run = self
                .db(move |c| db::list_runs(c, Some((RunKind::Cron, &id)), 1))
                .await?
                .into_iter()
                .next();
            let next_fire = if job.enabled {
                Schedule::parse(&job.schedule, job.zone_or(&self.default_zone()))
                    .ok()
                    .and_then(|s| s.next_after(now))
            } else {
                None
            };
            views.push(JobView { job, next_fire, last_run });
        }
        Ok(views)
    }

    /// Creates a job (scoped to the agent's chat when an agent asks).
    pub async fn add_job(
        &self,
        caller: &Caller,
        mut job: CronJob,
    ) -> Result<CronJob, AutomationError> {
        Self::scope_new(caller, &mut job.target, &mut job.owner)?;
        job.created_at = self.inner.clock.now();
        job.last_fire_at = None;
        job.validate(&self.default_zone())?;
        self.agent_may_keep_job(caller, &job, true).await?;
        // Uniqueness and ownership first: a refused job writes nothing.
        let id = job.id.clone();
        if self.db(move |c| db::get_job(c, &id)).await?.is_some() {
            return Err(AutomationStoreError::Exists { kind: "cron job", id: job.id }.into());
        }
        self.folder_is_ours(job.owner.as_ref(), &job.id).await?;
        // A re-added job's folder (kept with its memory) takes a new description,
        // never an empty one.
        let replace = !job.description.trim().is_empty();
        let workspace = self.workspace_of(job.target.as_ref().or(job.owner.as_ref()));
        task_folder::ensure(&workspace, &job.id, &job.title, &job.description, replace)?;
        let stored = job.clone();
        self.db(move |c| db::insert_job(c, &stored)).await?;
        self.reschedule(&job)?;
        Ok(job)
    }

    /// Changes a job with `change` (which may not move it to another chat).
    pub async fn edit_job(
        &self,
        caller: &Caller,
        id: &str,
        change: impl FnOnce(&mut CronJob) + Send,
    ) -> Result<CronJob, AutomationError> {
        let before = self.job_for(caller, id).await?;
        let mut job = before.clone();
        change(&mut job);
        job.id = before.id.clone();
        job.owner = before.owner.clone();
        job.created_at = before.created_at;
        job.last_fire_at = before.last_fire_at;
        if let Caller::Agent(chat) = caller
            && job.target.as_ref() != Some(chat)
        {
            return Err(AutomationError::Forbidden(
                "an agent can only deliver to its own chat".into(),
            ));
        }
        job.validate(&self.default_zone())?;
        self.agent_may_keep_job(caller, &job, false).await?;
        let replace = job.description != before.description;
        let workspace = self.workspace_of(job.target.as_ref().or(job.owner.as_ref()));
        task_folder::ensure(&workspace, &job.id, &job.title, &job.description, replace)?;
        let stored = job.clone();
        self.db(move |c| db::update_job(c, &stored)).await?;
        self.reschedule(&job)?;
        Ok(job)
    }

    /// Deletes a job and its history (its task folder stays).
    pub async fn remove_job(&self, caller: &Caller, id: &str) -> Result<(), AutomationError> {
        self.job_for(caller, id).await?;
        let owned = id.to_owned();
        self.db(move |c| db::delete_job(c, &owned)).await?;
        self.scheduler()?.remove(id).map_err(|_| AutomationError::Stopped)
    }

    /// Pauses or resumes a job.
    pub async fn set_job_enabled(
        &self,
        caller: &Caller,
        id: &str,
        enabled: bool,
    ) -> Result<CronJob, AutomationError> {
        self.edit_job(caller, id, move |job| job.enabled = enabled).await
    }

    /// Runs a job now. Fails when it is still running.
    pub async fn run_job_now(&self, caller: &Caller, id: &str) -> Result<(), AutomationError> {
        self.job_for(caller, id).await?;
        if self.scheduler()?.run_now(id).await.map_err(|_| AutomationError::Stopped)? {
            Ok(())
        } else {
            Err(AutomationError::Forbidden(format!("cron job {id:?} is still running")))
        }
    }

    /// Run history, newest first: of one job/hook, or of everything the caller may see.
    pub async fn history(
        &self,
        caller: &Caller,
        source: Option<(RunKind, &str)>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, AutomationError> {
        match source {
            Some((RunKind::Cron, id)) => drop(self.job_for(caller, id).await?),
            Some((RunKind::Webhook, id)) => drop(self.hook_for(caller, id).await?),
            None => {}
        }
        let filter = source.map(|(k, id)| (k, id.to_owned()));
        let runs = self
            .db(move |c| {
                db::list_runs(c, filter.as_ref().map(|(k, id)| (*k, id.as_str())), limit.max(1))
            })
            .await?;
        if matches!(caller, Caller::Admin) || source.is_some() {
            return Ok(runs);
        }
        let jobs = self.list_jobs(caller).await?;
        let hooks = self.list_hooks(caller).await?;
        Ok(runs
            .into_iter()
            .filter(|r| match r.kind {
                RunKind::Cron => jobs.iter().any(|j| j.job.id == r.source_id),
                RunKind::Webhook => hooks.iter().any(|h| h.id == r.source_id),
            })
            .collect())
    }

    /// Hooks the caller may see.
    pub async fn list_hooks(&self, caller: &Caller) -> Result<Vec<Webhook>, AutomationError> {
        let hooks = self.db(db::list_hooks).await?;
        Ok(hooks
            .into_iter()
            .filter(|h| caller.may_manage(h.owner.as_ref(), h.target.as_ref()))
            .collect())
    }

    /// Creates a hook; an empty bearer token is generated.
    pub async fn add_hook(
        &self,
        caller: &Caller,
        mut hook: Webhook,
    ) -> Result<Webhook, AutomationError> {
        Self::scope_new(caller, &mut hook.target, &mut hook.owner)?;
        if let HookAuth::Bearer { token } = &mut hook.auth
            && token.is_empty()
        {
            *token = generate_token();
        }
        if hook.task_folder.is_empty() {
            hook.task_folder = hook.id.clone();
        }
        hook.created_at = self.inner.clock.now();
        hook.trigger_count = 0;
        hook.last_triggered_at = None;
        hook.last_error.clear();
        hook.validate()?;
        self.agent_may_open_hook(caller, &mut hook).await?;
        let id = hook.id.clone();
        if self.db(move |c| db::get_hook(c, &id)).await?.is_some() {
            return Err(AutomationStoreError::Exists { kind: "webhook", id: hook.id }.into());
        }
        if hook.mode == crate::automation::webhook::HookMode::CronTask {
            self.folder_is_ours(hook.owner.as_ref(), &hook.task_folder).await?;
            // The folder may be a job's: its task description is kept.
            task_folder::ensure(
                &self.workspace_of(hook.target.as_ref().or(hook.owner.as_ref())),
                &hook.task_folder,
                &hook.title,
                &hook.description,
                false,
            )?;
        }
        let stored = hook.clone();
        self.db(move |c| db::insert_hook(c, &stored)).await?;
        self.inner.hooks.upsert(hook.clone())?;
        Ok(hook)
    }

    /// Deletes a hook and its history.
    pub async fn remove_hook(&self, caller: &Caller, id: &str) -> Result<(), AutomationError> {
        self.hook_for(caller, id).await?;
        let owned = id.to_owned();
        self.db(move |c| db::delete_hook(c, &owned)).await?;
        self.inner.hooks.remove(id);
        Ok(())
    }

    /// Pauses or resumes a hook.
    pub async fn set_hook_enabled(
        &self,
        caller: &Caller,
        id: &str,
        enabled: bool,
    ) -> Result<Webhook, AutomationError> {
        let mut hook = self.hook_for(caller, id).await?;
        self.agent_may_enable_hook(caller, enabled)?;
        hook.enabled = enabled;
        let stored = hook.clone();
        self.db(move |c| db::update_hook(c, &stored)).await?;
        self.inner.hooks.upsert(hook.clone())?;
        Ok(hook)
    }

    /// Replaces a hook's bearer token (or HMAC secret) with a fresh one.
    pub async fn rotate_hook_token(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Webhook, AutomationError> {
        let mut hook = self.hook_for(caller, id).await?;
        match &mut hook.auth {
            HookAuth::Bearer { token } => *token = generate_token(),
            HookAuth::Hmac(settings) => settings.secret = generate_token(),
        }
        let stored = hook.clone();
        self.db(move |c| db::update_hook(c, &stored)).await?;
        self.inner.hooks.upsert(hook.clone())?;
        Ok(hook)
    }

    /// Handles `payload` as if the hook had received it (auth skipped).
    pub async fn test_hook(
        &self,
        caller: &Caller,
        id: &str,
        payload: Map<String, Value>,
    ) -> Result<(), AutomationError> {
        let hook = self.hook_for(caller, id).await?;
        let prompt =
            template::wrap(&hook.title, &template::render(&hook.prompt_template, &payload));
        let event = WebhookEvent {
            hook: std::sync::Arc::new(hook),
            prompt,
            received_at: self.inner.clock.now(),
            inbox: None,
            replayed: false,
        };
        let this = self.clone();
        tokio::spawn(async move { this.handle_webhook(event).await });
        Ok(())
    }

    /// Lines for `/status`: the latest failure of each job or hook that failed last.
    /// Only `caller`'s own jobs and hooks count, unless it is the operator.
    pub async fn failure_lines(&self, caller: &Caller) -> Vec<String> {
        let runs = match self.db(db::latest_failures).await {
            Ok(runs) => runs,
            Err(error) => return vec![format!("automation: cannot read the run history: {error}")],
        };
        let visible = match caller {
            Caller::Admin => None,
            Caller::Agent(_) | Caller::Chat(_) => {
                let jobs = self.list_jobs(caller).await.unwrap_or_default();
                let hooks = self.list_hooks(caller).await.unwrap_or_default();
                let mut ids: std::collections::HashSet<(RunKind, String)> =
                    jobs.into_iter().map(|v| (RunKind::Cron, v.job.id)).collect();
                ids.extend(hooks.into_iter().map(|h| (RunKind::Webhook, h.id)));
                Some(ids)
            }
        };
        runs.iter()
            .filter(|run| {
                visible.as_ref().is_none_or(|ids| ids.contains(&(run.kind, run.source_id.clone())))
            })
            .map(describe_failure)
            .collect()
    }

    /// The `/cron` chat command: `list` (default), `enable ID`, `disable ID`,
    /// `run ID`, `history ID`, as `caller`: a chat in `[agent].admin_chats`
    /// acts as the operator, any other only on its own jobs.
    pub async fn chat_command(&self, args: &str, caller: &Caller) -> String {
        let mut words = args.split_whitespace();
        let (verb, id) = (words.next().unwrap_or("list"), words.next().unwrap_or(""));
        let result = match (verb, id) {
            ("list", _) => return self.cron_list_text(caller).await,
            ("enable" | "resume", id) if !id.is_empty() => {
                self.set_job_enabled(caller, id, true).await.map(|j| format!("▶️ Cron job {} enabled.", j.id))
            }
            ("disable" | "pause", id) if !id.is_empty() => {
                self.set_job_enabled(caller, id, false).await.map(|j| format!("⏸ Cron job {} paused.", j.id))
            }
            ("run", id) if !id.is_empty() => {
                self.run_job_now(caller, id).await.map(|()| format!("🚀 Cron job {id} started; its result follows here."))
            }
            ("history", id) if !id.is_empty() => self.history(caller, Some((RunKind::Cron, id)), 10).await.map(|runs| {
                let mut text = format!("History of {id} (newest first):");
                for run in &runs {
                    text.push_str(&format!("\n{}", describe_run(run)));
                }
                if runs.is_empty() {
                    text.push_str("\n(no runs yet)");
                }
                text
            }),
            _ => return "Usage: /cron [list] | /cron enable ID | /cron disable ID | /cron run ID | /cron history ID".to_owned(),
        };
        result.unwrap_or_else(|error| format!("⚠️ {error}"))
    }

    async fn cron_list_text(&self, caller: &Caller) -> String {
        let views = match self.list_jobs(caller).await {
            Ok(views) => views,
            Err(error) => return format!("⚠️ {error}"),
        };
        if views.is_empty() {
            return "No cron jobs. Ask the agent to schedule one, or use `ductorctl cron add`."
                .to_owned();
        }
        let default_zone = self.default_zone();
        let mut text = format!("Cron jobs ({}):", views.len());
        for view in &views {
            let job = &view.job;
            let state = if job.enabled { "▶️" } else { "⏸" };
            let zone = job.zone_or(&default_zone);
            text.push_str(&format!(
                "\n{state} {} `{}` {}",
                job.id,
                job.schedule,
                if zone.is_empty() { "UTC" } else { zone }
            ));
            if let Some(next) = view.next_fire {
                text.push_str(&format!(" · next {}", local(next, zone)));
            }
            match &view.last_run {
                Some(run) => text.push_str(&format!("\n   last: {}", describe_run(run))),
                None => text.push_str("\n   never ran"),
            }
        }
        text.push_str("\n\n/cron run ID · /cron disable ID · /cron enable ID · /cron history ID");
        text
    }
}

fn local(at: Timestamp, zone: &str) -> String {
    let zone = crate::automation::schedule::resolve_zone(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    at.to_zoned(zone).strftime("%a %Y-%m-%d %H:%M").to_string()
}

/// One history line: when, status, delivery.
pub fn describe_run(run: &RunRecord) -> String {
    let mut line = format!(
        "{} {} · {} · delivery {}",
        if run.failed() { "❌" } else { "✅" },
        run.started_at.strftime("%Y-%m-%d %H:%M UTC"),
        run.status,
        run.delivery.as_str()
    );
    if !run.delivery_error.is_empty() {
        line.push_str(&format!(" ({})", run.delivery_error));
    }
    line
}

fn describe_failure(run: &RunRecord) -> String {
    let mut line = format!("{} {}: {}", run.kind.as_str(), run.source_id, describe_run(run));
    if !run.result_text.is_empty() {
        let preview: String = run.result_text.chars().take(120).collect();
        line.push_str(&format!(" — {preview}"));
    }
    line
}
