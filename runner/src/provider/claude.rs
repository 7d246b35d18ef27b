//! Claude Code: `claude -p --output-format stream-json --verbose
//! --include-partial-messages [--append-system-prompt-file F] [--resume ID] …`
//! with the prompt on stdin.
//!
//! Text streams as `stream_event` / `content_block_delta` / `text_delta`; the
//! complete `assistant` line of a block repeats it, so once deltas were seen
//! assistant text blocks are not emitted again. The `result` line ends a turn
//! (also after SIGINT, with `error_during_execution`). Bypass mode needs
//! `IS_SANDBOX=1` when running as root.
//!
//! An `ask` or interactive run uses `--input-format stream-json` instead: stdin
//! stays open, the prompt is the first `user` line, a `user` line written
//! mid-turn steers the run (taken at the next model call, or as the next
//! turn of the same process), `control_request` `interrupt` stops a turn
//! without a signal, and with `--permission-prompt-tool stdio` every tool use
//! that needs permission arrives as a `control_request` `can_use_tool`,
//! answered by a `control_response` (`behavior` allow or deny).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{ExitInfo, Invocation, Unknown, mentions, str_of, tool_summary, u64_of};
use crate::event::{ErrorKind, Event, RunError, RunResult, Usage, tail};
use crate::spec::{PermissionMode, Provider, RunSpec};

/// argv and environment for one claude turn; the system prompt addition
/// goes in a file under `inputs`.
pub fn invocation(
    spec: &RunSpec,
    mode: PermissionMode,
    config_args: &[String],
    inputs: &Path,
) -> Invocation {
    let mut args: Vec<String> = vec!["-p".into()];
    let mut files = Vec::new();
    args.extend(
        ["--output-format", "stream-json", "--verbose", "--include-partial-messages"]
            .map(String::from),
    );
    let mut env = super::adapter_env(Provider::Claude);
    // Plan mode streams too: leaving it (`ExitPlanMode`) is a permission request.
    let stream = matches!(mode, PermissionMode::Ask | PermissionMode::Plan) || spec.interactive;
    if stream {
        args.extend(["--input-format".into(), "stream-json".into()]);
    }
    match mode {
        PermissionMode::Default => {}
        PermissionMode::Ask => {
            args.extend(["--permission-prompt-tool".into(), "stdio".into()]);
        }
        PermissionMode::AcceptEdits => {
            args.extend(["--permission-mode".into(), "acceptEdits".into()])
        }
        PermissionMode::Plan => args.extend(
            ["--permission-mode", "plan", "--permission-prompt-tool", "stdio"].map(String::from),
        ),
        PermissionMode::Bypass => {
            args.extend(["--permission-mode".into(), "bypassPermissions".into()]);
            // Claude refuses bypass as root unless told it is sandboxed (it is: we are the fence).
            env.insert("IS_SANDBOX".to_owned(), "1".to_owned());
        }
    }
    if let Some(model) = &spec.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if let Some(effort) = &spec.effort {
        args.extend(["--effort".into(), effort.clone()]);
    }
    if let Some(extra) = &spec.append_system_prompt {
        let file = inputs.join("system-prompt.md");
        args.extend(["--append-system-prompt-file".into(), file.display().to_string()]);
        files.push((file, extra.clone()));
    }
    if let Some(session) = &spec.resume {
        args.extend(["--resume".into(), session.clone()]);
    }
    args.extend(config_args.iter().cloned());
    args.extend(spec.extra_args.iter().cloned());
    Invocation { args, env, stdin: spec.prompt.clone(), files, stream, protocol: None }
}

/// One stream-json input line.
pub fn input_line(input: &super::Input) -> String {
    use super::Input;
    let value = match input {
        Input::User(text) => serde_json::json!({
            "type": "user",
            "message": {"role": "user", "content": text},
        }),
        Input::Approval { request_id, allow, message, input } => {
            let response = if *allow {
                serde_json::json!({"behavior": "allow", "updatedInput": input})
            } else {
                serde_json::json!({"behavior": "deny", "message": message})
            };
            serde_json::json!({
                "type": "control_response",
                "response": {"subtype": "success", "request_id": request_id, "response": response},
            })
        }
        Input::Interrupt { request_id } => serde_json::json!({
            "type": "control_request",
            "request_id": request_id,
            "request": {"subtype": "interrupt"},
        }),
    };
    super::json_line(&value)
}

/// A request the CLI makes of its caller: `can_use_tool` becomes an approval
/// request; anything else (hooks, MCP) is not offered, so it is ignored.
fn control_request(line: &Value, out: &mut Vec<Event>) {
    let Some(request) = line.get("request") else { return };
    if str_of(request, "subtype") != "can_use_tool" {
        return;
    }
    let input = request.get("input").cloned().unwrap_or_else(|| serde_json::json!({}));
    out.push(Event::ApprovalRequested {
        request_id: str_of(line, "request_id").to_owned(),
        tool: str_of(request, "tool_name").to_owned(),
        input,
        description: str_of(request, "description").to_owned(),
    });
}

