//! The effective configuration as a TOML table, and what changed between two
//! of them, key by key.
//!
//! "Effective" is the file laid over the commented default file, so a key
//! written with its default value is no change and a key removed from the
//! file is a change back to its default. Comparing tables rather than the
//! typed structs gives one dotted key per leaf without a `Serialize` on every
//! section. Secrets are replaced by a digest ([`redacted`]) wherever a table
//! leaves the process (the applied record), so a changed token is still seen.

use std::collections::BTreeSet;

use sha2::{Digest as _, Sha256};
use toml::{Table, Value};

use crate::config::DEFAULT_CONFIG_TOML;

/// The defaults with `text` laid over them; `None` when `text` is not TOML
/// (callers have validated it first, so that is a bug or a race).
pub fn effective(text: &str) -> Option<Table> {
    let mut base: Table = DEFAULT_CONFIG_TOML.parse().ok()?;
    let file: Table = text.parse().ok()?;
    merge(&mut base, file);
    Some(base)
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(inner)), Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Every leaf of `table` as (dotted key, value). Arrays are leaves: a list
/// (an allowlist, `heartbeat.targets`) changes as a whole.
pub fn leaves(table: &Table) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    collect(table, "", &mut out);
    out
}

fn collect<'a>(table: &'a Table, prefix: &str, out: &mut Vec<(String, &'a Value)>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            Value::Table(inner) => collect(inner, &dotted, out),
            value => out.push((dotted, value)),
        }
    }
}

/// The value at a dotted key, if it is a leaf of `table`.
pub fn get<'a>(table: &'a Table, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Sets the value at a dotted key, making tables on the way; `None` removes it.
pub fn set(table: &mut Table, dotted: &str, value: Option<Value>) {
    let (parents, last) = match dotted.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, dotted),
    };
    let mut current = table;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        let entry = current.entry(part).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        current = next;
    }
    match value {
        Some(value) => {
            current.insert(last.to_owned(), value);
        }
        None => {
            current.remove(last);
        }
    }
}

/// The dotted keys whose leaf differs between `old` and `new` (present in
/// one only, or with another value), sorted.
pub fn changed_keys(old: &Table, new: &Table) -> Vec<String> {
    let old_leaves = leaves(old);
    let new_leaves = leaves(new);
    let mut keys = BTreeSet::new();
    for (key, value) in &new_leaves {
        if get(old, key) != Some(*value) {
            keys.insert(key.clone());
        }
    }
    for (key, _) in &old_leaves {
        if get(new, key).is_none() {
            keys.insert(key.clone());
        }
    }
    keys.into_iter().collect()
}

/// Is this dotted key a secret (its value never leaves the process)?
/// The gateway secrets, and every value of a provider's `env` (it often
/// carries an API key).
pub fn is_secret(dotted: &str) -> bool {
    let parts: Vec<&str> = dotted.split('.').collect();
    matches!(parts.as_slice(), ["telegram", "token"] | ["matrix", "password"])
        || matches!(parts.as_slice(), ["providers", _, "env", _, ..])
}

/// `table` with every secret replaced by `sha256:` and the first 16 hex
/// digits of its digest: enough to see that it changed, nothing to learn it by.
pub fn redacted(table: &Table) -> Table {
    let mut out = table.clone();
    for (key, value) in leaves(table) {
        if is_secret(&key) {
            let text = match value {
                Value::String(s) if s.is_empty() => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let digest = Sha256::digest(text.as_bytes());
            let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            set(&mut out, &key, Some(Value::String(format!("sha256:{short}"))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        effective(text).expect("valid TOML")
    }

    #[test]
    fn a_default_written_out_is_no_change_and_a_removed_key_is() {
        let base = table("");
        assert!(changed_keys(&base, &table("[telegram]\nburst = 3\n")).is_empty());
        let allowed = table("[telegram]\nallowed_user_ids = [1, 2]\n");
        assert_eq!(changed_keys(&base, &allowed), ["telegram.allowed_user_ids"]);
        assert_eq!(changed_keys(&allowed, &base), ["telegram.allowed_user_ids"]);
    }

    #[test]
    fn keys_are_leaves_and_new_tables_are_reported_by_leaf() {
        let old = table("");
        let new = table(
            "[agent]\nmodel = \"m\"\nprovider = \"codex\"\n\
             [providers.claude]\nenv = { A = \"1\", B = \"2\" }\n\
             [telegram]\ntoken_file = \"/t\"\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            [
                "agent.model",
                "agent.provider",
                "providers.claude.env.A",
                "providers.claude.env.B",
                "telegram.token_file"
            ]
        );
    }

    #[test]
    fn secrets_are_digested_never_copied() {
        let text =
            "[telegram]\ntoken = \"1:SECRET\"\n[providers.codex]\nenv = { KEY = \"sk-XYZ\" }\n";
        let shown = toml::to_string(&redacted(&table(text))).expect("serialize");
        assert!(!shown.contains("SECRET") && !shown.contains("sk-XYZ"), "{shown}");
        assert!(shown.contains("sha256:"), "{shown}");
        let other = redacted(&table("[telegram]\ntoken = \"1:OTHER\"\n"));
        assert!(changed_keys(&redacted(&table(text)), &other).contains(&"telegram.token".into()));
        assert!(is_secret("matrix.password") && !is_secret("matrix.password_file"));
    }

    #[test]
    fn set_and_get_round_trip() {
        let mut t = Table::new();
        set(&mut t, "a.b.c", Some(Value::Integer(1)));
        assert_eq!(get(&t, "a.b.c"), Some(&Value::Integer(1)));
        set(&mut t, "a.b.c", None);
        assert_eq!(get(&t, "a.b.c"), None);
    }
}
