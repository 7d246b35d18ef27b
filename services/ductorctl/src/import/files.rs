//! The Python workspace and its `MAINMEMORY.md` brought into ours.
//!
//! Python's agents ran unconfined and ours may write our workspace, so both
//! trees are walked with [`safe_fs`]: no link is followed (one is reported
//! and left behind, never copied as what it points at), only regular files
//! are read, nothing of ours is overwritten. Left out on purpose: Python's
//! agent tools (`tools/`, they write Python's JSON files), the rule files
//! (`CLAUDE.md`, `AGENTS.md`, `GEMINI.md`: ductor writes its own and keeps
//! them in sync), virtualenvs and caches. The memory is merged, not copied
//! over: Python's text is appended to ours unless ours already holds it.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ductor_daemon::safe_fs::{SafeFsError, Tree};

/// Largest file copied.
const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Most entries looked at.
const MAX_ENTRIES: usize = 100_000;
/// Names shown per list in the report.
pub const SHOWN: usize = 10;

const RULE_FILES: [&str; 3] = ["CLAUDE.md", "AGENTS.md", "GEMINI.md"];
const SKIPPED_DIRS: [&str; 4] = [".venv", "venv", "__pycache__", "node_modules"];

/// What the workspace copy did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Files copied (or to copy).
    pub copied: Vec<String>,
    /// Files ours has with other contents: ours kept.
    pub kept: Vec<String>,
    /// Files ours has with the same contents.
    pub same: usize,
    /// Left behind, with why.
    pub skipped: Vec<(String, String)>,
}

struct Walk<'a> {
    report: &'a mut CopyReport,
    apply: bool,
    seen: usize,
}

fn skip_reason(rel: &str, name: &str, is_dir: bool) -> Option<&'static str> {
    if rel.is_empty() && name == "tools" && is_dir {
        return Some("Python ductor's agent tools (they write Python's files)");
    }
    if rel == "memory_system" && name == "MAINMEMORY.md" {
        return Some("merged as the main memory");
    }
    if !is_dir && RULE_FILES.contains(&name) {
        return Some("ductor writes and syncs its own rule files");
    }
    if is_dir && SKIPPED_DIRS.contains(&name) {
        return Some("a virtualenv or cache");
    }
    None
}

impl Walk<'_> {
    fn dir(&mut self, from: &Tree, to: Option<&Tree>, rel: &str) -> Result<(), SafeFsError> {
        let mut entries = from.entries()?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            self.seen += 1;
            if self.seen > MAX_ENTRIES {
                self.report.skipped.push((rel.to_owned(), "too many files; the rest left".into()));
                return Ok(());
            }
            let path =
                if rel.is_empty() { entry.name.clone() } else { format!("{rel}/{}", entry.name) };
            if entry.is_link {
                self.report.skipped.push((path, "a symbolic link (not followed)".into()));
                continue;
            }
            if let Some(why) = skip_reason(rel, &entry.name, entry.is_dir) {
                if why != "merged as the main memory" {
                    self.report.skipped.push((path, why.into()));
                }
                continue;
            }
            if entry.is_dir {
                let Ok(sub) = from.dir(&entry.name) else {
                    self.report.skipped.push((path, "not readable".into()));
                    continue;
                };
                let target = match to {
                    Some(to) if self.apply => Some(to.dir_or_make(&entry.name, 0o700)?),
                    Some(to) => to.dir(&entry.name).ok(),
                    None => None,
                };
                self.dir(&sub, target.as_ref(), &path)?;
            } else {
                self.file(from, to, &entry.name, path)?;
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        from: &Tree,
        to: Option<&Tree>,
        name: &str,
        path: String,
    ) -> Result<(), SafeFsError> {
        let (mut file, _, size) = match from.open_regular(name, MAX_FILE) {
            Ok(opened) => opened,
            Err(error) => {
                self.report.skipped.push((path, error.what));
                return Ok(());
            }
        };
        let mut bytes = Vec::with_capacity(size as usize);
        if file.read_to_end(&mut bytes).is_err() {
            self.report.skipped.push((path, "not readable".into()));
            return Ok(());
        }
        let executable = file.metadata().is_ok_and(|m| m.permissions().mode() & 0o100 != 0);
        match to.map(|to| to.read(name, MAX_FILE)) {
            Some(Ok(Some(ours))) if ours == bytes => self.report.same += 1,
            Some(Ok(Some(_)) | Err(_)) => self.report.kept.push(path),
            Some(Ok(None)) | None => {
                if let (Some(to), true) = (to, self.apply) {
                    to.write_new(name, &bytes, if executable { 0o700 } else { 0o600 })?;
                }
                self.report.copied.push(path);
            }
        }
        Ok(())
    }
}