/// Claude stream-json parser state.
#[derive(Debug, Default)]
pub struct Parser {
    session_announced: bool,
    /// Partial messages are on: text already streamed as deltas.
    streaming: bool,
    tool_names: HashMap<String, String>,
    /// Assistant text since the last tool call: the reply of an interrupted turn.
    reply: String,
}

impl Parser {
    /// One stdout line.
    pub fn parse(&mut self, line: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        match str_of(line, "type") {
            "system" => self.system(line, out),
            "stream_event" => {
                self.stream_event(line, out);
                Ok(())
            }
            "assistant" => {
                self.assistant(line, out);
                Ok(())
            }
            "user" => {
                self.user(line, out);
                Ok(())
            }
            "result" => {
                let partial = std::mem::take(&mut self.reply);
                result(line, partial, out);
                Ok(())
            }
            "control_request" => {
                control_request(line, out);
                Ok(())
            }
            // Replies to stdin control requests (stream-json input) carry nothing for us.
            "control_response" | "rate_limit_event" => Ok(()),
            other => Err(Unknown(other.to_owned())),
        }
    }

    fn announce(&mut self, line: &Value, out: &mut Vec<Event>) {
        let session = str_of(line, "session_id");
        if !self.session_announced && !session.is_empty() {
            self.session_announced = true;
            out.push(Event::Session(session.to_owned()));
        }
    }

    fn system(&mut self, line: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        self.announce(line, out);
        match str_of(line, "subtype") {
            "init" => {}
            "status" => {
                let status = str_of(line, "status");
                if !status.is_empty() {
                    out.push(Event::Status { status: status.to_owned(), detail: String::new() });
                }
            }
            "api_retry" => out.push(Event::Status {
                status: "retrying".into(),
                detail: format!(
                    "attempt {}/{}: {}",
                    u64_of(line, "attempt"),
                    u64_of(line, "max_retries"),
                    str_of(line, "error")
                ),
            }),
            "compact_boundary" => out.push(Event::Status {
                status: "compacted".into(),
                detail: line
                    .pointer("/compact_metadata/pre_tokens")
                    .and_then(Value::as_u64)
                    .map(|t| format!("{t} tokens before"))
                    .unwrap_or_default(),
            }),
            "permission_denied" => out.push(Event::PermissionDenied {
                tool: str_of(line, "tool_name").to_owned(),
                message: str_of(line, "message").to_owned(),
            }),
            other => return Err(Unknown(format!("system/{other}"))),
        }
        Ok(())
    }

    fn stream_event(&mut self, line: &Value, out: &mut Vec<Event>) {
        self.announce(line, out);
        let Some(event) = line.get("event") else { return };
        if str_of(event, "type") != "content_block_delta" {
            return;
        }
        let Some(delta) = event.get("delta") else { return };
        match str_of(delta, "type") {
            "text_delta" => {
                self.streaming = true;
                let text = str_of(delta, "text");
                if !text.is_empty() {
                    self.reply.push_str(text);
                    out.push(Event::Text(text.to_owned()));
                }
            }
            "thinking_delta" => {
                self.streaming = true;
                let text = str_of(delta, "thinking");
                if !text.is_empty() {
                    out.push(Event::Thinking(text.to_owned()));
                }
            }
            _ => {}
        }
    }

    fn assistant(&mut self, line: &Value, out: &mut Vec<Event>) {
        self.announce(line, out);
        let Some(message) = line.get("message") else { return };
        // A synthetic API-error message: the result line carries the error.
        let synthetic = str_of(message, "model") == "<synthetic>"
            || line.get("is_api_error_message").and_then(Value::as_bool).unwrap_or(false);
        let blocks = message.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
        for block in &blocks {
            match str_of(block, "type") {
                "text" if !self.streaming && !synthetic => {
                    let text = str_of(block, "text");
                    if !text.is_empty() {
                        self.reply.push_str(text);
                        out.push(Event::Text(text.to_owned()));
                    }
                }
                "thinking" if !self.streaming => {
                    let text = block.get("thinking").or_else(|| block.get("text"));
                    if let Some(text) = text.and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        out.push(Event::Thinking(text.to_owned()));
                    }
                }
                "tool_use" => {
                    self.reply.clear();
                    let id = str_of(block, "id").to_owned();
                    let name = str_of(block, "name").to_owned();
                    self.tool_names.insert(id.clone(), name.clone());
                    let summary = block.get("input").map(tool_summary).unwrap_or_default();
                    out.push(Event::ToolStarted { id, name, summary });
                }
                _ => {}
            }
        }
    }

    fn user(&mut self, line: &Value, out: &mut Vec<Event>) {
        let Some(blocks) = line.pointer("/message/content").and_then(Value::as_array) else {
            return;
        };
        for block in blocks.iter().filter(|b| str_of(b, "type") == "tool_result") {
            let id = str_of(block, "tool_use_id").to_owned();
            let name = self.tool_names.get(&id).cloned().unwrap_or_default();
            let ok = !block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            out.push(Event::ToolFinished { id, name, ok, output: tail(&content_text(block), 500) });
        }
    }
}

