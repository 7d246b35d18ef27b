//! Automation's domain types: cron jobs, webhooks and their auth, run records,
//! and the chat a result goes to. Validated here, so the store, the scheduler
//! and the gRPC edge share one notion of a valid job.

use jiff::Timestamp;

use super::quiet::QuietHours;
use super::schedule::{Schedule, ScheduleError};
use super::scheduler::{JobSpec, MissedPolicy};

/// A chat as a transport names it (what `DUCTOR_TRANSPORT` / `DUCTOR_CHAT_ID`
/// / `DUCTOR_TOPIC_ID` describe).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatTarget {
    /// "telegram", "matrix", ...
    pub transport: String,
    /// The transport's chat id.
    pub chat_id: String,
    /// Empty when the chat has no topics.
    pub topic_id: String,
}

impl ChatTarget {
    /// An inter-agent run's identity (`bus@<agent>:<trace>.<hop>`): no chat
    /// behind it, so it may use the Agents service only.
    pub fn is_bus(&self) -> bool {
        self.transport == crate::agents::BUS || self.transport.starts_with("bus@")
    }

    /// `transport:chat_id[:topic_id]`, the key the agent credential signs.
    pub fn key(&self) -> String {
        if self.topic_id.is_empty() {
            format!("{}:{}", self.transport, self.chat_id)
        } else {
            format!("{}:{}:{}", self.transport, self.chat_id, self.topic_id)
        }
    }
}

impl std::fmt::Display for ChatTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// Why a job or hook definition was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidDefinition {
    /// Ids are folder names: lowercase letters, digits, `-` and `_`.
    #[error(
        "invalid name {0:?}: use 1–64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
    )]
    Name(String),
    /// Bad schedule or time zone.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Quiet hours out of range or only one of them given.
    #[error("quiet hours need both start and end, each 0–23")]
    QuietHours,
    /// An invalid webhook auth setting.
    #[error("webhook auth: {0}")]
    Auth(String),
    /// Anything else, named.
    #[error("{field}: {message}")]
    Field {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Checks a job/hook/folder name.
pub fn validate_name(name: &str) -> Result<(), InvalidDefinition> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        });
    if ok { Ok(()) } else { Err(InvalidDefinition::Name(name.to_owned())) }
}

/// Checks an optional quiet-hours pair.
pub fn quiet_hours(
    start: Option<u8>,
    end: Option<u8>,
) -> Result<Option<QuietHours>, InvalidDefinition> {
    match (start, end) {
        (None, None) => Ok(None),
        (Some(start), Some(end)) => {
            QuietHours::new(start, end).map(Some).ok_or(InvalidDefinition::QuietHours)
        }
        _ => Err(InvalidDefinition::QuietHours),
    }
}

/// Provider settings for a one-shot run; empty strings mean "the default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOverrides {
    /// "claude", "codex", "gemini" or empty.
    pub provider: String,
    /// Model or empty.
    pub model: String,
    /// Reasoning effort or empty.
    pub effort: String,
}

/// A cron job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronJob {
    /// Unique id, also the task folder name.
    pub id: String,
    /// Short human title.
    pub title: String,
    /// What the job does (written to TASK_DESCRIPTION.md).
    pub description: String,
    /// 5-field cron expression.
    pub schedule: String,
    /// IANA zone; empty = the user's zone from config.
    pub timezone: String,
    /// The instruction given to the agent (enriched at run time).
    pub instruction: String,
    /// Paused jobs never fire on their own.
    pub enabled: bool,
    /// Provider, model, effort.
    pub overrides: RunOverrides,
    /// Quiet hours start (job level only).
    pub quiet_start: Option<u8>,
    /// Quiet hours end.
    pub quiet_end: Option<u8>,
    /// Jobs (and cron_task hooks) with the same key run one after another.
    pub dependency: Option<String>,
    /// Where results go; `None` = all allowed chats.
    pub target: Option<ChatTarget>,
    /// No message when the run succeeds (failures are always delivered).
    pub silent_on_success: bool,
    /// What to do with fires missed while ductor was down.
    pub missed: MissedPolicy,
    /// The chat whose agent created it; `None` = the operator.
    pub owner: Option<ChatTarget>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last fire handed out (run or skipped).
    pub last_fire_at: Option<Timestamp>,
}

