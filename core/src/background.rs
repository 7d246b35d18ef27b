//! Background work: what keeps a chat free while long work runs.
//!
//! - Named sessions ([`model::NamedSession`]): `/session <prompt>` starts a
//!   conversation of its own (its own provider session, provider and model)
//!   that runs beside the chat; `@name <text>` continues it; its answers come
//!   to the chat with its name on them. `/sessions` lists and ends them.
//! - Delegated tasks ([`model::Task`]): the agent hands work off with
//!   `ductorctl task create` (the [`grpc`] `Tasks` service, scoped by the
//!   chat's agent credential); a task runs in its own folder, may ask its
//!   parent a question and wait for the answer, and its result is posted to
//!   the chat and injected into the parent's session. `/tasks` lists them.
//!
//! [`engine`] owns the state (in memory and in `state.db`, [`store`]) and the
//! runs; it reaches the rest of core only through automation's narrow port
//! (one-shot runs with resume, durable delivery, injection). The state
//! machine never waits on it: chat commands come here as
//! `Effect::Background` and the driver sends the answer.
//!
//! A run that core or the runner lost (a restart) is reported as
//! interrupted and never re-run; idle sessions and waiting tasks survive.

mod chat;
pub mod engine;
mod folder;
pub mod grpc;
mod import;
pub mod model;
pub mod store;
mod tasks;

pub use tasks::TaskRequest;

/// The rule text of a task folder (`tasks/<id>/`), inside its managed block.
pub(crate) use folder::TASK_RULES;

use crate::model::{ButtonGrid, SessionKey};

/// The background section of the workspace rule files: how the agent hands
/// long work off so the chat stays free.
pub const AGENT_RULES: &str = "\
## Background tasks

For work that takes long (a refactor, a long research, a test suite) and does
not need the user meanwhile, delegate it so this chat stays free:

- `ductorctl task create --name fix-tests \"What to do, in full: the goal, the
  files, what done looks like\"` starts a background agent in its own folder
  (`tasks/<id>/`, with a TASKMEMORY.md) and its own session; it does not see
  this conversation, so say everything it needs. Options: `--provider`,
  `--model`, `--effort`, `--priority interactive` (start even when the chat's
  limit of running background work is reached).
- Tell the user you delegated it and end your turn. When the task finishes,
  its result is posted to the chat and comes to you as a message; continue
  from it then.
- A task may ask you something: the question comes to you as a message.
  Answer with `ductorctl task answer <id> \"…\"` (ask the user first when only
  they know).
- `ductorctl task resume <id> \"…\"` continues a finished, failed or
  interrupted task with a new instruction in its own session and folder.
- `ductorctl task list`, `task show <id>`, `task cancel <id>`,
  `task delete <id>`. The user sees them with `/tasks`.
";

/// A chat command or button for background work (parsed by the machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackgroundRequest {
    /// `/session [@provider|@model] <prompt>`: a new named session with the
    /// provider and model resolved by the machine.
    NewSession {
        /// Provider (the chat's when not given).
        provider: String,
        /// Model (may be empty: the provider's default).
        model: String,
        /// Effort (the chat's).
        effort: String,
        /// The first prompt.
        prompt: String,
    },
    /// `@name <text>` or `/session @name <text>`: a follow-up.
    FollowUp {
        /// The session.
        name: String,
        /// The prompt.
        text: String,
    },
    /// `/sessions`; the machine's own text (the chat's provider sessions) follows.
    ListSessions(String),
    /// A session's "End" button.
    EndSession(String),
    /// `/stop @name`: its running turn and queued follow-ups (it stays, idle).
    StopSession(String),
    /// `/sessions`' "End all" button.
    EndAll,
    /// `/tasks`, or its "Refresh" button.
    ListTasks,
    /// A task's "Cancel" button.
    CancelTask(String),
    /// A finished task's "Delete" button.
    DeleteTask(String),
    /// `/stop_all`: every named session and task of every chat.
    StopEverything,
}

/// The answer to a [`BackgroundRequest`]: a notice, or a menu when
/// `selector` names one (a later menu with the same id replaces it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackgroundReply {
    /// Markdown.
    pub text: String,
    /// Buttons, when it is a menu.
    pub buttons: ButtonGrid,
    /// The menu's id.
    pub selector: Option<String>,
}

impl BackgroundReply {
    /// A plain notice.
    pub fn notice(text: impl Into<String>) -> Self {
        Self { text: text.into(), ..Self::default() }
    }
}

/// The names of a chat's live (not ended) sessions, for `@name` routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNames {
    /// The chat.
    pub key: SessionKey,
    /// Its running and idle sessions.
    pub names: Vec<String>,
}
