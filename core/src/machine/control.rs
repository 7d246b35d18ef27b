//! Tool approvals and steering, the machine's side (issue 15).
//!
//! - An `ask` run's approval request becomes a selector in the chat (the
//!   tool and its input, commands in full, long inputs cut) with "allow
//!   once", "allow <tool> for this session" and "deny"; answered by button,
//!   reaction, number or a typed yes/no; denied after
//!   `[agent].approval_timeout_seconds` with the agent told why, and when its
//!   turn ends first. "For this session" is remembered until `/new`. Every
//!   decision is an [`Effect::Audit`] and shows in `/status`.
//! - With `[agent].while_busy = "steer"` a message sent during an
//!   interactive turn goes into it ([`Effect::Respond`]); the runner's
//!   `Steered` confirms it and the answer to it becomes a reply of its own
//!   (a new segment of the same run). A refused steer is queued as usual.
//!
//! Nothing here knows a provider: the catalog says which CLI can do what.

use std::collections::{BTreeSet, HashMap, VecDeque};

use ductor_daemon::config::{PermissionModeSetting, WhileBusy};

use super::{Effect, Env, Machine, Origin, TurnInput};
use crate::markup;
use crate::model::{ApprovalRequest, Button, OutKind, RunResponse, RunResult, SessionKey};
use crate::store::{ApprovalRecord, InboundState};

/// Longest tool input shown in an approval request; a shell command may be
/// longer (it is shown whole up to a message's worth).
const MAX_SHOWN_INPUT: usize = 1500;
const MAX_SHOWN_COMMAND: usize = 3500;

/// Recent decisions kept per chat for `/status`.
const RECENT: usize = 5;

/// What the agent hears when the user says no.
const DENIED: &str = "The user denied this tool use from the chat. Do not retry it; \
                      continue without it or ask the user what to do instead.";

/// An approval request waiting for the user.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    key: SessionKey,
    run_id: String,
    request_id: String,
    provider: String,
    tool: String,
    input: String,
    text: String,
}

/// The machine's approvals state.
#[derive(Debug, Default)]
pub(super) struct Approvals {
    pending: HashMap<String, Pending>,
    /// Oldest first, per chat (a typed yes/no answers the oldest).
    order: HashMap<SessionKey, VecDeque<String>>,
    next: u64,
    /// Tools allowed "for this session", per chat.
    rules: HashMap<SessionKey, BTreeSet<String>>,
    recent: HashMap<SessionKey, VecDeque<String>>,
}

/// How the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Once,
    Session,
    Deny,
}

impl<E: Env> Machine<E> {
    /// The permission mode a chat's turn runs with.
    pub(super) fn chat_permission(&self, key: &SessionKey) -> Option<PermissionModeSetting> {
        let mode = self.sessions.get(key).map(|r| r.permission.as_str()).unwrap_or_default();
        parse_mode(mode)
    }

    /// Whether this chat's turns keep the CLI's input open (steering).
    pub(super) fn wants_interactive(&self, provider: &str) -> bool {
        self.cfg.while_busy == WhileBusy::Steer
            && self.provider_info(provider).is_some_and(|p| p.can_steer)
    }

    pub(super) fn on_approval_request(
        &mut self,
        key: &SessionKey,
        run_id: &str,
        provider: &str,
        silent: bool,
        request: ApprovalRequest,
    ) {
        let input = summarize(&request.input_json, MAX_SHOWN_INPUT);
        let pending = Pending {
            key: key.clone(),
            run_id: run_id.to_owned(),
            request_id: request.request_id.clone(),
            provider: provider.to_owned(),
            tool: request.tool.clone(),
            input: input.clone(),
            text: String::new(),
        };
        if silent {
            // Nobody watches an unattended turn: it never gets a yes.
            return self.decide(pending, false, "denied", "unattended");
        }
        let allowed = self.approvals.rules.get(key).is_some_and(|r| r.contains(&request.tool));
        if allowed {
            let text = format!("✅ {} allowed (allowed for this session).", request.tool);
            self.notice(key, "", text);
            return self.decide(pending, true, "allowed", "session_rule");
        }
        self.approvals.next += 1;
        let id = format!("a{}", self.approvals.next);
        let text = request_text(&request, &input);
        let buttons = request_buttons(&id, &request.tool);
        let pending = Pending { text: text.clone(), ..pending };
        self.approvals.order.entry(key.clone()).or_default().push_back(id.clone());
        self.approvals.pending.insert(id.clone(), pending);
        let selector = OutKind::Selector { selector_id: selector_id(&id), text, buttons };
        self.send(key, "", "", selector);
        let after_ms = self.cfg.approval_timeout_ms;
        self.out.push(Effect::ApprovalTimer { approval_id: id, after_ms });
    }

