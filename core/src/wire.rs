//! The edge between proto and domain: inbound gateway messages and runner
//! events are validated into `model` types here, and outbound actions and run
//! requests are turned into proto messages. Elsewhere in core, `pb` types
//! appear only as what the gRPC services and the runner client pass through,
//! and as the outbox's stored form of an action (`outbox.rs`); automation's
//! own service converts in `automation/grpc.rs`.

use ductor_daemon::config::PermissionModeSetting;
use ductor_proto::error::required;
use ductor_proto::{ProtocolError, pb};

use crate::model::{
    ApprovalRequest, Attachment, Button, ButtonGrid, ButtonStyle, Capabilities, Inbound,
    InboundKind, Media, OutKind, Outbound, ProviderInfo, RunError, RunErrorKind, RunEvent,
    RunOutcome, RunRequest, RunResponse, RunResult, SessionKey, SignalKind,
};

/// The `Hello` of a gateway, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HelloInfo {
    /// Transport name.
    pub transport: String,
    /// What the gateway can do.
    pub caps: Capabilities,
    /// Chats a scoped client wants; empty = the whole transport.
    pub scope: Vec<(String, String)>,
    /// Gateway version (logged).
    pub version: String,
}

impl TryFrom<pb::Hello> for HelloInfo {
    type Error = ProtocolError;

    fn try_from(hello: pb::Hello) -> Result<Self, ProtocolError> {
        let transport = required("hello.transport", hello.transport)?;
        if transport.len() > 64 || transport.contains([':', '@']) || transport == crate::agents::BUS
        {
            return Err(ProtocolError::invalid(
                "hello.transport",
                "at most 64 bytes, no ':' or '@', not \"bus\"",
            ));
        }
        let agent = hello.agent;
        if !(agent.is_empty()
            || agent == ductor_daemon::config::MAIN_AGENT
            || ductor_daemon::config::valid_agent_name(&agent))
        {
            return Err(ProtocolError::invalid("hello.agent", "not an agent name"));
        }
        let transport = crate::model::endpoint(&transport, &agent);
        let mut caps = hello.capabilities.map(caps_from_pb).unwrap_or_default();
        let scope: Vec<(String, String)> = hello
            .scope
            .into_iter()
            .map(|chat| Ok((required("hello.scope.chat_id", chat.chat_id)?, chat.topic_id)))
            .collect::<Result<_, ProtocolError>>()?;
        caps.operator = !scope.is_empty();
        Ok(Self { transport, caps, scope, version: hello.version })
    }
}

fn caps_from_pb(caps: pb::Capabilities) -> Capabilities {
    let buttons = match caps.buttons() {
        pb::ButtonStyle::Reactions => ButtonStyle::Reactions,
        pb::ButtonStyle::None => ButtonStyle::None,
        pb::ButtonStyle::Keyboard | pb::ButtonStyle::Unspecified => ButtonStyle::Keyboard,
    };
    Capabilities {
        max_message_len: caps.max_message_len,
        can_edit: caps.can_edit,
        buttons,
        topics: caps.topics,
        file_upload: caps.file_upload,
        operator: false,
    }
}

/// Validates an inbound event from `transport`.
pub fn inbound_from_pb(transport: &str, event: pb::InboundEvent) -> Result<Inbound, ProtocolError> {
    let event_id = required("inbound.event_id", event.event_id)?;
    let chat = event.chat.ok_or(ProtocolError::MissingField("inbound.chat"))?;
    let chat_id = required("inbound.chat.chat_id", chat.chat_id)?;
    let kind = match event.kind.ok_or(ProtocolError::MissingField("inbound.kind"))? {
        pb::inbound_event::Kind::Message(message) => {
            InboundKind::Message { text: message.text, reply_quote: message.reply_quote }
        }
        pb::inbound_event::Kind::Button(press) => InboundKind::Button {
            button_id: required("inbound.button.button_id", press.button_id)?,
        },
        pb::inbound_event::Kind::Media(media) => {
            let path = required("inbound.media.path", media.path)?;
            if !std::path::Path::new(&path).is_absolute() {
                return Err(ProtocolError::invalid("inbound.media.path", "must be absolute"));
            }
            InboundKind::Media(Media {
                path,
                mime_type: media.mime_type,
                caption: media.caption,
                original_filename: media.original_filename,
                media_kind: media.media_kind,
                reply_quote: media.reply_quote,
            })
        }
    };
    Ok(Inbound {
        event_id,
        key: SessionKey::new(transport, chat_id, chat.topic_id),
        sender_id: event.sender_id,
        kind,
    })
}

