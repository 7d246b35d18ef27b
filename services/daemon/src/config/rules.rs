//! `[rules]`: how core keeps the rule files (`CLAUDE.md`, `AGENTS.md`,
//! `GEMINI.md`) of the workspace and of every task folder in sync.

use serde::Deserialize;

use super::Invalid;

/// `[rules]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Seconds between two sync passes (each costs a `stat` per rule file).
    pub sync_interval_seconds: u64,
    /// Largest rule file read, in bytes; a bigger one is logged and left alone.
    pub max_file_bytes: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self { sync_interval_seconds: 10, max_file_bytes: 256 * 1024 }
    }
}

impl RulesConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !(1..=3600).contains(&self.sync_interval_seconds) {
            return Err(Invalid::new("rules.sync_interval_seconds", "must be between 1 and 3600"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_file_bytes) {
            return Err(Invalid::new("rules.max_file_bytes", "must be between 1024 and 16777216"));
        }
        Ok(())
    }
}