    /// A button `ap:<id>:<y|s|n>`.
    pub(super) fn on_approval_button(&mut self, key: &SessionKey, event_id: &str, rest: &str) {
        let Some((id, choice)) = rest.rsplit_once(':') else {
            return self.notice(key, event_id, "That button is no longer active.");
        };
        let decision = match choice {
            "y" => Decision::Once,
            "s" => Decision::Session,
            _ => Decision::Deny,
        };
        self.answer(key, event_id, id, decision, "button");
    }

    /// A typed yes/no while a request waits: true when it answered one.
    pub(super) fn typed_approval(&mut self, key: &SessionKey, event_id: &str, text: &str) -> bool {
        let decision = match text.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "allow" | "ok" | "approve" => Decision::Once,
            "no" | "n" | "deny" | "reject" => Decision::Deny,
            _ => return false,
        };
        let Some(id) = self.approvals.order.get(key).and_then(|o| o.front()).cloned() else {
            return false;
        };
        self.answer(key, event_id, &id, decision, "typed");
        true
    }

    fn answer(&mut self, key: &SessionKey, event_id: &str, id: &str, d: Decision, how: &str) {
        let Some(pending) = self.take_pending(id) else {
            return self.notice(key, event_id, "That request is no longer waiting.");
        };
        let (allow, decision, note) = match d {
            Decision::Once => (true, "allowed", "✅ Allowed once.".to_owned()),
            Decision::Session => {
                let rules = self.approvals.rules.entry(key.clone()).or_default();
                rules.insert(pending.tool.clone());
                let note = format!("✅ {} allowed for this session (until /new).", pending.tool);
                (true, "allowed_for_session", note)
            }
            Decision::Deny => (false, "denied", "🚫 Denied.".to_owned()),
        };
        let note = match (pending.tool.as_str(), allow) {
            ("ExitPlanMode", true) => "✅ Plan approved.".to_owned(),
            ("ExitPlanMode", false) => "✏️ Keep planning.".to_owned(),
            _ => note,
        };
        let text = format!("{}\n\n{note}", pending.text);
        let closed = OutKind::Selector { selector_id: selector_id(id), text, buttons: Vec::new() };
        self.send(key, "", event_id, closed);
        self.decide(pending, allow, decision, how);
    }

    /// The timer of request `id` fired.
    pub(super) fn on_approval_timeout(&mut self, id: &str) {
        let Some(pending) = self.take_pending(id) else { return };
        let secs = self.cfg.approval_timeout_ms / 1000;
        let text = format!("{}\n\n⌛ Not answered within {secs}s: denied.", pending.text);
        let closed = OutKind::Selector { selector_id: selector_id(id), text, buttons: Vec::new() };
        let key = pending.key.clone();
        self.send(&key, "", "", closed);
        self.decide(pending, false, "timed_out", "timeout");
    }

    /// The run ended: its open requests are closed (never approved).
    pub(super) fn close_approvals(&mut self, run_id: &str) {
        let ids: Vec<String> = self
            .approvals
            .pending
            .iter()
            .filter(|(_, p)| p.run_id == run_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(pending) = self.take_pending(&id) else { continue };
            let text = format!("{}\n\n⏹ The turn ended before an answer.", pending.text);
            let closed =
                OutKind::Selector { selector_id: selector_id(&id), text, buttons: Vec::new() };
            let key = pending.key.clone();
            self.send(&key, "", "", closed);
            self.audit(&pending, "cancelled", "turn_ended");
        }
    }

    /// `/new`: "for this session" rules end with the session.
    pub(super) fn forget_session_rules(&mut self, key: &SessionKey) {
        self.approvals.rules.remove(key);
    }

    /// `/status` lines about approvals.
    pub(super) fn approval_status(&self, key: &SessionKey) -> Vec<String> {
        let mode = self.chat_permission(key).unwrap_or(self.cfg.permission);
        let mut lines = Vec::new();
        let waiting = self.approvals.order.get(key).map_or(0, VecDeque::len);
        if mode == PermissionModeSetting::Ask || waiting > 0 {
            let rules = self.approvals.rules.get(key).map(|r| r.iter().cloned().collect());
            let rules: Vec<String> = rules.unwrap_or_default();
            let mut line = format!("Approvals: {waiting} waiting");
            if !rules.is_empty() {
                line.push_str(&format!(" · allowed for this session: {}", rules.join(", ")));
            }
            lines.push(line);
        }
        if let Some(recent) = self.approvals.recent.get(key).filter(|r| !r.is_empty()) {
            let list: Vec<&str> = recent.iter().map(String::as_str).collect();
            lines.push(format!("Recent decisions: {}", list.join("; ")));
        }
        lines
    }

    fn take_pending(&mut self, id: &str) -> Option<Pending> {
        let pending = self.approvals.pending.remove(id)?;
        if let Some(order) = self.approvals.order.get_mut(&pending.key) {
            order.retain(|other| other != id);
        }
        Some(pending)
    }

    fn decide(&mut self, pending: Pending, allow: bool, decision: &str, how: &str) {
        let message = match decision {
            "timed_out" => format!(
                "Nobody answered this permission request within {}s, so it was denied. {DENIED}",
                self.cfg.approval_timeout_ms / 1000
            ),
            "denied" if how == "unattended" => {
                "This run is unattended: tools that need permission are denied.".to_owned()
            }
            _ => DENIED.to_owned(),
        };
        let response = RunResponse::Approval {
            request_id: pending.request_id.clone(),
            allow,
            message: if allow { String::new() } else { message },
        };
        let run_id = pending.run_id.clone();
        self.out.push(Effect::Respond { run_id, response, steer: None });
        self.audit(&pending, decision, how);
    }

    fn audit(&mut self, pending: &Pending, decision: &str, how: &str) {
        let icon = if decision.starts_with("allowed") { "✅" } else { "🚫" };
        let line = format!(
            "{icon} {} {} ({how}, {})",
            pending.tool,
            decision.replace('_', " "),
            self.now.strftime("%H:%M")
        );
        let recent = self.approvals.recent.entry(pending.key.clone()).or_default();
        if recent.len() == RECENT {
            recent.pop_back();
        }
        recent.push_front(line);
        self.out.push(Effect::Audit(ApprovalRecord {
            at: self.now,
            key: pending.key.clone(),
            run_id: pending.run_id.clone(),
            provider: pending.provider.clone(),
            tool: pending.tool.clone(),
            input: pending.input.clone(),
            decision: decision.to_owned(),
            how: how.to_owned(),
        }));
    }

    // === steering ===

    /// Steers `input` into `key`'s running turn when it can take it; false
    /// when the message should be queued instead.
    pub(super) fn try_steer(&mut self, key: &SessionKey, input: &TurnInput) -> bool {
        if !matches!(input.origin, Origin::User)
            || self.cfg.while_busy != WhileBusy::Steer
            || input.media.is_some()
        {
            return false;
        }
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) else {
            return false;
        };
        if !turn.interactive || turn.stop.is_some() || turn.silent() {
            return false;
        }
        turn.steer_waiting.push_back(input.clone());
        let (run_id, turn_id) = (turn.run_id.clone(), turn.turn_id.clone());
        self.journal(key, &input.event_id, InboundState::Running, &turn_id);
        let response = RunResponse::Steer(input.prompt.clone());
        let steer = Some((key.clone(), input.event_id.clone()));
        self.out.push(Effect::Respond { run_id, response, steer });
        true
    }

    /// The runner confirmed a steer: note it in the chat; its answer is owed.
    pub(super) fn on_steered(&mut self, key: &SessionKey) {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) else { return };
        let Some(input) = turn.steer_waiting.pop_front() else { return };
        turn.steered_events.push(input.event_id.clone());
        turn.steers += 1;
        self.notice(key, &input.event_id, "↪️ Sent into the running turn.");
    }

    /// The runner did not take a steer (the turn was ending): queue it.
    pub(super) fn on_steer_refused(&mut self, key: &SessionKey, event_id: &str) {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) else {
            return self.requeue_refused(key, event_id, None);
        };
        let position = turn.steer_waiting.iter().position(|i| i.event_id == event_id);
        let input = position.and_then(|at| turn.steer_waiting.remove(at));
        self.requeue_refused(key, event_id, input);
    }

    fn requeue_refused(&mut self, key: &SessionKey, event_id: &str, input: Option<TurnInput>) {
        let Some(input) = input else {
            tracing::warn!(session = %key, event_id, "a refused steer was not found");
            return;
        };
        self.enqueue(key, input);
    }

    /// A result while steers are owed: it is this segment's reply. The
    /// next reply starts with the run's next output ([`Self::next_segment`]);
    /// a CLI that folded the steer into the reply just given (codex does)
    /// may end without one, and the turn ends on the reply given.
    pub(super) fn segment_result(&mut self, key: &SessionKey, result: RunResult) {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.take()) else { return };
        let outcome = self.deliver_result(key, &turn, result);
        if let Some(turn) = self.chats.get_mut(key).map(|c| c.active.insert(turn)) {
            turn.steers = turn.steers.saturating_sub(1);
            turn.answered = Some(outcome);
            turn.awaiting_segment = true;
        }
    }

    /// Output after a segment's reply: a new reply begins (a fresh turn id
    /// for the gateways, answering the latest steered message).
    pub(super) fn next_segment(&mut self, key: &SessionKey) {
        let turn_id = self.env.new_id();
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) else { return };
        if !turn.awaiting_segment {
            return;
        }
        turn.awaiting_segment = false;
        turn.answered = None;
        turn.turn_id = turn_id.clone();
        turn.segments += 1;
        turn.result = None;
        turn.stream = markup::StreamFilter::default();
        let reply_to = turn.steered_events.last().cloned().unwrap_or_default();
        let started =
            OutKind::TurnStarted { provider: turn.provider.clone(), model: turn.model.clone() };
        self.send(key, &turn_id, &reply_to, started);
    }
}

