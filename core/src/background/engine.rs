//! The background engine: named sessions' and tasks' state (in memory, every
//! change written to `state.db`), their runs (one-shot runs through
//! automation's [`CorePort`] that resume the entry's own provider session),
//! and what reaches the chat (durable results with the entry's name on them;
//! a task's result and questions injected into its parent's session).
//!
//! Runs are tokio tasks; stopping one aborts it, which drops its event stream
//! and makes the runner stop the CLI. Limits: `[background]`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ductor_daemon::config::BackgroundConfig;
use ductor_daemon::sync::Locked as _;
use jiff::Timestamp;
use tokio::task::JoinHandle;

use super::model::{NamedSession, NamedState, Refusal, Task};
use super::{LiveNames, store};
use crate::automation::core_port::CorePort;
use crate::markup;
use crate::model::{FinalReply, OutKind, SessionKey};
use crate::runner::{OneshotResult, OneshotSpec};
use crate::store::{Store, StoreError};

/// Follow-ups a named session holds while it works.
const MAX_QUEUED: usize = 5;
/// Ended sessions kept per chat for the listing.
const ENDED_KEPT: usize = 10;

/// Where the machine learns a chat's live session names (for `@name`).
pub type NamesSink = Arc<dyn Fn(LiveNames) + Send + Sync>;

/// What [`Background::start`] needs.
pub struct Parts {
    pub store: Store,
    pub core: Arc<dyn CorePort>,
    pub workspace: PathBuf,
    /// Sub-agents' workspaces by name (their chats' task folders).
    pub agent_workspaces: HashMap<String, PathBuf>,
    pub config: BackgroundConfig,
    pub names: NamesSink,
}

/// Which entry a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum RunKey {
    Named(String, String),
    Task(String),
}

#[derive(Default)]
pub(super) struct State {
    /// By (chat storage key, name).
    pub(super) named: HashMap<(String, String), NamedSession>,
    pub(super) tasks: HashMap<String, Task>,
    pub(super) runs: HashMap<RunKey, JoinHandle<()>>,
    /// Follow-ups waiting behind a named session's running turn.
    pub(super) queued: HashMap<(String, String), VecDeque<String>>,
    /// Answers that came while the asking run still ran.
    pub(super) answers: HashMap<String, String>,
}

/// The running background engine. Cheap to clone.
#[derive(Clone)]
pub struct Background {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Background")
    }
}

pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) core: Arc<dyn CorePort>,
    pub(super) workspace: PathBuf,
    pub(super) agent_workspaces: HashMap<String, PathBuf>,
    pub(super) config: BackgroundConfig,
    names: NamesSink,
    pub(super) state: Mutex<State>,
}

impl Background {
    /// Loads named sessions and tasks, reports the runs a previous process
    /// lost (never re-run), and publishes every chat's live names.
    pub async fn start(parts: Parts) -> Result<Self, StoreError> {
        let mut named = parts.store.call(store::load_named).await?;
        let mut tasks = parts.store.call(store::load_tasks).await?;
        let now = Timestamp::now();
        let lost_named: Vec<NamedSession> =
            named.iter_mut().filter_map(|s| s.recover().then(|| s.clone())).collect();
        let lost_tasks: Vec<Task> =
            tasks.iter_mut().filter_map(|t| t.recover(now).then(|| t.clone())).collect();
        let state = State {
            named: named.into_iter().map(|s| ((s.key.storage_key(), s.name.clone()), s)).collect(),
            tasks: tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
            ..State::default()
        };
        let inner = Inner {
            store: parts.store,
            core: parts.core,
            workspace: parts.workspace,
            agent_workspaces: parts.agent_workspaces,
            config: parts.config,
            names: parts.names,
            state: Mutex::new(state),
        };
        let this = Self { inner: Arc::new(inner) };
        for session in lost_named {
            tracing::warn!(chat = %session.key, name = session.name, "a named session's turn was lost to a restart");
            this.save_named(session.clone()).await;
            let text = format!(
                "⚠️ **{}**: its turn was interrupted because ductor restarted. It was not re-run; \
                 send `@{} …` to continue. The session is kept.",
                session.name, session.name
            );
            this.notify(&session.key, text).await;
        }
        for task in lost_tasks {
            tracing::warn!(task = task.id, "a task's run was lost to a restart");
            this.save_task(task.clone()).await;
            let text = format!(
                "⚠️ Task **{}** ({}) was interrupted because ductor restarted. It was not re-run.",
                task.name, task.id
            );
            this.notify(&task.parent, text).await;
        }
        for key in this.chats_with_sessions() {
            this.publish_names(&key);
        }
        Ok(this)
    }

