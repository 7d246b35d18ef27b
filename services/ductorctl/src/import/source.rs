//! Reading a Python ductor home (`~/.ductor` of ductor 0.x on PyPI): its
//! JSON files parsed into the shapes its own code writes (0.20.1's
//! `to_dict`/`asdict`), lenient where the Python code is lenient (missing
//! fields take its defaults).
//!
//! Python's agents ran unconfined, so anything in that home may be a planted
//! link: every file is read through [`safe_fs`] (no link followed, regular
//! files only, size-capped).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ductor_daemon::Secret;
use ductor_daemon::safe_fs::{self, Tree};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest JSON file read.
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Why PATH cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{0} is not a Python ductor home: it has no config/config.json \
         (give the directory Python ductor ran with, by default ~/.ductor)"
    )]
    NotAHome(PathBuf),
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: safe_fs::SafeFsError },
    #[error("{path} is not valid JSON of the expected shape: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
}

/// `cron_jobs.json` entries (cron/manager.py `CronJob.to_dict`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PyCronJob {
    pub id: String,
    pub title: String,
    pub description: String,
    pub schedule: String,
    pub task_folder: String,
    pub agent_instruction: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub timezone: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub cli_parameters: Vec<String>,
    pub quiet_start: Option<u32>,
    pub quiet_end: Option<u32>,
    pub dependency: Option<String>,
    pub chat_id: i64,
    pub topic_id: Option<i64>,
    pub transport: Option<String>,
    pub silent_on_success: bool,
}

/// `webhooks.json` entries (webhook/models.py `WebhookEntry.to_dict`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PyHook {
    pub id: String,
    pub title: String,
    pub description: String,
    pub mode: String,
    pub prompt_template: String,
    pub enabled: bool,
    pub task_folder: Option<String>,
    pub auth_mode: String,
    pub token: String,
    pub hmac_secret: String,
    pub hmac_header: String,
    pub hmac_algorithm: String,
    pub hmac_encoding: String,
    pub hmac_sig_prefix: String,
    pub hmac_sig_regex: String,
    pub hmac_payload_prefix_regex: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub cli_parameters: Vec<String>,
    pub quiet_start: Option<u32>,
    pub quiet_end: Option<u32>,
    pub dependency: Option<String>,
}

impl Default for PyHook {
    fn default() -> Self {
        Self {
            id: String::new(),
            title: String::new(),
            description: String::new(),
            mode: "wake".into(),
            prompt_template: String::new(),
            enabled: true,
            task_folder: None,
            auth_mode: "bearer".into(),
            token: String::new(),
            hmac_secret: String::new(),
            hmac_header: String::new(),
            hmac_algorithm: "sha256".into(),
            hmac_encoding: "hex".into(),
            hmac_sig_prefix: "sha256=".into(),
            hmac_sig_regex: String::new(),
            hmac_payload_prefix_regex: String::new(),
            provider: None,
            model: None,
            reasoning_effort: None,
            cli_parameters: Vec::new(),
            quiet_start: None,
            quiet_end: None,
            dependency: None,
        }
    }
}

/// One provider's session (session/manager.py `ProviderSessionData`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PyProviderSession {
    pub session_id: String,
    pub message_count: u64,
    pub total_cost_usd: f64,
}

/// `sessions.json` values (`SessionData`), current and legacy fields.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PySession {
    pub transport: Option<String>,
    pub chat_id: Option<Value>,
    pub topic_id: Option<Value>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub last_active: Option<String>,
    pub provider_sessions: Option<BTreeMap<String, PyProviderSession>>,
    /// Legacy flat fields (migrated by Python on load into the provider's bucket).
    pub session_id: Option<String>,
    pub message_count: Option<u64>,
}

/// `named_sessions.json` entries (session/named.py `NamedSession`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PyNamed {
    pub name: String,
    pub chat_id: i64,
    pub provider: String,
    pub model: String,
    pub session_id: String,
    pub status: String,
    pub created_at: f64,
    pub message_count: u32,
    pub transport: Option<String>,
    pub reasoning_effort: String,
    pub topic_id: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct NamedFile {
    sessions: Vec<PyNamed>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct CronFile {
    jobs: Vec<PyCronJob>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct HookFile {
    hooks: Vec<PyHook>,
}

fn yes() -> bool {
    true
}

/// A sub-agent of `agents.json` (a `SubAgentConfig`): what maps onto an
/// `[[agents]]` entry; its secrets are held as [`Secret`] (never printed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PyAgent {
    pub name: String,
    /// `telegram` (Python's default) or `matrix`.
    pub transport: String,
    pub provider: String,
    pub model: String,
    pub reasoning_effort: String,
    pub telegram_token: Secret,
    pub allowed_user_ids: Vec<i64>,
    pub allowed_group_ids: Vec<i64>,
    pub matrix: Option<PyAgentMatrix>,
    /// The other keys it sets (inherited from main here).
    pub other_keys: Vec<String>,
}

/// A sub-agent's `matrix` object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PyAgentMatrix {
    pub homeserver: String,
    pub user_id: String,
    pub password: Secret,
    pub allowed_users: Vec<String>,
    pub allowed_rooms: Vec<String>,
}

