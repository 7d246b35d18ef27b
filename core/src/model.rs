//! Core's domain types: what comes in from gateways, what goes out to them,
//! and what a run reports. Proto types are converted at the edge (`wire`);
//! everything inside core speaks these.

use ductor_daemon::config::PermissionModeSetting;
use std::fmt;

/// Which conversation a message belongs to: `(transport, chat, topic)`.
///
/// Core never interprets the parts; it only compares them, except for the
/// agent: a sub-agent's endpoint is `<transport>@<agent>` (`telegram@researcher`),
/// so the agent is part of every key, storage key and log line. The topic is
/// empty when the chat has no topics or threads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// "telegram", "matrix", "cli", ...
    pub transport: String,
    /// The transport's chat id.
    pub chat_id: String,
    /// The transport's topic/thread id; empty when none.
    pub topic_id: String,
}

impl SessionKey {
    /// Builds a key.
    pub fn new(
        transport: impl Into<String>,
        chat_id: impl Into<String>,
        topic_id: impl Into<String>,
    ) -> Self {
        Self { transport: transport.into(), chat_id: chat_id.into(), topic_id: topic_id.into() }
    }

    /// The agent this conversation belongs to (`main` unless the transport
    /// names one after `@`).
    pub fn agent(&self) -> &str {
        agent_of(&self.transport)
    }

    /// `transport:chat` or `transport:chat:topic`, used as the database key.
    /// Unambiguous because the parts are stored separately as well.
    pub fn storage_key(&self) -> String {
        if self.topic_id.is_empty() {
            format!("{}:{}", self.transport, self.chat_id)
        } else {
            format!("{}:{}:{}", self.transport, self.chat_id, self.topic_id)
        }
    }
}

/// The agent of an endpoint name: `telegram@researcher` → `researcher`,
/// `telegram` → `main`.
pub fn agent_of(transport: &str) -> &str {
    transport.split_once('@').map_or(ductor_daemon::config::MAIN_AGENT, |(_, agent)| agent)
}

/// The endpoint name of `transport` for `agent` (`main` keeps the bare name).
pub fn endpoint(transport: &str, agent: &str) -> String {
    if agent.is_empty() || agent == ductor_daemon::config::MAIN_AGENT {
        transport.to_owned()
    } else {
        format!("{transport}@{agent}")
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.storage_key())
    }
}

/// How a transport shows buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ButtonStyle {
    /// Inline keyboard.
    #[default]
    Keyboard,
    /// Numbered options answered by reactions.
    Reactions,
    /// No buttons: core appends numbered text options and accepts a number.
    None,
}

/// What a gateway declared it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Longest message in the transport's unit (splitting is the gateway's job).
    pub max_message_len: u32,
    /// Messages can be edited in place.
    pub can_edit: bool,
    /// How buttons are shown.
    pub buttons: ButtonStyle,
    /// The transport has topics or threads.
    pub topics: bool,
    /// Files can be sent.
    pub file_upload: bool,
    /// A terminal client of the operator (`ductorctl chat`/`ask`: a scoped
    /// `Hello` over the local token): its chats administer ductor.
    pub operator: bool,
}

/// One inbound event, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Unique per transport; duplicates are dropped.
    pub event_id: String,
    /// The conversation.
    pub key: SessionKey,
    /// The sender's id on the transport.
    pub sender_id: String,
    /// What the event is.
    pub kind: InboundKind,
}

/// The kinds of inbound event.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundKind {
    /// A text message.
    Message {
        /// The text.
        text: String,
        /// The quoted message, when the user replied to one.
        reply_quote: String,
    },
    /// A button was pressed.
    Button {
        /// The pressed `Button::id`.
        button_id: String,
    },
    /// A file the gateway downloaded.
    Media(Media),
}

/// A downloaded file sent by the user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Media {
    /// Absolute local path.
    pub path: String,
    /// MIME type.
    pub mime_type: String,
    /// Caption typed with the file.
    pub caption: String,
    /// The file's original name.
    pub original_filename: String,
    /// "photo", "voice", "document", ...
    pub media_kind: String,
    /// The quoted message, when the file was a reply.
    pub reply_quote: String,
}

/// A received file made ready by the runner before its turn
/// (`Runner.PrepareMedia`): transcribed, or resized.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreparedMedia {
    /// What the agent should read (a resized copy, else the original).
    pub path: String,
    /// Its MIME type.
    pub mime_type: String,
    /// What a recording says (empty when not transcribed).
    pub transcript: String,
    /// "command" or "endpoint".
    pub transcribed_by: String,
    /// An image's size before resizing; `(0, 0)` when not resized.
    pub original: (u32, u32),
    /// Its size after.
    pub size: (u32, u32),
    /// What could not be done, for the agent.
    pub notes: Vec<String>,
}

