//! Where things live. Everything of one ductor installation is under one
//! `$DUCTOR_HOME` (default `~/.ductor`):
//!
//! ```text
//! $DUCTOR_HOME/
//!   config.toml        the one config file (a section per service)
//!   state.db           core's SQLite state (sessions, outbox, cron, ...)
//!   logs/<service>.log written by `ductorctl up`
//!   run/               sockets, pid files, launcher lock (0700) unless
//!                      $XDG_RUNTIME_DIR/ductor is used (default home only)
//!   secrets/           secret files written by ductor (0600)
//!   workspace/         the agent's working tree
//!   agents/<name>/     a sub-agent's own home: workspace/, matrix/
//!   SHAREDMEMORY.md    what every agent knows, kept in their rule files
//! ```
//!
//! A sub-agent's gateway works on a *focused* home ([`DuctorHome::focused`]):
//! the same root and run directory, but the agent's workspace, Matrix store
//! and socket name (`telegram@<name>.sock`).

use std::path::{Path, PathBuf};

/// The four ductor services, named as in every command and status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    /// Spawns and sandboxes the agent CLIs.
    Runner,
    /// The orchestrator.
    Core,
    /// The Telegram gateway.
    Telegram,
    /// The Matrix gateway.
    Matrix,
}

impl ServiceName {
    /// All services in start order.
    pub const ALL: [ServiceName; 4] = [Self::Runner, Self::Core, Self::Telegram, Self::Matrix];

    /// The short name used in commands and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Runner => "runner",
            Self::Core => "core",
            Self::Telegram => "telegram",
            Self::Matrix => "matrix",
        }
    }

    /// The binary that runs this service.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Runner => "ductor-runner",
            Self::Core => "ductor-core",
            Self::Telegram => "ductor-gateway-telegram",
            Self::Matrix => "ductor-gateway-matrix",
        }
    }

    /// Parses a short name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|service| service.as_str() == name)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resolved `$DUCTOR_HOME` and the paths derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuctorHome {
    root: PathBuf,
    run_dir: PathBuf,
    /// The sub-agent this process serves, and its workspace.
    agent: Option<(String, PathBuf)>,
}

impl DuctorHome {
    /// Resolves from `DUCTOR_HOME`, `DUCTOR_RUN_DIR`, `XDG_RUNTIME_DIR` and `HOME`.
    pub fn from_env() -> Self {
        Self::resolve(
            std::env::var_os("DUCTOR_HOME").map(PathBuf::from),
            std::env::var_os("DUCTOR_RUN_DIR").map(PathBuf::from),
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }

    /// Resolution without touching the environment (testable).
    ///
    /// The runtime directory is `$DUCTOR_RUN_DIR` when set, else
    /// `$XDG_RUNTIME_DIR/ductor` for the default home, else `$DUCTOR_HOME/run`;
    /// so two homes never share sockets, and systemd units and `ductorctl`
    /// agree given the same environment.
    pub fn resolve(
        ductor_home: Option<PathBuf>,
        run_override: Option<PathBuf>,
        xdg_runtime: Option<PathBuf>,
        user_home: Option<PathBuf>,
    ) -> Self {
        let default_root = user_home.unwrap_or_else(|| PathBuf::from("/")).join(".ductor");
        let root = ductor_home
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| default_root.clone());
        let run_dir = match (run_override, xdg_runtime) {
            (Some(dir), _) if !dir.as_os_str().is_empty() => dir,
            (_, Some(xdg)) if root == default_root && !xdg.as_os_str().is_empty() => {
                xdg.join("ductor")
            }
            _ => root.join("run"),
        };
        Self { root, run_dir, agent: None }
    }

