//! Python ductor's `agents.json` (sub-agents) mapped onto `[[agents]]`
//! entries of `config.toml`: name, provider, model, reasoning effort, the
//! Telegram bot (token → `secrets/<name>-telegram.token`, `token_file`,
//! `allowed_user_ids`, `allowed_group_ids`) or the Matrix account
//! (homeserver, user id, password → `secrets/<name>-matrix.password`,
//! allowed users and rooms). Entries are appended with the same editor as
//! `ductorctl agents add` (comments kept).
//!
//! The rules of the rest of `import`: an entry already there and equal is
//! unchanged (a second `--apply` changes nothing); one that differs, or a
//! secret file holding another secret, is a conflict and stays yours unless
//! `--force`. Python's other per-agent overrides are listed as not imported.

use std::path::PathBuf;

use ductor_daemon::DuctorHome;
use ductor_daemon::config::valid_agent_name;

use crate::cmd::agents::edit::{self, NewAgent, NewMatrix, NewTelegram};
use crate::import::report::{Section, Status};
use crate::import::source::PyAgent;

/// What merging the agents does.
pub struct AgentsMerge {
    /// The report's section.
    pub section: Section,
    /// The new `config.toml` (secrets as files).
    pub text: String,
    /// The same with the agents' secrets inline, to validate before the files exist.
    pub check_text: String,
    /// Secret files to write (path, contents).
    pub secrets: Vec<(PathBuf, String)>,
}

/// One agent's entry, twice: as written, and with its secrets inline.
struct Planned {
    entry: NewAgent,
    inline: NewAgent,
    secrets: Vec<(PathBuf, String)>,
    notes: Vec<String>,
}

/// Merges `agents` into `text` (the config as the rest of the import leaves it).
pub fn merge(
    agents: &[PyAgent],
    home: &DuctorHome,
    text: &str,
    force: bool,
) -> anyhow::Result<AgentsMerge> {
    let mut out = AgentsMerge {
        section: Section::new("Agents (agents.json → [[agents]])"),
        text: text.to_owned(),
        check_text: text.to_owned(),
        secrets: Vec::new(),
    };
    for agent in agents {
        let subject = format!("{} ({})", agent.name, agent.transport);
        if !valid_agent_name(&agent.name) {
            let why = "not a name ductor takes (lower-case letters, digits, - and _, starting \
                       with a letter, not \"main\")";
            out.section.push(Status::NotImported, subject, why);
            continue;
        }
        let planned = plan(agent, home);
        merge_one(&mut out, &subject, planned, force)?;
        if !agent.other_keys.is_empty() {
            out.section.push(
                Status::NotImported,
                format!("{}: {}", agent.name, agent.other_keys.join(", ")),
                "per-agent overrides other than provider, model and reasoning_effort; [agent]'s apply",
            );
        }
    }
    Ok(out)
}

fn merge_one(
    out: &mut AgentsMerge,
    subject: &str,
    planned: Planned,
    force: bool,
) -> anyhow::Result<()> {
    let name = &planned.entry.name;
    let notes = if planned.notes.is_empty() {
        String::new()
    } else {
        format!("; {}", planned.notes.join("; "))
    };
    if let Some(why) = secret_conflict(&planned.secrets, force) {
        out.section.push(Status::Conflict, subject, why);
        return Ok(());
    }
    let have = existing(&out.text, name);
    if let Some(have) = have {
        if have == entry_table(&planned.entry) {
            let secrets_same = planned.secrets.iter().all(|(p, v)| same_secret(p, v));
            if secrets_same {
                out.section.push(Status::Unchanged, subject, "already in config.toml");
                return Ok(());
            }
        } else if !force {
            let why = "config.toml has another agent by that name; kept (--force replaces it)";
            out.section.push(Status::Conflict, subject, why);
            return Ok(());
        }
        out.text = edit::remove(&out.text, name)?;
        out.check_text = edit::remove(&out.check_text, name)?;
    }
    out.text = edit::add(&out.text, &planned.entry)?;
    out.check_text = edit::add(&out.check_text, &planned.inline)?;
    let files: Vec<String> = planned.secrets.iter().map(|(p, _)| p.display().to_string()).collect();
    let detail = match files.as_slice() {
        [] => format!("an [[agents]] entry{notes}"),
        files => format!("an [[agents]] entry, secret (set) in {}{notes}", files.join(", ")),
    };
    out.section.push(Status::Import, subject, detail);
    out.secrets.extend(planned.secrets.into_iter().filter(|(p, v)| !same_secret(p, v)));
    Ok(())
}

