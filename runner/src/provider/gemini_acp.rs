//! Gemini through `gemini --acp` (the Agent Client Protocol: JSON-RPC 2.0
//! lines on stdio), for runs in `ask` mode; other runs keep `-p -o
//! stream-json` (see [`super::gemini`]).
//!
//! The runner is the client: `initialize` (no file-system capability: gemini
//! uses the disk itself, inside the sandbox) → `session/new` (or
//! `session/load` with the session id, whose replayed history is not
//! re-emitted) → `session/prompt`. `session/update` notifications carry text
//! (`agent_message_chunk`), thoughts and tool calls; the prompt's response
//! (`stopReason`) ends the run. A tool that needs permission arrives as
//! `session/request_permission` with options, answered with the option of
//! kind `allow_once` or `reject_once`; an interrupt is `session/cancel`. ACP
//! has no way to add a message to a running prompt, so gemini does not steer.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Input, Invocation, Turns, Unknown, json_line as line, str_of, u64_of};
use crate::event::{ErrorKind, Event, RunError, RunResult, Usage, one_line};
use crate::spec::{Provider, RunSpec};

const INITIALIZE: u64 = 1;
const SESSION: u64 = 2;
const PROMPT: u64 = 3;

/// argv for an ACP run; the session settings go to [`Parser::new`].
pub fn invocation(spec: &RunSpec, config_args: &[String]) -> Invocation {
    let mut args: Vec<String> = vec!["--acp".into()];
    if let Some(model) = &spec.model {
        args.extend(["-m".into(), model.clone()]);
    }
    args.extend(config_args.iter().cloned());
    args.extend(spec.extra_args.iter().cloned());
    let mut invocation = Invocation::new(Provider::Gemini, args, spec.prompt.clone());
    invocation.stream = true;
    invocation
}

/// The session settings: where it works, and the system-prompt addition
/// (sent as a first prompt block, as `-p` runs prepend it).
pub fn session_params(spec: &RunSpec) -> Value {
    json!({
        "cwd": spec.working_dir.display().to_string(),
        "instructions": spec.append_system_prompt,
    })
}

/// Protocol state of one ACP run.
#[derive(Debug)]
pub struct Parser {
    params: Value,
    resume: Option<String>,
    prompt: String,
    session_id: String,
    /// `session/prompt` was sent: updates from now on are this turn's.
    prompting: bool,
    outgoing: Vec<String>,
    /// Approval request ids → (JSON-RPC id, option ids by kind).
    requests: HashMap<String, (Value, HashMap<String, String>)>,
    tools: HashMap<String, String>,
    reply: String,
    turns: Turns,
    done: bool,
}

impl Parser {
    /// A client for one turn.
    pub fn new(params: Value, resume: Option<String>, prompt: String) -> Self {
        Self {
            params,
            resume,
            prompt,
            session_id: String::new(),
            prompting: false,
            outgoing: Vec::new(),
            requests: HashMap::new(),
            tools: HashMap::new(),
            reply: String::new(),
            turns: Turns::default(),
            done: false,
        }
    }

    /// The first line: `initialize`.
    pub fn opening(&self) -> Vec<String> {
        let capabilities = json!({"fs": {"readTextFile": false, "writeTextFile": false}});
        let params = json!({"protocolVersion": 1, "clientCapabilities": capabilities});
        vec![rpc(json!(INITIALIZE), "initialize", params)]
    }

    /// Lines produced by parsing, to write now.
    pub fn take_outgoing(&mut self) -> Vec<String> {
        std::mem::take(&mut self.outgoing)
    }

    /// The prompt has its answer (or never started): the input may close.
    pub fn done(&self) -> bool {
        self.done
    }

    /// `input` as a line for gemini; `None` when ACP cannot say it.
    pub fn encode(&mut self, input: &Input) -> Option<String> {
        match input {
            Input::User(_) => None,
            Input::Approval { request_id, allow, .. } => {
                let (id, options) = self.requests.remove(request_id)?;
                let wanted = if *allow { "allow_once" } else { "reject_once" };
                let outcome = match options.get(wanted) {
                    Some(option) => json!({"outcome": "selected", "optionId": option}),
                    None => json!({"outcome": "cancelled"}),
                };
                Some(line(&json!({"jsonrpc": "2.0", "id": id, "result": {"outcome": outcome}})))
            }
            Input::Interrupt { .. } => {
                if !self.prompting {
                    return None;
                }
                let params = json!({"sessionId": self.session_id});
                Some(line(&json!({"jsonrpc": "2.0", "method": "session/cancel", "params": params})))
            }
        }
    }