/// Everything read from a Python ductor home.
#[derive(Debug, Clone)]
pub struct PythonHome {
    /// The home as given.
    pub root: PathBuf,
    /// Its workspace as the Python processes saw it (canonical).
    pub workspace: PathBuf,
    pub config: Map<String, Value>,
    pub cron: Vec<PyCronJob>,
    pub hooks: Vec<PyHook>,
    /// By Python storage key (`tg:123`, `tg:123:7`, legacy `123`).
    pub sessions: BTreeMap<String, PySession>,
    pub named: Vec<PyNamed>,
    pub agents: Vec<PyAgent>,
    pub has_workspace: bool,
}

fn read_json(home: &Tree, rel: &str) -> Result<Option<Value>, SourceError> {
    let path = home.path().join(rel);
    let (dir, name) = match rel.rsplit_once('/') {
        Some((dir, name)) => match home.dir(dir) {
            Ok(dir) => (dir, name),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(source) => return Err(SourceError::Read { path, source }),
        },
        None => (
            home.try_clone().map_err(|source| SourceError::Read { path: path.clone(), source })?,
            rel,
        ),
    };
    let bytes = match dir.read(name, MAX_JSON) {
        Ok(bytes) => bytes,
        Err(source) => return Err(SourceError::Read { path, source }),
    };
    let Some(bytes) = bytes else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| SourceError::Json { path, source })
}

fn shaped<T: serde::de::DeserializeOwned + Default>(
    home: &Tree,
    rel: &str,
) -> Result<T, SourceError> {
    match read_json(home, rel)? {
        None => Ok(T::default()),
        Some(value) => serde_json::from_value(value)
            .map_err(|source| SourceError::Json { path: home.path().join(rel), source }),
    }
}

fn agents(value: Option<Value>) -> Vec<PyAgent> {
    let Some(Value::Array(entries)) = value else { return Vec::new() };
    entries.iter().filter_map(Value::as_object).map(agent).collect()
}

fn agent(entry: &Map<String, Value>) -> PyAgent {
    let text = |map: &Map<String, Value>, key: &str| {
        map.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
    };
    let ids = |key: &str| {
        let items = entry.get(key).and_then(Value::as_array).into_iter().flatten();
        items.filter_map(Value::as_i64).collect::<Vec<_>>()
    };
    let strings = |map: &Map<String, Value>, key: &str| {
        let items = map.get(key).and_then(Value::as_array).into_iter().flatten();
        items.filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>()
    };
    let matrix = entry.get("matrix").and_then(Value::as_object).map(|m| PyAgentMatrix {
        homeserver: text(m, "homeserver"),
        user_id: text(m, "user_id"),
        password: Secret::new(text(m, "password")),
        allowed_users: strings(m, "allowed_users"),
        allowed_rooms: strings(m, "allowed_rooms"),
    });
    const MAPPED: [&str; 10] = [
        "name",
        "transport",
        "provider",
        "model",
        "reasoning_effort",
        "telegram_token",
        "allowed_user_ids",
        "allowed_group_ids",
        "matrix",
        "api",
    ];
    let other_keys = entry
        .iter()
        .filter(|(key, value)| !value.is_null() && !MAPPED.contains(&key.as_str()))
        .map(|(key, _)| key.clone())
        .collect();
    let transport = text(entry, "transport");
    PyAgent {
        name: entry.get("name").and_then(Value::as_str).unwrap_or("(unnamed)").to_owned(),
        transport: if transport.is_empty() { "telegram".to_owned() } else { transport },
        provider: text(entry, "provider"),
        model: text(entry, "model"),
        reasoning_effort: text(entry, "reasoning_effort"),
        telegram_token: Secret::new(text(entry, "telegram_token")),
        allowed_user_ids: ids("allowed_user_ids"),
        allowed_group_ids: ids("allowed_group_ids"),
        matrix,
        other_keys,
    }
}

/// Reads the home at `root`.
pub fn read(root: &Path) -> Result<PythonHome, SourceError> {
    let home = Tree::root(root).map_err(|_| SourceError::NotAHome(root.to_path_buf()))?;
    let config = match read_json(&home, "config/config.json")? {
        Some(Value::Object(map)) => map,
        Some(_) | None => return Err(SourceError::NotAHome(root.to_path_buf())),
    };
    let workspace = root.join("workspace");
    let has_workspace = home.dir("workspace").is_ok();
    Ok(PythonHome {
        workspace: std::fs::canonicalize(&workspace).unwrap_or(workspace),
        root: root.to_path_buf(),
        config,
        cron: shaped::<CronFile>(&home, "cron_jobs.json")?.jobs,
        hooks: shaped::<HookFile>(&home, "webhooks.json")?.hooks,
        sessions: shaped(&home, "sessions.json")?,
        named: shaped::<NamedFile>(&home, "named_sessions.json")?.sessions,
        agents: agents(read_json(&home, "agents.json")?),
        has_workspace,
    })
}
