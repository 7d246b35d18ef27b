//! `[automation]`, `[webhooks]`, `[heartbeat]` and `[cleanup]`: what runs
//! when nobody types, and what an agent may set up on its own.

use serde::Deserialize;

use super::Invalid;

/// `[automation]`: what a chat's agent may create itself (the operator,
/// with the admin token, is not limited).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutomationConfig {
    /// Cron jobs one chat's agent may keep.
    pub max_jobs_per_chat: u32,
    /// Webhooks one chat's agent may keep.
    pub max_hooks_per_chat: u32,
    /// Shortest gap between two fires of a schedule an agent sets, in minutes.
    pub min_agent_interval_minutes: u32,
    /// Longest title, description, instruction or prompt template an agent
    /// may give, in characters.
    pub max_text_chars: u32,
    /// Webhooks an agent creates start disabled until the operator enables
    /// them (`ductorctl webhook enable NAME`).
    pub agent_hooks_need_approval: bool,
    /// Cron and webhook runs get their chat's agent credential, so they can
    /// manage automation and tasks themselves.
    pub automation_runs_get_credential: bool,
}

impl Default for AutomationConfig {
    fn default() -> Self {
        Self {
            max_jobs_per_chat: 20,
            max_hooks_per_chat: 10,
            min_agent_interval_minutes: 5,
            max_text_chars: 4000,
            agent_hooks_need_approval: true,
            automation_runs_get_credential: false,
        }
    }
}

impl AutomationConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.max_text_chars < 100 {
            return Err(Invalid::new("automation.max_text_chars", "must be at least 100"));
        }
        Ok(())
    }
}

/// `[webhooks]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Start the HTTP listener (in core).
    pub enabled: bool,
    /// Listen address.
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Authenticated requests accepted per minute, per hook.
    pub rate_limit_per_minute: u32,
    /// Open connections at once.
    pub max_connections: u32,
    /// Open connections from one address.
    pub max_connections_per_address: u32,
    /// Longest client silence on a connection, in seconds.
    pub idle_timeout_seconds: u32,
    /// Longest life of a connection, in seconds.
    pub connection_lifetime_seconds: u32,
    /// How long a signed delivery is remembered against replays, in seconds.
    pub replay_window_seconds: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".to_owned(),
            port: 8742,
            max_body_bytes: 262_144,
            rate_limit_per_minute: 30,
            max_connections: 64,
            max_connections_per_address: 8,
            idle_timeout_seconds: 10,
            connection_lifetime_seconds: 60,
            replay_window_seconds: 600,
        }
    }
}

impl WebhooksConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.host.parse::<std::net::IpAddr>().is_err() {
            return Err(Invalid::new(
                "webhooks.host",
                format!("not an IP address: {:?}", self.host),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(Invalid::new("webhooks.max_body_bytes", "must be greater than 0"));
        }
        let positive = [
            ("rate_limit_per_minute", self.rate_limit_per_minute),
            ("max_connections", self.max_connections),
            ("max_connections_per_address", self.max_connections_per_address),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
            ("connection_lifetime_seconds", self.connection_lifetime_seconds),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(Invalid::new(format!("webhooks.{key}"), "must be greater than 0"));
        }
        Ok(())
    }
}

/// `[heartbeat]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Send periodic check-ins into active sessions.
    pub enabled: bool,
    /// Minutes between check-ins.
    pub interval_minutes: u32,
    /// No check-in within this many minutes of user activity.
    pub cooldown_minutes: u32,
    /// Quiet hours start (hour, user's timezone); equal start and end = never quiet.
    pub quiet_start: u8,
    /// Quiet hours end (exclusive).
    pub quiet_end: u8,
    /// A reply equal to this is not delivered.
    pub ack_token: String,
    /// The check-in prompt; empty = built-in.
    pub prompt: String,
    /// Per-chat overrides (`[[heartbeat.targets]]`); unset fields inherit.
    pub targets: Vec<HeartbeatTarget>,
}

/// One `[[heartbeat.targets]]` entry: overrides for one chat (or topic).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatTarget {
    /// Transport name, e.g. "telegram".
    pub transport: String,
    /// The transport's chat id.
    pub chat_id: String,
    /// Topic/thread id; empty = the chat itself.
    pub topic_id: String,
    /// `false` opts this chat out; `true` opts it in even when `heartbeat.enabled` is off.
    pub enabled: Option<bool>,
    /// Minutes between check-ins.
    pub interval_minutes: Option<u32>,
    /// Minutes of quiet after user activity.
    pub cooldown_minutes: Option<u32>,
    /// Quiet hours start.
    pub quiet_start: Option<u8>,
    /// Quiet hours end.
    pub quiet_end: Option<u8>,
    /// Check-in prompt.
    pub prompt: Option<String>,
    /// ACK token.
    pub ack_token: Option<String>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_minutes: 30,
            cooldown_minutes: 5,
            quiet_start: 21,
            quiet_end: 8,
            ack_token: "HEARTBEAT_OK".to_owned(),
            prompt: String::new(),
            targets: Vec::new(),
        }
    }
}

impl HeartbeatConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.quiet_start > 23 || self.quiet_end > 23 {
            return Err(Invalid::new(
                "heartbeat.quiet_start",
                "quiet hours are hours from 0 to 23",
            ));
        }
        if self.interval_minutes == 0 {
            return Err(Invalid::new("heartbeat.interval_minutes", "must be greater than 0"));
        }
        for (i, target) in self.targets.iter().enumerate() {
            let key = |field: &str| format!("heartbeat.targets[{i}].{field}");
            if target.transport.is_empty() || target.chat_id.is_empty() {
                return Err(Invalid::new(key("chat_id"), "a target needs transport and chat_id"));
            }
            if target.interval_minutes == Some(0) {
                return Err(Invalid::new(key("interval_minutes"), "must be greater than 0"));
            }
            if target.quiet_start.is_some_and(|h| h > 23)
                || target.quiet_end.is_some_and(|h| h > 23)
            {
                return Err(Invalid::new(key("quiet_start"), "quiet hours are hours from 0 to 23"));
            }
        }
        Ok(())
    }
}

/// `[cleanup]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanupConfig {
    /// Run the daily retention sweep.
    pub enabled: bool,
    /// Delete received media older than this many days.
    pub media_files_days: u32,
    /// Delete files in `output_to_user/` older than this many days.
    pub output_to_user_days: u32,
    /// Hour of day (user's timezone) of the sweep.
    pub check_hour: u8,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self { enabled: true, media_files_days: 30, output_to_user_days: 30, check_hour: 3 }
    }
}

impl CleanupConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.check_hour > 23 {
            return Err(Invalid::new("cleanup.check_hour", "expected an hour from 0 to 23"));
        }
        Ok(())
    }
}
