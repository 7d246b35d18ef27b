//! Codex CLI: `codex [-c model_reasoning_effort="E"] exec --json
//! --skip-git-repo-check [permission flags] [-m MODEL] [args] [resume] [--] [THREAD] PROMPT`.
//!
//! **`exec --json` by default, `app-server` when asked.** A run in `ask` mode
//! or marked interactive uses `codex app-server` ([`super::codex_app`]):
//! approvals, steering, interrupt without a signal, and text per token. Every
//! other run stays on `exec --json`, a one-shot process with the same
//! lifecycle as claude's and gemini's plain runs (the prompt on stdin, one
//! result line, signals end it), because app-server is marked experimental
//! and changes between releases. The price of `exec`: codex text arrives per
//! completed `agent_message` item, not per token. Interrupt is SIGINT (codex
//! exits 1 and the thread stays resumable).
//!
//! Flags go before `resume` so they parse at the `exec` level whichever of
//! them codex marks global; `-c` overrides go before `exec` (root level).

use std::collections::HashMap;

use serde_json::Value;

use super::{ExitInfo, Invocation, Turns, Unknown, mentions, str_of, tool_summary, u64_of};
use crate::event::{ErrorKind, Event, RunError, RunResult, Usage, one_line, tail};
use crate::spec::{PermissionMode, RunSpec};

/// argv and environment for one codex turn.
///
/// Codex's own sandbox (bubblewrap) needs mounts, which Landlock forbids, so
/// inside the runner's fence (`confined`) "bypass" and "accept edits" run
/// codex without its sandbox: the runner's Landlock already limits writes to
/// the working directory and state dirs. Unconfined, codex's own sandbox is
/// never switched off: both become `--sandbox workspace-write`. Default and
/// plan keep codex's read-only sandbox, which then fails closed (commands do
/// not run).
pub fn invocation(
    spec: &RunSpec,
    mode: PermissionMode,
    config_args: &[String],
    confined: bool,
) -> Invocation {
    let mut args: Vec<String> = Vec::new();
    if let Some(effort) = &spec.effort {
        args.extend(["-c".into(), format!("model_reasoning_effort=\"{effort}\"")]);
    }
    args.extend(["exec", "--json", "--skip-git-repo-check"].map(String::from));
    match mode {
        PermissionMode::Bypass | PermissionMode::AcceptEdits if confined => {
            args.push("--dangerously-bypass-approvals-and-sandbox".into());
        }
        PermissionMode::Bypass | PermissionMode::AcceptEdits => {
            args.extend(["--sandbox".into(), "workspace-write".into()]);
        }
        PermissionMode::Plan => args.extend(["--sandbox".into(), "read-only".into()]),
        PermissionMode::Default | PermissionMode::Ask => {}
    }
    if let Some(model) = &spec.model {
        args.extend(["-m".into(), model.clone()]);
    }
    args.extend(config_args.iter().cloned());
    args.extend(spec.extra_args.iter().cloned());
    if let Some(thread) = &spec.resume {
        args.extend(["resume".into(), thread.clone()]);
    }
    // `-`: the prompt is read from stdin.
    args.push("-".into());
    Invocation::new(crate::spec::Provider::Codex, args, super::prompt_with_instructions(spec))
}

/// Codex `exec --json` parser state.
#[derive(Debug, Default)]
pub struct Parser {
    thread_id: String,
    last_message: String,
    pending_error: Option<String>,
    tools: HashMap<String, String>,
    turns: Turns,
}

impl Parser {
    /// The last `error` line not (yet) followed by `turn.failed`.
    pub fn pending_error(&self) -> Option<&str> {
        self.pending_error.as_deref()
    }

    /// One stdout line.
    pub fn parse(&mut self, line: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        match str_of(line, "type") {
            "thread.started" => {
                self.thread_id = str_of(line, "thread_id").to_owned();
                out.push(Event::Session(self.thread_id.clone()));
            }
            "turn.started" => {}
            "item.started" => self.item(line, false, out),
            "item.updated" => {}
            "item.completed" => self.item(line, true, out),
            "error" => self.error(str_of(line, "message"), out),
            "turn.completed" => out.push(Event::Result(self.result(line, false))),
            "turn.failed" => {
                let message = line
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .or(self.pending_error.as_deref())
                    .unwrap_or("turn failed")
                    .to_owned();
                self.pending_error = None;
                out.push(Event::Error(classify_message(&message)));
                let mut result = self.result(line, true);
                result.text = message;
                out.push(Event::Result(result));
            }
            other => return Err(Unknown(other.to_owned())),
        }
        Ok(())
    }

    fn error(&mut self, message: &str, out: &mut Vec<Event>) {
        if message.starts_with("Reconnecting") || message.starts_with("Falling back") {
            out.push(Event::Status { status: "retrying".into(), detail: one_line(message, 300) });
        } else {
            self.pending_error = Some(message.to_owned());
        }
    }