/// A button offered to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// Sent back in a button press; at most 64 bytes.
    pub id: String,
    /// What the user sees.
    pub label: String,
}

/// Rows of buttons.
pub type ButtonGrid = Vec<Vec<Button>>;

/// A file attached to a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Absolute, canonical path.
    pub path: String,
    /// MIME type guessed from the extension.
    pub mime_type: String,
    /// Shown inline as an image where the transport can.
    pub is_image: bool,
    /// The file name.
    pub file_name: String,
    /// Which file was approved (`None` in tests that make attachments up).
    pub identity: Option<ductor_daemon::safe_fs::FileId>,
    /// Its size when approved.
    pub size: u64,
}

/// The final answer of a turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FinalReply {
    /// Markdown, with button markers and file tags removed.
    pub text: String,
    /// Buttons from `[button:...]` markers.
    pub buttons: ButtonGrid,
    /// Files from `<file:...>` tags that passed the allowed-roots check.
    pub files: Vec<Attachment>,
    /// Model, tokens, cost and time.
    pub footer: String,
    /// Should the transport notify the user.
    pub notify: bool,
}

/// An action for a chat, before the outbox numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The chat.
    pub key: SessionKey,
    /// The turn it belongs to; empty outside turns.
    pub turn_id: String,
    /// The inbound event it answers; empty when unsolicited.
    pub reply_to: String,
    /// What to show.
    pub kind: OutKind,
}

/// The kinds of outbound action.
#[derive(Debug, Clone, PartialEq)]
pub enum OutKind {
    /// A turn began.
    TurnStarted {
        /// Provider name.
        provider: String,
        /// Model name (may be empty: the provider's default).
        model: String,
    },
    /// Streamed text.
    Delta(String),
    /// A tool started or finished.
    Tool {
        /// Tool name.
        name: String,
        /// One-line summary.
        summary: String,
        /// Finished (else running).
        finished: bool,
        /// Succeeded (when finished).
        ok: bool,
    },
    /// A progress status ("compacting", ...).
    Status {
        /// Short status.
        status: String,
        /// Detail text.
        detail: String,
    },
    /// The turn's answer.
    Final(FinalReply),
    /// The turn failed.
    Error {
        /// Human-readable message.
        message: String,
        /// Stable kind: "timeout", "interrupted", "stopped", ...
        kind: String,
    },
    /// A message from ductor itself.
    Notice {
        /// The text.
        text: String,
        /// Should the transport notify.
        notify: bool,
    },
    /// A menu; a later one with the same id replaces it.
    Selector {
        /// Selector id.
        selector_id: String,
        /// Text above the buttons.
        text: String,
        /// The buttons.
        buttons: ButtonGrid,
    },
    /// A message waits for the running turn.
    Queued {
        /// Queue entry id.
        entry_id: String,
        /// Text shown.
        text: String,
        /// The cancel button.
        buttons: ButtonGrid,
    },
    /// A queue notice is obsolete.
    QueueClear {
        /// Queue entry id.
        entry_id: String,
        /// "started", "cancelled" or "dropped".
        reason: String,
    },
    /// The bot leaves this chat (an admin chat's `/leave`).
    LeaveChat,
}

impl OutKind {
    /// Durable actions are persisted until acknowledged and re-sent after a
    /// gateway reconnects; deltas, tool activity and status are best-effort.
    pub fn durable(&self) -> bool {
        !matches!(
            self,
            Self::TurnStarted { .. } | Self::Delta(_) | Self::Tool { .. } | Self::Status { .. }
        )
    }
}

/// What a provider offers, from the runner's `Probe`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderInfo {
    /// "claude", "codex", "gemini".
    pub name: String,
    /// The CLI is installed.
    pub installed: bool,
    /// CLI version.
    pub version: String,
    /// Auth hint.
    pub auth_hint: String,
    /// Models for selectors; the first is the default.
    pub models: Vec<String>,
    /// The default model.
    pub default_model: String,
    /// Reasoning efforts accepted.
    pub efforts: Vec<String>,
    /// The CLI asks for tool approvals (`ask` mode works).
    pub can_approve: bool,
    /// The CLI takes steering messages into a running turn.
    pub can_steer: bool,
}

/// How a run is signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// SIGINT: the run may still finish.
    Interrupt,
    /// SIGTERM, then SIGKILL.
    Stop,
}

