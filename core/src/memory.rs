//! Periodic compaction of the agent's long-term memory (`[memory]`): once
//! `memory_system/MAINMEMORY.md` grows past `compaction_trigger_lines`, a
//! one-shot run (no chat session, the workspace as its folder) asks the
//! agent to rewrite it to about `compaction_target_lines`, keeping recent
//! entries verbatim. The check is a bounded read every
//! `compaction_check_seconds`, off every turn's path; a file the agent left
//! as long as it was is not compacted again until it changes.

use std::path::PathBuf;
use std::time::Duration;

use ductor_daemon::config::MemoryConfig;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::driver::CoreHandle;
use crate::runner::OneshotSpec;

/// The agent's answer when the file needs no change.
pub const COMPACT_TOKEN: &str = "COMPACT_NOOP";

/// The compaction prompt for a file of `lines` lines.
pub fn compaction_prompt(config: &MemoryConfig, lines: usize) -> String {
    format!(
        "## MEMORY COMPACTION (from ductor, not from the user)\n\n\
         memory_system/MAINMEMORY.md has {lines} lines, more than {trigger}. Rewrite it in \
         place to at most about {target} lines: merge duplicates, drop what is outdated or no \
         longer true, keep every fact about the user that still matters, keep its headings, and \
         keep entries from the last {keep} days as they are. Never add secrets. When it needs \
         no change, reply with exactly: {COMPACT_TOKEN}",
        trigger = config.compaction_trigger_lines,
        target = config.compaction_target_lines,
        keep = config.compaction_keep_days,
    )
}

/// Checks the memory file every `compaction_check_seconds` until shutdown.
pub async fn compaction_loop(
    core: CoreHandle,
    workspace: PathBuf,
    config: MemoryConfig,
    shutdown: CancellationToken,
) {
    if config.compaction_trigger_lines == 0 {
        return;
    }
    let every = Duration::from_secs(config.compaction_check_seconds);
    let mut last_seen: Option<[u8; 32]> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(text) = crate::workspace::read_memory(&workspace) else { continue };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let lines = text.lines().count();
        if lines <= config.compaction_trigger_lines as usize || last_seen == Some(digest) {
            continue;
        }
        tracing::info!(
            lines,
            trigger = config.compaction_trigger_lines,
            "compacting the main memory"
        );
        let spec = OneshotSpec {
            prompt: compaction_prompt(&config, lines),
            labels: vec![("kind".into(), "memory_compaction".into())],
            ..OneshotSpec::default()
        };
        let result = core.run_oneshot(spec).await;
        let after = crate::workspace::read_memory(&workspace).unwrap_or_default();
        last_seen = Some(Sha256::digest(after.as_bytes()).into());
        let after_lines = after.lines().count();
        if !result.ok {
            tracing::warn!(error = result.error_message, "the main memory compaction failed");
        } else if after_lines > config.compaction_trigger_lines as usize {
            tracing::warn!(
                before = lines,
                after = after_lines,
                "the main memory is still over its cap after compaction"
            );
        } else {
            tracing::info!(before = lines, after = after_lines, "the main memory was compacted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_names_the_sizes_and_the_token() {
        let prompt = compaction_prompt(&MemoryConfig::default(), 95);
        assert!(prompt.contains("has 95 lines, more than 70"));
        assert!(prompt.contains("about 40 lines") && prompt.contains("last 14 days"));
        assert!(prompt.ends_with(COMPACT_TOKEN));
    }
}
