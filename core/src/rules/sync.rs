//! The I/O side of the rule sync: one pass over the workspace root,
//! `cron_tasks/*/` and `tasks/*/`, run by core at start (before any run) and
//! then every `[rules].sync_interval_seconds` on the blocking pool, never on
//! the path of a turn.
//!
//! A pass costs one `fstatat` per rule file; a directory is read and decided
//! ([`super::decide`]) only when a file's stamp (inode, size, mtime, ctime,
//! kind) changed since the last pass. Everything goes through `safe_fs`
//! opened at the workspace root: no component is followed if it is a link,
//! only regular, unshared files within the size cap are read, and files are
//! replaced by rename, so a planted link is replaced, never written through.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use ductor_daemon::safe_fs::{Entry, Tree};
use tokio_util::sync::CancellationToken;

use super::{FileView, Input, Note, Plan, RULE_FILES, Record, decide, store};
use crate::store::{Store, StoreError};

/// The shared memory's file name, in the main workspace's `memory_system/`.
pub const SHARED_MEMORY_FILE: &str = "SHAREDMEMORY.md";

/// Parents of task folders, under the workspace.
const TASK_PARENTS: [&str; 2] = [crate::automation::task_folder::CRON_TASKS_DIR, "tasks"];

/// What one file looked like, cheaply (`fstatat`, no read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    modified_ns: i64,
    changed_ns: i64,
    links: u64,
    kind: u8,
}

impl Stamp {
    fn of(entry: &Entry) -> Self {
        let kind = u8::from(entry.is_file) | (u8::from(entry.is_link) << 1);
        Self {
            ino: entry.ino,
            size: entry.size,
            modified_ns: entry.modified_ns,
            changed_ns: entry.changed_ns,
            links: entry.links,
            kind,
        }
    }
}

type Stamps = [Option<Stamp>; 3];

/// Counts of one pass (logged at debug, printed by the bench).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Directories looked at.
    pub dirs: usize,
    /// Directories whose files were read and decided (something changed).
    pub decided: usize,
    /// Files written (rule files and backups).
    pub written: usize,
    /// Directories that could not be synced (logged).
    pub failed: usize,
}

/// The rule sync of one workspace: records (mirrored in `state.db`) and the
/// stamps of the last pass (in memory only: the first pass reads everything).
pub struct RuleSync {
    workspace: PathBuf,
    store: Store,
    max_bytes: u64,
    root_rules: String,
    /// The root's framework text before the shared memory is added.
    base_rules: String,
    /// Where `SHAREDMEMORY.md` is read (the main workspace), when agents share one.
    shared_from: Option<PathBuf>,
    /// Prefix of this workspace's record keys: `""` for the main agent,
    /// `@<name>/` for a sub-agent (one `rule_sync` table for every workspace).
    prefix: String,
    records: HashMap<String, Record>,
    stamps: HashMap<String, Stamps>,
}

impl std::fmt::Debug for RuleSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSync").field("workspace", &self.workspace).finish_non_exhaustive()
    }
}

/// Which framework text a directory gets.
enum Kind {
    Root,
    Cron(String),
    Task,
}

impl RuleSync {
    /// The sync of `workspace`, its records loaded from `store` (which must
    /// have [`store::MIGRATIONS`]).
    pub fn new(workspace: PathBuf, store: Store, max_bytes: u64) -> Result<Self, StoreError> {
        let records =
            store.call_sync(store::load)?.into_iter().filter(|(dir, _)| !dir.starts_with('@'));
        let root_rules = crate::workspace::rules_text();
        Ok(Self {
            workspace,
            store,
            max_bytes,
            base_rules: root_rules.clone(),
            root_rules,
            shared_from: None,
            prefix: String::new(),
            records: records.collect(),
            stamps: HashMap::new(),
        })
    }

