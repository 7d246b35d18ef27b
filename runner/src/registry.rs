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
//!
//! A fenced run's record also names its user namespace
//! ([`crate::namespace::members`]), which catches the processes that left
//! the group (`setsid`): the sweep kills every process still in it.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::namespace::members::{self, NsId};

/// Where the records live.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// Start time of `pid` in clock ticks since boot, if it is alive.
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.started)
}

/// The fields of `/proc/<pid>/stat` the sweeps need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// State (field 3): `Z` for a zombie, `X` for a dead process.
    pub(crate) state: char,
    /// Process group id (field 5).
    pub(crate) pgid: u32,
    /// Start time in clock ticks since boot (field 22).
    pub(crate) started: u64,
}

impl Stat {
    /// Exited (a zombie waiting for its parent, or being removed).
    pub(crate) fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// `/proc/<pid>/stat` of `pid`, if it exists.
pub(crate) fn proc_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is index n - 3.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
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
        .filter(|&pid| proc_stat(pid).is_some_and(|s| s.pgid == pgid && s.started >= started))
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

    /// Records the process group of `run_id` and, when fenced, its user namespace.
    pub fn record(&self, run_id: &str, pgid: u32, ns: Option<NsId>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let started = start_time(pgid).unwrap_or(0);
        let ns = ns.map(|ns| format!(" {} {}", ns.inode, ns.unique)).unwrap_or_default();
        ductor_daemon::paths::write_private(
            &self.file(run_id),
            format!("{pgid} {started}{ns}\n").as_bytes(),
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

    /// Kills the process groups and namespaces of every record left by a
    /// previous runner and removes the records. Returns how many groups were
    /// killed plus how many processes outside them.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut killed = 0;
        let mut namespaces = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let record = std::fs::read_to_string(&path).ok().and_then(|t| parse(&t));
            if let Some(Record { pgid, started, ns }) = record {
                if kill_leftover(pgid, started) {
                    killed += 1;
                    tracing::warn!(pgid, record = %path.display(), "killed a CLI left by a previous runner");
                }
                namespaces.extend(ns.filter(|_| started > 0).map(|ns| (ns, started)));
            }
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(record = %path.display(), %error, "failed to remove a stale pid record");
            }
        }
        let strays = members::sweep(&namespaces);
        if strays > 0 {
            tracing::warn!(
                strays,
                "killed processes left in the namespaces of a previous runner's runs"
            );
        }
        killed + strays
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

/// One pid record: `<pgid> <leader start>[ <userns inode> <userns id>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    pgid: u32,
    started: u64,
    ns: Option<NsId>,
}

fn parse(text: &str) -> Option<Record> {
    let mut words = text.split_whitespace();
    let pgid = words.next()?.parse().ok()?;
    let started = words.next()?.parse().ok()?;
    let inode = words.next().and_then(|w| w.parse().ok());
    let unique = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    Some(Record { pgid, started, ns: inode.map(|inode| NsId { inode, unique }) })
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
        assert_eq!(parse_stat(line), Some(Stat { state: 'S', pgid: 40, started: 777 }));
        let own = proc_stat(std::process::id()).expect("own stat");
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

    #[test]
    fn records_with_and_without_a_namespace_parse() {
        assert_eq!(parse("40 777\n"), Some(Record { pgid: 40, started: 777, ns: None }));
        let ns = Some(NsId { inode: 4026532178, unique: 4099 });
        assert_eq!(parse("40 777 4026532178 4099\n"), Some(Record { pgid: 40, started: 777, ns }));
        assert_eq!(parse("garbage"), None);
    }
}
