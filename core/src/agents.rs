//! The agents core serves: `main` (`[agent]`, `[telegram]`, `[matrix]`) and
//! every `[[agents]]` entry, each with its own workspace and defaults.
//!
//! Core tells them apart by endpoint name only: a sub-agent's gateway says
//! `agent = "researcher"` in its `Hello` and its chats are keyed
//! `telegram@researcher:<chat>` ([`crate::model::endpoint`]); nothing here
//! knows what a transport is. [`bus`] lets one agent ask another, [`grpc`]
//! serves it (`ductorctl agents list|ask`), [`store`] keeps each pair's
//! session, [`control`] is `/agents` and `/agent_start|stop|restart` in chat.

pub mod bus;
pub mod control;
pub mod grpc;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;

use ductor_daemon::DuctorHome;
use ductor_daemon::config::{Config, MAIN_AGENT};

use crate::machine::AgentDefaults;

/// The transport name of inter-agent runs (`bus@researcher:<trace>.<hop>`):
/// no gateway may take it, so nothing is ever delivered to such a chat.
pub const BUS: &str = "bus";

/// One agent as core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `main` or the `[[agents]]` name.
    pub name: String,
    /// What it is for (shown to the other agents).
    pub description: String,
    /// Provider of new sessions.
    pub provider: String,
    /// Model of new sessions (empty = the provider's default).
    pub model: String,
    /// Reasoning effort of new sessions.
    pub effort: String,
    /// Its workspace.
    pub workspace: PathBuf,
    /// Gateways configured for it.
    pub transports: Vec<String>,
    /// Started by `ductorctl up` (main always is).
    pub enabled: bool,
}

/// Every agent, `main` first.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    profiles: Vec<Profile>,
}

impl Directory {
    /// The agents of `config`; a sub-agent's empty keys fall back to `[agent]`'s.
    pub fn from_config(config: &Config, home: &DuctorHome) -> Self {
        let agent = &config.agent;
        let mut main_transports = Vec::new();
        if config.telegram.enabled {
            main_transports.push("telegram".to_owned());
        }
        if config.matrix.enabled {
            main_transports.push("matrix".to_owned());
        }
        let main = Profile {
            name: MAIN_AGENT.to_owned(),
            description: "the main agent".to_owned(),
            provider: agent.provider.clone(),
            model: agent.model.clone(),
            effort: agent.reasoning_effort.clone(),
            workspace: home.workspace(),
            transports: main_transports,
            enabled: true,
        };
        let or = |own: &str, main: &str| if own.is_empty() { main } else { own }.to_owned();
        let subs = config.agents.iter().map(|entry| {
            let provider = or(&entry.provider, &agent.provider);
            // [agent].model names a model of [agent].provider only.
            let fallback_model = if provider == agent.provider { agent.model.as_str() } else { "" };
            Profile {
                name: entry.name.clone(),
                description: entry.description.clone(),
                model: or(&entry.model, fallback_model),
                effort: or(&entry.reasoning_effort, &agent.reasoning_effort),
                provider,
                workspace: config.workspace_of(home, &entry.name),
                transports: entry.transports().into_iter().map(str::to_owned).collect(),
                enabled: entry.enabled,
            }
        });
        Self { profiles: std::iter::once(main).chain(subs).collect() }
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Every agent, `main` first.
    pub fn all(&self) -> &[Profile] {
        &self.profiles
    }

    /// Every name, for messages ("main, researcher").
    pub fn names(&self) -> String {
        self.profiles.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The sub-agents: `(name, profile)`.
    fn subs(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter().filter(|p| p.name != MAIN_AGENT)
    }

    /// Whether there is any sub-agent.
    pub fn has_subs(&self) -> bool {
        self.profiles.len() > 1
    }

    /// What agent `name`'s rule files say about the agents (its managed block).
    pub fn rules_for(&self, name: &str) -> String {
        let me = self.get(name).map_or("", |p| p.description.as_str());
        let mut text = format!(
            "## Agents\n\nYou are the agent `{name}`{}. ductor runs other agents beside \
             you, each with its own chats, workspace and memory:\n\n",
            if me.is_empty() { String::new() } else { format!(" ({me})") }
        );
        for other in self.profiles.iter().filter(|p| p.name != name && p.enabled) {
            let about = if other.description.is_empty() { "" } else { other.description.as_str() };
            text.push_str(&format!("- `{}`: {about}\n", other.name));
        }
        text.push_str(
            "\nAsk one with `ductorctl agents ask NAME \"question\"`: it waits for the answer \
             and prints it. With `--background` it returns at once and the answer comes back \
             to this chat as a new message to you. The other agent sees only your question, \
             not this chat. A conversation between agents is at most three asks deep; do not \
             ask back an agent that is asking you. `ductorctl agents list` shows who is there.\n",
        );
        text
    }

    /// The machine's defaults of sub-agents' new sessions.
    pub fn machine_defaults(&self) -> HashMap<String, AgentDefaults> {
        self.subs()
            .map(|p| {
                let defaults = AgentDefaults {
                    provider: p.provider.clone(),
                    model: p.model.clone(),
                    effort: p.effort.clone(),
                };
                (p.name.clone(), defaults)
            })
            .collect()
    }

    /// Sub-agents' workspaces, for the runner link.
    pub fn workspaces(&self) -> HashMap<String, String> {
        self.subs().map(|p| (p.name.clone(), p.workspace.to_string_lossy().into_owned())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_agents_inherit_what_they_leave_empty() {
        let text = r#"
            [agent]
            provider = "claude"
            model = "opus"
            reasoning_effort = "high"
            [[agents]]
            name = "researcher"
            provider = "codex"
            [[agents]]
            name = "writer"
            model = "sonnet"
            workspace = "/srv/writer"
        "#;
        let config = Config::parse(text, std::path::Path::new("c.toml"), &|_| None).unwrap();
        let home = DuctorHome::at("/h");
        let directory = Directory::from_config(&config, &home);
        assert_eq!(directory.names(), "main, researcher, writer");
        let researcher = directory.get("researcher").unwrap();
        assert_eq!((researcher.provider.as_str(), researcher.model.as_str()), ("codex", ""));
        assert_eq!(researcher.effort, "high");
        assert_eq!(researcher.workspace, PathBuf::from("/h/agents/researcher/workspace"));
        let writer = directory.get("writer").unwrap();
        assert_eq!((writer.provider.as_str(), writer.model.as_str()), ("claude", "sonnet"));
        assert_eq!(writer.workspace, PathBuf::from("/srv/writer"));
        assert_eq!(directory.get("main").unwrap().model, "opus");
        assert!(directory.get("nobody").is_none());
        let rules = directory.rules_for("researcher");
        assert!(rules.contains("You are the agent `researcher`"), "{rules}");
        assert!(rules.contains("- `main`") && rules.contains("- `writer`"), "{rules}");
        assert!(!rules.contains("- `researcher`"), "not itself: {rules}");
    }
}
