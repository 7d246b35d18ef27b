//! Which paths a run's mount namespace hides, decided in the parent before
//! the fork (file system work and allocation are not allowed in the child).
//!
//! Landlock below ABI 9 does not govern `connect(2)` on pathname Unix
//! sockets, so a CLI could talk to every same-uid service: the systemd user
//! manager and the D-Bus session bus in the runtime directory, ssh and gpg
//! agents, tmux and screen, X11, docker. The plan hides them in the run's
//! own mount namespace:
//! - well-known socket directories (the runtime directory, `/run/dbus`,
//!   `/tmp/.X11-unix`, ...) under an empty tmpfs, which also hides sockets
//!   created there after the run started;
//! - every other pathname socket found by a bounded scan of `/tmp`,
//!   `/var/tmp` and `/run` (plus `docker.sock` and `$SSH_AUTH_SOCK`) under a
//!   bind mount of `/dev/null`, so `connect` is refused.
//!
//! A directory that holds something the run needs (its working directory,
//! `TMPDIR`, `$DUCTOR_HOME`, the run directory with `core.sock`, a granted
//! path) is never hidden whole: its sockets are masked one by one instead.
//! `core.sock` itself stays reachable (agents call `ductorctl`), and so do a
//! few system sockets that only resolve names or take log lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bounds of the socket scan, so a huge `/tmp` cannot slow every spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Levels below a scan root (a socket at `/tmp/a/b/c.sock` is depth 3).
    pub depth: usize,
    /// Directory entries looked at, over all roots.
    pub entries: usize,
}

/// The runner's scan bounds.
pub const SCAN: ScanLimits = ScanLimits { depth: 3, entries: 4096 };

/// System sockets left reachable: name resolution and logging, which act
/// with no one's authority. Everything else found is masked.
const SYSTEM_KEEP: &[&str] = &[
    "/run/systemd/resolve/io.systemd.Resolve",
    "/run/nscd/socket",
    "/run/systemd/journal/socket",
    "/run/systemd/journal/dev-log",
    "/run/systemd/journal/stdout",
];

/// What to decide a plan from.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// Directories to hide whole under a tmpfs, when they exist as real
    /// directories and hold nothing protected.
    pub dirs: Vec<PathBuf>,
    /// Socket files to mask wherever they are.
    pub sockets: Vec<PathBuf>,
    /// Trees scanned for pathname sockets.
    pub scan_roots: Vec<PathBuf>,
    /// Paths the run must keep: a directory holding one is never hidden whole.
    pub protected: Vec<PathBuf>,
    /// Sockets left reachable (`core.sock`).
    pub keep: Vec<PathBuf>,
    /// Scan bounds.
    pub limits: ScanLimits,
}

/// The masks of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskPlan {
    /// Directories hidden under an empty tmpfs.
    pub tmpfs: Vec<PathBuf>,
    /// Sockets hidden under `/dev/null`.
    pub null: Vec<PathBuf>,
    /// The scan stopped at its entry bound (some sockets may be unmasked).
    pub truncated: bool,
}

/// The runner's input for uid `uid`: the well-known directories and
/// sockets, the scan roots, and what the run must keep.
pub fn default_input(
    uid: u32,
    parent_env: &std::collections::BTreeMap<String, String>,
    protected: Vec<PathBuf>,
    keep: Vec<PathBuf>,
) -> PlanInput {
    let mut dirs: Vec<PathBuf> = vec![
        PathBuf::from(format!("/run/user/{uid}")),
        "/run/dbus".into(),
        "/tmp/.X11-unix".into(),
        "/tmp/.ICE-unix".into(),
        PathBuf::from(format!("/tmp/tmux-{uid}")),
        "/run/screen".into(),
    ];
    let absolute = |name: &str| parent_env.get(name).map(PathBuf::from).filter(|p| p.is_absolute());
    dirs.extend(absolute("XDG_RUNTIME_DIR"));
    dirs.extend(absolute("HOME").map(|home| home.join(".gnupg")));
    let mut sockets: Vec<PathBuf> = vec!["/run/docker.sock".into(), "/var/run/docker.sock".into()];
    sockets.extend(absolute("SSH_AUTH_SOCK"));
    PlanInput {
        dirs,
        sockets,
        scan_roots: vec!["/tmp".into(), "/var/tmp".into(), "/run".into()],
        protected,
        keep,
        limits: SCAN,
    }
}

