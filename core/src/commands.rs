//! The one list of chat commands, and parsing what the user typed:
//! `/commands` (also `!cmd`, and `/cmd@botname`) and leading inline
//! `@directives`.
//!
//! [`COMMANDS`] is the only place a command is named: parsing, `/help`, and
//! the menu every gateway shows (core sends it in `Welcome`, Telegram turns it
//! into `setMyCommands`) all read it, so no surface can offer a command core
//! does not answer. Resolution against the provider catalog happens in the
//! orchestrator; this module only splits text.

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
    /// Kill the running turn, drop the queue; with `@name`, a named
    /// session's turn instead.
    Stop(Option<String>),
    /// Interrupt the running turn, keep the queue.
    Interrupt,
    /// Stop every chat's work.
    StopAll,
    /// Model selector, or a direct switch.
    Model(Option<String>),
    /// Reasoning effort selector, or a direct switch.
    Effort(Option<String>),
    /// Permission mode selector, or a direct switch.
    Mode(Option<String>),
    /// Session summary.
    Status,
    /// Show MAINMEMORY.md.
    Memory,
    /// Versions, config summary, recent errors.
    Diagnose,
    /// This chat's named sessions (and provider sessions).
    Sessions,
    /// A new named session, or a follow-up (`/session @name …`).
    Session(String),
    /// Delegated tasks.
    Tasks,
    /// Scheduled jobs (answered by automation), with its arguments.
    Cron(String),
    /// Browse the workspace and get a file (admin chats).
    ShowFiles(Option<String>),
    /// Restart ductor, or one service of it (admin chats); its chat hears
    /// when it is back.
    Restart(Option<String>),
    /// The running version and how to upgrade (admin chats).
    Upgrade,
    /// The chats of this transport ductor has sessions in (admin chats).
    Where,
    /// The bot leaves a chat of this transport (this one by default; admin chats).
    Leave(Option<String>),
    /// The agents, their gateways and sessions (admin chats).
    Agents,
    /// Start an agent's gateways (admin chats).
    AgentStart(Option<String>),
    /// Stop an agent's gateways (admin chats).
    AgentStop(Option<String>),
    /// Restart an agent's gateways (admin chats).
    AgentRestart(Option<String>),
    /// How agents ask each other, and the agent commands.
    AgentCommands,
}

/// One entry of the command list.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The name typed after `/` (or `!`).
    pub name: &'static str,
    /// Other spellings that mean the same.
    pub aliases: &'static [&'static str],
    /// How arguments are written in `/help`, or empty.
    pub usage: &'static str,
    /// One line for menus and `/help`.
    pub description: &'static str,
    /// Shown in command menus (`/start` is not: the platform sends it).
    pub in_menu: bool,
    /// The command, from its argument (trimmed, `None` when empty).
    make: fn(Option<String>) -> Command,
}

const fn spec(
    name: &'static str,
    usage: &'static str,
    description: &'static str,
    make: fn(Option<String>) -> Command,
) -> CommandSpec {
    CommandSpec { name, aliases: &[], usage, description, in_menu: true, make }
}

