//! Confinement of an agent CLI, and the runner's one spawn site ([`command`]).
//!
//! Every CLI process gets, before `exec` (in `pre_exec`, async-signal-safe
//! calls only — everything that allocates is prepared in the parent):
//! - its own session and process group (`setsid`), so signals reach the CLI
//!   and everything it forks;
//! - `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the runner;
//! - `RLIMIT_NPROC` and `RLIMIT_FSIZE` from `[runner]`;
//! - `no_new_privs`;
//! - in mode `landlock`, a Landlock ruleset: the working directory, the
//!   provider's state directories, a private per-run `TMPDIR` and
//!   `[runner].extra_writable_paths` are writable; system directories, PATH,
//!   the CLI's install directory and `extra_readable_paths` are readable;
//!   `$DUCTOR_HOME` (config, state database, secrets) is carved out of every
//!   broad rule, so only the workspace inside it is reachable.
//!
//! The environment is an allowlist ([`child_env`]): the CLI never inherits
//! ductor's secrets or anything the runner does not know it needs.
//!
//! The ruleset asks for the newest Landlock ABI the crate knows and takes
//! what the kernel has (best effort): from ABI 6 the run may neither signal
//! nor connect to an abstract Unix socket of anything outside it (ductor's
//! services, the operator's X11, tmux, D-Bus); from ABI 9 connecting to a
//! pathname socket needs a rule too, and only core's socket (for
//! `ductorctl`) gets one. Below ABI 9 pathname sockets are fenced by the
//! run's mount namespace where the platform allows it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use ductor_daemon::config::SandboxMode;
use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope,
};

use crate::namespace::Fence;
use crate::provider::{self, StatePath};
use crate::spec::Provider;

/// The Landlock ABI the runner asks for: file system rights and scopes
/// (signals, abstract sockets); network is left to the CLIs, which need the
/// model API. Rights the kernel lacks are dropped (best effort).
const WANTED_ABI: ABI = ABI::V9;

/// First ABI that fences connecting to pathname Unix sockets.
const RESOLVE_UNIX_ABI: i64 = 9;

/// Device files a CLI may open: the harmless ones. Not `/dev/shm`,
/// `/dev/mqueue` (other programs' shared memory) or `/dev/pts/*` (the
/// operator's terminals).
const DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/// The sandbox runs get, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// Landlock is applied to runs.
    pub landlock: bool,
    /// Human-readable explanation for `doctor`.
    pub detail: String,
    /// Why runs are refused: `auto` found no Landlock (fail closed; nothing
    /// but the CLI's own checks would stand between the agent and the
    /// machine). `sandbox = "none"` is the operator's explicit choice.
    pub refused: Option<String>,
}

