//! The one `config.toml`: a typed section per service, loaded and validated
//! before any I/O.
//!
//! Every section denies unknown keys, so a typo is an error naming the key
//! (`telegram.tokn`), never silently ignored: our config ships with our
//! binaries, so there is no rollback argument for tolerating unknown keys.
//! Secrets may also come from the environment (`DUCTOR_TELEGRAM_TOKEN`,
//! `DUCTOR_MATRIX_PASSWORD`) or from files (`token_file`, `password_file`);
//! they are resolved here so validation sees the effective values.
//!
//! The commented default file ([`DEFAULT_CONFIG_TOML`]) is the documentation:
//! `ductorctl init` writes it, `docs/config.md` is generated from it, and a
//! test keeps it equal to the `Default` of these structs.

mod agent;
mod agents;
mod automation;
mod background;
mod gateways;
mod launcher;
mod media;
mod memory;
mod rules;
mod runner;
mod skills;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::paths::ServiceName;

pub use agent::{AgentConfig, FileAccess, PermissionModeSetting, WhileBusy};
use agents::RequireSecrets;
pub use agents::{AgentEntry, MAIN_AGENT, valid_agent_name};
pub use automation::{
    AutomationConfig, CleanupConfig, HeartbeatConfig, HeartbeatTarget, WebhooksConfig,
};
pub use background::BackgroundConfig;
pub use gateways::{MatrixConfig, MatrixStreaming, TelegramConfig};
pub use launcher::LauncherConfig;
pub use media::{AudioFormat, ImageConfig, ImageFormat, TranscriptionConfig};
pub use memory::MemoryConfig;
pub use rules::RulesConfig;
pub use runner::{ProviderConfig, ProvidersConfig, RunnerConfig, SandboxMode, StateHome};
pub use skills::SkillsConfig;

/// The commented default configuration, as written by `ductorctl init`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("config/default.toml");

/// The whole `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Defaults for chats: provider, model, session freshness, timeouts.
    pub agent: AgentConfig,
    /// The runner process: sandbox, limits.
    pub runner: RunnerConfig,
    /// Per-provider CLI settings.
    pub providers: ProvidersConfig,
    /// The Telegram gateway.
    pub telegram: TelegramConfig,
    /// The Matrix gateway.
    pub matrix: MatrixConfig,
    /// What an agent may schedule and open itself.
    pub automation: AutomationConfig,
    /// The webhook listener.
    pub webhooks: WebhooksConfig,
    /// Periodic check-ins.
    pub heartbeat: HeartbeatConfig,
    /// Retention sweep.
    pub cleanup: CleanupConfig,
    /// Named sessions and delegated tasks.
    pub background: BackgroundConfig,
    /// `ductorctl up` supervision.
    pub launcher: LauncherConfig,
    /// Received recordings become text before the turn.
    pub transcription: TranscriptionConfig,
    /// Received images are resized before the turn.
    pub image: ImageConfig,
    /// Upkeep of the agent's long-term memory.
    pub memory: MemoryConfig,
    /// Skill sync between the workspace and the CLIs' skill directories.
    pub skills: SkillsConfig,
    /// Rule files kept in sync.
    pub rules: RulesConfig,
    /// Sub-agents (`[[agents]]`), each with its own bots and workspace.
    pub agents: Vec<AgentEntry>,
}

/// Why a configuration was rejected. Always names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key is unknown, mistyped or malformed.
    #[error("{path}: key `{key}`: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Dotted key path, e.g. `telegram.tokn`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Values parse but do not make sense together.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Read { .. } => None,
            Self::Parse { key, .. } | Self::Invalid { key, .. } => Some(key),
        }
    }
}

/// A semantic problem found by `validate`, before the file path is attached.
#[derive(Debug)]
pub struct Invalid {
    key: String,
    message: String,
}

impl Invalid {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }

    /// The same problem under `prefix` (`telegram.token` → `agents.x.telegram.token`).
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        Self { key: format!("{prefix}.{}", self.key), message: self.message }
    }
}

