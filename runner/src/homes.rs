//! Ductor-owned homes for the CLIs' own state (security review H6).
//!
//! A CLI keeps settings, hooks, MCP servers, memory and transcripts in its
//! home (`~/.claude`, `~/.codex`, `~/.gemini`), and an agent run must be able
//! to write there. Sharing the operator's home would let a prompt-injected
//! agent plant a hook that runs unconfined the next time the operator uses
//! the CLI, and let one chat read another's transcripts. So each run gets a
//! home under `$DUCTOR_HOME/providers/<provider>/<bucket>/`:
//!
//! - the bucket is one chat (with its named sessions and tasks), one
//!   automation job, or `shared`; the runner makes it inside a directory no
//!   run may write, so the home itself cannot be swapped for a link;
//! - it is seeded every run from the operator's home, settings only
//!   (`settings.json`, `config.toml`): a copy the agent changed is replaced,
//!   one the operator removed is removed, so the operator's settings win;
//! - login files are linked, not copied: an OAuth refresh token rotates, and
//!   a copy refreshed in one home would log out the others and the operator.
//!   A linked login is the one file of the operator's home a run may write.
//!   A CLI that replaces the link with its own (refreshed) file keeps that
//!   file until the operator's login is newer.
//!
//! Everything in a home is agent-writable, so it is touched only through
//! [`ductor_daemon::safe_fs`]: nothing here follows a link the agent planted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ductor_daemon::config::StateHome;
use ductor_daemon::safe_fs::{self, Tree};

use crate::spec::Provider;

/// Largest settings file copied into a home.
const MAX_SETTINGS: u64 = 1024 * 1024;

/// Longest readable bucket name; longer keys are hashed.
const MAX_BUCKET: usize = 120;

/// Where a provider's files live and which of them are seeded or linked.
struct Layout {
    /// The variable that points the CLI at its home.
    var: &'static str,
    /// The directory below the home that holds the files (gemini: `.gemini`).
    sub: Option<&'static str>,
    /// Settings copied from the operator's home each run.
    settings: &'static [&'static str],
    /// Login files linked to the operator's.
    logins: &'static [&'static str],
    /// Settings ductor needs, merged over the operator's (JSON settings only).
    overlay: Option<&'static str>,
}

fn layout(provider: Provider) -> Layout {
    match provider {
        Provider::Claude => Layout {
            var: "CLAUDE_CONFIG_DIR",
            sub: None,
            settings: &["settings.json"],
            logins: &[".credentials.json"],
            overlay: None,
        },
        Provider::Codex => Layout {
            var: "CODEX_HOME",
            sub: None,
            settings: &["config.toml"],
            logins: &["auth.json"],
            overlay: None,
        },
        Provider::Gemini => Layout {
            var: "GEMINI_CLI_HOME",
            sub: Some(".gemini"),
            settings: &["settings.json"],
            logins: &["oauth_creds.json", "google_accounts.json"],
            // The sandbox offers no pseudo-terminals: gemini's shell tool must
            // use plain pipes (its pty path fails with `forkpty(3) failed`).
            overlay: Some(r#"{"tools":{"shell":{"enableInteractiveShell":false}}}"#),
        },
    }
}

/// The operator's directory holding the provider's files, from the CLI's
/// environment (`CLAUDE_CONFIG_DIR` or `~/.claude`, `CODEX_HOME` or
/// `~/.codex`, `$GEMINI_CLI_HOME/.gemini` or `~/.gemini`).
pub fn operator_dir(provider: Provider, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME");
    match provider {
        Provider::Claude => var("CLAUDE_CONFIG_DIR").or_else(|| home.map(|h| h.join(".claude"))),
        Provider::Codex => var("CODEX_HOME").or_else(|| home.map(|h| h.join(".codex"))),
        Provider::Gemini => var("GEMINI_CLI_HOME").or(home).map(|h| h.join(".gemini")),
    }
}

/// The home of a run with `labels` under `mode`; `None` for
/// [`StateHome::Operator`] (the CLI's own home is used).
pub fn bucket(mode: StateHome, labels: &BTreeMap<String, String>) -> Option<String> {
    let label = |name: &str| labels.get(name).filter(|v| !v.is_empty());
    match mode {
        StateHome::Operator => None,
        StateHome::Shared => Some("shared".to_owned()),
        StateHome::PerChat => Some(match (label("session_key"), label("job")) {
            (Some(key), _) => format!("chat-{}", escape(key)),
            (None, Some(job)) => format!("job-{}", escape(job)),
            (None, None) => "shared".to_owned(),
        }),
    }
}

/// A file-name-safe, injective spelling of `key`: letters, digits and `-`
/// kept, every other byte `_xx`; a long result becomes a SHA-256 digest.
fn escape(key: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "_{byte:02x}");
        }
    }
    if out.len() <= MAX_BUCKET {
        return out;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut hex = String::from("h");
    for byte in &digest[..16] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A prepared home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The home itself.
    pub dir: PathBuf,
    /// Variables pointing the CLI at it (`CLAUDE_CONFIG_DIR=<dir>`, ...).
    pub env: Vec<(String, String)>,
    /// What the run may write: the home and the operator's linked logins.
    pub writable: Vec<PathBuf>,
    /// The home was made just now (its first run).
    pub created: bool,
}

