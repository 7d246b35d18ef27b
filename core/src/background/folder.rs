//! A task's folder, `workspace/tasks/<id>/`: created with its memory file and
//! rule files, and removed when the task is deleted.
//!
//! The workspace is agent-writable and core is not sandboxed, so nothing here
//! follows a link: every component below the workspace is opened with
//! `O_NOFOLLOW` relative to its parent's descriptor, files are created with
//! `O_EXCL`, and removal walks descriptors with `unlinkat`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Why a task folder could not be made or removed.
#[derive(Debug, thiserror::Error)]
#[error("task folder {path}: {action}: {source}")]
pub struct FolderError {
    path: String,
    action: &'static str,
    #[source]
    source: nix::Error,
}

/// The rules a task's agent gets (as `CLAUDE.md`, `AGENTS.md`, `GEMINI.md`).
pub(crate) const TASK_RULES: &str = "\
# Task agent rules

You are a background task started by the chat's agent; nobody watches you work.
Work only on the task below, in this folder where you can, and keep notes of what
you did and found in TASKMEMORY.md (it survives when you are resumed).

- When you need a decision you cannot make yourself, ask the agent that started you:
  `ductorctl task ask \"your question\"`, then end your turn at once. You are
  resumed with the answer as your next message.
- Your last message is your result: it is posted to the chat and given to the
  agent that started you. Make it complete and short.
";

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY.union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

fn failed(path: &Path, action: &'static str) -> impl FnOnce(nix::Error) -> FolderError {
    let path = path.display().to_string();
    move |source| FolderError { path, action, source }
}

/// `workspace/tasks/<id>/` with TASKMEMORY.md and the rule files; the folder
/// must not exist yet. Returns its path.
pub fn prepare(
    workspace: &Path,
    id: &str,
    name: &str,
    prompt: &str,
) -> Result<PathBuf, FolderError> {
    let folder = workspace.join("tasks").join(id);
    let root = open(workspace, DIR_FLAGS.difference(OFlag::O_NOFOLLOW), Mode::empty())
        .map_err(failed(workspace, "open the workspace"))?;
    let tasks = open_or_make(&root, "tasks").map_err(failed(&folder, "open tasks/"))?;
    mkdirat(tasks.as_fd(), id, Mode::from_bits_truncate(0o700))
        .map_err(failed(&folder, "create the folder"))?;
    let dir = openat(tasks.as_fd(), id, DIR_FLAGS, Mode::empty())
        .map_err(failed(&folder, "open the folder"))?;
    let memory = format!("# {name}\n\n## Task\n\n{prompt}\n\n## Notes\n\n");
    let rules = crate::rules::fresh_file(TASK_RULES);
    for (file, text) in [
        ("TASKMEMORY.md", memory.as_str()),
        ("CLAUDE.md", rules.as_str()),
        ("AGENTS.md", rules.as_str()),
        ("GEMINI.md", rules.as_str()),
    ] {
        create_file(&dir, file, text).map_err(failed(&folder.join(file), "write"))?;
    }
    Ok(folder)
}

fn open_or_make(parent: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::Error::EEXIST) => {}
        Err(error) => return Err(error),
    }
    openat(parent.as_fd(), name, DIR_FLAGS, Mode::empty())
}

fn create_file(dir: &OwnedFd, name: &str, text: &str) -> nix::Result<()> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir.as_fd(), name, flags, Mode::from_bits_truncate(0o600))?;
    let mut bytes = text.as_bytes();
    while !bytes.is_empty() {
        let written = nix::unistd::write(&fd, bytes)?;
        bytes = &bytes[written..];
    }
    Ok(())
}

/// Removes `workspace/tasks/<id>/` and everything in it, links as links.
pub fn remove(workspace: &Path, id: &str) -> Result<(), FolderError> {
    let folder = workspace.join("tasks").join(id);
    let root = open(workspace, DIR_FLAGS.difference(OFlag::O_NOFOLLOW), Mode::empty())
        .map_err(failed(workspace, "open the workspace"))?;
    let tasks = match openat(root.as_fd(), "tasks", DIR_FLAGS, Mode::empty()) {
        Ok(tasks) => tasks,
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(error) => return Err(failed(&folder, "open tasks/")(error)),
    };
    remove_tree(&tasks, id, 0).map_err(failed(&folder, "remove"))
}

/// Removes `name` inside `parent`: a directory's contents first (never
/// following a link), anything else as an entry.
fn remove_tree(parent: &OwnedFd, name: &str, depth: usize) -> nix::Result<()> {
    let dir = match openat(parent.as_fd(), name, DIR_FLAGS, Mode::empty()) {
        Ok(dir) => dir,
        // Not a directory (or a link): remove the entry itself.
        Err(nix::Error::ENOTDIR | nix::Error::ELOOP) => {
            return unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir);
        }
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(error) => return Err(error),
    };
    if depth > 32 {
        return Err(nix::Error::ELOOP);
    }
    let listing = dir.try_clone().map_err(|_| nix::Error::EBADF)?;
    let entries: Vec<String> = nix::dir::Dir::from_fd(listing)?
        .iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().ok().map(str::to_owned))
        .filter(|entry| entry != "." && entry != "..")
        .collect();
    for entry in entries {
        remove_tree(&dir, &entry, depth + 1)?;
    }
    unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_made_with_its_files_and_removed() {
        let ws = tempfile::tempdir().unwrap();
        let folder = prepare(ws.path(), "3f2a9c01", "tests", "fix them").unwrap();
        assert_eq!(folder, ws.path().join("tasks/3f2a9c01"));
        let memory = std::fs::read_to_string(folder.join("TASKMEMORY.md")).unwrap();
        assert!(memory.contains("fix them"));
        assert!(std::fs::read_to_string(folder.join("CLAUDE.md")).unwrap().contains("task ask"));
        std::fs::create_dir(folder.join("sub")).unwrap();
        std::fs::write(folder.join("sub/x"), "x").unwrap();
        remove(ws.path(), "3f2a9c01").unwrap();
        assert!(!folder.exists());
        remove(ws.path(), "3f2a9c01").expect("removing twice is fine");
    }

    #[test]
    fn planted_links_are_never_followed() {
        let ws = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        std::fs::write(victim.path().join("keep"), "precious").unwrap();
        // tasks/ itself a link: refused, nothing written in the target.
        std::os::unix::fs::symlink(victim.path(), ws.path().join("tasks")).unwrap();
        assert!(prepare(ws.path(), "aa", "n", "p").is_err());
        assert!(!victim.path().join("aa").exists());
        assert!(remove(ws.path(), "keep").is_err(), "removal never follows tasks/");
        assert!(victim.path().join("keep").exists());
        std::fs::remove_file(ws.path().join("tasks")).unwrap();

        // A link inside a task folder is removed as a link, its target kept.
        let folder = prepare(ws.path(), "bb", "n", "p").unwrap();
        std::os::unix::fs::symlink(victim.path(), folder.join("escape")).unwrap();
        remove(ws.path(), "bb").unwrap();
        assert!(victim.path().join("keep").exists());
    }

    #[test]
    fn an_existing_folder_or_file_is_not_reused() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("tasks/cc")).unwrap();
        assert!(prepare(ws.path(), "cc", "n", "p").is_err(), "a task id is never reused");
    }
}
