//! No process of a run outlives it (security review M5), even one that left
//! the run's process group with `setsid` or `setpgid`.
//!
//! With the fence, a run's processes are exactly those in its user
//! namespace (a nested one is refused, and no process can join another):
//! the runner holds the namespace open for the run ([`RunNs`], so its inode
//! number cannot be reused meanwhile) and at the run's end, after the
//! group's TERM → KILL, SIGKILLs every process whose `/proc/<pid>/ns/user`
//! is that namespace ([`kill_members`]). The pid registry records the inode
//! and, where the kernel has `NS_GET_ID`, the namespace's never-reused id,
//! so the next runner start kills what a dead runner left ([`sweep`]).
//!
//! The runner is also a child subreaper ([`become_subreaper`]): orphans of
//! its runs are re-parented to it instead of init. Without namespaces that
//! is the fallback identity: an orphan that belongs to no live run's process
//! group is killed when a run ends ([`kill_strays`]). Orphans are reaped by
//! pid ([`reap`], on every SIGCHLD), never with `waitpid(-1)`, so tokio
//! keeps the exit status of its own children. The kernel hands orphans to
//! the subreaper's first live thread, the main thread, which forks nothing
//! (tokio runs tasks, and the spawner forks, on other threads), so the main
//! thread's `/proc/<pid>/task/<pid>/children` lists exactly the orphans.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::registry;

/// `NS_GET_ID` (`_IOR(0xb7, 0xd, __u64)`, `linux/nsfs.h`, Linux 6.18): a
/// namespace's 64-bit id, never reused, unlike its inode number.
const NS_GET_ID: libc::c_ulong = (2 << 30) | (8 << 16) | (0xb7 << 8) | 0xd;

/// Kill rounds: each one catches processes forked while the last was sent.
const MAX_ROUNDS: usize = 64;

/// The identity of a run's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    /// Inode number of `/proc/<pid>/ns/user` (reused once the namespace is gone).
    pub inode: u64,
    /// `NS_GET_ID`, or 0 where the kernel lacks it.
    pub unique: u64,
}

/// A run's user namespace, held open while the run lives.
#[derive(Debug)]
pub struct RunNs {
    _fd: OwnedFd,
    id: NsId,
}

impl RunNs {
    /// The user namespace of the run whose CLI is `pid` (alive or not yet reaped).
    pub fn open(pid: u32) -> io::Result<Self> {
        let file = File::open(format!("/proc/{pid}/ns/user"))?;
        let inode = file.metadata()?.ino();
        if Some(inode) == own_userns() {
            return Err(io::Error::other("the CLI is in the runner's own user namespace"));
        }
        let unique = ns_unique(&file).unwrap_or(0);
        Ok(Self { _fd: file.into(), id: NsId { inode, unique } })
    }

    /// Its identity, for the pid registry.
    pub fn id(&self) -> NsId {
        self.id
    }
}

fn own_userns() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/user").ok().map(|m| m.ino())
}

fn ns_unique(file: &File) -> Option<u64> {
    let mut id = 0u64;
    // SAFETY: NS_GET_ID writes one u64 into `id`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_ID as _, &mut id) };
    (rc == 0 && id != 0).then_some(id)
}

fn unique_of(pid: u32) -> Option<u64> {
    ns_unique(&File::open(format!("/proc/{pid}/ns/user")).ok()?)
}

/// SIGKILLs every live process of the run whose namespace is `run`; returns
/// how many were signalled.
pub fn kill_members(run: &RunNs) -> usize {
    let inode = run.id.inode;
    kill_where(|_, candidate, _| candidate == inode)
}

/// SIGKILLs what is left of the runs in `records` (namespace, start time of
/// the run's CLI) after a runner died; returns how many were signalled.
///
/// A process counts only if its namespace has the recorded inode, is not
/// the runner's own, started no earlier than the run's CLI and, where the
/// id was recorded, has that id: an inode number reused by a later
/// namespace of another program is never taken for a leftover.
pub fn sweep(records: &[(NsId, u64)]) -> usize {
    if records.is_empty() {
        return 0;
    }
    let own = own_userns();
    kill_where(|pid, inode, started| {
        Some(inode) != own
            && records.iter().any(|(id, leader_started)| {
                id.inode == inode
                    && started >= *leader_started
                    && (id.unique == 0 || unique_of(pid) == Some(id.unique))
            })
    })
}

/// Kills, in rounds until one finds nothing new, every live process (not a
/// zombie, not the runner) for which `matches(pid, userns inode, start time)`.
fn kill_where(mut matches: impl FnMut(u32, u64, u64) -> bool) -> usize {
    let own = std::process::id();
    let mut signalled: HashSet<(u32, u64)> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let mut fresh = Vec::new();
        for pid in pids().filter(|&pid| pid != own) {
            let Some(inode) =
                std::fs::metadata(format!("/proc/{pid}/ns/user")).ok().map(|m| m.ino())
            else {
                continue;
            };
            let Some(stat) = registry::proc_stat(pid) else { continue };
            let fresh_one = !stat.is_dead() && !signalled.contains(&(pid, stat.started));
            if fresh_one && matches(pid, inode, stat.started) {
                fresh.push((pid, stat.started));
            }
        }
        if fresh.is_empty() {
            break;
        }
        for (pid, started) in fresh {
            match kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(error) => tracing::warn!(pid, %error, "failed to kill a run's process"),
            }
            signalled.insert((pid, started));
        }
    }
    signalled.len()
}

/// Every pid in `/proc`.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
}

// === The subreaper ===

fn children_file() -> String {
    let pid = std::process::id();
    format!("/proc/{pid}/task/{pid}/children")
}

/// Makes the runner the reaper of its runs' orphans; false when the kernel
/// cannot list a thread's children (orphans then go to init, as before).
pub fn become_subreaper() -> bool {
    if !std::path::Path::new(&children_file()).exists() {
        return false;
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// The orphans the runner adopted: its main thread's children.
pub fn orphans() -> Vec<u32> {
    let text = std::fs::read_to_string(children_file()).unwrap_or_default();
    text.split_whitespace().filter_map(|pid| pid.parse().ok()).collect()
}

/// Reaps the adopted orphans that have exited; returns how many.
pub fn reap() -> usize {
    let mut reaped = 0;
    for pid in orphans() {
        let mut status = 0;
        // SAFETY: waits for one specific child, without blocking.
        if unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) } > 0 {
            reaped += 1;
        }
    }
    reaped
}

/// Without namespaces: SIGKILLs the adopted orphans whose process group is
/// no live run's (`live_groups`); returns how many.
pub fn kill_strays(live_groups: &HashSet<u32>) -> usize {
    let mut killed = 0;
    for pid in orphans() {
        let Some(stat) = registry::proc_stat(pid) else { continue };
        if stat.is_dead() || live_groups.contains(&stat.pgid) {
            continue;
        }
        if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// Reaps adopted orphans on every SIGCHLD, for the runner's lifetime.
pub async fn reap_forever() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut children = match signal(SignalKind::child()) {
        Ok(children) => children,
        Err(error) => {
            tracing::warn!(%error, "failed to watch SIGCHLD; orphans of runs stay unreaped");
            return;
        }
    };
    while children.recv().await.is_some() {
        reap();
    }
}