impl CronJob {
    /// Checks every field; `default_zone` stands in for an empty timezone.
    pub fn validate(&self, default_zone: &str) -> Result<Schedule, InvalidDefinition> {
        validate_name(&self.id)?;
        if let Some(key) = &self.dependency
            && (key.is_empty() || key.len() > 64)
        {
            return Err(InvalidDefinition::Field {
                field: "dependency",
                message: "1–64 characters".into(),
            });
        }
        if self.instruction.trim().is_empty() && self.description.trim().is_empty() {
            return Err(InvalidDefinition::Field {
                field: "description",
                message: "a job needs a description or an instruction".into(),
            });
        }
        quiet_hours(self.quiet_start, self.quiet_end)?;
        Ok(Schedule::parse(&self.schedule, self.zone_or(default_zone))?)
    }

    /// The job's zone name, or `default_zone`.
    pub fn zone_or<'a>(&'a self, default_zone: &'a str) -> &'a str {
        if self.timezone.is_empty() { default_zone } else { &self.timezone }
    }

    /// What the scheduler needs.
    pub fn spec(&self, default_zone: &str) -> Result<JobSpec, InvalidDefinition> {
        Ok(JobSpec {
            id: self.id.clone(),
            schedule: self.validate(default_zone)?,
            enabled: self.enabled,
            quiet: quiet_hours(self.quiet_start, self.quiet_end)?,
            dependency: self.dependency.clone(),
            missed: self.missed,
            last_fire_at: self.last_fire_at,
            created_at: self.created_at,
        })
    }
}

/// Which kind of automation a run record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// A cron job.
    Cron,
    /// A webhook.
    Webhook,
}

impl RunKind {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::Webhook => "webhook",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cron" => Some(Self::Cron),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// Whether a run's result reached the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not decided yet (running, or queued in the outbox).
    Pending,
    /// The gateway acknowledged it.
    Ok,
    /// Delivery failed for good (see the error).
    Failed,
    /// Nothing to deliver (silent success, quiet skip).
    Skipped,
}

impl DeliveryStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "ok" => Some(Self::Ok),
            "failed" => Some(Self::Failed),
            "skipped" => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// One entry of the run history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Row id.
    pub id: i64,
    /// Cron job or webhook.
    pub kind: RunKind,
    /// Job or hook id.
    pub source_id: String,
    /// "scheduled", "manual", "catch_up", "webhook", ...
    pub trigger: String,
    /// The fire time this run stands for.
    pub scheduled_at: Timestamp,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended; `None` while running.
    pub finished_at: Option<Timestamp>,
    /// "running", "success", "error:<why>", "skipped:<why>".
    pub status: String,
    /// Whether the result reached the chat.
    pub delivery: DeliveryStatus,
    /// Why delivery failed.
    pub delivery_error: String,
    /// The result text, kept only when the run or its delivery failed.
    pub result_text: String,
}

impl RunRecord {
    /// True when the run or its delivery failed.
    pub fn failed(&self) -> bool {
        self.status.starts_with("error") || self.delivery == DeliveryStatus::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_folder_safe() {
        for good in ["daily", "hn-digest", "a_1", "9am"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "-x", "Daily", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quiet_hours_come_in_pairs() {
        assert_eq!(quiet_hours(None, None), Ok(None));
        assert!(quiet_hours(Some(1), None).is_err());
        assert!(quiet_hours(Some(25), Some(3)).is_err());
        assert_eq!(quiet_hours(Some(22), Some(6)).unwrap(), QuietHours::new(22, 6));
    }

    #[test]
    fn chat_keys() {
        let chat = ChatTarget {
            transport: "telegram".into(),
            chat_id: "-100".into(),
            topic_id: String::new(),
        };
        assert_eq!(chat.key(), "telegram:-100");
        let topic = ChatTarget { topic_id: "7".into(), ..chat };
        assert_eq!(topic.key(), "telegram:-100:7");
    }
}
