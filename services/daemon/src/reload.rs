//! Config hot reload: each service watches `config.toml` and applies what it
//! can without a restart.
//!
//! The watcher stats the file about once a second (device, inode, size and
//! change times, so an editor that replaces the file by rename is seen too)
//! and checks at once on SIGHUP (`ductorctl reload`, `systemctl reload`,
//! `docker compose kill -s HUP`). A change is loaded and validated exactly as
//! at start; a bad edit is logged with the key at fault and nothing of it is
//! applied. A good one is published on a `watch` channel
//! ([`crate::daemon::ServiceContext::config_updates`]) and logged as one line
//! naming the keys applied live and those that need a restart of this
//! service ([`keys`] is the one table of which is which).
//!
//! Each service also records what it runs with in `<run dir>/applied/<service>`
//! (0600 in a 0700 directory, secrets only as digests): the effective
//! configuration it started with, the one it runs with now (new values of
//! live keys only), and counters `ductorctl reload` waits on. `ductorctl
//! config check` compares the file with it to name the keys still waiting
//! for a restart.

pub mod diff;
pub mod keys;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use toml::Table;

use crate::{Config, ConfigError, DuctorHome, ServiceName};
pub use keys::{Apply, Reader};

/// How often the file's metadata is checked.
const POLL: Duration = Duration::from_secs(1);

/// What a running service records about its configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The recording process.
    pub pid: u32,
    /// Checks of a changed file (or a SIGHUP) so far, good or bad.
    pub attempt: u64,
    /// Changes applied so far.
    pub generation: u64,
    /// Why the last check refused the file; empty when it did not.
    pub rejected: String,
    /// The effective configuration at start (secrets as digests).
    pub started: Table,
    /// The effective configuration it runs with now: `started` with the new
    /// values of the keys it applies live.
    pub running: Table,
}

impl Applied {
    /// Where `reader` of `home` records it.
    pub fn path(home: &DuctorHome, reader: Reader) -> PathBuf {
        let name = match reader {
            Reader::Service(service) => home.instance_name(service),
            other => other.as_str().to_owned(),
        };
        home.run_dir().join("applied").join(name)
    }

    /// The record of `reader`, if there is a readable one.
    pub fn read(home: &DuctorHome, reader: Reader) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(home, reader)).ok()?;
        toml::from_str(&text).ok()
    }

    /// Records the configuration of a reader that applies nothing live (the
    /// launcher), as it starts, so `ductorctl config check` can name its
    /// changed keys too.
    pub fn record_start(home: &DuctorHome, reader: Reader) -> std::io::Result<()> {
        let (_, text, _) = read(&home.config_file());
        let table = diff::effective(&text?).unwrap_or_default();
        let (started, running) = Tracker::new(reader, table).tables();
        let record = Self { pid: std::process::id(), started, running, ..Self::default() };
        record.write(&Self::path(home, reader))
    }

    /// Keys `reader` reads whose value in `file` (an effective, redacted
    /// table) differs from what it runs with, split into (live but not yet
    /// applied, needs a restart).
    pub fn pending(&self, reader: Reader, file: &Table) -> (Vec<String>, Vec<String>) {
        keys::split_for(reader, &diff::changed_keys(&self.running, file))
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        crate::paths::tighten(dir, 0o700)?;
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        crate::paths::write_private(path, text.as_bytes())
    }
}

/// What one check of the file found.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing this service reads changed since the last check.
    Unchanged,
    /// The file is invalid; the running configuration is kept.
    Rejected(ConfigError),
    /// A valid change: keys applied now, and keys (changed since start)
    /// that wait for a restart.
    Applied {
        /// Applied live by this check.
        live: Vec<String>,
        /// Waiting for a restart of this service.
        restart: Vec<String>,
    },
}

/// The state of one service's view of its configuration, without I/O.
#[derive(Debug)]
pub struct Tracker {
    reader: Reader,
    started: Table,
    running: Table,
    restart: Vec<String>,
}

impl Tracker {
    /// A service started with the effective table `started`.
    pub fn new(reader: Reader, started: Table) -> Self {
        Self { reader, running: started.clone(), started, restart: Vec::new() }
    }