impl Support {
    /// "landlock" or "none".
    pub fn mode(&self) -> &'static str {
        if self.landlock { "landlock" } else { "none" }
    }

    /// Whether a run may start at all.
    pub fn admit(&self) -> Result<(), &str> {
        match &self.refused {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// Landlock ABI version of the running kernel, or why there is none.
pub fn kernel_landlock_abi() -> Result<i64, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented "query version" form: null attr, size 0, flag VERSION.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if version >= 1 { Ok(version) } else { Err(std::io::Error::last_os_error().to_string()) }
}

/// Resolves the configured mode against the kernel.
pub fn detect(mode: SandboxMode) -> Result<Support, String> {
    decide(mode, kernel_landlock_abi())
}

/// [`detect`] for a kernel whose Landlock ABI query gave `abi`.
pub fn decide(mode: SandboxMode, abi: Result<i64, String>) -> Result<Support, String> {
    match (mode, abi) {
        (SandboxMode::None, _) => Ok(Support {
            landlock: false,
            detail: "disabled by [runner].sandbox = \"none\"".into(),
            refused: None,
        }),
        (_, Ok(version)) => {
            Ok(Support { landlock: true, detail: landlock_detail(version), refused: None })
        }
        (SandboxMode::Landlock, Err(error)) => Err(format!(
            "[runner].sandbox = \"landlock\" but the kernel offers no Landlock: {error}"
        )),
        (SandboxMode::Auto, Err(error)) => {
            let why = format!(
                "agent runs refused: this kernel offers no Landlock ({error}), so nothing \
                 would confine the agent to its workspace; set [runner].sandbox = \"none\" \
                 to run agents unconfined"
            );
            Ok(Support { landlock: false, detail: why.clone(), refused: Some(why) })
        }
    }
}

/// What Landlock ABI `version` fences, for the log and `doctor`.
fn landlock_detail(version: i64) -> String {
    let scopes = if version >= 6 {
        "signals and abstract Unix sockets scoped to the run"
    } else {
        "signals and abstract Unix sockets NOT scoped (needs ABI 6, Linux 6.12)"
    };
    let sockets = if version >= RESOLVE_UNIX_ABI {
        "pathname sockets: only core's"
    } else {
        "pathname sockets not fenced by Landlock (needs ABI 9, Linux 7.1)"
    };
    format!(
        "Landlock ABI {version} (file system rules; {scopes}; {sockets}), no_new_privs, rlimits"
    )
}

/// Plain variables every CLI may inherit.
const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "COLORTERM",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// The environment of a CLI: allowlisted parent variables, then the
/// provider's `[providers.*].env`, the adapter's variables, the run's extra
/// variables, and `TMPDIR`.
pub fn child_env(
    provider: Provider,
    parent: &BTreeMap<String, String>,
    layers: &[&BTreeMap<String, String>],
    tmpdir: Option<&Path>,
) -> BTreeMap<String, String> {
    let prefixes = provider::env_prefixes(provider);
    let mut env: BTreeMap<String, String> = parent
        .iter()
        .filter(|(name, _)| {
            BASE_ENV.contains(&name.as_str())
                || name.starts_with("LC_")
                || prefixes.iter().any(|p| name.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for layer in layers {
        env.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(tmp) = tmpdir {
        let tmp = tmp.display().to_string();
        for name in ["TMPDIR", "TMP", "TEMP"] {
            env.insert(name.to_owned(), tmp.clone());
        }
    }
    env
}

/// The runner's own environment as a map (non-UTF-8 entries are dropped).
pub fn parent_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Finds `binary` (a name or a path) using `path_var`.
pub fn resolve_binary(binary: &str, path_var: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return executable(&path).then_some(path);
    }
    let path_var = path_var.map(OsString::from).or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path_var).map(|dir| dir.join(binary)).find(|p| executable(p))
}

/// What a sandboxed run may touch.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Read (and execute) only.
    pub readable: Vec<PathBuf>,
    /// Read and write.
    pub writable: Vec<PathBuf>,
    /// Never reachable through a broad rule (`$DUCTOR_HOME`).
    pub excluded: Vec<PathBuf>,
    /// Pathname sockets the run may connect to (core's, for `ductorctl`).
    pub sockets: Vec<PathBuf>,
}

/// System directories every CLI may read.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/run",
    "/snap",
    "/nix",
    "/var/lib",
    "/var/cache",
];

/// Inputs of [`policy`].
#[derive(Debug)]
pub struct PolicyInput<'a> {
    /// The CLI's working directory.
    pub working_dir: &'a Path,
    /// The resolved binary.
    pub binary: &'a Path,
    /// The CLI's environment (PATH, HOME, provider homes).
    pub env: &'a BTreeMap<String, String>,
    /// The CLI's own state it may write (its home, see [`crate::homes`]).
    pub state: &'a [PathBuf],
    /// The run's private temporary directory.
    pub tmpdir: &'a Path,
    /// `[runner].extra_writable_paths`.
    pub extra_writable: &'a [String],
    /// `[runner].extra_readable_paths`.
    pub extra_readable: &'a [String],
    /// Trees no broad rule may reach: `$DUCTOR_HOME` and the runtime directory.
    pub excluded: &'a [PathBuf],
    /// Sockets the run may connect to.
    pub sockets: &'a [PathBuf],
}

/// What every process of a CLI may read: system directories, PATH, the
/// CLI's install directories and `extra_readable`.
fn readable_set(
    binary: &Path,
    env: &BTreeMap<String, String>,
    extra_readable: &[String],
) -> Vec<PathBuf> {
    let mut readable: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    if let Some(path) = env.get("PATH") {
        readable.extend(std::env::split_paths(path));
    }
    readable.extend(install_dirs(binary, env.get("PATH").map(String::as_str)));
    readable.extend(extra_readable.iter().map(PathBuf::from));
    readable
}

