//! The pid registry: one file per live run in `<run_dir>/runs/`, so a runner
//! that crashed or was SIGKILLed leaves a record of its CLI process groups,
//! and the next runner start kills whatever of them still lives ([`sweep`]).
//!
//! A record holds the group id and the leader's start time (field 22 of
//! `/proc/<pid>/stat`), so a recycled pid is never mistaken for a leftover.
//!
//! The leader may be gone while members of its group live on: the npm
//! `codex` wrapper is the leader and the native binary its child, and only
//! the leader gets the parent-death signal. Under a reaping init the dead
//! leader disappears at once, so the sweep does not stop at the leader: it
//! scans `/proc` for every process whose group id (field 5) is the recorded
//! one and which started no earlier than the recorded leader.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Where the records live.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// Start time of `pid` in clock ticks since boot, if it is alive.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.started)
}

/// The fields of `/proc/<pid>/stat` the sweep needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Process group id (field 5).
    pgid: u32,
    /// Start time in clock ticks since boot (field 22).
    started: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is index n - 3.
    Some(Stat { pgid: fields.get(2)?.parse().ok()?, started: fields.get(19)?.parse().ok()? })
}

/// Live processes of group `pgid` that started at or after `started` (the
/// recorded leader's start time): the group's members even when the leader
/// is gone, never a later process that merely reuses the number.
fn group_members(pgid: u32, started: u64) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let own = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != own)
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgid == pgid && s.started >= started))
        .collect()
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
                && kill_leftover(pgid, started)
            {
                killed += 1;
                tracing::warn!(pgid, record = %path.display(), "killed a CLI left by a previous runner");
            }
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(record = %path.display(), %error, "failed to remove a stale pid record");
            }
        }
        killed
    }
}

/// SIGKILLs what is left of the group `pgid` whose leader started at
/// `started`; true when something was killed.
fn kill_leftover(pgid: u32, started: u64) -> bool {
    // An unknown start time, or the group id reused by a later leader: not ours.
    if started == 0 || pgid <= 1 || start_time(pgid).is_some_and(|now| now != started) {
        return false;
    }
    let mut killed = false;
    if start_time(pgid) == Some(started) {
        match killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL) {
            Ok(()) => killed = true,
            Err(error) => tracing::warn!(pgid, %error, "failed to kill a leftover CLI group"),
        }
    }
    // Members outlive a leader that is gone (reaped) or was just killed.
    for pid in group_members(pgid, started) {
        match kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
            Ok(()) => killed = true,
            Err(nix::errno::Errno::ESRCH) => {}
            Err(error) => tracing::warn!(pgid, pid, %error, "failed to kill a leftover CLI"),
        }
    }
    killed
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
    fn stat_fields_survive_odd_command_names() {
        let line = "42 (a) b (c) S 1 40 40 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 0 0";
        assert_eq!(parse_stat(line), Some(Stat { pgid: 40, started: 777 }));
        let own = stat(std::process::id()).expect("own stat");
        assert_eq!(own.pgid, nix::unistd::getpgrp().as_raw() as u32);
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
