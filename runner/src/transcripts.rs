//! Transcripts brought along when moving in from Python ductor
//! (`ductorctl import`, `Runner.ImportTranscript`).
//!
//! A session id resumes only where the CLI finds its transcript. Python
//! ductor ran the CLIs with the operator's own homes; ductor gives each chat
//! a home of its own ([`crate::homes`]). So an imported id is made resumable
//! by copying its transcript from the operator's home into the home the
//! chat's runs get, at the place the CLI looks:
//!
//! - claude: `projects/<cwd slug>/<id>.jsonl`, the slug being the working
//!   directory as claude spells it ([`claude_slug`]); the
//!   source is looked up under the Python session's slug first, then under
//!   every project, and the copy goes under the slug of ductor's directory;
//! - codex: `sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`, same path;
//! - gemini: refused. Its sessions belong to a project directory (`tmp/<project>/`
//!   plus a project registry), and a copy would not be found reliably.
//!
//! The operator's home is read and the chat's home written only through
//! [`safe_fs`]: the chat's home is agent-writable, and Python's agents could
//! write the operator's.

use std::path::{Path, PathBuf};

use ductor_daemon::safe_fs::{self, Tree};

use crate::spec::Provider;

/// Largest transcript copied (a long claude session is tens of MiB).
const MAX_TRANSCRIPT: u64 = 256 * 1024 * 1024;
/// Most project directories searched for a claude transcript.
const MAX_PROJECTS: usize = 10_000;

/// What to import.
#[derive(Debug, Clone)]
pub struct Request {
    pub provider: Provider,
    pub session_id: String,
    /// Where the session ran (claude's slug).
    pub source_cwd: String,
    /// Where ductor's runs of the chat run.
    pub working_dir: PathBuf,
    pub dry_run: bool,
}

/// What was found and done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub found: bool,
    pub copied: bool,
    pub source: Option<PathBuf>,
    pub target: Option<PathBuf>,
    pub reason: String,
}

impl Outcome {
    fn missing(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), ..Self::default() }
    }
}

/// Why a transcript could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("the session id {0:?} is not a plain file name")]
    BadId(String),
    #[error(transparent)]
    Fs(#[from] safe_fs::SafeFsError),
}

/// Longest claude slug kept whole (claude 2.1: `C=200`).
const MAX_SLUG: usize = 200;

/// claude's directory name for a working directory, as claude 2.1 makes it:
/// every UTF-16 unit that is not an ASCII letter or digit becomes `-`; a
/// slug longer than 200 is cut and gets `-` plus the base-36 absolute value
/// of the path's Java-style 32-bit string hash.
pub fn claude_slug(cwd: &str) -> String {
    let slug: String = cwd
        .encode_utf16()
        .map(|unit| match char::from_u32(u32::from(unit)) {
            Some(c) if c.is_ascii_alphanumeric() => c,
            _ => '-',
        })
        .collect();
    if slug.len() <= MAX_SLUG {
        return slug;
    }
    let hash = cwd
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_shl(5).wrapping_sub(h).wrapping_add(i32::from(unit)));
    format!("{}-{}", &slug[..MAX_SLUG], base36(i64::from(hash).unsigned_abs()))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A located source transcript: its directory (relative to the CLI dir),
/// file name and contents.
struct Found {
    dir: String,
    name: String,
    bytes: Vec<u8>,
    path: PathBuf,
}

