//! The one provider-neutral event model of a run.
//!
//! Provider parsers produce [`Event`]s; the supervisor adds the lifecycle
//! events (`Started`, `Exited`) and the edge converts everything to
//! `pb::RunEvent` in [`Event::into_kind`]. Nothing outside this file builds
//! `pb::run_event::Kind` by hand.

use ductor_proto::pb;

/// Why a run reported an error (mirrors `pb::ErrorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resume id is unknown or invalid: the caller should drop it.
    SessionNotFound,
    /// The total timeout fired.
    Timeout,
    /// No output for longer than the idle timeout.
    IdleTimeout,
    /// The model API answered with an error.
    ModelApi,
    /// The CLI is not logged in / the key was rejected.
    Auth,
    /// The binary is missing or not executable, or the sandbox failed.
    SpawnFailed,
    /// The CLI exited without a result line.
    Crashed,
    /// A line longer than `max_line_bytes` was skipped.
    OutputTooLarge,
    /// A line that is not valid JSON (skipped).
    Protocol,
    /// Another run is using the same provider session.
    SessionBusy,
    /// Something inside the runner failed.
    Internal,
}

impl ErrorKind {
    fn to_pb(self) -> pb::ErrorKind {
        match self {
            Self::SessionNotFound => pb::ErrorKind::SessionNotFound,
            Self::Timeout => pb::ErrorKind::Timeout,
            Self::IdleTimeout => pb::ErrorKind::IdleTimeout,
            Self::ModelApi => pb::ErrorKind::ModelApi,
            Self::Auth => pb::ErrorKind::Auth,
            Self::SpawnFailed => pb::ErrorKind::SpawnFailed,
            Self::Crashed => pb::ErrorKind::Crashed,
            Self::OutputTooLarge => pb::ErrorKind::OutputTooLarge,
            Self::Protocol => pb::ErrorKind::Protocol,
            Self::SessionBusy => pb::ErrorKind::SessionBusy,
            Self::Internal => pb::ErrorKind::Internal,
        }
    }
}

/// Token counts of a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, cached ones included (claude's figures are summed up to this).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from a cache.
    pub cached_input_tokens: u64,
}

impl Usage {
    fn into_pb(self) -> pb::Usage {
        pb::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
        }
    }
}

/// The final result line of a turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    /// Final reply text.
    pub text: String,
    /// Provider session id (to resume).
    pub session_id: String,
    /// The CLI reported the turn as failed.
    pub is_error: bool,
    /// Tokens of this run only; `None` when the CLI reports only running
    /// totals (codex).
    pub usage: Option<Usage>,
    /// Cost of this run only, in USD, when derivable.
    pub cost_usd: Option<f64>,
    /// The CLI's running token totals for the whole provider session (claude, codex).
    pub session_usage: Option<Usage>,
    /// The CLI's running cost total for the session (claude).
    pub session_cost_usd: Option<f64>,
    /// Duration of the turn in milliseconds: the CLI's figure, or (codex,
    /// or a CLI that gives none) the runner's clock from spawn to the result line.
    pub duration_ms: u64,
    /// Model turns (model requests) of this run: claude's `num_turns`; for
    /// codex and gemini, tool batches + 1, where a batch is a run of tool
    /// calls without assistant text between them. 0 means unknown.
    pub num_turns: u32,
}

/// A run error.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    /// Classification callers branch on.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
    /// Last lines of the CLI's stderr, when relevant.
    pub stderr_tail: String,
    /// The run goes on after this error.
    pub recoverable: bool,
}

impl RunError {
    /// An error that ends the run (stderr tail added by the supervisor).
    pub fn fatal(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), stderr_tail: String::new(), recoverable: false }
    }

    /// An error after which the run goes on.
    pub fn recoverable(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), stderr_tail: String::new(), recoverable: true }
    }
}

/// How a run ended (mirrors `pb::RunOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final result line was seen (it may be an error result).
    Completed,
    /// Ended without a result.
    Failed,
    /// Interrupted on request (SIGINT).
    Interrupted,
    /// Stopped on request, on shutdown, or because the caller went away.
    Stopped,
    /// Killed on request.
    Killed,
    /// A timeout fired.
    TimedOut,
}

