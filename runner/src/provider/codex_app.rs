//! Codex through `codex app-server` (JSON-RPC lines on stdio), for runs that
//! ask for approvals or take steering; other runs keep `exec --json` (see
//! [`super::codex`]).
//!
//! The runner is the client: `initialize` → `initialized` → `thread/start`
//! (or `thread/resume` with the session id) → `turn/start` with the prompt.
//! Text streams as `item/agentMessage/delta`; `turn/completed` ends the run
//! (its `status`: completed, interrupted, failed). A command or file change
//! that needs approval arrives as a server request
//! (`item/commandExecution/requestApproval`, `item/fileChange/requestApproval`)
//! answered `accept` or `decline`; a steer is `turn/steer` (codex folds it
//! into the running turn: one `turn/completed` answers both); an interrupt is
//! `turn/interrupt`. Requests ductor does not offer (user input, MCP
//! elicitation, dynamic tools) are refused at once, so codex never waits on them.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Input, Invocation, Turns, Unknown, json_line as line, str_of, u64_of};
use crate::event::{ErrorKind, Event, RunError, RunResult, Usage, one_line, tail};
use crate::spec::{PermissionMode, Provider, RunSpec};

/// JSON-RPC ids of the runner's own requests.
const INITIALIZE: u64 = 1;
const THREAD: u64 = 2;
const TURN: u64 = 3;

/// argv for an app-server run; the thread's settings go to [`Parser::new`].
pub fn invocation(spec: &RunSpec, config_args: &[String]) -> Invocation {
    let mut args: Vec<String> = Vec::new();
    if let Some(effort) = &spec.effort {
        args.extend(["-c".into(), format!("model_reasoning_effort=\"{effort}\"")]);
    }
    args.push("app-server".into());
    args.extend(config_args.iter().cloned());
    args.extend(spec.extra_args.iter().cloned());
    // The system-prompt addition goes to the thread as developer instructions.
    let mut invocation = Invocation::new(Provider::Codex, args, spec.prompt.clone());
    invocation.stream = true;
    invocation
}

/// The thread settings of `thread/start` / `thread/resume`: codex asks for
/// every command it does not trust in `ask` mode; its own sandbox
/// (bubblewrap needs mounts, which Landlock forbids) is off inside the
/// runner's fence and `workspace-write` outside it.
pub fn thread_params(spec: &RunSpec, mode: PermissionMode, confined: bool) -> Value {
    let approval = match mode {
        PermissionMode::Ask => "untrusted",
        PermissionMode::Default | PermissionMode::Plan => "never",
        PermissionMode::AcceptEdits | PermissionMode::Bypass => "never",
    };
    let sandbox = match (mode, confined) {
        (PermissionMode::Plan | PermissionMode::Default, _) => "read-only",
        (_, true) => "danger-full-access",
        (_, false) => "workspace-write",
    };
    let mut params = json!({
        "cwd": spec.working_dir.display().to_string(),
        "approvalPolicy": approval,
        "sandbox": sandbox,
    });
    if let Some(model) = &spec.model {
        params["model"] = json!(model);
    }
    if let Some(extra) = &spec.append_system_prompt {
        params["developerInstructions"] = json!(extra);
    }
    params
}

/// Protocol state of one app-server run.
#[derive(Debug)]
pub struct Parser {
    params: Value,
    resume: Option<String>,
    prompt: String,
    thread_id: String,
    turn_id: String,
    next_id: u64,
    /// Lines to write, produced while parsing.
    outgoing: Vec<String>,
    /// Approval request ids → the JSON-RPC id to answer.
    requests: HashMap<String, Value>,
    /// Our `turn/steer` requests waiting for codex's answer: id → text.
    steers: HashMap<u64, String>,
    /// Agent message items that streamed deltas (their completion repeats them).
    streamed: std::collections::HashSet<String>,
    tools: HashMap<String, String>,
    last_message: String,
    usage: Option<Usage>,
    pending_error: Option<String>,
    turns: Turns,
    done: bool,
}

impl Parser {
    /// A client for one turn: `params` from [`thread_params`], the thread to
    /// resume, and the prompt.
    pub fn new(params: Value, resume: Option<String>, prompt: String) -> Self {
        Self {
            params,
            resume,
            prompt,
            thread_id: String::new(),
            turn_id: String::new(),
            next_id: 100,
            outgoing: Vec::new(),
            requests: HashMap::new(),
            steers: HashMap::new(),
            streamed: std::collections::HashSet::new(),
            tools: HashMap::new(),
            last_message: String::new(),
            usage: None,
            pending_error: None,
            turns: Turns::default(),
            done: false,
        }
    }

