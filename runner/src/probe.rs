//! `Probe`: which provider CLIs are installed, where, which version, whether
//! they look logged in, and which models and efforts to offer.
//!
//! Versions come from `<binary> --version` (run through the spawn site with
//! the provider's environment) and are cached per binary path and mtime, so
//! `RunStarted.cli_version` costs nothing after the first probe.
//!
//! `ductor-runner probe` ([`oneshot`]) prints the same answer as JSON without
//! serving: `ductorctl doctor` runs it when no runner is running, so only the
//! runner ever starts an agent CLI, even to ask its version.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use ductor_daemon::config::{ProviderConfig, ProvidersConfig, RunnerConfig};
use ductor_daemon::daemon::Oneshot;
use ductor_daemon::sync::Locked as _;
use ductor_daemon::{Config, DuctorHome};
use ductor_proto::pb;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::provider;
use crate::sandbox::{self, Limits, Spawn};
use crate::spec::Provider;

/// How long `--version` may take (gemini starts node).
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

/// How version checks are confined (review M13): under the run's Landlock
/// read set with nothing writable, and never for a binary inside a tree an
/// agent can write.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// Apply Landlock.
    pub landlock: bool,
    /// Trees no rule may reach (`$DUCTOR_HOME`, the run dir).
    pub excluded: Vec<PathBuf>,
    /// Trees agents can write (workspace, TMPDIRs, granted paths); the
    /// provider's state directories are added per provider.
    pub writable: Vec<PathBuf>,
}

impl Fence {
    /// The fence of a runner with `home` and `config`.
    pub fn of(home: &DuctorHome, config: &RunnerConfig, landlock: bool) -> Self {
        let mut writable = vec![home.workspace(), home.root().join("tmp")];
        writable.extend(config.extra_writable_paths.iter().map(PathBuf::from));
        Self {
            landlock,
            excluded: vec![home.root().to_path_buf(), home.run_dir().to_path_buf()],
            writable,
        }
    }
}

/// Versions by binary path and modification time.
#[derive(Debug, Default)]
pub struct VersionCache {
    entries: Mutex<HashMap<PathBuf, (Option<SystemTime>, String)>>,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

impl VersionCache {
    /// The cached version of `binary`, if still current.
    pub fn cached(&self, binary: &Path) -> Option<String> {
        let entries = self.entries.locked();
        let (stamp, version) = entries.get(binary)?;
        (*stamp == mtime(binary)).then(|| version.clone())
    }

    fn store(&self, binary: &Path, version: &str) {
        self.entries.locked().insert(binary.to_path_buf(), (mtime(binary), version.to_owned()));
    }
}

/// The version token in `--version` output ("2.1.330 (Claude Code)", "codex-cli 0.169.0").
pub fn parse_version(output: &str) -> String {
    let first = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    first
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .unwrap_or(first)
        .to_owned()
}

/// Runs `<binary> --version` in its own process group (the spawn site's
/// `setsid`) and SIGKILLs that group once the leader has exited or the
/// timeout fired, so nothing a version check starts outlives it.
async fn run_version(
    binary: &Path,
    env: &BTreeMap<String, String>,
    ruleset: Option<std::os::fd::OwnedFd>,
    timeout: Duration,
) -> Option<String> {
    let args = ["--version".to_owned()];
    let cwd = PathBuf::from("/");
    let mut command = sandbox::command(Spawn {
        program: binary,
        args: &args,
        env,
        cwd: &cwd,
        limits: Limits { max_processes: 4096, max_file_bytes: 64 * 1024 * 1024 },
        ruleset,
        stdin: sandbox::StdinFrom::Null,
    });
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(binary = %binary.display(), %error, "failed to run --version");
            return None;
        }
    };
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let waiting = child.wait_with_output();
    tokio::pin!(waiting);
    let output = tokio::select! {
        output = &mut waiting => output.ok(),
        () = tokio::time::sleep(timeout) => {
            tracing::warn!(binary = %binary.display(), ?timeout, "--version timed out");
            None
        }
    };
    // On timeout the leader is not reaped yet (the pinned future owns it), so
    // the group id cannot have been reused; after an exit it is held by any
    // member still alive.
    if let Some(group) = group
        && let Err(error) = killpg(group, Signal::SIGKILL)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(%group, %error, "failed to kill a version check's process group");
    }
    // `waiting` (and with it an unreaped leader) is dropped on return; the
    // child was started with `kill_on_drop`, so tokio reaps it in the background.
    let text = String::from_utf8_lossy(&output?.stdout).into_owned();
    let version = parse_version(&text);
    (!version.is_empty()).then_some(version)
}

