//! The disk side of skill sync: discovering skills folders into a
//! [`Place`], digesting and copying skill folders, applying [`Action`]s.
//!
//! The workspace and the homes are agent-writable and the runner is not
//! confined, so all of it goes through `safe_fs` trees: entries are looked at
//! without following links, a folder is walked with `O_NOFOLLOW` on every
//! component, only regular files are read or copied (a link inside a skill is
//! skipped, never followed), and a copy is capped in files and bytes.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ductor_daemon::safe_fs::{SafeFsError, Tree};
use sha2::Digest as _;

use super::{Action, Digest, Found, MARKER, Marker, Place, ignored};

/// Most entries (files and folders) a skill folder may have to be copied.
pub const MAX_ENTRIES: usize = 1000;
/// Most bytes a skill folder may hold to be copied.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Deepest folder inside a skill that is copied.
const MAX_DEPTH: usize = 16;
/// Largest marker file read.
const MAX_MARKER: u64 = 64 * 1024;

/// Why a skill folder could not be digested, copied or changed.
#[derive(Debug, thiserror::Error)]
pub enum SkillIoError {
    /// The folder is over [`MAX_ENTRIES`], [`MAX_BYTES`] or the depth.
    #[error(
        "{0}: too large to copy (more than {MAX_ENTRIES} entries, {MAX_BYTES} bytes or {MAX_DEPTH} levels)"
    )]
    TooLarge(PathBuf),
    /// A file system operation failed or was refused.
    #[error(transparent)]
    Fs(#[from] SafeFsError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which digests [`discover`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digests {
    /// Of every real folder.
    All,
    /// Of marked (managed) folders, and of the others named in the set.
    Marked,
}

/// Lists `tree` as a [`Place`]: real folders (digested as `digests` and
/// `wanted` say, markers read when `markers`), links (with targets) and
/// others. A link is followed only when `follow` says so for its target
/// (the operator's own links in their own folders).
pub fn discover(
    tree: &Tree,
    digests: Digests,
    wanted: &dyn Fn(&str) -> bool,
    markers: bool,
    follow: &dyn Fn(&Path) -> bool,
) -> Place {
    let mut entries = BTreeMap::new();
    for entry in tree.entries().unwrap_or_default() {
        if ignored(&entry.name) {
            continue;
        }
        let found = if entry.is_dir {
            let marker = if markers { read_marker(tree, &entry.name) } else { None };
            let digest = (digests == Digests::All || marker.is_some() || wanted(&entry.name))
                .then(|| tree.dir(&entry.name).ok().and_then(|d| digest(&d).ok()))
                .flatten();
            Found::Dir { digest, marker }
        } else if entry.is_link {
            match tree.read_link(&entry.name) {
                Ok(Some(target)) if follow(&target) => followed(tree.path(), &entry.name, target),
                Ok(Some(target)) => Found::Link(target),
                _ => Found::Other,
            }
        } else {
            Found::Other
        };
        entries.insert(entry.name, found);
    }
    Place { path: tree.path().to_path_buf(), entries }
}

/// An operator's link to a skill folder of their own, as that folder.
fn followed(place: &Path, name: &str, target: PathBuf) -> Found {
    match Tree::root(&place.join(name)) {
        Ok(dir) => Found::dir(digest(&dir).ok()),
        Err(_) => Found::Link(target),
    }
}

/// Opens the source folder `name` in `place` the way [`discover`] saw it.
pub fn open_source(place: &Tree, name: &str, follow: bool) -> Result<Tree, SafeFsError> {
    if follow && place.entry(name)?.is_some_and(|e| e.is_link) {
        Tree::root(&place.path().join(name))
    } else {
        place.dir(name)
    }
}

/// The marker of the managed copy `name`, if it has a valid one.
pub fn read_marker(tree: &Tree, name: &str) -> Option<Marker> {
    let bytes = tree.dir(name).ok()?.read(MARKER, MAX_MARKER).ok()??;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let source = PathBuf::from(value.get("source")?.as_str()?);
    let digest = parse_hex(value.get("sha256")?.as_str()?)?;
    Some(Marker { source, digest })
}

fn marker_bytes(source: &Path, digest: &Digest) -> Vec<u8> {
    let value = serde_json::json!({"source": source.display().to_string(), "sha256": hex(digest)});
    serde_json::to_vec_pretty(&value).unwrap_or_default()
}

