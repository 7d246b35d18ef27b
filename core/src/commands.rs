//! Parsing what the user typed: `/commands` (also `!cmd`, and `/cmd@botname`)
//! and leading inline `@directives`. Resolution against the provider catalog
//! happens in the orchestrator; this module only splits text.

/// A chat command, with ductor's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Welcome.
    Start,
    /// Command reference.
    Help,
    /// Version and links.
    Info,
    /// Stop work, fresh session for the current provider.
    New,
    /// Fresh session for the current provider (when idle).
    Reset,
    /// Kill the running turn, drop the queue.
    Stop,
    /// Interrupt the running turn, keep the queue.
    Interrupt,
    /// Stop every chat's work.
    StopAll,
    /// Model selector, or a direct switch.
    Model(Option<String>),
    /// Reasoning effort selector, or a direct switch.
    Effort(Option<String>),
    /// Session summary.
    Status,
    /// Show MAINMEMORY.md.
    Memory,
    /// Versions, config summary, recent errors.
    Diagnose,
    /// This chat's sessions.
    Sessions,
}

impl Command {
    /// Quick commands answer at once, even while a turn runs. (In this design
    /// every command answers at once; the list documents which ones never
    /// touch the running turn.)
    pub fn is_quick(&self) -> bool {
        !matches!(self, Self::New | Self::Stop | Self::Interrupt | Self::StopAll)
    }
}

/// Parses `text` as a command; `None` when it is not one we know (the text is
/// then sent to the agent unchanged).
pub fn parse(text: &str) -> Option<Command> {
    let text = text.trim();
    let body = text.strip_prefix('/').or_else(|| text.strip_prefix('!'))?;
    let (word, arg) = match body.split_once(char::is_whitespace) {
        Some((word, arg)) => (word, arg.trim()),
        None => (body, ""),
    };
    let word = word.split_once('@').map_or(word, |(w, _)| w).to_ascii_lowercase();
    let arg = (!arg.is_empty()).then(|| arg.to_owned());
    Some(match word.as_str() {
        "start" => Command::Start,
        "help" => Command::Help,
        "info" => Command::Info,
        "new" => Command::New,
        "reset" => Command::Reset,
        "stop" => Command::Stop,
        "interrupt" | "esc" => Command::Interrupt,
        "stop_all" | "stopall" => Command::StopAll,
        "model" => Command::Model(arg),
        "effort" => Command::Effort(arg),
        "status" => Command::Status,
        "memory" => Command::Memory,
        "diagnose" => Command::Diagnose,
        "sessions" => Command::Sessions,
        _ => return None,
    })
}

/// Splits leading `@name` / `@name=value` tokens off `text`. Only tokens at
/// the very start count, so "mail @opus" has none.
pub fn leading_directives(text: &str) -> (Vec<String>, &str) {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix('@') {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let token = &after[..end];
        let name = token.split_once('=').map_or(token, |(n, _)| n);
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !valid {
            break;
        }
        tokens.push(token.to_owned());
        rest = after[end..].trim_start();
    }
    (tokens, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_args_and_bot_suffix() {
        assert_eq!(parse("/model codex"), Some(Command::Model(Some("codex".into()))));
        assert_eq!(parse("/model@ductor_bot"), Some(Command::Model(None)));
        assert_eq!(parse("!stop"), Some(Command::Stop));
        assert_eq!(parse("  /STATUS  "), Some(Command::Status));
        assert_eq!(parse("/compact"), None);
        assert_eq!(parse("hello /stop"), None);
    }

    #[test]
    fn only_leading_directives_count() {
        assert_eq!(
            leading_directives("@opus @codex fix it"),
            (vec!["opus".into(), "codex".into()], "fix it")
        );
        assert_eq!(leading_directives("mail @opus"), (vec![], "mail @opus"));
        assert_eq!(leading_directives("@gpt-5.1"), (vec!["gpt-5.1".into()], ""));
        assert_eq!(leading_directives("@1abc x"), (vec![], "@1abc x"));
    }
}
