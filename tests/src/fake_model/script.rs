//! Decides what the fake answers: finds the last user prompt in a request (skipping the
//! wrapper blocks the CLIs inject, such as `<system-reminder>`, `<environment_context>`, codex's AGENTS.md message and
//! `<session_context>`) or notices that the request carries a tool result, and maps that to a
//! [`Scenario`].

use serde_json::Value;

/// What the fake does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Plain text reply, streamed in several chunks (the default).
    Text,
    /// Prompt contains `slow`: many chunks with delays, for interrupt tests.
    Slow,
    /// Prompt contains `tool`: one shell tool call running `echo hi`.
    Tool,
    /// Prompt contains `risky`: one shell tool call that writes a file
    /// ([`RISKY_COMMAND`]), which a CLI asks permission for.
    Risky,
    /// Prompt contains `plan`: claude's `ExitPlanMode` with [`PLAN_TEXT`]
    /// (claude 2.1.330 drops the input: it keeps plans in a file; other
    /// CLIs get the shell call of `tool`).
    Plan,
    /// The request carries a tool result after the prompt: a short final text.
    ToolResult,
    /// Prompt contains `error`: HTTP 400 with a provider-shaped error body.
    Error,
    /// A side call that is not a model turn (gemini's model router, token counting).
    Router,
}

/// The command the `tool` scenario asks each CLI to run.
pub const TOOL_COMMAND: &str = "echo hi";

/// The command the `risky` scenario asks each CLI to run: it writes
/// [`RISKY_FILE`] in the working directory, so it needs permission.
pub const RISKY_COMMAND: &str = "touch risky-file.txt";

/// The plan the `plan` scenario proposes.
pub const PLAN_TEXT: &str = "1. Read the code.\n2. Fix the bug.\n3. Run the tests.";

/// The file [`RISKY_COMMAND`] makes.
pub const RISKY_FILE: &str = "risky-file.txt";

/// Final text after a tool result came back.
pub const TOOL_DONE_TEXT: &str = "The command ran; its output came back to the fake model.";

/// What was found in a request's conversation.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub prompt: Option<String>,
    pub scenario: Scenario,
}

/// The scenario a prompt asks for: `error` beats `tool` beats `slow`; else plain text
/// (and always for a CLI's own compaction request).
pub fn scenario_for(prompt: &str) -> Scenario {
    let words: Vec<String> =
        prompt.split(|c: char| !c.is_ascii_alphanumeric()).map(str::to_ascii_lowercase).collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    // Claude's own compaction request (`/compact`, auto-compaction) quotes
    // words like "error" in its instructions: it gets a plain summary.
    if prompt.contains("create a detailed summary of the conversation") {
        return Scenario::Text;
    }
    if has("error") {
        Scenario::Error
    } else if has("risky") {
        Scenario::Risky
    } else if has("plan") {
        Scenario::Plan
    } else if has("tool") {
        Scenario::Tool
    } else if has("slow") {
        Scenario::Slow
    } else {
        Scenario::Text
    }
}

/// The plain-text reply to `prompt`, as the chunks it is streamed in. It quotes the prompt
/// so a test can tell which turn a reply belongs to.
pub fn text_reply_chunks(prompt: &str) -> Vec<String> {
    let mut chunks = vec![
        "Hello".to_owned(),
        " from".to_owned(),
        " the".to_owned(),
        " fake".to_owned(),
        " model.".to_owned(),
        " You said:".to_owned(),
    ];
    chunks.extend(prompt.split_whitespace().map(|w| format!(" {w}")));
    chunks
}

/// The chunks of the `slow` scenario: `chunk00 `, `chunk01 `, …
pub fn slow_chunks(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("chunk{i:02} ")).collect()
}

/// What to send back for a model turn, independent of the wire format.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Text in chunks, `delay` before each chunk.
    Text { chunks: Vec<String>, delay: std::time::Duration },
    /// One shell tool call running this command.
    ToolCall(&'static str),
    /// Claude's `ExitPlanMode` proposing [`PLAN_TEXT`].
    PlanCall,
    /// HTTP 400.
    Error,
}

/// Message of the `error` scenario's HTTP 400 body.
pub const ERROR_MESSAGE: &str = "fake model: this request was rejected on purpose";

impl Reply {
    /// The shell command of a tool call reply.
    pub(crate) fn command(&self) -> &'static str {
        match self {
            Self::ToolCall(command) => command,
            _ => TOOL_COMMAND,
        }
    }
}

impl Turn {
    pub(crate) fn reply(&self, slow: super::SlowPace) -> Reply {
        let quick = std::time::Duration::from_millis(15);
        match self.scenario {
            Scenario::Error => Reply::Error,
            Scenario::Tool => Reply::ToolCall(TOOL_COMMAND),
            Scenario::Risky => Reply::ToolCall(RISKY_COMMAND),
            Scenario::Plan => Reply::PlanCall,
            Scenario::Slow => Reply::Text { chunks: slow_chunks(slow.chunks), delay: slow.delay },
            Scenario::ToolResult => Reply::Text {
                chunks: TOOL_DONE_TEXT.split_inclusive(' ').map(str::to_owned).collect(),
                delay: quick,
            },
            Scenario::Text | Scenario::Router => Reply::Text {
                chunks: text_reply_chunks(self.prompt.as_deref().unwrap_or("")),
                delay: quick,
            },
        }
    }
}