/// Makes (or refreshes) the home `bucket` of `provider` under `root`
/// (`$DUCTOR_HOME/providers`), seeded from the operator's home that `env`
/// names.
pub fn prepare(
    provider: Provider,
    root: &Path,
    bucket: &str,
    env: &BTreeMap<String, String>,
) -> Result<Home, safe_fs::SafeFsError> {
    let layout = layout(provider);
    let providers = Tree::root_or_make(root, 0o700)?;
    let (home, created) =
        providers.dir_or_make(provider.as_str(), 0o700)?.dir_or_make_new(bucket, 0o700)?;
    let files = match layout.sub {
        Some(sub) => sub_dir(&home, sub)?,
        None => home.try_clone()?,
    };
    let mut writable = vec![home.path().to_path_buf()];
    let source = operator_dir(provider, env).and_then(|dir| Tree::root(&dir).ok());
    for name in layout.settings {
        seed(source.as_ref(), &files, name, layout.overlay);
    }
    for name in layout.logins {
        if let Some(login) = link_login(source.as_ref(), &files, name) {
            writable.push(login);
        }
    }
    let dir = home.path().to_path_buf();
    let env = vec![(layout.var.to_owned(), dir.display().to_string())];
    Ok(Home { dir, env, writable, created })
}

/// The directory `name` in `home`, replacing whatever non-directory the
/// agent left there.
fn sub_dir(home: &Tree, name: &str) -> Result<Tree, safe_fs::SafeFsError> {
    match home.dir_or_make(name, 0o700) {
        Ok(dir) => Ok(dir),
        Err(_) => {
            home.remove(name, false)?;
            home.dir_or_make(name, 0o700)
        }
    }
}

/// Copies the operator's `name` into the home, or removes the home's copy
/// when the operator has none.
fn seed(source: Option<&Tree>, files: &Tree, name: &str, overlay: Option<&str>) {
    let wanted = match source.map(|s| s.read(name, MAX_SETTINGS)) {
        Some(Ok(bytes)) => bytes,
        None => None,
        Some(Err(error)) => {
            tracing::warn!(%error, "provider settings not copied");
            return;
        }
    };
    let wanted = match overlay {
        Some(overlay) => Some(merged(wanted.as_deref(), overlay)),
        None => wanted,
    };
    let outcome = match wanted {
        Some(bytes) => files.refresh(name, &bytes, 0o600),
        None => match files.entry(name) {
            Ok(Some(entry)) => files.remove(name, entry.is_dir),
            _ => Ok(()),
        },
    };
    if let Err(error) = outcome {
        tracing::warn!(%error, "provider settings not refreshed");
    }
}

