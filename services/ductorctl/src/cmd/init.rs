//! `ductorctl init`: writes the commented default `config.toml` with the
//! answers applied. Questions are asked only when stdin is a terminal; every
//! answer is also a flag; with neither, the defaults are written. An existing
//! config is never overwritten without `--force`. The file is 0600.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use ductor_daemon::config::DEFAULT_CONFIG_TOML;
use ductor_daemon::{Config, DuctorHome};

/// `ductorctl init`.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Default provider for new chats: claude, codex or gemini.
    #[arg(long, value_parser = ["claude", "codex", "gemini"])]
    pub provider: Option<String>,

    /// Enable the Telegram gateway with the bot token in this file (keep it 0600).
    #[arg(long, value_name = "FILE")]
    pub telegram_token_file: Option<PathBuf>,

    /// A Telegram user id allowed to talk to the bot (repeatable).
    #[arg(long = "allowed-user-id", value_name = "ID")]
    pub allowed_user_ids: Vec<i64>,

    /// Enable the Matrix gateway on this homeserver URL.
    #[arg(long, value_name = "URL")]
    pub matrix_homeserver: Option<String>,

    /// The Matrix bot's user id, e.g. @ductor:example.org.
    #[arg(long, value_name = "MXID")]
    pub matrix_user_id: Option<String>,

    /// File holding the Matrix bot's password (keep it 0600).
    #[arg(long, value_name = "FILE")]
    pub matrix_password_file: Option<PathBuf>,

    /// A Matrix user allowed to talk to the bot (repeatable).
    #[arg(long = "matrix-allowed-user", value_name = "MXID")]
    pub matrix_allowed_users: Vec<String>,

    /// Never ask questions, even on a terminal.
    #[arg(long)]
    pub no_input: bool,

    /// Overwrite an existing config.toml.
    #[arg(long)]
    pub force: bool,
}

/// Runs `init`.
pub fn run(home: &DuctorHome, mut args: Args) -> anyhow::Result<ExitCode> {
    let path = home.config_file();
    if path.exists() && !args.force {
        anyhow::bail!("{} already exists; pass --force to overwrite it", path.display());
    }
    // The home is private before anything (a token, from `ask`) is written into it.
    crate::cmd::up::prepare_dirs(home)?;
    if !args.no_input && std::io::stdin().is_terminal() {
        ask(home, &mut args)?;
    }
    let text = apply(DEFAULT_CONFIG_TOML, &args)?;
    // The result must load exactly as the services will load it.
    Config::parse(&text, &path, &|_| None)?;
    ductor_daemon::paths::write_private(&path, text.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("next: `ductorctl doctor`, then `ductorctl up`");
    Ok(ExitCode::SUCCESS)
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

fn toml_path(path: &Path) -> anyhow::Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("resolve {}", path.display()))?;
    let text = absolute.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(toml_string(text))
}

/// Applies the answers to the commented default text, keeping its comments.
pub fn apply(default: &str, args: &Args) -> anyhow::Result<String> {
    let mut text = default.to_owned();
    if let Some(provider) = &args.provider {
        text = set_key(&text, "agent", "provider", &toml_string(provider))?;
    }
    if let Some(file) = &args.telegram_token_file {
        text = set_key(&text, "telegram", "enabled", "true")?;
        text = set_key(&text, "telegram", "token_file", &toml_path(file)?)?;
    }
    if !args.allowed_user_ids.is_empty() {
        let ids: Vec<String> = args.allowed_user_ids.iter().map(i64::to_string).collect();
        text = set_key(&text, "telegram", "allowed_user_ids", &format!("[{}]", ids.join(", ")))?;
    }
    if let Some(homeserver) = &args.matrix_homeserver {
        text = set_key(&text, "matrix", "enabled", "true")?;
        text = set_key(&text, "matrix", "homeserver", &toml_string(homeserver))?;
    }
    if let Some(user) = &args.matrix_user_id {
        text = set_key(&text, "matrix", "user_id", &toml_string(user))?;
    }
    if let Some(file) = &args.matrix_password_file {
        text = set_key(&text, "matrix", "password_file", &toml_path(file)?)?;
    }
    if !args.matrix_allowed_users.is_empty() {
        let users: Vec<String> = args.matrix_allowed_users.iter().map(|u| toml_string(u)).collect();
        text = set_key(&text, "matrix", "allowed_users", &format!("[{}]", users.join(", ")))?;
    }
    Ok(text)
}

