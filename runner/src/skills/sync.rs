//! The runner's skill sync: which folders take part, one pass (discover →
//! [`plan`](super::plan) → apply), the conflicts found (logged once each,
//! answered in `Probe` for `ductorctl doctor`), the links a new home gets
//! before its first run, and the removal of our links from the operator's
//! folders at shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ductor_daemon::DuctorHome;
use ductor_daemon::config::{ProvidersConfig, SkillsConfig, StateHome};
use ductor_daemon::safe_fs::Tree;
use ductor_daemon::sync::Locked as _;
use ductor_proto::pb;

#[cfg(test)]
use super::disk::read_marker;
use super::disk::{self, Digests, Trees};
use super::{Action, Conflict, Found, OperatorPlace, Snapshot, plan};
use crate::homes;
use crate::spec::Provider;

/// The skills folder inside a CLI home (the pinned CLIs read these).
pub fn home_skills(provider: Provider) -> &'static str {
    match provider {
        Provider::Claude | Provider::Codex => "skills",
        Provider::Gemini => ".gemini/skills",
    }
}

/// One of the operator's own skill folders.
#[derive(Debug, Clone)]
struct OperatorSpec {
    path: PathBuf,
    /// Workspace skills are linked into it.
    export: bool,
    /// Its top-level links are the operator's own (no run can write there),
    /// so a linked skill folder is followed to import it.
    follow: bool,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Actions applied.
    pub applied: usize,
    /// Conflicts (failed actions included) in force after the pass.
    pub conflicts: usize,
    /// Of them, new since the last pass.
    pub new_conflicts: usize,
}

/// Skill sync state of one runner.
#[derive(Debug)]
pub struct Skills {
    interval: Duration,
    workspace: PathBuf,
    provider_homes: PathBuf,
    operators: Vec<OperatorSpec>,
    pass: Mutex<()>,
    conflicts: Mutex<BTreeSet<Conflict>>,
}