/// A chat's mode word, or `None` for the configured default.
pub(super) fn parse_mode(word: &str) -> Option<PermissionModeSetting> {
    match word.trim().to_ascii_lowercase().as_str() {
        "default" => Some(PermissionModeSetting::Default),
        "accept_edits" | "acceptedits" | "edits" => Some(PermissionModeSetting::AcceptEdits),
        "bypass" | "yolo" => Some(PermissionModeSetting::Bypass),
        "plan" => Some(PermissionModeSetting::Plan),
        "ask" => Some(PermissionModeSetting::Ask),
        _ => None,
    }
}

/// The config spelling of a mode.
pub(super) fn mode_name(mode: PermissionModeSetting) -> &'static str {
    match mode {
        PermissionModeSetting::Default => "default",
        PermissionModeSetting::AcceptEdits => "accept_edits",
        PermissionModeSetting::Bypass => "bypass",
        PermissionModeSetting::Plan => "plan",
        PermissionModeSetting::Ask => "ask",
    }
}

fn selector_id(id: &str) -> String {
    format!("approval-{id}")
}

fn request_buttons(id: &str, tool: &str) -> Vec<Vec<Button>> {
    let button = |choice: &str, label: String| Button { id: format!("ap:{id}:{choice}"), label };
    let plan = tool == "ExitPlanMode";
    let once = if plan { "✅ Approve the plan" } else { "✅ Allow once" };
    let deny = if plan { "✏️ Keep planning" } else { "🚫 Deny" };
    let mut rows = vec![vec![button("y", once.into()), button("n", deny.into())]];
    if !plan {
        rows.push(vec![button("s", format!("✅ Allow {} for this session", short(tool, 24)))]);
    }
    rows
}