    /// Takes a newly loaded file: its effective table, or why it was refused.
    pub fn update(&mut self, loaded: Result<Table, ConfigError>) -> Outcome {
        let new = match loaded {
            Ok(table) => table,
            Err(error) => return Outcome::Rejected(error),
        };
        let since_start = diff::changed_keys(&self.started, &new);
        let mut running = self.started.clone();
        for key in &since_start {
            if keys::apply_for(self.reader, key) == Some(Apply::Live) {
                diff::set(&mut running, key, diff::get(&new, key).cloned());
            }
        }
        let live = diff::changed_keys(&self.running, &running);
        let (_, restart) = keys::split_for(self.reader, &since_start);
        if live.is_empty() && restart == self.restart {
            return Outcome::Unchanged;
        }
        self.running = running;
        self.restart.clone_from(&restart);
        Outcome::Applied { live, restart }
    }

    /// The record's tables, secrets as digests.
    fn tables(&self) -> (Table, Table) {
        (diff::redacted(&self.started), diff::redacted(&self.running))
    }
}

/// The file's identity and change stamps; `None` when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(u64, u64, u64, i64, i64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp(m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// Reads the file (missing = empty) with the stamps before and after.
fn read(path: &Path) -> (Option<Stamp>, std::io::Result<String>, Option<Stamp>) {
    let before = stamp(path);
    let text = match std::fs::read_to_string(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    };
    (before, text, stamp(path))
}

/// One service's watcher task.
struct Watcher {
    service: ServiceName,
    /// The agent whose view of the file this service uses ([`Config::focus`]).
    agent: String,
    path: PathBuf,
    record_path: PathBuf,
    stamp: Option<Stamp>,
    tracker: Tracker,
    record: Applied,
    updates: watch::Sender<Arc<Config>>,
}

/// Starts the watcher of `service` (it runs until `shutdown`); `config` is
/// what the service was started with. The receiver gets every change that
/// holds a key this service applies live.
pub fn start(
    service: ServiceName,
    home: &DuctorHome,
    config: Config,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<Config>> {
    let path = home.config_file();
    let (stamp, text, _) = read(&path);
    let started = text.ok().and_then(|t| diff::effective(&t)).or_else(|| diff::effective(""));
    let tracker = Tracker::new(Reader::Service(service), started.unwrap_or_default());
    let (started, running) = tracker.tables();
    let record = Applied { pid: std::process::id(), started, running, ..Applied::default() };
    let (updates, receiver) = watch::channel(Arc::new(config));
    let watcher = Watcher {
        service,
        agent: home.agent().to_owned(),
        path,
        record_path: Applied::path(home, Reader::Service(service)),
        stamp,
        tracker,
        record,
        updates,
    };
    watcher.save();
    tokio::spawn(watcher.run(hangups(), shutdown));
    receiver
}

impl Watcher {
    async fn run(mut self, mut hangup: Hangups, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    if stamp(&self.path) == self.stamp {
                        continue;
                    }
                }
                () = hangup.next() => tracing::info!("SIGHUP: checking config.toml"),
            }
            self.check();
        }
    }

    /// Loads the file and applies what changed (or says why not).
    fn check(&mut self) {
        let (before, text, after) = read(&self.path);
        if before != after {
            return; // Being written: the next tick sees the finished file.
        }
        self.stamp = after;
        self.record.attempt += 1;
        let loaded = text
            .map_err(|source| ConfigError::Read { path: self.path.clone(), source })
            .and_then(|text| {
                let config =
                    Config::parse_for_service(&text, &self.path, self.service)?.focus(&self.agent);
                Ok((diff::effective(&text).unwrap_or_default(), config))
            });
        let (table, config) = match loaded {
            Ok((table, config)) => (Ok(table), Some(config)),
            Err(error) => (Err(error), None),
        };
        self.record.rejected.clear();
        match self.tracker.update(table) {
            Outcome::Unchanged => tracing::debug!("config.toml checked: nothing to apply"),
            Outcome::Rejected(error) => {
                tracing::error!(
                    key = error.key().unwrap_or(""),
                    "config.toml rejected, keeping the running configuration: {error}"
                );
                self.record.rejected = error.to_string();
            }
            Outcome::Applied { live, restart } => {
                self.report(&live, &restart);
                if let (false, Some(config)) = (live.is_empty(), config) {
                    self.record.generation += 1;
                    self.updates.send_replace(Arc::new(config));
                }
            }
        }
        (self.record.started, self.record.running) = self.tracker.tables();
        self.save();
    }

    fn report(&self, live: &[String], restart: &[String]) {
        let service = self.service.as_str();
        let hint = Reader::Service(self.service).restart_hint();
        let restart = if restart.is_empty() {
            String::new()
        } else {
            format!("; needs a restart of {service} (`{hint}`): {}", restart.join(", "))
        };
        let live = if live.is_empty() { "nothing".to_owned() } else { live.join(", ") };
        tracing::info!("config.toml reloaded: applied live: {live}{restart}");
    }

    fn save(&self) {
        if let Err(error) = self.record.write(&self.record_path) {
            tracing::warn!(%error, path = %self.record_path.display(), "could not record the applied configuration");
        }
    }
}