/// Decides the masks of `input` (reads the file system, follows no link).
pub fn plan(input: &PlanInput) -> MaskPlan {
    let protected: Vec<PathBuf> = input.protected.iter().map(|p| real(p)).collect();
    let mut keep: BTreeSet<PathBuf> = input.keep.iter().map(|p| real(p)).collect();
    keep.extend(SYSTEM_KEEP.iter().map(PathBuf::from));
    let mut tmpfs = BTreeSet::new();
    let mut scan_roots: Vec<PathBuf> = input.scan_roots.iter().map(|p| real(p)).collect();
    for dir in input.dirs.iter().map(|d| real_parent(d)) {
        let is_dir = dir.symlink_metadata().is_ok_and(|m| m.is_dir());
        if !is_dir {
            continue;
        }
        if protected.iter().any(|p| p.starts_with(&dir)) {
            // Mask its sockets one by one instead, with a scan budget of its own depth.
            scan_roots.push(dir);
        } else {
            tmpfs.insert(dir);
        }
    }
    let mut scan = Scan {
        hidden: &tmpfs,
        keep: &keep,
        limits: input.limits,
        seen: 0,
        found: BTreeSet::new(),
        truncated: false,
    };
    for root in &scan_roots {
        scan.walk(root, 0);
    }
    let mut null = scan.found;
    let truncated = scan.truncated;
    for socket in input.sockets.iter().map(|s| real_parent(s)) {
        let is_socket = socket.symlink_metadata().is_ok_and(|m| is_socket(&m));
        if is_socket && !keep.contains(&socket) && !tmpfs.iter().any(|d| socket.starts_with(d)) {
            null.insert(socket);
        }
    }
    MaskPlan { tmpfs: tmpfs.into_iter().collect(), null: null.into_iter().collect(), truncated }
}

/// The bounded walk of the scan roots.
struct Scan<'a> {
    hidden: &'a BTreeSet<PathBuf>,
    keep: &'a BTreeSet<PathBuf>,
    limits: ScanLimits,
    seen: usize,
    found: BTreeSet<PathBuf>,
    truncated: bool,
}

impl Scan<'_> {
    fn walk(&mut self, dir: &Path, depth: usize) {
        if depth >= self.limits.depth || self.hidden.contains(dir) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if self.seen >= self.limits.entries {
                self.truncated = true;
                return;
            }
            self.seen += 1;
            // `file_type` does not follow links: a link is neither a socket nor walked into.
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                self.walk(&path, depth + 1);
            } else if std::os::unix::fs::FileTypeExt::is_socket(&kind) && !self.keep.contains(&path)
            {
                self.found.insert(path);
            }
        }
    }
}

fn is_socket(meta: &std::fs::Metadata) -> bool {
    std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type())
}