    fn chats_with_sessions(&self) -> Vec<SessionKey> {
        let state = self.inner.state.locked();
        let mut keys: Vec<SessionKey> = state.named.values().map(|s| s.key.clone()).collect();
        keys.sort_by_key(SessionKey::storage_key);
        keys.dedup();
        keys
    }

    /// Tells the machine `key`'s live session names.
    pub(super) fn publish_names(&self, key: &SessionKey) {
        let names = {
            let state = self.inner.state.locked();
            let mut names: Vec<String> = state
                .named
                .values()
                .filter(|s| s.key == *key && s.state != NamedState::Ended)
                .map(|s| s.name.clone())
                .collect();
            names.sort();
            names
        };
        (self.inner.names)(LiveNames { key: key.clone(), names });
    }

    /// Runs going in `key`'s chat (named sessions and tasks).
    pub(super) fn running_in(&self, key: &SessionKey) -> usize {
        let state = self.inner.state.locked();
        state
            .runs
            .keys()
            .filter(|run| match run {
                RunKey::Named(skey, _) => *skey == key.storage_key(),
                RunKey::Task(id) => state.tasks.get(id).is_some_and(|t| t.parent == *key),
            })
            .count()
    }

    pub(super) async fn save_named(&self, session: NamedSession) {
        let key = session.key.clone();
        let saved = self
            .inner
            .store
            .call(move |c| {
                store::save_named(c, &session)?;
                store::prune_ended(c, &session.key, ENDED_KEPT)
            })
            .await;
        if let Err(error) = saved {
            tracing::error!(chat = %key, "failed to save a named session: {error}");
        }
    }

    pub(super) async fn save_task(&self, task: Task) {
        let id = task.id.clone();
        if let Err(error) = self.inner.store.call(move |c| store::save_task(c, &task)).await {
            tracing::error!(task = id, "failed to save a task: {error}");
        }
    }

    /// A durable notice to `key`'s chat.
    pub(super) async fn notify(&self, key: &SessionKey, text: String) {
        let notice = OutKind::Notice { text, notify: true };
        if let Err(error) = self.inner.core.deliver(key.clone(), notice).await {
            tracing::error!(chat = %key, "failed to deliver a background notice: {error}");
        }
    }

    /// Starts a turn of the named session `name` of `key` (already marked running).
    pub(super) fn start_named(&self, key: &SessionKey, name: &str, prompt: String) {
        let id = (key.storage_key(), name.to_owned());
        let Some(session) = self.inner.state.locked().named.get(&id).cloned() else { return };
        let spec = OneshotSpec {
            provider: session.provider.clone(),
            model: session.model.clone(),
            effort: session.effort.clone(),
            prompt,
            resume_session_id: session.session_id.clone(),
            labels: vec![
                ("kind".into(), "named".into()),
                ("session_key".into(), key.storage_key()),
                ("name".into(), name.to_owned()),
            ],
            extra_env: chat_env(key),
            timeout_ms: self.inner.config.session_timeout_seconds * 1000,
            agent: key.agent().to_owned(),
            ..OneshotSpec::default()
        };
        let this = self.clone();
        let started = Timestamp::now();
        // Spawned under the lock: the run cannot end (and remove itself)
        // before it is listed.
        let mut state = self.inner.state.locked();
        let handle = tokio::spawn(async move {
            let result = this.inner.core.run_oneshot(spec).await;
            this.named_done(session, result, started).await;
        });
        state.runs.insert(RunKey::Named(id.0, id.1), handle);
    }

    /// A named session's turn ended: record it, deliver the answer, run the next follow-up.
    async fn named_done(&self, session: NamedSession, result: OneshotResult, started: Timestamp) {
        let id = (session.key.storage_key(), session.name.clone());
        let (updated, next) = {
            let mut state = self.inner.state.locked();
            state.runs.remove(&RunKey::Named(id.0.clone(), id.1.clone()));
            let Some(entry) = state.named.get_mut(&id) else { return };
            entry.finish_turn(&result.session_id, result.cost_usd.unwrap_or(0.0), Timestamp::now());
            let updated = entry.clone();
            let next = (updated.state == NamedState::Idle)
                .then(|| state.queued.get_mut(&id).and_then(VecDeque::pop_front))
                .flatten();
            (updated, next)
        };
        self.deliver_named(&updated, &result, started).await;
        let next = next.and_then(|prompt| {
            let running = self.mark_running(&updated.key, &updated.name).ok()?;
            Some((running, prompt))
        });
        match next {
            Some((running, prompt)) => {
                self.save_named(running).await;
                self.start_named(&updated.key, &updated.name, prompt);
            }
            None => self.save_named(updated).await,
        }
    }