    /// One stdout line.
    pub fn parse(&mut self, message: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        let method = str_of(message, "method");
        match (message.get("id"), method.is_empty()) {
            (Some(id), true) => self.response(id, message, out),
            (Some(id), false) => self.server_request(id.clone(), method, message, out),
            (None, false) if method == "session/update" => {
                self.update(message.pointer("/params/update"), out);
            }
            (None, false) => return Err(Unknown(format!("acp/{method}"))),
            (None, true) => return Err(Unknown("acp/no-method".into())),
        }
        Ok(())
    }

    fn response(&mut self, id: &Value, message: &Value, out: &mut Vec<Event>) {
        if let Some(error) = message.get("error") {
            let text = str_of(error, "message").to_owned();
            self.done = true;
            let kind = match id.as_u64() {
                Some(SESSION) if self.resume.is_some() => ErrorKind::SessionNotFound,
                _ => ErrorKind::ModelApi,
            };
            out.push(Event::Error(RunError::fatal(kind, text)));
            return;
        }
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        match id.as_u64() {
            Some(INITIALIZE) => {
                let cwd = self.params.get("cwd").cloned().unwrap_or(Value::Null);
                let (method, params) = match &self.resume {
                    Some(session) => (
                        "session/load",
                        json!({"sessionId": session, "cwd": cwd, "mcpServers": []}),
                    ),
                    None => ("session/new", json!({"cwd": cwd, "mcpServers": []})),
                };
                self.outgoing.push(rpc(json!(SESSION), method, params));
            }
            Some(SESSION) => {
                self.session_id = match &self.resume {
                    Some(session) => session.clone(),
                    None => str_of(&result, "sessionId").to_owned(),
                };
                out.push(Event::Session(self.session_id.clone()));
                let mut blocks = Vec::new();
                if let Some(extra) = self.params.get("instructions").and_then(Value::as_str) {
                    let text = format!("<instructions>\n{extra}\n</instructions>");
                    blocks.push(json!({"type": "text", "text": text}));
                }
                blocks.push(json!({"type": "text", "text": self.prompt}));
                let params = json!({"sessionId": self.session_id, "prompt": blocks});
                self.outgoing.push(rpc(json!(PROMPT), "session/prompt", params));
                self.prompting = true;
            }
            Some(PROMPT) => self.finished(&result, out),
            _ => {}
        }
    }