impl Outcome {
    fn to_pb(self) -> pb::RunOutcome {
        match self {
            Self::Completed => pb::RunOutcome::Completed,
            Self::Failed => pb::RunOutcome::Failed,
            Self::Interrupted => pb::RunOutcome::Interrupted,
            Self::Stopped => pb::RunOutcome::Stopped,
            Self::Killed => pb::RunOutcome::Killed,
            Self::TimedOut => pb::RunOutcome::TimedOut,
        }
    }
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The CLI process is running.
    Started {
        /// Its pid (also its process group id).
        pid: u32,
        /// Effective sandbox: "landlock" or "none".
        sandbox: String,
        /// Resolved binary path.
        binary: String,
        /// CLI version when known.
        cli_version: String,
    },
    /// The provider announced the session id.
    Session(String),
    /// Assistant text, as it streams.
    Text(String),
    /// Reasoning text.
    Thinking(String),
    /// A tool call began.
    ToolStarted {
        /// Provider's id of the call.
        id: String,
        /// Tool name.
        name: String,
        /// One-line summary of the input.
        summary: String,
    },
    /// A tool call ended.
    ToolFinished {
        /// Provider's id of the call.
        id: String,
        /// Tool name when known.
        name: String,
        /// The tool succeeded.
        ok: bool,
        /// Short tail of the output.
        output: String,
    },
    /// Progress information ("requesting", "retrying", "compacting", ...).
    Status {
        /// Status word.
        status: String,
        /// Detail text.
        detail: String,
    },
    /// The CLI refused a tool call.
    PermissionDenied {
        /// The tool.
        tool: String,
        /// The CLI's message.
        message: String,
    },
    /// The CLI waits for permission to use a tool (`ask` mode).
    ApprovalRequested {
        /// The key of the answer.
        request_id: String,
        /// Tool name.
        tool: String,
        /// The tool input (a JSON object), echoed back when allowed.
        input: serde_json::Value,
        /// The CLI's one-line description.
        description: String,
    },
    /// A steering message reached the CLI.
    Steered(String),
    /// The final result line.
    Result(RunResult),
    /// An error.
    Error(RunError),
    /// The process is gone (always the last event).
    Exited {
        /// How the run ended.
        outcome: Outcome,
        /// Exit code when it exited normally.
        exit_code: Option<i32>,
        /// Signal number when it was killed by a signal.
        signal: Option<i32>,
        /// Wall time of the run.
        duration_ms: u64,
    },
}

impl Event {
    /// The wire form of this event.
    pub fn into_kind(self) -> pb::run_event::Kind {
        use pb::run_event::Kind;
        match self {
            Self::Started { pid, sandbox, binary, cli_version } => {
                Kind::Started(pb::RunStarted { pid, sandbox, binary, cli_version })
            }
            Self::Session(session_id) => Kind::Session(pb::SessionStarted { session_id }),
            Self::Text(text) => Kind::Text(pb::TextDelta { text }),
            Self::Thinking(text) => Kind::Thinking(pb::Thinking { text }),
            Self::ToolStarted { id, name, summary } => {
                Kind::ToolStarted(pb::ToolStarted { tool_id: id, name, summary })
            }
            Self::ToolFinished { id, name, ok, output } => {
                Kind::ToolFinished(pb::ToolFinished { tool_id: id, name, ok, output })
            }
            Self::Status { status, detail } => Kind::Status(pb::RunStatus { status, detail }),
            Self::PermissionDenied { tool, message } => {
                Kind::PermissionDenied(pb::PermissionDenied { tool_name: tool, message })
            }
            Self::ApprovalRequested { request_id, tool, input, description } => {
                Kind::ApprovalRequested(pb::ApprovalRequested {
                    request_id,
                    tool,
                    input_json: input.to_string(),
                    description,
                })
            }
            Self::Steered(text) => Kind::Steered(pb::Steered { text }),
            Self::Result(result) => Kind::Result(pb::RunResult {
                text: result.text,
                session_id: result.session_id,
                is_error: result.is_error,
                usage: result.usage.map(Usage::into_pb),
                cost_usd: result.cost_usd,
                duration_ms: result.duration_ms,
                num_turns: result.num_turns,
                session_usage: result.session_usage.map(Usage::into_pb),
                session_cost_usd: result.session_cost_usd,
            }),
            Self::Error(error) => Kind::Error(pb::RunError {
                kind: error.kind.to_pb() as i32,
                message: error.message,
                stderr_tail: error.stderr_tail,
                recoverable: error.recoverable,
            }),
            Self::Exited { outcome, exit_code, signal, duration_ms } => {
                Kind::Exited(pb::RunExited {
                    outcome: outcome.to_pb() as i32,
                    exit_code,
                    signal,
                    duration_ms,
                })
            }
        }
    }
}

/// Cuts `text` to at most `max` bytes on a char boundary, adding "…" when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The last `max` bytes of `text` on a char boundary, with "…" in front when cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// First line of `text`, cut to `max` bytes (tool summaries are one line).
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let more = text.trim().lines().count() > 1;
    let cut = truncate(line, max);
    if more && !cut.ends_with('…') { format!("{cut} …") } else { cut }
}