/// Replaces the line `key = ...` (or the commented `# key = ...`) of
/// `[section]` with `key = value`.
fn set_key(text: &str, section: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let header = format!("[{section}]");
    let mut in_section = false;
    let mut done = false;
    let mut out = String::with_capacity(text.len() + value.len());
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_section = trimmed == header;
        }
        let bare = trimmed.trim_start_matches('#').trim_start();
        let is_key = bare.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
        if in_section && !done && is_key {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    anyhow::ensure!(done, "the default config has no key {section}.{key}");
    Ok(out)
}

fn prompt(question: &str, default: &str) -> anyhow::Result<String> {
    let mut stdout = std::io::stdout();
    if default.is_empty() {
        write!(stdout, "{question}: ")?;
    } else {
        write!(stdout, "{question} [{default}]: ")?;
    }
    stdout.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("read the answer")?;
    let answer = answer.trim();
    Ok(if answer.is_empty() { default.to_owned() } else { answer.to_owned() })
}

fn yes(question: &str) -> anyhow::Result<bool> {
    Ok(matches!(prompt(question, "n")?.to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Asks for what the flags did not give. A pasted token is stored in
/// `secrets/telegram_token` (0600), never in config.toml.
fn ask(home: &DuctorHome, args: &mut Args) -> anyhow::Result<()> {
    println!("Setting up {} (Enter keeps the default).", home.config_file().display());
    if args.provider.is_none() {
        loop {
            let provider = prompt("Default provider (claude, codex, gemini)", "claude")?;
            if ["claude", "codex", "gemini"].contains(&provider.as_str()) {
                args.provider = Some(provider);
                break;
            }
            println!("  please answer claude, codex or gemini");
        }
    }
    if args.telegram_token_file.is_none() && yes("Enable the Telegram gateway? (y/n)")? {
        let token = prompt("Bot token from @BotFather (stored 0600 in secrets/)", "")?;
        if !token.is_empty() {
            let file = home.secrets_dir().join("telegram_token");
            ductor_daemon::paths::write_private(&file, token.as_bytes())
                .with_context(|| format!("write {}", file.display()))?;
            args.telegram_token_file = Some(file);
        }
        if args.allowed_user_ids.is_empty() {
            let ids = prompt("Your Telegram user id(s), comma-separated", "")?;
            for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                args.allowed_user_ids
                    .push(id.parse().with_context(|| format!("`{id}` is not a user id"))?);
            }
        }
    }
    if args.matrix_homeserver.is_none() && yes("Enable the Matrix gateway? (y/n)")? {
        args.matrix_homeserver = Some(prompt("Homeserver URL", "https://matrix.org")?);
        args.matrix_user_id = Some(prompt("Bot user id (@name:server)", "")?);
        let file = prompt("File holding the bot's password", "")?;
        if !file.is_empty() {
            args.matrix_password_file = Some(PathBuf::from(file));
        }
        let users = prompt("Allowed users (@you:server), comma-separated", "")?;
        args.matrix_allowed_users =
            users.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_applied_and_comments_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let token = tmp.path().join("token");
        std::fs::write(&token, "123:abc\n").unwrap();
        let args = Args {
            provider: Some("codex".into()),
            telegram_token_file: Some(token.clone()),
            allowed_user_ids: vec![42, 7],
            ..Args::default()
        };
        let text = apply(DEFAULT_CONFIG_TOML, &args).unwrap();
        assert!(text.contains("# Bot token from @BotFather"));
        let config = Config::parse(&text, Path::new("config.toml"), &|_| None).unwrap();
        assert_eq!(config.agent.provider, "codex");
        assert!(config.telegram.enabled);
        assert_eq!(config.telegram.token.expose(), "123:abc");
        assert_eq!(config.telegram.allowed_user_ids, vec![42, 7]);
        assert_eq!(config.telegram.token_file.as_deref(), Some(token.as_path()));
    }

    #[test]
    fn no_answers_means_the_defaults() {
        let text = apply(DEFAULT_CONFIG_TOML, &Args::default()).unwrap();
        assert_eq!(text, DEFAULT_CONFIG_TOML);
    }

    #[test]
    fn unknown_key_is_an_error() {
        assert!(set_key(DEFAULT_CONFIG_TOML, "agent", "nope", "1").is_err());
    }
}