impl Skills {
    /// The sync of a runner with `home`, or `None` when `[skills].sync` is off.
    /// The operator's folders are found from `parent_env` overlaid with each
    /// provider's `env`, like the CLIs' own homes ([`homes::operator_dir`]).
    pub fn new(
        config: &SkillsConfig,
        home: &DuctorHome,
        providers: &ProvidersConfig,
        parent_env: &BTreeMap<String, String>,
    ) -> Option<Self> {
        if !config.sync {
            return None;
        }
        let mut operators: Vec<OperatorSpec> = Vec::new();
        for provider in Provider::ALL {
            let settings = provider.settings(providers);
            let mut env = parent_env.clone();
            env.extend(settings.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let Some(dir) = homes::operator_dir(provider, &env) else { continue };
            let path = dir.join("skills");
            if operators.iter().any(|o| o.path == path) {
                continue;
            }
            let operator_state = settings.state == StateHome::Operator;
            let export = config.export_to_operator || operator_state;
            operators.push(OperatorSpec { path, export, follow: !operator_state });
        }
        Some(Self {
            interval: Duration::from_secs(config.interval_seconds),
            workspace: home.workspace(),
            provider_homes: home.provider_homes(),
            operators,
            pass: Mutex::new(()),
            conflicts: Mutex::default(),
        })
    }

    /// Time between two passes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// `workspace/skills`, which every run must be able to read.
    pub fn skills_dir(&self) -> PathBuf {
        self.workspace.join("skills")
    }

    fn open_workspace(&self) -> Result<Tree, ductor_daemon::safe_fs::SafeFsError> {
        Tree::root_or_make(&self.workspace, 0o700)?.dir_or_make("skills", 0o700)
    }

    /// The operator folders that exist (with `make`, made when exporting
    /// into a CLI folder that exists), with their specs.
    fn operator_trees(&self, make: bool) -> Vec<(&OperatorSpec, Tree)> {
        let open = |spec: &OperatorSpec| {
            let cli_dir_exists = spec.path.parent().is_some_and(Path::is_dir);
            if make && spec.export && cli_dir_exists {
                Tree::root_or_make(&spec.path, 0o700).ok()
            } else {
                Tree::root(&spec.path).ok()
            }
        };
        self.operators.iter().filter_map(|spec| open(spec).map(|tree| (spec, tree))).collect()
    }

    /// The skills folder of every ductor-owned home (made where missing).
    fn home_trees(&self) -> Vec<Tree> {
        let Ok(root) = Tree::root(&self.provider_homes) else { return Vec::new() };
        let mut trees = Vec::new();
        for provider in Provider::ALL {
            let Ok(homes) = root.dir(provider.as_str()) else { continue };
            let mut buckets = homes.entries().unwrap_or_default();
            buckets.retain(|e| e.is_dir && !e.name.starts_with('.'));
            buckets.sort_by(|a, b| a.name.cmp(&b.name));
            for bucket in buckets {
                let skills = homes
                    .dir(&bucket.name)
                    .and_then(|home| home.dir_or_make(home_skills(provider), 0o700));
                trees.extend(skills.ok());
            }
        }
        trees
    }

    /// One pass: discover every folder, plan, apply, record conflicts.
    pub fn pass(&self) -> PassReport {
        let _one_at_a_time = self.pass.locked();
        let (conflicts, applied) = match self.open_workspace() {
            Ok(workspace) => self.pass_in(&workspace, true),
            Err(error) => {
                let why = format!("workspace/skills cannot be used: {error}");
                let here = self.skills_dir();
                (vec![Conflict { skill: String::new(), here, there: PathBuf::new(), why }], 0)
            }
        };
        let (total, new) = self.record(conflicts);
        PassReport { applied, conflicts: total, new_conflicts: new }
    }

    /// The conflicts a pass would find, changing nothing (`ductor-runner probe`).
    pub fn survey(&self) -> Vec<Conflict> {
        let _one_at_a_time = self.pass.locked();
        match Tree::root(&self.workspace).and_then(|w| w.dir("skills")) {
            Ok(workspace) => self.pass_in(&workspace, false).0,
            Err(_) => Vec::new(),
        }
    }

    fn pass_in(&self, workspace: &Tree, apply: bool) -> (Vec<Conflict>, usize) {
        let operators = self.operator_trees(apply);
        let homes = if apply { self.home_trees() } else { self.existing_home_trees() };
        let workspace_path = workspace.path().to_path_buf();
        let never = |_: &Path| false;
        let mut snapshot = Snapshot::default();
        for (spec, tree) in &operators {
            let follow = |target: &Path| spec.follow && !target.starts_with(&workspace_path);
            let place = disk::discover(tree, Digests::All, &|_| false, false, &follow);
            snapshot.operators.push(OperatorPlace { place, export: spec.export });
        }
        for tree in &homes {
            snapshot.homes.push(disk::discover(tree, Digests::All, &|_| false, false, &never));
        }
        let elsewhere: BTreeSet<String> = (snapshot.operators.iter().map(|o| &o.place))
            .chain(&snapshot.homes)
            .flat_map(|p| p.entries.iter())
            .filter(|(_, found)| matches!(found, Found::Dir { .. }))
            .map(|(name, _)| name.clone())
            .collect();
        let wanted = |name: &str| elsewhere.contains(name);
        snapshot.workspace = disk::discover(workspace, Digests::Marked, &wanted, true, &never);
        let plan = plan(&snapshot);
        let mut conflicts = plan.conflicts;
        if !apply {
            return (conflicts, 0);
        }
        let mut places: BTreeMap<PathBuf, &Tree> = BTreeMap::new();
        places.extend(operators.iter().map(|(_, t)| (t.path().to_path_buf(), t)));
        places.extend(homes.iter().map(|t| (t.path().to_path_buf(), t)));
        let follow = operators.iter().filter(|(s, _)| s.follow).map(|(s, _)| s.path.clone());
        let trees = Trees { workspace, places, follow: follow.collect() };
        let applied = apply_all(&trees, &plan.actions, &mut conflicts);
        (conflicts, applied)
    }

    /// The homes' skills folders that exist, made nowhere.
    fn existing_home_trees(&self) -> Vec<Tree> {
        let Ok(root) = Tree::root(&self.provider_homes) else { return Vec::new() };
        let mut trees = Vec::new();
        for provider in Provider::ALL {
            let Ok(homes) = root.dir(provider.as_str()) else { continue };
            for bucket in homes.entries().unwrap_or_default().into_iter().filter(|e| e.is_dir) {
                trees.extend(homes.dir(&format!("{}/{}", bucket.name, home_skills(provider))).ok());
            }
        }
        trees
    }

    /// Keeps `conflicts` as the current set; logs each new one once.
    fn record(&self, conflicts: Vec<Conflict>) -> (usize, usize) {
        let now: BTreeSet<Conflict> = conflicts.into_iter().collect();
        let mut known = self.conflicts.locked();
        let mut new = 0;
        for conflict in now.difference(&known) {
            new += 1;
            tracing::warn!(
                skill = %conflict.skill,
                here = %conflict.here.display(),
                there = %conflict.there.display(),
                "skill not synced: {}",
                conflict.why
            );
        }
        let total = now.len();
        *known = now;
        (total, new)
    }

    /// The conflicts of the last pass, for `Probe`.
    pub fn conflicts(&self) -> Vec<pb::SkillConflict> {
        self.conflicts.locked().iter().map(to_proto).collect()
    }

    /// Links every workspace skill into a home just made for its first run
    /// (the next pass does the rest). Cheap; failures only logged.
    pub fn link_new_home(&self, provider: Provider, home: &Path) {
        let Ok(workspace) = Tree::root(&self.workspace).and_then(|w| w.dir("skills")) else {
            return;
        };
        let Ok(skills) = Tree::root(home).and_then(|h| h.dir_or_make(home_skills(provider), 0o700))
        else {
            return;
        };
        for entry in workspace.entries().unwrap_or_default() {
            if entry.is_dir && !super::ignored(&entry.name) {
                let target = workspace.path().join(&entry.name);
                if let Err(error) = skills.link_new(&entry.name, &target)
                    && !error.already_exists()
                {
                    tracing::warn!(%error, "failed to link a skill into a new home");
                }
            }
        }
    }

    /// Removes our links from the operator's folders (at shutdown): only
    /// links into `workspace/skills`, nothing else.
    pub fn unexport(&self) -> usize {
        let _one_at_a_time = self.pass.locked();
        let ours = self.skills_dir();
        let mut removed = 0;
        for spec in &self.operators {
            let Ok(tree) = Tree::root(&spec.path) else { continue };
            for entry in tree.entries().unwrap_or_default().into_iter().filter(|e| e.is_link) {
                let target = tree.read_link(&entry.name).ok().flatten();
                if target.is_some_and(|t| t.starts_with(&ours))
                    && tree.remove(&entry.name, false).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// Applies `actions` in order; an action whose workspace step failed is
/// skipped for its links; every failure becomes a conflict.
fn apply_all(trees: &Trees<'_>, actions: &[Action], conflicts: &mut Vec<Conflict>) -> usize {
    let mut failed: BTreeSet<&str> = BTreeSet::new();
    let mut applied = 0;
    for action in actions {
        if failed.contains(action.name()) {
            continue;
        }
        match trees.apply(action) {
            Ok(()) => applied += 1,
            Err(error) => {
                if action.in_workspace() {
                    failed.insert(action.name());
                }
                conflicts.push(Conflict {
                    skill: action.name().to_owned(),
                    here: trees.workspace.path().join(action.name()),
                    there: PathBuf::new(),
                    why: format!("not synced: {error}"),
                });
            }
        }
    }
    applied
}

/// The wire form of a conflict.
pub fn to_proto(conflict: &Conflict) -> pb::SkillConflict {
    pb::SkillConflict {
        skill: conflict.skill.clone(),
        here: conflict.here.display().to_string(),
        there: conflict.there.display().to_string(),
        why: conflict.why.clone(),
    }
}

/// The periodic pass, until `shutdown` (the pass at start is the caller's).
pub async fn run(skills: std::sync::Arc<Skills>, shutdown: tokio_util::sync::CancellationToken) {
    let mut ticks = tokio::time::interval(skills.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let skills = skills.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || skills.pass()).await {
            tracing::warn!(%error, "skill sync pass failed");
        }
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