/// The request as the user reads it: a shell command in full, a plan as
/// written, other inputs as JSON, cut at [`MAX_SHOWN_INPUT`].
fn request_text(request: &ApprovalRequest, input: &str) -> String {
    if request.tool == "ExitPlanMode" {
        let plan = if input.trim().is_empty() || input == "{}" {
            "(its plan is in its message above)".to_owned()
        } else {
            input.to_owned()
        };
        return format!("📋 The agent has a plan and asks to go ahead:\n\n{plan}");
    }
    let mut text = format!("🔐 The agent asks to use {}", request.tool);
    if !request.description.is_empty() && request.description != request.tool {
        text.push_str(&format!(": {}", short(&request.description, 200)));
    }
    text.push_str(&format!("\n\n{input}"));
    text
}

/// The most telling part of a tool input, cut to `max` bytes.
fn summarize(input_json: &str, max: usize) -> String {
    let value: serde_json::Value = serde_json::from_str(input_json).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    let shown = match (field("command"), field("plan"), field("file_path")) {
        (Some(command), _, _) => return short(&format!("$ {command}"), max.max(MAX_SHOWN_COMMAND)),
        (None, Some(plan), _) => plan.to_owned(),
        (None, None, Some(path)) => format!("{path}\n{}", compact_json(&value, "file_path")),
        _ => compact_json(&value, ""),
    };
    short(&shown, max)
}

fn compact_json(value: &serde_json::Value, skip: &str) -> String {
    match value.as_object() {
        Some(map) => map
            .iter()
            .filter(|(k, _)| *k != skip)
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}: {s}"),
                None => format!("{k}: {v}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => value.to_string(),
    }
}

fn short(text: &str, max: usize) -> String {
    let cut = markup::truncate_bytes(text, max);
    if cut.len() == text.len() {
        return text.to_owned();
    }
    format!("{cut}… ({} more bytes)", text.len() - cut.len())
}
