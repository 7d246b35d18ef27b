//! Delegated tasks: created by the chat's agent (or the operator), run in
//! their own folder with their own provider session, asking the parent and
//! being resumed with the answer, finishing with a result that is posted to
//! the chat and injected into the parent's session.

use ductor_daemon::sync::Locked as _;
use jiff::Timestamp;

use super::engine::{Background, RunKey, chat_env};
use super::folder;
use super::model::{Priority, Refusal, Task, TaskStatus, valid_name};
use super::store;
use crate::machine::InjectOptions;
use crate::model::SessionKey;
use crate::runner::{OneshotResult, OneshotSpec};

/// What a caller asks for in a new task.
#[derive(Debug, Clone, Default)]
pub struct TaskRequest {
    pub name: String,
    pub prompt: String,
    pub provider: String,
    pub model: String,
    pub effort: String,
    pub priority: String,
}

/// Longest result kept (and posted) per task.
const RESULT_MAX: usize = 8000;

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

impl Background {
    /// The tasks `scope` may see (all with `None`: the operator).
    pub fn list_tasks(&self, scope: Option<&SessionKey>) -> Vec<Task> {
        let state = self.inner.state.locked();
        let mut tasks: Vec<Task> = state
            .tasks
            .values()
            .filter(|t| scope.is_none_or(|k| t.parent == *k))
            .cloned()
            .collect();
        tasks.sort_by_key(|t| t.created_at);
        tasks
    }

    fn task_for(&self, scope: Option<&SessionKey>, id: &str) -> Result<Task, Refusal> {
        let state = self.inner.state.locked();
        state
            .tasks
            .get(id)
            .filter(|t| scope.is_none_or(|k| t.parent == *k))
            .cloned()
            .ok_or_else(|| Refusal::not_found(format!("there is no task {id} for this chat")))
    }

    /// Creates a task for `parent`'s chat and starts it.
    pub async fn create_task(
        &self,
        parent: &SessionKey,
        request: TaskRequest,
    ) -> Result<Task, Refusal> {
        let name = if request.name.is_empty() { "task".to_owned() } else { request.name.clone() };
        if !valid_name(&name) {
            return Err(Refusal::new(format!(
                "task name {name:?}: lowercase letters, digits, - and _, starting with a letter"
            )));
        }
        if request.prompt.trim().is_empty() {
            return Err(Refusal::new("the task has no prompt"));
        }
        let priority = Priority::parse(&request.priority);
        let limit = self.inner.config.max_running_per_chat as usize;
        if !priority.may_start(self.running_in(parent), limit) {
            return Err(Refusal::limit(format!(
                "{limit} background runs are going in this chat; wait for one or use --priority interactive"
            )));
        }
        let id = format!("{:08x}", rand::random::<u32>());
        let workspace = self.workspace_of(parent.agent());
        let (folder_id, folder_name, prompt) = (id.clone(), name.clone(), request.prompt.clone());
        tokio::task::spawn_blocking(move || {
            folder::prepare(&workspace, &folder_id, &folder_name, &prompt)
        })
        .await
        .map_err(|e| Refusal::new(format!("prepare the task folder: {e}")))?
        .map_err(|e| Refusal::new(e.to_string()))?;
        let task = Task {
            id: id.clone(),
            name,
            parent: parent.clone(),
            prompt: request.prompt.clone(),
            provider: request.provider,
            model: request.model,
            effort: request.effort,
            priority,
            status: TaskStatus::Running,
            session_id: String::new(),
            question: String::new(),
            result: String::new(),
            created_at: Timestamp::now(),
            finished_at: None,
            cost_usd: 0.0,
        };
        self.inner.state.locked().tasks.insert(id.clone(), task.clone());
        self.save_task(task.clone()).await;
        self.prune_finished(parent).await;
        self.start_task(&id, request.prompt);
        Ok(task)
    }

