//! `ductorctl doctor`: checks the installation and prints one OK/WARN/FAIL
//! line per check: config, home and run directory permissions, socket path
//! length, service binaries, the provider CLIs the runner finds (and their
//! versions; asked of the running runner, else of a one-shot `ductor-runner
//! probe`), Landlock and the sandbox mode runs would get, and the socket
//! fence (what it hides from runs, and what it does not). Exit 1 when
//! anything FAILs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ductor_daemon::config::{SandboxMode, StateHome};
use ductor_daemon::{Config, DuctorHome, ServiceName};

use crate::bins::BinDir;
use crate::probe::{self, Source};

/// `ductorctl doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Broken.
    Fail,
}

struct Report {
    worst: Level,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl AsRef<str>) {
        let tag = match level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("{tag} {what}: {}", detail.as_ref());
        self.worst = self.worst.max(level);
    }
}

/// Runs `doctor`.
pub async fn run(home: &DuctorHome, _args: Args) -> anyhow::Result<ExitCode> {
    let mut report = Report { worst: Level::Ok };
    let config = check_config(&mut report, home);
    check_dirs(&mut report, home);
    let config = config.unwrap_or_default();
    check_binaries(&mut report, &config);
    let runner_detail = check_providers(&mut report, home, &config).await;
    check_sandbox(&mut report, &config);
    check_socket_fence(&mut report, &config, runner_detail.as_deref());
    check_provider_state(&mut report, home, &config);
    check_transcription(&mut report, home, &config);
    Ok(if report.worst == Level::Fail { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn check_config(report: &mut Report, home: &DuctorHome) -> Option<Config> {
    let path = home.config_file();
    match Config::load_from_env(&path) {
        Ok(config) if path.exists() => {
            report.line(Level::Ok, "config", format!("{} is valid", path.display()));
            Some(config)
        }
        Ok(config) => {
            report.line(
                Level::Warn,
                "config",
                format!(
                    "{} does not exist; defaults apply (`ductorctl init` writes one)",
                    path.display()
                ),
            );
            Some(config)
        }
        Err(error) => {
            report.line(Level::Fail, "config", error.to_string());
            None
        }
    }
}

/// A directory must be ours and closed to group and others.
fn private_dir(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(format!("{} is owned by uid {}, not {uid}", path.display(), meta.uid()));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("{} has mode {mode:04o}; it must be 0700", path.display()));
    }
    Ok(format!("{} (0{mode:o}, ours)", path.display()))
}

fn check_dirs(report: &mut Report, home: &DuctorHome) {
    if home.root().exists() {
        match private_dir(home.root()) {
            Ok(detail) => report.line(Level::Ok, "home", detail),
            Err(detail) => report.line(Level::Warn, "home", detail),
        }
    } else {
        report.line(Level::Warn, "home", format!("{} does not exist yet", home.root().display()));
    }
    let run = home.run_dir();
    if run.exists() {
        match private_dir(run) {
            Ok(detail) => report.line(Level::Ok, "run dir", detail),
            Err(detail) => report.line(Level::Fail, "run dir", detail),
        }
    } else {
        report.line(Level::Ok, "run dir", format!("{} (created 0700 by `up`)", run.display()));
    }
    // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
    let longest =
        ServiceName::ALL.iter().map(|s| home.socket(*s).as_os_str().len()).max().unwrap_or(0);
    if longest >= 108 {
        report.line(
            Level::Fail,
            "sockets",
            format!(
                "socket paths under {} are {longest} bytes; the limit is 107 (set DUCTOR_RUN_DIR)",
                run.display()
            ),
        );
    }
}

fn check_binaries(report: &mut Report, config: &Config) {
    let Ok(bins) = BinDir::locate() else {
        report.line(Level::Fail, "binaries", "cannot find the ductorctl executable");
        return;
    };
    let mut missing: Vec<String> = crate::instance::enabled(config)
        .iter()
        .filter_map(|i| bins.service(i.service).err().map(|e| e.binary))
        .collect();
    missing.dedup();
    if missing.is_empty() {
        report.line(
            Level::Ok,
            "binaries",
            format!("every enabled service in {}", bins.dir().display()),
        );
    } else {
        report.line(
            Level::Fail,
            "binaries",
            format!("missing in {}: {}", bins.dir().display(), missing.join(", ")),
        );
    }
}

/// The provider CLIs as the runner sees them: the running one, else a
/// one-shot `ductor-runner probe` (`ductorctl` never runs a CLI itself).
/// Returns the runner's sandbox detail.
async fn check_providers(
    report: &mut Report,
    home: &DuctorHome,
    config: &Config,
) -> Option<String> {
    let answer = match probe::probe(home).await {
        Ok((answer, Source::Running)) => {
            report.line(Level::Ok, "runner", "running; it checked the provider CLIs below");
            answer
        }
        Ok((answer, Source::Oneshot)) => {
            let detail = "not running; `ductor-runner probe` checked the provider CLIs below";
            report.line(Level::Ok, "runner", detail);
            answer
        }
        Err(error) => {
            report.line(Level::Warn, "providers", format!("not checked: {error}"));
            return None;
        }
    };
    let mut found = 0;
    for info in &answer.providers {
        let what = format!("provider {}", info.name);
        if !info.installed {
            let configured =
                config.providers.get(&info.name).map(|p| p.binary.as_str()).unwrap_or("");
            let binary = if configured.is_empty() { info.name.as_str() } else { configured };
            let level = if info.name == config.agent.provider { Level::Warn } else { Level::Ok };
            let note = if level == Level::Warn { " (it is [agent].provider)" } else { "" };
            report.line(level, &what, format!("`{binary}` not found on PATH{note}"));
            continue;
        }
        found += 1;
        if info.version.is_empty() {
            report.line(Level::Warn, &what, format!("{} does not answer --version", info.path));
        } else {
            let login = match info.auth_hint.as_str() {
                "" => String::new(),
                hint => format!("; login: {hint}"),
            };
            report.line(Level::Ok, &what, format!("{} ({}){login}", info.version, info.path));
        }
    }
    if found == 0 {
        report.line(
            Level::Fail,
            "providers",
            "no agent CLI found: install claude, codex or gemini",
        );
    }
    check_skills(report, &answer.skill_conflicts);
    Some(answer.sandbox_detail)
}

/// Skills the runner could not sync ([skills]); both sides are kept.
fn check_skills(report: &mut Report, conflicts: &[ductor_proto::pb::SkillConflict]) {
    for conflict in conflicts {
        let there = match conflict.there.as_str() {
            "" => String::new(),
            there => format!(" (vs {there})"),
        };
        let what = format!("skill {}", conflict.skill);
        report.line(Level::Warn, &what, format!("{}{there}: {}", conflict.here, conflict.why));
    }
}

/// Where the CLIs keep their state during agent runs (review H6).
fn check_provider_state(report: &mut Report, home: &DuctorHome, config: &Config) {
    let mut owned = Vec::new();
    for name in ["claude", "codex", "gemini"] {
        let Some(settings) = config.providers.get(name) else { continue };
        if settings.state == StateHome::Operator {
            let detail = format!(
                "{name} runs share your own {name} home: a hook, MCP server or memory an agent \
                 writes there runs unconfined when you next use {name} yourself, and every chat \
                 sees the others' transcripts; set [providers.{name}].state = \"per_chat\""
            );
            report.line(Level::Warn, "provider state", detail);
        } else {
            owned.push(format!("{name} {}", settings.state.as_str()));
        }
    }
    if !owned.is_empty() {
        let detail = format!(
            "{} in {} (your settings copied in each run, your login linked)",
            owned.join(", "),
            home.provider_homes().display()
        );
        report.line(Level::Ok, "provider state", detail);
    }
}

/// The Landlock ABI version the kernel offers, if any.
pub fn landlock_abi() -> Option<i64> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns the ABI version; it reads no memory and creates nothing.
    let version = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32)
    };
    (version > 0).then_some(version)
}

