//! `[[agents]]`: sub-agents beside the main one, each with its own bot(s),
//! workspace and provider defaults, served by the same core and runner.
//!
//! The main agent is `[agent]` + `[telegram]` + `[matrix]` and is called
//! `main`. A sub-agent's gateway is the same gateway binary started with
//! `DUCTOR_AGENT=<name>`: [`Config::focus`] makes its `[telegram]`/`[matrix]`
//! the agent's own tables, so no gateway code knows about agents beyond the
//! name it puts in its `Hello`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, Invalid, MatrixConfig, TelegramConfig};

/// The main agent's name (it has no `[[agents]]` entry).
pub const MAIN_AGENT: &str = "main";

/// One `[[agents]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentEntry {
    /// Lower-case name: letters, digits, `-` and `_`, starting with a letter
    /// (`main` is the main agent's). It names the agent's sessions
    /// (`telegram@<name>:<chat>`), services (`telegram@<name>`) and home.
    pub name: String,
    /// Start this agent's gateways with `ductorctl up`.
    pub enabled: bool,
    /// One line about what the agent is for (shown to the other agents).
    pub description: String,
    /// Provider of new sessions; empty = `[agent].provider`.
    pub provider: String,
    /// Model of new sessions; empty = `[agent].model` (same provider) or the provider's default.
    pub model: String,
    /// Reasoning effort; empty = `[agent].reasoning_effort`.
    pub reasoning_effort: String,
    /// The agent's workspace; default `$DUCTOR_HOME/agents/<name>/workspace`.
    pub workspace: Option<PathBuf>,
    /// The agent's own Telegram bot (`[agents.telegram]`, the keys of
    /// `[telegram]`; a present table is enabled unless it says otherwise).
    pub telegram: Option<TelegramConfig>,
    /// The agent's own Matrix account (`[agents.matrix]`, the keys of `[matrix]`).
    pub matrix: Option<MatrixConfig>,
}

impl Default for AgentEntry {
    fn default() -> Self {
        Self {
            name: String::new(),
            enabled: true,
            description: String::new(),
            provider: String::new(),
            model: String::new(),
            reasoning_effort: String::new(),
            workspace: None,
            telegram: None,
            matrix: None,
        }
    }
}

/// Whether `name` can name a sub-agent.
pub fn valid_agent_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 32
        && name != MAIN_AGENT
}

/// Which gateway secrets validation requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequireSecrets {
    /// Every enabled gateway's (`ductorctl`'s checks).
    All,
    /// Only this agent's (a gateway process; `main` = `[telegram]`).
    Agent(String),
    /// None (core, runner).
    Nothing,
}

impl RequireSecrets {
    pub(crate) fn of(&self, agent: &str) -> bool {
        match self {
            Self::All => true,
            Self::Agent(name) => name == agent,
            Self::Nothing => false,
        }
    }
}

impl AgentEntry {
    /// The Telegram table when this agent runs a Telegram gateway.
    pub fn telegram_enabled(&self) -> Option<&TelegramConfig> {
        self.telegram.as_ref().filter(|t| self.enabled && t.enabled)
    }

    /// The Matrix table when this agent runs a Matrix gateway.
    pub fn matrix_enabled(&self) -> Option<&MatrixConfig> {
        self.matrix.as_ref().filter(|m| self.enabled && m.enabled)
    }

    /// Which gateways this agent runs: `"telegram"`, `"matrix"`.
    pub fn transports(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.telegram_enabled().is_some() {
            out.push("telegram");
        }
        if self.matrix_enabled().is_some() {
            out.push("matrix");
        }
        out
    }
}

impl Config {
    /// The `[[agents]]` entry called `name`.
    pub fn agent_entry(&self, name: &str) -> Option<&AgentEntry> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The workspace of agent `name` (`main`: `$DUCTOR_HOME/workspace`).
    pub fn workspace_of(&self, home: &crate::DuctorHome, name: &str) -> PathBuf {
        match self.agent_entry(name) {
            Some(entry) => entry.workspace.clone().unwrap_or_else(|| home.agent_workspace(name)),
            None => home.root().join("workspace"),
        }
    }

    /// Every agent's name, `main` first.
    pub fn agent_names(&self) -> Vec<String> {
        std::iter::once(MAIN_AGENT.to_owned())
            .chain(self.agents.iter().map(|a| a.name.clone()))
            .collect()
    }

