//! Chat commands and selectors. Every command answers at once (none waits for
//! the running turn); `/stop`, `/interrupt`, `/new` and `/stop_all` act on it.
//! Replies carry the command's event id so a client can tell its answer.

use super::turn::{StopReason, compact};
use super::{AgentCommand, AutomationRequest, Effect, Env, Machine};
use crate::background::BackgroundRequest;
use crate::commands::{Command, help_text, leading_directives};
use crate::model::{Button, ButtonGrid, OutKind, SessionKey};
use ductor_daemon::config::PermissionModeSetting;

const MODEL_SELECTOR: &str = "model";
const EFFORT_SELECTOR: &str = "effort";

/// The modes `/mode` offers.
const MODES: &[&str] = &["ask", "default", "accept_edits", "plan", "bypass"];

impl<E: Env> Machine<E> {
    pub(super) fn on_command(&mut self, key: &SessionKey, event_id: &str, command: Command) {
        match command {
            Command::Start => {
                let text = format!(
                    "👋 ductor {} is ready. Send a message and the agent answers here.\n\n{}",
                    self.cfg.version,
                    help_text()
                );
                self.notice(key, event_id, text);
            }
            Command::Help => self.notice(key, event_id, help_text()),
            Command::Info => {
                let text = format!(
                    "ductor {}: official coding-agent CLIs (claude, codex, gemini) from chat.\n\
                     Core, runner and gateways are separate processes; state lives in state.db.",
                    self.cfg.version
                );
                self.notice(key, event_id, text);
            }
            Command::New => self.cmd_new(key, event_id),
            Command::Reset => self.cmd_reset(key, event_id),
            Command::Stop(Some(target)) => self.cmd_stop_named(key, event_id, &target),
            Command::Stop(None) => {
                let (running, dropped) = self.stop_chat(key);
                let text = match (running, dropped) {
                    (false, 0) => "Nothing is running.".to_owned(),
                    (true, 0) => "Stopping the running turn.".to_owned(),
                    (r, n) => format!(
                        "{}Dropped {n} queued message{}.",
                        if r { "Stopping the running turn. " } else { "" },
                        if n == 1 { "" } else { "s" }
                    ),
                };
                self.notice(key, event_id, text);
            }
            Command::Interrupt => {
                let text = if self.signal_active(key, StopReason::Interrupt) {
                    "Interrupt sent; queued messages will still run."
                } else {
                    "Nothing is running."
                };
                self.notice(key, event_id, text);
            }
            Command::StopAll => {
                let (mut turns, mut dropped) = (0, 0);
                for other in self.busy_keys() {
                    let (running, n) = self.stop_chat(&other);
                    turns += usize::from(running);
                    dropped += n;
                }
                self.notice(
                    key,
                    event_id,
                    format!(
                        "Stopping {turns} running turn(s); dropped {dropped} queued message(s)."
                    ),
                );
                self.ask_background(key, event_id, BackgroundRequest::StopEverything);
            }
            Command::Model(None) => self.model_menu(key, event_id),
            Command::Model(Some(name)) => {
                match self.resolve_name(&name) {
                    Some((provider, model)) => self.switch_model(key, event_id, &provider, &model),
                    None => {
                        if self.catalog.is_empty() {
                            self.out.push(Effect::Probe);
                        }
                        let known = self.provider_names().join(", ");
                        self.notice(
                        key,
                        event_id,
                        format!("Unknown provider or model {name:?}. Providers: {known}. Try /model."),
                    );
                    }
                }
            }
            Command::Effort(level) => self.cmd_effort(key, event_id, level),
            Command::Mode(mode) => self.cmd_mode(key, event_id, mode),
            Command::Status => {
                let request = AutomationRequest::Status(self.status_text(key));
                self.ask_automation(key, event_id, request);
            }
            Command::ShowFiles(dir) => self.cmd_showfiles(key, event_id, dir),
            Command::Restart(target) => self.cmd_restart(key, event_id, target.as_deref()),
            Command::Where => self.cmd_where(key, event_id),
            Command::Agents => self.cmd_agents(key, event_id, AgentCommand::List),
            Command::AgentStart(name) => self.cmd_agent(key, event_id, name, AgentCommand::Start),
            Command::AgentStop(name) => self.cmd_agent(key, event_id, name, AgentCommand::Stop),
            Command::AgentRestart(name) => {
                self.cmd_agent(key, event_id, name, AgentCommand::Restart)
            }
            Command::AgentCommands => self.notice(key, event_id, AGENT_COMMANDS),
            Command::Leave(chat) => self.cmd_leave(key, event_id, chat),
            Command::Upgrade => {
                let text = if self.is_admin(key) {
                    self.env.upgrade_report()
                } else {
                    "Only admin chats can see how ductor is installed ([agent].admin_chats)."
                        .to_owned()
                };
                self.notice(key, event_id, text);
            }
            Command::Cron(args) => {
                self.ask_automation(key, event_id, AutomationRequest::Cron(args))
            }
            Command::Memory => {
                let text = match self.env.read_memory(key.agent()) {
                    Some(memory) if !memory.trim().is_empty() => memory,
                    _ => "Main memory (memory_system/MAINMEMORY.md) is empty.".to_owned(),
                };
                self.notice(key, event_id, text);
            }
            Command::Diagnose => {
                let text = self.diagnose_text();
                self.notice(key, event_id, text);
            }
            Command::Sessions => {
                let text = self.sessions_text(key);
                self.ask_background(key, event_id, BackgroundRequest::ListSessions(text));
            }
            Command::Session(args) => self.cmd_session(key, event_id, &args),
            Command::Tasks => self.ask_background(key, event_id, BackgroundRequest::ListTasks),
        }
    }