fn grid_to_pb(grid: ButtonGrid) -> Vec<pb::ButtonRow> {
    grid.into_iter()
        .map(|row| pb::ButtonRow {
            buttons: row.into_iter().map(|b| pb::Button { id: b.id, label: b.label }).collect(),
        })
        .collect()
}

fn attachment_to_pb(file: Attachment) -> pb::Attachment {
    pb::Attachment {
        path: file.path,
        mime_type: file.mime_type,
        is_image: file.is_image,
        file_name: file.file_name,
        dev: file.identity.map_or(0, |id| id.dev),
        ino: file.identity.map_or(0, |id| id.ino),
        changed_ns: file.identity.map_or(0, |id| id.changed_ns),
        size: file.size,
    }
}

/// Turns an outbound action into its proto form (without an action id yet).
pub fn outbound_to_pb(action: Outbound) -> pb::OutboundAction {
    use pb::outbound_action::Kind;
    let durable = action.kind.durable();
    let kind = match action.kind {
        OutKind::TurnStarted { provider, model } => {
            Kind::TurnStarted(pb::TurnStarted { provider, model })
        }
        OutKind::Delta(text) => Kind::TextDelta(pb::TextDeltaAction { text }),
        OutKind::Tool { name, summary, finished, ok } => {
            Kind::Tool(pb::ToolActivity { name, summary, finished, ok })
        }
        OutKind::Status { status, detail } => Kind::Status(pb::StatusAction { status, detail }),
        OutKind::Final(reply) => Kind::FinalReply(pb::FinalReply {
            text: reply.text,
            buttons: grid_to_pb(reply.buttons),
            files: reply.files.into_iter().map(attachment_to_pb).collect(),
            footer: reply.footer,
            notify: reply.notify,
        }),
        OutKind::Error { message, kind } => Kind::Error(pb::ErrorReply { message, kind }),
        OutKind::Notice { text, notify } => Kind::Notice(pb::Notice { text, notify }),
        OutKind::Selector { selector_id, text, buttons } => {
            Kind::Selector(pb::SelectorMenu { selector_id, text, buttons: grid_to_pb(buttons) })
        }
        OutKind::Queued { entry_id, text, buttons } => {
            Kind::QueueNotice(pb::QueueNotice { entry_id, text, buttons: grid_to_pb(buttons) })
        }
        OutKind::LeaveChat => Kind::LeaveChat(pb::LeaveChat {}),
        OutKind::QueueClear { entry_id, reason } => {
            Kind::QueueClear(pb::QueueNoticeClear { entry_id, reason })
        }
    };
    pb::OutboundAction {
        action_id: 0,
        chat: Some(pb::ChatRef { chat_id: action.key.chat_id, topic_id: action.key.topic_id }),
        turn_id: action.turn_id,
        durable,
        reply_to_event: action.reply_to,
        kind: Some(kind),
    }
}

