//! Skill sync (issue 16): one set of skills for every CLI and every chat.
//!
//! `workspace/skills/<name>/` is the canonical place. From there each skill
//! is linked into the skills folder of every ductor-owned CLI home
//! (`homes`); the real claude 2.1, codex 0.169 and gemini 0.61 all follow a
//! linked skill folder, so no home needs a copy. Skills the operator keeps in
//! their own CLI folders (`~/.claude/skills`, ...) are imported as managed
//! copies (a [`MARKER`] file names the source and the digest copied), since a
//! sandboxed run cannot read the operator's home; a copy is refreshed when
//! the source changes and the copy does not, and a copy the agent changed is
//! a conflict, never carried back. A real skill folder a CLI made in a
//! home (claude's skill-creator) is adopted: moved into the workspace and
//! replaced by a link. With `[skills].export_to_operator` (or a provider whose
//! `state = "operator"`), workspace skills are also linked into the
//! operator's folders. Nothing that is not ductor's (a real folder, a file,
//! a link elsewhere) is ever overwritten: it is reported as a [`Conflict`].
//!
//! This module is the pure part: [`plan`] turns a discovered [`Snapshot`]
//! into [`Action`]s and conflicts, so every edge case is unit-tested without
//! a disk. [`disk`] discovers and applies through `safe_fs` (the workspace and
//! the homes are agent-writable, the runner is not confined); [`sync`] holds
//! the places, the periodic pass and the conflicts shown by `doctor`.

pub mod disk;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use sync::Skills;

/// The file that marks a managed copy in `workspace/skills/<name>/`.
pub const MARKER: &str = ".ductor_managed";

/// A skill folder's content digest (SHA-256 over its regular files).
pub type Digest = [u8; 32];

/// What a managed copy's marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The folder it was copied from (for people; the source used is always
    /// the operator folder of that name, never this path).
    pub source: PathBuf,
    /// The digest of what was copied.
    pub digest: Digest,
}

/// One entry of a skills folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A real folder: its digest when it was needed and could be taken
    /// (`None`: not taken, too large or unreadable), its marker if any.
    Dir { digest: Option<Digest>, marker: Option<Marker> },
    /// A symbolic link, with its target (never followed by the planner).
    Link(PathBuf),
    /// Anything else (a file, a FIFO).
    Other,
}

impl Found {
    /// A plain folder with `digest`.
    pub fn dir(digest: Option<Digest>) -> Self {
        Self::Dir { digest, marker: None }
    }
}

/// A skills folder and what it holds, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Found>,
}

/// One of the operator's own CLI skill folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPlace {
    pub place: Place,
    /// Workspace skills are linked into it.
    pub export: bool,
}

/// Everything one pass looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `workspace/skills`.
    pub workspace: Place,
    /// The operator's folders, by priority (claude, codex, gemini).
    pub operators: Vec<OperatorPlace>,
    /// The skills folder of every ductor-owned home.
    pub homes: Vec<Place>,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy the operator's `source/name` into the workspace as a managed copy.
    Import { name: String, source: PathBuf, digest: Digest },
    /// Replace the unmodified managed copy `name` with a fresh one.
    Refresh { name: String, source: PathBuf, digest: Digest },
    /// Remove the unmodified managed copy `name` (its source is gone).
    Drop { name: String },
    /// Move the real folder `home/name` into the workspace.
    Adopt { name: String, home: PathBuf },
    /// Make `place/name` a link to the workspace skill (`replace`: over a
    /// link of ours; otherwise the name must be free).
    Link { place: PathBuf, name: String, replace: bool },
    /// Remove our link `place/name`.
    Unlink { place: PathBuf, name: String },
    /// Remove the real folder `place/name`, identical to the workspace
    /// skill, and link it.
    Dedupe { place: PathBuf, name: String },
}

impl Action {
    /// The skill the action is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Import { name, .. }
            | Self::Refresh { name, .. }
            | Self::Drop { name }
            | Self::Adopt { name, .. }
            | Self::Link { name, .. }
            | Self::Unlink { name, .. }
            | Self::Dedupe { name, .. } => name,
        }
    }

    /// Whether it changes `workspace/skills` (done before the links).
    pub fn in_workspace(&self) -> bool {
        matches!(
            self,
            Self::Import { .. } | Self::Refresh { .. } | Self::Drop { .. } | Self::Adopt { .. }
        )
    }
}

/// A skill that is not synced to one place; both sides are kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    pub skill: String,
    /// What stays as it is.
    pub here: PathBuf,
    /// What it differs from (empty when nothing).
    pub there: PathBuf,
    pub why: String,
}

/// What one pass should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub conflicts: Vec<Conflict>,
}

