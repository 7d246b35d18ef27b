//! `[runner]` and `[providers.*]`: how agent CLIs are started and confined.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::Invalid;
use super::agent::PermissionModeSetting;

/// Sandbox for agent CLIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Landlock where the kernel offers it; without it agent runs are refused.
    #[default]
    Auto,
    /// Landlock, or refuse to run.
    Landlock,
    /// No filesystem sandbox (environment allowlist and limits still apply).
    None,
}

/// Where a CLI keeps its own state (`~/.claude`, `~/.codex`, `~/.gemini`)
/// during agent runs (review H6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateHome {
    /// A ductor-owned home per chat (its named sessions and tasks included):
    /// one chat cannot read another's transcripts.
    #[default]
    PerChat,
    /// One ductor-owned home for every run of this provider.
    Shared,
    /// The CLI's own home from the environment, shared with your own use of
    /// the CLI: a hook or MCP server an agent writes there runs unconfined
    /// the next time you run the CLI yourself. `doctor` warns.
    Operator,
}

impl StateHome {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerChat => "per_chat",
            Self::Shared => "shared",
            Self::Operator => "operator",
        }
    }
}

/// `[runner]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerConfig {
    /// `auto`, `landlock` or `none`.
    pub sandbox: SandboxMode,
    /// Extra paths a sandboxed CLI may write (besides its working directory and
    /// its provider's state directories).
    pub extra_writable_paths: Vec<String>,
    /// Grace between SIGTERM and SIGKILL when stopping a run, in milliseconds.
    pub stop_grace_ms: u64,
    /// Longest accepted CLI output line, in bytes; longer lines are reported and skipped.
    pub max_line_bytes: usize,
    /// Most concurrent runs.
    pub max_concurrent_runs: u32,
    /// RLIMIT_NPROC for a run's processes.
    pub max_processes: u64,
    /// RLIMIT_FSIZE for a run's processes, in MiB.
    pub max_file_size_mb: u64,
    /// Extra paths a sandboxed CLI may read (besides the system directories,
    /// PATH and the CLI's install directory).
    pub extra_readable_paths: Vec<String>,
    /// Default total timeout of a run, in milliseconds (a RunSpec may lower it).
    pub total_timeout_ms: u64,
    /// Default idle timeout (no output) of a run, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Permission mode when a RunSpec leaves it unspecified:
    /// `default`, `accept_edits`, `bypass` or `plan`.
    pub permission_mode: PermissionModeSetting,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            sandbox: SandboxMode::Auto,
            extra_writable_paths: Vec::new(),
            stop_grace_ms: 2000,
            max_line_bytes: 8 * 1024 * 1024,
            max_concurrent_runs: 64,
            max_processes: 4096,
            max_file_size_mb: 4096,
            extra_readable_paths: Vec::new(),
            total_timeout_ms: 2 * 60 * 60 * 1000,
            idle_timeout_ms: 30 * 60 * 1000,
            permission_mode: PermissionModeSetting::Bypass,
        }
    }
}

