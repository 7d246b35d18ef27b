//! `ductorctl restart SERVICE`: asks the running launcher to restart one
//! instance (`core`, `telegram`, `telegram@researcher`), and waits until it
//! is healthy again. The request goes through `ductor_daemon::control`
//! (a file in `<run dir>/control/`, then SIGUSR1 to the launcher).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ductor_daemon::DuctorHome;
use ductor_daemon::control::{self, Action, Request};

use crate::cmd::config_or_default;
use crate::instance::{self, Instance};
use crate::state::{LauncherState, ServiceRecord, ServiceState};
use crate::{lock, units};

/// `ductorctl restart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service to restart: runner, core, telegram, matrix, or a
    /// sub-agent's telegram@NAME / matrix@NAME.
    #[arg(value_parser = instance::parse_arg, value_name = "SERVICE")]
    pub service: Instance,
}

/// Runs `restart`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let service = args.service;
    if lock::holder(home).is_none() {
        if units::installed_for(home) && units::systemctl_available() {
            let unit = units::instance_unit(&service);
            units::systemctl(&["restart", &unit]).await?;
            println!("{service} restarted ({unit})");
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!(
            "no `ductorctl up` is running for {} (under systemd: `systemctl --user restart {}`)",
            home.root().display(),
            units::instance_unit(&service)
        );
    }
    let before = row(home, &service)
        .with_context(|| format!("{service} is not supervised by the running launcher"))?;
    send(home, Action::Restart, &service)?;
    let now = wait_row(home, &service, |now| {
        now.restarts > before.restarts
            && matches!(now.state, ServiceState::Healthy | ServiceState::Failed)
    })
    .await?;
    if now.state == ServiceState::Failed {
        anyhow::bail!("{service} failed to restart: {}", now.last_exit.unwrap_or_default());
    }
    println!(
        "{service} restarted (pid {} → {})",
        before.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
        now.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// Hands one request for `instance` to the running launcher.
pub(crate) fn send(home: &DuctorHome, action: Action, instance: &Instance) -> anyhow::Result<()> {
    let request = Request { action, service: instance.name() };
    control::send(home, &request)
        .with_context(|| format!("ask the launcher to {} {instance}", action.as_str()))
}

/// The launcher's row of `instance`, if it has one.
pub(crate) fn row(home: &DuctorHome, instance: &Instance) -> Option<ServiceRecord> {
    LauncherState::read(&LauncherState::path(home))?.get(&instance.name()).cloned()
}

/// Waits (bounded by the launcher's stop grace and Health timeout) until
/// the row of `instance` satisfies `done`; the row then.
pub(crate) async fn wait_row(
    home: &DuctorHome,
    instance: &Instance,
    done: impl Fn(&ServiceRecord) -> bool,
) -> anyhow::Result<ServiceRecord> {
    let policy = config_or_default(home).launcher;
    let patience = Duration::from_millis(policy.stop_grace_ms + policy.health_timeout_ms + 5_000);
    let start = Instant::now();
    while start.elapsed() < patience {
        if let Some(now) = row(home, instance)
            && done(&now)
        {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = row(home, instance).map_or("not supervised".to_owned(), |r| r.state.to_string());
    anyhow::bail!("{instance} is still {state} after {} s", patience.as_secs())
}