/// Whether a folder name is never a skill: hidden (`.system`, `.git`,
/// our temporaries), `node_modules`, `__pycache__`.
pub fn ignored(name: &str) -> bool {
    name.starts_with('.') || name == "node_modules" || name == "__pycache__"
}

/// Plans one pass over `snapshot`.
pub fn plan(snapshot: &Snapshot) -> Plan {
    let mut plan = Plan::default();
    for name in names(snapshot) {
        let mut skill = Skill { snapshot, name, plan: &mut plan };
        let (valid, adopted) = skill.workspace();
        skill.homes(valid, adopted);
        skill.operators(valid.is_some());
    }
    plan.actions.sort_by_key(|action| !action.in_workspace());
    plan
}

fn names(snapshot: &Snapshot) -> BTreeSet<&str> {
    let places = std::iter::once(&snapshot.workspace)
        .chain(snapshot.operators.iter().map(|o| &o.place))
        .chain(&snapshot.homes);
    places.flat_map(|p| p.entries.keys()).map(String::as_str).filter(|n| !ignored(n)).collect()
}

/// The planning of one skill name.
struct Skill<'a> {
    snapshot: &'a Snapshot,
    name: &'a str,
    plan: &'a mut Plan,
}

/// The workspace skill after the pass: `Some(digest)` when there is one.
type Valid = Option<Option<Digest>>;

impl<'a> Skill<'a> {
    fn ws_path(&self) -> PathBuf {
        self.snapshot.workspace.path.join(self.name)
    }

    fn conflict(&mut self, here: PathBuf, there: PathBuf, why: impl Into<String>) {
        let skill = self.name.to_owned();
        self.plan.conflicts.push(Conflict { skill, here, there, why: why.into() });
    }

    fn act(&mut self, action: Action) {
        self.plan.actions.push(action);
    }

    /// The operator's folders holding a real skill of this name, by priority.
    fn sources(&self) -> Vec<(&'a Path, Option<Digest>)> {
        let snapshot: &'a Snapshot = self.snapshot;
        let found = snapshot.operators.iter().map(|o| (&o.place, o.place.entries.get(self.name)));
        found
            .filter_map(|(place, entry)| match entry {
                Some(Found::Dir { digest, .. }) => Some((place.path.as_path(), *digest)),
                _ => None,
            })
            .collect()
    }

    /// Decides the workspace side; returns the skill's digest after the pass
    /// and the home it is adopted from, if any.
    fn workspace(&mut self) -> (Valid, Option<PathBuf>) {
        let sources = self.sources();
        if let Some(((first, digest), rest)) = sources.split_first() {
            for (other, other_digest) in rest {
                if other_digest != digest || digest.is_none() {
                    let why = "the operator has two skills of this name that differ; the first \
                               (claude, codex, gemini) is used";
                    self.conflict(other.join(self.name), first.join(self.name), why);
                }
            }
        }
        let source = sources.first().map(|(path, digest)| (path.to_path_buf(), *digest));
        match self.snapshot.workspace.entries.get(self.name).cloned() {
            None => self.fresh(source),
            Some(Found::Dir { digest, marker: None }) => {
                for (path, theirs) in &sources {
                    if theirs.is_none() || *theirs != digest {
                        let why = "the workspace has its own skill of this name; the operator's \
                                   is not imported";
                        self.conflict(path.join(self.name), self.ws_path(), why);
                    }
                }
                (Some(digest), None)
            }
            Some(Found::Dir { digest, marker: Some(marker) }) => {
                (self.managed(digest, &marker, source), None)
            }
            Some(Found::Link(target)) => {
                let why = "a link in workspace/skills is never followed: not synced";
                self.conflict(self.ws_path(), target, why);
                (None, None)
            }
            Some(Found::Other) => {
                if source.is_some() || self.adoptable().is_some() {
                    self.conflict(self.ws_path(), PathBuf::new(), "not a folder: not synced");
                }
                (None, None)
            }
        }
    }

    /// No workspace skill yet: import the operator's, else adopt a home's.
    fn fresh(&mut self, source: Option<(PathBuf, Option<Digest>)>) -> (Valid, Option<PathBuf>) {
        match source {
            Some((source, Some(digest))) => {
                self.act(Action::Import { name: self.name.to_owned(), source, digest });
                (Some(Some(digest)), None)
            }
            Some((source, None)) => {
                let why = "too large or unreadable to copy into the workspace";
                self.conflict(source.join(self.name), self.ws_path(), why);
                (None, None)
            }
            None => {
                let Some(home) = self.adoptable() else { return (None, None) };
                self.act(Action::Adopt { name: self.name.to_owned(), home: home.clone() });
                let digest = match self.home_entry(&home) {
                    Some(Found::Dir { digest, .. }) => *digest,
                    _ => None,
                };
                (Some(digest), Some(home))
            }
        }
    }

