//! The single-instance lock: one `ductorctl up` per `$DUCTOR_HOME`.
//!
//! An exclusive `flock` on `<run dir>/ductorctl.lock`, which also holds the
//! launcher's pid. The kernel drops the lock when the launcher dies however it
//! dies, so a stale file never blocks the next `up`, and "is a launcher
//! running?" is answered by trying the lock, not by trusting a pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use ductor_daemon::DuctorHome;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another launcher holds it.
    #[error(
        "ductor is already running for {home} (ductorctl up, pid {pid}); \
         use `ductorctl status`, or `ductorctl down` first"
    )]
    Held {
        /// The home directory.
        home: String,
        /// The running launcher's pid, as far as the lock file tells.
        pid: String,
    },
    /// The lock file could not be opened or locked.
    #[error("lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Held for the launcher's lifetime; released when dropped or at exit.
#[derive(Debug)]
pub struct LauncherLock {
    _file: Flock<File>,
}

/// Path of the lock file.
pub fn path(home: &DuctorHome) -> PathBuf {
    home.run_dir().join("ductorctl.lock")
}

/// Takes the lock for this process and records our pid in it.
/// The run directory must exist.
pub fn acquire(home: &DuctorHome) -> Result<LauncherLock, LockError> {
    let path = path(home);
    let io = |source| LockError::Io { path: path.clone(), source };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let pid = read_pid(&mut file).map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            return Err(LockError::Held { home: home.root().display().to_string(), pid });
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    locked.set_len(0).map_err(io)?;
    locked.rewind().map_err(io)?;
    writeln!(locked, "{}", std::process::id()).map_err(io)?;
    Ok(LauncherLock { _file: locked })
}

/// The pid of the running launcher, or `None` when no launcher holds the lock.
pub fn holder(home: &DuctorHome) -> Option<u32> {
    let mut file = File::open(path(home)).ok()?;
    let pid = read_pid(&mut file);
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We got it, so nobody holds it exclusively: no launcher. Dropping unlocks.
        Ok(_unlocked) => None,
        Err(_) => pid,
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_with_the_holder_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(tmp.path());
        std::fs::create_dir_all(home.run_dir()).unwrap();
        assert_eq!(holder(&home), None);
        let lock = acquire(&home).unwrap();
        assert_eq!(holder(&home), Some(std::process::id()));
        let error = acquire(&home).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("already running"), "{message}");
        assert!(message.contains(&std::process::id().to_string()), "{message}");
        drop(lock);
        assert_eq!(holder(&home), None);
        acquire(&home).unwrap();
    }
}