/// Lower-case hex of `digest`.
pub fn hex(digest: &Digest) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn parse_hex(text: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One regular file or folder of a skill, in walk order.
enum Item {
    Dir(String),
    File { rel: String, bytes: Vec<u8>, mode: u32 },
}

/// Walks `dir` (no link followed, marker skipped at the top) within the
/// caps; `visit` sees each folder and regular file, sorted by path.
fn walk(
    dir: &Tree,
    visit: &mut dyn FnMut(Item) -> Result<(), SkillIoError>,
) -> Result<(), SkillIoError> {
    let mut budget = (MAX_ENTRIES, MAX_BYTES);
    walk_in(dir, "", 0, &mut budget, visit)
}

fn walk_in(
    dir: &Tree,
    prefix: &str,
    depth: usize,
    budget: &mut (usize, u64),
    visit: &mut dyn FnMut(Item) -> Result<(), SkillIoError>,
) -> Result<(), SkillIoError> {
    let too_large = || SkillIoError::TooLarge(dir.path().to_path_buf());
    if depth > MAX_DEPTH {
        return Err(too_large());
    }
    let mut entries = dir.entries()?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in entries {
        if entry.is_link || (depth == 0 && entry.name == MARKER) {
            continue;
        }
        budget.0 = budget.0.checked_sub(1).ok_or_else(too_large)?;
        let rel = format!("{prefix}{}", entry.name);
        if entry.is_dir {
            visit(Item::Dir(rel.clone()))?;
            walk_in(&dir.dir(&entry.name)?, &format!("{rel}/"), depth + 1, budget, visit)?;
            continue;
        }
        let Ok((mut file, _, size)) = dir.open_regular(&entry.name, budget.1) else {
            if entry.size > budget.1 {
                return Err(too_large());
            }
            continue; // a FIFO, device or hard-linked file: not part of a skill
        };
        budget.1 -= size.min(budget.1);
        let mode = file.metadata().map(|m| m.permissions().mode()).unwrap_or(0o600);
        let mut bytes = Vec::with_capacity(size as usize);
        let io = |source| SkillIoError::Io { path: dir.path().join(&entry.name), source };
        file.by_ref().take(size).read_to_end(&mut bytes).map_err(io)?;
        visit(Item::File { rel, bytes, mode })?;
    }
    Ok(())
}

/// The digest of a skill folder: its folders and regular files (paths and
/// contents), links and the marker left out. Fails when over the caps.
pub fn digest(dir: &Tree) -> Result<Digest, SkillIoError> {
    let mut hasher = sha2::Sha256::new();
    walk(dir, &mut |item| {
        match item {
            Item::Dir(rel) => hasher.update(format!("d {rel}\0").as_bytes()),
            Item::File { rel, bytes, .. } => {
                hasher.update(format!("f {rel}\0{}\0", bytes.len()).as_bytes());
                hasher.update(&bytes);
            }
        }
        Ok(())
    })?;
    Ok(hasher.finalize().into())
}

/// Copies `source` into the new folder `into` (made here), leaving out
/// links; returns the digest of what was copied.
pub fn copy(source: &Tree, into: &Tree) -> Result<Digest, SkillIoError> {
    let mut hasher = sha2::Sha256::new();
    walk(source, &mut |item| {
        match item {
            Item::Dir(rel) => {
                hasher.update(format!("d {rel}\0").as_bytes());
                into.dir_or_make(&rel, 0o700)?;
            }
            Item::File { rel, bytes, mode } => {
                hasher.update(format!("f {rel}\0{}\0", bytes.len()).as_bytes());
                hasher.update(&bytes);
                let (parent, name) = rel.rsplit_once('/').unwrap_or(("", &rel));
                let parent = if parent.is_empty() { into.try_clone()? } else { into.dir(parent)? };
                parent.write_new(name, &bytes, (mode & 0o755) | 0o600)?;
            }
        }
        Ok(())
    })?;
    Ok(hasher.finalize().into())
}

/// A fresh hidden name for a temporary folder next to `name`.
fn temp_name(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".{name}.{nanos:08x}.sync")
}