    /// A home rooted at `root` with its run directory inside (tests, `--home`).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let run_dir = root.join("run");
        Self { root, run_dir, agent: None }
    }

    /// The home as sub-agent `agent`'s gateways see it: its workspace, its
    /// Matrix store, its gateway sockets; `main` gives the home unchanged.
    pub fn focused(&self, agent: &str, workspace: PathBuf) -> Self {
        let mut home = self.clone();
        home.agent = (agent != crate::config::MAIN_AGENT).then(|| (agent.to_owned(), workspace));
        home
    }

    /// The agent this home is focused on (`main` when none).
    pub fn agent(&self) -> &str {
        self.agent.as_ref().map_or(crate::config::MAIN_AGENT, |(name, _)| name)
    }

    /// A sub-agent's own home directory.
    pub fn agent_home(&self, agent: &str) -> PathBuf {
        self.root.join("agents").join(agent)
    }

    /// A sub-agent's default workspace.
    pub fn agent_workspace(&self, agent: &str) -> PathBuf {
        self.agent_home(agent).join("workspace")
    }

    /// The one file every agent reads: `SHAREDMEMORY.md`.
    pub fn shared_memory(&self) -> PathBuf {
        self.root.join("SHAREDMEMORY.md")
    }

    /// The Matrix gateway's session and store directory.
    pub fn matrix_dir(&self) -> PathBuf {
        match &self.agent {
            Some((name, _)) => self.agent_home(name).join("matrix"),
            None => self.root.join("matrix"),
        }
    }

    /// `telegram`, or `telegram@<agent>` for a sub-agent's gateway: the
    /// name of the service in logs, sockets and the launcher.
    pub fn instance_name(&self, service: ServiceName) -> String {
        instance_name(service, self.agent())
    }

    /// `$DUCTOR_HOME` itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Private runtime directory: sockets, pid files, the launcher lock.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The socket a service listens on.
    pub fn socket(&self, service: ServiceName) -> PathBuf {
        self.socket_of(service, self.agent())
    }

    /// The socket of `service` serving `agent` (only gateways are per agent).
    pub fn socket_of(&self, service: ServiceName, agent: &str) -> PathBuf {
        self.run_dir.join(format!("{}.sock", instance_name(service, agent)))
    }

    /// Per-service log files written by the launcher.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Core's SQLite database.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The agent workspace (the focused sub-agent's, see [`DuctorHome::focused`]).
    pub fn workspace(&self) -> PathBuf {
        match &self.agent {
            Some((_, workspace)) => workspace.clone(),
            None => self.root.join("workspace"),
        }
    }

    /// The CLIs' own state for agent runs (`<provider>/<bucket>/`), never
    /// the operator's `~/.claude`, `~/.codex` or `~/.gemini`.
    pub fn provider_homes(&self) -> PathBuf {
        self.root.join("providers")
    }

    /// Secret files ductor writes itself (0600 inside a 0700 directory).
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
}

/// `telegram` for the main agent, `telegram@<agent>` for a sub-agent's
/// gateway; the runner and core serve every agent and have one name.
pub fn instance_name(service: ServiceName, agent: &str) -> String {
    let gateway = matches!(service, ServiceName::Telegram | ServiceName::Matrix);
    if gateway && agent != crate::config::MAIN_AGENT && !agent.is_empty() {
        format!("{}@{agent}", service.as_str())
    } else {
        service.as_str().to_owned()
    }
}

/// Writes `contents` to `path` with mode 0600 from the first byte (never
/// world-readable, not even briefly), replacing it atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp =
        dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("secret")));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Sets `path`'s mode to `mode` when it differs (a missing path is left
