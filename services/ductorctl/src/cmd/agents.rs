//! `ductorctl agents list|add|remove|start|stop|restart|ask`: sub-agents
//! (`[[agents]]`), each with its own bot(s) and workspace, served by the same
//! core and runner.
//!
//! `add`/`remove` edit `config.toml` ([`edit`]); `start`/`stop`/`restart`
//! are control requests to the running launcher for each of the agent's
//! gateway instances (`telegram@<name>`, `matrix@<name>`), waited on through
//! its state file; `list` joins the file, the launcher's state (or Health)
//! and core's `ListAgents`; `ask` is the agents' tool for asking each other
//! (core's `AskAgent`, with the run's own credential from its environment).

pub(crate) mod edit;
mod list;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use ductor_daemon::config::{MAIN_AGENT, valid_agent_name};
use ductor_daemon::control::{self, Action};
use ductor_daemon::{Config, DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::agents_client::AgentsClient;

use crate::cmd::cron::{auth, status_error};
use crate::cmd::load_config;
use crate::cmd::restart::{row, send, wait_row};
use crate::instance::{self, Instance};
use crate::state::ServiceState;

/// `ductorctl agents`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The main agent and every sub-agent: provider, model, gateways and their state.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a sub-agent to config.toml (then `ductorctl agents start NAME`).
    Add(AddArgs),
    /// Remove a sub-agent from config.toml, stopping its gateways (its workspace and secrets stay).
    Remove {
        /// The agent.
        name: String,
    },
    /// Start the agent's gateways under the running `ductorctl up`.
    Start {
        /// The agent.
        name: String,
    },
    /// Stop the agent's gateways; they stay stopped until `agents start`.
    Stop {
        /// The agent.
        name: String,
    },
    /// Restart the agent's gateways.
    Restart {
        /// The agent.
        name: String,
    },
    /// Ask another agent and print its answer (the agents' own tool).
    Ask(AskArgs),
}

/// `ductorctl agents add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The new agent's name: lower-case letters, digits, - and _, starting with a letter.
    pub name: String,
    /// One line about what the agent is for (shown to the other agents).
    #[arg(long, default_value = "")]
    pub description: String,
    /// Provider of its new sessions (default: [agent].provider).
    #[arg(long, default_value = "")]
    pub provider: String,
    /// Model of its new sessions.
    #[arg(long, default_value = "")]
    pub model: String,
    /// Reasoning effort of its new sessions.
    #[arg(long, default_value = "")]
    pub effort: String,
    /// A file holding its own Telegram bot token (copied to secrets/NAME-telegram.token, 0600).
    #[arg(long, value_name = "PATH")]
    pub telegram_token_file: Option<PathBuf>,
    /// A Telegram user allowed to talk to it (repeat for more).
    #[arg(long = "allowed-user-id", value_name = "ID")]
    pub allowed_user_ids: Vec<i64>,
    /// A Telegram group it answers in (repeat for more).
    #[arg(long = "allowed-group-id", value_name = "ID")]
    pub allowed_group_ids: Vec<i64>,
    /// The Bot API server, when not Telegram's own (a local Bot API server).
    #[arg(long, value_name = "URL", requires = "telegram_token_file")]
    pub telegram_api_url: Option<String>,
    /// Its Matrix homeserver.
    #[arg(long, value_name = "URL", requires = "matrix_user_id")]
    pub matrix_homeserver: Option<String>,
    /// Its Matrix account (@user:server).
    #[arg(long, value_name = "ID", requires = "matrix_homeserver")]
    pub matrix_user_id: Option<String>,
    /// A file holding the Matrix password (copied to secrets/NAME-matrix.password, 0600; used once).
    #[arg(long, value_name = "PATH", requires = "matrix_homeserver")]
    pub matrix_password_file: Option<PathBuf>,
    /// A Matrix user allowed to talk to it (repeat for more).
    #[arg(long = "matrix-allowed-user", value_name = "ID", requires = "matrix_homeserver")]
    pub matrix_allowed_users: Vec<String>,
    /// Its workspace (absolute; default $DUCTOR_HOME/agents/NAME/workspace).
    #[arg(long, value_name = "ABS")]
    pub workspace: Option<PathBuf>,
}

