//! One module per subcommand, the one `Command` enum, and dispatch.
//!
//! Adding a subcommand is three lines here: `pub mod x;`, a variant, an arm.

pub mod agents;
pub mod ask;
pub mod chat;
pub mod config;
pub mod cron;
pub mod doctor;
pub mod down;
pub mod import;
pub mod init;
pub mod logs;
pub mod reload;
pub mod restart;
pub mod service;
pub mod status;
pub mod task;
pub mod up;
pub mod webhook;

use std::process::ExitCode;

use clap::Subcommand;
use ductor_daemon::{Config, DuctorHome};

use crate::cli::Cli;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start runner, core and the enabled gateways, and supervise them.
    Up(up::Args),
    /// Stop everything `up` started: SIGTERM, a grace period, then SIGKILL.
    Down(down::Args),
    /// Show each service's state, pid, uptime, restart count and socket.
    Status(status::Args),
    /// Show (or follow) the per-service log files.
    Logs(logs::Args),
    /// Restart one service (or a sub-agent's telegram@NAME) under a running `ductorctl up`.
    Restart(restart::Args),
    /// Sub-agents ([[agents]]): list, add, remove, start, stop, restart, ask.
    #[command(subcommand)]
    Agents(agents::Command),
    /// Apply a changed config.toml to the running services without a restart (SIGHUP).
    Reload(reload::Args),
    /// Check or document config.toml.
    #[command(subcommand)]
    Config(config::Command),
    /// Write a commented config.toml (asks questions only on a terminal).
    Init(init::Args),
    /// Check the installation: config, directories, provider CLIs, sandbox.
    Doctor(doctor::Args),
    /// Install, remove or inspect the systemd user units.
    #[command(subcommand)]
    Service(service::Command),
    /// Chat with the agent in this terminal (transport `cli`).
    Chat(chat::Args),
    /// Send one message (or command) and print the answer; non-zero exit on failure.
    Ask(ask::Args),
    /// Manage cron jobs (scheduled one-shot runs whose results go to a chat).
    #[command(subcommand)]
    Cron(cron::Command),
    /// Manage webhooks (HTTP triggers that wake a chat or run a task).
    #[command(subcommand)]
    Webhook(webhook::Command),
    /// Delegated background tasks (mostly used by the agent itself).
    #[command(subcommand)]
    Task(task::Command),
    /// Move in from Python ductor: report what its home maps to; --apply writes.
    ///
    /// Reads a Python ductor home (config/config.json, cron_jobs.json and task
    /// folders, webhooks.json, sessions.json, named_sessions.json, agents.json,
    /// the workspace with MAINMEMORY.md) and reports, section by section, what
    /// maps onto this ductor and what does not (and why). A dry run by default;
    /// --apply writes, into a running ductor (`ductorctl up` first). Webhooks keep
    /// their ids and secrets; a session's resume id is imported only when its
    /// transcript is found (and copied into the chat's CLI home). Secrets go to
    /// 0600 files under secrets/ and are never printed. Nothing of yours is
    /// overwritten unless --force; a second --apply changes nothing.
    Import(import::Args),
}

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = cli.ductor_home();
    match cli.command {
        Command::Up(args) => up::run(&home, args).await,
        Command::Down(args) => down::run(&home, args).await,
        Command::Status(args) => status::run(&home, args).await,
        Command::Logs(args) => logs::run(&home, args).await,
        Command::Restart(args) => restart::run(&home, args).await,
        Command::Agents(command) => agents::run(&home, command).await,
        Command::Reload(args) => reload::run(&home, args).await,
        Command::Config(command) => config::run(&home, command).await,
        Command::Init(args) => init::run(&home, args),
        Command::Doctor(args) => doctor::run(&home, args).await,
        Command::Service(command) => service::run(&home, command).await,
        Command::Chat(args) => chat::run(&home, args).await,
        Command::Ask(args) => ask::run(&home, args).await,
        Command::Cron(command) => cron::run(&home, command).await,
        Command::Webhook(command) => webhook::run(&home, command).await,
        Command::Task(command) => task::run(&home, command).await,
        Command::Import(args) => import::run(&home, args).await,
    }
}

/// Loads and validates `config.toml`; a [`ductor_daemon::ConfigError`] maps to exit 64.
pub fn load_config(home: &DuctorHome) -> anyhow::Result<Config> {
    Ok(Config::load_from_env(&home.config_file())?)
}

/// The config if it is valid, else the defaults (for commands that must work
/// on a broken config, such as `down` and `status`).
pub fn config_or_default(home: &DuctorHome) -> Config {
    Config::load_from_env(&home.config_file()).unwrap_or_default()
}
