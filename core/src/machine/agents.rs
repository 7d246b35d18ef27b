//! The machine's side of sub-agents: their defaults for new sessions, and
//! the agent commands of admin chats (`/agents`, `/agent_start|stop|restart`),
//! which the driver hands to the agents' control ([`Effect::Agents`]).

use super::{Effect, Env, Machine};
use crate::model::SessionKey;

/// A sub-agent's defaults for new sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentDefaults {
    /// Provider.
    pub provider: String,
    /// Model (empty = the provider's default).
    pub model: String,
    /// Reasoning effort.
    pub effort: String,
}

/// An agent command of an admin chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// `/agents`.
    List,
    /// `/agent_start NAME`.
    Start(String),
    /// `/agent_stop NAME`.
    Stop(String),
    /// `/agent_restart NAME`.
    Restart(String),
}

impl<E: Env> Machine<E> {
    /// `/agent_start|stop|restart NAME`: admin chats only.
    pub(super) fn cmd_agent(
        &mut self,
        key: &SessionKey,
        event_id: &str,
        name: Option<String>,
        command: fn(String) -> AgentCommand,
    ) {
        match name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
            Some(name) => self.cmd_agents(key, event_id, command(name)),
            None => self.notice(key, event_id, "Name the agent (see /agents)."),
        }
    }

    /// `/agents` and the agent commands: admin chats only.
    pub(super) fn cmd_agents(&mut self, key: &SessionKey, event_id: &str, command: AgentCommand) {
        if !self.is_admin(key) {
            return self.notice(
                key,
                event_id,
                "Only admin chats manage agents ([agent].admin_chats).",
            );
        }
        let (key, reply_to) = (key.clone(), event_id.to_owned());
        self.out.push(Effect::Agents { key, reply_to, command });
    }
}
