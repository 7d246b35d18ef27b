//! `/agents` and `/agent_start|stop|restart NAME` from an admin chat: the
//! agents with their gateways as core sees them (attached or not), and
//! requests to the launcher (`ductor_daemon::control`) to start or stop an
//! agent's gateways; a restart goes through each attached gateway's stream,
//! like `/restart GATEWAY`, so it works under systemd too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ductor_daemon::DuctorHome;
use ductor_daemon::control::{Action, ControlError, Request};

use super::Directory;
use crate::driver::AgentsAnswers;
use crate::machine::AgentCommand;
use crate::model::{SessionKey, agent_of, endpoint};
use crate::outbox::Outbox;

/// The agents' side of the chat commands.
#[derive(Debug, Clone)]
pub struct AgentsControl {
    directory: Arc<Directory>,
    outbox: Arc<Outbox>,
    home: DuctorHome,
}

impl AgentsControl {
    /// Control over `directory`'s agents.
    pub fn new(directory: Directory, outbox: Arc<Outbox>, home: DuctorHome) -> Self {
        Self { directory: Arc::new(directory), outbox, home }
    }

    async fn list(&self) -> String {
        let connected = self.outbox.gateways().await;
        let mut lines = vec!["🤖 Agents".to_owned()];
        for agent in self.directory.all() {
            let model = if agent.model.is_empty() { "default model" } else { &agent.model };
            let gateways: Vec<String> = agent
                .transports
                .iter()
                .map(|t| {
                    let name = endpoint(t, &agent.name);
                    let state = if connected.contains(&name) { "up" } else { "down" };
                    format!("{name} {state}")
                })
                .collect();
            let gateways =
                if gateways.is_empty() { "no gateway".to_owned() } else { gateways.join(", ") };
            let off = if agent.enabled { "" } else { " (disabled)" };
            lines.push(format!("• {}{off}: {} · {model} · {gateways}", agent.name, agent.provider));
        }
        lines.join("\n")
    }

    async fn act(&self, name: &str, action: Action) -> String {
        let Some(agent) = self.directory.get(name) else {
            return format!("No agent {name:?}. The agents are: {}.", self.directory.names());
        };
        if agent.transports.is_empty() {
            return format!("{name} has no gateway to {}.", action.as_str());
        }
        let services: Vec<String> =
            agent.transports.iter().map(|t| endpoint(t, &agent.name)).collect();
        if action == Action::Restart {
            let mut asked = Vec::new();
            for service in &services {
                let reason = format!("/agent_restart {name}");
                if self.outbox.restart_gateway(service, &reason).await.is_some() {
                    asked.push(service.clone());
                }
            }
            return if asked.is_empty() {
                format!("None of {name}'s gateways is attached; /agent_start {name} starts them.")
            } else {
                format!("♻️ Restarting {}.", asked.join(", "))
            };
        }
        for service in &services {
            let request = Request { action, service: service.clone() };
            match ductor_daemon::control::send(&self.home, &request) {
                Ok(()) => {}
                Err(ControlError::NoLauncher(_)) => {
                    return format!(
                        "No `ductorctl up` supervises ductor here; under systemd: \
                         `systemctl --user {} {}`.",
                        action.as_str(),
                        services.iter().map(|s| unit(s)).collect::<Vec<_>>().join(" ")
                    );
                }
                Err(error) => return format!("Could not ask the launcher: {error}"),
            }
        }
        let verb = if action == Action::Start { "Starting" } else { "Stopping" };
        format!("{verb} {}. /agents shows when it is done.", services.join(", "))
    }
}

/// The systemd unit of a service instance (`telegram@x` → `ductor-telegram@x.service`).
fn unit(service: &str) -> String {
    format!("ductor-{service}.service")
}

impl AgentsAnswers for AgentsControl {
    fn answer(
        &self,
        key: SessionKey,
        command: AgentCommand,
    ) -> Pin<Box<dyn Future<Output = String> + Send>> {
        let control = self.clone();
        Box::pin(async move {
            tracing::info!(chat = %key, agent = agent_of(&key.transport), ?command, "agent command");
            match command {
                AgentCommand::List => control.list().await,
                AgentCommand::Start(name) => control.act(&name, Action::Start).await,
                AgentCommand::Stop(name) => control.act(&name, Action::Stop).await,
                AgentCommand::Restart(name) => control.act(&name, Action::Restart).await,
            }
        })
    }
}