/// `ductorctl agents ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The agent asked.
    pub name: String,
    /// The message.
    pub message: String,
    /// Return at once; the answer comes into the asking chat when it is ready.
    #[arg(long)]
    pub background: bool,
    /// Start the asked agent's conversation with you afresh.
    #[arg(long = "new")]
    pub new_session: bool,
    /// How long to wait for the answer, in seconds (default: [agent].turn_timeout_seconds).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub timeout: u32,
}

/// Runs `agents`.
pub async fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { json } => list::run(home, json).await,
        Command::Add(args) => add(home, args),
        Command::Remove { name } => remove(home, &name).await,
        Command::Start { name } => start(home, &name).await,
        Command::Stop { name } => stop(home, &name).await.map(|_| ExitCode::SUCCESS),
        Command::Restart { name } => restart(home, &name).await,
        Command::Ask(args) => ask(home, args).await,
    }
}

// === add, remove ===

fn config_text(home: &DuctorHome) -> anyhow::Result<String> {
    let path = home.config_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
    }
}

/// Parses and validates `text` as the new `config.toml` (exit 64 naming the key).
fn validate(home: &DuctorHome, text: &str) -> anyhow::Result<Config> {
    Ok(Config::parse(text, &home.config_file(), &|name| std::env::var(name).ok())?)
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the {what} from {}", path.display()))?;
    let text = text.trim().to_owned();
    anyhow::ensure!(!text.is_empty(), "{} holds no {what}", path.display());
    Ok(text)
}

fn new_agent(
    args: &AddArgs,
    token_file: Option<PathBuf>,
    password_file: Option<PathBuf>,
) -> edit::NewAgent {
    edit::NewAgent {
        name: args.name.clone(),
        description: args.description.clone(),
        provider: args.provider.clone(),
        model: args.model.clone(),
        reasoning_effort: args.effort.clone(),
        workspace: args.workspace.clone(),
        telegram: token_file.map(|token_file| edit::NewTelegram {
            token_file,
            token: None,
            allowed_user_ids: args.allowed_user_ids.clone(),
            allowed_group_ids: args.allowed_group_ids.clone(),
            api_url: args.telegram_api_url.clone(),
        }),
        matrix: args.matrix_homeserver.as_ref().map(|homeserver| edit::NewMatrix {
            homeserver: homeserver.clone(),
            user_id: args.matrix_user_id.clone().unwrap_or_default(),
            password_file,
            password: None,
            allowed_users: args.matrix_allowed_users.clone(),
            allowed_rooms: Vec::new(),
        }),
    }
}

