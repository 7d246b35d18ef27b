//! `ductorctl import`: moving in from Python ductor.
//!
//! A Python ductor home (`~/.ductor` of ductor 0.x) is read ([`source`]),
//! mapped onto ours ([`config_map`], [`mapping`]) and reported section by
//! section ([`report`]); `--apply` writes. What lands where:
//!
//! - config keys into `config.toml`, merged with `toml_edit` ([`toml_merge`]),
//!   secrets into 0600 files under `secrets/` referenced by `*_file` keys;
//!   sub-agents (`agents.json`) as `[[agents]]` entries ([`agents_map`]);
//! - the workspace and `MAINMEMORY.md` into ours, through `safe_fs` ([`files`]);
//! - cron jobs and webhooks through core's `Automation` service, chat and
//!   named sessions through its operator-only `Import` service, after the
//!   runner copied each transcript into the chat's CLI home ([`state`]).
//!
//! Idempotent: a second `--apply` finds everything there and changes nothing.

pub mod agents_map;
pub mod config_map;
pub mod files;
pub mod mapping;
pub mod report;
pub mod source;
pub mod state;
pub mod toml_merge;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ductor_daemon::DuctorHome;

use config_map::SecretFile;
use report::{Section, Status};
use source::PythonHome;
use toml_merge::{KeyStatus, Merger};

/// The config part of an import: its report and what `--apply` writes.
pub struct ConfigImport {
    pub section: Section,
    /// `agents.json` → `[[agents]]` ([`agents_map`]).
    pub agents: Section,
    /// The new `config.toml`, when it changes.
    pub text: Option<String>,
    /// Secret files to write (path, contents).
    pub secrets: Vec<(PathBuf, String)>,
}

fn shown(value: &toml::Value) -> String {
    value.to_string()
}

fn secret_line(
    secret: &SecretFile,
    path: &Path,
    merger: &mut Merger,
    force: bool,
) -> anyhow::Result<(Status, String, bool)> {
    let inline = secret.to.and_then(|key| merger.current(&key.replace("_file", "")));
    if inline.as_ref().and_then(toml::Value::as_str).is_some_and(|s| !s.is_empty()) && !force {
        return Ok((
            Status::Conflict,
            "your config.toml sets the secret inline; kept".into(),
            false,
        ));
    }
    let on_disk = std::fs::read_to_string(path).ok();
    let file_status = match on_disk.as_deref().map(str::trim_end) {
        Some(have) if have == secret.value => Status::Unchanged,
        Some(_) if !force => {
            let why =
                format!("{} holds another secret; kept (--force replaces it)", path.display());
            return Ok((Status::Conflict, why, false));
        }
        _ => Status::Import,
    };
    let key_status = match secret.to {
        Some(key) => merger.set(key, &toml::Value::String(path.display().to_string()))?,
        None => KeyStatus::Same,
    };
    let detail = format!("(set) in {}", path.display());
    Ok(match key_status {
        KeyStatus::Conflict { have } => {
            (Status::Conflict, format!("yours is {}; kept", shown(&have)), false)
        }
        KeyStatus::Set { .. } => (Status::Import, detail, file_status == Status::Import),
        KeyStatus::Same => (file_status, detail, file_status == Status::Import),
    })
}

/// Maps Python's config onto `home`'s `config.toml` (validated before anything is written).
pub fn config(py: &PythonHome, home: &DuctorHome, force: bool) -> anyhow::Result<ConfigImport> {
    let plan = config_map::plan(&py.config);
    let path = home.config_file();
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let mut merger =
        Merger::new(&existing, force).with_context(|| format!("read {}", path.display()))?;
    let mut section = Section::new("Config (config/config.json → config.toml)");
    for mapped in &plan.mapped {
        let subject = format!("{} → {}", mapped.from, mapped.to);
        let value = shown(&mapped.value);
        match merger.set(&mapped.to, &mapped.value)? {
            KeyStatus::Set { was: Some(was) } => {
                section.push(Status::Import, subject, format!("{} → {value}", shown(&was)))
            }
            KeyStatus::Set { was: None } => {
                section.push(Status::Import, subject, format!("= {value}"))
            }
            KeyStatus::Same => section.push(Status::Unchanged, subject, format!("= {value}")),
            KeyStatus::Conflict { have } => section.push(
                Status::Conflict,
                subject,
                format!("yours is {}, Python's {value}; kept (--force replaces it)", shown(&have)),
            ),
        }
    }
    let mut secrets = Vec::new();
    for secret in &plan.secrets {
        let file = home.secrets_dir().join(secret.file.replace(['.', '-'], "_"));
        let target = secret.to.unwrap_or("secrets/");
        let (status, detail, write) = secret_line(secret, &file, &mut merger, force)?;
        section.push(status, format!("{} → {target}", secret.from), detail);
        if write {
            secrets.push((file, secret.value.clone()));
        }
    }
    for unmapped in &plan.unmapped {
        section.push(Status::NotImported, unmapped.key.clone(), unmapped.why.clone());
    }
    let agents = agents_map::merge(&py.agents, home, &merger.text(), force)?;
    let text = agents.text;
    let changed = text != existing;
    if changed {
        // With the agents' secrets inline: their files are not written yet.
        validate(&agents.check_text, &path, &plan.secrets)?;
    }
    secrets.extend(agents.secrets);
    Ok(ConfigImport { section, agents: agents.section, text: changed.then_some(text), secrets })
}