    fn start_task(&self, id: &str, prompt: String) {
        let Ok(task) = self.task_for(None, id) else { return };
        let folder = self.task_folder(&task.parent, id);
        let mut extra_env = chat_env(&task.parent);
        extra_env.push(("DUCTOR_TASK_ID".into(), task.id.clone()));
        let spec = OneshotSpec {
            provider: task.provider.clone(),
            model: task.model.clone(),
            effort: task.effort.clone(),
            prompt,
            working_dir: Some(folder.to_string_lossy().into_owned()),
            resume_session_id: task.session_id.clone(),
            labels: vec![
                ("kind".into(), "task".into()),
                ("task_id".into(), task.id.clone()),
                ("session_key".into(), task.parent.storage_key()),
            ],
            extra_env,
            timeout_ms: self.inner.config.task_timeout_seconds * 1000,
            agent: task.parent.agent().to_owned(),
            ..OneshotSpec::default()
        };
        let this = self.clone();
        let task_id = id.to_owned();
        let mut state = self.inner.state.locked();
        let handle = tokio::spawn(async move {
            let result = this.inner.core.run_oneshot(spec).await;
            this.task_done(&task_id, result).await;
        });
        state.runs.insert(RunKey::Task(id.to_owned()), handle);
    }

    /// A task's run ended: done, failed, or (when it asked) still waiting.
    async fn task_done(&self, id: &str, result: OneshotResult) {
        let (task, answer) = {
            let mut state = self.inner.state.locked();
            state.runs.remove(&RunKey::Task(id.to_owned()));
            let answer = state.answers.remove(id);
            let Some(task) = state.tasks.get_mut(id) else { return };
            let text = if result.ok {
                result.text.clone()
            } else {
                format!("{}: {}", result.error_kind, result.error_message)
            };
            task.finish_run(
                result.ok,
                &short(&text, RESULT_MAX),
                &result.session_id,
                Timestamp::now(),
            );
            task.cost_usd += result.cost_usd.unwrap_or(0.0);
            (task.clone(), answer)
        };
        self.save_task(task.clone()).await;
        match (task.status, answer) {
            (TaskStatus::Running, Some(answer)) => self.start_task(id, answer_prompt(&answer)),
            (TaskStatus::Done | TaskStatus::Failed, _) => self.report(&task).await,
            _ => {}
        }
    }

    /// Posts a finished task's result and hands it to the parent's session.
    async fn report(&self, task: &Task) {
        let (mark, word) = if task.status == TaskStatus::Done {
            ("✅", "finished")
        } else {
            ("⚠️", "failed")
        };
        let text = format!(
            "{mark} Task **{}** ({}) {word}:\n\n{}",
            task.name,
            task.id,
            short(&task.result, 3000)
        );
        self.notify(&task.parent, text).await;
        let prompt = format!(
            "[Task {} ({}) {word}; the user has seen this]\n\n{}\n\n\
             Continue with what this means for the user's request; do not repeat it.",
            task.name, task.id, task.result
        );
        self.inject(&task.parent, prompt, "task_result");
    }

    fn inject(&self, parent: &SessionKey, prompt: String, kind: &str) {
        let core = self.inner.core.clone();
        let parent = parent.clone();
        let options = InjectOptions { kind: kind.to_owned(), ..InjectOptions::default() };
        tokio::spawn(async move {
            if let Err(error) = core.inject(parent.clone(), prompt, options).await {
                tracing::warn!(chat = %parent, %error, "a task message was not injected");
            }
        });
    }

