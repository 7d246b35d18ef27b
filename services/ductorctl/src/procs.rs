//! Processes by pid: pid files, liveness, identity, signals, waiting for exit.
//!
//! Used where we hold no child handle: `down` (the launcher may be gone) and
//! `status`. A pid is only signalled after checking that it still runs the
//! binary we expect, so a recycled pid is never hit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ductor_daemon::{DuctorHome, ServiceName};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The pid file of a service (written by the launcher).
pub fn pid_file(home: &DuctorHome, service: ServiceName) -> PathBuf {
    home.run_dir().join(format!("{}.pid", service.as_str()))
}

/// Reads a pid file; `None` when missing or malformed.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => !is_zombie(pid),
        Err(_) => false,
    }
}

fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised command name, which may contain spaces.
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// The file name of the executable `pid` runs (without a " (deleted)" suffix
/// left by a rebuild), when readable.
pub fn exe_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_str()?;
    Some(name.trim_end_matches(" (deleted)").to_owned())
}

/// Whether `pid` is alive and runs `binary` (or its identity cannot be read,
/// e.g. without /proc, in which case liveness decides).
pub fn runs(pid: u32, binary: &str) -> bool {
    alive(pid) && exe_name(pid).is_none_or(|name| name == binary)
}

/// Sends `signal`; an already-gone process is not an error.
pub fn signal(pid: u32, signal: Signal) -> nix::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    match kill(Pid::from_raw(raw), signal) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Waits until `pid` is gone; `false` if it is still alive after `timeout`.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !alive(pid) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL. Returns `true` when the
/// process is gone afterwards.
pub async fn terminate(pid: u32, grace: Duration) -> bool {
    if signal(pid, Signal::SIGTERM).is_err() {
        return !alive(pid);
    }
    if wait_gone(pid, grace).await {
        return true;
    }
    tracing::warn!(pid, "did not stop within the grace period; killing");
    let _ = signal(pid, Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(5)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_named() {
        let me = std::process::id();
        assert!(alive(me));
        let name = exe_name(me).unwrap();
        assert!(runs(me, &name));
        assert!(!runs(me, "ductor-definitely-not-this"));
        assert!(!alive(u32::MAX));
    }
}
