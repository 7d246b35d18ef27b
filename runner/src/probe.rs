//! `Probe`: which provider CLIs are installed, where, which version, whether
//! they look logged in, and which models and efforts to offer.
//!
//! Versions come from `<binary> --version` (run through the spawn site with
//! the provider's environment) and are cached per binary path and mtime, so
//! `RunStarted.cli_version` costs nothing after the first probe.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ductor_daemon::config::ProviderConfig;
use ductor_proto::pb;

use crate::provider;
use crate::sandbox::{self, Limits, Spawn};
use crate::spec::Provider;

/// How long `--version` may take (gemini starts node).
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

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
        let entries = self.entries.lock().ok()?;
        let (stamp, version) = entries.get(binary)?;
        (*stamp == mtime(binary)).then(|| version.clone())
    }

    fn store(&self, binary: &Path, version: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(binary.to_path_buf(), (mtime(binary), version.to_owned()));
        }
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

async fn run_version(binary: &Path, env: &BTreeMap<String, String>) -> Option<String> {
    let args = ["--version".to_owned()];
    let cwd = std::env::temp_dir();
    let command = sandbox::command(Spawn {
        program: binary,
        args: &args,
        env,
        cwd: &cwd,
        limits: Limits { max_processes: 4096, max_file_bytes: 64 * 1024 * 1024 },
        ruleset: None,
    });
    let mut command = command;
    let output = tokio::time::timeout(VERSION_TIMEOUT, command.output()).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text);
    (!version.is_empty()).then_some(version)
}

/// Everything `Probe` says about one provider.
pub async fn provider_info(
    provider: Provider,
    settings: &ProviderConfig,
    parent_env: &BTreeMap<String, String>,
    versions: &VersionCache,
) -> pb::ProviderInfo {
    let env = sandbox::child_env(provider, parent_env, &[&settings.env], None);
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
            None => match run_version(binary, &env).await {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_each_cli_format() {
        assert_eq!(parse_version("2.1.330 (Claude Code)\n"), "2.1.330");
        assert_eq!(parse_version("codex-cli 0.169.0\n"), "0.169.0");
        assert_eq!(parse_version("0.61.0\n"), "0.61.0");
    }
}
