//! Gemini CLI: `gemini -p PROMPT -o stream-json [-m MODEL] [--approval-mode …]
//! [--resume ID]` with `GEMINI_CLI_NO_RELAUNCH=true` (one process, so signals
//! reach it) and `GEMINI_CLI_TRUST_WORKSPACE=true` (headless runs must not stop
//! at the trust prompt). Sessions are per working directory, so a resume must
//! use the same cwd. Gemini has no flag to *append* to the system prompt
//! (`GEMINI_SYSTEM_MD` replaces it), so the addition is put in front of the
//! prompt. Interrupted runs exit 0 without a `result` line.

use std::collections::HashMap;

use serde_json::Value;

use super::{ExitInfo, Invocation, Turns, Unknown, mentions, str_of, tool_summary, u64_of};
use crate::event::{ErrorKind, Event, RunError, RunResult, Usage, one_line, tail};
use crate::spec::{PermissionMode, RunSpec};

/// Exit code of `FATAL_AUTHENTICATION_ERROR`.
const EXIT_AUTH: i32 = 41;
/// Exit code of `FATAL_INPUT_ERROR` (bad resume id among others).
const EXIT_INPUT: i32 = 42;

/// argv and environment for one gemini turn.
pub fn invocation(spec: &RunSpec, mode: PermissionMode, config_args: &[String]) -> Invocation {
    // Headless with an empty `-p`: gemini reads the prompt from stdin.
    let mut args: Vec<String> = vec!["-p".into(), String::new()];
    args.extend(["-o".into(), "stream-json".into()]);
    if let Some(model) = &spec.model {
        args.extend(["-m".into(), model.clone()]);
    }
    match mode {
        PermissionMode::Default | PermissionMode::Ask => {}
        PermissionMode::AcceptEdits => args.extend(["--approval-mode".into(), "auto_edit".into()]),
        PermissionMode::Plan => args.extend(["--approval-mode".into(), "plan".into()]),
        PermissionMode::Bypass => args.push("--yolo".into()),
    }
    if let Some(session) = &spec.resume {
        args.extend(["--resume".into(), session.clone()]);
    }
    args.extend(config_args.iter().cloned());
    args.extend(spec.extra_args.iter().cloned());
    Invocation::new(crate::spec::Provider::Gemini, args, super::prompt_with_instructions(spec))
}

/// Gemini stream-json parser state.
#[derive(Debug, Default)]
pub struct Parser {
    session_id: String,
    /// Assistant text since the last tool call (the reply).
    reply: String,
    tools: HashMap<String, String>,
    turns: Turns,
}

impl Parser {
    /// One stdout line.
    pub fn parse(&mut self, line: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        match str_of(line, "type") {
            "init" => {
                self.session_id = str_of(line, "session_id").to_owned();
                out.push(Event::Session(self.session_id.clone()));
            }
            "message" => {
                if str_of(line, "role") == "assistant" {
                    let text = str_of(line, "content");
                    if !text.is_empty() {
                        self.turns.text();
                        self.reply.push_str(text);
                        out.push(Event::Text(text.to_owned()));
                    }
                }
            }
            "tool_use" => {
                self.turns.tool();
                self.reply.clear();
                let id = str_of(line, "tool_id").to_owned();
                let name = str_of(line, "tool_name").to_owned();
                self.tools.insert(id.clone(), name.clone());
                let summary = line.get("parameters").map(tool_summary).unwrap_or_default();
                out.push(Event::ToolStarted { id, name, summary });
            }
            "tool_result" => {
                let id = str_of(line, "tool_id").to_owned();
                let name = self.tools.get(&id).cloned().unwrap_or_default();
                let output = match line.get("output") {
                    Some(Value::String(text)) => tail(text, 500),
                    _ => tail(
                        line.pointer("/error/message").and_then(Value::as_str).unwrap_or(""),
                        500,
                    ),
                };
                out.push(Event::ToolFinished {
                    id,
                    name,
                    ok: str_of(line, "status") == "success",
                    output,
                });
            }
            "error" => out.push(Event::Status {
                status: "warning".into(),
                detail: one_line(str_of(line, "message"), 300),
            }),
            "result" => self.result(line, out),
            other => return Err(Unknown(other.to_owned())),
        }
        Ok(())
    }

    fn result(&mut self, line: &Value, out: &mut Vec<Event>) {
        let is_error = str_of(line, "status") != "success";
        let stats = line.get("stats").cloned().unwrap_or(Value::Null);
        let mut text = std::mem::take(&mut self.reply);
        if is_error {
            let message = line
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("gemini reported an error")
                .to_owned();
            let kind = if mentions(
                &message,
                &["api key not valid", "401", "403", "permission_denied", "unauthenticated"],
            ) {
                ErrorKind::Auth
            } else {
                ErrorKind::ModelApi
            };
            out.push(Event::Error(RunError::fatal(kind, message.clone())));
            text = message;
        }
        out.push(Event::Result(RunResult {
            text,
            session_id: self.session_id.clone(),
            is_error,
            // Gemini's stats are per run (`input_tokens` counts cached ones).
            usage: stats.is_object().then(|| Usage {
                input_tokens: u64_of(&stats, "input_tokens"),
                output_tokens: u64_of(&stats, "output_tokens"),
                cached_input_tokens: u64_of(&stats, "cached"),
            }),
            cost_usd: None,
            session_usage: None,
            session_cost_usd: None,
            duration_ms: u64_of(&stats, "duration_ms"),
            num_turns: self.turns.count(),
        }));
    }
}

/// A run that ended without a `result` line.
pub fn classify_failure(resumed: bool, exit: ExitInfo, stderr_tail: &str) -> RunError {
    let session_error =
        mentions(stderr_tail, &["invalid session identifier", "no previous sessions found"]);
    if session_error
        || (resumed && exit.code == Some(EXIT_INPUT) && mentions(stderr_tail, &["resum"]))
    {
        return RunError::fatal(
            ErrorKind::SessionNotFound,
            format!("gemini could not resume the session ({exit})"),
        );
    }
    if exit.code == Some(EXIT_AUTH)
        || mentions(stderr_tail, &["invalid auth method", "api key not valid"])
    {
        return RunError::fatal(ErrorKind::Auth, format!("gemini is not authenticated ({exit})"));
    }
    RunError::fatal(ErrorKind::Crashed, format!("gemini ended with {exit} without a result"))
}
