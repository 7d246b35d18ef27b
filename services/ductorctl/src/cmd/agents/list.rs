//! `ductorctl agents list [--json]`: the main agent and every sub-agent, from
//! `config.toml`, with each gateway's state from the launcher's state file
//! (or Health on its socket when no launcher runs) and, when core answers,
//! which endpoints are attached to it (`ListAgents`).

use std::process::ExitCode;

use ductor_daemon::config::MAIN_AGENT;
use ductor_daemon::{Config, DuctorHome, ServiceName};
use serde::Serialize;

use crate::cmd::load_config;
use crate::instance::Instance;
use crate::state::{LauncherState, ServiceState};

/// One agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    /// `main` or the `[[agents]]` name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Whether its gateways start with `up`.
    pub enabled: bool,
    /// Provider of new sessions.
    pub provider: String,
    /// Model of new sessions ("" = the provider's default).
    pub model: String,
    /// Its gateways.
    pub gateways: Vec<GatewayRow>,
    /// Endpoints attached to core now; `None` when core does not answer.
    pub connected: Option<Vec<String>>,
}

/// One gateway of an agent.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayRow {
    /// Instance name (`telegram@researcher`).
    pub service: String,
    /// Its state.
    pub state: ServiceState,
    /// Its pid, when running.
    pub pid: Option<u32>,
    /// Whether core has it attached (`None`: core does not answer).
    pub attached: Option<bool>,
}

/// Runs `agents list`.
pub async fn run(home: &DuctorHome, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(home)?;
    let rows = collect(home, &config).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "agents": rows }))?);
    } else {
        print_table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn collect(home: &DuctorHome, config: &Config) -> Vec<AgentRow> {
    let state =
        crate::lock::holder(home).and_then(|_| LauncherState::read(&LauncherState::path(home)));
    let core = super::core_agents(home).await;
    let mut rows = vec![AgentRow {
        name: MAIN_AGENT.to_owned(),
        description: String::new(),
        enabled: true,
        provider: config.agent.provider.clone(),
        model: config.agent.model.clone(),
        gateways: Vec::new(),
        connected: None,
    }];
    let mut main_gateways = Vec::new();
    if config.telegram.enabled {
        main_gateways.push(Instance::main(ServiceName::Telegram));
    }
    if config.matrix.enabled {
        main_gateways.push(Instance::main(ServiceName::Matrix));
    }
    for entry in &config.agents {
        rows.push(AgentRow {
            name: entry.name.clone(),
            description: entry.description.clone(),
            enabled: entry.enabled,
            provider: if entry.provider.is_empty() {
                config.agent.provider.clone()
            } else {
                entry.provider.clone()
            },
            model: entry.model.clone(),
            gateways: Vec::new(),
            connected: None,
        });
    }
    for row in &mut rows {
        let gateways = if row.name == MAIN_AGENT {
            main_gateways.clone()
        } else {
            config.agent_entry(&row.name).map(crate::instance::agent_gateways).unwrap_or_default()
        };
        row.connected = core.as_ref().map(|core| {
            core.agents
                .iter()
                .find(|a| a.name == row.name)
                .map(|a| a.connected.clone())
                .unwrap_or_default()
        });
        for gateway in gateways {
            let (state, pid) = match &state {
                Some(state) => state
                    .get(&gateway.name())
                    .map_or((ServiceState::Stopped, None), |r| (r.state, r.pid)),
                None => {
                    let (probed, _) = crate::cmd::status::probe(home, &gateway, false).await;
                    (probed.state, probed.pid)
                }
            };
            let attached = row.connected.as_ref().map(|c| c.contains(&gateway.name()));
            row.gateways.push(GatewayRow { service: gateway.name(), state, pid, attached });
        }
    }
    rows
}

fn print_table(rows: &[AgentRow]) {
    println!(
        "{:<14} {:<8} {:<14} {:<24} {:<11} ATTACHED",
        "AGENT", "PROVIDER", "MODEL", "GATEWAY", "STATE"
    );
    for row in rows {
        let model = if row.model.is_empty() { "-" } else { &row.model };
        let name = if row.enabled { row.name.clone() } else { format!("{} (off)", row.name) };
        let attached = |a: Option<bool>| match a {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        match row.gateways.split_first() {
            None => {
                println!("{name:<14} {:<8} {model:<14} {:<24} {:<11} -", row.provider, "-", "-")
            }
            Some((first, rest)) => {
                println!(
                    "{name:<14} {:<8} {model:<14} {:<24} {:<11} {}",
                    row.provider,
                    first.service,
                    first.state.as_str(),
                    attached(first.attached)
                );
                for gateway in rest {
                    println!(
                        "{:<14} {:<8} {:<14} {:<24} {:<11} {}",
                        "",
                        "",
                        "",
                        gateway.service,
                        gateway.state.as_str(),
                        attached(gateway.attached)
                    );
                }
            }
        }
        if !row.description.is_empty() {
            println!("{:<14} {}", "", row.description);
        }
    }
}
