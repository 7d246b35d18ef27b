//! Rule files per provider (`CLAUDE.md`, `AGENTS.md`, `GEMINI.md`) kept in
//! sync from one source per directory: the workspace root, every
//! `cron_tasks/<name>/` and every `tasks/<id>/`.
//!
//! Each CLI reads only its own file, so the three must say the same thing,
//! and the user's edits must win over ductor's. The design:
//!
//! - ductor's own text lives in a **managed block** between
//!   `<!-- ductor:begin sha256=… -->` and `<!-- ductor:end -->`; the hash in
//!   the opening marker is that of the text ductor wrote, so a block nobody
//!   edited proves itself (and is refreshed when the framework text changes),
//!   while an edited block belongs to the user and is left as it is (the log
//!   says the framework changed and was not applied). Everything outside the
//!   block is the user's and is always kept.
//! - Per directory a [`Record`] remembers the hash of what ductor last wrote
//!   or saw in sync, and the state of the block (kept in `state.db`, outside
//!   the agent-writable workspace). A file whose hash differs from it was
//!   edited: its content is carried to the siblings. Two files edited
//!   differently: the newest by mtime wins, the others are kept as
//!   `<NAME>.conflict-<time>` backups, and the log names both.
//! - A block the user removed from a ductor-managed file stays removed
//!   (tracked in the record); removing an *edited* block gives ductor's
//!   current one back. A deleted file is recreated from its siblings; all
//!   three deleted are recreated from ductor's text.
//!
//! [`decide`] is the pure decision (unit-tested in `rules/tests.rs`);
//! [`sync`] is the I/O side (through `safe_fs`, never following a link) and
//! the periodic pass core runs at start and every `[rules].sync_interval_seconds`,
//! never on the path of a turn; [`store`] keeps the records.

pub mod store;
pub mod sync;

use sha2::{Digest as _, Sha256};

pub use sync::{PassReport, RuleSync};

/// The rule files, one per CLI, in a fixed order (ties in mtime go to the first).
pub const RULE_FILES: [&str; 3] = ["CLAUDE.md", "AGENTS.md", "GEMINI.md"];

/// Opening marker of the managed block, before its hash.
const BEGIN: &str = "<!-- ductor:begin";
/// Closing marker of the managed block (a line of its own).
const END: &str = "<!-- ductor:end -->";

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The digest of `bytes`.
pub fn hash(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The 16 hex digits of `text`'s digest the opening marker carries.
fn short_hash(text: &str) -> String {
    hex::encode(&hash(text.as_bytes())[..8])
}

/// What became of the managed block at the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// ductor's text, unedited: refreshed when the framework text changes.
    Managed,
    /// The user edited inside the block: theirs, never rewritten.
    Edited,
    /// The user removed the block: not added back.
    Removed,
}

impl BlockState {
    /// The name stored in `state.db`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Edited => "edited",
            Self::Removed => "removed",
        }
    }

    /// The state of a stored name; unknown names count as managed.
    pub fn parse(name: &str) -> Self {
        match name {
            "edited" => Self::Edited,
            "removed" => Self::Removed,
            _ => Self::Managed,
        }
    }
}

/// What ductor remembers of one directory's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Digest of the content all three files had (or were given) then.
    pub synced: Hash,
    /// The block's state then.
    pub block: BlockState,
    /// Digest of the framework text then (a change is reported once).
    pub framework: Hash,
}

/// One rule file as the I/O side found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileView {
    /// No entry of that name.
    Missing,
    /// A symbolic link or a hard-linked file: never read, replaced by a file.
    Replace,
    /// Left alone (too big, not a regular file, not UTF-8, unreadable).
    Skip(String),
    /// A regular file's text and modification time.
    Text {
        /// The contents.
        text: String,
        /// `st_mtime` in nanoseconds.
        modified_ns: i64,
    },
}

/// Everything [`decide`] looks at for one directory.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The last sync's record; `None` for a directory never synced.
    pub record: Option<Record>,
    /// ductor's current rule text for this directory.
    pub framework: &'a str,
    /// The three files, in [`RULE_FILES`] order.
    pub files: [FileView; 3],
    /// Suffix of conflict backups, e.g. `20260501T090000Z`.
    pub now: &'a str,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// An edit in `from` was carried to the other files.
    Carried { from: &'static str },
    /// Files were edited differently: `winner` (newest) wins, each loser is
    /// kept as a backup of the given name.
    Conflict { winner: &'static str, losers: Vec<(&'static str, String)> },
    /// The block was unedited and ductor's text changed: refreshed.
    Refreshed,
    /// ductor's text changed but the block was edited: not applied.
    NotApplied,
    /// The user removed the block; it stays removed.
    BlockRemoved,
    /// The user removed an edited block: ductor's current one is back.
    BlockRestored,
    /// The files were made from ductor's text (new, or all three gone).
    Created,
    /// A file left alone, and why.
    Skipped { file: &'static str, why: String },
}

