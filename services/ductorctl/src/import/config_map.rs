//! Python ductor's `config/config.json` (its `AgentConfig`) mapped onto our
//! `config.toml`: each key with an equivalent becomes a `section.key` value,
//! secrets become files under `secrets/` referenced by `*_file` keys, and
//! every other key is listed with why it has no equivalent.
//!
//! Merging keeps the user's file as it is (comments, order) with
//! `toml_edit`; a key the user set to something else than both our default
//! and the imported value is a conflict, left alone unless `--force`. A key
//! still at our default (as `ductorctl init` writes every key) counts as
//! not set by the user.

use serde_json::{Map, Value};

/// One key with an equivalent.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The Python key (`allowed_user_ids`, `heartbeat.interval_minutes`).
    pub from: String,
    /// Ours, always `section.key`.
    pub to: String,
    pub value: toml::Value,
}

/// A secret to move into a 0600 file and reference.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretFile {
    pub from: String,
    /// The file's name under `secrets/`.
    pub file: &'static str,
    /// The key naming the file (`telegram.token_file`); `None`: no key takes it.
    pub to: Option<&'static str>,
    pub value: String,
}

/// A key without an equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub key: String,
    pub why: String,
}

/// What the config import would do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigPlan {
    pub mapped: Vec<Mapped>,
    pub secrets: Vec<SecretFile>,
    pub unmapped: Vec<Unmapped>,
}

/// Values `config.example.json` ships as placeholders: never real settings.
fn placeholder(text: &str) -> bool {
    text.starts_with("YOUR_") || text.contains("your_bot") || text.is_empty()
}

fn json_to_toml(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Integer(n.as_f64()?.round() as i64),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Option<_>>()?)
        }
        _ => return None,
    })
}

struct Planner<'a> {
    config: &'a Map<String, Value>,
    plan: ConfigPlan,
    handled: Vec<String>,
}

impl Planner<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut value = self.config.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }

    fn handled(&mut self, key: &str) {
        self.handled.push(key.to_owned());
    }

    fn set(&mut self, from: &str, to: &str, value: toml::Value) {
        self.handled(from);
        self.plan.mapped.push(Mapped { from: from.into(), to: to.into(), value });
    }

    /// `from` → `to` unchanged (numbers rounded), when present and not null.
    fn same(&mut self, from: &str, to: &str) {
        if let Some(value) = self.get(from).and_then(json_to_toml) {
            self.set(from, to, value);
        } else {
            self.handled(from);
        }
    }

    fn with(&mut self, from: &str, to: &str, map: impl Fn(&Value) -> Result<toml::Value, String>) {
        let Some(value) = self.get(from).filter(|v| !v.is_null()).cloned() else {
            self.handled(from);
            return;
        };
        match map(&value) {
            Ok(value) => self.set(from, to, value),
            Err(why) => self.skip(from, &why),
        }
    }

    fn skip(&mut self, key: &str, why: &str) {
        self.handled(key);
        self.plan.unmapped.push(Unmapped { key: key.into(), why: why.into() });
    }

    fn secret(&mut self, from: &str, file: &'static str, to: Option<&'static str>) -> bool {
        self.handled(from);
        match self.get(from).and_then(Value::as_str) {
            Some(text) if !placeholder(text) && text != "null" && text != "none" => {
                let value = text.to_owned();
                self.plan.secrets.push(SecretFile { from: from.into(), file, to, value });
                true
            }
            _ => false,
        }
    }

    /// Every key of `config` (one level into sections) not handled yet.
    fn rest(&mut self, why: &dyn Fn(&str) -> String) {
        let mut keys = Vec::new();
        for (key, value) in self.config {
            if key.starts_with("_comment") {
                continue;
            }
            match value.as_object() {
                Some(section) if !self.handled.iter().any(|h| h == key) => {
                    let inner: Vec<String> = section.keys().map(|k| format!("{key}.{k}")).collect();
                    if inner.iter().any(|k| self.handled.contains(k)) {
                        keys.extend(inner.into_iter().filter(|k| !self.handled.contains(k)));
                    } else {
                        keys.push(key.clone());
                    }
                }
                _ if !self.handled.iter().any(|h| h == key) => keys.push(key.clone()),
                _ => {}
            }
        }
        for key in keys {
            let reason = why(&key);
            self.plan.unmapped.push(Unmapped { key, why: reason });
        }
    }
}

fn string_of(
    allowed: &'static [(&'static str, &'static str)],
) -> impl Fn(&Value) -> Result<toml::Value, String> {
    move |value| {
        let text = value.as_str().unwrap_or_default();
        allowed
            .iter()
            .find(|(py, _)| *py == text)
            .map(|(_, ours)| toml::Value::String((*ours).into()))
            .ok_or_else(|| format!("{text:?} has no equivalent"))
    }
}

pub(crate) fn provider_name(value: &Value) -> Result<toml::Value, String> {
    match value.as_str() {
        Some(p @ ("claude" | "codex" | "gemini")) => Ok(toml::Value::String(p.into())),
        other => Err(format!("ductor has no {:?} provider", other.unwrap_or_default())),
    }
}

