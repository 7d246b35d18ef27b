//! Requests to the running launcher (`ductorctl up`): start, stop or restart
//! one supervised service by its instance name (`telegram`, `telegram@researcher`).
//!
//! A request is a file in `<run dir>/control/` (0700, owner only) holding
//! `<action> <service>`, followed by SIGUSR1 to the launcher, whose pid is in
//! the lock file it holds (`<run dir>/ductorctl.lock`). Files, not a signal
//! alone, so concurrent requests are never merged or lost; the launcher takes
//! and deletes every pending file at each SIGUSR1. Used by `ductorctl
//! restart|agents` and by core (`/agent_start|stop|restart`).

use std::fs::File;
use std::io::Read as _;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use crate::DuctorHome;

/// What to do with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop it and start it again.
    Restart,
    /// Start it (again) from the current `config.toml`.
    Start,
    /// Stop it and keep it stopped until a `Start`.
    Stop,
}

impl Action {
    /// The word in the request file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        [Self::Restart, Self::Start, Self::Stop].into_iter().find(|a| a.as_str() == word)
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub action: Action,
    /// The service's instance name.
    pub service: String,
}

/// Why a request could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No `ductorctl up` runs for this home.
    #[error("no `ductorctl up` is running for {0}")]
    NoLauncher(PathBuf),
    /// The request file could not be written, or the launcher signalled.
    #[error("hand the request to the launcher: {0}")]
    Io(#[from] std::io::Error),
}

/// The control directory.
pub fn dir(home: &DuctorHome) -> PathBuf {
    home.run_dir().join("control")
}

/// The launcher's lock file.
pub fn lock_file(home: &DuctorHome) -> PathBuf {
    home.run_dir().join("ductorctl.lock")
}

/// The pid of the running launcher, or `None` when no launcher holds the lock.
pub fn launcher(home: &DuctorHome) -> Option<u32> {
    let mut file = File::open(lock_file(home)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let pid = text.trim().parse().ok();
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We got it, so nobody holds it exclusively: no launcher. Dropping unlocks.
        Ok(_unlocked) => None,
        Err(_) => pid,
    }
}

/// Hands `request` to the running launcher (it acts on it asynchronously).
pub fn send(home: &DuctorHome, request: &Request) -> Result<(), ControlError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let pid = launcher(home).ok_or_else(|| ControlError::NoLauncher(home.root().to_path_buf()))?;
    let dir = dir(home);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let path = dir.join(format!("{}-{}-{nonce:016x}", request.action.as_str(), std::process::id()));
    let text = format!("{} {}", request.action.as_str(), request.service);
    crate::paths::write_private(&path, text.as_bytes())?;
    let raw = i32::try_from(pid).map_err(|_| std::io::Error::other("bad launcher pid"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), nix::sys::signal::Signal::SIGUSR1)
        .map_err(std::io::Error::from)?;
    Ok(())
}

/// Takes (and deletes) every pending request (launcher side); malformed
/// files are logged and dropped. A bare service name is a restart (the
/// format of earlier `ductorctl restart`).
pub fn take(home: &DuctorHome) -> Vec<Request> {
    let Ok(entries) = std::fs::read_dir(dir(home)) else { return Vec::new() };
    let mut requests: Vec<Request> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        match parse(text.trim()) {
            Some(request) if !requests.contains(&request) => requests.push(request),
            Some(_) => {}
            None => tracing::warn!("ignoring malformed control request {}", path.display()),
        }
    }
    requests
}

fn parse(text: &str) -> Option<Request> {
    let (action, service) = match text.split_once(' ') {
        Some((word, service)) => (Action::parse(word)?, service.trim()),
        None => (Action::Restart, text),
    };
    let valid = !service.is_empty()
        && service.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '-' | '_'));
    valid.then(|| Request { action, service: service.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_refuse_junk() {
        let restart = Request { action: Action::Restart, service: "telegram".into() };
        assert_eq!(parse("telegram"), Some(restart));
        let stop = Request { action: Action::Stop, service: "telegram@researcher".into() };
        assert_eq!(parse("stop telegram@researcher"), Some(stop));
        assert_eq!(parse("explode core"), None);
        assert_eq!(parse("stop ../../etc"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn without_a_launcher_nothing_is_sent() {
        let tmp = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(tmp.path());
        let request = Request { action: Action::Start, service: "matrix@x".into() };
        assert!(matches!(send(&home, &request), Err(ControlError::NoLauncher(_))));
        assert!(take(&home).is_empty());
    }
}