    /// `/stop @name`: a named session's turn; anything else is a usage hint.
    fn cmd_stop_named(&mut self, key: &SessionKey, event_id: &str, target: &str) {
        match target.strip_prefix('@').filter(|name| self.is_named(key, name)) {
            Some(name) => {
                let request = BackgroundRequest::StopSession(name.to_owned());
                self.ask_background(key, event_id, request);
            }
            None => self.notice(
                key,
                event_id,
                format!("No background session {target} here. /stop alone stops this chat's turn; /sessions lists sessions."),
            ),
        }
    }

    /// `/session [@provider|@model|@name] <prompt>`.
    fn cmd_session(&mut self, key: &SessionKey, event_id: &str, args: &str) {
        let (tokens, rest) = leading_directives(args);
        if let Some(name) = tokens.first().filter(|t| self.is_named(key, t)) {
            let request = BackgroundRequest::FollowUp { name: name.clone(), text: rest.to_owned() };
            return self.ask_background(key, event_id, request);
        }
        let record = self.record_mut(key).clone();
        let (provider, model, effort) = match tokens.is_empty() {
            true => (record.provider, record.model, record.effort),
            false => match self.resolve_directives(&tokens) {
                Some((provider, model)) => (provider, model, String::new()),
                None => {
                    let known = self.provider_names().join(", ");
                    return self.notice(
                        key,
                        event_id,
                        format!("No session or provider @{}. Providers: {known}.", tokens[0]),
                    );
                }
            },
        };
        let prompt = rest.to_owned();
        let request = BackgroundRequest::NewSession { provider, model, effort, prompt };
        self.ask_background(key, event_id, request);
    }

    fn ask_automation(&mut self, key: &SessionKey, event_id: &str, request: AutomationRequest) {
        let admin = self.is_admin(key);
        let (key, reply_to) = (key.clone(), event_id.to_owned());
        self.out.push(Effect::Automation { key, reply_to, request, admin });
    }

    /// The chat is listed in `[agent].admin_chats` (any topic of it), or is
    /// the operator's terminal.
    pub(super) fn is_admin(&self, key: &SessionKey) -> bool {
        let chat = format!("{}:{}", key.transport, key.chat_id);
        self.caps.get(&key.transport).is_some_and(|caps| caps.operator)
            || self.cfg.admin_chats.contains(&chat)
    }

