//! `ductorctl status`: each service's state (sub-agents' gateways,
//! `telegram@<name>`, grouped under their agent), pid, uptime, restart count and
//! socket, from the launcher's state file when `ductorctl up` runs, else by
//! asking Health on each socket (services under systemd or compose), with
//! restart counts from systemd when it manages them.

use std::process::ExitCode;
use std::time::Duration;

use ductor_daemon::DuctorHome;
use ductor_daemon::config::MAIN_AGENT;
use ductor_proto::{health, pb};
use serde::Serialize;

use crate::cmd::config_or_default;
use crate::instance::{self, Instance};
use crate::state::{LauncherState, ServiceState, now_ms};
use crate::{lock, units};

/// `ductorctl status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this service (runner, core, telegram, matrix, telegram@AGENT,
    /// matrix@AGENT); then the exit code is 0 only when it is healthy (usable
    /// as a container health check).
    #[arg(value_parser = instance::parse_arg, value_name = "SERVICE")]
    pub service: Option<Instance>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One row of output.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Instance name (`telegram@researcher` for a sub-agent's gateway).
    pub service: String,
    /// The agent it serves (`main` for runner, core and main's gateways).
    pub agent: String,
    /// One of starting, healthy, unhealthy, restarting, stopped, failed.
    pub state: ServiceState,
    /// Pid, when running.
    pub pid: Option<u32>,
    /// Uptime of the current process, in milliseconds.
    pub uptime_ms: Option<u64>,
    /// Restarts since the launcher (or systemd unit) started.
    pub restarts: u32,
    /// Socket path.
    pub socket: String,
    /// Why it last exited, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `$DUCTOR_HOME`.
    pub home: String,
    /// Who runs the services: "ductorctl", "systemd" or "none".
    pub managed_by: &'static str,
    /// Pid of `ductorctl up`, when it runs.
    pub launcher_pid: Option<u32>,
    /// One row per service.
    pub services: Vec<Row>,
}

/// Runs `status`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let mut report = collect(home).await;
    if let Some(only) = &args.service {
        let name = only.name();
        report.services.retain(|r| r.service == name);
        if report.services.is_empty() {
            report.services.push(stopped_row(home, only));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let healthy = report.services.iter().all(|r| r.state == ServiceState::Healthy);
    Ok(if args.service.is_some() && !healthy { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Gathers the report from the state file or the sockets.
pub async fn collect(home: &DuctorHome) -> Report {
    let launcher_pid = lock::holder(home);
    if let Some(pid) = launcher_pid
        && let Some(state) = LauncherState::read(&LauncherState::path(home))
    {
        let now = now_ms();
        let services = state
            .services
            .into_iter()
            .map(|r| Row {
                uptime_ms: r.pid.and(r.started_at_ms).map(|t| now.saturating_sub(t)),
                agent: r.agent().to_owned(),
                service: r.service,
                state: r.state,
                pid: r.pid,
                restarts: r.restarts,
                socket: r.socket.display().to_string(),
                last_exit: r.last_exit,
            })
            .collect();
        return Report {
            home: home.root().display().to_string(),
            managed_by: "ductorctl",
            launcher_pid: Some(pid),
            services,
        };
    }
    let config = config_or_default(home);
    // Units installed for this home: systemd may be running (some of) the services.
    let units_installed = units::installed_for(home) && units::systemctl_available();
    let mut under_systemd = false;
    let mut services = Vec::new();
    let enabled = instance::enabled(&config);
    for instance in instance::known(home, &config) {
        let enabled = enabled.contains(&instance);
        let (row, by_systemd) = probe(home, &instance, units_installed).await;
        under_systemd |= by_systemd;
        if enabled || row.state != ServiceState::Stopped {
            services.push(row);
        }
    }
    Report {
        home: home.root().display().to_string(),
        managed_by: if under_systemd { "systemd" } else { "none" },
        launcher_pid,
        services,
    }
}

fn stopped_row(home: &DuctorHome, instance: &Instance) -> Row {
    Row {
        service: instance.name(),
        agent: instance.agent.clone(),
        state: ServiceState::Stopped,
        pid: None,
        uptime_ms: None,
        restarts: 0,
        socket: instance.socket(home).display().to_string(),
        last_exit: None,
    }
}

/// Asks Health on the socket (and systemd for the restart count).
/// Returns the row and whether systemd runs this process (its unit's `MainPID`).
pub(crate) async fn probe(
    home: &DuctorHome,
    instance: &Instance,
    units_installed: bool,
) -> (Row, bool) {
    let mut row = stopped_row(home, instance);
    let socket = instance.socket(home);
    if socket.exists() {
        let channel = ductor_proto::transport::connect(&socket);
        match health::check(channel, Duration::from_millis(500)).await {
            Some(answer) => {
                row.state = if answer.status == pb::ServingStatus::Serving as i32 {
                    ServiceState::Healthy
                } else {
                    ServiceState::Unhealthy
                };
                row.pid = Some(answer.pid);
                row.uptime_ms = Some(answer.uptime_ms);
            }
            // A socket file nobody answers on: a killed process's leftover.
            None => row.state = ServiceState::Stopped,
        }
    }
    let mut by_systemd = false;
    if units_installed && let Some(unit) = units::unit_info(instance).await {
        by_systemd = unit.active_state != "inactive";
        row.restarts = unit.restarts;
        match (unit.active_state.as_str(), unit.sub_state.as_str()) {
            ("failed", _) => row.state = ServiceState::Failed,
            (_, "auto-restart") => row.state = ServiceState::Restarting,
            ("activating", _) if row.state == ServiceState::Stopped => {
                row.state = ServiceState::Starting;
            }
            _ => {}
        }
    }
    (row, by_systemd)
}

/// "3d4h", "5m12s", "840ms".
pub fn format_uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

fn print_table(report: &Report) {
    match (report.managed_by, report.launcher_pid) {
        ("ductorctl", Some(pid)) => println!("ductor at {} (ductorctl up, pid {pid})", report.home),
        ("systemd", _) => println!("ductor at {} (systemd user units)", report.home),
        _ => println!("ductor at {}", report.home),
    }
    let width = report.services.iter().map(|r| r.service.len()).max().unwrap_or(0).max(9);
    println!(
        "{:<width$} {:<11} {:>8} {:>9} {:>8}  SOCKET",
        "SERVICE", "STATE", "PID", "UPTIME", "RESTARTS"
    );
    // Main's services first, then each sub-agent's gateways under its name.
    let mut agent = MAIN_AGENT;
    for row in &report.services {
        if row.agent != agent {
            agent = &row.agent;
            println!("agent {agent}:");
        }
        println!(
            "{:<width$} {:<11} {:>8} {:>9} {:>8}  {}",
            row.service,
            row.state.as_str(),
            row.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            row.uptime_ms.map_or_else(|| "-".to_owned(), format_uptime),
            row.restarts,
            row.socket
        );
        if let Some(why) = &row.last_exit
            && matches!(row.state, ServiceState::Failed | ServiceState::Restarting)
        {
            println!("          last exit: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_short_and_readable() {
        assert_eq!(format_uptime(840), "840ms");
        assert_eq!(format_uptime(59_000), "59s");
        assert_eq!(format_uptime(312_000), "5m12s");
        assert_eq!(format_uptime(3_600_000 * 5 + 60_000), "5h01m");
        assert_eq!(format_uptime(86_400_000 * 3 + 3_600_000 * 4), "3d04h");
    }
}