/// The fence of `<binary> --version` (review M13): the run's read set,
/// the provider's state read-only, nothing writable.
pub fn version_policy(
    binary: &Path,
    provider: Provider,
    env: &BTreeMap<String, String>,
    excluded: &[PathBuf],
) -> Policy {
    let mut readable = readable_set(binary, env, &[]);
    readable.extend(provider::state_paths(provider, env).into_iter().map(|state| match state {
        StatePath::Dir(dir) => dir,
        StatePath::File { path, .. } => path,
    }));
    Policy { readable, writable: Vec::new(), excluded: excluded.to_vec(), sockets: Vec::new() }
}

/// The fence of a helper tool (ffmpeg, a transcription command): the run's
/// read set plus `extra_readable`, and only `writable` (its private
/// temporary directory) to write.
pub fn tool_policy(
    binary: &Path,
    env: &BTreeMap<String, String>,
    extra_readable: &[String],
    writable: &[PathBuf],
    excluded: &[PathBuf],
) -> Policy {
    let mut readable = readable_set(binary, env, extra_readable);
    readable.extend(writable.iter().cloned());
    Policy {
        readable,
        writable: writable.to_vec(),
        excluded: excluded.to_vec(),
        sockets: Vec::new(),
    }
}

/// The directory of `writable` that holds `binary` (or the file behind
/// it), if any: a CLI the agent can rewrite must never be run, not even
/// for `--version`.
pub fn writable_root_holding(binary: &Path, writable: &[PathBuf]) -> Option<PathBuf> {
    let real = binary.canonicalize().unwrap_or_else(|_| binary.to_path_buf());
    writable
        .iter()
        .map(|root| root.canonicalize().unwrap_or_else(|_| root.clone()))
        .find(|root| binary.starts_with(root) || real.starts_with(root))
}

/// The read/write sets of one run.
pub fn policy(input: &PolicyInput<'_>) -> Policy {
    let readable = readable_set(input.binary, input.env, input.extra_readable);
    let mut writable = vec![input.working_dir.to_path_buf(), input.tmpdir.to_path_buf()];
    writable.extend(input.state.iter().cloned());
    writable.extend(input.extra_writable.iter().map(PathBuf::from));
    Policy {
        readable,
        writable,
        excluded: input.excluded.to_vec(),
        sockets: input.sockets.to_vec(),
    }
}

/// Directories a CLI's own code lives in: the binary's directory (and the
/// real one behind a symlink), the topmost `node_modules` above it, and the
/// script interpreter's directory.
fn install_dirs(binary: &Path, path_var: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let real = binary.canonicalize().unwrap_or_else(|_| binary.to_path_buf());
    for file in [binary, real.as_path()] {
        if let Some(dir) = file.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Some(modules) = real.ancestors().filter(|a| a.ends_with("node_modules")).last() {
        dirs.push(modules.to_path_buf());
    }
    if let Some(interpreter) = shebang_interpreter(&real, path_var) {
        let real_interpreter = interpreter.canonicalize().unwrap_or(interpreter);
        if let Some(dir) = real_interpreter.parent() {
            dirs.push(dir.to_path_buf());
            // node keeps its modules next to bin/ (lib/node_modules).
            if let Some(prefix) = dir.parent().filter(|_| dir.ends_with("bin")) {
                dirs.push(prefix.join("lib"));
            }
        }
    }
    dirs
}

/// The interpreter of a `#!` script (`#!/usr/bin/env node` resolves `node` on PATH).
fn shebang_interpreter(script: &Path, path_var: Option<&str>) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).and_then(|mut f| f.read(&mut head)).ok()?;
    let first = head[..n].split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(first.strip_prefix(b"#!")?).ok()?;
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if program.ends_with("/env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        resolve_binary(name, path_var)
    } else {
        Some(PathBuf::from(program))
    }
}