fn add(home: &DuctorHome, args: AddArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if name == MAIN_AGENT || !valid_agent_name(name) {
        anyhow::bail!("{}", edit::EditError::BadName(name.clone()));
    }
    let text = config_text(home)?;
    let absolute =
        |p: &PathBuf| std::path::absolute(p).with_context(|| format!("resolve {}", p.display()));
    let token_source = args.telegram_token_file.as_ref().map(absolute).transpose()?;
    let password_source = args.matrix_password_file.as_ref().map(absolute).transpose()?;
    // Validate first against the operator's files, so nothing is copied for
    // an entry that would be refused.
    let trial = edit::add(&text, &new_agent(&args, token_source.clone(), password_source.clone()))?;
    validate(home, &trial).context("the new config.toml would be invalid; nothing was written")?;
    let secrets = home.secrets_dir();
    let mut copied = Vec::new();
    let token_file = match &token_source {
        Some(source) => Some(copy_secret(
            source,
            &secrets.join(format!("{name}-telegram.token")),
            "bot token",
            &mut copied,
        )?),
        None => None,
    };
    let password_file = match &password_source {
        Some(source) => Some(copy_secret(
            source,
            &secrets.join(format!("{name}-matrix.password")),
            "password",
            &mut copied,
        )?),
        None => None,
    };
    let new_text = edit::add(&text, &new_agent(&args, token_file, password_file))?;
    validate(home, &new_text)?;
    let path = home.config_file();
    ductor_daemon::paths::write_private(&path, new_text.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    println!("added agent {name} to {}", path.display());
    for file in &copied {
        println!("  secret copied to {} (0600)", file.display());
    }
    if args.telegram_token_file.is_none() && args.matrix_homeserver.is_none() {
        println!(
            "  it has no bot yet: add an [agents.telegram] or [agents.matrix] table to reach it from chat"
        );
    } else if args.telegram_token_file.is_some() && args.allowed_user_ids.is_empty() {
        println!("  note: no --allowed-user-id, so its Telegram bot answers nobody yet");
    }
    println!(
        "next: `ductorctl agents start {name}` (with `ductorctl up` running; it restarts runner \
         and core so they learn the agent), or `ductorctl up`"
    );
    Ok(ExitCode::SUCCESS)
}

fn copy_secret(
    source: &Path,
    to: &Path,
    what: &str,
    copied: &mut Vec<PathBuf>,
) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let value = read_secret(source, what)?;
    if let Some(dir) = to.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    ductor_daemon::paths::write_private(to, value.as_bytes())
        .with_context(|| format!("write {}", to.display()))?;
    copied.push(to.to_path_buf());
    Ok(to.to_path_buf())
}