fn transports(config: &Map<String, Value>) -> Vec<String> {
    let mut list: Vec<String> = config
        .get("transports")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if list.is_empty() {
        list.push(config.get("transport").and_then(Value::as_str).unwrap_or("telegram").to_owned());
    }
    list
}

/// Why a key not mapped has no equivalent.
fn reason(key: &str) -> String {
    let top = key.split('.').next().unwrap_or(key);
    match top {
        "log_level" => "ductor's log level is the DUCTOR_LOG environment variable",
        "ductor_home" => "ductor's home is $DUCTOR_HOME",
        "docker" => "ductor confines agents with its own sandbox (Landlock), not Docker",
        "api" => "ductor has no WebSocket API transport",
        "slack" => "ductor has no Slack transport",
        "max_budget_usd" | "max_turns" | "disallowed_tools" => "ductor passes no such CLI limit",
        "session_age_warning_hours" => "ductor shows no session age warning",
        "timeouts" => {
            "ductor has one turn timeout (from cli_timeout) and per-kind background timeouts"
        }
        "cli_parameters" => {
            "Python's extra argv for its own invocation; add what still applies \
                             to [providers.<name>].args by hand"
        }
        "language" => "ductor's messages are English only",
        "scene" | "notifications" => "ductor has no such notices",
        "update_check" => "ductor does no update check (see /upgrade)",
        "interagent_port" => {
            "ductor's agents talk through core (`ductorctl agents ask`), not a port"
        }
        "allowed_channel_ids" => "ductor has no channels yet",
        "memory_reflection" => "ductor has no memory reflection turns",
        "cron_delivery_retry" | "cron_preflight" => "ductor's cron delivery is durable by itself",
        "project_roots" | "append_system_prompt_files" => "ductor has no such setting",
        "transcription" => {
            "Python's commands are shell strings; ductor's [transcription].command \
                            is an argv list with {file}: set it by hand"
        }
        "gemini_api_key" => {
            "written to secrets/gemini_api_key; ductor has no key file setting for \
                             gemini: put GEMINI_API_KEY in the runner's environment"
        }
        "heartbeat" => "Python's targets and prompt name its own chats and files",
        "memory_flush" | "memory_compaction" => "ductor's upkeep prompts are its own",
        "skills" => "ductor syncs skills into every CLI home it owns",
        "matrix" => "Matrix is not among Python's transports, or ductor keeps this itself",
        "webhooks" => "ductor has no global webhook token: each hook keeps its own",
        _ => "no equivalent in ductor",
    }
    .to_owned()
}

/// The plan for `config` (config.json's object).
pub fn plan(config: &Map<String, Value>) -> ConfigPlan {
    let mut p = Planner { config, plan: ConfigPlan::default(), handled: Vec::new() };
    agent(&mut p);
    gateways(&mut p);
    services(&mut p);
    if p.secret("gemini_api_key", "gemini-api-key", None) {
        let why = reason("gemini_api_key");
        p.plan.unmapped.push(Unmapped { key: "gemini_api_key".into(), why });
    }
    p.rest(&reason);
    p.plan
}

/// `[agent]`: provider, model, permissions, session freshness.
fn agent(p: &mut Planner<'_>) {
    p.with("provider", "agent.provider", provider_name);
    p.same("model", "agent.model");
    p.same("reasoning_effort", "agent.reasoning_effort");
    p.with(
        "permission_mode",
        "agent.permission_mode",
        string_of(&[
            ("bypassPermissions", "bypass"),
            ("acceptEdits", "accept_edits"),
            ("default", "default"),
            ("plan", "plan"),
        ]),
    );
    p.with(
        "file_access",
        "agent.file_access",
        string_of(&[("all", "all"), ("home", "home"), ("workspace", "workspace")]),
    );
    p.with("user_timezone", "agent.timezone", |v| match v.as_str() {
        Some(zone) if !zone.is_empty() => Ok(toml::Value::String(zone.into())),
        _ => Err("empty (ductor's default is UTC)".into()),
    });
    p.same("idle_timeout_minutes", "agent.idle_timeout_minutes");
    p.same("daily_reset_enabled", "agent.daily_reset_enabled");
    p.same("daily_reset_hour", "agent.daily_reset_hour");
    p.same("max_session_messages", "agent.max_session_messages");
    p.same("cli_timeout", "agent.turn_timeout_seconds");
}