    /// The configuration as the gateways of agent `name` see it: its own
    /// `[telegram]` and `[matrix]` (disabled when it has none). `main` and
    /// unknown names give the configuration unchanged; callers check the
    /// name first.
    pub fn focus(&self, name: &str) -> Config {
        let mut focused = self.clone();
        if let Some(entry) = self.agent_entry(name) {
            focused.telegram = entry.telegram.clone().unwrap_or_default();
            focused.telegram.enabled = entry.telegram_enabled().is_some();
            focused.matrix = entry.matrix.clone().unwrap_or_default();
            focused.matrix.enabled = entry.matrix_enabled().is_some();
        }
        focused
    }

    /// Reads `[[agents]]` secrets: files always, the environment's
    /// (`DUCTOR_TELEGRAM_TOKEN`, `DUCTOR_MATRIX_PASSWORD`) only for the agent
    /// `DUCTOR_AGENT` names, which is how the launcher hands a gateway its own.
    pub(crate) fn resolve_agent_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Invalid> {
        let serving = env("DUCTOR_AGENT").unwrap_or_default();
        for entry in &mut self.agents {
            let mine = entry.name == serving;
            let scoped = |name: &str| if mine { env(name) } else { None };
            let prefix = format!("agents.{}", entry.name);
            if let Some(telegram) = &mut entry.telegram {
                telegram.resolve_secrets(&scoped).map_err(|i| i.prefixed(&prefix))?;
            }
            if let Some(matrix) = &mut entry.matrix {
                matrix.resolve_secrets(&scoped).map_err(|i| i.prefixed(&prefix))?;
            }
        }
        Ok(())
    }

    /// A present `[agents.telegram]`/`[agents.matrix]` without `enabled` is on.
    pub(crate) fn default_agent_gateways_on(&mut self, raw: &toml::Table) {
        let Some(toml::Value::Array(entries)) = raw.get("agents") else { return };
        for (entry, raw) in self.agents.iter_mut().zip(entries) {
            let says = |table: &str| {
                raw.get(table).and_then(|t| t.get("enabled")).and_then(toml::Value::as_bool)
            };
            if let Some(telegram) = &mut entry.telegram {
                telegram.enabled = says("telegram").unwrap_or(true);
            }
            if let Some(matrix) = &mut entry.matrix {
                matrix.enabled = says("matrix").unwrap_or(true);
            }
        }
    }

    pub(crate) fn validate_agents(&self, require: &RequireSecrets) -> Result<(), Invalid> {
        let mut seen: Vec<&str> = Vec::new();
        let mut tokens: Vec<(&str, String)> = Vec::new();
        if !self.telegram.token.is_empty() {
            tokens.push((MAIN_AGENT, self.telegram.token.expose().to_owned()));
        }
        let mut accounts: Vec<(&str, String)> = Vec::new();
        if self.matrix.enabled {
            accounts.push((MAIN_AGENT, self.matrix.user_id.clone()));
        }
        for (index, entry) in self.agents.iter().enumerate() {
            if !valid_agent_name(&entry.name) {
                return Err(Invalid::new(
                    format!("agents[{index}].name"),
                    format!(
                        "{:?} is not an agent name (lower-case letters, digits, - and _, \
                         starting with a letter, at most 32, not \"main\")",
                        entry.name
                    ),
                ));
            }
            if seen.contains(&entry.name.as_str()) {
                return Err(Invalid::new(
                    format!("agents[{index}].name"),
                    format!("{:?} names two agents", entry.name),
                ));
            }
            seen.push(&entry.name);
            let prefix = format!("agents.{}", entry.name);
            if let Some(workspace) = &entry.workspace
                && !workspace.is_absolute()
            {
                return Err(Invalid::new(
                    format!("{prefix}.workspace"),
                    "must be an absolute path",
                ));
            }
            if let Some(telegram) = &entry.telegram {
                telegram.validate(require.of(&entry.name)).map_err(|i| i.prefixed(&prefix))?;
                if !telegram.token.is_empty() {
                    let token = telegram.token.expose().to_owned();
                    if let Some((other, _)) = tokens.iter().find(|(_, t)| *t == token) {
                        return Err(Invalid::new(
                            format!("{prefix}.telegram.token"),
                            format!(
                                "is also the bot token of agent {other:?} (one bot, one agent)"
                            ),
                        ));
                    }
                    tokens.push((&entry.name, token));
                }
            }
            if let Some(matrix) = &entry.matrix {
                matrix.validate().map_err(|i| i.prefixed(&prefix))?;
                if matrix.enabled {
                    if let Some((other, _)) = accounts.iter().find(|(_, u)| *u == matrix.user_id) {
                        return Err(Invalid::new(
                            format!("{prefix}.matrix.user_id"),
                            format!("is also the Matrix account of agent {other:?}"),
                        ));
                    }
                    accounts.push((&entry.name, matrix.user_id.clone()));
                }
            }
        }
        Ok(())
    }
}
