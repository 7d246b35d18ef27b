//! `[background]`: named sessions (`/session`) and delegated tasks
//! (`ductorctl task`), the work that keeps a chat free while it runs.

use serde::Deserialize;

use super::Invalid;

/// `[background]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackgroundConfig {
    /// Named sessions a chat may keep (running or idle).
    pub max_sessions_per_chat: u32,
    /// Background runs (named sessions and tasks) going at once in one chat;
    /// `interactive` tasks may exceed it.
    pub max_running_per_chat: u32,
    /// Longest turn of a named session, in seconds.
    pub session_timeout_seconds: u64,
    /// Longest run of a task, in seconds.
    pub task_timeout_seconds: u64,
    /// Finished tasks kept per chat (older ones are deleted with their folders).
    pub finished_tasks_kept: u32,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            max_sessions_per_chat: 10,
            max_running_per_chat: 5,
            session_timeout_seconds: 1800,
            task_timeout_seconds: 3600,
            finished_tasks_kept: 100,
        }
    }
}

impl BackgroundConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let positive = [
            ("background.max_sessions_per_chat", u64::from(self.max_sessions_per_chat)),
            ("background.max_running_per_chat", u64::from(self.max_running_per_chat)),
            ("background.session_timeout_seconds", self.session_timeout_seconds),
            ("background.task_timeout_seconds", self.task_timeout_seconds),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Invalid::new(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}
