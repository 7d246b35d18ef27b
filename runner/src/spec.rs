//! `RunSpec`: what one run is, validated once at the gRPC edge.
//!
//! Everything that ends up in a CLI's argv or environment is checked here, so
//! adapters can trust it: ids never start with `-` (no option injection),
//! environment names are well formed and never name ductor's own secrets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ductor_daemon::config::{PermissionModeSetting, ProviderConfig, ProvidersConfig};
use ductor_proto::pb;

use crate::error::RunnerError;

/// The provider CLIs the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Anthropic Claude Code (`claude`).
    Claude,
    /// OpenAI Codex CLI (`codex`).
    Codex,
    /// Google Gemini CLI (`gemini`).
    Gemini,
}

impl Provider {
    /// All providers, in display order.
    pub const ALL: [Provider; 3] = [Self::Claude, Self::Codex, Self::Gemini];

    /// The provider's name on the wire and in `config.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
        }
    }

    /// Parses a provider name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// This provider's `[providers.<name>]` section.
    pub fn settings(self, providers: &ProvidersConfig) -> &ProviderConfig {
        match self {
            Self::Claude => &providers.claude,
            Self::Codex => &providers.codex,
            Self::Gemini => &providers.gemini,
        }
    }
}

/// How much a CLI may do without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionMode {
    /// The CLI's own headless default (may deny tools).
    Default,
    /// File edits allowed.
    AcceptEdits,
    /// Everything allowed; the runner's sandbox is the fence.
    Bypass,
    /// Read-only / planning.
    Plan,
    /// Tool uses the CLI would ask about are asked of the caller.
    Ask,
}

impl From<PermissionModeSetting> for PermissionMode {
    fn from(setting: PermissionModeSetting) -> Self {
        match setting {
            PermissionModeSetting::Default => Self::Default,
            PermissionModeSetting::AcceptEdits => Self::AcceptEdits,
            PermissionModeSetting::Bypass => Self::Bypass,
            PermissionModeSetting::Plan => Self::Plan,
            PermissionModeSetting::Ask => Self::Ask,
        }
    }
}

/// A validated run request.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Caller-chosen or generated id (safe as a file name).
    pub run_id: String,
    /// Which CLI.
    pub provider: Provider,
    /// Model, or the CLI's default.
    pub model: Option<String>,
    /// Reasoning effort, or the CLI's default.
    pub effort: Option<String>,
    /// The user's prompt.
    pub prompt: String,
    /// Provider session to resume.
    pub resume: Option<String>,
    /// Absolute, existing working directory.
    pub working_dir: PathBuf,
    /// Text appended to the system prompt.
    pub append_system_prompt: Option<String>,
    /// Permission mode; `None` = the runner's configured default.
    pub permission: Option<PermissionMode>,
    /// Extra CLI arguments for this run.
    pub extra_args: Vec<String>,
    /// Extra environment (ductor context variables).
    pub extra_env: BTreeMap<String, String>,
    /// Total timeout; `None` = configured default.
    pub total_timeout: Option<Duration>,
    /// Idle timeout; `None` = configured default.
    pub idle_timeout: Option<Duration>,
    /// Who the run belongs to.
    pub labels: BTreeMap<String, String>,
    /// Keep the CLI's input open for steering, where the CLI can.
    pub interactive: bool,
    /// The agent it works for: its workspace confines `working_dir`.
    pub agent: String,
}

/// Variables a caller may never inject: ductor's secrets and loader hooks.
const FORBIDDEN_ENV: &[&str] = &["DUCTOR_TELEGRAM_TOKEN", "DUCTOR_MATRIX_PASSWORD"];

fn invalid(message: impl Into<String>) -> RunnerError {
    RunnerError::InvalidSpec(message.into())
}

/// An id that is safe in argv (no leading `-`) and as a file name.
fn check_id(field: &str, value: &str, max: usize) -> Result<(), RunnerError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && !value.starts_with(['-', '.'])
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} {value:?} must be 1-{max} of [A-Za-z0-9._:-], not starting with - or ."
        )))
    }
}

/// A model name or effort word: printable, no leading `-`, no whitespace.
fn check_word(field: &str, value: &str) -> Result<(), RunnerError> {
    let ok = value.len() <= 200
        && !value.starts_with('-')
        && value.chars().all(|c| c.is_ascii_graphic() && c != '=' && c != '"');
    if ok { Ok(()) } else { Err(invalid(format!("{field} {value:?} is not a valid value"))) }
}

/// A variable name: `[A-Za-z_][A-Za-z0-9_]*`, not a secret, not a loader hook.
pub fn check_env_name(name: &str) -> Result<(), RunnerError> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err(invalid(format!("environment name {name:?} is not valid")));
    }
    if FORBIDDEN_ENV.contains(&name) || name.starts_with("LD_") {
        return Err(invalid(format!("environment variable {name} may not be passed to a CLI")));
    }
    Ok(())
}

