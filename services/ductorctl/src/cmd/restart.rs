//! `ductorctl restart SERVICE`: asks the running launcher to restart one
//! service, and waits until it is healthy again.
//!
//! The request is a file in `<run dir>/control/` naming the service, followed
//! by SIGUSR1 to the launcher, which takes (and deletes) every pending file.
//! Files, not a signal alone, so concurrent requests for different services
//! are never merged or lost.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ductor_daemon::{DuctorHome, ServiceName};
use nix::sys::signal::Signal;

use crate::cli::ServiceArg;
use crate::cmd::config_or_default;
use crate::state::{LauncherState, ServiceState};
use crate::{lock, procs, units};

/// `ductorctl restart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service to restart.
    pub service: ServiceArg,
}

fn control_dir(home: &DuctorHome) -> PathBuf {
    home.run_dir().join("control")
}

/// Takes the pending restart requests (launcher side).
pub fn take_requests(home: &DuctorHome) -> Vec<ServiceName> {
    let Ok(entries) = std::fs::read_dir(control_dir(home)) else { return Vec::new() };
    let mut services = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        match ServiceName::parse(text.trim()) {
            Some(service) if !services.contains(&service) => services.push(service),
            Some(_) => {}
            None => tracing::warn!("ignoring malformed control request {}", path.display()),
        }
    }
    services
}

/// Runs `restart`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let service = ServiceName::from(args.service);
    let Some(launcher) = lock::holder(home) else {
        if units::installed_for(home) && units::systemctl_available() {
            let unit = units::unit_name(service);
            units::systemctl(&["restart", unit]).await?;
            println!("{service} restarted ({unit})");
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!(
            "no `ductorctl up` is running for {} (under systemd: `systemctl --user restart {}`)",
            home.root().display(),
            units::unit_name(service)
        );
    };
    let state_path = LauncherState::path(home);
    let before = LauncherState::read(&state_path)
        .and_then(|s| s.get(service).cloned())
        .with_context(|| format!("{service} is not supervised by the running launcher"))?;
    let dir = control_dir(home);
    ductor_proto::transport::prepare_socket_dir(&dir).context("prepare the control directory")?;
    let request = dir.join(format!("restart-{}-{}", service, std::process::id()));
    std::fs::write(&request, service.as_str())
        .with_context(|| format!("write {}", request.display()))?;
    procs::signal(launcher, Signal::SIGUSR1).context("signal the launcher")?;
    let policy = config_or_default(home).launcher;
    let patience = Duration::from_millis(policy.stop_grace_ms + policy.health_timeout_ms + 5_000);
    let start = Instant::now();
    while start.elapsed() < patience {
        if let Some(now) = LauncherState::read(&state_path).and_then(|s| s.get(service).cloned())
            && now.restarts > before.restarts
        {
            match now.state {
                ServiceState::Healthy => {
                    println!(
                        "{service} restarted (pid {} → {})",
                        before.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                        now.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                ServiceState::Failed => anyhow::bail!(
                    "{service} failed to restart: {}",
                    now.last_exit.unwrap_or_default()
                ),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{service} was not healthy again within {} s", patience.as_secs())
}