/// alone); returns whether it changed. The path is opened as a handle
/// (`O_PATH`) without following a final symlink, and changed through that
/// handle, so a link or FIFO planted in its place is refused instead of
/// changing (or hanging on) something else, and a file made unreadable
/// (`chmod 000`) is still repaired.
#[cfg(unix)]
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let flags = libc::O_PATH | libc::O_NOFOLLOW;
    let handle = match std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(handle) => handle,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    let meta = handle.metadata()?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(format!("{} is a symbolic link", path.display())));
    }
    if meta.mode() & 0o7777 == mode {
        return Ok(false);
    }
    // chmod through the handle: the /proc/self/fd link names exactly the opened inode.
    let by_handle = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    std::fs::set_permissions(by_handle, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// Puts back the modes of what must stay private in `home`: the home, its
/// secrets, config, state database, run, logs and Matrix directories.
/// Landlock does not govern `chmod`, so a run could loosen them (review M7);
/// core calls this on every start and then periodically. Returns the paths
/// it had to repair.
#[cfg(unix)]
pub fn repair_modes(home: &DuctorHome) -> Vec<PathBuf> {
    let root = home.root();
    let mut wanted: Vec<(PathBuf, u32)> = vec![
        (root.to_path_buf(), 0o700),
        (home.config_file(), 0o600),
        (home.secrets_dir(), 0o700),
        (home.run_dir().to_path_buf(), 0o700),
        (home.logs_dir(), 0o700),
        (home.workspace(), 0o700),
        (root.join("matrix"), 0o700),
        (root.join("agents"), 0o700),
    ];
    for suffix in ["", "-wal", "-shm"] {
        let mut name = home.state_db().into_os_string();
        name.push(suffix);
        wanted.push((PathBuf::from(name), 0o600));
    }
    if let Ok(entries) = std::fs::read_dir(home.secrets_dir()) {
        let files = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file()));
        wanted.extend(files.map(|entry| (entry.path(), 0o600)));
    }
    let mut repaired = Vec::new();
    for (path, mode) in wanted {
        match tighten(&path, mode) {
            Ok(true) => repaired.push(path),
            Ok(false) => {}
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot check its mode"),
        }
    }
    repaired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn repair_puts_back_loosened_and_unreadable_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(tmp.path().join("home"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        std::fs::create_dir_all(home.secrets_dir()).unwrap();
        std::fs::write(home.config_file(), "").unwrap();
        std::fs::write(home.secrets_dir().join("admin.token"), "t").unwrap();
        std::fs::write(home.state_db(), "").unwrap();
        assert!(repair_modes(&home).len() >= 3, "fresh files made private");
        assert!(repair_modes(&home).is_empty(), "nothing left to repair");
        set(home.root(), 0o755);
        set(&home.secrets_dir(), 0o755);
        set(&home.secrets_dir().join("admin.token"), 0o644);
        set(&home.config_file(), 0o000);
        set(&home.state_db(), 0o644);
        let repaired = repair_modes(&home);
        assert_eq!(repaired.len(), 5, "{repaired:?}");
        assert_eq!(mode(home.root()), 0o700);
        assert_eq!(mode(&home.secrets_dir()), 0o700);
        assert_eq!(mode(&home.secrets_dir().join("admin.token")), 0o600);
        assert_eq!(mode(&home.config_file()), 0o600, "even a chmod 000 file is repaired");
        assert_eq!(mode(&home.state_db()), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn tighten_changes_files_and_dirs_but_not_through_links() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tmp.path().join("home");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        tighten(&dir, 0o700).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("state.db");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten(&file, 0o600).unwrap();
        assert_eq!(mode(&file), 0o600);
        tighten(&dir.join("missing"), 0o600).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(tighten(&link, 0o600).is_err(), "a link is refused");
        assert_eq!(mode(&outside), 0o644, "its target is untouched");
    }

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn default_home_uses_xdg_runtime_dir() {
        let home = DuctorHome::resolve(None, None, p("/run/user/1000"), p("/home/u"));
        assert_eq!(home.root(), Path::new("/home/u/.ductor"));
        assert_eq!(home.run_dir(), Path::new("/run/user/1000/ductor"));
        assert_eq!(
            home.socket(ServiceName::Core),
            PathBuf::from("/run/user/1000/ductor/core.sock")
        );
    }

    #[test]
    fn custom_home_keeps_sockets_inside_it() {
        let home = DuctorHome::resolve(p("/srv/d"), None, p("/run/user/1000"), p("/home/u"));
        assert_eq!(home.run_dir(), Path::new("/srv/d/run"));
        let explicit_default =
            DuctorHome::resolve(p("/home/u/.ductor"), None, p("/run/user/1"), p("/home/u"));
        assert_eq!(explicit_default.run_dir(), Path::new("/run/user/1/ductor"));
    }

    #[test]
    fn run_dir_override_wins() {
        let home = DuctorHome::resolve(p("/srv/d"), p("/shared/run"), None, p("/home/u"));
        assert_eq!(home.run_dir(), Path::new("/shared/run"));
    }

    #[test]
    fn service_names_round_trip() {
        for service in ServiceName::ALL {
            assert_eq!(ServiceName::parse(service.as_str()), Some(service));
        }
        assert_eq!(ServiceName::parse("gateway"), None);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secrets/token");
        write_private(&path, b"x").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