    /// The sync of sub-agent `agent`'s workspace: its records are kept apart
    /// from the main workspace's (`@<agent>/` keys).
    pub fn for_agent(
        workspace: PathBuf,
        store: Store,
        max_bytes: u64,
        agent: &str,
    ) -> Result<Self, StoreError> {
        let prefix = format!("@{agent}/");
        let mut sync = Self::new(workspace, store.clone(), max_bytes)?;
        sync.records = store
            .call_sync(store::load)?
            .into_iter()
            .filter(|(d, _)| d.starts_with(&prefix))
            .collect();
        sync.prefix = prefix;
        Ok(sync)
    }

    /// Adds `text` (who the agents are) to the root's framework text, and
    /// the shared memory of `main_workspace` (`memory_system/SHAREDMEMORY.md`),
    /// re-read at every pass so an edit reaches every agent's rule files.
    pub fn with_agents(mut self, text: &str, main_workspace: PathBuf) -> Self {
        self.base_rules = format!("{}\n{text}", self.base_rules.trim_end());
        self.root_rules = self.base_rules.clone();
        self.shared_from = Some(main_workspace);
        self
    }

    /// Takes the current shared memory into the root's framework text; a
    /// change makes the next pass look at every directory again.
    fn refresh_shared(&mut self) {
        let Some(main) = &self.shared_from else { return };
        let read = Tree::root(main)
            .and_then(|root| root.dir("memory_system"))
            .and_then(|dir| dir.read(SHARED_MEMORY_FILE, crate::workspace::MEMORY_MAX_BYTES));
        let shared = match read {
            Ok(bytes) => bytes.map(|b| String::from_utf8_lossy(&b).trim().to_owned()),
            Err(error) => {
                tracing::warn!(%error, "the shared memory was not read");
                return;
            }
        };
        let rules = match shared.filter(|s| !s.is_empty()) {
            Some(shared) => format!(
                "{}\n\n## Shared memory\n\nWhat every agent knows (from the main agent's \
                 `memory_system/{SHARED_MEMORY_FILE}`; ask the main agent to change it):\n\n{shared}\n",
                self.base_rules.trim_end()
            ),
            None => self.base_rules.clone(),
        };
        if rules != self.root_rules {
            self.root_rules = rules;
            self.stamps.clear();
        }
    }

