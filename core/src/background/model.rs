//! What background work is: named sessions (a chat's own background
//! conversations, `/session`) and delegated tasks (work the agent hands off,
//! `ductorctl task create`), their states, and every transition between them
//! as a pure function, so the rules are unit-tested without I/O.
//!
//! A transition that is not allowed returns a [`Refusal`] saying why, which
//! reaches the user as is ("redowl has ended", "task 3f2a is not waiting").

use jiff::Timestamp;

use crate::model::SessionKey;

/// Why a transition was refused: the text reaches the user as is; the kind
/// is what a caller branches on (the gRPC status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub text: String,
}

/// What kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No such session or task (for this caller).
    NotFound,
    /// A per-chat limit is reached.
    Limit,
    /// The request is malformed or the state does not allow it.
    Refused,
}

impl Refusal {
    /// The state (or the request) does not allow it.
    pub fn new(text: impl Into<String>) -> Self {
        Self { kind: RefusalKind::Refused, text: text.into() }
    }

    /// No such entry.
    pub fn not_found(text: impl Into<String>) -> Self {
        Self { kind: RefusalKind::NotFound, text: text.into() }
    }

    /// A limit is reached.
    pub fn limit(text: impl Into<String>) -> Self {
        Self { kind: RefusalKind::Limit, text: text.into() }
    }
}

fn refuse<T>(text: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(text))
}

/// State of a named session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedState {
    /// A turn runs in the background.
    Running,
    /// Waiting for a follow-up (`@name …`).
    Idle,
    /// Ended by the user; kept for the listing, never run again.
    Ended,
}

impl NamedState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Ended => "ended",
        }
    }

    /// From the stored word (unknown words read as ended: never run again).
    pub fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "idle" => Self::Idle,
            _ => Self::Ended,
        }
    }
}

/// A named background session of one chat.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSession {
    /// The chat it belongs to (results go there).
    pub key: SessionKey,
    /// Unique within the chat (`redowl`).
    pub name: String,
    pub provider: String,
    pub model: String,
    pub effort: String,
    /// The provider session to resume; empty before the first result.
    pub session_id: String,
    pub state: NamedState,
    pub created_at: Timestamp,
    pub last_active: Timestamp,
    /// Turns finished.
    pub turns: u32,
    pub cost_usd: f64,
}

impl NamedSession {
    /// A follow-up starts a turn: only an idle session takes one.
    pub fn start_turn(&mut self, now: Timestamp) -> Result<(), Refusal> {
        match self.state {
            NamedState::Idle => {
                self.state = NamedState::Running;
                self.last_active = now;
                Ok(())
            }
            NamedState::Running => {
                refuse(format!("{} is still working on its last message", self.name))
            }
            NamedState::Ended => {
                refuse(format!("{} has ended; start a new one with /session", self.name))
            }
        }
    }

    /// The turn ended (answered or failed): idle again, unless it was ended meanwhile.
    pub fn finish_turn(&mut self, session_id: &str, cost_usd: f64, now: Timestamp) {
        if !session_id.is_empty() {
            self.session_id = session_id.to_owned();
        }
        self.cost_usd += cost_usd;
        self.turns += 1;
        self.last_active = now;
        if self.state == NamedState::Running {
            self.state = NamedState::Idle;
        }
    }

    /// Ends the session (its running turn, if any, is stopped by the caller).
    pub fn end(&mut self) -> Result<(), Refusal> {
        if self.state == NamedState::Ended {
            return refuse(format!("{} has already ended", self.name));
        }
        self.state = NamedState::Ended;
        Ok(())
    }

    /// After a restart: a turn that was running is lost (reported, never re-run).
    pub fn recover(&mut self) -> bool {
        let lost = self.state == NamedState::Running;
        if lost {
            self.state = NamedState::Idle;
        }
        lost
    }
}

/// State of a delegated task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Its run is going.
    Running,
    /// It asked its parent a question and waits for the answer.
    Waiting,
    /// Finished with a result.
    Done,
    /// Finished with an error.
    Failed,
    /// Stopped by the user or the parent.
    Cancelled,
    /// Its run was lost to a restart (reported, never re-run).
    Interrupted,
}

impl TaskStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// From the stored word (unknown words read as failed).
    pub fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "done" => Self::Done,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            _ => Self::Failed,
        }
    }

    /// Nothing runs and nothing waits.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Running | Self::Waiting)
    }
}

/// How a task competes for the chat's running slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Runs even when the chat's parallel limit is reached.
    Interactive,
    /// The default.
    Background,
    /// Yields: never takes the last free slot.
    Batch,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Background => "background",
            Self::Batch => "batch",
        }
    }

    /// From a word; unknown words are the default, as ductor does.
    pub fn parse(text: &str) -> Self {
        match text {
            "interactive" => Self::Interactive,
            "batch" => Self::Batch,
            _ => Self::Background,
        }
    }

    /// Whether a task of this priority may start with `running` of `limit`
    /// slots taken.
    pub fn may_start(self, running: usize, limit: usize) -> bool {
        match self {
            Self::Interactive => true,
            Self::Background => running < limit,
            Self::Batch => running + 1 < limit,
        }
    }
}