/// `path` with every link resolved, or as given when it does not exist.
fn real(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// `path` with its parent's links resolved but not its last component's
/// (`/var/run/docker.sock` is `/run/docker.sock`; a linked socket stays a link).
fn real_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => real(parent).join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    struct Tree {
        _dir: tempfile::TempDir,
        root: PathBuf,
        _listeners: Vec<UnixListener>,
    }

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().canonicalize().expect("canonical");
            Self { _dir: dir, root, _listeners: Vec::new() }
        }

        fn mkdir(&self, path: &str) -> PathBuf {
            let path = self.root.join(path);
            std::fs::create_dir_all(&path).expect("mkdir");
            path
        }

        fn socket(&mut self, path: &str) -> PathBuf {
            let path = self.root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            self._listeners.push(UnixListener::bind(&path).expect("bind"));
            path
        }

        fn input(&self) -> PlanInput {
            PlanInput {
                dirs: vec![self.root.join("run/user/1000"), self.root.join("tmp/.X11-unix")],
                sockets: vec![self.root.join("var/run/docker.sock")],
                scan_roots: vec![self.root.join("tmp"), self.root.join("run")],
                protected: Vec::new(),
                keep: Vec::new(),
                limits: SCAN,
            }
        }
    }

    #[test]
    fn known_dirs_are_hidden_whole_and_other_sockets_one_by_one() {
        let mut tree = Tree::new();
        let bus = tree.socket("run/user/1000/bus");
        tree.socket("tmp/.X11-unix/X0");
        let helper = tree.socket("tmp/fresh/helper.sock");
        let docker = tree.socket("run/docker.sock");
        std::os::unix::fs::symlink(tree.root.join("run"), tree.root.join("var-run")).expect("link");
        tree.mkdir("var");
        std::os::unix::fs::symlink(tree.root.join("run"), tree.root.join("var/run")).expect("link");
        tree.mkdir("tmp/missing-is-fine");
        let plan = plan(&tree.input());
        assert_eq!(
            plan.tmpfs,
            vec![tree.root.join("run/user/1000"), tree.root.join("tmp/.X11-unix")]
        );
        assert_eq!(plan.null, vec![docker, helper], "bus {bus:?} is under the tmpfs");
        assert!(!plan.truncated);
    }

    #[test]
    fn a_dir_holding_a_protected_path_is_never_hidden_whole() {
        let mut tree = Tree::new();
        let run_dir = tree.mkdir("run/user/1000/ductor");
        let core = tree.socket("run/user/1000/ductor/core.sock");
        let runner = tree.socket("run/user/1000/ductor/runner.sock");
        let bus = tree.socket("run/user/1000/bus");
        let private = tree.socket("run/user/1000/systemd/private");
        let workdir = tree.mkdir("tmp/.X11-unix/inside/workspace");
        let x0 = tree.socket("tmp/.X11-unix/X0");
        let mut input = tree.input();
        input.protected = vec![run_dir, workdir];
        input.keep = vec![core];
        let plan = plan(&input);
        assert!(plan.tmpfs.is_empty(), "{plan:?}");
        // Depth 4 from /run (systemd/private) is reached through the directory's own scan.
        assert_eq!(plan.null, vec![bus, runner, private, x0]);
    }

    #[test]
    fn links_are_neither_masked_nor_followed() {
        let mut tree = Tree::new();
        let outside = tree.socket("elsewhere/secret.sock");
        std::fs::create_dir_all(tree.root.join("tmp")).expect("mkdir");
        std::fs::create_dir_all(tree.root.join("run/user")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, tree.root.join("tmp/link.sock")).expect("link");
        std::os::unix::fs::symlink(tree.root.join("elsewhere"), tree.root.join("tmp/dirlink"))
            .expect("link");
        std::os::unix::fs::symlink(tree.root.join("elsewhere"), tree.root.join("run/user/1000"))
            .expect("link");
        let plan = plan(&tree.input());
        assert_eq!(plan, MaskPlan::default());
    }

    #[test]
    fn the_scan_is_bounded_in_depth_and_entries() {
        let mut tree = Tree::new();
        let shallow = tree.socket("tmp/a/b/c.sock");
        tree.socket("tmp/a/b/c/d.sock");
        let plan = plan(&tree.input());
        assert_eq!(plan.null, vec![shallow]);
        assert!(!plan.truncated);
        for i in 0..20 {
            tree.mkdir(&format!("tmp/many/{i}"));
        }
        let mut input = tree.input();
        input.limits = ScanLimits { depth: 3, entries: 10 };
        assert!(super::plan(&input).truncated);
    }

    #[test]
    fn kept_sockets_stay_and_defaults_name_the_usual_suspects() {
        let mut tree = Tree::new();
        let core = tree.socket("tmp/home/run/core.sock");
        let runner = tree.socket("tmp/home/run/runner.sock");
        let mut input = tree.input();
        input.keep = vec![core];
        assert_eq!(plan(&input).null, vec![runner]);
        let env = std::collections::BTreeMap::from([
            ("XDG_RUNTIME_DIR".to_owned(), "/run/user/1000".to_owned()),
            ("SSH_AUTH_SOCK".to_owned(), "/tmp/ssh-x/agent.1".to_owned()),
            ("HOME".to_owned(), "relative/is/ignored".to_owned()),
        ]);
        let defaults = default_input(1000, &env, Vec::new(), Vec::new());
        for dir in
            ["/run/user/1000", "/run/dbus", "/tmp/.X11-unix", "/tmp/tmux-1000", "/run/screen"]
        {
            assert!(defaults.dirs.contains(&PathBuf::from(dir)), "{dir}");
        }
        assert!(defaults.sockets.contains(&PathBuf::from("/var/run/docker.sock")));
        assert!(defaults.sockets.contains(&PathBuf::from("/tmp/ssh-x/agent.1")));
        assert!(!defaults.dirs.iter().any(|d| d.starts_with("relative")));
    }
}