/// The text of a tool_result's `content` (a string or a list of text blocks).
fn content_text(block: &Value) -> String {
    match block.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Prefix of claude's internal diagnostics in `errors` (log only, never reply text).
const DIAGNOSTIC: &str = "[ede_diagnostic]";

/// The result line. An interrupted turn (`terminal_reason` `aborted_*`)
/// answers with the partial reply seen so far, never with the `errors`
/// array, which then holds only claude's internal diagnostics.
fn result(line: &Value, partial: String, out: &mut Vec<Event>) {
    let is_error = line.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    let (diagnostics, errors): (Vec<&str>, Vec<&str>) = line
        .get("errors")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .partition(|e| e.starts_with(DIAGNOSTIC));
    if !diagnostics.is_empty() {
        tracing::info!(
            session_id = str_of(line, "session_id"),
            terminal_reason = str_of(line, "terminal_reason"),
            diagnostics = %diagnostics.join("; "),
            "claude reported diagnostics"
        );
    }
    let aborted = str_of(line, "terminal_reason").starts_with("aborted");
    let mut text = str_of(line, "result").to_owned();
    if aborted {
        text = partial;
    } else if text.is_empty() && is_error {
        text = errors.join("\n");
    }
    if is_error && let Some(error) = classify_result(line, &text) {
        out.push(Event::Error(error));
    }
    // Per run: `model_usage_since_last_result` (also counts an aborted
    // request, where `usage` is zero), else `usage`; `total_cost_usd` and
    // `modelUsage` are running totals for the session.
    let (usage, cost_usd) = match model_usage(line.get("model_usage_since_last_result")) {
        Some((usage, cost)) => (Some(usage), cost),
        None => (line.get("usage").filter(|u| u.is_object()).map(api_usage), None),
    };
    out.push(Event::Result(RunResult {
        text,
        session_id: str_of(line, "session_id").to_owned(),
        is_error,
        usage,
        cost_usd,
        session_usage: model_usage(line.get("modelUsage")).map(|(usage, _)| usage),
        session_cost_usd: line.get("total_cost_usd").and_then(Value::as_f64),
        duration_ms: u64_of(line, "duration_ms"),
        num_turns: u32::try_from(u64_of(line, "num_turns")).unwrap_or(u32::MAX),
    }));
}

/// The API's `usage` block: input excludes cache reads and writes, which are added.
fn api_usage(usage: &Value) -> Usage {
    let cached = u64_of(usage, "cache_read_input_tokens");
    Usage {
        input_tokens: u64_of(usage, "input_tokens")
            + cached
            + u64_of(usage, "cache_creation_input_tokens"),
        output_tokens: u64_of(usage, "output_tokens"),
        cached_input_tokens: cached,
    }
}

/// Tokens and cost summed over a per-model map (`modelUsage`,
/// `model_usage_since_last_result`); `None` when the map is missing.
fn model_usage(models: Option<&Value>) -> Option<(Usage, Option<f64>)> {
    let models = models?.as_object()?;
    let mut usage = Usage::default();
    let mut cost: Option<f64> = None;
    for model in models.values() {
        let cached = u64_of(model, "cacheReadInputTokens");
        usage.input_tokens +=
            u64_of(model, "inputTokens") + cached + u64_of(model, "cacheCreationInputTokens");
        usage.output_tokens += u64_of(model, "outputTokens");
        usage.cached_input_tokens += cached;
        if let Some(c) = model.get("costUSD").and_then(Value::as_f64) {
            cost = Some(cost.unwrap_or(0.0) + c);
        }
    }
    Some((usage, cost))
}

/// The error kind of an error result, if it is one callers branch on.
fn classify_result(line: &Value, text: &str) -> Option<RunError> {
    let status = u64_of(line, "api_error_status");
    if mentions(text, &["no conversation found with session id"]) {
        return Some(RunError::fatal(ErrorKind::SessionNotFound, text));
    }
    if status == 401
        || status == 403
        || mentions(
            text,
            &["invalid api key", "please run /login", "authentication_error", "oauth token"],
        )
    {
        return Some(RunError::fatal(ErrorKind::Auth, text));
    }
    if status != 0
        || str_of(line, "terminal_reason") == "api_error"
        || text.starts_with("API Error")
    {
        return Some(RunError::fatal(ErrorKind::ModelApi, text));
    }
    None
}

/// A run that ended without a result line.
pub fn classify_failure(exit: ExitInfo, stderr_tail: &str) -> RunError {
    let kind = if mentions(stderr_tail, &["no conversation found with session id"]) {
        ErrorKind::SessionNotFound
    } else if mentions(stderr_tail, &["invalid api key", "please run /login", "not logged in"]) {
        ErrorKind::Auth
    } else {
        ErrorKind::Crashed
    };
    RunError::fatal(kind, format!("claude ended with {exit} without a result"))
}