/// Builds the Landlock ruleset of `policy`; the returned fd is applied in the child.
pub fn landlock_ruleset(policy: &Policy) -> Result<OwnedFd, String> {
    let all = AccessFs::from_all(WANTED_ABI);
    let read = AccessFs::from_read(WANTED_ABI);
    let excluded: Vec<PathBuf> =
        policy.excluded.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
    let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = Vec::new();
    for root in &policy.readable {
        expand_excluding(root, &excluded, read, &mut rules, 0);
    }
    // /dev: list it, and use the harmless devices, nothing else.
    rules.push((PathBuf::from("/dev"), BitFlags::from(AccessFs::ReadDir)));
    let device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    rules.extend(DEVICES.iter().map(|d| (PathBuf::from(d), device)));
    for root in &policy.writable {
        // Explicit writable paths may lie inside $DUCTOR_HOME (the workspace, the run's TMPDIR).
        let carve: Vec<PathBuf> =
            excluded.iter().filter(|e| !root.starts_with(e)).cloned().collect();
        expand_excluding(root, &carve, all, &mut rules, 0);
    }
    if kernel_landlock_abi().is_ok_and(|abi| abi >= RESOLVE_UNIX_ABI) {
        rules.extend(
            policy.sockets.iter().map(|s| (s.clone(), BitFlags::from(AccessFs::ResolveUnix))),
        );
    }
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.scope(Scope::from_all(WANTED_ABI)))
        .and_then(|r| r.create())
        .map_err(|e| format!("create the Landlock ruleset: {e}"))?;
    for (path, access) in rules {
        let Ok(fd) = PathFd::new(&path) else { continue };
        let access = if path.is_dir() { access } else { access & AccessFs::from_file(WANTED_ABI) };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("add a Landlock rule for {}: {e}", path.display()))?;
    }
    Option::<OwnedFd>::from(ruleset)
        .ok_or_else(|| "the kernel refused a Landlock ruleset".to_owned())
}

/// Adds `root` with `access`, or — when an excluded path lies inside it — its
/// entries one by one, skipping the excluded path (depth-limited).
fn expand_excluding(
    root: &Path,
    excluded: &[PathBuf],
    access: BitFlags<AccessFs>,
    rules: &mut Vec<(PathBuf, BitFlags<AccessFs>)>,
    depth: usize,
) {
    let Ok(real) = root.canonicalize() else { return };
    if excluded.iter().any(|e| real.starts_with(e)) {
        return;
    }
    if !excluded.iter().any(|e| e.starts_with(&real)) {
        rules.push((real, access));
        return;
    }
    if depth > 16 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&real) else { return };
    for entry in entries.flatten() {
        // A symlink could lead back into an excluded tree; skip it inside a carve-out.
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        expand_excluding(&entry.path(), excluded, access, rules, depth + 1);
    }
}

/// Creates the operator's missing provider state directories/files so
/// Landlock can name them (`state = "operator"`); returns them.
pub fn prepare_state(provider: Provider, env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for state in provider::state_paths(provider, env) {
        let outcome = match &state {
            StatePath::Dir(dir) => std::fs::create_dir_all(dir),
            StatePath::File { path, initial } if !path.exists() => create_new(path, initial),
            StatePath::File { .. } => Ok(()),
        };
        if let Err(error) = outcome {
            tracing::warn!(?state, %error, "failed to create a provider state path");
        }
        paths.push(match state {
            StatePath::Dir(dir) => dir,
            StatePath::File { path, .. } => path,
        });
    }
    paths
}

/// Creates `path` (0600) with `contents` unless it exists (concurrent runs race here).
fn create_new(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => file.write_all(contents.as_bytes()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Resource limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// RLIMIT_NPROC.
    pub max_processes: u64,
    /// RLIMIT_FSIZE in bytes.
    pub max_file_bytes: u64,
}

/// What to spawn.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// Absolute binary path.
    pub program: &'a Path,
    /// Arguments.
    pub args: &'a [String],
    /// Complete environment.
    pub env: &'a BTreeMap<String, String>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Resource limits.
    pub limits: Limits,
    /// Landlock ruleset to apply, when sandboxed.
    pub ruleset: Option<OwnedFd>,
    /// What the command reads on stdin.
    pub stdin: StdinFrom,
}

/// Where a spawned command's stdin comes from.
#[derive(Debug)]
pub enum StdinFrom {
    /// `/dev/null`.
    Null,
    /// A file (the prompt).
    File(std::fs::File),
    /// A pipe the caller writes (a streaming CLI).
    Pipe,
}