/// A task the agent delegated.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Short hex id (`3f2a9c01`), also its folder name.
    pub id: String,
    pub name: String,
    /// The chat whose agent created it (results and questions go there).
    pub parent: SessionKey,
    pub prompt: String,
    pub provider: String,
    pub model: String,
    pub effort: String,
    pub priority: Priority,
    pub status: TaskStatus,
    pub session_id: String,
    /// The open question, while waiting.
    pub question: String,
    /// The result (or the error) once finished.
    pub result: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub cost_usd: f64,
}

impl Task {
    /// A run of the task ended.
    pub fn finish_run(&mut self, ok: bool, text: &str, session_id: &str, now: Timestamp) {
        if !session_id.is_empty() {
            self.session_id = session_id.to_owned();
        }
        if self.status != TaskStatus::Running {
            return; // Cancelled or waiting meanwhile: the run's end changes nothing.
        }
        self.status = if ok { TaskStatus::Done } else { TaskStatus::Failed };
        self.result = text.to_owned();
        self.finished_at = Some(now);
    }

    /// The task's agent asks its parent `question`.
    pub fn ask(&mut self, question: &str) -> Result<(), Refusal> {
        if self.status != TaskStatus::Running {
            return refuse(format!("task {} is {}, not running", self.id, self.status.as_str()));
        }
        if question.trim().is_empty() {
            return refuse("the question is empty");
        }
        self.status = TaskStatus::Waiting;
        self.question = question.trim().to_owned();
        Ok(())
    }

    /// The parent answers: the task resumes (its session gets the answer).
    pub fn answer(&mut self) -> Result<String, Refusal> {
        if self.status != TaskStatus::Waiting {
            return refuse(format!(
                "task {} is {}, not waiting for an answer",
                self.id,
                self.status.as_str()
            ));
        }
        self.status = TaskStatus::Running;
        self.finished_at = None;
        Ok(std::mem::take(&mut self.question))
    }

    /// Resumes a finished (or interrupted) task with a new instruction, in
    /// its own provider session; a waiting one takes it as its answer.
    pub fn resume(&mut self) -> Result<(), Refusal> {
        if self.status == TaskStatus::Waiting {
            return self.answer().map(drop);
        }
        if !self.status.is_finished() {
            return refuse(format!("task {} is still running", self.id));
        }
        if self.session_id.is_empty() {
            return refuse(format!(
                "task {} has no session to resume (it ended before its CLI started one)",
                self.id
            ));
        }
        self.status = TaskStatus::Running;
        self.finished_at = None;
        self.result.clear();
        Ok(())
    }

    /// Cancels a task that runs or waits.
    pub fn cancel(&mut self, now: Timestamp) -> Result<(), Refusal> {
        if self.status.is_finished() {
            return refuse(format!("task {} has already {}", self.id, self.status.as_str()));
        }
        self.status = TaskStatus::Cancelled;
        self.finished_at = Some(now);
        Ok(())
    }

    /// Only a finished task may be deleted.
    pub fn deletable(&self) -> Result<(), Refusal> {
        if self.status.is_finished() {
            Ok(())
        } else {
            refuse(format!("task {} is {}: cancel it first", self.id, self.status.as_str()))
        }
    }

    /// After a restart: a running task is lost (reported, never re-run);
    /// a waiting one still waits.
    pub fn recover(&mut self, now: Timestamp) -> bool {
        let lost = self.status == TaskStatus::Running;
        if lost {
            self.status = TaskStatus::Interrupted;
            self.finished_at = Some(now);
        }
        lost
    }
}

const ADJECTIVES: &[&str] = &[
    "red", "swift", "calm", "bold", "quiet", "bright", "brave", "keen", "wild", "sly", "warm",
    "cool", "quick", "wise", "lucky", "noble", "sunny", "misty", "amber", "jade",
];
const NOUNS: &[&str] = &[
    "owl", "fox", "lynx", "hawk", "otter", "wolf", "heron", "finch", "badger", "seal", "raven",
    "hare", "crane", "moth", "bison", "newt", "wren", "koi", "yak", "elk",
];

/// An adjective+noun name (`redowl`) that `taken` does not hold; `seed`
/// picks where to start, so names are spread but tests can be exact.
pub fn generate_name(seed: u64, taken: &dyn Fn(&str) -> bool) -> String {
    let total = (ADJECTIVES.len() * NOUNS.len()) as u64;
    for step in 0..total {
        let n = (seed.wrapping_add(step.wrapping_mul(7919))) % total;
        let adjective = ADJECTIVES[(n as usize) / NOUNS.len()];
        let noun = NOUNS[(n as usize) % NOUNS.len()];
        let name = format!("{adjective}{noun}");
        if !taken(&name) {
            return name;
        }
    }
    format!("session{seed}")
}

/// A name the user gave: lowercase letters, digits, `-`, `_`, 1–32 long,
/// starting with a letter (so `@name` cannot be a provider's or a model's).
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