/// Every command core answers, in the order menus and `/help` show them.
pub const COMMANDS: &[CommandSpec] = &[
    spec("new", "", "Stop what runs and start a fresh session", |_| Command::New),
    spec("stop", "[@name]", "Stop the running turn and drop queued messages", Command::Stop),
    CommandSpec {
        aliases: &["esc"],
        ..spec(
            "interrupt",
            "",
            "Interrupt the running turn (like Esc); the queue still runs",
            |_| Command::Interrupt,
        )
    },
    CommandSpec {
        aliases: &["stopall"],
        ..spec("stop_all", "", "Stop everything in every chat", |_| Command::StopAll)
    },
    spec("model", "[NAME]", "Choose provider and model", Command::Model),
    spec("effort", "[LEVEL]", "Choose the reasoning effort", Command::Effort),
    spec(
        "mode",
        "[ask|default|accept_edits|plan|bypass]",
        "What the agent may do without asking",
        Command::Mode,
    ),
    spec("status", "", "Session, usage, model, runner health", |_| Command::Status),
    spec("reset", "", "Fresh session for the current provider", |_| Command::Reset),
    spec(
        "session",
        "[@provider|@name] <prompt>",
        "Start (or continue) a background session",
        |arg| Command::Session(arg.unwrap_or_default()),
    ),
    spec("sessions", "", "Background sessions: list, end", |_| Command::Sessions),
    spec("tasks", "", "Delegated tasks: running, waiting, finished", |_| Command::Tasks),
    spec("memory", "", "Show the agent's main memory", |_| Command::Memory),
    spec("showfiles", "[FOLDER]", "Browse the workspace and get a file", Command::ShowFiles),
    spec("cron", "[list|run|pause|resume|history ID]", "Scheduled jobs", |arg| {
        Command::Cron(arg.unwrap_or_default())
    }),
    spec("diagnose", "", "Versions, configuration, recent errors", |_| Command::Diagnose),
    spec(
        "restart",
        "[core|runner|GATEWAY]",
        "Restart ductor, or one of its services (admin chats)",
        Command::Restart,
    ),
    spec("upgrade", "", "Running version and how to upgrade (admin chats)", |_| Command::Upgrade),
    spec("where", "", "The chats ductor has sessions in (admin chats)", |_| Command::Where),
    spec(
        "leave",
        "[CHAT_ID]",
        "The bot leaves a chat, this one by default (admin chats)",
        Command::Leave,
    ),
    spec("agents", "", "The agents and their gateways (admin chats)", |_| Command::Agents),
    spec("agent_start", "NAME", "Start an agent's gateways (admin chats)", Command::AgentStart),
    spec("agent_stop", "NAME", "Stop an agent's gateways (admin chats)", Command::AgentStop),
    spec(
        "agent_restart",
        "NAME",
        "Restart an agent's gateways (admin chats)",
        Command::AgentRestart,
    ),
    spec("agent_commands", "", "How agents ask each other", |_| Command::AgentCommands),
    spec("info", "", "Version and what ductor is", |_| Command::Info),
    spec("help", "", "This command reference", |_| Command::Help),
    CommandSpec { in_menu: false, ..spec("start", "", "Welcome", |_| Command::Start) },
];

/// The spec named (or aliased) `word`, case-insensitively.
fn lookup(word: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| {
        spec.name.eq_ignore_ascii_case(word)
            || spec.aliases.iter().any(|alias| alias.eq_ignore_ascii_case(word))
    })
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
    let word = word.split_once('@').map_or(word, |(w, _)| w);
    let spec = lookup(word)?;
    let arg = (!arg.is_empty()).then(|| arg.to_owned());
    Some((spec.make)(arg))
}

/// The `/help` text, from [`COMMANDS`].
pub fn help_text() -> String {
    let mut text = String::from("Commands");
    for spec in COMMANDS.iter().filter(|spec| spec.in_menu) {
        let usage = if spec.usage.is_empty() { String::new() } else { format!(" {}", spec.usage) };
        text.push_str(&format!("\n/{}{usage}: {}", spec.name, spec.description));
    }
    text.push_str(
        "\n\nStart a message with @provider or @model (e.g. @codex, @opus) to use it for that \
         message only.",
    );
    text
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
        assert_eq!(parse("!stop"), Some(Command::Stop(None)));
        assert_eq!(parse("/stop @redowl"), Some(Command::Stop(Some("@redowl".into()))));
        assert_eq!(parse("/session @codex fix it"), Some(Command::Session("@codex fix it".into())));
        assert_eq!(parse("  /STATUS  "), Some(Command::Status));
        assert_eq!(parse("/esc"), Some(Command::Interrupt));
        assert_eq!(parse("!cron@ductor_bot run daily"), Some(Command::Cron("run daily".into())));
        assert_eq!(parse("/cron"), Some(Command::Cron(String::new())));
        assert_eq!(parse("/cronjob"), None);
        assert_eq!(parse("/compact"), None);
        assert_eq!(parse("hello /stop"), None);
        assert_eq!(parse("/tasks"), Some(Command::Tasks));
    }

    #[test]
    fn every_listed_command_parses_and_is_in_help() {
        let help = help_text();
        for spec in COMMANDS {
            assert!(parse(&format!("/{}", spec.name)).is_some(), "/{} parses", spec.name);
            for alias in spec.aliases {
                assert_eq!(parse(&format!("/{alias}")), parse(&format!("/{}", spec.name)));
            }
            assert_eq!(
                help.contains(&format!("/{} ", spec.name))
                    || help.contains(&format!("/{}:", spec.name)),
                spec.in_menu,
                "/{} in help",
                spec.name
            );
        }
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