/// Looks up `request`'s transcript in `operator` (the operator's CLI dir) and,
/// unless a dry run, copies it into `home` (the chat's CLI dir, made by
/// [`crate::homes::prepare`]; `None`: the chat uses the operator's home).
pub fn import(
    request: &Request,
    operator: Option<&Path>,
    home: Option<&Tree>,
) -> Result<Outcome, TranscriptError> {
    let id = request.session_id.as_str();
    if id.is_empty() || id.contains(['/', '\0']) || id.starts_with('.') {
        return Err(TranscriptError::BadId(id.to_owned()));
    }
    let Some(operator) = operator.and_then(|dir| Tree::root(dir).ok()) else {
        return Ok(Outcome::missing("the operator's CLI home does not exist"));
    };
    let found = match request.provider {
        Provider::Claude => find_claude(&operator, id, &request.source_cwd)?,
        Provider::Codex => find_codex(&operator, id)?,
        Provider::Gemini => {
            return Ok(Outcome::missing(
                "gemini sessions belong to their project directory; a copy would not resume",
            ));
        }
    };
    let Some(found) = found else {
        return Ok(Outcome::missing(format!(
            "no transcript of this session under {}",
            operator.path().display()
        )));
    };
    let target_dir = match request.provider {
        Provider::Claude => {
            let cwd = std::fs::canonicalize(&request.working_dir)
                .unwrap_or_else(|_| request.working_dir.clone());
            format!("projects/{}", claude_slug(&cwd.to_string_lossy()))
        }
        _ => found.dir.clone(),
    };
    let mut outcome =
        Outcome { found: true, source: Some(found.path.clone()), ..Outcome::default() };
    if request.dry_run {
        return Ok(outcome);
    }
    let Some(home) = home else {
        outcome.reason = "this provider runs in the operator's own home".into();
        return Ok(outcome);
    };
    outcome.target = Some(home.path().join(&target_dir).join(&found.name));
    let dir = home.dir_or_make(&target_dir, 0o700)?;
    let same = dir.read(&found.name, MAX_TRANSCRIPT).ok().flatten().as_deref()
        == Some(found.bytes.as_slice());
    if !same {
        dir.replace(&found.name, &found.bytes, 0o600)?;
        outcome.copied = true;
    }
    Ok(outcome)
}

fn read_in(dir: &Tree, rel: &str, name: &str) -> Result<Option<Found>, TranscriptError> {
    let bytes = match dir.read(name, MAX_TRANSCRIPT) {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => None,
        Err(error) => return Err(error.into()),
    };
    Ok(bytes.map(|bytes| Found {
        dir: rel.to_owned(),
        name: name.to_owned(),
        path: dir.path().join(name),
        bytes,
    }))
}

fn subdir(tree: &Tree, rel: &str) -> Option<Tree> {
    tree.dir(rel).ok()
}

