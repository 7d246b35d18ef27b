//! Planted links, FIFOs, devices, huge files and swapped files against the
//! workspace-file helper.

use std::os::unix::fs::symlink;

use super::*;

struct World {
    ws: tempfile::TempDir,
    victim: tempfile::TempDir,
}

fn world() -> World {
    let w = World { ws: tempfile::tempdir().unwrap(), victim: tempfile::tempdir().unwrap() };
    std::fs::write(w.victim.path().join("secret"), "TOPSECRET").unwrap();
    w
}

#[test]
fn a_linked_component_is_refused_not_followed() {
    let w = world();
    symlink(w.victim.path(), w.ws.path().join("cron_tasks")).unwrap();
    let root = Tree::root(w.ws.path()).unwrap();
    let error = root.dir("cron_tasks").unwrap_err();
    assert!(error.what.contains("symbolic link"), "{error}");
    assert!(root.dir_or_make("cron_tasks/new", 0o700).is_err());
    assert!(!w.victim.path().join("new").exists(), "nothing made in the target");
    std::fs::create_dir(w.ws.path().join("real")).unwrap();
    symlink(w.victim.path(), w.ws.path().join("real/inner")).unwrap();
    assert!(root.dir("real/inner").is_err(), "a deeper link too");
    assert!(root.dir("../").is_err() && root.dir("/etc").is_err(), "only plain components");
}

#[test]
fn reads_take_regular_small_files_only() {
    let w = world();
    let root = Tree::root(w.ws.path()).unwrap();
    symlink(w.victim.path().join("secret"), w.ws.path().join("memory.md")).unwrap();
    assert!(root.read("memory.md", 1024).is_err(), "a link to a secret");
    symlink("/nonexistent/x", w.ws.path().join("dangling")).unwrap();
    assert!(root.read("dangling", 1024).is_err());
    nix::unistd::mkfifo(&w.ws.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let error = root.read("fifo", 1024).unwrap_err();
    assert!(error.what.contains("regular"), "a FIFO is refused without blocking: {error}");
    symlink("/dev/zero", w.ws.path().join("zero")).unwrap();
    assert!(root.read("zero", 1024).is_err());
    let big = File::create(w.ws.path().join("big")).unwrap();
    big.set_len(10 << 30).unwrap();
    let error = root.read("big", 64 * 1024).unwrap_err();
    assert!(error.what.contains("more than"), "{error}");
    std::fs::write(w.ws.path().join("ok.md"), "fine").unwrap();
    assert_eq!(root.read("ok.md", 1024).unwrap().as_deref(), Some(&b"fine"[..]));
    assert_eq!(root.read("missing", 1024).unwrap(), None);
    assert!(root.read("sub/ok.md", 1024).is_err(), "one plain name");
}

#[test]
fn writes_replace_planted_links_instead_of_writing_through_them() {
    let w = world();
    let root = Tree::root(w.ws.path()).unwrap();
    let target = w.victim.path().join("secret");
    symlink(&target, w.ws.path().join("TASK.md")).unwrap();
    root.replace("TASK.md", b"agent text", 0o600).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "TOPSECRET", "the target is untouched");
    let meta = std::fs::symlink_metadata(w.ws.path().join("TASK.md")).unwrap();
    assert!(meta.file_type().is_file(), "the link itself was replaced");
    // write_new never creates through a dangling link.
    let planted = w.victim.path().join("authorized_keys");
    symlink(&planted, w.ws.path().join("MEMORY.md")).unwrap();
    assert!(!root.write_new("MEMORY.md", b"x", 0o600).unwrap());
    assert!(!planted.exists());
    assert!(root.write_new("NEW.md", b"y", 0o600).unwrap());
    assert!(!root.write_new("NEW.md", b"z", 0o600).unwrap(), "kept once written");
    assert_eq!(std::fs::read_to_string(w.ws.path().join("NEW.md")).unwrap(), "y");
    root.refresh("NEW.md", b"y", 0o600).unwrap();
    root.refresh("NEW.md", b"w", 0o600).unwrap();
    assert_eq!(std::fs::read_to_string(w.ws.path().join("NEW.md")).unwrap(), "w");
}

#[test]
fn a_file_swapped_after_approval_is_not_opened() {
    let w = world();
    let path = w.ws.path().join("a.txt");
    std::fs::write(&path, "harmless").unwrap();
    let (id, _) = identify(&path, 1024).unwrap();
    assert!(open_checked(&path, id, 1024).is_ok());
    std::fs::remove_file(&path).unwrap();
    symlink(w.victim.path().join("secret"), &path).unwrap();
    assert!(open_checked(&path, id, 1024).is_err(), "a link now");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "other").unwrap();
    let error = open_checked(&path, id, 1024).unwrap_err();
    assert!(error.what.contains("approved"), "another file: {error}");
    let (id, _) = identify(&path, 1024).unwrap();
    std::fs::hard_link(&path, w.ws.path().join("twin")).unwrap();
    assert!(open_checked(&path, id, 1024).is_err(), "hard-linked files are refused");
}