    fn server_request(&mut self, id: Value, method: &str, message: &Value, out: &mut Vec<Event>) {
        if method != "session/request_permission" {
            // File-system and terminal requests are not offered: refuse at once.
            let error = json!({"code": -32601, "message": "not offered by ductor"});
            self.outgoing.push(line(&json!({"jsonrpc": "2.0", "id": id, "error": error})));
            return;
        }
        let call = message.pointer("/params/toolCall").cloned().unwrap_or(Value::Null);
        let options: HashMap<String, String> = message
            .pointer("/params/options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|o| (str_of(o, "kind").to_owned(), str_of(o, "optionId").to_owned()))
            .collect();
        let title = str_of(&call, "title");
        let (tool, input) = match str_of(&call, "kind") {
            "execute" => ("shell".to_owned(), json!({"command": title})),
            kind => (kind.to_owned(), json!({"title": title, "locations": call.get("locations")})),
        };
        let request_id = format!("gemini-{id}");
        self.requests.insert(request_id.clone(), (id, options));
        out.push(Event::ApprovalRequested { request_id, tool, input, description: String::new() });
    }

    fn update(&mut self, update: Option<&Value>, out: &mut Vec<Event>) {
        let Some(update) = update.filter(|_| self.prompting) else { return };
        let text = update.pointer("/content/text").and_then(Value::as_str).unwrap_or("");
        match str_of(update, "sessionUpdate") {
            "agent_message_chunk" if !text.is_empty() => {
                self.turns.text();
                self.reply.push_str(text);
                out.push(Event::Text(text.to_owned()));
            }
            "agent_thought_chunk" if !text.is_empty() => out.push(Event::Thinking(text.to_owned())),
            "tool_call" => {
                self.turns.tool();
                self.reply.clear();
                let id = str_of(update, "toolCallId").to_owned();
                let name = match str_of(update, "kind") {
                    "execute" => "shell".to_owned(),
                    kind => kind.to_owned(),
                };
                self.tools.insert(id.clone(), name.clone());
                let summary = one_line(str_of(update, "title"), 200);
                out.push(Event::ToolStarted { id, name, summary });
            }
            "tool_call_update" => {
                let status = str_of(update, "status");
                if !matches!(status, "completed" | "failed") {
                    return;
                }
                let id = str_of(update, "toolCallId").to_owned();
                let name = self.tools.remove(&id).unwrap_or_else(|| "tool".into());
                let ok = status == "completed";
                out.push(Event::ToolFinished { id, name, ok, output: String::new() });
            }
            _ => {}
        }
    }

    fn finished(&mut self, result: &Value, out: &mut Vec<Event>) {
        self.done = true;
        let stop = str_of(result, "stopReason");
        let tokens = result.pointer("/_meta/quota/token_count").cloned().unwrap_or(Value::Null);
        let usage = tokens.is_object().then(|| Usage {
            input_tokens: u64_of(&tokens, "input_tokens"),
            output_tokens: u64_of(&tokens, "output_tokens"),
            cached_input_tokens: 0,
        });
        out.push(Event::Result(RunResult {
            text: std::mem::take(&mut self.reply),
            session_id: self.session_id.clone(),
            is_error: stop != "end_turn",
            usage,
            cost_usd: None,
            session_usage: None,
            session_cost_usd: None,
            duration_ms: 0,
            num_turns: self.turns.count(),
        }));
    }
}

fn rpc(id: Value, method: &str, params: Value) -> String {
    line(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parser: &mut Parser, line: Value) -> Vec<Event> {
        let mut out = Vec::new();
        parser.parse(&line, &mut out).expect("known");
        out
    }

    #[test]
    fn a_loaded_session_replays_nothing_and_the_prompt_carries_the_instructions() {
        let params = json!({"cwd": "/w", "instructions": "remember X"});
        let mut parser = Parser::new(params, Some("s-1".into()), "hello".into());
        parse(&mut parser, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        let sent = parser.take_outgoing();
        assert!(sent[0].contains("session/load") && sent[0].contains("\"sessionId\":\"s-1\""));
        // History replayed by session/load is not this turn's text.
        let replay = json!({"jsonrpc": "2.0", "method": "session/update", "params": {"update":
            {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "old"}}}});
        assert!(parse(&mut parser, replay.clone()).is_empty());
        let events = parse(&mut parser, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
        assert_eq!(events, [Event::Session("s-1".into())]);
        let prompt = parser.take_outgoing().remove(0);
        assert!(prompt.contains("session/prompt") && prompt.contains("remember X"), "{prompt}");
        assert!(matches!(&parse(&mut parser, replay)[..], [Event::Text(t)] if t == "old"));
        let done = json!({"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "cancelled"}});
        let events = parse(&mut parser, done);
        assert!(matches!(&events[..], [Event::Result(r)] if r.is_error && r.text == "old"));
        assert!(parser.done());
    }

    #[test]
    fn a_permission_is_answered_with_the_option_of_the_right_kind() {
        let mut parser = Parser::new(json!({}), None, "x".into());
        let asked = json!({"jsonrpc": "2.0", "id": 0, "method": "session/request_permission",
            "params": {"options": [
                {"optionId": "proceed_always", "kind": "allow_always"},
                {"optionId": "proceed_once", "kind": "allow_once"},
                {"optionId": "cancel", "kind": "reject_once"}],
              "toolCall": {"toolCallId": "t", "title": "touch f", "kind": "execute"}}});
        let events = parse(&mut parser, asked);
        let [Event::ApprovalRequested { request_id, tool, input, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!((tool.as_str(), input["command"].as_str()), ("shell", Some("touch f")));
        let deny = Input::Approval {
            request_id: request_id.clone(),
            allow: false,
            message: String::new(),
            input: Value::Null,
        };
        let line = parser.encode(&deny).expect("an answer");
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["result"]["outcome"]["optionId"], "cancel");
        assert_eq!(parser.encode(&Input::User("more".into())), None, "ACP cannot steer");
    }
}
