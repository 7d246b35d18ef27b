//! The rule sync on a real directory tree: what it writes, what it never
//! follows, and that an unchanged tree costs no reads.

use std::path::Path;

use nix::sys::stat::Mode;

use super::*;
use crate::rules::fresh_file;

const MAX: u64 = 64 * 1024;

fn sync(ws: &Path) -> RuleSync {
    let store = Store::open_in_memory(store::MIGRATIONS).unwrap();
    RuleSync::new(ws.to_path_buf(), store, MAX).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn an_edit_is_carried_and_an_unchanged_tree_is_not_read() {
    let ws = tempfile::tempdir().unwrap();
    let mut sync = sync(ws.path());
    let first = sync.pass();
    assert_eq!((first.decided, first.written), (1, 3), "{first:?}");
    let fresh = fresh_file(&crate::workspace::rules_text());
    assert_eq!(read(&ws.path().join("GEMINI.md")), fresh);
    let quiet = sync.pass();
    assert_eq!((quiet.dirs, quiet.decided, quiet.written), (1, 0, 0), "{quiet:?}");

    std::fs::write(ws.path().join("AGENTS.md"), format!("{fresh}mine\n")).unwrap();
    let carried = sync.pass();
    assert_eq!((carried.decided, carried.written), (1, 2), "{carried:?}");
    assert_eq!(read(&ws.path().join("CLAUDE.md")), format!("{fresh}mine\n"));
    // Core restarts: the record from state.db says nothing was edited since.
    let store = sync.store.clone();
    let mut again = RuleSync::new(ws.path().to_path_buf(), store, MAX).unwrap();
    assert_eq!(again.pass().written, 0);
}

#[test]
fn a_planted_link_is_replaced_never_written_through() {
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("authorized_keys");
    std::fs::write(&victim, "precious").unwrap();
    let mut sync = sync(ws.path());
    sync.pass();
    std::fs::remove_file(ws.path().join("CLAUDE.md")).unwrap();
    std::os::unix::fs::symlink(&victim, ws.path().join("CLAUDE.md")).unwrap();
    sync.pass();
    assert_eq!(read(&victim), "precious", "written through the link");
    let meta = std::fs::symlink_metadata(ws.path().join("CLAUDE.md")).unwrap();
    assert!(meta.file_type().is_file(), "the link was replaced by a file");
    assert!(!read(&ws.path().join("AGENTS.md")).contains("precious"), "the link was read");
    // A hard link is not read either (it may share a file from elsewhere).
    std::fs::remove_file(ws.path().join("GEMINI.md")).unwrap();
    std::fs::hard_link(&victim, ws.path().join("GEMINI.md")).unwrap();
    sync.pass();
    assert_eq!(read(&victim), "precious");
    assert!(!read(&ws.path().join("GEMINI.md")).contains("precious"));
}

#[test]
fn oversize_and_fifo_files_are_left_alone() {
    let ws = tempfile::tempdir().unwrap();
    let mut sync = sync(ws.path());
    sync.pass();
    let big = "x".repeat(70_000);
    std::fs::write(ws.path().join("CLAUDE.md"), &big).unwrap();
    std::fs::remove_file(ws.path().join("GEMINI.md")).unwrap();
    nix::unistd::mkfifo(&ws.path().join("GEMINI.md"), Mode::S_IRWXU).unwrap();
    let report = sync.pass();
    assert_eq!(report.written, 0, "{report:?}");
    assert_eq!(read(&ws.path().join("CLAUDE.md")), big);
    let kind = std::fs::symlink_metadata(ws.path().join("GEMINI.md")).unwrap().file_type();
    assert!(!kind.is_file(), "the FIFO is left as it is");
}

#[test]
fn task_folders_follow_and_conflicts_keep_a_backup() {
    let ws = tempfile::tempdir().unwrap();
    let cron = Tree::root(ws.path()).unwrap().dir_or_make("cron_tasks/daily", 0o700).unwrap();
    let rules = crate::automation::task_folder::rules_text("daily");
    seed_new(&cron, &rules).unwrap();
    std::fs::create_dir_all(ws.path().join("cron_tasks/notes")).unwrap();
    let mut sync = sync(ws.path());
    let first = sync.pass();
    assert_eq!((first.dirs, first.decided, first.written), (3, 2, 3), "the cron folder is in sync");
    assert!(!ws.path().join("cron_tasks/notes/CLAUDE.md").exists(), "not a task folder");

    let dir = ws.path().join("cron_tasks/daily");
    let fresh = fresh_file(&rules);
    std::fs::write(dir.join("CLAUDE.md"), format!("{fresh}first\n")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.join("GEMINI.md"), format!("{fresh}second\n")).unwrap();
    sync.pass();
    assert_eq!(read(&dir.join("AGENTS.md")), format!("{fresh}second\n"), "the newest wins");
    let backups: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("CLAUDE.md.conflict-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(read(&dir.join(&backups[0])), format!("{fresh}first\n"));

    assert!(sync.records.contains_key("cron_tasks/daily"));
    std::fs::remove_dir_all(&dir).unwrap();
    sync.pass();
    assert!(!sync.records.contains_key("cron_tasks/daily"), "a removed folder is forgotten");
}