    async fn deliver_named(
        &self,
        session: &NamedSession,
        result: &OneshotResult,
        started: Timestamp,
    ) {
        let elapsed = (Timestamp::now().as_millisecond() - started.as_millisecond()).max(0);
        let kind = if result.ok {
            let extracted = markup::extract(&result.text);
            let mut footer = vec![session.name.clone(), session.provider.clone()];
            if let Some(cost) = result.cost_usd {
                footer.push(format!("${cost:.4}"));
            }
            footer.push(format!("{:.1}s", elapsed as f64 / 1000.0));
            OutKind::Final(FinalReply {
                text: format!("💬 **{}**\n\n{}", session.name, extracted.text),
                buttons: extracted.buttons,
                files: Vec::new(),
                footer: footer.join(" · "),
                notify: true,
            })
        } else {
            OutKind::Error {
                message: format!(
                    "⚠️ **{}**: the turn failed ({}): {}",
                    session.name, result.error_kind, result.error_message
                ),
                kind: result.error_kind.clone(),
            }
        };
        if let Err(error) = self.inner.core.deliver(session.key.clone(), kind).await {
            tracing::error!(chat = %session.key, "failed to deliver a named session's answer: {error}");
        }
    }

    /// A task's folder (its working directory), in its chat's agent's workspace.
    pub fn task_folder(&self, parent: &SessionKey, id: &str) -> PathBuf {
        self.workspace_of(parent.agent()).join("tasks").join(id)
    }

    /// The workspace of `agent` (the main one for `main`).
    pub(super) fn workspace_of(&self, agent: &str) -> PathBuf {
        self.inner.agent_workspaces.get(agent).unwrap_or(&self.inner.workspace).clone()
    }

    /// The named session `name` of `key`, if any.
    pub(super) fn named(&self, key: &SessionKey, name: &str) -> Option<NamedSession> {
        self.inner.state.locked().named.get(&(key.storage_key(), name.to_owned())).cloned()
    }

    /// Marks an idle session running (the caller then starts its turn).
    pub(super) fn mark_running(
        &self,
        key: &SessionKey,
        name: &str,
    ) -> Result<NamedSession, Refusal> {
        let mut state = self.inner.state.locked();
        let entry =
            state.named.get_mut(&(key.storage_key(), name.to_owned())).ok_or_else(|| {
                Refusal::not_found(format!("there is no session {name} in this chat"))
            })?;
        entry.start_turn(Timestamp::now())?;
        Ok(entry.clone())
    }

    /// Queues a follow-up behind a running turn; false when the queue is full.
    pub(super) fn queue_follow_up(&self, key: &SessionKey, name: &str, text: String) -> bool {
        let mut state = self.inner.state.locked();
        let queue = state.queued.entry((key.storage_key(), name.to_owned())).or_default();
        if queue.len() >= MAX_QUEUED {
            return false;
        }
        queue.push_back(text);
        true
    }

    /// Stops the run of `run` (the CLI is stopped by the runner when its
    /// stream is dropped); true when one was going.
    pub(super) fn stop_run(&self, run: &RunKey) -> bool {
        let handle = self.inner.state.locked().runs.remove(run);
        handle.map(|h| h.abort()).is_some()
    }
}

/// The chat's context for a background run (its agent credential follows).
pub(super) fn chat_env(key: &SessionKey) -> Vec<(String, String)> {
    vec![
        ("DUCTOR_TRANSPORT".into(), key.transport.clone()),
        ("DUCTOR_CHAT_ID".into(), key.chat_id.clone()),
        ("DUCTOR_TOPIC_ID".into(), key.topic_id.clone()),
    ]
}

impl crate::driver::BackgroundAnswers for Background {
    fn answer(
        &self,
        key: SessionKey,
        request: super::BackgroundRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = super::BackgroundReply> + Send>> {
        let this = self.clone();
        Box::pin(async move { this.answer(&key, request).await })
    }

    fn status_lines(&self, key: &SessionKey) -> Vec<String> {
        Background::status_lines(self, key)
    }
}