/// True when both paths are the same directory.
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies `from` (Python's workspace) into `to` (ours); writes only with `apply`.
pub fn copy_workspace(from: &Path, to: &Path, apply: bool) -> Result<CopyReport, SafeFsError> {
    let mut report = CopyReport::default();
    let source = Tree::root(from)?;
    let target = if apply { Some(Tree::root_or_make(to, 0o700)?) } else { Tree::root(to).ok() };
    Walk { report: &mut report, apply, seen: 0 }.dir(&source, target.as_ref(), "")?;
    Ok(report)
}

/// Python's `cron_tasks/<folder>/TASK_DESCRIPTION.md` files, read before
/// anything is imported: adding a job or a `cron_task` hook makes core write
/// the folder's description from its own fields, and the user's assignment
/// lives in Python's (which is the same file when PATH is our home).
pub fn task_descriptions(from: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let Ok(tasks) = Tree::root(from).and_then(|t| t.dir("cron_tasks")) else { return found };
    for entry in tasks.entries().unwrap_or_default().into_iter().filter(|e| e.is_dir && !e.is_link)
    {
        if let Ok(Some(bytes)) =
            tasks.dir(&entry.name).and_then(|d| d.read("TASK_DESCRIPTION.md", MAX_FILE))
        {
            found.insert(entry.name, bytes);
        }
    }
    found
}

/// Writes `bytes` as `cron_tasks/<folder>/TASK_DESCRIPTION.md` of `to`.
pub fn put_task_description(to: &Path, folder: &str, bytes: &[u8]) -> Result<(), SafeFsError> {
    let dir = Tree::root(to)?.dir(&format!("cron_tasks/{folder}"))?;
    dir.replace("TASK_DESCRIPTION.md", bytes, 0o600)
}

/// What happened to the main memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryOutcome {
    /// Python has none.
    Missing,
    /// Ours had none: Python's is ours now.
    Copied,
    /// Python's text was appended to ours.
    Appended,
    /// Ours already holds it.
    Same,
}

/// The heading Python's memory is appended under.
pub const APPENDED_HEADING: &str = "## Imported from Python ductor";