async fn remove(home: &DuctorHome, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(home)?;
    let text = config_text(home)?;
    let new_text = edit::remove(&text, name)?;
    validate(home, &new_text)
        .context("config.toml would be invalid without it; nothing was written")?;
    if control::launcher(home).is_some() {
        stop(home, name).await?;
    }
    let path = home.config_file();
    ductor_daemon::paths::write_private(&path, new_text.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    println!("removed agent {name} from {}", path.display());
    println!("  its workspace stays in {}", config.workspace_of(home, name).display());
    let secrets: Vec<PathBuf> = ["telegram.token", "matrix.password"]
        .iter()
        .map(|s| home.secrets_dir().join(format!("{name}-{s}")))
        .filter(|p| p.exists())
        .collect();
    for secret in secrets {
        println!("  its secret stays in {}", secret.display());
    }
    println!("  core and the runner forget it at their next restart (`ductorctl restart core`)");
    Ok(ExitCode::SUCCESS)
}

// === start, stop, restart ===

fn require_launcher(home: &DuctorHome, name: &str) -> anyhow::Result<()> {
    if control::launcher(home).is_some() {
        return Ok(());
    }
    anyhow::bail!(
        "no `ductorctl up` is running for {} (under systemd: `systemctl --user start|stop \
         ductor-telegram@{name}.service`)",
        home.root().display()
    )
}

/// The agent's enabled gateways in the current (validated) config.
fn configured_gateways(home: &DuctorHome, name: &str) -> anyhow::Result<Vec<Instance>> {
    let config = load_config(home)?;
    let entry = config.agent_entry(name).with_context(|| {
        format!("config.toml has no agent {name:?} (agents: {})", config.agent_names().join(", "))
    })?;
    let gateways = instance::agent_gateways(entry);
    anyhow::ensure!(
        !gateways.is_empty(),
        "agent {name} has no enabled gateway (enabled = true and an [agents.telegram] or [agents.matrix] table)"
    );
    Ok(gateways)
}

async fn start(home: &DuctorHome, name: &str) -> anyhow::Result<ExitCode> {
    require_launcher(home, name)?;
    let gateways = configured_gateways(home, name)?;
    if core_knows(home, name).await == Some(false) {
        println!("core and the runner read [[agents]] at start only: restarting runner, then core");
        for service in [ServiceName::Runner, ServiceName::Core] {
            restart_instance(home, &Instance::main(service)).await?;
        }
    }
    for gateway in &gateways {
        let before = row(home, gateway);
        if before.as_ref().is_some_and(|r| r.state == ServiceState::Healthy) {
            println!("{gateway} is already running");
            continue;
        }
        // A failed one is started afresh (its restart count goes up); any
        // other failure seen after the request is this start's.
        let was_failed = before.as_ref().is_some_and(|r| r.state == ServiceState::Failed);
        let restarts = before.map_or(0, |r| r.restarts);
        send(home, Action::Start, gateway)?;
        let now = wait_row(home, gateway, |r| match r.state {
            ServiceState::Healthy => true,
            ServiceState::Failed => !was_failed || r.restarts > restarts,
            _ => false,
        })
        .await?;
        anyhow::ensure!(
            now.state == ServiceState::Healthy,
            "{gateway} failed to start: {}",
            now.last_exit.unwrap_or_default()
        );
        println!("{gateway} started (pid {})", now.pid.unwrap_or(0));
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops every gateway of `name` the launcher runs (configured or not).
async fn stop(home: &DuctorHome, name: &str) -> anyhow::Result<()> {
    require_launcher(home, name)?;
    let running: Vec<Instance> = instance::possible_gateways(name)
        .into_iter()
        .filter(|g| row(home, g).is_some_and(|r| r.state != ServiceState::Stopped))
        .collect();
    if running.is_empty() {
        println!("agent {name} has no gateway running");
    }
    for gateway in &running {
        send(home, Action::Stop, gateway)?;
        wait_row(home, gateway, |r| r.state == ServiceState::Stopped).await?;
        println!("{gateway} stopped");
    }
    Ok(())
}

async fn restart(home: &DuctorHome, name: &str) -> anyhow::Result<ExitCode> {
    require_launcher(home, name)?;
    for gateway in configured_gateways(home, name)? {
        restart_instance(home, &gateway).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Restarts one supervised instance and waits until it is healthy again.
async fn restart_instance(home: &DuctorHome, instance: &Instance) -> anyhow::Result<()> {
    let before = row(home, instance);
    let restarts = before.as_ref().map_or(0, |r| r.restarts);
    send(home, Action::Restart, instance)?;
    let now = wait_row(home, instance, |r| {
        (before.is_none() || r.restarts > restarts)
            && matches!(r.state, ServiceState::Healthy | ServiceState::Failed)
    })
    .await?;
    anyhow::ensure!(
        now.state == ServiceState::Healthy,
        "{instance} failed to restart: {}",
        now.last_exit.unwrap_or_default()
    );
    println!("{instance} restarted (pid {})", now.pid.unwrap_or(0));
    Ok(())
}

// === core ===

fn agents_client(home: &DuctorHome) -> AgentsClient<ductor_proto::Channel> {
    AgentsClient::new(ductor_proto::transport::connect(home.socket(ServiceName::Core)))
}

/// Core's `ListAgents`, or `None` when core does not answer.
pub(crate) async fn core_agents(home: &DuctorHome) -> Option<pb::ListAgentsResponse> {
    let auth = auth(home).ok()?;
    let request = pb::ListAgentsRequest { auth: Some(auth) };
    let mut client = agents_client(home);
    let call = client.list_agents(request);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), call).await.ok()?;
    answer.ok().map(tonic::Response::into_inner)
}

/// Whether the running core knows agent `name` (`None`: core does not answer).
async fn core_knows(home: &DuctorHome, name: &str) -> Option<bool> {
    Some(core_agents(home).await?.agents.iter().any(|a| a.name == name))
}

async fn ask(home: &DuctorHome, args: AskArgs) -> anyhow::Result<ExitCode> {
    let request = pb::AskAgentRequest {
        auth: Some(auth(home)?),
        to: args.name.clone(),
        message: args.message,
        background: args.background,
        new_session: args.new_session,
        timeout_seconds: args.timeout,
    };
    let answer = agents_client(home).ask_agent(request).await.map_err(status_error)?.into_inner();
    if args.background {
        println!(
            "asked {} in the background (task {}); the answer will come into this chat",
            args.name, answer.task_id
        );
    } else {
        println!("{}", answer.text);
    }
    Ok(ExitCode::SUCCESS)
}
