//! `[agent]`: what a chat gets by default.

use serde::Deserialize;

use super::Invalid;

/// How much the CLI may do without asking. The sandbox is the fence either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionModeSetting {
    /// The CLI's own headless default (may deny tools it would ask about).
    Default,
    /// File edits inside the workspace without asking.
    AcceptEdits,
    /// Everything allowed; the runner's sandbox confines it.
    #[default]
    Bypass,
    /// Read-only planning.
    Plan,
    /// Each tool use the CLI would ask about is asked of the chat (buttons),
    /// where the CLI can; elsewhere as `default`.
    Ask,
}

/// What a message sent while a turn runs does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhileBusy {
    /// It waits for the turn to end, with a visible queue notice.
    #[default]
    Queue,
    /// It goes into the running turn where the CLI can take it (claude,
    /// codex), else it is queued.
    Steer,
}

/// Which files the agent may send back with `<file:...>` tags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAccess {
    /// Only files under the workspace.
    #[default]
    Workspace,
    /// Files under the user's home directory.
    Home,
    /// Any readable file.
    All,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Default provider: "claude", "codex" or "gemini".
    pub provider: String,
    /// Default model; empty selects the provider's default.
    pub model: String,
    /// Default reasoning effort; empty leaves the CLI's default.
    pub reasoning_effort: String,
    /// Permission mode for chat turns.
    pub permission_mode: PermissionModeSetting,
    /// IANA time zone of the user (daily reset, cron default); empty = UTC.
    pub timezone: String,
    /// A session idle this long starts fresh; 0 disables.
    pub idle_timeout_minutes: u32,
    /// Start a fresh session once a day at `daily_reset_hour`.
    pub daily_reset_enabled: bool,
    /// Hour (0-23, user's timezone) of the daily reset.
    pub daily_reset_hour: u8,
    /// A session with this many messages starts fresh; 0 disables.
    pub max_session_messages: u32,
    /// Longest a chat turn may run, in seconds.
    pub turn_timeout_seconds: u64,
    /// A turn with no CLI output for this long is stopped, in seconds.
    pub idle_output_timeout_seconds: u64,
    /// Which files the agent may attach to replies.
    pub file_access: FileAccess,
    /// `ask` mode: an approval request unanswered this long is denied.
    pub approval_timeout_seconds: u64,
    /// A message sent while a turn runs: queued, or steered into the turn.
    pub while_busy: WhileBusy,
    /// Chats whose users administer ductor, as `transport:chat_id` (e.g.
    /// `telegram:123456`, `matrix:!room:example.org`): their `/cron` manages
    /// every chat's jobs, and they are told when ductor starts. Every other
    /// chat manages only its own.
    pub admin_chats: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            provider: "claude".to_owned(),
            model: String::new(),
            reasoning_effort: String::new(),
            permission_mode: PermissionModeSetting::Bypass,
            timezone: String::new(),
            idle_timeout_minutes: 1440,
            daily_reset_enabled: false,
            daily_reset_hour: 4,
            max_session_messages: 0,
            turn_timeout_seconds: 600,
            idle_output_timeout_seconds: 300,
            file_access: FileAccess::Workspace,
            approval_timeout_seconds: 300,
            while_busy: WhileBusy::Queue,
            admin_chats: Vec::new(),
        }
    }
}

/// Provider names the runner knows.
pub(crate) const PROVIDERS: [&str; 3] = ["claude", "codex", "gemini"];

impl AgentConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !PROVIDERS.contains(&self.provider.as_str()) {
            return Err(Invalid::new(
                "agent.provider",
                format!("expected one of {PROVIDERS:?}, got {:?}", self.provider),
            ));
        }
        if self.daily_reset_hour > 23 {
            return Err(Invalid::new("agent.daily_reset_hour", "expected an hour from 0 to 23"));
        }
        if !self.timezone.is_empty() && !is_iana_zone(&self.timezone) {
            return Err(Invalid::new(
                "agent.timezone",
                format!("unknown IANA time zone {:?}", self.timezone),
            ));
        }
        for chat in &self.admin_chats {
            let ok = chat.split_once(':').is_some_and(|(t, c)| !t.is_empty() && !c.is_empty());
            if !ok {
                return Err(Invalid::new(
                    "agent.admin_chats",
                    format!("{chat:?} is not transport:chat_id (e.g. \"telegram:123456\")"),
                ));
            }
        }
        if self.approval_timeout_seconds == 0 {
            return Err(Invalid::new("agent.approval_timeout_seconds", "must be greater than 0"));
        }
        if self.turn_timeout_seconds == 0 {
            return Err(Invalid::new("agent.turn_timeout_seconds", "must be greater than 0"));
        }
        if self.idle_output_timeout_seconds == 0 {
            return Err(Invalid::new(
                "agent.idle_output_timeout_seconds",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// A zone name is plausible when the system zone database has it, or it is UTC.
/// (Full validation with the zone rules happens in core, which uses jiff.)
fn is_iana_zone(name: &str) -> bool {
    if name == "UTC" || name == "Etc/UTC" {
        return true;
    }
    if name.contains("..") || name.starts_with('/') {
        return false;
    }
    ["/usr/share/zoneinfo", "/usr/lib/zoneinfo"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(name).is_file())
        || !std::path::Path::new("/usr/share/zoneinfo").exists()
}