fn check_sandbox(report: &mut Report, config: &Config) {
    let abi = landlock_abi();
    match abi {
        Some(abi) => report.line(Level::Ok, "landlock", format!("available (ABI {abi})")),
        None => report.line(Level::Warn, "landlock", "not available in this kernel"),
    }
    match (config.runner.sandbox, abi) {
        (SandboxMode::None, _) => report.line(
            Level::Warn,
            "sandbox",
            "[runner].sandbox = \"none\": agent CLIs are not confined to their workspace",
        ),
        (_, Some(abi)) => report.line(
            Level::Ok,
            "sandbox",
            format!("runs are confined with Landlock (ABI {abi})"),
        ),
        (SandboxMode::Auto, None) => report.line(
            Level::Fail,
            "sandbox",
            "agent runs are refused: no Landlock to confine them ([runner].sandbox = \"auto\"); \
             set [runner].sandbox = \"none\" to run agents unconfined",
        ),
        (SandboxMode::Landlock, None) => report.line(
            Level::Fail,
            "sandbox",
            "[runner].sandbox = \"landlock\" but Landlock is unavailable: runs will be refused",
        ),
    }
}

/// The part of the runner's sandbox detail about the socket fence (it starts
/// with "socket fence"), as the running runner checked it.
fn fence_part(detail: &str) -> Option<&str> {
    detail.find("socket fence").map(|at| &detail[at..])
}

