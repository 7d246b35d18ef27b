//! Merging mapped keys into the user's `config.toml` with `toml_edit`, so
//! its comments, order and every other key stay as they are.

use std::sync::OnceLock;

use toml_edit::DocumentMut;

/// What happened to one key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyStatus {
    /// Written (or to be written); `was` is what the file had, if anything.
    Set { was: Option<toml::Value> },
    /// The file already says so, or our default does.
    Same,
    /// The user set something else; kept (`--force` replaces it).
    Conflict { have: toml::Value },
}

/// Why the file cannot be merged into.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("config.toml is not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error("config.toml has {0} as something other than a table")]
    NotATable(String),
}

fn defaults() -> &'static toml::Table {
    static DEFAULTS: OnceLock<toml::Table> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        ductor_daemon::config::DEFAULT_CONFIG_TOML.parse::<toml::Table>().unwrap_or_default()
    })
}

fn split(dotted: &str) -> (&str, &str) {
    dotted.split_once('.').unwrap_or(("", dotted))
}

/// Our default for `section.key`, if the default file names it.
pub fn default_of(dotted: &str) -> Option<toml::Value> {
    let (section, key) = split(dotted);
    defaults().get(section)?.get(key).cloned()
}

fn to_edit(value: &toml::Value) -> toml_edit::Value {
    // The TOML text of a value parses back into the same value.
    let text = format!("v = {value}");
    text.parse::<DocumentMut>()
        .ok()
        .and_then(|doc| doc.get("v").and_then(|i| i.as_value()).cloned())
        .unwrap_or_else(|| toml_edit::Value::from(value.to_string()))
}

fn from_edit(value: &toml_edit::Value) -> Option<toml::Value> {
    let mut value = value.clone();
    value.decor_mut().clear();
    let table: toml::Table = format!("v = {value}").parse().ok()?;
    table.get("v").cloned()
}

/// The user's file, to merge keys into.
#[derive(Debug, Clone)]
pub struct Merger {
    doc: DocumentMut,
    force: bool,
}

impl Merger {
    /// Parses `text` (empty: a new file).
    pub fn new(text: &str, force: bool) -> Result<Self, MergeError> {
        Ok(Self { doc: text.parse()?, force })
    }

    /// What the file says for `section.key`.
    pub fn current(&self, dotted: &str) -> Option<toml::Value> {
        let (section, key) = split(dotted);
        self.doc.get(section)?.get(key)?.as_value().and_then(from_edit)
    }

    /// Sets `section.key` to `value` unless the user chose something else.
    pub fn set(&mut self, dotted: &str, value: &toml::Value) -> Result<KeyStatus, MergeError> {
        let current = self.current(dotted);
        let default = default_of(dotted);
        let status = match &current {
            Some(have) if have == value => return Ok(KeyStatus::Same),
            None if default.as_ref() == Some(value) => return Ok(KeyStatus::Same),
            Some(have) if Some(have) != default.as_ref() && !self.force => {
                return Ok(KeyStatus::Conflict { have: have.clone() });
            }
            _ => KeyStatus::Set { was: current },
        };
        let (section, key) = split(dotted);
        let table = self
            .doc
            .entry(section)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_like_mut()
            .ok_or_else(|| MergeError::NotATable(section.to_owned()))?;
        match table.get_mut(key).and_then(|i| i.as_value_mut()) {
            Some(slot) => {
                // Keep the comment after the value.
                let decor = slot.decor().clone();
                *slot = to_edit(value);
                *slot.decor_mut() = decor;
            }
            None => {
                table.insert(key, toml_edit::Item::Value(to_edit(value)));
            }
        }
        Ok(status)
    }

    /// The merged text.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_stay_defaults_are_not_choices_and_other_values_conflict() {
        let text = "# mine\n[agent]\nmodel = \"opus\" # my model\nidle_timeout_minutes = 1440\n\n[telegram]\nallowed_user_ids = [1]\n";
        let mut merger = Merger::new(text, false).unwrap();
        let s = |v: &str| toml::Value::String(v.into());
        assert_eq!(
            merger.set("agent.model", &s("sonnet")).unwrap(),
            KeyStatus::Conflict { have: s("opus") }
        );
        // 1440 is our default: the user did not choose it.
        assert!(matches!(
            merger.set("agent.idle_timeout_minutes", &toml::Value::Integer(90)).unwrap(),
            KeyStatus::Set { was: Some(_) }
        ));
        assert_eq!(merger.set("agent.provider", &s("claude")).unwrap(), KeyStatus::Same, "default");
        let ids = toml::Value::Array(vec![toml::Value::Integer(1)]);
        assert_eq!(merger.set("telegram.allowed_user_ids", &ids).unwrap(), KeyStatus::Same);
        assert!(matches!(
            merger.set("heartbeat.enabled", &toml::Value::Boolean(true)).unwrap(),
            KeyStatus::Set { was: None }
        ));
        let out = merger.text();
        assert!(out.starts_with("# mine\n"), "{out}");
        assert!(out.contains("model = \"opus\" # my model"), "{out}");
        assert!(out.contains("idle_timeout_minutes = 90"), "{out}");
        assert!(out.contains("[heartbeat]\nenabled = true"), "{out}");
        let mut forced = Merger::new(text, true).unwrap();
        assert!(matches!(forced.set("agent.model", &s("sonnet")).unwrap(), KeyStatus::Set { .. }));
        assert!(forced.text().contains("model = \"sonnet\" # my model"));
    }
}
