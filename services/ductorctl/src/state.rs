//! The launcher's state file (`<run dir>/state.json`): per-service state, pid,
//! start time and restart count, rewritten atomically on every change so
//! `ductorctl status` (another process) can read it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ductor_daemon::{DuctorHome, ServiceName};
use serde::{Deserialize, Serialize};

use crate::instance::Instance;

/// A service's state, as shown by `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Spawned, not yet answering Health.
    Starting,
    /// Health answers SERVING.
    Healthy,
    /// Running, but Health does not answer SERVING.
    Unhealthy,
    /// Exited; waiting out the backoff before the next start.
    Restarting,
    /// Not running, on purpose.
    Stopped,
    /// Given up after repeated crashes (or an invalid config).
    Failed,
}

impl ServiceState {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The instance name: `runner`, `core`, `telegram`, `matrix`, or a
    /// sub-agent's `telegram@<name>` / `matrix@<name>`.
    pub service: String,
    /// Current state.
    pub state: ServiceState,
    /// Pid of the running process.
    pub pid: Option<u32>,
    /// When the current process was started, in Unix milliseconds.
    pub started_at_ms: Option<u64>,
    /// Restarts since `up` (crashes, exit 42 and `ductorctl restart`).
    pub restarts: u32,
    /// The service's socket.
    pub socket: PathBuf,
    /// Why the service last exited or was given up, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

impl ServiceRecord {
    /// A stopped service of the main agent with no history.
    pub fn new(home: &DuctorHome, service: ServiceName) -> Self {
        Self::of(home, &Instance::main(service))
    }

    /// A stopped instance with no history.
    pub fn of(home: &DuctorHome, instance: &Instance) -> Self {
        Self {
            service: instance.name(),
            state: ServiceState::Stopped,
            pid: None,
            started_at_ms: None,
            restarts: 0,
            socket: instance.socket(home),
            last_exit: None,
        }
    }

    /// The agent this row serves (`main` for runner, core and main's gateways).
    pub fn agent(&self) -> &str {
        self.service.split_once('@').map_or(ductor_daemon::config::MAIN_AGENT, |(_, a)| a)
    }
}

/// Where the launcher is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Bringing services up in order.
    Starting,
    /// Every service came up once; supervising.
    Running,
    /// A service could not be brought up; stopping.
    Failed,
    /// Stopping everything.
    Stopping,
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LauncherState {
    /// Pid of the `ductorctl up` process.
    pub launcher_pid: u32,
    /// Where the launcher is.
    pub phase: Phase,
    /// One row per supervised instance, in start order.
    pub services: Vec<ServiceRecord>,
}

impl LauncherState {
    /// The row of instance `name` (`core`, `telegram@researcher`), if supervised.
    pub fn get(&self, name: &str) -> Option<&ServiceRecord> {
        self.services.iter().find(|r| r.service == name)
    }

    /// The mutable row of instance `name`, if supervised.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ServiceRecord> {
        self.services.iter_mut().find(|r| r.service == name)
    }

    /// Path of the state file in `home`'s run directory.
    pub fn path(home: &DuctorHome) -> PathBuf {
        home.run_dir().join("state.json")
    }

    /// Writes the file atomically (0600).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        ductor_daemon::paths::write_private(path, &json)
    }

    /// Reads the file; `None` when it is missing or unreadable.
    pub fn read(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_with_lowercase_states() {
        let tmp = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(tmp.path());
        let mut record = ServiceRecord::new(&home, ServiceName::Core);
        record.state = ServiceState::Restarting;
        let state =
            LauncherState { launcher_pid: 7, phase: Phase::Running, services: vec![record] };
        let path = LauncherState::path(&home);
        state.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"restarting\""), "{text}");
        assert_eq!(LauncherState::read(&path), Some(state));
    }
}