/// Everything `Probe` says about one provider.
pub async fn provider_info(
    provider: Provider,
    settings: &ProviderConfig,
    parent_env: &BTreeMap<String, String>,
    versions: &VersionCache,
    fence: &Fence,
) -> pb::ProviderInfo {
    let adapter = provider::adapter_env(provider);
    let env = sandbox::child_env(provider, parent_env, &[&settings.env, &adapter], None);
    let binary_name = settings.binary_or(provider.as_str());
    let binary = sandbox::resolve_binary(&binary_name, env.get("PATH").map(String::as_str));
    let models: Vec<String> = if settings.models.is_empty() {
        provider::builtin_models(provider).iter().map(|m| (*m).to_owned()).collect()
    } else {
        settings.models.clone()
    };
    let mut version = String::new();
    if let Some(binary) = &binary {
        version = match versions.cached(binary) {
            Some(version) => version,
            None => match checked_version(provider, binary, &env, fence).await {
                Some(found) => {
                    versions.store(binary, &found);
                    found
                }
                None => String::new(),
            },
        };
    }
    pb::ProviderInfo {
        name: provider.as_str().to_owned(),
        installed: binary.is_some(),
        path: binary.map(|b| b.display().to_string()).unwrap_or_default(),
        version,
        auth_hint: provider::auth_hint(provider, &env).to_owned(),
        default_model: models.first().cloned().unwrap_or_default(),
        models,
        efforts: provider::efforts(provider).iter().map(|e| (*e).to_owned()).collect(),
        can_approve: provider::can_approve(provider),
        can_steer: provider::can_steer(provider),
    }
}

/// `--version` of `binary` inside `fence`, or `None` (logged) when the
/// binary is agent-writable or the check fails.
async fn checked_version(
    provider: Provider,
    binary: &Path,
    env: &BTreeMap<String, String>,
    fence: &Fence,
) -> Option<String> {
    let mut writable = fence.writable.clone();
    writable.extend(provider::state_paths(provider, env).into_iter().map(|state| match state {
        provider::StatePath::Dir(dir) => dir,
        provider::StatePath::File { path, .. } => path,
    }));
    if let Some(root) = sandbox::writable_root_holding(binary, &writable) {
        tracing::warn!(
            binary = %binary.display(),
            root = %root.display(),
            "refusing to run a CLI that lies in a directory agents can write"
        );
        return None;
    }
    let ruleset = if fence.landlock {
        let policy = sandbox::version_policy(binary, provider, env, &fence.excluded);
        match sandbox::landlock_ruleset(&policy) {
            Ok(fd) => Some(fd),
            Err(error) => {
                tracing::warn!(%error, "no Landlock ruleset for --version; not running it");
                return None;
            }
        }
    } else {
        None
    };
    run_version(binary, env, ruleset, VERSION_TIMEOUT).await
}

/// Every provider, and the sandbox runs would get: the `Probe` answer.
pub async fn probe(
    providers: &ProvidersConfig,
    parent_env: &BTreeMap<String, String>,
    versions: &VersionCache,
    support: &sandbox::Support,
    fence: &Fence,
) -> pb::ProbeResponse {
    let mut infos = Vec::new();
    for provider in Provider::ALL {
        let settings = provider.settings(providers);
        infos.push(provider_info(provider, settings, parent_env, versions, fence).await);
    }
    pb::ProbeResponse {
        providers: infos,
        sandbox: support.mode().to_owned(),
        sandbox_detail: support.detail.clone(),
        skill_conflicts: Vec::new(),
    }
}

/// `ductor-runner probe`.
pub const COMMAND: Oneshot = Oneshot {
    name: "probe",
    about: "print what the runner's Probe would answer with this config (the provider CLIs, \
            their versions, the sandbox), as JSON, and exit",
};

