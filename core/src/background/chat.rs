//! The chat side of background work: `/session`, `@name`, `/sessions`,
//! `/tasks`, their buttons, `/stop @name`, `/stop_all`, and the lines
//! `/status` gets. Every answer is a notice or a menu for the chat.

use std::collections::VecDeque;

use ductor_daemon::sync::Locked as _;
use jiff::Timestamp;

use super::engine::{Background, RunKey};
use super::model::{NamedSession, NamedState, Refusal, Task, TaskStatus, generate_name};
use super::{BackgroundReply, BackgroundRequest};
use crate::model::{Button, SessionKey};

const SESSIONS_MENU: &str = "sessions";
const TASKS_MENU: &str = "tasks";

impl Background {
    /// Answers a chat command or button of `key`'s chat.
    pub async fn answer(&self, key: &SessionKey, request: BackgroundRequest) -> BackgroundReply {
        let result = match request {
            BackgroundRequest::NewSession { provider, model, effort, prompt } => {
                self.new_session(key, provider, model, effort, prompt).await
            }
            BackgroundRequest::FollowUp { name, text } => self.follow_up(key, &name, text).await,
            BackgroundRequest::ListSessions(provider_sessions) => {
                let mut menu = self.sessions_menu(key, None);
                menu.text.push_str(&format!("\n\n{provider_sessions}"));
                Ok(menu)
            }
            BackgroundRequest::EndSession(name) => self.end_session(key, &name).await,
            BackgroundRequest::StopSession(name) => self.stop_session(key, &name).await,
            BackgroundRequest::EndAll => self.end_all(key).await,
            BackgroundRequest::ListTasks => Ok(self.tasks_menu(key, None)),
            BackgroundRequest::CancelTask(id) => self.cancel_from_chat(key, &id).await,
            BackgroundRequest::DeleteTask(id) => self.delete_from_chat(key, &id).await,
            BackgroundRequest::StopEverything => Ok(self.stop_everything().await),
        };
        result.unwrap_or_else(|refusal| BackgroundReply::notice(format!("⚠️ {refusal}")))
    }

    fn check_room(&self, key: &SessionKey) -> Result<(), Refusal> {
        let limit = self.inner.config.max_running_per_chat as usize;
        if self.running_in(key) >= limit {
            return Err(Refusal::limit(format!(
                "{limit} background runs are going in this chat already; wait for one, or /sessions and /tasks to stop one"
            )));
        }
        Ok(())
    }

    async fn new_session(
        &self,
        key: &SessionKey,
        provider: String,
        model: String,
        effort: String,
        prompt: String,
    ) -> Result<BackgroundReply, Refusal> {
        if prompt.trim().is_empty() {
            return Err(Refusal::new("usage: /session [@provider or @model] <what to do>"));
        }
        self.check_room(key)?;
        let session = {
            let mut state = self.inner.state.locked();
            let live =
                state.named.values().filter(|s| s.key == *key && s.state != NamedState::Ended);
            let limit = self.inner.config.max_sessions_per_chat as usize;
            if live.count() >= limit {
                return Err(Refusal::limit(format!(
                    "this chat has {limit} named sessions; end one in /sessions first"
                )));
            }
            let seed = Timestamp::now().as_nanosecond() as u64;
            let skey = key.storage_key();
            let name = generate_name(seed, &|name| {
                state.named.contains_key(&(skey.clone(), name.to_owned()))
            });
            let now = Timestamp::now();
            let session = NamedSession {
                key: key.clone(),
                name: name.clone(),
                provider,
                model,
                effort,
                session_id: String::new(),
                state: NamedState::Running,
                created_at: now,
                last_active: now,
                turns: 0,
                cost_usd: 0.0,
            };
            state.named.insert((skey, name), session.clone());
            session
        };
        self.save_named(session.clone()).await;
        self.publish_names(key);
        self.start_named(key, &session.name, prompt);
        let model =
            if session.model.is_empty() { String::new() } else { format!(" {}", session.model) };
        Ok(BackgroundReply::notice(format!(
            "🚀 Started **{name}** ({provider}{model}) in the background; this chat stays free. \
             Its answer comes here. Continue it with `@{name} …`; /sessions lists it.",
            name = session.name,
            provider = session.provider,
        )))
    }