/// Converts a run event; `None` for events core does not use (thinking).
pub fn run_event_from_pb(event: pb::RunEvent) -> Result<Option<RunEvent>, ProtocolError> {
    use pb::run_event::Kind;
    let kind = event.kind.ok_or(ProtocolError::MissingField("run_event.kind"))?;
    Ok(Some(match kind {
        Kind::Started(_) => RunEvent::Started,
        Kind::Session(session) => RunEvent::Session(session.session_id),
        Kind::Text(text) => RunEvent::Text(text.text),
        Kind::Thinking(_) => return Ok(None),
        Kind::ToolStarted(tool) => RunEvent::ToolStarted { name: tool.name, summary: tool.summary },
        Kind::ToolFinished(tool) => RunEvent::ToolFinished { name: tool.name, ok: tool.ok },
        Kind::Status(status) => RunEvent::Status { status: status.status, detail: status.detail },
        Kind::PermissionDenied(denied) => RunEvent::Status {
            status: "permission_denied".to_owned(),
            detail: format!("{}: {}", denied.tool_name, denied.message),
        },
        Kind::ApprovalRequested(asked) => RunEvent::ApprovalRequested(ApprovalRequest {
            request_id: asked.request_id,
            tool: asked.tool,
            input_json: asked.input_json,
            description: asked.description,
        }),
        Kind::Steered(steered) => RunEvent::Steered(steered.text),
        Kind::Result(result) => {
            // `usage` is this run only; its input_tokens already count cached ones.
            let usage = result.usage.unwrap_or_default();
            RunEvent::Result(RunResult {
                text: result.text,
                session_id: result.session_id,
                is_error: result.is_error,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cost_usd: result.cost_usd,
                duration_ms: result.duration_ms,
                session_tokens: result.session_usage.map(|u| (u.input_tokens, u.output_tokens)),
                session_cost_usd: result.session_cost_usd,
            })
        }
        Kind::Error(error) => RunEvent::Error(RunError {
            kind: error_kind_from_pb(error.kind()),
            message: error.message,
            stderr_tail: error.stderr_tail,
            recoverable: error.recoverable,
        }),
        Kind::Exited(exited) => RunEvent::Exited(match exited.outcome() {
            pb::RunOutcome::Completed => RunOutcome::Completed,
            pb::RunOutcome::Interrupted => RunOutcome::Interrupted,
            pb::RunOutcome::Stopped => RunOutcome::Stopped,
            pb::RunOutcome::Killed => RunOutcome::Killed,
            pb::RunOutcome::TimedOut => RunOutcome::TimedOut,
            pb::RunOutcome::Failed | pb::RunOutcome::Unspecified => RunOutcome::Failed,
        }),
    }))
}

fn error_kind_from_pb(kind: pb::ErrorKind) -> RunErrorKind {
    match kind {
        pb::ErrorKind::SessionNotFound => RunErrorKind::SessionNotFound,
        pb::ErrorKind::Timeout => RunErrorKind::Timeout,
        pb::ErrorKind::IdleTimeout => RunErrorKind::IdleTimeout,
        pb::ErrorKind::ModelApi => RunErrorKind::ModelApi,
        pb::ErrorKind::Auth => RunErrorKind::Auth,
        pb::ErrorKind::SpawnFailed => RunErrorKind::SpawnFailed,
        pb::ErrorKind::Crashed => RunErrorKind::Crashed,
        pb::ErrorKind::Interrupted => RunErrorKind::Interrupted,
        pb::ErrorKind::Stopped => RunErrorKind::Stopped,
        pb::ErrorKind::Killed => RunErrorKind::Killed,
        pb::ErrorKind::SessionBusy => RunErrorKind::SessionBusy,
        _ => RunErrorKind::Other,
    }
}

/// Converts the runner's probe answer.
pub fn providers_from_pb(probe: pb::ProbeResponse) -> Vec<ProviderInfo> {
    probe
        .providers
        .into_iter()
        .map(|p| ProviderInfo {
            name: p.name,
            installed: p.installed,
            version: p.version,
            auth_hint: p.auth_hint,
            default_model: if p.default_model.is_empty() {
                p.models.first().cloned().unwrap_or_default()
            } else {
                p.default_model
            },
            models: p.models,
            efforts: p.efforts,
            can_approve: p.can_approve,
            can_steer: p.can_steer,
        })
        .collect()
}

/// A response for a live run.
pub fn respond_to_pb(run_id: &str, response: RunResponse) -> pb::RespondRequest {
    use pb::respond_request::What;
    let what = match response {
        RunResponse::Approval { request_id, allow, message } => {
            What::Approval(pb::ApprovalAnswer { request_id, allow, message })
        }
        RunResponse::Steer(text) => What::Steer(pb::SteerInput { text }),
    };
    pb::RespondRequest { run_id: run_id.to_owned(), what: Some(what) }
}

