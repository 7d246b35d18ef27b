//! Webhooks: an HTTP listener that turns a signed JSON POST into a prompt,
//! either woken into a chat's live session (`wake`) or run isolated like a
//! cron job (`cron_task`).
//!
//! [`server`] checks requests in a fixed order and accepts them into a bounded
//! queue; [`auth`] verifies bearer tokens and HMAC signatures; [`template`]
//! renders the prompt and fences the payload as untrusted input;
//! [`ratelimit`] is the global sliding window.

pub mod auth;
pub mod listener;
pub mod ratelimit;
pub mod server;
pub mod template;

use jiff::Timestamp;

use super::model::{ChatTarget, InvalidDefinition, RunOverrides, quiet_hours, validate_name};

/// What an accepted webhook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMode {
    /// Inject the prompt into the target chat's live session, under its lock.
    Wake,
    /// Run a one-shot run in the hook's task folder, like a cron job.
    CronTask,
}

impl HookMode {
    /// Stored / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wake => "wake",
            Self::CronTask => "cron_task",
        }
    }

    /// Parses the stored / CLI spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "wake" => Some(Self::Wake),
            "cron_task" => Some(Self::CronTask),
            _ => None,
        }
    }
}

/// HMAC digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (legacy GitHub `X-Hub-Signature`).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl HmacAlgorithm {
    /// Stored / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Parses the stored / CLI spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// How the signature is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hex.
    Hex,
    /// Standard base64 (with or without padding).
    Base64,
}

impl SignatureEncoding {
    /// Stored / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    /// Parses the stored / CLI spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hex" => Some(Self::Hex),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }
}

/// What the HMAC is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedPayload {
    /// The raw body (GitHub, most services).
    Body,
    /// Stripe style: the signature header is `t=<unix>,v1=<sig>[,v1=<sig>…]` and
    /// the signed payload is `<t>.<body>`.
    Stripe,
    /// Slack style: the payload is `v0:<X-Slack-Request-Timestamp>:<body>` and the
    /// header `v0=<sig>`.
    Slack,
}

impl SignedPayload {
    /// Stored / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::Stripe => "stripe",
            Self::Slack => "slack",
        }
    }

    /// Parses the stored / CLI spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "body" => Some(Self::Body),
            "stripe" => Some(Self::Stripe),
            "slack" => Some(Self::Slack),
            _ => None,
        }
    }
}

/// HMAC verification settings of one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSettings {
    /// The shared secret.
    pub secret: String,
    /// Header carrying the signature, e.g. `X-Hub-Signature-256`.
    pub header: String,
    /// Digest.
    pub algorithm: HmacAlgorithm,
    /// Hex or base64.
    pub encoding: SignatureEncoding,
    /// Stripped from the header value before decoding, e.g. `sha256=`.
    pub signature_prefix: String,
    /// When set, group 1 of this regex applied to the header value is the signature.
    pub signature_regex: String,
    /// What is signed.
    pub signed_payload: SignedPayload,
    /// For Stripe/Slack: reject timestamps older than this many seconds (0 = no check).
    pub max_age_seconds: u32,
    /// Body signing: when set and it matches the header value, group 1 is
    /// signed as `<group 1>.<body>` (Python ductor's `hmac_payload_prefix_regex`).
    pub payload_prefix_regex: String,
}

impl HmacSettings {
    /// GitHub's `X-Hub-Signature-256: sha256=<hex>` over the body.
    pub fn github(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            header: "X-Hub-Signature-256".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            signature_prefix: "sha256=".into(),
            signature_regex: String::new(),
            signed_payload: SignedPayload::Body,
            max_age_seconds: 0,
            payload_prefix_regex: String::new(),
        }
    }

    /// Stripe's `Stripe-Signature: t=…,v1=…` over `<t>.<body>`.
    pub fn stripe(secret: impl Into<String>) -> Self {
        Self {
            header: "Stripe-Signature".into(),
            signature_prefix: String::new(),
            signed_payload: SignedPayload::Stripe,
            max_age_seconds: 300,
            ..Self::github(secret)
        }
    }

    /// Slack's `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`.
    pub fn slack(secret: impl Into<String>) -> Self {
        Self {
            header: "X-Slack-Signature".into(),
            signature_prefix: "v0=".into(),
            signed_payload: SignedPayload::Slack,
            max_age_seconds: 300,
            ..Self::github(secret)
        }
    }
}

/// How a hook authenticates callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The hook's token.
        token: String,
    },
    /// A signature header.
    Hmac(HmacSettings),
}

impl HookAuth {
    /// Stored / CLI spelling of the mode.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Bearer { .. } => "bearer",
            Self::Hmac(_) => "hmac",
        }
    }
}

/// A webhook definition plus its telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Unique id: the URL is `/hooks/<id>`.
    pub id: String,
    /// Short human title.
    pub title: String,
    /// What the hook is for.
    pub description: String,
    /// Wake or cron_task.
    pub mode: HookMode,
    /// Prompt with `{{field}}` placeholders from the top-level payload keys.
    pub prompt_template: String,
    /// Disabled hooks answer 403.
    pub enabled: bool,
    /// Task folder for `cron_task` (defaults to the id).
    pub task_folder: String,
    /// Caller authentication.
    pub auth: HookAuth,
    /// Provider, model, effort (`cron_task` only).
    pub overrides: RunOverrides,
    /// Quiet hours start (hook level only).
    pub quiet_start: Option<u8>,
    /// Quiet hours end.
    pub quiet_end: Option<u8>,
    /// Shared with cron jobs' dependency keys.
    pub dependency: Option<String>,
    /// Where results go (wake: whose session); `None` = all allowed chats.
    pub target: Option<ChatTarget>,
    /// The chat whose agent created it; `None` = the operator.
    pub owner: Option<ChatTarget>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Accepted requests so far.
    pub trigger_count: u64,
    /// Last accepted request.
    pub last_triggered_at: Option<Timestamp>,
    /// Last processing error, empty when the last one went fine.
    pub last_error: String,
}

impl Webhook {
    /// An enabled hook with nothing else set: titled and foldered by its id,
    /// no overrides, quiet hours, dependency, target or owner, no telemetry.
    pub fn new(id: &str, mode: HookMode, prompt_template: &str, auth: HookAuth) -> Self {
        Self {
            id: id.to_owned(),
            title: id.to_owned(),
            description: String::new(),
            mode,
            prompt_template: prompt_template.to_owned(),
            enabled: true,
            task_folder: id.to_owned(),
            auth,
            overrides: RunOverrides::default(),
            quiet_start: None,
            quiet_end: None,
            dependency: None,
            target: None,
            owner: None,
            created_at: Timestamp::UNIX_EPOCH,
            trigger_count: 0,
            last_triggered_at: None,
            last_error: String::new(),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), InvalidDefinition> {
        validate_name(&self.id)?;
        if self.mode == HookMode::CronTask {
            validate_name(&self.task_folder)?;
        }
        if self.mode == HookMode::Wake && self.overrides != RunOverrides::default() {
            return Err(InvalidDefinition::Field {
                field: "provider",
                message: "wake hooks use the chat's session; provider/model/effort do not apply"
                    .into(),
            });
        }
        if self.prompt_template.trim().is_empty() {
            return Err(InvalidDefinition::Field {
                field: "prompt_template",
                message: "must not be empty".into(),
            });
        }
        quiet_hours(self.quiet_start, self.quiet_end)?;
        auth::validate(&self.auth)
    }
}
