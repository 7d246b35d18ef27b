//! `[skills]`: skill sync between `workspace/skills`, the ductor-owned CLI
//! homes and the operator's own CLI skill directories (done by the runner).

use serde::Deserialize;

use super::Invalid;

/// Longest allowed sync interval, in seconds.
const MAX_INTERVAL_SECONDS: u64 = 3600;

/// `[skills]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkillsConfig {
    /// Sync skills at all.
    pub sync: bool,
    /// Also link workspace skills into the operator's own CLI skill
    /// directories (`~/.claude/skills`, ...). Off by default: the operator's
    /// CLI runs unconfined, and workspace skills are written by agents, so a
    /// prompt-injected agent could plant a skill the operator's CLI would
    /// load outside the sandbox. Providers with `state = "operator"` always
    /// get the links (their CLI home is the operator's).
    pub export_to_operator: bool,
    /// Seconds between two sync passes.
    pub interval_seconds: u64,
}

impl Default for SkillsConfig {
    fn default() -> Self {
        Self { sync: true, export_to_operator: false, interval_seconds: 10 }
    }
}

impl SkillsConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !(1..=MAX_INTERVAL_SECONDS).contains(&self.interval_seconds) {
            return Err(Invalid::new(
                "skills.interval_seconds",
                format!("must be between 1 and {MAX_INTERVAL_SECONDS}"),
            ));
        }
        Ok(())
    }
}