/// A provider-neutral run event (from the runner's stream).
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The CLI process started.
    Started,
    /// The provider's session id is known.
    Session(String),
    /// Assistant text.
    Text(String),
    /// A tool started.
    ToolStarted {
        /// Tool name.
        name: String,
        /// Input summary.
        summary: String,
    },
    /// A tool finished.
    ToolFinished {
        /// Tool name.
        name: String,
        /// Succeeded.
        ok: bool,
    },
    /// Progress status.
    Status {
        /// Short status.
        status: String,
        /// Detail.
        detail: String,
    },
    /// The CLI waits for permission to use a tool (`ask` mode).
    ApprovalRequested(ApprovalRequest),
    /// A steering message reached the CLI; its answer follows in this run.
    Steered(String),
    /// The final result line.
    Result(RunResult),
    /// An error; a non-recoverable one ends the run.
    Error(RunError),
    /// The process is gone; the last event of a run.
    Exited(RunOutcome),
}

/// A tool use waiting for the user's decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalRequest {
    /// The runner's key of the answer.
    pub request_id: String,
    /// The CLI's tool name.
    pub tool: String,
    /// The tool input (JSON object text).
    pub input_json: String,
    /// The CLI's own description, if any.
    pub description: String,
}

/// What core hands a running CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResponse {
    /// The answer to an [`ApprovalRequest`].
    Approval {
        /// Its request id.
        request_id: String,
        /// Allowed or denied.
        allow: bool,
        /// Told to the agent with a denial.
        message: String,
    },
    /// A message into the running turn.
    Steer(String),
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunResult {
    /// Final text.
    pub text: String,
    /// Provider session id.
    pub session_id: String,
    /// The provider reported an error result.
    pub is_error: bool,
    /// Input tokens (including cached).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost of this run, when the provider reports one.
    pub cost_usd: Option<f64>,
    /// Wall time reported by the provider.
    pub duration_ms: u64,
    /// The provider session's running token totals (input, output) when the
    /// CLI reports them: they replace the bucket's counters instead of adding.
    pub session_tokens: Option<(u64, u64)>,
    /// The provider session's running cost when the CLI reports it.
    pub session_cost_usd: Option<f64>,
}

/// Why a run failed, as the runner classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunErrorKind {
    /// The resume id is unknown: drop it.
    SessionNotFound,
    /// Total timeout.
    Timeout,
    /// No output for too long.
    IdleTimeout,
    /// The model API failed.
    ModelApi,
    /// Not logged in.
    Auth,
    /// The CLI could not be started.
    SpawnFailed,
    /// Exited without a result.
    Crashed,
    /// Interrupted on request.
    Interrupted,
    /// Stopped on request.
    Stopped,
    /// Killed.
    Killed,
    /// Another run uses the session.
    SessionBusy,
    /// Anything else.
    Other,
}

impl RunErrorKind {
    /// The stable kind string shown to gateways.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionNotFound => "session_not_found",
            Self::Timeout | Self::IdleTimeout => "timeout",
            Self::ModelApi => "model_api",
            Self::Auth => "auth",
            Self::SpawnFailed => "spawn_failed",
            Self::Crashed => "crashed",
            Self::Interrupted => "interrupted",
            Self::Stopped => "stopped",
            Self::Killed => "killed",
            Self::SessionBusy => "session_busy",
            Self::Other => "error",
        }
    }
}

/// An error reported during a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    /// Classification.
    pub kind: RunErrorKind,
    /// Message.
    pub message: String,
    /// Tail of the CLI's stderr.
    pub stderr_tail: String,
    /// The run goes on.
    pub recoverable: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// A result line was seen.
    Completed,
    /// Ended without a result.
    Failed,
    /// Interrupted on request.
    Interrupted,
    /// Stopped on request.
    Stopped,
    /// Killed.
    Killed,
    /// Timed out.
    TimedOut,
}

/// What a turn needs from the runner, before it becomes a `RunSpec`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunRequest {
    /// Run id (chosen by core so it can signal before the first event).
    pub run_id: String,
    /// Provider name.
    pub provider: String,
    /// Model; empty = provider default.
    pub model: String,
    /// Reasoning effort; empty = CLI default.
    pub effort: String,
    /// The prompt.
    pub prompt: String,
    /// Session to resume; empty = new.
    pub resume_session_id: String,
    /// Appended to the system prompt (new sessions: MAINMEMORY.md).
    pub append_system_prompt: String,
    /// Labels: transport, chat_id, topic_id, kind.
    pub labels: Vec<(String, String)>,
    /// Extra environment: DUCTOR_CHAT_ID, ...
    pub extra_env: Vec<(String, String)>,
    /// Total timeout.
    pub total_timeout_ms: u64,
    /// Output-silence timeout.
    pub idle_timeout_ms: u64,
    /// Permission mode of this run; `None` = `[agent].permission_mode`
    /// (a one-shot run never asks: `ask` becomes `default` there).
    pub permission: Option<PermissionModeSetting>,
    /// Keep the CLI's input open for steering.
    pub interactive: bool,
    /// The agent the run works for (its workspace); empty = `main`.
    pub agent: String,
}
