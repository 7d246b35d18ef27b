//! The orchestrator as a sans-I/O state machine.
//!
//! A closed [`Event`] goes in ([`Machine::handle`]), a list of [`Effect`]s
//! comes out; the driver (`driver.rs`) executes effects (outbox, runner, SQLite)
//! and feeds results back as events. The machine never blocks and never
//! awaits, which is why quick commands answer at once even mid-turn, and why
//! every rule here is unit-tested without sockets (`machine/tests.rs`).
//!
//! Per `SessionKey` there is at most one running turn; further messages wait
//! in a queue with a visible notice and a cancel button. The only I/O the
//! machine does goes through [`Env`] (ids, reading MAINMEMORY.md, checking
//! file tags against the allowed roots), which tests replace.

mod agents;
mod commands;
mod control;
mod files;
mod import;
mod turn;
mod upkeep;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use jiff::Timestamp;

use crate::background::{BackgroundRequest, LiveNames};
use crate::commands::{leading_directives, parse as parse_command};
use crate::model::{
    Attachment, Button, ButtonGrid, ButtonStyle, Capabilities, Inbound, InboundKind, Media,
    OutKind, Outbound, PreparedMedia, ProviderInfo, RunEvent, RunRequest, SessionKey, SignalKind,
};
use crate::session::{Freshness, SessionRecord};
use crate::store::InboundState;

pub use agents::{AgentCommand, AgentDefaults};
pub use files::DirListing;
pub use import::{ImportOutcome, SessionImport};
pub use turn::TurnOutcome;
pub use upkeep::{FLUSH_PROMPT, FLUSH_TOKEN};

/// The I/O the machine needs, as a port.
pub trait Env: Send {
    /// A fresh unique id (turn ids, queue entries).
    fn new_id(&mut self) -> String;
    /// The contents of `memory_system/MAINMEMORY.md`, if any.
    fn read_memory(&self, agent: &str) -> Option<String>;
    /// Checks a `<file:...>` path against the allowed roots.
    fn resolve_file(&self, agent: &str, path: &str) -> Result<Attachment, String>;
    /// The folder `relative` (`""` = the root) of the workspace, for `/showfiles`.
    fn list_dir(&self, agent: &str, relative: &str) -> Result<DirListing, String>;
    /// The running version and how to upgrade this install, for `/upgrade`.
    fn upgrade_report(&self) -> String;
    /// Where `<file:...>` tags may point from now on (a reloaded `[agent].file_access`).
    fn set_file_access(&mut self, access: ductor_daemon::config::FileAccess);
}

/// The machine's view of `[agent]` and the build.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Default provider.
    pub provider: String,
    /// Default model (empty = the provider's default).
    pub model: String,
    /// Default effort.
    pub effort: String,
    /// Session freshness rules.
    pub freshness: Freshness,
    /// Total timeout of a chat turn.
    pub turn_timeout_ms: u64,
    /// Output-silence timeout of a chat turn.
    pub idle_timeout_ms: u64,
    /// Core's version.
    pub version: String,
    /// Effective configuration summary for `/diagnose` (no secrets).
    pub summary: Vec<String>,
    /// Provider names known without a probe.
    pub providers: Vec<String>,
    /// `[agent].permission_mode` (a chat's `/mode` overrides it).
    pub permission: ductor_daemon::config::PermissionModeSetting,
    /// An approval request unanswered this long is denied.
    pub approval_timeout_ms: u64,
    /// Messages sent while a turn runs: queued or steered.
    pub while_busy: ductor_daemon::config::WhileBusy,
    /// `[memory]`: flush turns and the memory-check hint.
    pub memory: ductor_daemon::config::MemoryConfig,
    /// `[agent].admin_chats`: `transport:chat_id` of the chats that administer ductor.
    pub admin_chats: Vec<String>,
    /// `[agent].file_access`: where `<file:...>` tags may point.
    pub file_access: ductor_daemon::config::FileAccess,
    /// Sub-agents' defaults for new sessions, by name (`[[agents]]`, merged
    /// over `[agent]`); the main agent's are `provider`/`model`/`effort`.
    pub agents: HashMap<String, AgentDefaults>,
}