fn find_claude(operator: &Tree, id: &str, cwd: &str) -> Result<Option<Found>, TranscriptError> {
    let name = format!("{id}.jsonl");
    let Some(projects) = subdir(operator, "projects") else { return Ok(None) };
    if !cwd.is_empty() {
        let slug = claude_slug(cwd);
        if let Some(dir) = subdir(&projects, &slug)
            && let Some(found) = read_in(&dir, &format!("projects/{slug}"), &name)?
        {
            return Ok(Some(found));
        }
    }
    for entry in
        projects.entries()?.into_iter().filter(|e| e.is_dir && !e.is_link).take(MAX_PROJECTS)
    {
        if let Some(dir) = subdir(&projects, &entry.name)
            && let Some(found) = read_in(&dir, &format!("projects/{}", entry.name), &name)?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Directories only, links left out, sorted (for a stable search).
fn dirs(tree: &Tree) -> Vec<String> {
    let mut names: Vec<String> = tree
        .entries()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.is_dir && !e.is_link)
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

fn find_codex(operator: &Tree, id: &str) -> Result<Option<Found>, TranscriptError> {
    let suffix = format!("-{id}.jsonl");
    let Some(sessions) = subdir(operator, "sessions") else { return Ok(None) };
    for year in dirs(&sessions) {
        let Some(y) = subdir(&sessions, &year) else { continue };
        for month in dirs(&y) {
            let Some(m) = subdir(&y, &month) else { continue };
            for day in dirs(&m) {
                let Some(d) = subdir(&m, &day) else { continue };
                let rel = format!("sessions/{year}/{month}/{day}");
                for entry in d.entries().unwrap_or_default() {
                    if !entry.is_dir
                        && !entry.is_link
                        && entry.name.starts_with("rollout-")
                        && entry.name.ends_with(&suffix)
                        && let Some(found) = read_in(&d, &rel, &entry.name)?
                    {
                        return Ok(Some(found));
                    }
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(provider: Provider, id: &str, cwd: &str, workdir: &Path) -> Request {
        Request {
            provider,
            session_id: id.into(),
            source_cwd: cwd.into(),
            working_dir: workdir.to_path_buf(),
            dry_run: false,
        }
    }

    #[test]
    fn the_slug_is_the_path_with_every_other_character_a_dash() {
        assert_eq!(claude_slug("/home/u/.ductor/workspace"), "-home-u--ductor-workspace");
        // A character outside the BMP is two UTF-16 units, so two dashes.
        assert_eq!(claude_slug("/a😀b"), "-a--b");
        // Beyond 200: cut, plus the hash (the value claude 2.1's own code gives).
        let long = format!("/{}", "x".repeat(250));
        assert_eq!(claude_slug(&long), format!("-{}-v734pd", "x".repeat(199)));
        assert_eq!(base36(96354), "22ci");
    }

    #[test]
    fn a_claude_transcript_moves_under_the_slug_of_ductors_working_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let operator = tmp.path().join("op");
        let old = operator.join("projects/-old-ws");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("abc.jsonl"), "{}\n").unwrap();
        let workdir = tmp.path().join("ws");
        std::fs::create_dir_all(&workdir).unwrap();
        let home = Tree::root_or_make(&tmp.path().join("home"), 0o700).unwrap();
        // Found even when the recorded cwd is wrong (every project is searched).
        let req = request(Provider::Claude, "abc", "/elsewhere", &workdir);
        let outcome = import(&req, Some(&operator), Some(&home)).unwrap();
        assert!(outcome.found && outcome.copied, "{outcome:?}");
        let slug = claude_slug(&workdir.canonicalize().unwrap().to_string_lossy());
        let copied = tmp.path().join("home/projects").join(slug).join("abc.jsonl");
        assert_eq!(std::fs::read_to_string(copied).unwrap(), "{}\n");
        // Again: nothing to do.
        let again = import(&req, Some(&operator), Some(&home)).unwrap();
        assert!(again.found && !again.copied, "{again:?}");
    }

    #[test]
    fn missing_linked_and_gemini_transcripts_are_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let operator = tmp.path().join("op");
        let secret = tmp.path().join("secret");
        std::fs::create_dir_all(operator.join("projects")).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("abc.jsonl"), "private").unwrap();
        std::os::unix::fs::symlink(&secret, operator.join("projects/-ws")).unwrap();
        let home = Tree::root_or_make(&tmp.path().join("home"), 0o700).unwrap();
        let req = request(Provider::Claude, "abc", "/ws", tmp.path());
        let outcome = import(&req, Some(&operator), Some(&home)).unwrap();
        assert!(!outcome.found, "a linked project is not followed: {outcome:?}");
        let gemini = request(Provider::Gemini, "abc", "/ws", tmp.path());
        assert!(!import(&gemini, Some(&operator), Some(&home)).unwrap().found);
        let bad = request(Provider::Claude, "../x", "/ws", tmp.path());
        assert!(import(&bad, Some(&operator), Some(&home)).is_err());
    }

    #[test]
    fn a_codex_rollout_keeps_its_dated_path() {
        let tmp = tempfile::tempdir().unwrap();
        let operator = tmp.path().join("op");
        let day = operator.join("sessions/2026/02/22");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(day.join("rollout-2026-02-22T10-00-00-019a.jsonl"), "r").unwrap();
        let home = Tree::root_or_make(&tmp.path().join("home"), 0o700).unwrap();
        let mut req = request(Provider::Codex, "019a", "", tmp.path());
        req.dry_run = true;
        let dry = import(&req, Some(&operator), Some(&home)).unwrap();
        assert!(dry.found && !dry.copied);
        let target =
            tmp.path().join("home/sessions/2026/02/22/rollout-2026-02-22T10-00-00-019a.jsonl");
        assert!(!target.exists(), "a dry run writes nothing");
        req.dry_run = false;
        assert!(import(&req, Some(&operator), Some(&home)).unwrap().copied);
        assert_eq!(std::fs::read_to_string(target).unwrap(), "r");
    }
}