    /// Runs a pass now, then one every `interval` on the blocking pool until
    /// `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match tokio::task::spawn_blocking(move || {
                self.pass();
                self
            })
            .await
            {
                Ok(sync) => self = sync,
                Err(error) => {
                    tracing::error!(%error, "the rule sync failed and stops");
                    return;
                }
            }
        }
    }

    /// One pass over every directory.
    pub fn pass(&mut self) -> PassReport {
        self.refresh_shared();
        let mut report = PassReport::default();
        let root = match Tree::root(&self.workspace) {
            Ok(root) => root,
            Err(error) => {
                tracing::warn!(%error, "failed to open the workspace for the rule sync");
                report.failed += 1;
                return report;
            }
        };
        let mut seen = HashSet::new();
        let mut listed = Vec::new();
        let mut changed = Vec::new();
        self.sync_dir(&root, self.prefix.clone(), Kind::Root, &mut report, &mut changed);
        seen.insert(self.prefix.clone());
        for parent in TASK_PARENTS {
            let Some((tree, children)) = list(&root, parent, &mut report) else { continue };
            listed.push(format!("{}{parent}/", self.prefix));
            for name in children {
                let rel = format!("{}{parent}/{name}", self.prefix);
                let kind = if parent == "tasks" { Kind::Task } else { Kind::Cron(name.clone()) };
                match tree.dir(&name) {
                    Ok(dir) => self.sync_dir(&dir, rel.clone(), kind, &mut report, &mut changed),
                    Err(error) => tracing::debug!(%error, "rule sync: folder not opened"),
                }
                seen.insert(rel);
            }
        }
        let gone: Vec<String> = self
            .records
            .keys()
            .filter(|dir| {
                !seen.contains(*dir) && listed.iter().any(|p| dir.starts_with(p.as_str()))
            })
            .cloned()
            .collect();
        self.forget(&gone);
        self.save(&changed, &gone);
        report
    }

    fn forget(&mut self, gone: &[String]) {
        for dir in gone {
            self.records.remove(dir);
            self.stamps.remove(dir);
        }
    }

    fn save(&mut self, changed: &[(String, Record)], gone: &[String]) {
        if changed.is_empty() && gone.is_empty() {
            return;
        }
        let (changed, gone) = (changed.to_vec(), gone.to_vec());
        if let Err(error) = self.store.call_sync(|conn| store::save(conn, &changed, &gone)) {
            tracing::warn!(%error, "failed to save the rule-sync records");
            // Read everything again next time rather than trust memory alone.
            self.stamps.clear();
        }
    }

    /// Syncs one directory when one of its rule files changed.
    fn sync_dir(
        &mut self,
        dir: &Tree,
        rel: String,
        kind: Kind,
        report: &mut PassReport,
        changed: &mut Vec<(String, Record)>,
    ) {
        report.dirs += 1;
        let entries = RULE_FILES.map(|name| dir.entry(name));
        let stamps: Stamps = std::array::from_fn(|i| match &entries[i] {
            Ok(entry) => entry.as_ref().map(Stamp::of),
            Err(_) => None,
        });
        if self.stamps.get(&rel) == Some(&stamps) {
            return;
        }
        let record = self.records.get(&rel).copied();
        let none = entries.iter().all(|e| matches!(e, Ok(None)));
        if record.is_none() && none && !matches!(kind, Kind::Root) {
            // A folder ductor never gave rule files: not one of its task folders.
            self.stamps.insert(rel, stamps);
            return;
        }
        report.decided += 1;
        let files = std::array::from_fn(|i| self.view(dir, RULE_FILES[i], &entries[i]));
        let framework = match &kind {
            Kind::Root => self.root_rules.clone(),
            Kind::Cron(name) => crate::automation::task_folder::rules_text(name),
            Kind::Task => crate::background::TASK_RULES.to_owned(),
        };
        let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let plan = decide(&Input { record, framework: &framework, files, now: &now });
        log_notes(dir, &plan.notes);
        match apply(dir, &plan, &stamps, report) {
            Applied::All => {
                let after =
                    RULE_FILES.map(|name| dir.entry(name).ok().flatten().map(|e| Stamp::of(&e)));
                self.stamps.insert(rel.clone(), after);
            }
            Applied::Raced => {
                self.stamps.remove(&rel);
            }
            Applied::Failed => {
                self.stamps.remove(&rel);
                report.failed += 1;
                return;
            }
        }
        if record != Some(plan.record) {
            self.records.insert(rel.clone(), plan.record);
            changed.push((rel, plan.record));
        }
    }

    /// What [`decide`] is told about one file.
    fn view(
        &self,
        dir: &Tree,
        name: &str,
        entry: &Result<Option<Entry>, ductor_daemon::safe_fs::SafeFsError>,
    ) -> FileView {
        let entry = match entry {
            Ok(None) => return FileView::Missing,
            Ok(Some(entry)) => entry,
            Err(error) => return FileView::Skip(error.what.clone()),
        };
        if entry.is_link || (entry.is_file && entry.links > 1) {
            return FileView::Replace;
        }
        if !entry.is_file {
            return FileView::Skip("not a regular file".into());
        }
        if entry.size > self.max_bytes {
            return FileView::Skip(format!(
                "{} bytes, more than [rules].max_file_bytes = {}",
                entry.size, self.max_bytes
            ));
        }
        match dir.read(name, self.max_bytes) {
            Ok(None) => FileView::Missing,
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => FileView::Text { text, modified_ns: entry.modified_ns },
                Err(_) => FileView::Skip("not UTF-8 text".into()),
            },
            Err(error) => FileView::Skip(error.what),
        }
    }
}