/// Options for a prompt injected by automation into a chat's session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InjectOptions {
    /// Label `kind` of the run ("heartbeat", "webhook", ...).
    pub kind: String,
    /// A final reply equal to this (trimmed) is not delivered.
    pub quiet_token: Option<String>,
    /// No turn-started, deltas, tool or status actions.
    pub silent: bool,
    /// When a turn is running or queued in the chat, do not queue behind it:
    /// report `busy` at once (the heartbeat: a check-in is pointless then).
    pub skip_if_busy: bool,
    /// Nothing reaches the chat, not even the final reply (memory upkeep).
    pub hidden: bool,
}

/// Everything that can happen to the orchestrator.
#[derive(Debug, Clone)]
pub enum Event {
    /// A gateway delivered an inbound event (already deduplicated and journaled).
    Inbound(Inbound),
    /// Automation wants a prompt run in a chat's session, under its lock.
    Inject {
        /// Correlates the [`Effect::InjectDone`].
        inject_id: u64,
        /// The chat.
        key: SessionKey,
        /// The prompt.
        prompt: String,
        /// Delivery options.
        options: InjectOptions,
    },
    /// The operator imports a chat's sessions (`ductorctl import`).
    ImportSession {
        /// Correlates the [`Effect::ImportDone`].
        import_id: u64,
        /// What to import.
        import: SessionImport,
    },
    /// A runner event for a run.
    Run {
        /// The run.
        run_id: String,
        /// What happened.
        event: RunEvent,
    },
    /// The run's stream failed before its exit event (runner down or gone).
    RunLost {
        /// The run.
        run_id: String,
        /// Why.
        reason: String,
    },
    /// A gateway attached with these capabilities.
    Gateway {
        /// Transport name.
        transport: String,
        /// Its capabilities.
        caps: Capabilities,
    },
    /// The runner's provider catalog.
    Catalog(Vec<ProviderInfo>),
    /// The runner answered (or stopped answering) Health.
    RunnerHealth(bool),
    /// An error outside a turn, for `/diagnose`.
    Error(String),
    /// A chat's live named sessions changed (for `@name` routing).
    LiveNames(LiveNames),
    /// An approval request's answer time is over.
    ApprovalTimeout {
        /// From [`Effect::ApprovalTimer`].
        approval_id: String,
    },
    /// The runner prepared a received file (or could not: the file as it is).
    MediaPrepared {
        /// The chat.
        key: SessionKey,
        /// From [`Effect::PrepareMedia`].
        turn_id: String,
        /// The result.
        prepared: PreparedMedia,
    },
    /// The runner did not take a steering message (its turn was ending).
    SteerRefused {
        /// The chat.
        key: SessionKey,
        /// The message's event id.
        event_id: String,
    },
    /// `config.toml` was reloaded: the defaults of new sessions and turns
    /// from now on (running turns and existing sessions keep theirs).
    Reconfigure(Box<MachineConfig>),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Hand an action to the outbox.
    Send(Outbound),
    /// Start a run on the runner.
    StartRun(RunRequest),
    /// Run a one-shot flush turn resuming a session about to be reset
    /// (see `machine/upkeep.rs`); nothing of it reaches the chat.
    MemoryFlush {
        /// The chat.
        key: SessionKey,
        /// The session's provider.
        provider: String,
        /// Its model (empty = the provider's default).
        model: String,
        /// The session to resume.
        session_id: String,
    },
    /// Ask the runner to prepare a received file before its turn starts
    /// (answered by [`Event::MediaPrepared`]).
    PrepareMedia {
        /// The chat.
        key: SessionKey,
        /// The turn waiting for it.
        turn_id: String,
        /// The file.
        media: Media,
    },
    /// Signal a run.
    Signal {
        /// The run.
        run_id: String,
        /// How.
        kind: SignalKind,
    },
    /// Persist a session record.
    SaveSession(SessionRecord),
    /// Move an inbound event in the journal.
    Journal {
        /// Transport.
        transport: String,
        /// Event id.
        event_id: String,
        /// New state.
        state: InboundState,
        /// The turn, when running.
        turn_id: String,
    },
    /// An injected prompt's turn ended.
    InjectDone {
        /// From [`Event::Inject`].
        inject_id: u64,
        /// How it went.
        outcome: TurnOutcome,
    },
    /// A session import was decided (after its `SaveSession`, if any).
    ImportDone {
        /// From [`Event::ImportSession`].
        import_id: u64,
        /// What it did.
        outcome: ImportOutcome,
    },
    /// Refresh the provider catalog.
    Probe,
    /// Background work (named sessions, tasks): the driver asks the
    /// background engine and sends its answer, in order.
    Background {
        /// The chat.
        key: SessionKey,
        /// The command's event id.
        reply_to: String,
        /// What to do.
        request: BackgroundRequest,
    },
    /// Hand a response to a live run; `steer` is the chat and the message's
    /// event id when it is a steer (refused ones come back as
    /// [`Event::SteerRefused`]).
    Respond {
        /// The run.
        run_id: String,
        /// What to hand it.
        response: crate::model::RunResponse,
        /// The chat and the steered message's event id.
        steer: Option<(SessionKey, String)>,
    },
    /// Fire [`Event::ApprovalTimeout`] after this long.
    ApprovalTimer {
        /// The request.
        approval_id: String,
        /// Milliseconds.
        after_ms: u64,
    },
    /// Append a decision to the approvals audit log.
    Audit(crate::store::ApprovalRecord),
    /// Restart ductor or one service (an admin chat's `/restart`); `key`
    /// hears when it is back.
    Restart {
        /// The chat that asked.
        key: SessionKey,
        /// What to restart.
        target: crate::restart::Target,
    },
    /// Answer an agent command (`/agents`, `/agent_start|stop|restart`); the
    /// driver asks the agents' control and sends its answer as a notice.
    Agents {
        /// The chat that asked.
        key: SessionKey,
        /// The command's event.
        reply_to: String,
        /// What it asked.
        command: AgentCommand,
    },
    /// Answer a chat command from automation's data (the driver asks
    /// automation and sends the answer as a notice, in order).
    Automation {
        /// The chat.
        key: SessionKey,
        /// The command's event id.
        reply_to: String,
        /// What to answer.
        request: AutomationRequest,
        /// The chat is in `[agent].admin_chats`: it may manage every chat's
        /// jobs; otherwise only its own.
        admin: bool,
    },
}

