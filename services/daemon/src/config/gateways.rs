//! `[telegram]` and `[matrix]`: the gateway sections.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Invalid, read_secret_file};
use crate::Secret;

/// `[telegram]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// Start the Telegram gateway with `ductorctl up`.
    pub enabled: bool,
    /// Bot token; `DUCTOR_TELEGRAM_TOKEN` or `token_file` also work.
    pub token: Secret,
    /// File holding the bot token (keep it 0600).
    pub token_file: Option<PathBuf>,
    /// Bot API base URL (a local Bot API server, or a test server).
    pub api_url: String,
    /// Users who may talk to the bot. Empty allows no one.
    pub allowed_user_ids: Vec<i64>,
    /// Groups the bot works in (senders must also be allowed users). Empty allows none.
    pub allowed_group_ids: Vec<i64>,
    /// In groups, answer only when mentioned or replied to.
    pub group_mention_only: bool,
    /// Long-run pace of one chat: one message or edit per this many milliseconds.
    pub edit_interval_ms: u64,
    /// Messages and edits one chat may get at once before the pace applies
    /// (previews leave the last one to the final answer).
    pub burst: u32,
    /// The final answer notifies: sent as a new message (its silent preview
    /// deleted) instead of an edit, which Telegram never notifies.
    pub notify_final: bool,
    /// Largest incoming file downloaded, in bytes.
    pub max_download_bytes: u64,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token: Secret::default(),
            token_file: None,
            api_url: "https://api.telegram.org".to_owned(),
            allowed_user_ids: Vec::new(),
            allowed_group_ids: Vec::new(),
            group_mention_only: false,
            edit_interval_ms: 1000,
            burst: 3,
            notify_final: true,
            max_download_bytes: 20 * 1024 * 1024,
        }
    }
}

impl TelegramConfig {
    pub(crate) fn resolve_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Invalid> {
        if let Some(token) = env("DUCTOR_TELEGRAM_TOKEN").filter(|t| !t.is_empty()) {
            self.token = Secret::new(token);
        } else if self.token.is_empty()
            && let Some(path) = &self.token_file
        {
            self.token = Secret::new(read_secret_file("telegram.token_file", path)?);
        }
        Ok(())
    }

    /// `require_token`: false in services that never use the token.
    pub(crate) fn validate(&self, require_token: bool) -> Result<(), Invalid> {
        if require_token && self.enabled && self.token.is_empty() {
            return Err(Invalid::new(
                "telegram.token",
                "the Telegram gateway is enabled but has no token (set it, DUCTOR_TELEGRAM_TOKEN, or token_file)",
            ));
        }
        if !self.token.is_empty() && !self.token.expose().contains(':') {
            return Err(Invalid::new(
                "telegram.token",
                "does not look like a bot token (<id>:<secret>)",
            ));
        }
        if !(self.api_url.starts_with("http://") || self.api_url.starts_with("https://")) {
            return Err(Invalid::new("telegram.api_url", "must be an http:// or https:// URL"));
        }
        if self.edit_interval_ms < 100 {
            return Err(Invalid::new("telegram.edit_interval_ms", "must be at least 100"));
        }
        if !(2..=20).contains(&self.burst) {
            return Err(Invalid::new(
                "telegram.burst",
                "must be 2 to 20 (one slot is kept for the final answer)",
            ));
        }
        Ok(())
    }
}

/// How the Matrix gateway streams a reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatrixStreaming {
    /// Text between tool calls as its own message, the final answer last.
    #[default]
    Segment,
    /// One message edited with `m.replace`, rolling over after `max_edits`.
    Edit,
}

/// `[matrix]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatrixConfig {
    /// Start the Matrix gateway with `ductorctl up`.
    pub enabled: bool,
    /// Homeserver base URL.
    pub homeserver: String,
    /// The bot's Matrix user id.
    pub user_id: String,
    /// Used once to log in; `DUCTOR_MATRIX_PASSWORD` or `password_file` also work.
    pub password: Secret,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Users who may talk to the bot. Empty allows no one.
    pub allowed_users: Vec<String>,
    /// Rooms (ids or aliases) the bot works in; empty allows any room of an allowed user.
    pub allowed_rooms: Vec<String>,
    /// In rooms that are not DMs, answer only when mentioned or replied to.
    pub group_mention_only: bool,
    /// `segment` or `edit`.
    pub streaming: MatrixStreaming,
    /// Edits of one message before rolling over to a new one (edit mode).
    pub max_edits: u32,
    /// Largest incoming file downloaded, in bytes.
    pub max_download_bytes: u64,
    /// Post a short line when a tool starts (suppressed by default: only text reaches the room).
    pub show_tool_markers: bool,
    /// Display name of the bot's device, set at the first login.
    pub device_name: String,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            homeserver: String::new(),
            user_id: String::new(),
            password: Secret::default(),
            password_file: None,
            allowed_users: Vec::new(),
            allowed_rooms: Vec::new(),
            group_mention_only: false,
            streaming: MatrixStreaming::Segment,
            max_edits: 30,
            max_download_bytes: 50 * 1024 * 1024,
            show_tool_markers: false,
            device_name: "ductor".to_owned(),
        }
    }
}

impl MatrixConfig {
    pub(crate) fn resolve_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Invalid> {
        if let Some(password) = env("DUCTOR_MATRIX_PASSWORD").filter(|p| !p.is_empty()) {
            self.password = Secret::new(password);
        } else if self.password.is_empty()
            && let Some(path) = &self.password_file
        {
            self.password = Secret::new(read_secret_file("matrix.password_file", path)?);
        }
        Ok(())
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !self.enabled {
            return Ok(());
        }
        if !(self.homeserver.starts_with("http://") || self.homeserver.starts_with("https://")) {
            return Err(Invalid::new("matrix.homeserver", "must be an http:// or https:// URL"));
        }
        if !(self.user_id.starts_with('@') && self.user_id.contains(':')) {
            return Err(Invalid::new("matrix.user_id", "must look like @name:server"));
        }
        if self.max_edits == 0 {
            return Err(Invalid::new("matrix.max_edits", "must be greater than 0"));
        }
        if let Some(bad) =
            self.allowed_users.iter().find(|u| !(u.starts_with('@') && u.contains(':')))
        {
            return Err(Invalid::new(
                "matrix.allowed_users",
                format!("{bad:?} must look like @name:server"),
            ));
        }
        if let Some(bad) = self
            .allowed_rooms
            .iter()
            .find(|r| !(r.starts_with('!') || (r.starts_with('#') && r.contains(':'))))
        {
            return Err(Invalid::new(
                "matrix.allowed_rooms",
                format!("{bad:?} must be a room id (!...) or an alias (#name:server)"),
            ));
        }
        Ok(())
    }
}
