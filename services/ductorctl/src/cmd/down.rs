//! `ductorctl down`: stop the launcher (which stops its services in reverse
//! order), then any service left behind by a launcher that died (pid files)
//! or started by hand (a socket that answers Health), sub-agents' gateways
//! (`telegram@<name>`) included, and verify that no
//! ductor process and no socket file remains.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use ductor_daemon::DuctorHome;
use ductor_proto::health;
use nix::sys::signal::Signal;

use crate::cmd::config_or_default;
use crate::instance::{self, Instance};
use crate::{lock, procs, units};

/// `ductorctl down`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `down`.
pub async fn run(home: &DuctorHome, _args: Args) -> anyhow::Result<ExitCode> {
    let grace = Duration::from_millis(config_or_default(home).launcher.stop_grace_ms);
    if units::installed_for(home) && units::target_active().await {
        println!("stopping ductor.target (systemd user units)");
        units::systemctl(&["stop", "ductor.target"]).await.context("stop ductor.target")?;
    }
    if let Some(launcher) = lock::holder(home) {
        println!("stopping ductorctl up (pid {launcher})");
        procs::signal(launcher, Signal::SIGTERM).context("signal the launcher")?;
        // The launcher stops each service with the same grace, one by one.
        let patience = grace * 4 + Duration::from_secs(5);
        if !procs::wait_gone(launcher, patience).await {
            eprintln!("the launcher did not stop within {} s; killing it", patience.as_secs());
            let _ = procs::signal(launcher, Signal::SIGKILL);
            procs::wait_gone(launcher, Duration::from_secs(5)).await;
        }
    }
    let instances = instance::known(home, &config_or_default(home));
    for instance in instances.iter().rev() {
        stop_leftover(home, instance, grace).await;
    }
    let left = leftovers(home, &instances).await;
    if left.is_empty() {
        println!("ductor is down");
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!("still present after down: {}", left.join("; "))
    }
}

/// Stops a service no launcher owns any more, and removes its pid and socket files.
async fn stop_leftover(home: &DuctorHome, instance: &Instance, grace: Duration) {
    let binary = instance.service.binary();
    let pid_file = instance.pid_file(home);
    if let Some(pid) = procs::read_pid_file(&pid_file)
        && procs::runs(pid, binary)
    {
        println!("stopping {instance} (pid {pid}, launcher gone)");
        procs::terminate(pid, grace).await;
    }
    let _ = std::fs::remove_file(&pid_file);
    let socket = instance.socket(home);
    if socket.exists() {
        let channel = ductor_proto::transport::connect(&socket);
        if let Some(answer) = health::check(channel, Duration::from_millis(500)).await
            && procs::runs(answer.pid, binary)
        {
            println!("stopping {instance} (pid {}, not started by ductorctl up)", answer.pid);
            procs::terminate(answer.pid, grace).await;
        }
        // A killed service leaves its socket file; nothing serves it any more.
        let _ = std::fs::remove_file(&socket);
    }
}

/// What is still there: live service processes and socket files.
async fn leftovers(home: &DuctorHome, instances: &[Instance]) -> Vec<String> {
    let mut left = Vec::new();
    if let Some(pid) = lock::holder(home) {
        left.push(format!("launcher pid {pid}"));
    }
    for instance in instances {
        if let Some(pid) = procs::read_pid_file(&instance.pid_file(home))
            && procs::runs(pid, instance.service.binary())
        {
            left.push(format!("{instance} pid {pid}"));
        }
        let socket = instance.socket(home);
        if socket.exists() {
            left.push(format!("socket {}", socket.display()));
        }
    }
    let _ = std::fs::remove_file(crate::state::LauncherState::path(home));
    left
}