/// Merges Python's `memory_system/MAINMEMORY.md` into ours.
pub fn import_memory(from: &Path, to: &Path, apply: bool) -> Result<MemoryOutcome, SafeFsError> {
    let Ok(source) = Tree::root(from).and_then(|t| t.dir("memory_system")) else {
        return Ok(MemoryOutcome::Missing);
    };
    let Some(theirs) = source.read("MAINMEMORY.md", MAX_FILE)? else {
        return Ok(MemoryOutcome::Missing);
    };
    let theirs = String::from_utf8_lossy(&theirs).trim().to_owned();
    if theirs.is_empty() {
        return Ok(MemoryOutcome::Missing);
    }
    let target = match apply {
        true => Some(Tree::root_or_make(to, 0o700)?.dir_or_make("memory_system", 0o700)?),
        false => Tree::root(to).and_then(|t| t.dir("memory_system")).ok(),
    };
    let ours = match &target {
        Some(dir) => {
            dir.read("MAINMEMORY.md", MAX_FILE)?.map(|b| String::from_utf8_lossy(&b).into_owned())
        }
        None => None,
    };
    let (outcome, text) = match ours {
        None => (MemoryOutcome::Copied, format!("{theirs}\n")),
        Some(ours) if ours.contains(&theirs) => return Ok(MemoryOutcome::Same),
        Some(ours) => (
            MemoryOutcome::Appended,
            format!("{}\n\n{APPENDED_HEADING}\n\n{theirs}\n", ours.trim_end()),
        ),
    };
    if let (true, Some(dir)) = (apply, target) {
        dir.replace("MAINMEMORY.md", text.as_bytes(), 0o600)?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_tools_and_rule_files_stay_behind_and_nothing_of_ours_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let py = tmp.path().join("py");
        let ours = tmp.path().join("ours");
        std::fs::create_dir_all(py.join("tools/cron_tools")).unwrap();
        std::fs::create_dir_all(py.join("cron_tasks/daily/.venv")).unwrap();
        std::fs::create_dir_all(&ours).unwrap();
        std::fs::write(py.join("tools/cron_tools/add.py"), "x").unwrap();
        std::fs::write(py.join("cron_tasks/daily/TASK_DESCRIPTION.md"), "task").unwrap();
        std::fs::write(py.join("cron_tasks/daily/CLAUDE.md"), "rules").unwrap();
        std::fs::write(py.join("notes.md"), "theirs").unwrap();
        std::fs::write(ours.join("notes.md"), "mine").unwrap();
        std::fs::write(tmp.path().join("secret"), "ssh key").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), py.join("stolen")).unwrap();

        let dry = copy_workspace(&py, &ours, false).unwrap();
        assert_eq!(dry.copied, ["cron_tasks/daily/TASK_DESCRIPTION.md"]);
        assert!(!ours.join("cron_tasks").exists(), "a dry run writes nothing");
        let report = copy_workspace(&py, &ours, true).unwrap();
        assert_eq!(report.copied, dry.copied);
        assert_eq!(report.kept, ["notes.md"]);
        let skipped: Vec<&str> = report.skipped.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            skipped,
            ["cron_tasks/daily/.venv", "cron_tasks/daily/CLAUDE.md", "stolen", "tools"]
        );
        assert_eq!(std::fs::read_to_string(ours.join("notes.md")).unwrap(), "mine");
        assert!(!ours.join("stolen").exists());
        let again = copy_workspace(&py, &ours, true).unwrap();
        assert!(again.copied.is_empty() && again.same == 1, "{again:?}");
    }

    #[test]
    fn memory_is_copied_appended_once_or_left() {
        let tmp = tempfile::tempdir().unwrap();
        let py = tmp.path().join("py");
        let ours = tmp.path().join("ours");
        std::fs::create_dir_all(py.join("memory_system")).unwrap();
        std::fs::write(py.join("memory_system/MAINMEMORY.md"), "- cat: Pixel\n").unwrap();
        assert_eq!(import_memory(&py, &ours, true).unwrap(), MemoryOutcome::Copied);
        assert_eq!(import_memory(&py, &ours, true).unwrap(), MemoryOutcome::Same);
        std::fs::write(ours.join("memory_system/MAINMEMORY.md"), "# Main memory\n").unwrap();
        assert_eq!(import_memory(&py, &ours, false).unwrap(), MemoryOutcome::Appended);
        assert_eq!(import_memory(&py, &ours, true).unwrap(), MemoryOutcome::Appended);
        let text = std::fs::read_to_string(ours.join("memory_system/MAINMEMORY.md")).unwrap();
        assert!(
            text.starts_with("# Main memory\n\n## Imported") && text.ends_with("- cat: Pixel\n"),
            "{text}"
        );
        assert_eq!(import_memory(&py, &ours, true).unwrap(), MemoryOutcome::Same);
    }
}