/// Copies `source` into `workspace` as the hidden temporary returned, with
/// a marker naming `origin` when `marked`.
fn stage(
    workspace: &Tree,
    name: &str,
    source: &Tree,
    origin: &Path,
    marked: bool,
) -> Result<String, SkillIoError> {
    let temp = temp_name(name);
    let into = workspace.make_dir(&temp, 0o700)?;
    let staged = copy(source, &into).and_then(|digest| {
        if marked {
            into.write_new(MARKER, &marker_bytes(origin, &digest), 0o600)?;
        }
        Ok(())
    });
    match staged {
        Ok(()) => Ok(temp),
        Err(error) => {
            let _ = workspace.remove_tree(&temp);
            Err(error)
        }
    }
}

/// The trees one pass acts on, by path.
pub struct Trees<'a> {
    pub workspace: &'a Tree,
    /// Every operator folder and home, by its path.
    pub places: BTreeMap<PathBuf, &'a Tree>,
    /// Operator folders whose top-level links are the operator's own.
    pub follow: Vec<PathBuf>,
}

impl Trees<'_> {
    fn place(&self, path: &Path) -> Result<&Tree, SkillIoError> {
        self.places.get(path).copied().ok_or_else(|| {
            SkillIoError::Fs(SafeFsError {
                path: path.to_path_buf(),
                what: "not a known skills folder".into(),
                errno: None,
            })
        })
    }

    /// Applies one action.
    pub fn apply(&self, action: &Action) -> Result<(), SkillIoError> {
        let ws = self.workspace;
        match action {
            Action::Import { name, source, .. } => {
                let from = open_source(self.place(source)?, name, self.follow.contains(source))?;
                let temp = stage(ws, name, &from, &source.join(name), true)?;
                finish(ws, &temp, name, false)
            }
            Action::Refresh { name, source, .. } => {
                let from = open_source(self.place(source)?, name, self.follow.contains(source))?;
                let temp = stage(ws, name, &from, &source.join(name), true)?;
                finish(ws, &temp, name, true)
            }
            Action::Drop { name } => Ok(ws.remove_tree(name)?),
            Action::Adopt { name, home } => adopt(ws, self.place(home)?, name),
            Action::Link { place, name, replace } => {
                let tree = self.place(place)?;
                let target = ws.path().join(name);
                if *replace {
                    ensure_ours(tree, name, ws.path())?;
                    Ok(tree.link(name, &target)?)
                } else {
                    Ok(link_new(tree, name, &target)?)
                }
            }
            Action::Unlink { place, name } => {
                let tree = self.place(place)?;
                ensure_ours(tree, name, ws.path())?;
                Ok(tree.remove(name, false)?)
            }
            Action::Dedupe { place, name } => {
                let tree = self.place(place)?;
                let temp = temp_name(name);
                tree.rename(name, tree, &temp, false)?;
                tree.remove_tree(&temp)?;
                Ok(link_new(tree, name, &ws.path().join(name))?)
            }
        }
    }
}

/// Puts the staged `temp` in place as `name`: new (never over anything), or
/// swapped with the old copy, which is then removed.
fn finish(ws: &Tree, temp: &str, name: &str, swap: bool) -> Result<(), SkillIoError> {
    match ws.rename(temp, ws, name, swap) {
        Ok(()) if swap => Ok(ws.remove_tree(temp)?),
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = ws.remove_tree(temp);
            Err(error.into())
        }
    }
}

/// Moves the home's real folder `name` into the workspace (a rename on one
/// file system, else a copy and removal); the caller links it afterwards.
fn adopt(ws: &Tree, home: &Tree, name: &str) -> Result<(), SkillIoError> {
    match home.rename(name, ws, name, false) {
        Ok(()) => Ok(()),
        Err(error) if error.errno == Some(nix::Error::EXDEV) => {
            let source = home.dir(name)?;
            let temp = stage(ws, name, &source, &home.path().join(name), false)?;
            finish(ws, &temp, name, false)?;
            Ok(home.remove_tree(name)?)
        }
        Err(error) => Err(error.into()),
    }
}

/// A new link `name` → `target`; refused when the name is taken.
fn link_new(tree: &Tree, name: &str, target: &Path) -> Result<(), SafeFsError> {
    tree.link_new(name, target)
}

/// Refuses unless `name` is still a link into `workspace` (ours).
fn ensure_ours(tree: &Tree, name: &str, workspace: &Path) -> Result<(), SafeFsError> {
    match tree.read_link(name)? {
        Some(target) if target.starts_with(workspace) => Ok(()),
        _ => Err(SafeFsError {
            path: tree.path().join(name),
            what: "no longer a link of ours; left alone".into(),
            errno: None,
        }),
    }
}
