//! `[launcher]`: how `ductorctl up` supervises the services.

use serde::Deserialize;

use super::Invalid;

/// `[launcher]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LauncherConfig {
    /// How long a starting service has to answer Health, in milliseconds.
    pub health_timeout_ms: u64,
    /// Grace between SIGTERM and SIGKILL on stop, in milliseconds.
    pub stop_grace_ms: u64,
    /// First restart delay after a crash, in milliseconds (doubles per crash).
    pub restart_backoff_ms: u64,
    /// Longest restart delay, in milliseconds.
    pub restart_backoff_max_ms: u64,
    /// Crashes within `crash_window_seconds` after which a service is given up.
    pub max_crashes: u32,
    /// The window for `max_crashes`, in seconds.
    pub crash_window_seconds: u64,
    /// A running service that fails every Health check for this long (it
    /// hangs, or something sent it SIGSTOP) is killed and restarted like a
    /// crash; 0 never restarts it.
    pub unhealthy_restart_seconds: u64,
}

impl Default for LauncherConfig {
    fn default() -> Self {
        Self {
            health_timeout_ms: 15_000,
            stop_grace_ms: 5_000,
            restart_backoff_ms: 100,
            restart_backoff_max_ms: 30_000,
            max_crashes: 5,
            crash_window_seconds: 60,
            unhealthy_restart_seconds: 30,
        }
    }
}

impl LauncherConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.max_crashes == 0 {
            return Err(Invalid::new("launcher.max_crashes", "must be greater than 0"));
        }
        if self.restart_backoff_ms > self.restart_backoff_max_ms {
            return Err(Invalid::new(
                "launcher.restart_backoff_ms",
                "must not exceed restart_backoff_max_ms",
            ));
        }
        Ok(())
    }
}