/// A chat command whose answer needs automation's state (SQLite), which the
/// machine does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutomationRequest {
    /// `/cron ARGS`.
    Cron(String),
    /// `/status`: the machine's own text, followed by automation's failures.
    Status(String),
}

/// What a turn is fed: the prompt and one-turn overrides.
#[derive(Debug, Clone)]
struct TurnInput {
    event_id: String,
    prompt: String,
    /// A received file, prepared by the runner when its turn starts.
    media: Option<Media>,
    provider: Option<String>,
    model: Option<String>,
    origin: Origin,
}

#[derive(Debug, Clone)]
enum Origin {
    User,
    Inject { id: u64, options: InjectOptions },
}

#[derive(Debug)]
struct Queued {
    entry_id: String,
    input: TurnInput,
}

#[derive(Debug, Default)]
struct Chat {
    active: Option<turn::Turn>,
    queue: VecDeque<Queued>,
}

const MAX_ERRORS: usize = 20;

/// The orchestrator state.
pub struct Machine<E: Env> {
    cfg: MachineConfig,
    env: E,
    sessions: HashMap<SessionKey, SessionRecord>,
    chats: HashMap<SessionKey, Chat>,
    runs: HashMap<String, SessionKey>,
    caps: HashMap<String, Capabilities>,
    numbered: HashMap<SessionKey, Vec<Button>>,
    /// Live named sessions per chat (the background engine tells us).
    named: HashMap<SessionKey, Vec<String>>,
    catalog: Vec<ProviderInfo>,
    approvals: control::Approvals,
    /// When each chat last had a memory flush.
    flushed: HashMap<SessionKey, Timestamp>,
    /// What each chat's `/showfiles` shows now.
    browsing: HashMap<SessionKey, files::Browse>,
    runner_up: bool,
    errors: VecDeque<String>,
    now: Timestamp,
    out: Vec<Effect>,
}

