//! Cron task folders: `workspace/cron_tasks/<name>/`, where each cron job (and
//! each `cron_task` webhook) runs as a fresh one-shot run, never inside a chat
//! session. The folder holds the rule files every CLI reads (`CLAUDE.md`,
//! `AGENTS.md`, `GEMINI.md`: made with ductor's block here, then kept in sync
//! by [`crate::rules`], the user's edits winning), `TASK_DESCRIPTION.md` (what to
//! do, written from the job's description) and `<name>_MEMORY.md` (the task's
//! own memory, created once and then owned by the agent).
//!
//! Deleting a job keeps its folder, so re-adding a job of the same name keeps
//! its memory.

use std::path::{Path, PathBuf};

use ductor_daemon::safe_fs::{SafeFsError, Tree};

use super::model::{InvalidDefinition, validate_name};

/// The folder holding all task folders, under the workspace.
pub const CRON_TASKS_DIR: &str = "cron_tasks";

/// The rule files written into each task folder.
pub use crate::rules::RULE_FILES;

/// Why a task folder could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TaskFolderError {
    /// The name is not a safe folder name.
    #[error(transparent)]
    Name(#[from] InvalidDefinition),
    /// Writing failed, or the folder (or a file in it) is a link or not what
    /// it should be: refused, never followed.
    #[error("prepare task folder: {0}")]
    Io(#[from] SafeFsError),
}

/// The folder of task `name` (not created).
pub fn folder(workspace: &Path, name: &str) -> Result<PathBuf, InvalidDefinition> {
    validate_name(name)?;
    Ok(workspace.join(CRON_TASKS_DIR).join(name))
}

/// The memory file name of task `name`.
pub fn memory_file(name: &str) -> String {
    format!("{name}_MEMORY.md")
}

/// Creates or refreshes the folder of task `name`: rule files made when it
/// has none (afterwards the rule sync owns them), `TASK_DESCRIPTION.md`
/// written from `title`/`description` when the file is missing, or replaced
/// when `replace` (a job given a new description), memory created once.
///
/// The folder is agent-writable and core is not sandboxed: no component is
/// followed if it is a link (the call fails instead), and files are replaced
/// by rename or created exclusively, never written through a planted link.
pub fn ensure(
    workspace: &Path,
    name: &str,
    title: &str,
    description: &str,
    replace: bool,
) -> Result<PathBuf, TaskFolderError> {
    let path = folder(workspace, name)?;
    let dir = Tree::root(workspace)?.dir_or_make(&format!("{CRON_TASKS_DIR}/{name}"), 0o700)?;
    dir.dir_or_make("scripts", 0o700)?;
    crate::rules::sync::seed_new(&dir, &rules_text(name))?;
    let task = task_description(title, description);
    if replace {
        dir.replace("TASK_DESCRIPTION.md", task.as_bytes(), 0o600)?;
    } else {
        dir.write_new("TASK_DESCRIPTION.md", task.as_bytes(), 0o600)?;
    }
    let memory = format!("# {title} — task memory\n\n(Nothing recorded yet.)\n");
    dir.write_new(&memory_file(name), memory.as_bytes(), 0o600)?;
    Ok(path)
}

fn task_description(title: &str, description: &str) -> String {
    let title = if title.trim().is_empty() { "Scheduled task" } else { title.trim() };
    format!(
        "# {title}\n\n## Goal\n\n{}\n\n## Output\n\nA short, user-facing result: what you found or did. \
         It is sent to the chat as it is.\n",
        if description.trim().is_empty() { "(No description given.)" } else { description.trim() }
    )
}

/// The rule text of a task folder.
pub fn rules_text(name: &str) -> String {
    let memory = memory_file(name);
    format!(
        "# ductor scheduled task: {name}\n\n\
         You are running unattended as a scheduled task of ductor, in your own folder.\n\
         Nobody is watching this run live: do the task, then answer with the result only.\n\n\
         - `TASK_DESCRIPTION.md` says what to do. Read it first.\n\
         - `{memory}` is this task's memory across runs: read it before you start and\n  \
           append what the next run needs to know (with date and time) before you finish.\n\
         - `scripts/` is yours for helper scripts.\n\
         - Your final answer is delivered to the user's chat as it is: keep it short and\n  \
           readable on a phone. Do not ask questions; nobody can answer them in this run.\n\n\
         ductor keeps this block up to date; notes of your own belong in `{memory}`.\n"
    )
}

/// The prompt of one run: the job's instruction plus how to use the folder.
/// `now_local` is the run's local date and time, e.g. "2026-05-01 09:00 (Europe/Berlin)".
pub fn enrich_instruction(name: &str, instruction: &str, now_local: &str) -> String {
    let memory = memory_file(name);
    let instruction = if instruction.trim().is_empty() {
        "Read TASK_DESCRIPTION.md and carry it out. Stay focused and finish the task neatly."
    } else {
        instruction.trim()
    };
    format!(
        "{instruction}\n\n\
         It is now {now_local}. Before you start, read {memory}. When you are done, \
         append to {memory} what the next run should know, with the date and time. \
         Return only the user-facing result text."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_folder_and_keeps_the_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir =
            ensure(tmp.path(), "hn-digest", "HN digest", "Summarise the top 10 stories", true)
                .unwrap();
        assert_eq!(dir, tmp.path().join("cron_tasks/hn-digest"));
        for file in RULE_FILES {
            assert!(
                std::fs::read_to_string(dir.join(file)).unwrap().contains("hn-digest_MEMORY.md")
            );
        }
        let task = std::fs::read_to_string(dir.join("TASK_DESCRIPTION.md")).unwrap();
        assert!(task.starts_with("# HN digest\n") && task.contains("Summarise the top 10 stories"));
        assert!(dir.join("scripts").is_dir());

        std::fs::write(dir.join("hn-digest_MEMORY.md"), "2026-05-01: seen story 123").unwrap();
        std::fs::write(dir.join("CLAUDE.md"), "edited").unwrap();
        ensure(tmp.path(), "hn-digest", "HN digest", "", false).unwrap();
        // A hook sharing the folder brings its own text: the job's stays.
        ensure(tmp.path(), "hn-digest", "Hook", "another description", false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("hn-digest_MEMORY.md")).unwrap(),
            "2026-05-01: seen story 123"
        );
        // Existing rule files are the rule sync's, not rewritten here.
        assert_eq!(std::fs::read_to_string(dir.join("CLAUDE.md")).unwrap(), "edited");
        assert_eq!(
            std::fs::read_to_string(dir.join("AGENTS.md")).unwrap(),
            crate::rules::fresh_file(&rules_text("hn-digest"))
        );
        // No new description: the agent's edits to the task file stay.
        assert_eq!(std::fs::read_to_string(dir.join("TASK_DESCRIPTION.md")).unwrap(), task);
    }

    #[test]
    fn refuses_unsafe_names() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            ensure(tmp.path(), "../escape", "x", "", false),
            Err(TaskFolderError::Name(_))
        ));
        assert!(!tmp.path().join("escape").exists());
    }

    #[test]
    fn instruction_is_enriched() {
        let prompt = enrich_instruction("daily", "", "2026-05-01 09:00 (UTC)");
        assert!(prompt.starts_with("Read TASK_DESCRIPTION.md"));
        assert!(prompt.contains("daily_MEMORY.md") && prompt.contains("2026-05-01 09:00 (UTC)"));
        assert!(
            enrich_instruction("daily", "Check the weather", "now")
                .starts_with("Check the weather\n")
        );
    }
}
