//! The agent's workspace (`$DUCTOR_HOME/workspace`): seeded on start, and the
//! machine's [`Env`] port onto it.
//!
//! - `CLAUDE.md`, `AGENTS.md`, `GEMINI.md`: the rule files, one text for all
//!   three CLIs ([`rules_text`] inside ductor's managed block, the user's own
//!   rules around it), made and kept in sync by [`crate::rules`].
//! - `memory_system/MAINMEMORY.md`: user-owned, seeded once, never rewritten;
//!   appended to the system prompt of every new session.
//! - `output_to_user/`: where the agent puts files it sends with `<file:...>`.
//!
//! File tags are checked against `[agent].file_access` (workspace, home, all)
//! after resolving symlinks, so a link cannot smuggle a file out.

use std::path::{Path, PathBuf};

use ductor_daemon::config::FileAccess;
use ductor_daemon::safe_fs::{self, SafeFsError, Tree};

use crate::machine::{DirListing, Env};
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

ductor keeps the text between its markers up to date. The user's own rules
go outside that block, in any of CLAUDE.md, AGENTS.md and GEMINI.md (ductor
carries an edit of one to the others). What you learn goes into your memory
file, not here.

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
path, type and caption follow. Read it from that path. For a voice note or
other recording ductor may add a transcript: treat it as what the user said.
A large picture may have been resized for you; the original's path is given.

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

/// Longest main memory read into a system prompt or `/memory` (64 KiB).
pub const MEMORY_MAX_BYTES: u64 = 64 * 1024;
/// Largest file a `<file:>` tag may send (Telegram's bot upload limit).
pub const FILE_MAX_BYTES: u64 = 50 * 1024 * 1024;

/// Creates the workspace layout (the rule files are the rule sync's,
/// [`crate::rules`]). The workspace is agent-writable and core unconfined: a
/// linked folder is refused, a planted file never written through.
pub fn seed(workspace: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(workspace)?;
    let io = |e: SafeFsError| std::io::Error::other(e.to_string());
    let root = Tree::root(workspace).map_err(io)?;
    let memory = root.dir_or_make("memory_system", 0o700).map_err(io)?;
    root.dir_or_make("output_to_user", 0o700).map_err(io)?;
    memory.write_new("MAINMEMORY.md", MEMORY_SEED.as_bytes(), 0o600).map_err(io)?;
    Ok(())
}

/// Creates the main workspace's `memory_system/SHAREDMEMORY.md` (never
/// overwritten): what every agent knows, kept in their rule files.
pub fn seed_shared_memory(workspace: &Path) -> std::io::Result<()> {
    let io = |e: SafeFsError| std::io::Error::other(e.to_string());
    let memory = Tree::root(workspace).and_then(|r| r.dir_or_make("memory_system", 0o700));
    let memory = memory.map_err(io)?;
    memory
        .write_new(crate::rules::sync::SHARED_MEMORY_FILE, SHARED_SEED.as_bytes(), 0o600)
        .map_err(io)?;
    Ok(())
}

const SHARED_SEED: &str = "\
# Shared memory

Facts every agent should know (the main agent keeps this file; ductor copies
it into every agent's CLAUDE.md, AGENTS.md and GEMINI.md).
";

/// `memory_system/MAINMEMORY.md`.
pub fn memory_path(workspace: &Path) -> PathBuf {
    workspace.join("memory_system").join("MAINMEMORY.md")
}

/// The main memory: a regular file of at most [`MEMORY_MAX_BYTES`], never
/// through a link, never blocking on a FIFO; `None` (logged) otherwise.
pub fn read_memory(workspace: &Path) -> Option<String> {
    let read = Tree::root(workspace)
        .and_then(|root| root.dir("memory_system"))
        .and_then(|dir| dir.read("MAINMEMORY.md", MEMORY_MAX_BYTES));
    match read {
        Ok(bytes) => bytes.map(|b| String::from_utf8_lossy(&b).into_owned()),
        Err(error) => {
            tracing::warn!(%error, "the main memory was not read");
            None
        }
    }
}

/// The folder `relative` of the workspace: subfolders and regular files,
/// hidden entries and links left out; nothing is followed (`safe_fs`).
pub fn list_dir(workspace: &Path, relative: &str) -> Result<DirListing, String> {
    let root = Tree::root(workspace).map_err(|e| e.to_string())?;
    let dir =
        if relative.is_empty() { root } else { root.dir(relative).map_err(|e| e.to_string())? };
    let mut listing =
        DirListing { path: dir.path().display().to_string(), ..DirListing::default() };
    for entry in dir.entries().map_err(|e| e.to_string())? {
        if entry.name.starts_with('.') || entry.is_link {
            continue;
        }
        if entry.is_dir {
            listing.dirs.push(entry.name);
        } else if entry.is_file {
            listing.files.push((entry.name, entry.size));
        }
    }
    listing.dirs.sort();
    listing.files.sort();
    if relative.is_empty() {
        // What the agent made for the user comes first.
        if let Some(at) = listing.dirs.iter().position(|d| d == "output_to_user") {
            let out = listing.dirs.remove(at);
            listing.dirs.insert(0, out);
        }
    }
    Ok(listing)
}

/// The machine's environment on a real workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceEnv {
    workspace: PathBuf,
    /// Sub-agents' workspaces by name.
    agents: std::collections::HashMap<String, PathBuf>,
    /// The user's home directory (canonical), for `file_access = "home"`.
    home: Option<PathBuf>,
    access: FileAccess,
    /// Never sent, whatever `file_access` allows: ductor's home (but the
    /// workspace), the run directory, the CLIs' credentials.
    denied: Vec<PathBuf>,
}