/// Checks the merged file as the services will read it; the secrets come
/// from memory (their files may not be written yet).
fn validate(text: &str, path: &Path, secrets: &[SecretFile]) -> anyhow::Result<()> {
    let secret = |key: &str| secrets.iter().find(|s| s.to == Some(key)).map(|s| s.value.clone());
    let env = |name: &str| {
        match name {
            "DUCTOR_TELEGRAM_TOKEN" => secret("telegram.token_file"),
            "DUCTOR_MATRIX_PASSWORD" => secret("matrix.password_file"),
            _ => None,
        }
        .or_else(|| std::env::var(name).ok())
    };
    ductor_daemon::Config::parse(text, path, &env)
        .map(|_| ())
        .context("the merged config.toml would be invalid; nothing was written")
}

/// Writes the config part: secrets first (the config names them), then the file.
pub fn write_config(home: &DuctorHome, config: &ConfigImport) -> anyhow::Result<()> {
    for (path, value) in &config.secrets {
        ductor_daemon::paths::write_private(path, value.as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(text) = &config.text {
        let path = home.config_file();
        ductor_daemon::paths::write_private(&path, text.as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// The workspace and the memory.
pub fn workspace(
    py: &PythonHome,
    home: &DuctorHome,
    apply: bool,
) -> anyhow::Result<(Section, Section)> {
    let mut memory = Section::new("Memory (MAINMEMORY.md)");
    let mut section = Section::new("Workspace");
    let ours = home.workspace();
    if !py.has_workspace {
        section.push(Status::Info, "workspace", "Python's home has none");
        return Ok((memory, section));
    }
    if files::same_dir(&py.workspace, &ours) {
        section.push(
            Status::Unchanged,
            ours.display().to_string(),
            "already in place (PATH is this ductor's home)",
        );
        memory.push(Status::Unchanged, "memory_system/MAINMEMORY.md", "already in place");
        return Ok((memory, section));
    }
    let outcome =
        files::import_memory(&py.workspace, &ours, apply).context("import MAINMEMORY.md")?;
    let (status, detail) = match outcome {
        files::MemoryOutcome::Missing => (Status::Info, "Python's home has none"),
        files::MemoryOutcome::Copied => (Status::Import, "copied (ours had none)"),
        files::MemoryOutcome::Appended => {
            (Status::Import, "appended to ours under \"## Imported from Python ductor\"")
        }
        files::MemoryOutcome::Same => (Status::Unchanged, "ours already holds it"),
    };
    memory.push(status, "memory_system/MAINMEMORY.md", detail);
    let copy = files::copy_workspace(&py.workspace, &ours, apply)
        .with_context(|| format!("copy {} into {}", py.workspace.display(), ours.display()))?;
    let list = |names: &[String]| {
        let mut shown: Vec<&str> = names.iter().take(files::SHOWN).map(String::as_str).collect();
        if names.len() > files::SHOWN {
            shown.push("…");
        }
        shown.join(", ")
    };
    if !copy.copied.is_empty() {
        section.push(Status::Import, format!("{} files", copy.copied.len()), list(&copy.copied));
    }
    if copy.same > 0 {
        section.push(Status::Unchanged, format!("{} files", copy.same), "ours has the same");
    }
    if !copy.kept.is_empty() {
        section.push(
            Status::Conflict,
            format!("{} files", copy.kept.len()),
            format!("ours differ, kept: {}", list(&copy.kept)),
        );
    }
    for (path, why) in &copy.skipped {
        section.push(Status::NotImported, path.clone(), why.clone());
    }
    Ok((memory, section))
}

/// Puts Python's task descriptions (`saved`, see [`files::task_descriptions`])
/// back into the folders of the jobs and hooks added in this run only.
pub fn restore_task_descriptions<'a>(
    saved: &std::collections::BTreeMap<String, Vec<u8>>,
    home: &DuctorHome,
    folders: impl Iterator<Item = &'a String>,
    section: &mut Section,
) {
    let mut done: Vec<&str> = Vec::new();
    for folder in folders {
        let Some(bytes) = saved.get(folder).filter(|_| !done.contains(&folder.as_str())) else {
            continue;
        };
        done.push(folder);
        let subject = format!("cron_tasks/{folder}/TASK_DESCRIPTION.md");
        match files::put_task_description(&home.workspace(), folder, bytes) {
            Ok(()) => section.push(
                Status::Import,
                subject,
                "Python's, over the one core wrote for the new job",
            ),
            Err(error) => section.push(Status::NotImported, subject, error.to_string()),
        }
    }
}
