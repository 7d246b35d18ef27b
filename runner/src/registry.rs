//! The pid registry: one file per live run in `<run_dir>/runs/`, so a runner
//! that crashed or was SIGKILLed leaves a record of its CLI process groups,
//! and the next runner start kills whatever of them still lives ([`sweep`]).
//!
//! A record holds the group id and the leader's start time (field 22 of
//! `/proc/<pid>/stat`), so a recycled pid is never mistaken for a leftover.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Where the records live.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// Start time of `pid` in clock ticks since boot, if it is alive.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Registry {
    /// A registry in `<run_dir>/runs`.
    pub fn new(run_dir: &Path) -> Self {
        Self { dir: run_dir.join("runs") }
    }

    fn file(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.pid"))
    }

    /// Records the process group of `run_id`.
    pub fn record(&self, run_id: &str, pgid: u32) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let started = start_time(pgid).unwrap_or(0);
        ductor_daemon::paths::write_private(
            &self.file(run_id),
            format!("{pgid} {started}\n").as_bytes(),
        )
    }

    /// Forgets `run_id` (its group is gone).
    pub fn forget(&self, run_id: &str) {
        if let Err(error) = std::fs::remove_file(self.file(run_id))
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(run_id, %error, "failed to remove a pid record");
        }
    }

    /// Kills the process groups of every record left by a previous runner and
    /// removes the records. Returns how many groups were killed.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut killed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some((pgid, started)) =
                std::fs::read_to_string(&path).ok().and_then(|t| parse(&t))
                && start_time(pgid) == Some(started)
            {
                match killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL) {
                    Ok(()) => {
                        killed += 1;
                        tracing::warn!(pgid, record = %path.display(), "killed a CLI left by a previous runner");
                    }
                    Err(error) => {
                        tracing::warn!(pgid, %error, "failed to kill a leftover CLI group")
                    }
                }
            }
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(record = %path.display(), %error, "failed to remove a stale pid record");
            }
        }
        killed
    }
}

fn parse(text: &str) -> Option<(u32, u64)> {
    let mut words = text.split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        assert!(start_time(std::process::id()).is_some());
    }

    #[test]
    fn sweep_ignores_records_of_dead_or_recycled_pids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new(dir.path());
        std::fs::create_dir_all(dir.path().join("runs")).expect("mkdir");
        // Our own pid with a wrong start time: must not be killed.
        std::fs::write(dir.path().join("runs/x.pid"), format!("{} 1\n", std::process::id()))
            .expect("write");
        assert_eq!(registry.sweep(), 0);
        assert!(!dir.path().join("runs/x.pid").exists());
    }
}
