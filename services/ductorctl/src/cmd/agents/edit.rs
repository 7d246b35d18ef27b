//! Adding and removing `[[agents]]` entries in `config.toml` with
//! `toml_edit`, so the operator's comments, order and every other key stay
//! as they are (the same approach as `import`'s `toml_merge`). Pure text in,
//! text out; the caller validates the result with `Config::parse` before
//! writing it.

use std::path::PathBuf;

use ductor_daemon::config::{MAIN_AGENT, valid_agent_name};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// A new agent's Telegram bot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTelegram {
    /// The 0600 file holding its token.
    pub token_file: PathBuf,
    /// The token itself instead of the file: only for checking a text with
    /// `Config::parse` before the file is written, never for writing.
    pub token: Option<String>,
    /// `allowed_user_ids`.
    pub allowed_user_ids: Vec<i64>,
    /// `allowed_group_ids`.
    pub allowed_group_ids: Vec<i64>,
    /// `api_url`, when not Telegram's own.
    pub api_url: Option<String>,
}

/// A new agent's Matrix account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMatrix {
    /// `homeserver`.
    pub homeserver: String,
    /// `user_id`.
    pub user_id: String,
    /// The 0600 file holding its password, if one is given.
    pub password_file: Option<PathBuf>,
    /// The password itself instead of the file (checking only, as `NewTelegram::token`).
    pub password: Option<String>,
    /// `allowed_users`.
    pub allowed_users: Vec<String>,
    /// `allowed_rooms`.
    pub allowed_rooms: Vec<String>,
}

/// One `[[agents]]` entry to append; empty strings are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAgent {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `provider`.
    pub provider: String,
    /// `model`.
    pub model: String,
    /// `reasoning_effort`.
    pub reasoning_effort: String,
    /// `workspace` (absolute).
    pub workspace: Option<PathBuf>,
    /// `[agents.telegram]`.
    pub telegram: Option<NewTelegram>,
    /// `[agents.matrix]`.
    pub matrix: Option<NewMatrix>,
}

/// Why the file was not changed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    /// Not TOML at all.
    #[error("config.toml is not valid TOML: {0}")]
    Parse(String),
    /// `agents` is there but not `[[agents]]`.
    #[error("config.toml has `agents` as something other than [[agents]] entries")]
    NotEntries,
    /// The name cannot name an agent.
    #[error(
        "{0:?} is not an agent name (lower-case letters, digits, - and _, starting with a \
         letter, at most 32; \"main\" is the main agent's)"
    )]
    BadName(String),
    /// Taken.
    #[error("an agent called {0:?} is already in config.toml")]
    Exists(String),
    /// Nothing to remove.
    #[error("config.toml has no agent called {0:?}")]
    Missing(String),
}

fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>().map_err(|e| EditError::Parse(e.message().to_owned()))
}

fn entries(doc: &DocumentMut) -> Result<Option<&ArrayOfTables>, EditError> {
    match doc.get("agents") {
        None => Ok(None),
        Some(item) => item.as_array_of_tables().map(Some).ok_or(EditError::NotEntries),
    }
}

fn position(doc: &DocumentMut, name: &str) -> Result<Option<usize>, EditError> {
    let Some(entries) = entries(doc)? else { return Ok(None) };
    Ok(entries.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(name)))
}

/// `text` with `agent` appended as a new `[[agents]]` entry.
pub fn add(text: &str, agent: &NewAgent) -> Result<String, EditError> {
    if agent.name == MAIN_AGENT || !valid_agent_name(&agent.name) {
        return Err(EditError::BadName(agent.name.clone()));
    }
    let mut doc = parse(text)?;
    if position(&doc, &agent.name)?.is_some() {
        return Err(EditError::Exists(agent.name.clone()));
    }
    let entry = entry(agent);
    let slot = doc.entry("agents").or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    slot.as_array_of_tables_mut().ok_or(EditError::NotEntries)?.push(entry);
    Ok(doc.to_string())
}

/// `text` without the `[[agents]]` entry called `name` (the rest untouched).
pub fn remove(text: &str, name: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let index = position(&doc, name)?.ok_or_else(|| EditError::Missing(name.to_owned()))?;
    let entries = doc.get_mut("agents").and_then(Item::as_array_of_tables_mut);
    let entries = entries.ok_or(EditError::NotEntries)?;
    entries.remove(index);
    if entries.is_empty() {
        doc.remove("agents");
    }
    Ok(doc.to_string())
}

fn entry(agent: &NewAgent) -> Table {
    let mut table = Table::new();
    table.insert("name", value(&agent.name));
    for (key, text) in [
        ("description", &agent.description),
        ("provider", &agent.provider),
        ("model", &agent.model),
        ("reasoning_effort", &agent.reasoning_effort),
    ] {
        if !text.is_empty() {
            table.insert(key, value(text));
        }
    }
    if let Some(workspace) = &agent.workspace {
        table.insert("workspace", value(workspace.display().to_string()));
    }
    if let Some(telegram) = &agent.telegram {
        table.insert("telegram", Item::Table(telegram_table(telegram)));
    }
    if let Some(matrix) = &agent.matrix {
        table.insert("matrix", Item::Table(matrix_table(matrix)));
    }
    table
}

