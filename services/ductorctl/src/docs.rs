//! `docs/config.md`, generated from the commented default config
//! (`ductor_daemon::config::DEFAULT_CONFIG_TOML`): one table per section with
//! every key, its default and its comment. A test fails when the committed
//! file differs; regenerate with `ductorctl config docs > docs/config.md`.

use ductor_daemon::config::DEFAULT_CONFIG_TOML;

struct Key {
    name: String,
    default: String,
    description: String,
}

struct Section {
    name: String,
    description: String,
    keys: Vec<Key>,
}

/// A comment line of the form `# key = value` (an optional key shown commented out).
fn commented_key(comment: &str) -> Option<(String, String)> {
    let (key, value) = comment.split_once(" = ")?;
    let key = key.trim();
    let is_key = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_key.then(|| (key.to_owned(), value.trim().to_owned()))
}

/// A comment line `[[name]]` or `[name.sub]`: an optional table; its name as
/// shown in the heading (`[agents]` for the array `[[agents]]`).
fn commented_section(comment: &str) -> Option<String> {
    let name = comment.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")).map_or_else(
        || comment.strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(str::to_owned),
        |array| Some(format!("[{array}]")),
    )?;
    let plain = name.trim_matches(|c| c == '[' || c == ']');
    let is_table = !plain.is_empty()
        && plain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    is_table.then_some(name)
}

fn parse(text: &str) -> (String, Vec<Section>) {
    let mut intro = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if sections.is_empty() && !pending.is_empty() {
                intro.append(&mut pending);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push(Section {
                name: name.to_owned(),
                description: pending.join(" "),
                keys: Vec::new(),
            });
            pending.clear();
            continue;
        }
        let (name, default, optional) = if let Some(comment) = line.strip_prefix('#') {
            if let Some(name) = commented_section(comment.trim()) {
                // An optional table shown commented out (`# [[agents]]`).
                sections.push(Section { name, description: pending.join(" "), keys: Vec::new() });
                pending.clear();
                continue;
            }
            match commented_key(comment.trim()) {
                Some((name, example)) if !sections.is_empty() => (name, example, true),
                _ => {
                    pending.push(comment.trim().to_owned());
                    continue;
                }
            }
        } else if let Some((name, value)) = line.split_once(" = ") {
            (name.trim().to_owned(), value.trim().to_owned(), false)
        } else {
            continue;
        };
        let description = pending.join(" ");
        pending.clear();
        if let Some(section) = sections.last_mut() {
            let default =
                if optional { format!("unset (e.g. `{default}`)") } else { format!("`{default}`") };
            section.keys.push(Key { name, default, description });
        }
    }
    (intro.join(" "), sections)
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;")
}

/// The whole `docs/config.md`.
pub fn config_markdown() -> String {
    let (intro, sections) = parse(DEFAULT_CONFIG_TOML);
    let mut out = String::new();
    out.push_str("<!-- Generated from services/daemon/src/config/default.toml by `ductorctl config docs`; do not edit. -->\n");
    out.push_str("# Configuration reference\n\n");
    out.push_str(
        "ductor reads one file, `$DUCTOR_HOME/config.toml` (default `~/.ductor/config.toml`), \
         with a section per service. `ductorctl init` writes it with these defaults and comments; \
         `ductorctl config check` validates it (exit 64 naming the key at fault).\n\n",
    );
    out.push_str(&intro);
    out.push_str("\n\n");
    let mut described: Vec<(String, String)> = Vec::new();
    for section in &sections {
        out.push_str(&format!("## `[{}]`\n\n", section.name));
        if !section.description.is_empty() {
            out.push_str(&format!("{}\n\n", section.description));
        }
        out.push_str("| Key | Default | Description |\n| --- | --- | --- |\n");
        let mut previous: Option<&str> = None;
        for key in &section.keys {
            let description = if !key.description.is_empty() {
                described.push((key.name.clone(), format!("{}.{}", section.name, key.name)));
                key.description.clone()
            } else if let Some((_, full)) = described.iter().find(|(n, _)| *n == key.name) {
                format!("As `{full}`.")
            } else if let Some(previous) = previous {
                format!("See `{previous}`.")
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                key.name,
                escape(&key.default),
                escape(&description)
            ));
            previous = Some(&key.name);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_key_is_documented() {
        let markdown = config_markdown();
        let config: toml::Table = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        for (section, table) in &config {
            let toml::Value::Table(table) = table else { continue };
            for (key, value) in table {
                if let toml::Value::Table(inner) = value {
                    for key in inner.keys() {
                        assert!(markdown.contains(&format!("| `{key}` |")), "{section}.{key}");
                    }
                    continue;
                }
                assert!(markdown.contains(&format!("| `{key}` |")), "{section}.{key} missing");
            }
        }
        assert!(markdown.contains("## `[launcher]`"));
        assert!(markdown.contains("| `token_file` | unset"));
    }

    #[test]
    fn committed_docs_config_md_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let expected = config_markdown();
        if std::env::var_os("DUCTOR_UPDATE_DOCS").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == expected,
            "docs/config.md is stale: run `DUCTOR_UPDATE_DOCS=1 cargo test -p ductorctl docs` \
             or `ductorctl config docs > docs/config.md`"
        );
    }
}