/// Builds the runner's `RunSpec`.
pub fn run_spec_to_pb(
    request: RunRequest,
    working_dir: &str,
    permission: pb::PermissionMode,
) -> pb::RunSpec {
    pb::RunSpec {
        run_id: request.run_id,
        provider: request.provider,
        model: request.model,
        reasoning_effort: request.effort,
        prompt: request.prompt,
        resume_session_id: request.resume_session_id,
        working_dir: working_dir.to_owned(),
        append_system_prompt: request.append_system_prompt,
        permission_mode: permission as i32,
        extra_args: Vec::new(),
        extra_env: request.extra_env.into_iter().collect(),
        total_timeout_ms: request.total_timeout_ms,
        idle_timeout_ms: request.idle_timeout_ms,
        labels: request.labels.into_iter().collect(),
        interactive: request.interactive,
        agent: request.agent,
    }
}

/// The `Welcome` of a (re)attaching gateway: `pending` actions follow, and
/// the command menu comes from core's one command list.
pub fn welcome(version: &str, pending: u64) -> pb::Welcome {
    let commands = crate::commands::COMMANDS
        .iter()
        .filter(|spec| spec.in_menu)
        .map(|spec| pb::CommandInfo {
            name: spec.name.to_owned(),
            description: spec.description.to_owned(),
        })
        .collect();
    pb::Welcome { core_version: version.to_owned(), pending, commands }
}

/// A signal for the runner.
pub fn signal_to_pb(kind: SignalKind) -> pb::SignalKind {
    match kind {
        SignalKind::Interrupt => pb::SignalKind::Interrupt,
        SignalKind::Stop => pb::SignalKind::Stop,
    }
}

/// `[agent].permission_mode` for the runner.
pub fn permission_to_pb(mode: PermissionModeSetting) -> pb::PermissionMode {
    match mode {
        PermissionModeSetting::Default => pb::PermissionMode::Default,
        PermissionModeSetting::AcceptEdits => pb::PermissionMode::AcceptEdits,
        PermissionModeSetting::Bypass => pb::PermissionMode::Bypass,
        PermissionModeSetting::Plan => pb::PermissionMode::Plan,
        PermissionModeSetting::Ask => pb::PermissionMode::Ask,
    }
}

/// A button from its proto form (used by tests and the CLI client).
pub fn button(id: impl Into<String>, label: impl Into<String>) -> Button {
    Button { id: id.into(), label: label.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_requires_event_id_and_chat() {
        let event = pb::InboundEvent {
            event_id: String::new(),
            chat: Some(pb::ChatRef { chat_id: "1".into(), topic_id: String::new() }),
            kind: Some(pb::inbound_event::Kind::Message(pb::UserMessage::default())),
            ..Default::default()
        };
        assert_eq!(
            inbound_from_pb("cli", event).unwrap_err(),
            ProtocolError::MissingField("inbound.event_id")
        );
        let event = pb::InboundEvent {
            event_id: "e1".into(),
            chat: None,
            kind: Some(pb::inbound_event::Kind::Message(pb::UserMessage::default())),
            ..Default::default()
        };
        assert_eq!(
            inbound_from_pb("cli", event).unwrap_err(),
            ProtocolError::MissingField("inbound.chat")
        );
    }

    #[test]
    fn media_path_must_be_absolute() {
        let event = pb::InboundEvent {
            event_id: "e1".into(),
            chat: Some(pb::ChatRef { chat_id: "1".into(), topic_id: "t".into() }),
            kind: Some(pb::inbound_event::Kind::Media(pb::MediaRef {
                path: "relative.png".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(inbound_from_pb("tg", event).is_err());
    }

    #[test]
    fn durable_flag_follows_the_kind() {
        let key = SessionKey::new("cli", "1", "");
        let delta = outbound_to_pb(Outbound {
            key: key.clone(),
            turn_id: "t".into(),
            reply_to: "e".into(),
            kind: OutKind::Delta("x".into()),
        });
        assert!(!delta.durable);
        assert_eq!(delta.reply_to_event, "e");
        let notice = outbound_to_pb(Outbound {
            key,
            turn_id: String::new(),
            reply_to: String::new(),
            kind: OutKind::Notice { text: "n".into(), notify: false },
        });
        assert!(notice.durable);
    }
}
