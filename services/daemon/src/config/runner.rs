//! `[runner]` and `[providers.*]`: how agent CLIs are started and confined.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Invalid;
use super::agent::PermissionModeSetting;

/// Sandbox for agent CLIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Landlock where the kernel offers it, else none (reported by `doctor`).
    #[default]
    Auto,
    /// Landlock, or refuse to run.
    Landlock,
    /// No filesystem sandbox (environment allowlist and limits still apply).
    None,
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
        Ok(())
    }
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