impl WorkspaceEnv {
    /// Files may come from the roots `access` allows, minus `denied` trees
    /// (ductor's home and run directory: the workspace is let through).
    pub fn new(
        workspace: PathBuf,
        access: FileAccess,
        home: Option<PathBuf>,
        denied: &[PathBuf],
    ) -> Self {
        let home = home.as_deref().map(canonical);
        let mut denied: Vec<PathBuf> = denied.iter().map(|p| canonical(p)).collect();
        if let Some(home) = &home {
            for secret in CLI_SECRETS {
                denied.push(home.join(secret));
            }
        }
        Self { workspace, agents: Default::default(), home, access, denied }
    }

    /// Sub-agent `name` works in `workspace` (its memory, its files).
    pub fn with_agent(mut self, name: &str, workspace: PathBuf) -> Self {
        self.agents.insert(name.to_owned(), workspace);
        self
    }

    /// The workspace of `agent` (the main one for `main` or an unknown name).
    fn workspace_of(&self, agent: &str) -> &Path {
        self.agents.get(agent).unwrap_or(&self.workspace)
    }

    /// The roots `file_access` allows `agent`.
    fn roots_for(&self, agent: &str) -> Vec<PathBuf> {
        match self.access {
            FileAccess::All => vec![PathBuf::from("/")],
            FileAccess::Home => self.home.iter().cloned().collect(),
            FileAccess::Workspace => vec![canonical(self.workspace_of(agent))],
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Credentials of the CLIs and the user under their home, never sent.
const CLI_SECRETS: [&str; 8] = [
    ".ssh",
    ".gnupg",
    ".claude/.credentials.json",
    ".claude.json",
    ".codex/auth.json",
    ".gemini/oauth_creds.json",
    ".config/gcloud",
    ".aws",
];

impl Env for WorkspaceEnv {
    fn set_file_access(&mut self, access: FileAccess) {
        self.access = access;
    }

    fn new_id(&mut self) -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    fn read_memory(&self, agent: &str) -> Option<String> {
        read_memory(self.workspace_of(agent))
    }

    fn list_dir(&self, agent: &str, relative: &str) -> Result<DirListing, String> {
        list_dir(self.workspace_of(agent), relative)
    }

    fn upgrade_report(&self) -> String {
        let exe = std::env::current_exe().unwrap_or_default();
        crate::install::report(&exe, env!("CARGO_PKG_VERSION"))
    }

    fn resolve_file(&self, agent: &str, path: &str) -> Result<Attachment, String> {
        let raw = Path::new(path);
        if !raw.is_absolute() {
            return Err("not an absolute path".into());
        }
        let real = std::fs::canonicalize(raw).map_err(|_| "no such file".to_owned())?;
        if !self.roots_for(agent).iter().any(|root| real.starts_with(root)) {
            return Err("outside the allowed folders".into());
        }
        let workspace = std::fs::canonicalize(self.workspace_of(agent)).unwrap_or_default();
        if !real.starts_with(&workspace) && self.denied.iter().any(|d| real.starts_with(d)) {
            return Err("ductor's own files and credentials are never sent".into());
        }
        let (identity, size) = safe_fs::identify(&real, FILE_MAX_BYTES).map_err(|e| e.what)?;
        let file_name =
            real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (mime, is_image) = mime_for(&file_name);
        Ok(Attachment {
            path: real.to_string_lossy().into_owned(),
            mime_type: mime.to_owned(),
            is_image,
            file_name,
            identity: Some(identity),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_makes_the_layout_and_keeps_memory() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        seed(&ws).unwrap();
        std::fs::write(memory_path(&ws), "mine").unwrap();
        seed(&ws).unwrap();
        assert_eq!(std::fs::read_to_string(memory_path(&ws)).unwrap(), "mine");
        assert!(ws.join("output_to_user").is_dir());
        assert!(rules_text().contains(AUTOMATION_MARKER));
        assert!(
            !crate::rules::is_legacy(&rules_text()),
            "today's text is not mistaken for an old one"
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_outside_the_workspace_are_refused_even_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        seed(&ws).unwrap();
        let inside = ws.join("output_to_user/a.png");
        std::fs::write(&inside, b"x").unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, b"s").unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("output_to_user/link.txt")).unwrap();
        let env = WorkspaceEnv::new(ws.clone(), FileAccess::Workspace, None, &[]);
        let ok = env.resolve_file("main", inside.to_str().unwrap()).unwrap();
        assert!(ok.is_image);
        assert_eq!(ok.mime_type, "image/png");
        assert!(env.resolve_file("main", outside.to_str().unwrap()).is_err());
        let link = ws.join("output_to_user/link.txt");
        assert!(env.resolve_file("main", link.to_str().unwrap()).is_err());
        assert!(env.resolve_file("main", "relative.txt").is_err());
    }

    /// A ductor home with a secret and a seeded workspace, beside a user
    /// home with an SSH key and a note: (guard, ductor home, workspace, user home).
    fn home_with_secrets() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("ductor");
        let ws = home.join("workspace");
        seed(&ws).unwrap();
        std::fs::create_dir_all(home.join("secrets")).unwrap();
        std::fs::write(home.join("secrets/admin.token"), "t").unwrap();
        let user = dir.path().join("user");
        std::fs::create_dir_all(user.join(".ssh")).unwrap();
        std::fs::write(user.join(".ssh/id_ed25519"), "k").unwrap();
        std::fs::write(user.join("notes.txt"), "n").unwrap();
        (dir, home, ws, user)
    }

    #[test]
    fn a_reloaded_file_access_moves_the_roots_and_keeps_the_denials() {
        let (_dir, home, ws, user) = home_with_secrets();
        let mut env = WorkspaceEnv::new(
            ws.clone(),
            FileAccess::Workspace,
            Some(user.clone()),
            std::slice::from_ref(&home),
        );
        let notes = user.join("notes.txt");
        assert!(
            env.resolve_file("main", notes.to_str().unwrap()).is_err(),
            "outside the workspace"
        );
        env.set_file_access(FileAccess::Home);
        assert!(
            env.resolve_file("main", notes.to_str().unwrap()).is_ok(),
            "the home is allowed now"
        );
        let key = user.join(".ssh/id_ed25519");
        assert!(
            env.resolve_file("main", key.to_str().unwrap()).is_err(),
            "credentials stay denied"
        );
        env.set_file_access(FileAccess::All);
        let token = home.join("secrets/admin.token");
        assert!(
            env.resolve_file("main", token.to_str().unwrap()).is_err(),
            "ductor's home stays denied"
        );
        env.set_file_access(FileAccess::Workspace);
        assert!(
            env.resolve_file("main", notes.to_str().unwrap()).is_err(),
            "back to the workspace"
        );
    }

    #[test]
    fn with_file_access_all_ductors_home_and_credentials_are_still_refused() {
        let (_dir, home, ws, user) = home_with_secrets();
        std::fs::write(ws.join("output_to_user/ok.txt"), "o").unwrap();
        let env = WorkspaceEnv::new(
            ws.clone(),
            FileAccess::All,
            Some(user.clone()),
            std::slice::from_ref(&home),
        );
        let refused = env.resolve_file("main", home.join("secrets/admin.token").to_str().unwrap());
        assert!(refused.unwrap_err().contains("never sent"));
        assert!(env.resolve_file("main", user.join(".ssh/id_ed25519").to_str().unwrap()).is_err());
        assert!(env.resolve_file("main", user.join("notes.txt").to_str().unwrap()).is_ok());
        let ok =
            env.resolve_file("main", ws.join("output_to_user/ok.txt").to_str().unwrap()).unwrap();
        assert!(ok.identity.is_some() && ok.size == 1, "the workspace is let through, identified");
    }

    #[test]
    fn planted_memory_links_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        seed(&ws).unwrap();
        let secret = dir.path().join("admin.token");
        std::fs::write(&secret, "TOPSECRET").unwrap();
        std::fs::remove_file(memory_path(&ws)).unwrap();
        std::os::unix::fs::symlink(&secret, memory_path(&ws)).unwrap();
        assert_eq!(read_memory(&ws), None, "a link is not read");
        std::fs::remove_file(memory_path(&ws)).unwrap();
        nix::unistd::mkfifo(&memory_path(&ws), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_memory(&ws), None, "a FIFO neither read nor waited on");
    }
}