/// The runner's only spawn site: a command in its own process group, dying
/// with the runner, stdin from the given file or /dev/null, confined as
/// described above.
///
/// Spawn runs through [`Spawner`] (or from an async task for short helper
/// commands), never from `spawn_blocking`: the parent-death signal fires when
/// the *thread* that forked exits, and idle blocking threads do exit.
pub fn command(spawn: Spawn<'_>) -> tokio::process::Command {
    command_in(spawn, None)
}

/// [`command`], inside `fence`'s user and mount namespace when given
/// ([`crate::namespace`]); a failed spawn is explained by [`Fence::explain`].
#[allow(clippy::disallowed_methods)]
pub fn command_in(spawn: Spawn<'_>, fence: Option<Arc<Fence>>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(spawn.program);
    command
        .args(spawn.args)
        .env_clear()
        .envs(spawn.env)
        .current_dir(spawn.cwd)
        .stdin(match spawn.stdin {
            StdinFrom::Null => Stdio::null(),
            StdinFrom::File(file) => Stdio::from(file),
            StdinFrom::Pipe => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    let limits = spawn.limits;
    let ruleset = spawn.ruleset;
    // SAFETY: the closure only makes async-signal-safe system calls (setsid,
    // prctl, setrlimit, getppid, syscall, and the fence's unshare, open,
    // write, mount) on values prepared before fork.
    unsafe {
        command.pre_exec(move || {
            confine_child(
                parent,
                limits,
                ruleset.as_ref().map(|fd| fd.as_raw_fd()),
                fence.as_deref(),
            )
        });
    }
    command
}

/// A long-lived thread that forks the CLIs.
///
/// `fork` + `exec` blocks the calling thread until the child has exec'd;
/// doing that on the two async workers would stall every other run's events
/// during a burst of starts. The thread also gives `PR_SET_PDEATHSIG` a parent
/// thread that lives exactly as long as the runner.
#[derive(Debug, Clone)]
pub struct Spawner {
    jobs: std::sync::mpsc::Sender<SpawnJob>,
}

type SpawnJob =
    (tokio::process::Command, tokio::sync::oneshot::Sender<std::io::Result<tokio::process::Child>>);

impl Spawner {
    /// Starts the spawner thread inside `runtime` (children register with its reactor).
    pub fn start(runtime: tokio::runtime::Handle) -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new().name("ductor-spawner".into()).spawn(move || {
            let _runtime = runtime.enter();
            while let Ok((mut command, reply)) = queue.recv() {
                let _ = reply.send(command.spawn());
            }
        })?;
        Ok(Self { jobs })
    }

    /// Spawns `command` on the spawner thread.
    pub async fn spawn(
        &self,
        command: tokio::process::Command,
    ) -> std::io::Result<tokio::process::Child> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || std::io::Error::other("the spawner thread is gone");
        self.jobs.send((command, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Makes the runner itself non-dumpable, so a CLI running as the same user
/// cannot read `/proc/<runner>/environ` or its memory (which may hold
/// secrets the runner was started with). Landlock does not fence that.
pub fn harden_self() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "failed to make the runner non-dumpable");
    }
}

/// `CAP_SYS_PTRACE` from `linux/capability.h`.
const CAP_SYS_PTRACE: libc::c_ulong = 19;

/// Runs in the forked child before exec.
fn confine_child(
    parent: libc::pid_t,
    limits: Limits,
    ruleset: Option<std::os::fd::RawFd>,
    fence: Option<&Fence>,
) -> std::io::Result<()> {
    let check = |rc: libc::c_long| {
        if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    };
    // SAFETY: plain system calls without pointers into shared state.
    unsafe {
        check(libc::setsid() as libc::c_long)?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) as libc::c_long)?;
        // The runner may have died between fork and prctl.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        let nproc = libc::rlimit { rlim_cur: limits.max_processes, rlim_max: limits.max_processes };
        check(libc::setrlimit(libc::RLIMIT_NPROC, &nproc) as libc::c_long)?;
        let fsize =
            libc::rlimit { rlim_cur: limits.max_file_bytes, rlim_max: limits.max_file_bytes };
        check(libc::setrlimit(libc::RLIMIT_FSIZE, &fsize) as libc::c_long)?;
        // After the limits (a namespace's root may not raise them), before
        // Landlock (which forbids mounting).
        if let Some(fence) = fence {
            fence.enter()?;
        }
        // A CLI running as root would keep CAP_SYS_PTRACE and could read the
        // non-dumpable runner anyway: drop it from the bounding set (best effort).
        if libc::geteuid() == 0 {
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0);
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)?;
        if let Some(fd) = ruleset {
            check(libc::syscall(libc::SYS_landlock_restrict_self, fd, 0))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_allowlist_keeps_provider_vars_and_drops_secrets() {
        let parent = BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin".to_owned()),
            ("ANTHROPIC_API_KEY".to_owned(), "k".to_owned()),
            ("OPENAI_API_KEY".to_owned(), "o".to_owned()),
            ("DUCTOR_TELEGRAM_TOKEN".to_owned(), "secret".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "a".to_owned()),
            ("LC_ALL".to_owned(), "C".to_owned()),
            ("RANDOM_THING".to_owned(), "x".to_owned()),
        ]);
        let extra = BTreeMap::from([("DUCTOR_CHAT_ID".to_owned(), "42".to_owned())]);
        let env = child_env(Provider::Claude, &parent, &[&extra], Some(Path::new("/t")));
        assert_eq!(env.get("ANTHROPIC_API_KEY").map(String::as_str), Some("k"));
        assert_eq!(env.get("DUCTOR_CHAT_ID").map(String::as_str), Some("42"));
        assert_eq!(env.get("TMPDIR").map(String::as_str), Some("/t"));
        assert!(env.contains_key("LC_ALL"));
        assert!(!env.contains_key("OPENAI_API_KEY"));
        assert!(!env.contains_key("DUCTOR_TELEGRAM_TOKEN"));
        assert!(!env.contains_key("RANDOM_THING"));
        let codex = child_env(Provider::Codex, &parent, &[], None);
        assert!(codex.contains_key("OPENAI_API_KEY"));
        assert!(!codex.contains_key("ANTHROPIC_API_KEY"));
    }

    #[test]
    fn auto_without_landlock_refuses_runs_but_an_explicit_none_allows_them() {
        let missing = || Err("ENOSYS".to_owned());
        let auto = decide(SandboxMode::Auto, missing()).expect("the runner still starts");
        let why = auto.admit().expect_err("runs are refused");
        assert!(why.contains("ENOSYS") && why.contains("sandbox = \"none\""), "{why}");
        assert!(decide(SandboxMode::Landlock, missing()).is_err(), "landlock: no start");
        let none = decide(SandboxMode::None, missing()).expect("none is always possible");
        assert!(none.admit().is_ok() && !none.landlock);
        let confined = decide(SandboxMode::Auto, Ok(7)).expect("auto with Landlock");
        assert!(confined.admit().is_ok() && confined.landlock);
        if let Ok(abi) = kernel_landlock_abi() {
            let found = detect(SandboxMode::Auto).expect("auto");
            assert!(found.landlock && found.refused.is_none());
            assert!(found.detail.contains(&format!("ABI {abi}")), "{}", found.detail);
        }
    }

    #[test]
    fn carve_out_skips_the_excluded_tree_but_keeps_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        for sub in ["home/.ductor/secrets", "home/docs", "other"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let mut rules = Vec::new();
        let read = AccessFs::from_read(WANTED_ABI);
        expand_excluding(&root, &[root.join("home/.ductor")], read, &mut rules, 0);
        let paths: Vec<&PathBuf> = rules.iter().map(|(p, _)| p).collect();
        assert!(paths.contains(&&root.join("home/docs")));
        assert!(paths.contains(&&root.join("other")));
        assert!(!paths.iter().any(|p| p.starts_with(root.join("home/.ductor"))));
        assert!(!paths.contains(&&root));
    }

    #[test]
    fn resolves_binaries_on_a_given_path() {
        assert!(resolve_binary("sh", Some("/usr/bin:/bin")).is_some());
        assert!(resolve_binary("no-such-binary-ductor", Some("/usr/bin")).is_none());
    }
}