/// The operator's JSON settings with `overlay` merged over them (objects
/// key by key); settings that are not a JSON object are replaced.
fn merged(operator: Option<&[u8]>, overlay: &str) -> Vec<u8> {
    fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
        match (base.as_object_mut(), over.as_object()) {
            (Some(base), Some(over)) => {
                for (key, value) in over {
                    merge(base.entry(key.clone()).or_insert(serde_json::Value::Null), value);
                }
            }
            _ => *base = over.clone(),
        }
    }
    let mut base: serde_json::Value = operator
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let over: serde_json::Value = serde_json::from_str(overlay).unwrap_or_default();
    merge(&mut base, &over);
    serde_json::to_vec_pretty(&base).unwrap_or_default()
}

/// Links the home's `name` to the operator's login; returns the operator's
/// file when the run may use it.
fn link_login(source: Option<&Tree>, files: &Tree, name: &str) -> Option<PathBuf> {
    let existing = files.entry(name).ok().flatten();
    let source = source?;
    let path = source.path().join(name);
    let Ok(meta) = std::fs::metadata(&path) else {
        // No login to share: drop a link left from an earlier one.
        if existing.is_some_and(|e| e.is_link) {
            let _ = files.remove(name, false);
        }
        return None;
    };
    if !meta.is_file() {
        return None;
    }
    let operator_mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
    if let Some(own) = existing.as_ref().filter(|e| !e.is_link && !e.is_dir)
        && own.modified >= operator_mtime
    {
        // The CLI refreshed its login into a file of its own: keep it.
        return None;
    }
    match files.link(name, &path) {
        Ok(()) => Some(path),
        Err(error) => {
            tracing::warn!(%error, "provider login not linked");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &Path)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.display().to_string())).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn buckets_are_per_chat_per_job_or_shared() {
        let chat = labels(&[("session_key", "telegram:42:7"), ("kind", "chat")]);
        assert_eq!(bucket(StateHome::PerChat, &chat).unwrap(), "chat-telegram_3a42_3a7");
        let job = labels(&[("job", "daily report")]);
        assert_eq!(bucket(StateHome::PerChat, &job).unwrap(), "job-daily_20report");
        assert_eq!(bucket(StateHome::PerChat, &labels(&[])).unwrap(), "shared");
        assert_eq!(bucket(StateHome::Shared, &chat).unwrap(), "shared");
        assert_eq!(bucket(StateHome::Operator, &chat), None);
        // Injective: ':' and '_' do not collide.
        let a = labels(&[("session_key", "t:1_2")]);
        let b = labels(&[("session_key", "t_1:2")]);
        assert_ne!(bucket(StateHome::PerChat, &a), bucket(StateHome::PerChat, &b));
        let long = "x/".repeat(200);
        let hashed = bucket(StateHome::PerChat, &labels(&[("session_key", &long)])).unwrap();
        assert!(hashed.len() < 60 && hashed.starts_with("chat-h"), "{hashed}");
    }

    #[test]
    fn a_home_is_seeded_from_the_operators_settings_and_linked_to_its_login() {
        let tmp = tempfile::tempdir().unwrap();
        let operator = tmp.path().join("op");
        std::fs::create_dir_all(&operator).unwrap();
        std::fs::write(operator.join("config.toml"), "model = \"x\"\n").unwrap();
        std::fs::write(operator.join("auth.json"), "{}").unwrap();
        std::fs::write(operator.join("history.jsonl"), "private").unwrap();
        let root = tmp.path().join("providers");
        let vars = env(&[("CODEX_HOME", &operator)]);
        let home = prepare(Provider::Codex, &root, "chat-a", &vars).unwrap();
        assert!(home.created, "made for its first run");
        assert_eq!(home.dir, root.join("codex/chat-a"));
        assert_eq!(home.env, [("CODEX_HOME".to_owned(), home.dir.display().to_string())]);
        assert_eq!(home.writable, [home.dir.clone(), operator.join("auth.json")]);
        assert_eq!(
            std::fs::read_to_string(home.dir.join("config.toml")).unwrap(),
            "model = \"x\"\n"
        );
        assert_eq!(
            std::fs::read_link(home.dir.join("auth.json")).unwrap(),
            operator.join("auth.json")
        );
        assert!(!home.dir.join("history.jsonl").exists(), "only settings and logins are shared");

        // The agent's edit is undone at the next run; the operator's removal carries over.
        std::fs::write(home.dir.join("config.toml"), "notify = [\"evil\"]\n").unwrap();
        assert!(!prepare(Provider::Codex, &root, "chat-a", &vars).unwrap().created);
        assert_eq!(
            std::fs::read_to_string(home.dir.join("config.toml")).unwrap(),
            "model = \"x\"\n"
        );
        std::fs::remove_file(operator.join("config.toml")).unwrap();
        prepare(Provider::Codex, &root, "chat-a", &vars).unwrap();
        assert!(!home.dir.join("config.toml").exists());
    }

    #[test]
    fn planted_links_in_a_home_are_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let operator = tmp.path().join("op");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(operator.join(".gemini")).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(operator.join(".gemini/settings.json"), "{}").unwrap();
        std::fs::write(victim.join("settings.json"), "precious").unwrap();
        let root = tmp.path().join("providers");
        let vars = env(&[("GEMINI_CLI_HOME", &operator)]);
        let home = prepare(Provider::Gemini, &root, "chat-a", &vars).unwrap();
        // The agent swaps `.gemini` for a link to a directory it wants written.
        std::fs::remove_dir_all(home.dir.join(".gemini")).unwrap();
        std::os::unix::fs::symlink(&victim, home.dir.join(".gemini")).unwrap();
        let again = prepare(Provider::Gemini, &root, "chat-a", &vars).unwrap();
        assert_eq!(std::fs::read_to_string(victim.join("settings.json")).unwrap(), "precious");
        let dot = again.dir.join(".gemini");
        assert!(dot.symlink_metadata().unwrap().is_dir());
        let settings = std::fs::read_to_string(dot.join("settings.json")).unwrap();
        let settings: serde_json::Value = serde_json::from_str(&settings).unwrap();
        let interactive = settings.pointer("/tools/shell/enableInteractiveShell");
        assert_eq!(interactive, Some(&serde_json::json!(false)), "ductor's overlay: {settings}");
    }

    #[test]
    fn a_login_the_cli_refreshed_into_its_own_file_is_kept_until_the_operator_logs_in_anew() {
        let tmp = tempfile::tempdir().unwrap();
        let operator = tmp.path().join("op");
        std::fs::create_dir_all(&operator).unwrap();
        std::fs::write(operator.join(".credentials.json"), "old").unwrap();
        let root = tmp.path().join("providers");
        let vars = env(&[("CLAUDE_CONFIG_DIR", &operator)]);
        let home = prepare(Provider::Claude, &root, "shared", &vars).unwrap();
        let own = home.dir.join(".credentials.json");
        std::fs::remove_file(&own).unwrap();
        std::fs::write(&own, "refreshed").unwrap();
        let again = prepare(Provider::Claude, &root, "shared", &vars).unwrap();
        assert_eq!(
            again.writable,
            std::slice::from_ref(&again.dir),
            "the operator's login is not granted"
        );
        assert_eq!(std::fs::read_to_string(&own).unwrap(), "refreshed");
        // A newer operator login wins.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        let file = std::fs::File::options().write(true).open(operator.join(".credentials.json"));
        file.unwrap().set_modified(later).unwrap();
        prepare(Provider::Claude, &root, "shared", &vars).unwrap();
        assert!(own.symlink_metadata().unwrap().is_symlink());
    }
}