    fn result(&self, line: &Value, is_error: bool) -> RunResult {
        let usage = line.get("usage").cloned().unwrap_or(Value::Null);
        RunResult {
            text: self.last_message.clone(),
            session_id: self.thread_id.clone(),
            is_error,
            // `turn.completed.usage` is cumulative for the thread and the
            // previous total is unknown here: per-run usage stays empty.
            usage: None,
            cost_usd: None,
            session_usage: usage.is_object().then(|| Usage {
                input_tokens: u64_of(&usage, "input_tokens"),
                output_tokens: u64_of(&usage, "output_tokens"),
                cached_input_tokens: u64_of(&usage, "cached_input_tokens"),
            }),
            session_cost_usd: None,
            duration_ms: 0,
            num_turns: self.turns.count(),
        }
    }

    fn item(&mut self, line: &Value, completed: bool, out: &mut Vec<Event>) {
        let Some(item) = line.get("item") else { return };
        let id = str_of(item, "id").to_owned();
        let kind = str_of(item, "type");
        match (kind, completed) {
            ("agent_message", true) => {
                self.turns.text();
                let text = str_of(item, "text");
                if !text.is_empty() {
                    self.last_message = text.to_owned();
                    out.push(Event::Text(text.to_owned()));
                }
            }
            ("reasoning", true) => {
                let text = str_of(item, "text");
                if !text.is_empty() {
                    out.push(Event::Thinking(text.to_owned()));
                }
            }
            ("error", true) => out.push(Event::Status {
                status: "warning".into(),
                detail: one_line(str_of(item, "message"), 300),
            }),
            ("command_execution", false) => {
                self.turns.tool();
                self.tools.insert(id.clone(), "shell".into());
                out.push(Event::ToolStarted {
                    id,
                    name: "shell".into(),
                    summary: one_line(str_of(item, "command"), 200),
                });
            }
            ("command_execution", true) => {
                let ok = str_of(item, "status") == "completed"
                    && item.get("exit_code").and_then(Value::as_i64) == Some(0);
                self.finish(id, "shell", ok, tail(str_of(item, "aggregated_output"), 500), out);
            }
            ("agent_message" | "reasoning" | "error", false) => {}
            (other, false) => {
                self.turns.tool();
                let name = tool_name(other, item);
                self.tools.insert(id.clone(), name.clone());
                out.push(Event::ToolStarted { id, name, summary: tool_summary(item) });
            }
            (other, true) => {
                let ok = !matches!(str_of(item, "status"), "failed" | "declined");
                let name = tool_name(other, item);
                self.finish(id, &name, ok, String::new(), out);
            }
        }
    }

    /// A ToolFinished, preceded by a ToolStarted when codex printed only the completion.
    fn finish(&mut self, id: String, name: &str, ok: bool, output: String, out: &mut Vec<Event>) {
        if self.tools.remove(&id).is_none() {
            self.turns.tool();
            out.push(Event::ToolStarted {
                id: id.clone(),
                name: name.to_owned(),
                summary: String::new(),
            });
        }
        out.push(Event::ToolFinished { id, name: name.to_owned(), ok, output });
    }
}

fn tool_name(kind: &str, item: &Value) -> String {
    match kind {
        "file_change" => "edit".into(),
        "mcp_tool_call" => {
            let tool = str_of(item, "tool");
            if tool.is_empty() { "mcp".into() } else { format!("mcp:{tool}") }
        }
        other => other.to_owned(),
    }
}

/// Classifies an error message printed by codex (also by app-server).
pub(super) fn classify(message: &str) -> RunError {
    classify_message(message)
}

/// Classifies an error message printed by codex.
fn classify_message(message: &str) -> RunError {
    if mentions(
        message,
        &["401", "unauthorized", "not logged in", "invalid_api_key", "incorrect api key"],
    ) {
        RunError::fatal(ErrorKind::Auth, message)
    } else {
        RunError::fatal(ErrorKind::ModelApi, message)
    }
}

/// A run that ended without `turn.completed` / `turn.failed`.
pub fn classify_failure(exit: ExitInfo, stderr_tail: &str, pending: Option<&str>) -> RunError {
    if mentions(stderr_tail, &["no rollout found for thread id", "thread not found"]) {
        return RunError::fatal(
            ErrorKind::SessionNotFound,
            format!("codex could not resume the thread ({exit})"),
        );
    }
    if mentions(stderr_tail, &["not logged in", "401 unauthorized", "please login"]) {
        return RunError::fatal(ErrorKind::Auth, format!("codex is not authenticated ({exit})"));
    }
    match pending {
        Some(message) => {
            let mut error = classify_message(message);
            error.message = format!("{} ({exit})", one_line(message, 500));
            error
        }
        None => {
            RunError::fatal(ErrorKind::Crashed, format!("codex ended with {exit} without a result"))
        }
    }
}