fn same_secret(path: &std::path::Path, value: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|have| have.trim_end() == value)
}

fn secret_conflict(secrets: &[(PathBuf, String)], force: bool) -> Option<String> {
    let (path, _) =
        secrets.iter().find(|(path, value)| path.exists() && !same_secret(path, value))?;
    (!force).then(|| format!("{} holds another secret; kept (--force replaces it)", path.display()))
}

/// The `[[agents]]` table called `name` in `text`, if any.
fn existing(text: &str, name: &str) -> Option<toml::Table> {
    let table: toml::Table = text.parse().ok()?;
    let entries = table.get("agents")?.as_array()?;
    let found = entries.iter().find(|e| e.get("name").and_then(toml::Value::as_str) == Some(name));
    found?.as_table().cloned()
}

/// The table `entry` becomes.
fn entry_table(entry: &NewAgent) -> toml::Table {
    edit::add("", entry).ok().and_then(|text| existing(&text, &entry.name)).unwrap_or_default()
}

fn plan(agent: &PyAgent, home: &DuctorHome) -> Planned {
    let mut notes = Vec::new();
    let provider = match crate::import::config_map::provider_name(&agent.provider.as_str().into()) {
        Ok(toml::Value::String(p)) => p,
        _ if agent.provider.is_empty() => String::new(),
        _ => {
            notes.push(format!(
                "provider {:?} has no equivalent; [agent]'s applies",
                agent.provider
            ));
            String::new()
        }
    };
    let mut entry = NewAgent {
        name: agent.name.clone(),
        provider,
        model: agent.model.clone(),
        reasoning_effort: agent.reasoning_effort.clone(),
        ..NewAgent::default()
    };
    let mut inline = entry.clone();
    let mut secrets = Vec::new();
    let secrets_dir = home.secrets_dir();
    let token = agent.telegram_token.expose();
    if agent.transport == "telegram" && !token.is_empty() {
        let file = secrets_dir.join(format!("{}-telegram.token", agent.name));
        let telegram = NewTelegram {
            token_file: file.clone(),
            token: None,
            allowed_user_ids: agent.allowed_user_ids.clone(),
            allowed_group_ids: agent.allowed_group_ids.clone(),
            api_url: None,
        };
        inline.telegram = Some(NewTelegram { token: Some(token.to_owned()), ..telegram.clone() });
        entry.telegram = Some(telegram);
        secrets.push((file, token.to_owned()));
    }
    if let (true, Some(matrix)) = (agent.transport == "matrix", &agent.matrix) {
        let password = matrix.password.expose();
        let file = (!password.is_empty())
            .then(|| secrets_dir.join(format!("{}-matrix.password", agent.name)));
        let account = NewMatrix {
            homeserver: matrix.homeserver.clone(),
            user_id: matrix.user_id.clone(),
            password_file: file.clone(),
            password: None,
            allowed_users: matrix.allowed_users.clone(),
            allowed_rooms: matrix.allowed_rooms.clone(),
        };
        let inline_password = (!password.is_empty()).then(|| password.to_owned());
        inline.matrix = Some(NewMatrix { password: inline_password, ..account.clone() });
        entry.matrix = Some(account);
        secrets.extend(file.map(|f| (f, password.to_owned())));
    }
    if entry.telegram.is_none() && entry.matrix.is_none() {
        notes.push("no bot token or Matrix account: add one to reach it from chat".to_owned());
    }
    Planned { entry, inline, secrets, notes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::source::PyAgentMatrix;
    use ductor_daemon::Secret;

    fn agents() -> Vec<PyAgent> {
        vec![
            PyAgent {
                name: "researcher".into(),
                transport: "telegram".into(),
                provider: "claude".into(),
                model: "sonnet".into(),
                telegram_token: Secret::new("999:SECRET"),
                allowed_user_ids: vec![4242],
                ..PyAgent::default()
            },
            PyAgent {
                name: "coder".into(),
                transport: "matrix".into(),
                provider: "grok".into(),
                matrix: Some(PyAgentMatrix {
                    homeserver: "https://m.example".into(),
                    user_id: "@coder:m.example".into(),
                    password: Secret::new("pw"),
                    allowed_users: vec!["@me:m.example".into()],
                    allowed_rooms: vec!["!r:m.example".into()],
                }),
                other_keys: vec!["idle_timeout_minutes".into()],
                ..PyAgent::default()
            },
            PyAgent { name: "Bad Name".into(), transport: "telegram".into(), ..PyAgent::default() },
        ]
    }

    #[test]
    fn agents_become_entries_with_secret_files_and_a_second_run_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(tmp.path());
        let mine = "# mine\n[agent]\nmodel = \"opus\" # my model\n";
        let merged = merge(&agents(), &home, mine, false).unwrap();
        assert!(merged.text.starts_with(mine), "{}", merged.text);
        assert!(merged.text.contains("name = \"researcher\""), "{}", merged.text);
        assert!(!merged.text.contains("999:SECRET") && !merged.text.contains("\"pw\""));
        assert!(merged.check_text.contains("token = \"999:SECRET\""), "{}", merged.check_text);
        let parsed = ductor_daemon::Config::parse(&merged.check_text, "c".as_ref(), &|_| None);
        let config = parsed.unwrap();
        let coder = config.agent_entry("coder").unwrap();
        assert_eq!(coder.provider, "", "grok has no equivalent");
        assert_eq!(coder.matrix.as_ref().unwrap().allowed_rooms, ["!r:m.example"]);
        assert_eq!(
            config.agent_entry("researcher").unwrap().telegram.as_ref().unwrap().allowed_user_ids,
            [4242]
        );
        let statuses: Vec<Status> = merged.section.lines.iter().map(|l| l.status).collect();
        assert_eq!(
            statuses,
            [Status::Import, Status::Import, Status::NotImported, Status::NotImported],
            "{:?}",
            merged.section.lines
        );
        for (path, value) in &merged.secrets {
            ductor_daemon::paths::write_private(path, value.as_bytes()).unwrap();
        }
        let again = merge(&agents(), &home, &merged.text, false).unwrap();
        assert_eq!(again.text, merged.text, "a second run changes nothing");
        assert!(again.secrets.is_empty());
        assert_eq!(again.section.lines[0].status, Status::Unchanged);
        assert_eq!(again.section.lines[1].status, Status::Unchanged);
    }

    #[test]
    fn another_entry_or_secret_by_that_name_is_a_conflict_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(tmp.path());
        let mine = "[[agents]]\nname = \"researcher\"\nmodel = \"opus\" # mine\n";
        let merged = merge(&agents()[..1], &home, mine, false).unwrap();
        assert_eq!(merged.text, mine);
        assert_eq!(merged.section.lines[0].status, Status::Conflict);
        let forced = merge(&agents()[..1], &home, mine, true).unwrap();
        assert!(forced.text.contains("model = \"sonnet\""), "{}", forced.text);
        let file = home.secrets_dir().join("researcher-telegram.token");
        ductor_daemon::paths::write_private(&file, b"1:OTHER").unwrap();
        let merged = merge(&agents()[..1], &home, "", false).unwrap();
        assert_eq!(merged.section.lines[0].status, Status::Conflict);
        assert!(merged.secrets.is_empty() && merged.text.is_empty());
    }
}
