//! The agent's workspace (`$DUCTOR_HOME/workspace`): seeded on start, and the
//! machine's [`Env`] port onto it.
//!
//! - `CLAUDE.md`, `AGENTS.md`, `GEMINI.md`: framework-managed rule files, one
//!   text for all three CLIs, rewritten whenever it differs (so an upgrade
//!   refreshes them). Edits belong in MAINMEMORY.md, not here.
//! - `memory_system/MAINMEMORY.md`: user-owned, seeded once, never rewritten;
//!   appended to the system prompt of every new session.
//! - `output_to_user/`: where the agent puts files it sends with `<file:...>`.
//!
//! File tags are checked against `[agent].file_access` (workspace, home, all)
//! after resolving symlinks, so a link cannot smuggle a file out.

use std::path::{Path, PathBuf};

use ductor_daemon::config::FileAccess;

use crate::machine::Env;
use crate::markup::mime_for;
use crate::model::Attachment;

/// Marker line between the framework text and the automation section.
pub const AUTOMATION_MARKER: &str = "<!-- ductor:automation -->";

/// The rule text written to `CLAUDE.md`, `AGENTS.md` and `GEMINI.md`.
pub fn rules_text() -> String {
    format!(
        "\
# ductor workspace

You are running inside **ductor**: the user talks to you from a chat app
(Telegram, Matrix) or a terminal, and ductor runs you (the official CLI)
headless in this directory. Each message you get is one turn; your final
answer is sent back to the chat. Keep answers readable on a phone: short
paragraphs, no wide tables.

This file is managed by ductor and rewritten on upgrade. Do not edit it;
put what you learn into your memory file instead.

## Memory

`memory_system/MAINMEMORY.md` is your long-term memory. It is added to your
system prompt whenever a new session starts. Keep it short and current:
facts about the user, their projects and preferences, decisions made. Update
it quietly when you learn something worth keeping; never paste secrets into it.

## Sending files

Put files meant for the user in `output_to_user/` and mention them in your
final answer as a tag on its own: `<file:/absolute/path/to/file.png>`.
ductor removes the tag and sends the file. Only files inside the allowed
folders are sent (by default: this workspace); other paths are refused.

## Buttons

To offer choices, end your answer with button markers: `[button:Yes]
[button:No]`. Markers on one line form one row. When the user presses a
button, its label comes back to you as their next message.

## Incoming files

A message starting with `[INCOMING FILE]` means the user sent a file; its
path, type and caption follow. Read it from that path.

## Environment

`DUCTOR_TRANSPORT`, `DUCTOR_CHAT_ID` and `DUCTOR_TOPIC_ID` say which chat the
current turn belongs to.

{AUTOMATION_MARKER}
{automation}
{background}",
        automation = crate::automation::wiring::AGENT_RULES,
        background = crate::background::AGENT_RULES,
    )
}

const MEMORY_SEED: &str = "\
# Main memory

Facts worth remembering across sessions. The agent keeps this file current;
you may edit it too.

## About the user

## Projects

## Preferences
";

/// Creates the workspace layout and refreshes the rule files.
pub fn seed(workspace: &Path, rules: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(workspace.join("memory_system"))?;
    std::fs::create_dir_all(workspace.join("output_to_user"))?;
    for name in ["CLAUDE.md", "AGENTS.md", "GEMINI.md"] {
        let path = workspace.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != rules {
            std::fs::write(&path, rules)?;
        }
    }
    let memory = memory_path(workspace);
    if !memory.exists() {
        std::fs::write(&memory, MEMORY_SEED)?;
    }
    Ok(())
}

/// `memory_system/MAINMEMORY.md`.
pub fn memory_path(workspace: &Path) -> PathBuf {
    workspace.join("memory_system").join("MAINMEMORY.md")
}

/// The machine's environment on a real workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceEnv {
    workspace: PathBuf,
    roots: Vec<PathBuf>,
}

impl WorkspaceEnv {
    /// Files may come from the roots `access` allows.
    pub fn new(workspace: PathBuf, access: FileAccess, home: Option<PathBuf>) -> Self {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let roots = match access {
            FileAccess::All => vec![PathBuf::from("/")],
            FileAccess::Home => home.map(|h| vec![canonical(&h)]).unwrap_or_default(),
            FileAccess::Workspace => vec![canonical(&workspace)],
        };
        Self { workspace, roots }
    }
}

impl Env for WorkspaceEnv {
    fn new_id(&mut self) -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    fn read_memory(&self) -> Option<String> {
        std::fs::read_to_string(memory_path(&self.workspace)).ok()
    }

    fn resolve_file(&self, path: &str) -> Result<Attachment, String> {
        let raw = Path::new(path);
        if !raw.is_absolute() {
            return Err("not an absolute path".into());
        }
        let real = std::fs::canonicalize(raw).map_err(|_| "no such file".to_owned())?;
        if !self.roots.iter().any(|root| real.starts_with(root)) {
            return Err("outside the allowed folders".into());
        }
        if !real.is_file() {
            return Err("not a regular file".into());
        }
        let file_name =
            real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (mime, is_image) = mime_for(&file_name);
        Ok(Attachment {
            path: real.to_string_lossy().into_owned(),
            mime_type: mime.to_owned(),
            is_image,
            file_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_refreshes_rules_and_keeps_memory() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        seed(&ws, "v1").unwrap();
        std::fs::write(memory_path(&ws), "mine").unwrap();
        std::fs::write(ws.join("AGENTS.md"), "edited").unwrap();
        seed(&ws, "v2").unwrap();
        for name in ["CLAUDE.md", "AGENTS.md", "GEMINI.md"] {
            assert_eq!(std::fs::read_to_string(ws.join(name)).unwrap(), "v2");
        }
        assert_eq!(std::fs::read_to_string(memory_path(&ws)).unwrap(), "mine");
        assert!(ws.join("output_to_user").is_dir());
        assert!(rules_text().contains(AUTOMATION_MARKER));
    }

    #[cfg(unix)]
    #[test]
    fn files_outside_the_workspace_are_refused_even_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        seed(&ws, "r").unwrap();
        let inside = ws.join("output_to_user/a.png");
        std::fs::write(&inside, b"x").unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, b"s").unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("output_to_user/link.txt")).unwrap();
        let env = WorkspaceEnv::new(ws.clone(), FileAccess::Workspace, None);
        let ok = env.resolve_file(inside.to_str().unwrap()).unwrap();
        assert!(ok.is_image);
        assert_eq!(ok.mime_type, "image/png");
        assert!(env.resolve_file(outside.to_str().unwrap()).is_err());
        let link = ws.join("output_to_user/link.txt");
        assert!(env.resolve_file(link.to_str().unwrap()).is_err());
        assert!(env.resolve_file("relative.txt").is_err());
    }
}