/// SIGHUP as a stream; installed before the service serves, so a SIGHUP
/// never takes the default action (terminate).
struct Hangups(Option<tokio::signal::unix::Signal>);

fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Hangups(Some(signal)),
        Err(error) => {
            tracing::warn!(%error, "no SIGHUP handler: config.toml is only watched");
            Hangups(None)
        }
    }
}

impl Hangups {
    async fn next(&mut self) {
        let received = match &mut self.0 {
            Some(signal) => signal.recv().await.is_some(),
            None => false,
        };
        if !received {
            // No handler, or the stream ended: only the file watch is left.
            self.0 = None;
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        diff::effective(text).expect("TOML")
    }

    #[test]
    fn live_keys_are_applied_and_restart_keys_are_kept_and_named() {
        let mut core = Tracker::new(Reader::Service(ServiceName::Core), table(""));
        let edit =
            "[agent]\nmodel = \"m2\"\n[rules]\nmax_file_bytes = 1000\n[telegram]\nburst = 5\n";
        let Outcome::Applied { live, restart } = core.update(Ok(table(edit))) else {
            panic!("a change")
        };
        assert_eq!(live, ["agent.model"]);
        assert_eq!(restart, ["rules.max_file_bytes"]);
        assert_eq!(diff::get(&core.running, "agent.model"), Some(&"m2".into()));
        assert_eq!(diff::get(&core.running, "rules.max_file_bytes"), Some(&262_144.into()));
        // The same file again: nothing new.
        assert!(matches!(core.update(Ok(table(edit))), Outcome::Unchanged));
        // Back to the start: the live key returns, nothing waits any more.
        let Outcome::Applied { live, restart } = core.update(Ok(table(""))) else {
            panic!("a change back")
        };
        assert_eq!((live, restart), (vec!["agent.model".to_owned()], vec![]));
    }

    #[test]
    fn a_rejected_file_changes_nothing() {
        let mut telegram = Tracker::new(Reader::Service(ServiceName::Telegram), table(""));
        let error = Config::parse_for_service(
            "[telegram]\nallowed_user_ids = \"all\"\n",
            Path::new("config.toml"),
            ServiceName::Telegram,
        )
        .expect_err("wrong type");
        assert!(
            matches!(telegram.update(Err(error)), Outcome::Rejected(e) if e.key() == Some("telegram.allowed_user_ids"))
        );
        assert_eq!(telegram.running, table(""));
    }

    #[test]
    fn the_record_round_trips_without_secrets() {
        let tracker = Tracker::new(
            Reader::Service(ServiceName::Telegram),
            table("[telegram]\ntoken = \"1:TOPSECRET\"\n"),
        );
        let (started, running) = tracker.tables();
        let record = Applied { pid: 7, attempt: 1, started, running, ..Applied::default() };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("applied").join("telegram");
        record.write(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert_eq!(toml::from_str::<Applied>(&text).expect("parse"), record);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let file =
            diff::redacted(&table("[telegram]\ntoken = \"1:NEW\"\nallowed_user_ids = [5]\n"));
        let (live, restart) = record.pending(Reader::Service(ServiceName::Telegram), &file);
        assert_eq!(
            (live, restart),
            (vec!["telegram.allowed_user_ids".into()], vec!["telegram.token".into()])
        );
    }
}