impl RunnerConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.max_line_bytes < 64 * 1024 {
            return Err(Invalid::new("runner.max_line_bytes", "must be at least 65536"));
        }
        if self.total_timeout_ms == 0 {
            return Err(Invalid::new("runner.total_timeout_ms", "must be greater than 0"));
        }
        if self.idle_timeout_ms == 0 {
            return Err(Invalid::new("runner.idle_timeout_ms", "must be greater than 0"));
        }
        if self.max_concurrent_runs == 0 {
            return Err(Invalid::new("runner.max_concurrent_runs", "must be greater than 0"));
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        for path in &self.extra_writable_paths {
            if let Some(why) = unsafe_writable(Path::new(path), home.as_deref()) {
                return Err(Invalid::new(
                    "runner.extra_writable_paths",
                    format!("{path:?} {why}; grant a project directory instead"),
                ));
            }
        }
        for path in &self.extra_readable_paths {
            if !Path::new(path).is_absolute() {
                return Err(Invalid::new(
                    "runner.extra_readable_paths",
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
        Ok(())
    }
}

/// Paths under the home directory whose write access gives the agent a way
/// out of the sandbox: code that runs unconfined at the next login, boot,
/// ssh or git command, or ductor's own units and binaries.
const HOME_ESCAPES: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".config",
    ".local/bin",
    ".local/share/systemd",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".pam_environment",
    ".xprofile",
    ".gitconfig",
    ".npmrc",
    ".cargo/bin",
    ".claude",
    ".claude.json",
    ".codex",
    ".gemini",
];

/// System trees never handed to an agent for writing.
const SYSTEM_TREES: &[&str] =
    &["/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/var/spool", "/var/lib"];

/// Why `path` must not be an extra writable root, if it must not: not
/// absolute, with `..`, the filesystem root, the home directory or one of
/// its ancestors, or a tree that holds (or lies in) a way out of the sandbox.
/// Judged on the words of the path; the runner resolves links before granting.
fn unsafe_writable(path: &Path, home: Option<&Path>) -> Option<String> {
    if !path.is_absolute() {
        return Some("is not an absolute path".into());
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some("contains \"..\"".into());
    }
    let path: PathBuf = path.components().collect();
    if path.parent().is_none() {
        return Some("is the filesystem root".into());
    }
    let covers = |escape: &Path| escape.starts_with(&path) || path.starts_with(escape);
    if let Some(tree) = SYSTEM_TREES.iter().map(Path::new).find(|t| covers(t)) {
        return Some(format!("overlaps the system tree {}", tree.display()));
    }
    let home = home.filter(|h| h.is_absolute())?;
    if home.starts_with(&path) {
        return Some("is the home directory or holds it".into());
    }
    HOME_ESCAPES.iter().map(|e| home.join(e)).find(|e| covers(e)).map(|escape| {
        format!("overlaps {} (code there runs outside the sandbox)", escape.display())
    })
}

/// `[providers.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name on PATH or absolute path; empty means the provider's own name.
    pub binary: String,
    /// Extra CLI arguments, appended.
    pub args: Vec<String>,
    /// Extra environment for this CLI only.
    pub env: BTreeMap<String, String>,
    /// Models offered in `/model` (first is the default); empty = built-in list.
    pub models: Vec<String>,
    /// Where the CLI keeps its state during agent runs.
    pub state: StateHome,
}

impl ProviderConfig {
    /// The binary to run for provider `name`.
    pub fn binary_or(&self, name: &str) -> String {
        if self.binary.is_empty() { name.to_owned() } else { self.binary.clone() }
    }
}

/// `[providers]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Claude Code.
    pub claude: ProviderConfig,
    /// OpenAI Codex CLI.
    pub codex: ProviderConfig,
    /// Gemini CLI.
    pub gemini: ProviderConfig,
}

impl ProvidersConfig {
    /// The settings of provider `name`.
    pub fn get(&self, name: &str) -> Option<&ProviderConfig> {
        match name {
            "claude" => Some(&self.claude),
            "codex" => Some(&self.codex),
            "gemini" => Some(&self.gemini),
            _ => None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        for (name, provider) in
            [("claude", &self.claude), ("codex", &self.codex), ("gemini", &self.gemini)]
        {
            for key in provider.env.keys() {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    return Err(Invalid::new(
                        format!("providers.{name}.env"),
                        format!("invalid variable name {key:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_roots_that_open_a_way_out_are_refused() {
        let home = Some(Path::new("/home/op"));
        for (path, why) in [
            ("relative/dir", "absolute"),
            ("/srv/../home/op", ".."),
            ("/", "root"),
            ("/home", "home directory"),
            ("/home/op", "home directory"),
            ("/home/op/", "home directory"),
            ("/home/op/.ssh", ".ssh"),
            ("/home/op/.config/systemd/user", ".config"),
            ("/home/op/.local", ".local/bin"),
            ("/home/op/.bashrc", ".bashrc"),
            ("/home/op/.claude", ".claude"),
            ("/etc", "/etc"),
            ("/usr/local/bin", "/usr"),
        ] {
            let refused = unsafe_writable(Path::new(path), home)
                .unwrap_or_else(|| panic!("{path} was accepted"));
            assert!(refused.contains(why), "{path}: {refused}");
        }
        for path in ["/home/op/projects/site", "/srv/data", "/tmp/scratch", "/home/op/.localized"] {
            assert_eq!(unsafe_writable(Path::new(path), home), None, "{path}");
        }
    }

    #[test]
    fn a_bad_writable_root_fails_validation_with_the_key_named() {
        let config = RunnerConfig {
            extra_writable_paths: vec!["/etc/cron.d".into()],
            ..RunnerConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "runner.extra_writable_paths");
        assert!(error.message.contains("/etc"), "{}", error.message);
    }
}
