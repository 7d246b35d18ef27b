//! The one table of who reads which `config.toml` key, and whether a change
//! takes effect while that reader runs (`Live`) or only when it starts again
//! (`Restart`).
//!
//! A key is `Live` for a service only when that service really applies a new
//! value from its config watch; everything else says so honestly. A test
//! checks that every key of the default file is classified, so a new key
//! cannot be forgotten.

use crate::ServiceName;

/// Who reads a key: a service, or `ductorctl up` itself (which services it
/// starts, how it supervises them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reader {
    /// A service process.
    Service(ServiceName),
    /// The launcher (`ductorctl up`).
    Launcher,
}

impl Reader {
    /// A short name for messages: the service name, or "launcher".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service(service) => service.as_str(),
            Self::Launcher => "launcher",
        }
    }

    /// What the operator runs so a restart-needing change takes effect.
    pub fn restart_hint(self) -> String {
        match self {
            Self::Service(service) => format!("ductorctl restart {}", service.as_str()),
            Self::Launcher => "ductorctl down && ductorctl up".to_owned(),
        }
    }
}

/// When a change of a key takes effect for one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// At once, while it runs.
    Live,
    /// When it starts again.
    Restart,
}

/// One reader of a key and when it applies a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use(pub Reader, pub Apply);

const RUNNER: Reader = Reader::Service(ServiceName::Runner);
const CORE: Reader = Reader::Service(ServiceName::Core);
const TELEGRAM: Reader = Reader::Service(ServiceName::Telegram);
const MATRIX: Reader = Reader::Service(ServiceName::Matrix);

const CORE_LIVE: &[Use] = &[Use(CORE, Apply::Live)];
const CORE_RESTART: &[Use] = &[Use(CORE, Apply::Restart)];
const RUNNER_LIVE: &[Use] = &[Use(RUNNER, Apply::Live)];
const RUNNER_RESTART: &[Use] = &[Use(RUNNER, Apply::Restart)];
const TELEGRAM_LIVE: &[Use] = &[Use(TELEGRAM, Apply::Live)];
const TELEGRAM_RESTART: &[Use] = &[Use(TELEGRAM, Apply::Restart)];
const MATRIX_LIVE: &[Use] = &[Use(MATRIX, Apply::Live)];
const MATRIX_RESTART: &[Use] = &[Use(MATRIX, Apply::Restart)];
const LAUNCHER_RESTART: &[Use] = &[Use(Reader::Launcher, Apply::Restart)];

/// Dotted key patterns, first match wins: a pattern matches a key that
/// starts with its segments, `*` standing for any one segment.
const TABLE: &[(&str, &[Use])] = &[
    // [agent]: core's state machine takes the new defaults at once; a chat's
    // existing session keeps the provider and model it was made with.
    ("agent.provider", CORE_LIVE),
    ("agent.model", CORE_LIVE),
    ("agent.reasoning_effort", CORE_LIVE),
    ("agent.permission_mode", CORE_LIVE),
    ("agent.approval_timeout_seconds", CORE_LIVE),
    ("agent.while_busy", CORE_LIVE),
    ("agent.admin_chats", CORE_LIVE),
    ("agent.idle_timeout_minutes", CORE_LIVE),
    ("agent.daily_reset_enabled", CORE_LIVE),
    ("agent.daily_reset_hour", CORE_LIVE),
    ("agent.max_session_messages", CORE_LIVE),
    ("agent.turn_timeout_seconds", CORE_LIVE),
    ("agent.idle_output_timeout_seconds", CORE_LIVE),
    // Also the default zone of cron jobs (rescheduled), quiet hours and the sweep.
    ("agent.timezone", CORE_LIVE),
    ("agent.file_access", CORE_LIVE),
    ("runner", RUNNER_RESTART),
    // Runs started after a reload use the new binary, args, env and home
    // state; the next Probe reports the new models (core's /model list).
    ("providers", RUNNER_LIVE),
    ("telegram.enabled", LAUNCHER_RESTART),
    ("telegram.allowed_user_ids", TELEGRAM_LIVE),
    ("telegram.allowed_group_ids", TELEGRAM_LIVE),
    ("telegram.group_mention_only", TELEGRAM_LIVE),
    ("telegram.notify_final", TELEGRAM_LIVE),
    ("telegram.max_download_bytes", TELEGRAM_LIVE),
    ("telegram.edit_interval_ms", TELEGRAM_LIVE),
    ("telegram.burst", TELEGRAM_LIVE),
    ("telegram", TELEGRAM_RESTART),
    ("matrix.enabled", &[Use(Reader::Launcher, Apply::Restart), Use(MATRIX, Apply::Restart)]),
    ("matrix.allowed_users", MATRIX_LIVE),
    ("matrix.allowed_rooms", MATRIX_LIVE),
    ("matrix.group_mention_only", MATRIX_LIVE),
    ("matrix.max_edits", MATRIX_LIVE),
    ("matrix.max_download_bytes", MATRIX_LIVE),
    ("matrix.show_tool_markers", MATRIX_LIVE),
    // `streaming` is declared to core in the gateway's `Hello` (edits or not).
    ("matrix", MATRIX_RESTART),
    // Automation's limits apply to the next request, the heartbeat to its
    // next tick (quiet hours in the zone core started with), the sweep to
    // its next pass.
    ("automation", CORE_LIVE),
    ("webhooks", CORE_RESTART),
    ("heartbeat", CORE_LIVE),
    ("cleanup", CORE_LIVE),
    ("background", CORE_RESTART),
    ("launcher", LAUNCHER_RESTART),
    ("transcription", RUNNER_RESTART),
    ("image", RUNNER_RESTART),
    // The flush turn and the memory-check hint live in core's state machine;
    // the compaction loop reads its settings at start.
    ("memory.flush", CORE_LIVE),
    ("memory.flush_dedup_seconds", CORE_LIVE),
    ("memory.check_every_messages", CORE_LIVE),
    ("memory", CORE_RESTART),
    ("skills", RUNNER_RESTART),
    ("rules", CORE_RESTART),
    // Sub-agents: core and the runner read names, defaults and workspaces at
    // start; an agent's gateways read their tables at start
    // (`ductorctl agents restart NAME`).
    ("agents", AGENTS),
];