    async fn follow_up(
        &self,
        key: &SessionKey,
        name: &str,
        text: String,
    ) -> Result<BackgroundReply, Refusal> {
        let session = self.named(key, name).ok_or_else(|| {
            Refusal::not_found(format!("there is no session {name} in this chat"))
        })?;
        if text.trim().is_empty() {
            return Err(Refusal::new(format!("usage: @{name} <message>")));
        }
        match session.state {
            NamedState::Ended => {
                Err(Refusal::new(format!("{name} has ended; start a new one with /session")))
            }
            NamedState::Running => {
                if self.queue_follow_up(key, name, text) {
                    Ok(BackgroundReply::notice(format!(
                        "⏳ Queued for **{name}**: it runs when its current turn ends."
                    )))
                } else {
                    Err(Refusal::new(format!(
                        "{name} already has follow-ups waiting; wait for its answer"
                    )))
                }
            }
            NamedState::Idle => {
                self.check_room(key)?;
                let running = self.mark_running(key, name)?;
                self.save_named(running).await;
                self.start_named(key, name, text);
                Ok(BackgroundReply::notice(format!("↪ **{name}** is on it.")))
            }
        }
    }

    /// Stops a named session's turn, if one runs, and drops its follow-ups.
    fn halt_named(&self, key: &SessionKey, name: &str) -> bool {
        let id = (key.storage_key(), name.to_owned());
        self.inner.state.locked().queued.remove(&id);
        self.stop_run(&RunKey::Named(id.0, id.1))
    }

    /// A stopped turn leaves its session idle (its provider session kept).
    async fn idle_after_stop(&self, key: &SessionKey, name: &str) {
        let idle = {
            let mut state = self.inner.state.locked();
            state.named.get_mut(&(key.storage_key(), name.to_owned())).map(|s| {
                s.finish_turn("", 0.0, Timestamp::now());
                s.clone()
            })
        };
        if let Some(idle) = idle {
            self.save_named(idle).await;
        }
    }

    async fn stop_session(&self, key: &SessionKey, name: &str) -> Result<BackgroundReply, Refusal> {
        if self.named(key, name).is_none() {
            return Err(Refusal::not_found(format!("there is no session {name} in this chat")));
        }
        if !self.halt_named(key, name) {
            return Ok(BackgroundReply::notice(format!("**{name}** is not running.")));
        }
        self.idle_after_stop(key, name).await;
        Ok(BackgroundReply::notice(format!("⏹ Stopped **{name}**'s turn; the session is kept.")))
    }

    async fn end_session(&self, key: &SessionKey, name: &str) -> Result<BackgroundReply, Refusal> {
        let stopped = self.halt_named(key, name);
        let ended = {
            let mut state = self.inner.state.locked();
            let entry =
                state.named.get_mut(&(key.storage_key(), name.to_owned())).ok_or_else(|| {
                    Refusal::not_found(format!("there is no session {name} in this chat"))
                })?;
            entry.end()?;
            entry.clone()
        };
        self.save_named(ended).await;
        self.publish_names(key);
        let note = if stopped { " (its running turn was stopped)" } else { "" };
        Ok(self.sessions_menu(key, Some(format!("⏹ Ended **{name}**{note}."))))
    }

    async fn end_all(&self, key: &SessionKey) -> Result<BackgroundReply, Refusal> {
        let names: Vec<String> = {
            let state = self.inner.state.locked();
            state
                .named
                .values()
                .filter(|s| s.key == *key && s.state != NamedState::Ended)
                .map(|s| s.name.clone())
                .collect()
        };
        for name in &names {
            let _ = self.end_session(key, name).await;
        }
        Ok(self.sessions_menu(key, Some(format!("⏹ Ended {} session(s).", names.len()))))
    }

    fn sessions_menu(&self, key: &SessionKey, note: Option<String>) -> BackgroundReply {
        let state = self.inner.state.locked();
        let mut sessions: Vec<&NamedSession> =
            state.named.values().filter(|s| s.key == *key).collect();
        sessions.sort_by_key(|s| s.created_at);
        let mut lines: Vec<String> = note.into_iter().collect();
        let live: Vec<&&NamedSession> =
            sessions.iter().filter(|s| s.state != NamedState::Ended).collect();
        if live.is_empty() {
            lines.push("No named sessions. Start one with `/session <what to do>`.".into());
        } else {
            lines.push("Named sessions:".into());
        }
        let mut buttons = Vec::new();
        for s in &live {
            let queued =
                state.queued.get(&(key.storage_key(), s.name.clone())).map_or(0, VecDeque::len);
            let queued = if queued > 0 { format!(" · {queued} queued") } else { String::new() };
            lines.push(format!(
                "• **{}**: {} · {} · {} turn(s) · ${:.4}{queued}",
                s.name,
                s.state.as_str(),
                s.provider,
                s.turns,
                s.cost_usd
            ));
            buttons.push(vec![Button {
                id: format!("ns:end:{}", s.name),
                label: format!("End {}", s.name),
            }]);
        }
        if live.len() > 1 {
            buttons.push(vec![Button { id: "ns:endall".into(), label: "End all".into() }]);
        }
        let ended: Vec<&str> = sessions
            .iter()
            .filter(|s| s.state == NamedState::Ended)
            .map(|s| s.name.as_str())
            .collect();
        if !ended.is_empty() {
            lines.push(format!("Ended: {}", ended.join(", ")));
        }
        BackgroundReply { text: lines.join("\n"), buttons, selector: Some(SESSIONS_MENU.into()) }
    }