/// The subdirectories of `workspace/<parent>/`, never through a link.
fn list(root: &Tree, parent: &str, report: &mut PassReport) -> Option<(Tree, Vec<String>)> {
    let tree = match root.dir(parent) {
        Ok(tree) => tree,
        Err(error) if error.is_not_found() => return None,
        Err(error) => {
            tracing::debug!(%error, "rule sync: task folders not listed");
            report.failed += 1;
            return None;
        }
    };
    match tree.entries() {
        Ok(entries) => {
            let children = entries.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect();
            Some((tree, children))
        }
        Err(error) => {
            tracing::warn!(%error, "rule sync: task folders not listed");
            report.failed += 1;
            None
        }
    }
}

enum Applied {
    /// Everything written.
    All,
    /// A file changed while we decided: left for the next pass.
    Raced,
    /// A write failed (logged): the record is kept as it was.
    Failed,
}

/// Writes the backups, then the rule files (each only if it is still what was read).
fn apply(dir: &Tree, plan: &Plan, stamps: &Stamps, report: &mut PassReport) -> Applied {
    for (name, text) in &plan.backups {
        if let Err(error) = write_backup(dir, name, text) {
            tracing::warn!(%error, "failed to keep a conflicting rule file; nothing was synced");
            return Applied::Failed;
        }
        report.written += 1;
    }
    let mut outcome = Applied::All;
    for &i in &plan.writes {
        let name = RULE_FILES[i];
        let now = dir.entry(name).ok().flatten().map(|e| Stamp::of(&e));
        if now != stamps[i] {
            tracing::debug!(dir = %dir.path().display(), file = name, "changed meanwhile; next pass");
            outcome = Applied::Raced;
            continue;
        }
        if let Err(error) = dir.replace(name, plan.content.as_bytes(), 0o600) {
            tracing::warn!(%error, "failed to sync a rule file");
            return Applied::Failed;
        }
        report.written += 1;
    }
    outcome
}

/// Creates the backup `name`, or `name-2`, `name-3`… if it exists.
fn write_backup(
    dir: &Tree,
    name: &str,
    text: &str,
) -> Result<(), ductor_daemon::safe_fs::SafeFsError> {
    for n in 1..=99 {
        let candidate = if n == 1 { name.to_owned() } else { format!("{name}-{n}") };
        if dir.write_new(&candidate, text.as_bytes(), 0o600)? {
            return Ok(());
        }
    }
    dir.replace(&format!("{name}-last"), text.as_bytes(), 0o600)
}

fn log_notes(dir: &Tree, notes: &[Note]) {
    let dir = dir.path().display();
    for note in notes {
        match note {
            Note::Conflict { winner, losers } => {
                for (loser, backup) in losers {
                    tracing::warn!(%dir, winner, loser, backup, "rule files were edited differently: the newest wins, the other is kept as a backup");
                }
            }
            Note::Carried { from } => {
                tracing::info!(%dir, from, "a rule file edit was carried to the other rule files");
            }
            Note::Refreshed => {
                tracing::info!(%dir, "ductor's rules changed: its block was refreshed")
            }
            Note::NotApplied => tracing::warn!(
                %dir,
                "ductor's rules changed and were not applied: the ductor block was edited, so it \
                 is yours now. To get ductor's current rules, delete the block (ductor puts its \
                 current one back) or delete all three rule files"
            ),
            Note::BlockRemoved => tracing::info!(
                %dir,
                "the ductor block was removed from the rule files and stays removed (delete all \
                 three files to get it back)"
            ),
            Note::BlockRestored => {
                tracing::info!(%dir, "the edited ductor block was removed: ductor's current rules are back");
            }
            Note::Created => tracing::info!(%dir, "rule files made from ductor's rules"),
            Note::Skipped { file, why } => {
                tracing::warn!(%dir, file, why, "a rule file is left alone")
            }
        }
    }
}

/// Writes the three rule files of a folder that has none yet (a new task
/// folder); a folder that has any is left to the sync.
pub fn seed_new(dir: &Tree, framework: &str) -> Result<(), ductor_daemon::safe_fs::SafeFsError> {
    for name in RULE_FILES {
        if dir.entry(name)?.is_some() {
            return Ok(());
        }
    }
    let text = super::fresh_file(framework);
    for name in RULE_FILES {
        dir.write_new(name, text.as_bytes(), 0o600)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