/// What to do in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The content every file should have.
    pub content: String,
    /// Indexes (into [`RULE_FILES`]) of the files to (re)write with `content`.
    pub writes: Vec<usize>,
    /// Backups to create: file name and content.
    pub backups: Vec<(String, String)>,
    /// The record once the plan is carried out.
    pub record: Record,
    /// What to log.
    pub notes: Vec<Note>,
}

/// A file holding only ductor's block for `framework`.
pub fn fresh_file(framework: &str) -> String {
    render_block(framework) + "\n"
}

/// The managed block holding `framework` (ends with a newline).
fn render_block(framework: &str) -> String {
    let mut inner = framework.to_owned();
    if !inner.ends_with('\n') {
        inner.push('\n');
    }
    format!(
        "{BEGIN} sha256={}: ductor's rules, updated by ductor. Write your own rules \
         outside this block; an edit inside makes the block yours and stops its updates. -->\n\
         {inner}{END}\n",
        short_hash(&inner)
    )
}

/// Where a managed block sits in a text.
struct Block<'t> {
    /// Byte range of the whole block, markers included.
    start: usize,
    end: usize,
    /// The text between the markers.
    inner: &'t str,
    /// The hash in the opening marker, if any.
    sha: Option<&'t str>,
}

impl Block<'_> {
    /// Whether the block is exactly what some ductor version wrote.
    fn unedited(&self) -> bool {
        self.sha == Some(short_hash(self.inner).as_str())
    }
}

/// The first managed block of `text`. An opening marker without a closing
/// one makes a block up to the end (an edited one: its hash cannot match).
fn find_block(text: &str) -> Option<Block<'_>> {
    let start = line_starts(text).find(|&at| text[at..].starts_with(BEGIN))?;
    let header_end = text[start..].find('\n').map_or(text.len(), |i| start + i + 1);
    let sha = text[start..header_end]
        .split_once("sha256=")
        .map(|(_, rest)| rest.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap_or(""));
    let close = line_starts(text)
        .filter(|&at| at >= header_end)
        .find(|&at| text[at..].lines().next().is_some_and(|line| line.trim_end() == END));
    let (inner_end, end, sha) = match close {
        Some(at) => {
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
            (at, end, sha)
        }
        None => (text.len(), text.len(), None),
    };
    Some(Block { start, end, inner: &text[header_end..inner_end], sha })
}

fn line_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i < text.len())
}

/// Whether `text` (without a block) is a rule file an older ductor wrote
/// whole: those versions rewrote the files on every start, so such a file
/// holds nothing of the user's. Looked at only for a directory never synced.
pub fn is_legacy(text: &str) -> bool {
    text.contains("This file is managed by ductor") || text.starts_with("# Task agent rules\n")
}

/// The plan for one directory: which content wins and where it goes.
pub fn decide(input: &Input<'_>) -> Plan {
    let framework = with_newline(input.framework);
    let mut notes: Vec<Note> = skipped(input).collect();
    let baseline =
        input.record.map_or_else(|| hash(fresh_file(&framework).as_bytes()), |r| r.synced);
    let edit = pick_edit(input, baseline);
    let (content, block) = match &edit {
        Some(edit) => apply_framework(edit.text, true, input.record, &framework, &mut notes),
        None => match texts(input).find(|(_, text, _)| hash(text.as_bytes()) == baseline) {
            Some((_, text, _)) => {
                apply_framework(text, false, input.record, &framework, &mut notes)
            }
            None => {
                notes.push(Note::Created);
                (fresh_file(&framework), BlockState::Managed)
            }
        },
    };
    let writes: Vec<usize> = (0..RULE_FILES.len())
        .filter(|&i| match &input.files[i] {
            FileView::Missing | FileView::Replace => true,
            FileView::Skip(_) => false,
            FileView::Text { text, .. } => *text != content,
        })
        .collect();
    let mut backups = Vec::new();
    if let Some(edit) = &edit {
        let mut losers = Vec::new();
        for (i, text, _) in texts(input).filter(|(i, ..)| edit.losers.contains(i)) {
            let name = format!("{}.conflict-{}", RULE_FILES[i], input.now);
            losers.push((RULE_FILES[i], name.clone()));
            backups.push((name, text.to_owned()));
        }
        if !losers.is_empty() {
            notes.insert(0, Note::Conflict { winner: RULE_FILES[edit.winner], losers });
        }
        if writes.iter().any(|&i| i != edit.winner) {
            notes.push(Note::Carried { from: RULE_FILES[edit.winner] });
        }
    }
    let record =
        Record { synced: hash(content.as_bytes()), block, framework: hash(framework.as_bytes()) };
    Plan { content, writes, backups, record, notes }
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') { text.to_owned() } else { format!("{text}\n") }
}