/// A rough token count for usage fields: a quarter of the serialized size.
pub(crate) fn rough_tokens(body: &Value) -> u64 {
    (body.to_string().len() / 4).max(1) as u64
}

/// A piece of a user turn, in the order the conversation has them.
enum Part {
    Text(String),
    ToolResult,
}

/// Walks the user-side parts from the newest back: a tool result seen before any real
/// prompt text means this is the follow-up request of a tool call.
fn decide(parts: Vec<Part>) -> Turn {
    for part in parts.into_iter().rev() {
        match part {
            Part::ToolResult => {
                return Turn { prompt: None, scenario: Scenario::ToolResult };
            }
            Part::Text(text) => {
                let trimmed = text.trim();
                // Wrappers the CLIs add around the prompt: `<system-reminder>`,
                // `<environment_context>`, codex app-server's AGENTS.md message.
                if trimmed.is_empty()
                    || trimmed.starts_with('<')
                    || trimmed.starts_with("# AGENTS.md instructions")
                {
                    continue;
                }
                return Turn { scenario: scenario_for(trimmed), prompt: Some(trimmed.to_owned()) };
            }
        }
    }
    Turn { prompt: None, scenario: Scenario::Text }
}

fn text_of(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// Anthropic Messages: `messages[]` with `role` and `content` (a string or blocks).
pub(crate) fn anthropic_turn(body: &Value) -> Turn {
    let mut parts = Vec::new();
    for message in array(body, "messages") {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        match message.get("content") {
            Some(Value::String(text)) => parts.push(Part::Text(text.clone())),
            Some(Value::Array(blocks)) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            parts.extend(block.get("text").and_then(text_of).map(Part::Text))
                        }
                        Some("tool_result") => parts.push(Part::ToolResult),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    decide(parts)
}

/// OpenAI Responses: `input` is a string or items (`message` with `role`, or
/// `function_call_output`).
pub(crate) fn openai_turn(body: &Value) -> Turn {
    if let Some(text) = body.get("input").and_then(Value::as_str) {
        return decide(vec![Part::Text(text.to_owned())]);
    }
    let mut parts = Vec::new();
    for item in array(body, "input") {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "function_call_output" | "custom_tool_call_output" => parts.push(Part::ToolResult),
            "message" if item.get("role").and_then(Value::as_str) == Some("user") => {
                match item.get("content") {
                    Some(Value::String(text)) => parts.push(Part::Text(text.clone())),
                    Some(Value::Array(content)) => parts.extend(
                        content
                            .iter()
                            .filter_map(|c| c.get("text").and_then(text_of))
                            .map(Part::Text),
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    decide(parts)
}

/// Gemini: `contents[]` with `role` and `parts[]` (`text`, `functionResponse`, …).
pub(crate) fn gemini_turn(body: &Value) -> Turn {
    let mut parts = Vec::new();
    for content in array(body, "contents") {
        let role = content.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" {
            continue;
        }
        for part in array(content, "parts") {
            if part.get("functionResponse").is_some() {
                parts.push(Part::ToolResult);
            } else if let Some(text) = part.get("text").and_then(text_of) {
                parts.push(Part::Text(text));
            }
        }
    }
    decide(parts)
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keywords_pick_the_scenario() {
        assert_eq!(scenario_for("please use a tool"), Scenario::Tool);
        assert_eq!(scenario_for("be SLOW about it"), Scenario::Slow);
        assert_eq!(scenario_for("cause an error, slowly use a tool"), Scenario::Error);
        assert_eq!(scenario_for("toolbox slowness"), Scenario::Text);
    }

    #[test]
    fn anthropic_skips_reminders_and_sees_tool_results() {
        let first = json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>use a tool</system-reminder>"},
                {"type": "text", "text": "say hello"}]},
            {"role": "system", "content": "error"}]});
        let turn = anthropic_turn(&first);
        assert_eq!(turn.scenario, Scenario::Text);
        assert_eq!(turn.prompt.as_deref(), Some("say hello"));

        let follow_up = json!({"messages": [
            {"role": "user", "content": "please use a tool"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "hi"}]}]});
        assert_eq!(anthropic_turn(&follow_up).scenario, Scenario::ToolResult);
    }

    #[test]
    fn openai_and_gemini_find_the_prompt() {
        let codex = json!({"input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "error"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>x</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go slow"}]}]});
        assert_eq!(openai_turn(&codex).scenario, Scenario::Slow);
        let codex_follow_up = json!({"input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "use a tool"}]},
            {"type": "function_call", "name": "exec_command", "arguments": "{}", "call_id": "c"},
            {"type": "function_call_output", "call_id": "c", "output": "hi"}]});
        assert_eq!(openai_turn(&codex_follow_up).scenario, Scenario::ToolResult);

        let gemini = json!({"contents": [
            {"role": "user", "parts": [{"text": "<session_context>tool</session_context>"}]},
            {"role": "user", "parts": [{"text": "an error please"}]}]});
        assert_eq!(gemini_turn(&gemini).scenario, Scenario::Error);
        let gemini_follow_up = json!({"contents": [
            {"role": "user", "parts": [{"text": "use a tool"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command", "response": {"output": "hi"}}}]}]});
        assert_eq!(gemini_turn(&gemini_follow_up).scenario, Scenario::ToolResult);
    }
}