impl Config {
    /// Loads `path` (a missing file means all defaults), resolves secrets from
    /// `env` and secret files, and validates.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::load_with(path, env, RequireSecrets::All)
    }

    /// Like [`Config::load`] on the process environment.
    pub fn load_from_env(path: &Path) -> Result<Self, ConfigError> {
        Self::load(path, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load_from_env`] in `service`: a gateway's secret is
    /// required only by that gateway, since the launcher withholds secrets
    /// from the services that do not use them.
    pub fn load_for_service(path: &Path, service: ServiceName) -> Result<Self, ConfigError> {
        Self::load_with(path, &|name| std::env::var(name).ok(), Self::required_by(service))
    }

    /// The gateway secrets `service` needs: the Telegram gateway its own
    /// agent's token (`DUCTOR_AGENT`, default `main`), the others none.
    fn required_by(service: ServiceName) -> RequireSecrets {
        if service != ServiceName::Telegram {
            return RequireSecrets::Nothing;
        }
        let agent = std::env::var("DUCTOR_AGENT").ok().filter(|a| !a.is_empty());
        RequireSecrets::Agent(agent.unwrap_or_else(|| MAIN_AGENT.to_owned()))
    }

    /// Like [`Config::load_for_service`] on text already read (the reload
    /// watcher reads the file once, for this and for the diff).
    pub fn parse_for_service(
        text: &str,
        path: &Path,
        service: ServiceName,
    ) -> Result<Self, ConfigError> {
        Self::parse_with(text, path, &|name| std::env::var(name).ok(), Self::required_by(service))
    }

    fn load_with(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        require: RequireSecrets,
    ) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        Self::parse_with(&text, path, env, require)
    }

    /// Parses TOML text; `path` is only used in messages.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_with(text, path, env, RequireSecrets::All)
    }

    fn parse_with(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        require: RequireSecrets,
    ) -> Result<Self, ConfigError> {
        let parse_error = |key: String, message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            key,
            message,
        };
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| parse_error(String::new(), syntax_message(text, &e)))?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = if holds_secret(&key) {
                "invalid value (not shown: this key holds a secret)".to_owned()
            } else {
                inner.message().trim().to_owned()
            };
            parse_error(key, message)
        })?;
        let invalid = |i: Invalid| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: i.key,
            message: i.message,
        };
        if let Ok(raw) = text.parse::<toml::Table>() {
            config.default_agent_gateways_on(&raw);
        }
        config.resolve_secrets(env).map_err(invalid)?;
        config.validate_with(&require).map_err(invalid)?;
        Ok(config)
    }

    fn resolve_secrets(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), Invalid> {
        // The environment's gateway secrets belong to the agent DUCTOR_AGENT names.
        let serving = env("DUCTOR_AGENT").filter(|a| !a.is_empty() && a != MAIN_AGENT);
        let main_env = |name: &str| if serving.is_none() { env(name) } else { None };
        self.telegram.resolve_secrets(&main_env)?;
        self.matrix.resolve_secrets(&main_env)?;
        self.resolve_agent_secrets(env)
    }

    /// Cross-field checks; the first problem found is returned.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_with(&RequireSecrets::All)
    }

    /// [`Config::validate`]; `require` = whose enabled gateways must have their secret.
    fn validate_with(&self, require: &RequireSecrets) -> Result<(), Invalid> {
        self.agent.validate()?;
        self.runner.validate()?;
        self.providers.validate()?;
        self.telegram.validate(require.of(MAIN_AGENT))?;
        self.matrix.validate()?;
        self.automation.validate()?;
        self.webhooks.validate()?;
        self.heartbeat.validate()?;
        self.cleanup.validate()?;
        self.background.validate()?;
        self.launcher.validate()?;
        self.transcription.validate()?;
        self.image.validate()?;
        self.memory.validate()?;
        self.skills.validate()?;
        self.rules.validate()?;
        self.validate_agents(require)?;
        Ok(())
    }
}

/// A TOML syntax error by line and column, without the quoted source line
/// `toml` would show: that line may hold a token or a password.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    let Some(span) = error.span() else { return message.to_owned() };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("TOML syntax error at line {line}, column {column}: {message}")
}

/// Keys whose values are secrets, so an error about them never repeats the
/// value: the gateways' credentials and the CLIs' extra environment (API keys).
fn holds_secret(key: &str) -> bool {
    let gateway_key = key.strip_prefix("agents").map_or(key, |rest| {
        // `agents[0].telegram.token` → `telegram.token`
        rest.split_once("].").map_or(rest, |(_, tail)| tail)
    });
    matches!(gateway_key, "telegram.token" | "matrix.password")
        || (key.starts_with("providers.") && key.split('.').nth(2) == Some("env"))
}

/// Reads a secret file, trimming one trailing newline.
pub(crate) fn read_secret_file(key: &str, path: &Path) -> Result<String, Invalid> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| Invalid::new(key, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