#[test]
fn entries_report_links_as_links() {
    let w = world();
    std::fs::create_dir(w.ws.path().join("d")).unwrap();
    symlink(w.victim.path(), w.ws.path().join("l")).unwrap();
    let mut entries = Tree::root(w.ws.path()).unwrap().entries().unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let kinds: Vec<(&str, bool, bool)> =
        entries.iter().map(|e| (e.name.as_str(), e.is_dir, e.is_link)).collect();
    assert_eq!(kinds, [("d", true, false), ("l", false, true)]);
}

#[test]
fn an_entry_tells_regular_files_hard_links_and_nanosecond_times() {
    use std::os::unix::fs::MetadataExt as _;
    let w = world();
    std::fs::write(w.ws.path().join("f"), "abc").unwrap();
    nix::unistd::mkfifo(&w.ws.path().join("p"), Mode::S_IRWXU).unwrap();
    let root = Tree::root(w.ws.path()).unwrap();
    let file = root.entry("f").unwrap().expect("the file");
    assert!(file.is_file && !file.is_link && !file.is_dir && file.size == 3 && file.links == 1);
    let meta = std::fs::symlink_metadata(w.ws.path().join("f")).unwrap();
    assert_eq!(file.modified_ns, meta.mtime() * 1_000_000_000 + meta.mtime_nsec());
    assert_eq!((file.ino, file.modified), (meta.ino(), meta.mtime()));
    assert!(!root.entry("p").unwrap().expect("the fifo").is_file, "a FIFO is not a file");
    std::fs::hard_link(w.ws.path().join("f"), w.ws.path().join("g")).unwrap();
    assert_eq!(root.entry("f").unwrap().expect("the file").links, 2);
}

#[test]
fn a_missing_root_is_made_private_and_an_existing_one_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let w = world();
    let fresh = w.ws.path().join("home/workspace");
    let root = Tree::root_or_make(&fresh, 0o700).unwrap();
    assert_eq!(root.path(), fresh);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "made private");
    std::fs::write(fresh.join("kept"), "x").unwrap();
    let again = Tree::root_or_make(&fresh, 0o700).unwrap();
    assert_eq!(again.read("kept", 10).unwrap().as_deref(), Some(&b"x"[..]));
}

#[test]
fn remove_tree_removes_links_as_themselves() {
    let w = world();
    let skill = w.ws.path().join("skill/inner");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("f"), "x").unwrap();
    symlink(w.victim.path(), skill.join("to-victim")).unwrap();
    symlink(w.victim.path(), w.ws.path().join("top-link")).unwrap();
    let root = Tree::root(w.ws.path()).unwrap();
    root.remove_tree("skill").unwrap();
    root.remove_tree("top-link").unwrap();
    root.remove_tree("missing").unwrap();
    assert!(!w.ws.path().join("skill").exists() && !w.ws.path().join("top-link").exists());
    assert_eq!(std::fs::read_to_string(w.victim.path().join("secret")).unwrap(), "TOPSECRET");
}

#[test]
fn rename_never_replaces_unless_asked_to_exchange() {
    let w = world();
    std::fs::create_dir_all(w.ws.path().join("a")).unwrap();
    std::fs::write(w.ws.path().join("a/one"), "1").unwrap();
    std::fs::create_dir_all(w.ws.path().join("b")).unwrap();
    symlink(w.victim.path(), w.ws.path().join("l")).unwrap();
    let root = Tree::root(w.ws.path()).unwrap();
    let error = root.rename("a", &root, "b", false).unwrap_err();
    assert_eq!(error.errno, Some(nix::Error::EEXIST), "{error}");
    root.rename("a", &root, "b", true).unwrap();
    assert!(w.ws.path().join("b/one").exists() && w.ws.path().join("a").is_dir());
    // A link moves as itself.
    let sub = root.dir("a").unwrap();
    root.rename("l", &sub, "l", false).unwrap();
    assert_eq!(sub.read_link("l").unwrap().as_deref(), Some(w.victim.path()));
    assert_eq!(sub.read_link("missing").unwrap(), None);
    assert_eq!(root.read_link("b").unwrap(), None, "a directory is no link");
}

#[test]
fn dir_or_make_new_says_whether_it_made_the_directory() {
    let w = world();
    let root = Tree::root(w.ws.path()).unwrap();
    assert!(root.dir_or_make_new("d", 0o700).unwrap().1);
    assert!(!root.dir_or_make_new("d", 0o700).unwrap().1);
    symlink(w.victim.path(), w.ws.path().join("l")).unwrap();
    assert!(root.dir_or_make_new("l", 0o700).is_err(), "a link is not opened");
    assert!(root.make_dir("d", 0o700).is_err(), "make_dir wants a new name");
}

#[test]
fn link_new_never_replaces_an_entry() {
    let w = world();
    std::fs::write(w.ws.path().join("taken"), "mine").unwrap();
    let root = Tree::root(w.ws.path()).unwrap();
    assert!(root.link_new("taken", w.victim.path()).unwrap_err().already_exists());
    assert_eq!(std::fs::read_to_string(w.ws.path().join("taken")).unwrap(), "mine");
    root.link_new("free", w.victim.path()).unwrap();
    assert_eq!(root.read_link("free").unwrap().as_deref(), Some(w.victim.path()));
}