/// `[telegram]` and `[matrix]`, enabled for Python's transports.
fn gateways(p: &mut Planner<'_>) {
    let transports = transports(p.config);
    p.handled("transport");
    p.handled("transports");
    if p.secret("telegram_token", "telegram.token", Some("telegram.token_file"))
        && transports.iter().any(|t| t == "telegram")
    {
        p.plan.mapped.push(Mapped {
            from: "transport".into(),
            to: "telegram.enabled".into(),
            value: toml::Value::Boolean(true),
        });
    }
    p.same("allowed_user_ids", "telegram.allowed_user_ids");
    p.same("allowed_group_ids", "telegram.allowed_group_ids");
    p.same("group_mention_only", "telegram.group_mention_only");
    p.with("streaming.edit_interval_seconds", "telegram.edit_interval_ms", |v| {
        Ok(toml::Value::Integer((v.as_f64().unwrap_or(1.0) * 1000.0).round() as i64))
    });
    if transports.iter().any(|t| t == "matrix") {
        p.same("matrix.homeserver", "matrix.homeserver");
        p.same("matrix.user_id", "matrix.user_id");
        p.same("matrix.allowed_rooms", "matrix.allowed_rooms");
        p.same("matrix.allowed_users", "matrix.allowed_users");
        p.secret("matrix.password", "matrix.password", Some("matrix.password_file"));
        p.plan.mapped.push(Mapped {
            from: "transport".into(),
            to: "matrix.enabled".into(),
            value: toml::Value::Boolean(true),
        });
    }
}

/// Webhooks, heartbeat, cleanup, memory upkeep, images, background tasks, skills.
fn services(p: &mut Planner<'_>) {
    for key in ["enabled", "host", "port", "max_body_bytes", "rate_limit_per_minute"] {
        p.same(&format!("webhooks.{key}"), &format!("webhooks.{key}"));
    }
    p.handled("webhooks.token");
    for key in
        ["enabled", "interval_minutes", "cooldown_minutes", "quiet_start", "quiet_end", "ack_token"]
    {
        p.same(&format!("heartbeat.{key}"), &format!("heartbeat.{key}"));
    }
    for key in ["enabled", "media_files_days", "output_to_user_days", "check_hour"] {
        p.same(&format!("cleanup.{key}"), &format!("cleanup.{key}"));
    }
    p.same("memory_flush.enabled", "memory.flush");
    p.same("memory_flush.dedup_seconds", "memory.flush_dedup_seconds");
    let compaction = p.get("memory_compaction.enabled").and_then(Value::as_bool);
    if compaction == Some(false) {
        p.set(
            "memory_compaction.enabled",
            "memory.compaction_trigger_lines",
            toml::Value::Integer(0),
        );
    } else {
        p.handled("memory_compaction.enabled");
        p.same("memory_compaction.trigger_lines", "memory.compaction_trigger_lines");
    }
    p.same("memory_compaction.target_lines", "memory.compaction_target_lines");
    p.same("memory_compaction.preserve_recency_days", "memory.compaction_keep_days");
    p.same("image.max_dimension", "image.max_dimension");
    p.same("image.output_format", "image.format");
    p.same("image.quality", "image.quality");
    p.same("tasks.max_parallel", "background.max_running_per_chat");
    p.same("tasks.timeout_seconds", "background.task_timeout_seconds");
    p.same("tasks.finished_keep_last", "background.finished_tasks_kept");
    p.same("skills.sync_enabled", "skills.sync");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn keys_map_secrets_become_files_and_the_rest_is_listed() {
        let plan = plan(&config(
            r#"{"provider":"claude","model":"sonnet","permission_mode":"bypassPermissions",
                "telegram_token":"1:abc","allowed_user_ids":[1,2],"transport":"telegram",
                "docker":{"enabled":false},"cleanup":{"enabled":true,"api_files_days":3},
                "cli_timeout":600.0,"_comment":"x","gemini_api_key":"null","max_turns":null}"#,
        ));
        let to = |key: &str| plan.mapped.iter().find(|m| m.to == key).map(|m| m.value.clone());
        assert_eq!(to("agent.permission_mode"), Some(toml::Value::String("bypass".into())));
        assert_eq!(to("agent.turn_timeout_seconds"), Some(toml::Value::Integer(600)));
        assert_eq!(to("telegram.enabled"), Some(toml::Value::Boolean(true)));
        assert_eq!(plan.secrets.len(), 1, "the null gemini key is no secret: {:?}", plan.secrets);
        assert_eq!(plan.secrets[0].to, Some("telegram.token_file"));
        let unmapped: Vec<&str> = plan.unmapped.iter().map(|u| u.key.as_str()).collect();
        assert!(unmapped.contains(&"docker"), "{unmapped:?}");
        assert!(unmapped.contains(&"cleanup.api_files_days"), "{unmapped:?}");
        assert!(!unmapped.iter().any(|k| k.starts_with("_comment")));
        assert!(!plan.mapped.iter().any(|m| m.from == "max_turns"));
    }

    #[test]
    fn placeholders_and_unknown_providers_are_not_imported() {
        let plan = plan(&config(
            r#"{"provider":"grok","telegram_token":"YOUR_TELEGRAM_BOT_TOKEN","transports":["matrix"],
                "matrix":{"homeserver":"https://m.org","user_id":"@b:m.org","password":"pw"}}"#,
        ));
        assert!(plan.unmapped.iter().any(|u| u.key == "provider" && u.why.contains("grok")));
        assert_eq!(plan.secrets.len(), 1);
        assert_eq!(plan.secrets[0].to, Some("matrix.password_file"));
        assert!(!plan.mapped.iter().any(|m| m.to == "telegram.enabled"));
        assert!(plan.mapped.iter().any(|m| m.to == "matrix.enabled"));
    }
}