fn non_empty(value: String) -> Option<String> {
    if value.is_empty() { None } else { Some(value) }
}

fn millis(ms: u64) -> Option<Duration> {
    if ms == 0 { None } else { Some(Duration::from_millis(ms)) }
}

fn permission(value: i32) -> Result<Option<PermissionMode>, RunnerError> {
    match pb::PermissionMode::try_from(value) {
        Ok(pb::PermissionMode::Unspecified) => Ok(None),
        Ok(pb::PermissionMode::Default) => Ok(Some(PermissionMode::Default)),
        Ok(pb::PermissionMode::AcceptEdits) => Ok(Some(PermissionMode::AcceptEdits)),
        Ok(pb::PermissionMode::Bypass) => Ok(Some(PermissionMode::Bypass)),
        Ok(pb::PermissionMode::Plan) => Ok(Some(PermissionMode::Plan)),
        Ok(pb::PermissionMode::Ask) => Ok(Some(PermissionMode::Ask)),
        Err(_) => Err(invalid(format!("unknown permission_mode {value}"))),
    }
}

impl TryFrom<pb::RunSpec> for RunSpec {
    type Error = RunnerError;

    fn try_from(spec: pb::RunSpec) -> Result<Self, RunnerError> {
        let run_id = if spec.run_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            check_id("run_id", &spec.run_id, 128)?;
            spec.run_id
        };
        let provider = Provider::parse(&spec.provider)
            .ok_or_else(|| invalid(format!("unknown provider {:?}", spec.provider)))?;
        if spec.prompt.trim().is_empty() {
            return Err(invalid("prompt is empty"));
        }
        if spec.prompt.contains('\0') || spec.append_system_prompt.contains('\0') {
            return Err(invalid("prompt contains a NUL byte"));
        }
        let working_dir = PathBuf::from(&spec.working_dir);
        if !working_dir.is_absolute() || !working_dir.is_dir() {
            return Err(invalid(format!(
                "working_dir {:?} must be an existing absolute directory",
                spec.working_dir
            )));
        }
        let model = non_empty(spec.model);
        if let Some(model) = &model {
            check_word("model", model)?;
        }
        let effort = non_empty(spec.reasoning_effort);
        if let Some(effort) = &effort {
            check_word("reasoning_effort", effort)?;
        }
        let resume = non_empty(spec.resume_session_id);
        if let Some(id) = &resume {
            check_id("resume_session_id", id, 200)?;
        }
        for (name, value) in &spec.extra_env {
            check_env_name(name)?;
            if value.contains('\0') {
                return Err(invalid(format!("environment value of {name} contains a NUL byte")));
            }
        }
        if spec.extra_args.iter().any(|a| a.contains('\0')) {
            return Err(invalid("extra_args contain a NUL byte"));
        }
        Ok(Self {
            run_id,
            provider,
            model,
            effort,
            prompt: spec.prompt,
            resume,
            working_dir,
            append_system_prompt: non_empty(spec.append_system_prompt),
            permission: permission(spec.permission_mode)?,
            extra_args: spec.extra_args,
            extra_env: spec.extra_env.into_iter().collect(),
            total_timeout: millis(spec.total_timeout_ms),
            idle_timeout: millis(spec.idle_timeout_ms),
            labels: spec.labels.into_iter().collect(),
            interactive: spec.interactive,
            agent: if spec.agent.is_empty() { "main".to_owned() } else { spec.agent },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> pb::RunSpec {
        pb::RunSpec {
            provider: "claude".into(),
            prompt: "hi".into(),
            working_dir: std::env::temp_dir().display().to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_minimal_spec_and_generates_an_id() {
        let spec = RunSpec::try_from(base()).expect("valid");
        assert_eq!(spec.provider, Provider::Claude);
        assert!(!spec.run_id.is_empty());
        assert_eq!(spec.permission, None);
    }

    #[test]
    fn rejects_option_injection_and_secrets() {
        let mut spec = base();
        spec.resume_session_id = "--dangerously-skip-permissions".into();
        assert!(RunSpec::try_from(spec).is_err());
        let mut spec = base();
        spec.model = "-x".into();
        assert!(RunSpec::try_from(spec).is_err());
        let mut spec = base();
        spec.extra_env.insert("DUCTOR_TELEGRAM_TOKEN".into(), "x".into());
        assert!(RunSpec::try_from(spec).is_err());
        let mut spec = base();
        spec.extra_env.insert("LD_PRELOAD".into(), "/x.so".into());
        assert!(RunSpec::try_from(spec).is_err());
        let mut spec = base();
        spec.run_id = "../etc".into();
        assert!(RunSpec::try_from(spec).is_err());
    }

    #[test]
    fn rejects_relative_working_dir_and_unknown_provider() {
        let mut spec = base();
        spec.working_dir = "relative".into();
        assert!(RunSpec::try_from(spec).is_err());
        let mut spec = base();
        spec.provider = "grok".into();
        assert!(RunSpec::try_from(spec).is_err());
    }
}