    /// The first home holding a real folder of this name.
    fn adoptable(&self) -> Option<PathBuf> {
        let homes = &self.snapshot.homes;
        let home =
            homes.iter().find(|h| matches!(h.entries.get(self.name), Some(Found::Dir { .. })));
        home.map(|h| h.path.clone())
    }

    fn home_entry(&self, home: &Path) -> Option<&Found> {
        self.snapshot.homes.iter().find(|h| h.path == home)?.entries.get(self.name)
    }

    /// A managed copy: refreshed, dropped, kept or in conflict.
    fn managed(
        &mut self,
        digest: Option<Digest>,
        marker: &Marker,
        source: Option<(PathBuf, Option<Digest>)>,
    ) -> Valid {
        let unmodified = digest == Some(marker.digest);
        let name = self.name.to_owned();
        match source {
            Some((source, _)) if !unmodified => {
                let why = "the managed copy was changed in the workspace: it is neither \
                           refreshed from the operator's skill nor carried back to it";
                self.conflict(self.ws_path(), source.join(&name), why);
                Some(digest)
            }
            Some((source, Some(theirs))) if theirs != marker.digest => {
                self.act(Action::Refresh { name, source, digest: theirs });
                Some(Some(theirs))
            }
            Some((source, None)) => {
                let why = "the operator's skill is now too large or unreadable: not refreshed";
                self.conflict(source.join(&name), self.ws_path(), why);
                Some(digest)
            }
            Some(_) => Some(digest),
            None if unmodified => {
                self.act(Action::Drop { name });
                None
            }
            None => {
                let why = "the operator's skill is gone; the changed managed copy is kept";
                self.conflict(self.ws_path(), marker.source.clone(), why);
                Some(digest)
            }
        }
    }

    /// Links the skill into every home (or removes our links when there is
    /// no skill).
    fn homes(&mut self, valid: Valid, adopted: Option<PathBuf>) {
        let target = self.ws_path();
        let workspace = self.snapshot.workspace.path.clone();
        let snapshot: &'a Snapshot = self.snapshot;
        let ws_entry = snapshot.workspace.entries.get(self.name).cloned();
        for home in &snapshot.homes {
            let name = self.name.to_owned();
            let here = home.path.join(self.name);
            let place = home.path.clone();
            match (valid, home.entries.get(self.name)) {
                (Some(_), _) if adopted.as_ref() == Some(&home.path) => {
                    self.act(Action::Link { place, name, replace: false });
                }
                (Some(_), None) => self.act(Action::Link { place, name, replace: false }),
                (Some(_), Some(Found::Link(t))) if *t == target => {}
                (Some(_), Some(Found::Link(t))) if t.starts_with(&workspace) => {
                    self.act(Action::Link { place, name, replace: true });
                }
                (Some(_), Some(Found::Link(t))) => {
                    let why = "a link that is not ductor's holds this name; kept";
                    self.conflict(here, t.clone(), why);
                }
                (Some(Some(ours)), Some(Found::Dir { digest: Some(theirs), .. }))
                    if ours == *theirs =>
                {
                    self.act(Action::Dedupe { place, name });
                }
                (Some(_), Some(Found::Dir { .. })) => {
                    let why = "differs from the workspace skill of this name; both kept";
                    self.conflict(here, target.clone(), why);
                }
                (Some(_), Some(Found::Other)) => {
                    self.conflict(here, target.clone(), "not a folder; kept");
                }
                (None, Some(Found::Link(t))) if t.starts_with(&workspace) => {
                    self.act(Action::Unlink { place, name });
                }
                (None, Some(Found::Dir { .. }))
                    if matches!(ws_entry, Some(Found::Link(_) | Found::Other)) =>
                {
                    let why = "not adopted: workspace/skills holds something else of this name";
                    self.conflict(here, target.clone(), why);
                }
                (None, _) => {}
            }
        }
    }

    /// Links the skill into the operator folders that export, removes our
    /// links elsewhere; never touches anything else there.
    fn operators(&mut self, valid: bool) {
        let target = self.ws_path();
        let snapshot: &'a Snapshot = self.snapshot;
        let workspace = snapshot.workspace.path.clone();
        for operator in &snapshot.operators {
            let place = operator.place.path.clone();
            let name = self.name.to_owned();
            let wanted = valid && operator.export;
            match operator.place.entries.get(self.name) {
                None if wanted => self.act(Action::Link { place, name, replace: false }),
                Some(Found::Link(t)) if t.starts_with(&workspace) => {
                    if !wanted {
                        self.act(Action::Unlink { place, name });
                    } else if *t != target {
                        self.act(Action::Link { place, name, replace: true });
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "skills/tests.rs"]
mod tests;