fn skipped<'a>(input: &'a Input<'_>) -> impl Iterator<Item = Note> + 'a {
    input.files.iter().enumerate().filter_map(|(i, file)| match file {
        FileView::Skip(why) => Some(Note::Skipped { file: RULE_FILES[i], why: why.clone() }),
        _ => None,
    })
}

/// The readable files: index, text, mtime.
fn texts<'a>(input: &'a Input<'_>) -> impl Iterator<Item = (usize, &'a str, i64)> + 'a {
    input.files.iter().enumerate().filter_map(|(i, file)| match file {
        FileView::Text { text, modified_ns } => Some((i, text.as_str(), *modified_ns)),
        _ => None,
    })
}

/// The content that wins among files edited since the last sync.
struct Edit<'a> {
    text: &'a str,
    winner: usize,
    /// Files edited to something else: they lose, and are backed up.
    losers: Vec<usize>,
}

/// The newest edited file (the first of equals), and the files edited
/// differently. A never-synced directory's legacy files are no edits.
fn pick_edit<'a>(input: &'a Input<'_>, baseline: Hash) -> Option<Edit<'a>> {
    let edited: Vec<(usize, &str, i64)> = texts(input)
        .filter(|(_, text, _)| hash(text.as_bytes()) != baseline)
        .filter(|(_, text, _)| {
            input.record.is_some() || find_block(text).is_some() || !is_legacy(text)
        })
        .collect();
    let mut newest = *edited.first()?;
    for &candidate in &edited[1..] {
        if candidate.2 > newest.2 {
            newest = candidate;
        }
    }
    let losers = edited.iter().filter(|(_, text, _)| *text != newest.1).map(|(i, ..)| *i).collect();
    Some(Edit { text: newest.1, winner: newest.0, losers })
}

/// `text` with ductor's block as it should be, and the block's new state.
fn apply_framework(
    text: &str,
    edited: bool,
    record: Option<Record>,
    framework: &str,
    notes: &mut Vec<Note>,
) -> (String, BlockState) {
    if let Some(block) = find_block(text) {
        if block.unedited() {
            if block.inner == framework {
                return (text.to_owned(), BlockState::Managed);
            }
            notes.push(Note::Refreshed);
            let spliced = format!(
                "{}{}{}",
                &text[..block.start],
                render_block(framework),
                &text[block.end..]
            );
            return (spliced, BlockState::Managed);
        }
        let framework_hash = hash(framework.as_bytes());
        let changed = block.sha != Some(short_hash(framework).as_str());
        if changed && record.is_none_or(|r| r.framework != framework_hash) {
            notes.push(Note::NotApplied);
        }
        return (text.to_owned(), BlockState::Edited);
    }
    match record.map(|r| r.block) {
        Some(BlockState::Removed) => (text.to_owned(), BlockState::Removed),
        Some(BlockState::Managed) if edited => {
            notes.push(Note::BlockRemoved);
            (text.to_owned(), BlockState::Removed)
        }
        Some(BlockState::Edited) if edited => {
            notes.push(Note::BlockRestored);
            (insert_block(text, framework), BlockState::Managed)
        }
        // Never synced (the user's own file is adopted), or a record that
        // says there was a block: the block goes on top.
        _ => (insert_block(text, framework), BlockState::Managed),
    }
}

fn insert_block(text: &str, framework: &str) -> String {
    if text.trim().is_empty() {
        fresh_file(framework)
    } else {
        format!("{}\n{text}", render_block(framework))
    }
}

#[cfg(test)]
mod tests;