    pub(super) fn tasks_menu(&self, key: &SessionKey, note: Option<String>) -> BackgroundReply {
        let state = self.inner.state.locked();
        let mut tasks: Vec<&Task> = state.tasks.values().filter(|t| t.parent == *key).collect();
        tasks.sort_by_key(|t| t.created_at);
        let mut lines: Vec<String> = note.into_iter().collect();
        let mut buttons = Vec::new();
        let sections: [(&str, &dyn Fn(TaskStatus) -> bool); 3] = [
            ("Running", &|s| s == TaskStatus::Running),
            ("Waiting for an answer", &|s| s == TaskStatus::Waiting),
            ("Finished", &TaskStatus::is_finished),
        ];
        for (title, pick) in sections {
            let picked: Vec<&&Task> = tasks.iter().filter(|t| pick(t.status)).collect();
            if picked.is_empty() {
                continue;
            }
            lines.push(format!("{title}:"));
            for t in picked {
                let detail = match t.status {
                    TaskStatus::Waiting => format!(" — asks: {}", t.question),
                    status if status.is_finished() => format!(" — {}", status.as_str()),
                    _ => String::new(),
                };
                lines.push(format!("• **{}** ({}) · {}{detail}", t.name, t.id, t.provider));
                let (verb, id) =
                    if t.status.is_finished() { ("Delete", "del") } else { ("Cancel", "cancel") };
                buttons.push(vec![Button {
                    id: format!("tk:{id}:{}", t.id),
                    label: format!("{verb} {}", t.name),
                }]);
            }
        }
        if tasks.is_empty() {
            lines.push("No tasks. The agent creates them with `ductorctl task create`.".into());
        }
        buttons.push(vec![Button { id: "tk:refresh".into(), label: "Refresh".into() }]);
        BackgroundReply { text: lines.join("\n"), buttons, selector: Some(TASKS_MENU.into()) }
    }

    async fn cancel_from_chat(
        &self,
        key: &SessionKey,
        id: &str,
    ) -> Result<BackgroundReply, Refusal> {
        let task = self.cancel_task(Some(key), id).await?;
        Ok(self.tasks_menu(key, Some(format!("⏹ Cancelled task **{}**.", task.name))))
    }

    async fn delete_from_chat(
        &self,
        key: &SessionKey,
        id: &str,
    ) -> Result<BackgroundReply, Refusal> {
        let task = self.delete_task(Some(key), id).await?;
        Ok(self.tasks_menu(key, Some(format!("🗑 Deleted task **{}**.", task.name))))
    }

    /// `/stop_all`: every running named turn (the sessions stay, idle) and
    /// every running or waiting task, in every chat.
    async fn stop_everything(&self) -> BackgroundReply {
        let (named, tasks): (Vec<(SessionKey, String)>, Vec<Task>) = {
            let state = self.inner.state.locked();
            let named = state
                .named
                .values()
                .filter(|s| s.state == NamedState::Running)
                .map(|s| (s.key.clone(), s.name.clone()))
                .collect();
            let tasks = state.tasks.values().filter(|t| !t.status.is_finished()).cloned().collect();
            (named, tasks)
        };
        for (key, name) in &named {
            self.halt_named(key, name);
            self.idle_after_stop(key, name).await;
        }
        for task in &tasks {
            let _ = self.cancel_task(None, &task.id).await;
        }
        BackgroundReply::notice(format!(
            "Background: stopped {} named session turn(s) and cancelled {} task(s).",
            named.len(),
            tasks.len()
        ))
    }

    /// Lines for `/status`: what runs in the background of `key`'s chat.
    pub fn status_lines(&self, key: &SessionKey) -> Vec<String> {
        let state = self.inner.state.locked();
        let mut lines = Vec::new();
        let mut sessions: Vec<String> = state
            .named
            .values()
            .filter(|s| s.key == *key && s.state != NamedState::Ended)
            .map(|s| format!("{} {}", s.name, s.state.as_str()))
            .collect();
        sessions.sort();
        if !sessions.is_empty() {
            lines.push(format!("Background sessions: {}", sessions.join(", ")));
        }
        let count = |status: TaskStatus| {
            state.tasks.values().filter(|t| t.parent == *key && t.status == status).count()
        };
        let (running, waiting) = (count(TaskStatus::Running), count(TaskStatus::Waiting));
        if running + waiting > 0 {
            lines.push(format!(
                "Tasks: {running} running, {waiting} waiting for an answer (/tasks)"
            ));
        }
        lines
    }
}