impl<E: Env> Machine<E> {
    /// A machine over the persisted session records.
    pub fn new(cfg: MachineConfig, env: E, sessions: Vec<SessionRecord>) -> Self {
        Self {
            cfg,
            env,
            sessions: sessions.into_iter().map(|r| (r.key.clone(), r)).collect(),
            chats: HashMap::new(),
            runs: HashMap::new(),
            caps: HashMap::new(),
            numbered: HashMap::new(),
            named: HashMap::new(),
            catalog: Vec::new(),
            approvals: control::Approvals::default(),
            flushed: HashMap::new(),
            browsing: HashMap::new(),
            runner_up: false,
            errors: VecDeque::new(),
            now: Timestamp::UNIX_EPOCH,
            out: Vec::new(),
        }
    }

    /// Applies one event at time `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Timestamp) -> Vec<Effect> {
        self.now = now;
        match event {
            Event::Inbound(inbound) => self.on_inbound(inbound),
            Event::Inject { inject_id, key, prompt, options } => {
                let busy =
                    self.chats.get(&key).is_some_and(|c| c.active.is_some() || !c.queue.is_empty());
                if options.skip_if_busy && busy {
                    let outcome = TurnOutcome::failed("busy", "a turn is running in this chat");
                    self.out.push(Effect::InjectDone { inject_id, outcome });
                } else {
                    let input = TurnInput {
                        event_id: String::new(),
                        prompt,
                        media: None,
                        provider: None,
                        model: None,
                        origin: Origin::Inject { id: inject_id, options },
                    };
                    self.submit(&key, input);
                }
            }
            Event::ImportSession { import_id, import } => self.on_import(import_id, import),
            Event::Run { run_id, event } => self.on_run_event(&run_id, event),
            Event::MediaPrepared { key, turn_id, prepared } => {
                self.on_media_prepared(&key, &turn_id, &prepared)
            }
            Event::RunLost { run_id, reason } => self.on_run_lost(&run_id, &reason),
            Event::Gateway { transport, caps } => {
                self.caps.insert(transport, caps);
            }
            Event::Catalog(catalog) => self.catalog = catalog,
            Event::RunnerHealth(up) => self.runner_up = up,
            Event::Error(error) => self.record_error(error),
            Event::ApprovalTimeout { approval_id } => self.on_approval_timeout(&approval_id),
            Event::SteerRefused { key, event_id } => self.on_steer_refused(&key, &event_id),
            Event::Reconfigure(cfg) => {
                if cfg.file_access != self.cfg.file_access {
                    self.env.set_file_access(cfg.file_access);
                }
                self.cfg = *cfg;
            }
            Event::LiveNames(live) => {
                if live.names.is_empty() {
                    self.named.remove(&live.key);
                } else {
                    self.named.insert(live.key, live.names);
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Turns running now.
    pub fn active_turns(&self) -> usize {
        self.chats.values().filter(|c| c.active.is_some()).count()
    }

    /// Messages waiting in queues.
    pub fn queued(&self) -> usize {
        self.chats.values().map(|c| c.queue.len()).sum()
    }

    fn record_error(&mut self, error: String) {
        if self.errors.len() == MAX_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(format!("{} {error}", self.now.strftime("%Y-%m-%d %H:%M:%S")));
    }

    // === output helpers ===

    fn send(&mut self, key: &SessionKey, turn_id: &str, reply_to: &str, kind: OutKind) {
        let kind = self.decorate(key, kind);
        self.out.push(Effect::Send(Outbound {
            key: key.clone(),
            turn_id: turn_id.to_owned(),
            reply_to: reply_to.to_owned(),
            kind,
        }));
    }

    fn notice(&mut self, key: &SessionKey, reply_to: &str, text: impl Into<String>) {
        self.send(key, "", reply_to, OutKind::Notice { text: text.into(), notify: false });
    }

    fn journal(&mut self, key: &SessionKey, event_id: &str, state: InboundState, turn_id: &str) {
        if event_id.is_empty() {
            return;
        }
        self.out.push(Effect::Journal {
            transport: key.transport.clone(),
            event_id: event_id.to_owned(),
            state,
            turn_id: turn_id.to_owned(),
        });
    }

    /// On transports without buttons, appends numbered options to the text
    /// and remembers them so a reply of just the number presses the button.
    fn decorate(&mut self, key: &SessionKey, kind: OutKind) -> OutKind {
        let numbered =
            self.caps.get(&key.transport).is_some_and(|caps| caps.buttons == ButtonStyle::None);
        let grid: Option<&ButtonGrid> = match &kind {
            OutKind::Final(reply) => Some(&reply.buttons),
            OutKind::Selector { buttons, .. } | OutKind::Queued { buttons, .. } => Some(buttons),
            _ => None,
        };
        let Some(grid) = grid else { return kind };
        let flat: Vec<Button> = grid.iter().flatten().cloned().collect();
        if !numbered {
            return kind;
        }
        if flat.is_empty() {
            if matches!(kind, OutKind::Final(_) | OutKind::Selector { .. }) {
                self.numbered.remove(key);
            }
            return kind;
        }
        let options: String =
            flat.iter().enumerate().map(|(i, b)| format!("\n  {}. {}", i + 1, b.label)).collect();
        let suffix = format!("\n\nReply with a number:{options}");
        self.numbered.insert(key.clone(), flat);
        match kind {
            OutKind::Final(mut reply) => {
                reply.text.push_str(&suffix);
                OutKind::Final(reply)
            }
            OutKind::Selector { selector_id, text, buttons } => {
                OutKind::Selector { selector_id, text: text + &suffix, buttons }
            }
            OutKind::Queued { entry_id, text, buttons } => {
                OutKind::Queued { entry_id, text: text + &suffix, buttons }
            }
            other => other,
        }
    }

    // === inbound routing ===

    fn on_inbound(&mut self, inbound: Inbound) {
        let Inbound { event_id, key, kind, .. } = inbound;
        match kind {
            InboundKind::Button { button_id } => self.on_button(&key, &event_id, &button_id),
            InboundKind::Message { text, reply_quote } => {
                self.on_message(&key, &event_id, &text, &reply_quote)
            }
            InboundKind::Media(media) => {
                let input = TurnInput {
                    event_id,
                    prompt: media_prompt(&key.transport, &media, None),
                    media: Some(media),
                    provider: None,
                    model: None,
                    origin: Origin::User,
                };
                self.submit(&key, input);
            }
        }
    }

    fn on_message(&mut self, key: &SessionKey, event_id: &str, text: &str, quote: &str) {
        if let Some(button) = self.numbered_choice(key, text) {
            return self.on_button(key, event_id, &button.id);
        }
        if self.typed_approval(key, event_id, text) {
            return self.journal(key, event_id, InboundState::Done, "");
        }
        if let Some(command) = parse_command(text) {
            self.journal(key, event_id, InboundState::Done, "");
            return self.on_command(key, event_id, command);
        }
        let (tokens, rest) = leading_directives(text);
        if let Some(name) = tokens.first().filter(|t| self.is_named(key, t)) {
            self.journal(key, event_id, InboundState::Done, "");
            let request = BackgroundRequest::FollowUp { name: name.clone(), text: rest.to_owned() };
            return self.ask_background(key, event_id, request);
        }
        if !tokens.is_empty()
            && let Some((provider, model)) = self.resolve_directives(&tokens)
        {
            if rest.is_empty() {
                self.journal(key, event_id, InboundState::Done, "");
                return self.switch_model(key, event_id, &provider, &model);
            }
            let prompt = reply_prompt(rest, quote);
            return self.submit_user(key, event_id, prompt, Some(provider), Some(model));
        }
        let prompt = reply_prompt(text, quote);
        self.submit_user(key, event_id, prompt, None, None);
    }

    /// `name` is a live named session of `key`'s chat.
    fn is_named(&self, key: &SessionKey, name: &str) -> bool {
        self.named.get(key).is_some_and(|names| names.iter().any(|n| n == name))
    }

    fn ask_background(&mut self, key: &SessionKey, event_id: &str, request: BackgroundRequest) {
        let (key, reply_to) = (key.clone(), event_id.to_owned());
        self.out.push(Effect::Background { key, reply_to, request });
    }

    fn numbered_choice(&mut self, key: &SessionKey, text: &str) -> Option<Button> {
        let options = self.numbered.get(key)?;
        let n: usize = text.trim().parse().ok()?;
        let button = options.get(n.checked_sub(1)?)?.clone();
        self.numbered.remove(key);
        Some(button)
    }

    fn on_button(&mut self, key: &SessionKey, event_id: &str, id: &str) {
        if let Some(label) = id.strip_prefix(crate::markup::AGENT_BUTTON_PREFIX) {
            return self.submit_user(key, event_id, label.to_owned(), None, None);
        }
        self.journal(key, event_id, InboundState::Done, "");
        if let Some(rest) = id.strip_prefix("ap:") {
            self.on_approval_button(key, event_id, rest);
        } else if let Some(entry) = id.strip_prefix("mq:") {
            self.cancel_queued(key, event_id, entry);
        } else if let Some(rest) = id.strip_prefix("ms:") {
            self.on_model_button(key, event_id, rest);
        } else if let Some(what) = id.strip_prefix("sf:") {
            self.on_files_button(key, event_id, what);
        } else if let Some(level) = id.strip_prefix("ef:") {
            self.set_effort(key, event_id, level);
        } else if let Some(mode) = id.strip_prefix("pm:") {
            self.cmd_mode(key, event_id, Some(mode.to_owned()));
        } else if let Some(request) = background_button(id) {
            self.ask_background(key, event_id, request);
        } else {
            self.notice(key, event_id, "That button is no longer active.");
        }
    }

    fn submit_user(
        &mut self,
        key: &SessionKey,
        event_id: &str,
        prompt: String,
        provider: Option<String>,
        model: Option<String>,
    ) {
        let input = TurnInput {
            event_id: event_id.to_owned(),
            prompt,
            media: None,
            provider,
            model,
            origin: Origin::User,
        };
        self.submit(key, input);
    }

    /// Runs `input` now, steers it into the running turn, or queues it.
    fn submit(&mut self, key: &SessionKey, input: TurnInput) {
        self.flush_before_compact(key, &input);
        let busy = self.chats.get(key).is_some_and(|c| c.active.is_some());
        if !busy {
            return self.start_turn(key, input);
        }
        if self.try_steer(key, &input) {
            return;
        }
        self.enqueue(key, input);
    }

    /// Queues `input` behind the running turn, with a visible notice.
    fn enqueue(&mut self, key: &SessionKey, input: TurnInput) {
        let entry_id = self.env.new_id();
        let event_id = input.event_id.clone();
        let chat = self.chats.entry(key.clone()).or_default();
        chat.queue.push_back(Queued { entry_id: entry_id.clone(), input });
        let position = chat.queue.len();
        let text = format!(
            "⏳ Queued (#{position}): it runs when the current turn ends. /stop drops the queue."
        );
        let buttons = vec![vec![Button { id: format!("mq:{entry_id}"), label: "Cancel".into() }]];
        self.send(key, "", &event_id, OutKind::Queued { entry_id, text, buttons });
    }

    fn cancel_queued(&mut self, key: &SessionKey, event_id: &str, entry_id: &str) {
        let chat = self.chats.entry(key.clone()).or_default();
        let Some(index) = chat.queue.iter().position(|q| q.entry_id == entry_id) else {
            return self.notice(key, event_id, "That message is no longer queued.");
        };
        let Some(entry) = chat.queue.remove(index) else { return };
        self.drop_queued(key, entry, "cancelled");
    }

    fn drop_queued(&mut self, key: &SessionKey, entry: Queued, reason: &str) {
        self.journal(key, &entry.input.event_id, InboundState::Done, "");
        self.send(
            key,
            "",
            &entry.input.event_id,
            OutKind::QueueClear { entry_id: entry.entry_id, reason: reason.into() },
        );
        if let Origin::Inject { id, .. } = entry.input.origin {
            self.out.push(Effect::InjectDone {
                inject_id: id,
                outcome: TurnOutcome::failed(reason, "the queued prompt was dropped"),
            });
        }
    }

    /// Drops every queued message of `key`; returns how many.
    fn drain_queue(&mut self, key: &SessionKey) -> usize {
        let entries: Vec<Queued> =
            self.chats.get_mut(key).map(|c| c.queue.drain(..).collect()).unwrap_or_default();
        let count = entries.len();
        for entry in entries {
            self.drop_queued(key, entry, "dropped");
        }
        count
    }

    // === catalog ===

    fn provider_names(&self) -> Vec<String> {
        let installed: Vec<String> =
            self.catalog.iter().filter(|p| p.installed).map(|p| p.name.clone()).collect();
        if installed.is_empty() { self.cfg.providers.clone() } else { installed }
    }

    fn provider_info(&self, name: &str) -> Option<&ProviderInfo> {
        self.catalog.iter().find(|p| p.name == name)
    }

    fn default_model(&self, provider: &str) -> String {
        if provider == self.cfg.provider && !self.cfg.model.is_empty() {
            return self.cfg.model.clone();
        }
        self.provider_info(provider).map(|p| p.default_model.clone()).unwrap_or_default()
    }

    /// A provider name or a model name → `(provider, model)`.
    fn resolve_name(&self, name: &str) -> Option<(String, String)> {
        let lower = name.to_ascii_lowercase();
        let known = self.provider_names().into_iter().chain(self.cfg.providers.iter().cloned());
        for provider in known {
            if provider == lower {
                let model = self.default_model(&provider);
                return Some((provider, model));
            }
        }
        self.catalog.iter().find_map(|p| {
            p.models
                .iter()
                .find(|m| m.eq_ignore_ascii_case(name))
                .map(|m| (p.name.clone(), m.clone()))
        })
    }

    /// Leading directives → one `(provider, model)`; a later token wins, and a
    /// model token after a provider token must belong to that provider.
    fn resolve_directives(&self, tokens: &[String]) -> Option<(String, String)> {
        let mut chosen: Option<(String, String)> = None;
        for token in tokens {
            let name = token.split_once('=').map_or(token.as_str(), |(n, _)| n);
            chosen = Some(self.resolve_name(name)?);
        }
        chosen
    }

    fn record_mut(&mut self, key: &SessionKey) -> &mut SessionRecord {
        let cfg = &self.cfg;
        let now = self.now;
        self.sessions.entry(key.clone()).or_insert_with(|| match cfg.agents.get(key.agent()) {
            Some(d) => SessionRecord::new(key.clone(), &d.provider, &d.model, &d.effort, now),
            None => SessionRecord::new(key.clone(), &cfg.provider, &cfg.model, &cfg.effort, now),
        })
    }

    fn save(&mut self, key: &SessionKey) {
        if let Some(record) = self.sessions.get(key) {
            self.out.push(Effect::SaveSession(record.clone()));
        }
    }
}

/// The background request of a `/sessions` or `/tasks` button.
fn background_button(id: &str) -> Option<BackgroundRequest> {
    if let Some(name) = id.strip_prefix("ns:end:") {
        return Some(BackgroundRequest::EndSession(name.to_owned()));
    }
    if let Some(task) = id.strip_prefix("tk:cancel:") {
        return Some(BackgroundRequest::CancelTask(task.to_owned()));
    }
    if let Some(task) = id.strip_prefix("tk:del:") {
        return Some(BackgroundRequest::DeleteTask(task.to_owned()));
    }
    match id {
        "ns:endall" => Some(BackgroundRequest::EndAll),
        "tk:refresh" => Some(BackgroundRequest::ListTasks),
        _ => None,
    }
}

/// ductor's reply context: the quoted text first, then the message.
fn reply_prompt(text: &str, quote: &str) -> String {
    if quote.trim().is_empty() {
        return text.to_owned();
    }
    let quoted: String = quote.lines().map(|l| format!("> {l}\n")).collect();
    format!("The user is replying to this quoted message:\n{quoted}\nThe user's message:\n{text}")
}

/// The `[INCOMING FILE]` prompt for a received file, with what the runner
/// made of it (a transcript, a resized copy, notes) once it is prepared.
fn media_prompt(transport: &str, media: &Media, prepared: Option<&PreparedMedia>) -> String {
    let mut prompt = String::from("[INCOMING FILE]\n");
    if !media.reply_quote.trim().is_empty() {
        let quoted: String = media.reply_quote.lines().map(|l| format!("> {l}\n")).collect();
        prompt.push_str(&format!(
            "The user is replying to this quoted message:\n{quoted}Their reply is the attached file below.\n"
        ));
    }
    let (path, mime) = match prepared {
        Some(p) if !p.path.is_empty() => (p.path.as_str(), p.mime_type.as_str()),
        _ => (media.path.as_str(), media.mime_type.as_str()),
    };
    prompt.push_str(&format!("The user sent you a file via {transport}.\nPath: {path}\n"));
    if !mime.is_empty() {
        prompt.push_str(&format!("Type: {mime}\n"));
    }
    if !media.original_filename.is_empty() {
        prompt.push_str(&format!("Original filename: {}\n", media.original_filename));
    }
    let transcript = prepared.map(|p| p.transcript.trim()).filter(|t| !t.is_empty());
    if let Some(p) = prepared.filter(|p| p.original != (0, 0)) {
        prompt.push_str(&format!(
            "ductor resized it from {}x{} to {}x{}; the original is at {}\n",
            p.original.0, p.original.1, p.size.0, p.size.1, media.path
        ));
    }
    if let Some(text) = transcript {
        prompt.push_str(
            "It is a recording. ductor transcribed it (speech recognition may contain errors); \
             treat the transcript as the user's message:\n",
        );
        let quoted: String = text.lines().map(|l| format!("> {l}\n")).collect();
        prompt.push_str(&quoted);
    } else if matches!(media.media_kind.as_str(), "voice" | "audio" | "video" | "video_note") {
        prompt.push_str(
            "It is a recording: transcribe or inspect it with the tools you have before answering.\n",
        );
    }
    for note in prepared.map(|p| p.notes.as_slice()).unwrap_or_default() {
        prompt.push_str(&format!("Note: {note}\n"));
    }
    if !media.caption.trim().is_empty() {
        prompt.push_str(&format!("User message: {}\n", media.caption));
    }
    prompt
}