/// Runs `ductor-runner probe`: prints [`probe`]'s answer for `config` as JSON
/// on stdout. A sandbox the kernel cannot give still lets the CLIs be probed;
/// the detail says that a runner would refuse to start.
pub async fn oneshot(home: DuctorHome, config: Config) -> anyhow::Result<()> {
    let support =
        sandbox::detect(config.runner.sandbox).unwrap_or_else(|refused| sandbox::Support {
            landlock: false,
            detail: format!("the runner would not start: {refused}"),
            refused: Some(refused),
        });
    let versions = VersionCache::default();
    let fence = Fence::of(&home, &config.runner, support.landlock);
    let parent_env = sandbox::parent_env();
    let mut answer = probe(&config.providers, &parent_env, &versions, &support, &fence).await;
    // What a running runner's last pass would have found, changing nothing.
    if let Some(skills) =
        crate::skills::Skills::new(&config.skills, &home, &config.providers, &parent_env)
    {
        answer.skill_conflicts = tokio::task::spawn_blocking(move || skills.survey())
            .await
            .unwrap_or_default()
            .iter()
            .map(crate::skills::sync::to_proto)
            .collect();
    }
    let json = serde_json::to_string_pretty(&answer).context("encode the probe answer")?;
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An executable `sh` script in `dir`.
    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-cli");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// True once the pid written to `file` is gone or a zombie (waits up to 10 s).
    async fn dies(file: &Path) -> bool {
        let pid = std::fs::read_to_string(file).expect("pid file").trim().to_owned();
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
            if stat.is_empty() || state == Some("Z") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_version_check_gets_the_adapter_env_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        // Like gemini without NO_RELAUNCH: a child that outlives the leader.
        let binary = script(
            dir.path(),
            &format!(
                "echo \"$GEMINI_CLI_NO_RELAUNCH\" > {d}/env\n\
                 sleep 600 >/dev/null 2>&1 &\necho $! > {d}/child\necho 0.61.0"
            ),
        );
        let settings =
            ProviderConfig { binary: binary.display().to_string(), ..ProviderConfig::default() };
        let versions = VersionCache::default();
        let fence = Fence::default();
        let info =
            provider_info(Provider::Gemini, &settings, &sandbox::parent_env(), &versions, &fence)
                .await;
        assert_eq!(info.version, "0.61.0");
        let seen = std::fs::read_to_string(dir.path().join("env")).expect("env written");
        assert_eq!(seen.trim(), "true", "gemini's --version must not relaunch itself");
        assert!(dies(&dir.path().join("child")).await, "the version check's child outlived it");
    }

    #[tokio::test]
    async fn a_hanging_version_check_is_killed_with_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let binary = script(
            dir.path(),
            &format!(
                "sleep 600 >/dev/null 2>&1 &\necho $! > {d}/child\necho $$ > {d}/leader\nwait"
            ),
        );
        let env = sandbox::parent_env();
        assert_eq!(run_version(&binary, &env, None, Duration::from_millis(500)).await, None);
        assert!(dies(&dir.path().join("leader")).await, "the hanging leader survived");
        assert!(dies(&dir.path().join("child")).await, "the hanging leader's child survived");
    }

    #[tokio::test]
    async fn a_version_check_is_fenced_and_never_runs_an_agent_writable_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let o = outside.path().display();
        let binary = script(dir.path(), &format!("echo leaked > {o}/probe-leak\necho 2.1.330"));
        let settings =
            ProviderConfig { binary: binary.display().to_string(), ..ProviderConfig::default() };
        let env = sandbox::parent_env();
        // In a tree agents can write: not run at all.
        let writable = Fence { writable: vec![dir.path().to_path_buf()], ..Fence::default() };
        let versions = VersionCache::default();
        let info = provider_info(Provider::Claude, &settings, &env, &versions, &writable).await;
        assert!(info.installed && info.version.is_empty(), "{info:?}");
        assert!(!outside.path().join("probe-leak").exists(), "an agent-writable CLI was run");
        if sandbox::kernel_landlock_abi().is_err() {
            return;
        }
        // Elsewhere: run under Landlock, which lets it read but not write.
        let fenced = Fence { landlock: true, ..Fence::default() };
        let info = provider_info(Provider::Claude, &settings, &env, &versions, &fenced).await;
        assert_eq!(info.version, "2.1.330");
        assert!(!outside.path().join("probe-leak").exists(), "--version wrote outside its fence");
    }

    #[test]
    fn versions_are_found_in_each_cli_format() {
        assert_eq!(parse_version("2.1.330 (Claude Code)\n"), "2.1.330");
        assert_eq!(parse_version("codex-cli 0.169.0\n"), "0.169.0");
        assert_eq!(parse_version("0.61.0\n"), "0.61.0");
    }
}