    /// `/restart [core|runner|GATEWAY]`: admin chats only. A turn that a
    /// core restart interrupts is reported by the next core, one a runner
    /// restart stops fails; neither is re-run.
    fn cmd_restart(&mut self, key: &SessionKey, event_id: &str, arg: Option<&str>) {
        use crate::restart::Target;
        if !self.is_admin(key) {
            return self.notice(
                key,
                event_id,
                "Only admin chats can restart ductor ([agent].admin_chats).",
            );
        }
        let target = Target::parse(arg);
        if let Target::Gateway(transport) = &target
            && !self.caps.contains_key(transport)
        {
            let mut known: Vec<&str> = self.caps.keys().map(String::as_str).collect();
            known.sort_unstable();
            let text = format!(
                "Unknown service {transport:?}. Restart one of: all, core, runner, {}.",
                known.join(", ")
            );
            return self.notice(key, event_id, text);
        }
        let running = self.chats.values().filter(|c| c.active.is_some()).count();
        let stops = match target {
            Target::All | Target::Core | Target::Runner if running > 0 => {
                format!(" {running} chat(s) with a running turn will have it stopped.")
            }
            _ => String::new(),
        };
        let text =
            format!("♻️ Restarting {}.{stops} This chat hears when it is back.", target.label());
        self.notice(key, event_id, text);
        self.out.push(Effect::Restart { key: key.clone(), target });
    }

    /// `/where`: the chats of this transport with a session, most recent first.
    fn cmd_where(&mut self, key: &SessionKey, event_id: &str) {
        if !self.is_admin(key) {
            return self.notice(
                key,
                event_id,
                "Only admin chats can list ductor's chats ([agent].admin_chats).",
            );
        }
        let mut chats: Vec<(&crate::session::SessionRecord, Option<jiff::Timestamp>)> = self
            .sessions
            .values()
            .filter(|r| r.key.transport == key.transport)
            .map(|r| (r, r.buckets.values().filter_map(|b| b.last_active).max()))
            .collect();
        chats.sort_by_key(|c| std::cmp::Reverse(c.1));
        let mut text = format!("ductor knows {} chat(s) on {}:", chats.len(), key.transport);
        for (record, last) in chats.iter().take(50) {
            let topic = if record.key.topic_id.is_empty() {
                String::new()
            } else {
                format!(" (topic {})", record.key.topic_id)
            };
            let when = last.map_or_else(
                || "never active".to_owned(),
                |at| {
                    format!(
                        "active {} min ago",
                        (self.now.as_second() - at.as_second()).max(0) / 60
                    )
                },
            );
            text.push_str(&format!(
                "\n• {}{topic} · {} · {when}",
                record.key.chat_id, record.provider
            ));
        }
        if chats.len() > 50 {
            text.push_str(&format!("\n…and {} more", chats.len() - 50));
        }
        self.notice(key, event_id, text);
    }

    /// `/leave [CHAT_ID]`: the gateway leaves that chat of this transport.
    fn cmd_leave(&mut self, key: &SessionKey, event_id: &str, chat: Option<String>) {
        if !self.is_admin(key) {
            return self.notice(
                key,
                event_id,
                "Only admin chats can make the bot leave a chat ([agent].admin_chats).",
            );
        }
        let target = chat.unwrap_or_else(|| key.chat_id.clone());
        self.notice(key, event_id, format!("👋 Leaving {target}."));
        let leave = SessionKey::new(&key.transport, &target, "");
        self.send(&leave, "", event_id, OutKind::LeaveChat);
    }

    fn cmd_new(&mut self, key: &SessionKey, event_id: &str) {
        self.discard_active(key);
        self.forget_session_rules(key);
        let (running, dropped) = self.stop_chat(key);
        let provider = self.record_mut(key).provider.clone();
        self.flush_before_reset(key, &provider);
        self.record_mut(key).bucket_mut(&provider).reset();
        self.save(key);
        let mut text =
            format!("✨ Fresh {provider} session. Sessions with other providers are kept.");
        if running || dropped > 0 {
            text.push_str(&format!(" (Stopped the running turn; dropped {dropped} queued.)"));
        }
        self.notice(key, event_id, text);
    }

