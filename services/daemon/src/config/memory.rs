//! `[memory]`: upkeep of the agent's long-term memory
//! (`memory_system/MAINMEMORY.md`): a flush turn before a session's context
//! is compacted or reset, a periodic compaction of the file, and a
//! memory-check hint every few messages.

use serde::Deserialize;

use super::Invalid;

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Give the agent a silent turn to save what matters into its memory
    /// before its session is reset (`/new`, `/reset`, an idle or daily
    /// reset) or compacted (`/compact`, or after the CLI compacted itself).
    pub flush: bool,
    /// At most one flush per chat within this many seconds.
    pub flush_dedup_seconds: u64,
    /// Rewrite MAINMEMORY.md shorter once it has more lines than this; 0 = never.
    pub compaction_trigger_lines: u32,
    /// The length a compaction aims at, in lines.
    pub compaction_target_lines: u32,
    /// Entries younger than this many days are kept verbatim by a compaction.
    pub compaction_keep_days: u32,
    /// How often the file's length is checked, in seconds.
    pub compaction_check_seconds: u64,
    /// Every this many messages of a session, remind the agent to update its
    /// memory; 0 = never.
    pub check_every_messages: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            flush: true,
            flush_dedup_seconds: 300,
            compaction_trigger_lines: 70,
            compaction_target_lines: 40,
            compaction_keep_days: 14,
            compaction_check_seconds: 3600,
            check_every_messages: 6,
        }
    }
}

impl MemoryConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.compaction_trigger_lines > 0 {
            if self.compaction_target_lines == 0
                || self.compaction_target_lines >= self.compaction_trigger_lines
            {
                return Err(Invalid::new(
                    "memory.compaction_target_lines",
                    "must be greater than 0 and smaller than compaction_trigger_lines",
                ));
            }
            if self.compaction_check_seconds == 0 {
                return Err(Invalid::new(
                    "memory.compaction_check_seconds",
                    "must be greater than 0",
                ));
            }
        }
        Ok(())
    }
}