    /// The first line: `initialize`.
    pub fn opening(&self) -> Vec<String> {
        let info = json!({"name": "ductor", "version": env!("CARGO_PKG_VERSION")});
        vec![line(
            &json!({"id": INITIALIZE, "method": "initialize", "params": {"clientInfo": info}}),
        )]
    }

    /// Lines produced by parsing, to write now.
    pub fn take_outgoing(&mut self) -> Vec<String> {
        std::mem::take(&mut self.outgoing)
    }

    /// The turn is over (or cannot start): the input may close.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The last error codex reported without ending the turn.
    pub fn pending_error(&self) -> Option<&str> {
        self.pending_error.as_deref()
    }

    /// `input` as a line for codex; `None` when it cannot be said now.
    pub fn encode(&mut self, input: &Input) -> Option<String> {
        match input {
            Input::User(text) => {
                if self.turn_id.is_empty() {
                    return None;
                }
                let params = json!({
                    "threadId": self.thread_id,
                    "expectedTurnId": self.turn_id,
                    "input": [{"type": "text", "text": text}],
                });
                let line = self.request("turn/steer", params);
                self.steers.insert(self.next_id, text.clone());
                Some(line)
            }
            Input::Approval { request_id, allow, .. } => {
                let id = self.requests.remove(request_id)?;
                let decision = if *allow { "accept" } else { "decline" };
                Some(line(&json!({"id": id, "result": {"decision": decision}})))
            }
            Input::Interrupt { .. } => {
                if self.turn_id.is_empty() {
                    return None;
                }
                let params = json!({"threadId": self.thread_id, "turnId": self.turn_id});
                Some(self.request("turn/interrupt", params))
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> String {
        self.next_id += 1;
        line(&json!({"id": self.next_id, "method": method, "params": params}))
    }

    /// One stdout line.
    pub fn parse(&mut self, message: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        let method = str_of(message, "method");
        match (message.get("id"), method.is_empty()) {
            (Some(id), true) => {
                self.response(id, message, out);
                Ok(())
            }
            (Some(id), false) => {
                self.server_request(id.clone(), method, message, out);
                Ok(())
            }
            (None, false) => self.notification(method, message.get("params"), out),
            (None, true) => Err(Unknown("jsonrpc/no-method".into())),
        }
    }

    fn response(&mut self, id: &Value, message: &Value, out: &mut Vec<Event>) {
        let steer = id.as_u64().and_then(|id| self.steers.remove(&id));
        if let Some(error) = message.get("error") {
            let text = str_of(error, "message").to_owned();
            return self.refused(id.as_u64(), &text, out);
        }
        if let Some(text) = steer {
            // Codex took it into the running turn.
            out.push(Event::Steered(text));
            return;
        }
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        match id.as_u64() {
            Some(INITIALIZE) => {
                self.outgoing.push(line(&json!({"method": "initialized"})));
                let (method, mut params) = match &self.resume {
                    Some(thread) => ("thread/resume", json!({"threadId": thread})),
                    None => ("thread/start", json!({})),
                };
                if let (Some(target), Some(settings)) =
                    (params.as_object_mut(), self.params.as_object())
                {
                    target.extend(settings.clone());
                }
                self.outgoing
                    .push(line(&json!({"id": THREAD, "method": method, "params": params})));
            }
            Some(THREAD) => {
                self.thread_id =
                    result.pointer("/thread/id").and_then(Value::as_str).unwrap_or("").to_owned();
                out.push(Event::Session(self.thread_id.clone()));
                let input = [json!({"type": "text", "text": self.prompt})];
                let params = json!({"threadId": self.thread_id, "input": input});
                self.outgoing
                    .push(line(&json!({"id": TURN, "method": "turn/start", "params": params})));
            }
            Some(TURN) => {
                self.turn_id =
                    result.pointer("/turn/id").and_then(Value::as_str).unwrap_or("").to_owned();
            }
            _ => {}
        }
    }

    /// One of our requests was refused: before the turn started that ends the run.
    fn refused(&mut self, id: Option<u64>, text: &str, out: &mut Vec<Event>) {
        match id {
            Some(THREAD) if self.resume.is_some() => {
                self.done = true;
                out.push(Event::Error(RunError::fatal(ErrorKind::SessionNotFound, text)));
            }
            Some(INITIALIZE | THREAD | TURN) => {
                self.done = true;
                out.push(Event::Error(super::codex::classify(text)));
            }
            // A steer or interrupt that came too late: the turn goes on or is over.
            _ => tracing::debug!(error = text, "codex refused a request"),
        }
    }

    fn server_request(&mut self, id: Value, method: &str, message: &Value, out: &mut Vec<Event>) {
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let tool = match method {
            "item/commandExecution/requestApproval" | "execCommandApproval" => "shell",
            "item/fileChange/requestApproval" | "applyPatchApproval" => "apply_patch",
            _ => {
                // Nothing in ductor answers these: refuse at once rather than hang.
                let error = json!({"code": -32601, "message": "not offered by ductor"});
                self.outgoing.push(line(&json!({"id": id, "error": error})));
                return;
            }
        };
        let request_id = format!("codex-{id}");
        let mut input = json!({});
        for key in ["command", "cwd", "reason", "grantRoot"] {
            if let Some(value) = params.get(key).filter(|v| !v.is_null()) {
                input[key] = value.clone();
            }
        }
        self.requests.insert(request_id.clone(), id);
        out.push(Event::ApprovalRequested {
            request_id,
            tool: tool.to_owned(),
            input,
            description: str_of(&params, "reason").to_owned(),
        });
    }

    fn notification(
        &mut self,
        method: &str,
        params: Option<&Value>,
        out: &mut Vec<Event>,
    ) -> Result<(), Unknown> {
        let params = params.cloned().unwrap_or(Value::Null);
        match method {
            "item/agentMessage/delta" => {
                let delta = str_of(&params, "delta");
                if !delta.is_empty() {
                    self.streamed.insert(str_of(&params, "itemId").to_owned());
                    self.turns.text();
                    out.push(Event::Text(delta.to_owned()));
                }
            }
            "item/started" => self.item(params.get("item"), false, out),
            "item/completed" => self.item(params.get("item"), true, out),
            "thread/tokenUsage/updated" => {
                let total = params.pointer("/tokenUsage/total").cloned().unwrap_or(Value::Null);
                self.usage = total.is_object().then(|| Usage {
                    input_tokens: u64_of(&total, "inputTokens"),
                    output_tokens: u64_of(&total, "outputTokens"),
                    cached_input_tokens: u64_of(&total, "cachedInputTokens"),
                });
            }
            "error" => {
                let text = params.pointer("/error/message").and_then(Value::as_str);
                let text = text.unwrap_or_else(|| str_of(&params, "message"));
                self.pending_error = Some(text.to_owned());
                out.push(Event::Status { status: "warning".into(), detail: one_line(text, 300) });
            }
            "turn/completed" => self.completed(&params, out),
            // Bookkeeping codex tells every client.
            m if m.starts_with("thread/")
                || m.starts_with("turn/")
                || m.starts_with("item/")
                || m.starts_with("account/")
                || m.starts_with("serverRequest/")
                || m.starts_with("remoteControl/")
                || m == "configWarning"
                || m == "deprecationNotice"
                || m.starts_with("mcpServer") => {}
            other => return Err(Unknown(other.to_owned())),
        }
        Ok(())
    }

    fn item(&mut self, item: Option<&Value>, completed: bool, out: &mut Vec<Event>) {
        let Some(item) = item else { return };
        let id = str_of(item, "id").to_owned();
        match (str_of(item, "type"), completed) {
            ("agentMessage", true) => {
                let text = str_of(item, "text");
                if !text.is_empty() {
                    self.last_message = text.to_owned();
                    if !self.streamed.contains(&id) {
                        self.turns.text();
                        out.push(Event::Text(text.to_owned()));
                    }
                }
            }
            ("commandExecution", false) => {
                self.turns.tool();
                self.tools.insert(id.clone(), "shell".into());
                let summary = one_line(str_of(item, "command"), 200);
                out.push(Event::ToolStarted { id, name: "shell".into(), summary });
            }
            ("commandExecution", true) => {
                let ok = str_of(item, "status") == "completed"
                    && item.get("exitCode").and_then(Value::as_i64) == Some(0);
                let output = tail(str_of(item, "aggregatedOutput"), 500);
                self.tools.remove(&id);
                out.push(Event::ToolFinished { id, name: "shell".into(), ok, output });
            }
            ("fileChange", false) => {
                self.turns.tool();
                self.tools.insert(id.clone(), "edit".into());
                out.push(Event::ToolStarted { id, name: "edit".into(), summary: String::new() });
            }
            ("fileChange", true) => {
                let ok = str_of(item, "status") == "completed";
                self.tools.remove(&id);
                out.push(Event::ToolFinished {
                    id,
                    name: "edit".into(),
                    ok,
                    output: String::new(),
                });
            }
            _ => {}
        }
    }

    fn completed(&mut self, params: &Value, out: &mut Vec<Event>) {
        self.done = true;
        let status = params.pointer("/turn/status").and_then(Value::as_str).unwrap_or("");
        let is_error = status != "completed";
        let mut text = self.last_message.clone();
        if status == "failed" {
            let message = params
                .pointer("/turn/error/message")
                .and_then(Value::as_str)
                .or(self.pending_error.as_deref())
                .unwrap_or("turn failed")
                .to_owned();
            out.push(Event::Error(super::codex::classify(&message)));
            text = message;
        }
        out.push(Event::Result(RunResult {
            text,
            session_id: self.thread_id.clone(),
            is_error,
            usage: None,
            cost_usd: None,
            session_usage: self.usage,
            session_cost_usd: None,
            duration_ms: 0,
            num_turns: self.turns.count(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parser: &mut Parser, line: Value) -> Vec<Event> {
        let mut out = Vec::new();
        parser.parse(&line, &mut out).expect("known");
        out
    }

    fn methods(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| str_of(&v, "method").to_owned())
            .collect()
    }

    #[test]
    fn the_handshake_resumes_the_thread_and_starts_the_turn_with_the_prompt() {
        let params = json!({"cwd": "/w", "approvalPolicy": "untrusted", "sandbox": "read-only"});
        let mut parser = Parser::new(params, Some("t-1".into()), "hello".into());
        assert_eq!(methods(&parser.opening()), ["initialize"]);
        parse(&mut parser, json!({"id": 1, "result": {}}));
        let sent = parser.take_outgoing();
        assert_eq!(methods(&sent), ["initialized", "thread/resume"]);
        assert!(sent[1].contains("\"threadId\":\"t-1\"") && sent[1].contains("untrusted"));
        let events = parse(&mut parser, json!({"id": 2, "result": {"thread": {"id": "t-1"}}}));
        assert_eq!(events, [Event::Session("t-1".into())]);
        let sent = parser.take_outgoing();
        assert!(sent[0].contains("turn/start") && sent[0].contains("hello"), "{sent:?}");
        assert_eq!(parser.encode(&Input::User("more".into())), None, "no turn id yet");
        parse(&mut parser, json!({"id": 3, "result": {"turn": {"id": "u-1"}}}));
        let steer = parser.encode(&Input::User("more".into())).expect("a steer");
        assert!(steer.contains("turn/steer") && steer.contains("\"expectedTurnId\":\"u-1\""));
        let id = serde_json::from_str::<Value>(&steer).unwrap()["id"].clone();
        // Taken: confirmed; refused (the turn was ending): silent, the caller re-runs it.
        let taken = parse(&mut parser, json!({"id": id, "result": {"turnId": "u-1"}}));
        assert_eq!(taken, [Event::Steered("more".into())]);
        let again = parser.encode(&Input::User("late".into())).expect("a steer");
        let id = serde_json::from_str::<Value>(&again).unwrap()["id"].clone();
        let refused = json!({"id": id, "error": {"code": -32600, "message": "no active turn"}});
        assert!(parse(&mut parser, refused).is_empty());
    }

    #[test]
    fn approvals_are_answered_by_their_json_rpc_id_and_others_refused_at_once() {
        let mut parser = Parser::new(json!({}), None, "x".into());
        let asked = json!({"id": 7, "method": "item/commandExecution/requestApproval",
                           "params": {"command": "touch f", "reason": "needs write"}});
        let events = parse(&mut parser, asked);
        let [Event::ApprovalRequested { request_id, tool, input, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!((tool.as_str(), input["command"].as_str()), ("shell", Some("touch f")));
        let answer = Input::Approval {
            request_id: request_id.clone(),
            allow: false,
            message: String::new(),
            input: Value::Null,
        };
        let line = parser.encode(&answer).expect("an answer");
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"id": 7, "result": {"decision": "decline"}})
        );
        assert_eq!(parser.encode(&answer), None, "answered once");
        parse(&mut parser, json!({"id": 8, "method": "item/tool/requestUserInput", "params": {}}));
        let refused = parser.take_outgoing();
        assert!(refused[0].contains("\"id\":8") && refused[0].contains("error"), "{refused:?}");
    }

    #[test]
    fn an_unknown_thread_ends_the_run_as_session_not_found() {
        let mut parser = Parser::new(json!({}), Some("gone".into()), "x".into());
        parse(&mut parser, json!({"id": 1, "result": {}}));
        let events = parse(
            &mut parser,
            json!({"id": 2, "error": {"code": -32600, "message": "no rollout"}}),
        );
        assert!(parser.done());
        assert!(matches!(&events[..], [Event::Error(e)] if e.kind == ErrorKind::SessionNotFound));
    }
}