    /// `/mode [MODE]`: the chat's permission mode (a menu without an argument).
    pub(super) fn cmd_mode(&mut self, key: &SessionKey, event_id: &str, mode: Option<String>) {
        let provider = self.record_mut(key).provider.clone();
        let Some(word) = mode else {
            let current = self.chat_permission(key).unwrap_or(self.cfg.permission);
            let text = format!("Mode: {}. Choose:", self.mode_line(&provider, current));
            let buttons = MODES
                .iter()
                .map(|m| Button { id: format!("pm:{m}"), label: (*m).to_owned() })
                .collect();
            let menu =
                OutKind::Selector { selector_id: "mode".into(), text, buttons: grid(buttons, 3) };
            return self.send(key, "", event_id, menu);
        };
        let Some(mode) = super::control::parse_mode(&word) else {
            let text = format!("Unknown mode {word:?}. Modes: {}.", MODES.join(", "));
            return self.notice(key, event_id, text);
        };
        self.record_mut(key).permission = super::control::mode_name(mode).to_owned();
        self.save(key);
        let text = format!("✓ Mode: {} (from the next turn)", self.mode_line(&provider, mode));
        let menu = OutKind::Selector { selector_id: "mode".into(), text, buttons: Vec::new() };
        self.send(key, "", event_id, menu);
    }

    /// A mode and what it means for `provider`.
    fn mode_line(&self, provider: &str, mode: PermissionModeSetting) -> String {
        let name = super::control::mode_name(mode);
        let can_ask = self.provider_info(provider).is_some_and(|p| p.can_approve);
        match mode {
            PermissionModeSetting::Ask if can_ask => {
                format!("{name} (tools that need permission are asked here)")
            }
            PermissionModeSetting::Ask => {
                format!(
                    "{name} ({provider} cannot ask: it runs as default, its own headless rules)"
                )
            }
            PermissionModeSetting::Bypass => {
                format!("{name} (everything; the sandbox is the fence)")
            }
            _ => name.to_owned(),
        }
    }

    fn cmd_reset(&mut self, key: &SessionKey, event_id: &str) {
        if self.active_summary(key).is_some() {
            return self.notice(key, event_id, "A turn is running: /stop it first, or use /new.");
        }
        let provider = self.record_mut(key).provider.clone();
        self.flush_before_reset(key, &provider);
        self.record_mut(key).bucket_mut(&provider).reset();
        self.save(key);
        self.notice(key, event_id, format!("✨ The {provider} session was reset."));
    }

    /// Sets the chat's provider and model; the running turn is untouched.
    pub(super) fn switch_model(
        &mut self,
        key: &SessionKey,
        event_id: &str,
        provider: &str,
        model: &str,
    ) {
        let text = self.apply_model(key, provider, model);
        self.notice(key, event_id, text);
    }

    fn apply_model(&mut self, key: &SessionKey, provider: &str, model: &str) -> String {
        let record = self.record_mut(key);
        let previous = std::mem::replace(&mut record.provider, provider.to_owned());
        if previous != provider {
            record.effort.clear();
        }
        record.model = model.to_owned();
        self.save(key);
        let shown = if model.is_empty() { "default model".to_owned() } else { model.to_owned() };
        let mut text = format!("Model: {provider} / {shown}.");
        if previous != provider {
            text.push_str(&format!(" Your {previous} session is kept for when you switch back."));
        }
        if self.active_summary(key).is_some() {
            text.push_str(" The running turn continues; the next message uses the new model.");
        }
        text
    }

    fn model_menu(&mut self, key: &SessionKey, event_id: &str) {
        if self.catalog.is_empty() {
            self.out.push(Effect::Probe);
        }
        let record = self.record_mut(key).clone();
        let current = if record.model.is_empty() { "default" } else { &record.model };
        let buttons = grid(
            self.provider_names()
                .into_iter()
                .map(|p| Button { id: format!("ms:p:{p}"), label: p })
                .collect(),
            3,
        );
        let text = format!("Current: {} / {current}. Choose a provider:", record.provider);
        let menu = OutKind::Selector { selector_id: MODEL_SELECTOR.into(), text, buttons };
        self.send(key, "", event_id, menu);
    }