const AGENTS: &[Use] = &[
    Use(Reader::Launcher, Apply::Restart),
    Use(CORE, Apply::Restart),
    Use(RUNNER, Apply::Restart),
    Use(TELEGRAM, Apply::Restart),
    Use(MATRIX, Apply::Restart),
];

fn matches(pattern: &str, key: &str) -> bool {
    let mut key = key.split('.');
    pattern.split('.').all(|want| key.next().is_some_and(|got| want == "*" || want == got))
}

/// Who reads `key` and when each applies a change; empty for a key no
/// one reads (which validation has already refused).
pub fn uses(key: &str) -> &'static [Use] {
    TABLE.iter().find(|(pattern, _)| matches(pattern, key)).map_or(&[], |(_, uses)| uses)
}

/// When `reader` applies a change of `key`; `None` when it does not read it.
pub fn apply_for(reader: Reader, key: &str) -> Option<Apply> {
    uses(key).iter().find(|u| u.0 == reader).map(|u| u.1)
}

/// Changed keys sorted for one reader: (applied live, needs a restart);
/// keys it does not read are left out.
pub fn split_for(reader: Reader, keys: &[String]) -> (Vec<String>, Vec<String>) {
    let mut live = Vec::new();
    let mut restart = Vec::new();
    for key in keys {
        match apply_for(reader, key) {
            Some(Apply::Live) => live.push(key.clone()),
            Some(Apply::Restart) => restart.push(key.clone()),
            None => {}
        }
    }
    (live, restart)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG_TOML;
    use crate::reload::diff;

    /// Keys the default file shows only in comments.
    const COMMENTED: [&str; 3] =
        ["telegram.token_file", "matrix.password_file", "transcription.api_key_file"];

    #[test]
    fn every_key_of_the_default_file_is_classified() {
        let table = diff::effective(DEFAULT_CONFIG_TOML).expect("the default file parses");
        let keys = diff::leaves(&table).into_iter().map(|(k, _)| k);
        for key in keys.chain(COMMENTED.iter().map(|k| (*k).to_owned())) {
            assert!(!uses(&key).is_empty(), "{key} is not in the reload table");
        }
        // A provider's env keys are the operator's own names.
        assert_eq!(uses("providers.claude.env.ANTHROPIC_BASE_URL"), RUNNER_LIVE);
    }

    #[test]
    fn allowlists_are_live_and_credentials_need_a_restart() {
        assert_eq!(apply_for(TELEGRAM, "telegram.allowed_user_ids"), Some(Apply::Live));
        assert_eq!(apply_for(TELEGRAM, "telegram.token"), Some(Apply::Restart));
        assert_eq!(apply_for(TELEGRAM, "telegram.api_url"), Some(Apply::Restart));
        assert_eq!(apply_for(CORE, "telegram.allowed_user_ids"), None);
        assert_eq!(apply_for(CORE, "agent.model"), Some(Apply::Live));
        assert_eq!(apply_for(RUNNER, "runner.sandbox"), Some(Apply::Restart));
        assert_eq!(apply_for(Reader::Launcher, "launcher.max_crashes"), Some(Apply::Restart));
        assert_eq!(apply_for(MATRIX, "matrix.enabled"), Some(Apply::Restart));
    }

    #[test]
    fn a_reader_sees_only_its_own_keys() {
        let keys: Vec<String> = ["agent.model", "runner.sandbox", "telegram.allowed_user_ids"]
            .map(str::to_owned)
            .into();
        assert_eq!(split_for(CORE, &keys), (vec!["agent.model".to_owned()], vec![]));
        assert_eq!(split_for(RUNNER, &keys), (vec![], vec!["runner.sandbox".to_owned()]));
        let (live, restart) = split_for(TELEGRAM, &keys);
        assert_eq!((live, restart.len()), (vec!["telegram.allowed_user_ids".to_owned()], 0));
    }

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches("telegram", "telegram.token"));
        assert!(!matches("telegram.token", "telegram.token_file"));
        assert!(matches("providers.*.env", "providers.codex.env.KEY"));
        assert!(!matches("memory.flush", "memory.flush_dedup_seconds"));
    }
}