    /// The task's agent asks its parent; the question goes to the chat and
    /// into the parent's session.
    pub async fn ask_parent(
        &self,
        scope: Option<&SessionKey>,
        id: &str,
        question: &str,
    ) -> Result<(), Refusal> {
        self.task_for(scope, id)?;
        let task = {
            let mut state = self.inner.state.locked();
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| Refusal::not_found(format!("there is no task {id}")))?;
            task.ask(question)?;
            task.clone()
        };
        self.save_task(task.clone()).await;
        self.notify(
            &task.parent,
            format!("❓ Task **{}** ({}) asks: {}", task.name, task.id, task.question),
        )
        .await;
        let prompt = format!(
            "[Task {} ({}) asks you]: {}\n\nAnswer it with `ductorctl task answer {} \"…\"` when you \
             can; ask the user first if only they know.",
            task.name, task.id, task.question, task.id
        );
        self.inject(&task.parent, prompt, "task_question");
        Ok(())
    }

    /// The parent answers a waiting task: it is resumed with the answer.
    pub async fn answer_task(
        &self,
        scope: Option<&SessionKey>,
        id: &str,
        answer: &str,
    ) -> Result<Task, Refusal> {
        self.task_for(scope, id)?;
        let (task, still_running) = {
            let mut state = self.inner.state.locked();
            let still_running = state.runs.contains_key(&RunKey::Task(id.to_owned()));
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| Refusal::not_found(format!("there is no task {id}")))?;
            task.answer()?;
            let task = task.clone();
            if still_running {
                state.answers.insert(id.to_owned(), answer.to_owned());
            }
            (task, still_running)
        };
        self.save_task(task.clone()).await;
        if !still_running {
            self.start_task(id, answer_prompt(answer));
        }
        Ok(task)
    }

    /// Resumes a finished or interrupted task (or answers a waiting one)
    /// with `prompt`, in its own session and folder.
    pub async fn resume_task(
        &self,
        scope: Option<&SessionKey>,
        id: &str,
        prompt: &str,
    ) -> Result<Task, Refusal> {
        let parent = self.task_for(scope, id)?.parent;
        let limit = self.inner.config.max_running_per_chat as usize;
        if self.running_in(&parent) >= limit {
            return Err(Refusal::limit(format!(
                "{limit} background runs are going in this chat; wait for one"
            )));
        }
        let task = {
            let mut state = self.inner.state.locked();
            if state.runs.contains_key(&RunKey::Task(id.to_owned())) {
                return Err(Refusal::new(format!("task {id} is still running")));
            }
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| Refusal::not_found(format!("there is no task {id}")))?;
            task.resume()?;
            task.clone()
        };
        self.save_task(task.clone()).await;
        self.start_task(id, prompt.to_owned());
        Ok(task)
    }

    /// Cancels a running or waiting task (its CLI is stopped).
    pub async fn cancel_task(&self, scope: Option<&SessionKey>, id: &str) -> Result<Task, Refusal> {
        self.task_for(scope, id)?;
        let task = {
            let mut state = self.inner.state.locked();
            let task = state
                .tasks
                .get_mut(id)
                .ok_or_else(|| Refusal::not_found(format!("there is no task {id}")))?;
            task.cancel(Timestamp::now())?;
            let task = task.clone();
            state.answers.remove(id);
            task
        };
        self.stop_run(&RunKey::Task(id.to_owned()));
        self.save_task(task.clone()).await;
        Ok(task)
    }

    /// Deletes a finished task and its folder.
    pub async fn delete_task(&self, scope: Option<&SessionKey>, id: &str) -> Result<Task, Refusal> {
        let task = self.task_for(scope, id)?;
        task.deletable()?;
        self.forget_task(&task).await;
        Ok(task)
    }

    async fn forget_task(&self, task: &Task) {
        self.inner.state.locked().tasks.remove(&task.id);
        let id = task.id.clone();
        if let Err(error) = self.inner.store.call(move |c| store::delete_task(c, &id)).await {
            tracing::error!(task = task.id, "failed to delete a task: {error}");
        }
        let (workspace, id) = (self.workspace_of(task.parent.agent()), task.id.clone());
        match tokio::task::spawn_blocking(move || folder::remove(&workspace, &id)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(task = task.id, "{error}"),
            Err(error) => tracing::warn!(task = task.id, "failed to remove a task folder: {error}"),
        }
    }

    /// Keeps the newest `finished_tasks_kept` finished tasks of `parent`.
    async fn prune_finished(&self, parent: &SessionKey) {
        let keep = self.inner.config.finished_tasks_kept as usize;
        let mut finished: Vec<Task> =
            self.list_tasks(Some(parent)).into_iter().filter(|t| t.status.is_finished()).collect();
        if finished.len() <= keep {
            return;
        }
        finished.sort_by_key(|t| std::cmp::Reverse(t.finished_at.unwrap_or(t.created_at)));
        for old in finished.split_off(keep) {
            self.forget_task(&old).await;
        }
    }
}

fn answer_prompt(answer: &str) -> String {
    format!("Answer from the agent that started you: {answer}\n\nContinue the task.")
}