fn telegram_table(telegram: &NewTelegram) -> Table {
    let mut table = Table::new();
    match &telegram.token {
        Some(token) => table.insert("token", value(token)),
        None => table.insert("token_file", value(telegram.token_file.display().to_string())),
    };
    if let Some(url) = &telegram.api_url {
        table.insert("api_url", value(url));
    }
    table.insert("allowed_user_ids", value(ids(&telegram.allowed_user_ids)));
    if !telegram.allowed_group_ids.is_empty() {
        table.insert("allowed_group_ids", value(ids(&telegram.allowed_group_ids)));
    }
    table
}

fn matrix_table(matrix: &NewMatrix) -> Table {
    let mut table = Table::new();
    table.insert("homeserver", value(&matrix.homeserver));
    table.insert("user_id", value(&matrix.user_id));
    if let Some(password) = &matrix.password {
        table.insert("password", value(password));
    } else if let Some(file) = &matrix.password_file {
        table.insert("password_file", value(file.display().to_string()));
    }
    table.insert("allowed_users", value(strings(&matrix.allowed_users)));
    if !matrix.allowed_rooms.is_empty() {
        table.insert("allowed_rooms", value(strings(&matrix.allowed_rooms)));
    }
    table
}

fn ids(ids: &[i64]) -> toml_edit::Array {
    ids.iter().copied().collect()
}

fn strings(items: &[String]) -> toml_edit::Array {
    items.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ductor_daemon::Config;

    const MINE: &str = "# my ductor\n[agent]\nmodel = \"opus\" # my model\n\n\
                        # the research bot\n[[agents]]\nname = \"researcher\"\n\
                        [agents.telegram]\ntoken = \"1:a\" # keep\n";

    fn writer() -> NewAgent {
        NewAgent {
            name: "writer".into(),
            description: "Writes the docs".into(),
            provider: "codex".into(),
            telegram: Some(NewTelegram {
                token_file: "/h/secrets/writer-telegram.token".into(),
                allowed_user_ids: vec![7],
                ..NewTelegram::default()
            }),
            ..NewAgent::default()
        }
    }

    #[test]
    fn add_appends_an_entry_and_keeps_comments() {
        let out = add(MINE, &writer()).unwrap();
        assert!(out.starts_with(MINE), "everything before is untouched:\n{out}");
        assert!(
            out.ends_with(
                "[[agents]]\nname = \"writer\"\ndescription = \"Writes the docs\"\n\
                 provider = \"codex\"\n\n[agents.telegram]\n\
                 token_file = \"/h/secrets/writer-telegram.token\"\nallowed_user_ids = [7]\n"
            ),
            "{out}"
        );
        let table: toml::Table = out.parse().unwrap();
        assert_eq!(table["agents"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn add_refuses_taken_main_and_invalid_names() {
        let named = |name: &str| NewAgent { name: name.into(), ..writer() };
        assert_eq!(add(MINE, &named("researcher")), Err(EditError::Exists("researcher".into())));
        assert_eq!(add(MINE, &named("main")), Err(EditError::BadName("main".into())));
        assert_eq!(add(MINE, &named("Bad Name")), Err(EditError::BadName("Bad Name".into())));
        assert_eq!(add(MINE, &named("")), Err(EditError::BadName(String::new())));
        assert_eq!(add("agents = 3\n", &writer()), Err(EditError::NotEntries));
        assert!(matches!(add("[[oops\n", &writer()), Err(EditError::Parse(_))));
    }

    #[test]
    fn remove_takes_out_only_that_entry() {
        let both = add(MINE, &writer()).unwrap();
        let out = remove(&both, "writer").unwrap();
        assert_eq!(out, MINE, "removing what was added gives the file back");
        let none = remove(MINE, "researcher").unwrap();
        assert!(none.contains("model = \"opus\" # my model"), "{none}");
        assert!(!none.contains("researcher") && !none.contains("[agents"), "{none}");
        assert_eq!(remove(MINE, "ghost"), Err(EditError::Missing("ghost".into())));
    }

    #[test]
    fn a_new_entry_that_config_refuses_names_the_key() {
        let relative = NewAgent { workspace: Some("rel/ws".into()), telegram: None, ..writer() };
        let text = add("", &relative).unwrap();
        let error = Config::parse(&text, "config.toml".as_ref(), &|_| None).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("agents.writer.workspace"), "{message}");
        let bad_user = NewAgent {
            telegram: None,
            matrix: Some(NewMatrix {
                homeserver: "https://m.example".into(),
                user_id: "nobody".into(),
                ..NewMatrix::default()
            }),
            ..writer()
        };
        let text = add("", &bad_user).unwrap();
        let message = Config::parse(&text, "config.toml".as_ref(), &|_| None).unwrap_err();
        assert!(message.to_string().contains("agents.writer.matrix.user_id"), "{message}");
    }
}