    pub(super) fn on_model_button(&mut self, key: &SessionKey, event_id: &str, rest: &str) {
        if rest == "back" {
            return self.model_menu(key, event_id);
        }
        if let Some(provider) = rest.strip_prefix("p:") {
            let models = self.provider_info(provider).map(|p| p.models.clone()).unwrap_or_default();
            let mut buttons: Vec<Button> = models
                .iter()
                .enumerate()
                .map(|(i, m)| Button { id: format!("ms:m:{provider}:{i}"), label: m.clone() })
                .collect();
            if buttons.is_empty() {
                buttons.push(Button { id: format!("ms:m:{provider}:-"), label: "default".into() });
            }
            let mut rows = grid(buttons, 2);
            rows.push(vec![Button { id: "ms:back".into(), label: "« Back".into() }]);
            let text = format!("{provider}: choose a model:");
            let menu =
                OutKind::Selector { selector_id: MODEL_SELECTOR.into(), text, buttons: rows };
            return self.send(key, "", event_id, menu);
        }
        if let Some((provider, index)) = rest.strip_prefix("m:").and_then(|r| r.rsplit_once(':')) {
            let model = match index.parse::<usize>() {
                Ok(i) => self.provider_info(provider).and_then(|p| p.models.get(i).cloned()),
                Err(_) => Some(self.default_model(provider)),
            };
            let Some(model) = model else {
                return self.notice(key, event_id, "That model is no longer offered; try /model.");
            };
            let text = format!("✓ {}", self.apply_model(key, provider, &model));
            let menu =
                OutKind::Selector { selector_id: MODEL_SELECTOR.into(), text, buttons: Vec::new() };
            return self.send(key, "", event_id, menu);
        }
        self.notice(key, event_id, "That button is no longer active.");
    }

    fn cmd_effort(&mut self, key: &SessionKey, event_id: &str, level: Option<String>) {
        if let Some(level) = level {
            return self.set_effort(key, event_id, &level);
        }
        let record = self.record_mut(key).clone();
        let efforts =
            self.provider_info(&record.provider).map(|p| p.efforts.clone()).unwrap_or_default();
        if efforts.is_empty() {
            return self.notice(
                key,
                event_id,
                format!("{} offers no reasoning effort levels.", record.provider),
            );
        }
        let mut buttons: Vec<Button> =
            efforts.iter().map(|e| Button { id: format!("ef:{e}"), label: e.clone() }).collect();
        buttons.push(Button { id: "ef:default".into(), label: "default".into() });
        let current = if record.effort.is_empty() { "default" } else { &record.effort };
        let text = format!("Reasoning effort for {} (now: {current}):", record.provider);
        let menu = OutKind::Selector {
            selector_id: EFFORT_SELECTOR.into(),
            text,
            buttons: grid(buttons, 4),
        };
        self.send(key, "", event_id, menu);
    }

    pub(super) fn set_effort(&mut self, key: &SessionKey, event_id: &str, level: &str) {
        let provider = self.record_mut(key).provider.clone();
        let allowed = self.provider_info(&provider).map(|p| p.efforts.clone()).unwrap_or_default();
        let level = level.trim().to_ascii_lowercase();
        if level != "default" && !allowed.is_empty() && !allowed.contains(&level) {
            return self.notice(
                key,
                event_id,
                format!("{provider} accepts: {} (or default).", allowed.join(", ")),
            );
        }
        let effort = if level == "default" { String::new() } else { level };
        self.record_mut(key).effort = effort.clone();
        self.save(key);
        let shown = if effort.is_empty() { "default".to_owned() } else { effort };
        let menu = OutKind::Selector {
            selector_id: EFFORT_SELECTOR.into(),
            text: format!("✓ Reasoning effort: {shown}."),
            buttons: Vec::new(),
        };
        self.send(key, "", event_id, menu);
    }

    fn status_text(&mut self, key: &SessionKey) -> String {
        let record = self.record_mut(key).clone();
        let model = if record.model.is_empty() { "default model" } else { &record.model };
        let mut lines = Vec::new();
        if !self.cfg.agents.is_empty() {
            lines.push(format!("Agent: {}", key.agent()));
        }
        lines.push(format!("Provider: {} · Model: {model}", record.provider));
        if !record.effort.is_empty() {
            lines.push(format!("Effort: {}", record.effort));
        }
        match record.bucket(&record.provider) {
            Some(b) if b.session_id.is_some() => {
                let id = b.session_id.as_deref().unwrap_or_default();
                let prefix: String = id.chars().take(8).collect();
                lines.push(format!(
                    "Session: {prefix}… · {} messages · {} in / {} out tokens · ${:.4}",
                    b.message_count,
                    compact(b.input_tokens),
                    compact(b.output_tokens),
                    b.cost_usd
                ));
            }
            _ => lines.push("Session: none yet (the next message starts one)".to_owned()),
        }
        let others: Vec<String> = record
            .buckets
            .iter()
            .filter(|(p, b)| **p != record.provider && b.session_id.is_some())
            .map(|(p, b)| format!("{p} ({} messages)", b.message_count))
            .collect();
        if !others.is_empty() {
            lines.push(format!("Kept sessions: {}", others.join(", ")));
        }
        let queued = self.chats.get(key).map_or(0, |c| c.queue.len());
        match self.active_summary(key) {
            Some((provider, secs)) => {
                lines.push(format!("Running: a {provider} turn for {secs}s · {queued} queued"))
            }
            None => lines.push("Idle".to_owned()),
        }
        let mode = self.chat_permission(key).unwrap_or(self.cfg.permission);
        lines.push(format!("Mode: {}", self.mode_line(&record.provider, mode)));
        lines.extend(self.approval_status(key));
        lines.push(self.runner_line());
        lines.join("\n")
    }

