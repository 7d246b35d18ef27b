//! What a chat's agent may set up on its own (`[automation]`): how many jobs
//! and hooks, how often a schedule fires, how long its texts are, and that a
//! hook it opens waits for the operator before the internet can reach the
//! chat through it. The operator (admin token) is not limited here, but
//! nobody may take over a task folder another owner's job or hook uses.

use jiff::{Timestamp, ToSpan as _};

use super::{Automation, AutomationError};
use crate::automation::credential::Caller;
use crate::automation::model::{ChatTarget, CronJob};
use crate::automation::schedule::Schedule;
use crate::automation::store as db;
use crate::automation::webhook::{HookMode, Webhook};

/// Fires looked at to find a schedule's shortest gap (covers `*/n` and lists).
const FIRES_CHECKED: usize = 48;

impl Automation {
    /// Refuses texts longer than `max_text_chars`.
    fn agent_texts(&self, texts: &[(&str, &str)]) -> Result<(), AutomationError> {
        let max = self.limits().max_text_chars as usize;
        match texts.iter().find(|(_, text)| text.chars().count() > max) {
            Some((field, _)) => Err(AutomationError::Limit(format!(
                "the {field} is longer than {max} characters ([automation].max_text_chars)"
            ))),
            None => Ok(()),
        }
    }

    /// An agent's job: short texts, no schedule firing more often than
    /// `min_agent_interval_minutes`, at most `max_jobs_per_chat` (when `new`).
    pub(super) async fn agent_may_keep_job(
        &self,
        caller: &Caller,
        job: &CronJob,
        new: bool,
    ) -> Result<(), AutomationError> {
        let Caller::Agent(chat) = caller else { return Ok(()) };
        self.agent_texts(&[
            ("title", &job.title),
            ("description", &job.description),
            ("instruction", &job.instruction),
        ])?;
        let minimum = i64::from(self.limits().min_agent_interval_minutes) * 60;
        if let Some(gap) = self.shortest_gap(job)
            && gap < minimum
        {
            return Err(AutomationError::Limit(format!(
                "{:?} fires every {} s; an agent's schedules fire at most every {} minutes \
                 ([automation].min_agent_interval_minutes)",
                job.schedule,
                gap,
                minimum / 60
            )));
        }
        if new {
            let max = self.limits().max_jobs_per_chat as usize;
            let jobs = self.db(db::list_jobs).await?;
            if jobs.iter().filter(|j| j.owner.as_ref() == Some(chat)).count() >= max {
                return Err(AutomationError::Limit(format!(
                    "this chat has {max} cron jobs ([automation].max_jobs_per_chat); remove one first"
                )));
            }
        }
        Ok(())
    }

    /// The shortest time between two of the next fires, in seconds.
    fn shortest_gap(&self, job: &CronJob) -> Option<i64> {
        let schedule = Schedule::parse(&job.schedule, job.zone_or(&self.default_zone())).ok()?;
        let mut at = self.inner.clock.now();
        let mut fires: Vec<Timestamp> = Vec::with_capacity(FIRES_CHECKED);
        while fires.len() < FIRES_CHECKED {
            let next = schedule.next_after(at)?;
            fires.push(next);
            at = next.checked_add(1.second()).ok()?;
        }
        fires.windows(2).map(|w| w[1].as_second() - w[0].as_second()).min()
    }

    /// An agent's hook: short texts, at most `max_hooks_per_chat`, and
    /// disabled until the operator enables it when approval is required.
    pub(super) async fn agent_may_open_hook(
        &self,
        caller: &Caller,
        hook: &mut Webhook,
    ) -> Result<(), AutomationError> {
        let Caller::Agent(chat) = caller else { return Ok(()) };
        self.agent_texts(&[
            ("title", &hook.title),
            ("description", &hook.description),
            ("prompt template", &hook.prompt_template),
        ])?;
        let max = self.limits().max_hooks_per_chat as usize;
        let hooks = self.db(db::list_hooks).await?;
        if hooks.iter().filter(|h| h.owner.as_ref() == Some(chat)).count() >= max {
            return Err(AutomationError::Limit(format!(
                "this chat has {max} webhooks ([automation].max_hooks_per_chat); remove one first"
            )));
        }
        if self.limits().agent_hooks_need_approval {
            hook.enabled = false;
        }
        Ok(())
    }

    /// Only the operator enables a hook while agent hooks need approval.
    pub(super) fn agent_may_enable_hook(
        &self,
        caller: &Caller,
        enabled: bool,
    ) -> Result<(), AutomationError> {
        if enabled && matches!(caller, Caller::Agent(_)) && self.limits().agent_hooks_need_approval
        {
            return Err(AutomationError::Forbidden(
                "a webhook is enabled by the operator (`ductorctl webhook enable NAME` with the \
                 admin token); ask the user to do it"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A task folder belongs to one owner: refuse `folder` when a job or a
    /// `cron_task` hook of another owner (another chat, or the operator's
    /// when `owner` is a chat, and the reverse) uses it. Checked before the
    /// folder is touched.
    pub(super) async fn folder_is_ours(
        &self,
        owner: Option<&ChatTarget>,
        folder: &str,
    ) -> Result<(), AutomationError> {
        let jobs = self.db(db::list_jobs).await?;
        let hooks = self.db(db::list_hooks).await?;
        let taken = jobs.iter().any(|j| j.id == folder && j.owner.as_ref() != owner)
            || hooks.iter().any(|h| {
                h.mode == HookMode::CronTask && h.task_folder == folder && h.owner.as_ref() != owner
            });
        if taken {
            return Err(AutomationError::Forbidden(format!(
                "the task folder {folder:?} belongs to another chat's (or the operator's) job or webhook"
            )));
        }
        Ok(())
    }

    /// The environment of a cron or webhook run for its chat: the chat's
    /// identity, and its agent credential only when the operator allows it.
    pub(super) fn automation_run_env(&self, chat: &ChatTarget) -> Vec<(String, String)> {
        let mut env = self.inner.credentials.env_for(chat);
        if !self.limits().automation_runs_get_credential {
            // An explicit empty credential: nothing adds one later.
            for (key, value) in &mut env {
                if key == crate::automation::credential::AGENT_TOKEN_ENV {
                    value.clear();
                }
            }
        }
        env
    }
}