/// The socket fence: what a running runner found, else what this kernel's
/// settings suggest (the runner tries it for real at start).
fn check_socket_fence(report: &mut Report, config: &Config, runner_detail: Option<&str>) {
    if config.runner.sandbox == SandboxMode::None {
        let detail = "off ([runner].sandbox = \"none\"): agent CLIs can connect to every \
                      same-uid Unix socket (D-Bus, systemd --user, ssh-agent, docker)";
        report.line(Level::Warn, "socket fence", detail);
        return;
    }
    match runner_detail.and_then(fence_part) {
        Some(part) if part.starts_with("socket fence:") => {
            let (covered, gaps) = part.split_once("; not covered: ").unwrap_or((part, ""));
            let covered = covered.trim_start_matches("socket fence: ");
            report.line(Level::Ok, "socket fence", covered);
            // Landlock ABI 9 governs connect() itself, for every path.
            let level =
                if landlock_abi().is_some_and(|abi| abi >= 9) { Level::Ok } else { Level::Warn };
            if !gaps.is_empty() {
                report.line(level, "fence gaps", format!("not covered: {gaps}"));
            }
        }
        Some(part) => {
            report.line(Level::Warn, "socket fence", part.trim_start_matches("socket fence "))
        }
        None => match userns_refusal() {
            Some(reason) => report.line(
                Level::Warn,
                "socket fence",
                format!("likely unavailable ({reason}); the runner checks at start"),
            ),
            None => report.line(
                Level::Ok,
                "socket fence",
                "user namespaces look available (the runner checks at start and reports in \
                 `ductorctl doctor` while it runs)",
            ),
        },
    }
}

/// Why this kernel's settings refuse unprivileged user namespaces, if they do.
fn userns_refusal() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|t| t.trim().to_owned());
    let checks = [
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
        ("/proc/sys/user/max_user_namespaces", "0"),
    ];
    checks.into_iter().find_map(|(path, refusing)| {
        let name = path.trim_start_matches("/proc/sys/").replace('/', ".");
        (read(path).as_deref() == Some(refusing)).then(|| format!("{name} = {refusing}"))
    })
}

/// `[transcription]`: the command and ffmpeg on the runner's PATH (this
/// PATH: `ductorctl up` passes its own on), and a key file only we may read.
/// Found by looking, never by running them.
fn check_transcription(report: &mut Report, home: &DuctorHome, config: &Config) {
    use ductor_daemon::config::AudioFormat;
    let t = &config.transcription;
    if !t.enabled() {
        report.line(Level::Ok, "transcription", "off: recordings reach the agent as files");
        return;
    }
    let mut problems = Vec::new();
    let command = t.command.first().filter(|_| !t.command.is_empty());
    if let Some(program) = command
        && on_path(program).is_none()
    {
        problems.push(format!("the command {program} is not on PATH"));
    }
    let wav = (command.is_some() && t.command_format == AudioFormat::Wav)
        || (!t.endpoint.is_empty() && t.endpoint_format == AudioFormat::Wav)
        || t.video;
    if wav && on_path(&t.ffmpeg).is_none() {
        problems.push(format!("{} is not on PATH (needed for WAV and videos)", t.ffmpeg));
    }
    if let Some(file) = &t.api_key_file {
        let path = if file.is_absolute() { file.clone() } else { home.root().join(file) };
        match std::fs::metadata(&path) {
            Err(e) => problems.push(format!("api_key_file {}: {e}", path.display())),
            Ok(meta) if meta.mode() & 0o077 != 0 => {
                problems.push(format!(
                    "api_key_file {} may be read by other users (chmod 600 it)",
                    path.display()
                ));
            }
            Ok(_) => {}
        }
    }
    let backends: Vec<&str> =
        [command.map(|_| "command"), (!t.endpoint.is_empty()).then_some("endpoint")]
            .into_iter()
            .flatten()
            .collect();
    if problems.is_empty() {
        report.line(Level::Ok, "transcription", format!("backends: {}", backends.join(", then ")));
    } else {
        report.line(Level::Fail, "transcription", problems.join("; "));
    }
}

/// `program` as PATH finds it (or itself when it holds a `/`), if executable.
fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}