    fn runner_line(&self) -> String {
        if !self.runner_up {
            return "Runner: not reachable".to_owned();
        }
        let providers: Vec<String> = self
            .catalog
            .iter()
            .filter(|p| p.installed)
            .map(|p| format!("{} {} ({})", p.name, p.version, p.auth_hint))
            .collect();
        if providers.is_empty() {
            "Runner: reachable".to_owned()
        } else {
            format!("Runner: reachable · {}", providers.join(", "))
        }
    }

    fn diagnose_text(&self) -> String {
        let mut lines = vec![format!("ductor core {}", self.cfg.version), self.runner_line()];
        for p in &self.catalog {
            let state = if p.installed { p.version.as_str() } else { "not installed" };
            lines.push(format!(
                "  {}: {state} · auth {} · {} models",
                p.name,
                p.auth_hint,
                p.models.len()
            ));
        }
        lines.push(format!("Turns running: {} · queued: {}", self.active_turns(), self.queued()));
        lines.push("Configuration:".to_owned());
        lines.extend(self.cfg.summary.iter().map(|l| format!("  {l}")));
        if self.errors.is_empty() {
            lines.push("Recent errors: none".to_owned());
        } else {
            lines.push("Recent errors:".to_owned());
            lines.extend(self.errors.iter().rev().take(10).map(|e| format!("  {e}")));
        }
        lines.join("\n")
    }

    fn sessions_text(&self, key: &SessionKey) -> String {
        let mut records: Vec<_> = self
            .sessions
            .values()
            .filter(|r| r.key.transport == key.transport && r.key.chat_id == key.chat_id)
            .collect();
        records.sort_by(|a, b| a.key.topic_id.cmp(&b.key.topic_id));
        if records.is_empty() {
            return "No sessions in this chat yet.".to_owned();
        }
        let mut lines = vec!["Sessions in this chat:".to_owned()];
        for r in records {
            let topic = if r.key.topic_id.is_empty() { "main" } else { &r.key.topic_id };
            let buckets: Vec<String> = r
                .buckets
                .iter()
                .filter(|(_, b)| b.session_id.is_some())
                .map(|(p, b)| format!("{p}: {} msgs", b.message_count))
                .collect();
            let buckets = if buckets.is_empty() { "none".to_owned() } else { buckets.join(", ") };
            lines.push(format!("  {topic} ({} active): {buckets}", r.provider));
        }
        lines.join("\n")
    }
}

/// Lays buttons out `per_row` to a row.
fn grid(buttons: Vec<Button>, per_row: usize) -> ButtonGrid {
    buttons.chunks(per_row.max(1)).map(<[Button]>::to_vec).collect()
}

/// `/agent_commands`: how agents reach each other.
const AGENT_COMMANDS: &str = "\
🤝 Agents\n\
/agents: the agents, their gateways and sessions\n\
/agent_start NAME, /agent_stop NAME, /agent_restart NAME: an agent's gateways (admin chats)\n\
\n\
An agent asks another from its runs:\n\
ductorctl agents ask NAME \"question\" (waits for the answer)\n\
ductorctl agents ask --background NAME \"question\" (the answer comes back into this chat)\n\
ductorctl agents list (who is there)\n\
Shared memory: memory_system/SHAREDMEMORY.md of the main workspace, copied into every agent's rule files.";
