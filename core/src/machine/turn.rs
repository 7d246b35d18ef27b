//! One turn's life: start (resolve the session bucket, build the run
//! request), stream runner events into outbound actions, finish (final reply
//! with buttons, files and footer, or an honest error), the one retry when a
//! resume id is unknown, and handing the chat to the next queued message.

use jiff::Timestamp;

use super::{Effect, Env, Machine, Origin, TurnInput};
use crate::markup;
use crate::model::{
    FinalReply, OutKind, RunError, RunErrorKind, RunEvent, RunOutcome, RunRequest, RunResult,
    SessionKey, SignalKind,
};
use crate::session::Stale;
use crate::store::InboundState;

/// Why the user (or core) asked a turn to end early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Stop,
    Interrupt,
}

/// How a turn ended, for automation's injected prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    /// A final reply was produced.
    pub ok: bool,
    /// The final text (markers removed) or the error message.
    pub text: String,
    /// Error kind when not ok.
    pub error_kind: String,
}

impl TurnOutcome {
    pub(super) fn failed(kind: &str, message: &str) -> Self {
        Self { ok: false, text: message.to_owned(), error_kind: kind.to_owned() }
    }
}

/// A running turn.
#[derive(Debug)]
pub(super) struct Turn {
    pub(super) turn_id: String,
    pub(super) run_id: String,
    input: TurnInput,
    pub(super) provider: String,
    pub(super) model: String,
    resumed: bool,
    retried: bool,
    context_lost: bool,
    pub(super) result: Option<RunResult>,
    error: Option<RunError>,
    started: Timestamp,
    pub(super) stop: Option<StopReason>,
    /// Set by `/new`: late session ids of this run must not land in the bucket.
    pub(super) discard: bool,
    /// Takes the agent's markup out of the streamed text.
    pub(super) stream: markup::StreamFilter,
    /// The reply went out when the result line came (the CLI may take tens
    /// of milliseconds more to exit); the exit only closes the turn.
    pub(super) answered: Option<TurnOutcome>,
    /// The CLI's input stays open: messages can be steered into it.
    pub(super) interactive: bool,
    /// Steered messages whose answers are still owed.
    pub(super) steers: u32,
    /// Steers handed to the runner, not confirmed yet.
    pub(super) steer_waiting: std::collections::VecDeque<TurnInput>,
    /// Event ids of the steered messages (journaled done with the turn).
    pub(super) steered_events: Vec<String>,
    /// Replies already given in this run (steering starts a new one).
    pub(super) segments: u32,
    /// A segment's reply went out; the next output starts the next reply.
    pub(super) awaiting_segment: bool,
    /// Waiting for the runner to prepare a received file: the effort and
    /// resume id the run will start with.
    preparing: Option<(String, String)>,
    /// The CLI compacted its context during this turn.
    compacted: bool,
}

impl Turn {
    pub(super) fn silent(&self) -> bool {
        matches!(&self.input.origin, Origin::Inject { options, .. } if options.silent)
    }
}

impl<E: Env> Machine<E> {
    pub(super) fn start_turn(&mut self, key: &SessionKey, input: TurnInput) {
        let turn_id = self.env.new_id();
        let (provider, model, effort) = self.turn_target(key, &input);
        let freshness = self.cfg.freshness.clone();
        let now = self.now;
        let stale = freshness.check(self.record_mut(key).bucket_mut(&provider), now);
        if stale.is_some() {
            self.flush_before_reset(key, &provider);
        }
        let bucket = self.record_mut(key).bucket_mut(&provider);
        if let Some(reason) = stale {
            tracing::info!(session = %key, provider, ?reason, "session is stale, starting fresh");
            bucket.reset();
        }
        bucket.last_active = Some(now);
        let resume = bucket.session_id.clone().unwrap_or_default();
        self.save(key);
        let turn = Turn {
            turn_id: turn_id.clone(),
            run_id: turn_id.clone(),
            input,
            provider,
            model,
            resumed: !resume.is_empty(),
            retried: false,
            context_lost: false,
            result: None,
            error: None,
            started: now,
            stop: None,
            discard: false,
            stream: markup::StreamFilter::default(),
            answered: None,
            interactive: false,
            steers: 0,
            steer_waiting: std::collections::VecDeque::new(),
            steered_events: Vec::new(),
            segments: 0,
            awaiting_segment: false,
            preparing: None,
            compacted: false,
        };
        let mut turn = turn;
        turn.interactive = !turn.silent() && self.wants_interactive(&turn.provider);
        self.journal(key, &turn.input.event_id, InboundState::Running, &turn_id);
        if !turn.silent() {
            let started =
                OutKind::TurnStarted { provider: turn.provider.clone(), model: turn.model.clone() };
            self.send(key, &turn_id, &turn.input.event_id, started);
        }
        if let Some(reason) = stale.filter(|_| !turn.silent()) {
            self.send(key, &turn_id, &turn.input.event_id, fresh_status(reason));
        }
        match turn.input.media.clone() {
            Some(media) => {
                turn.preparing = Some((effort, resume));
                let (key, turn_id) = (key.clone(), turn_id.clone());
                self.out.push(Effect::PrepareMedia { key, turn_id, media });
            }
            None => self.launch(key, &turn, &effort, resume),
        }
        self.chats.entry(key.clone()).or_default().active = Some(turn);
    }

    /// The runner prepared the turn's file: its prompt says what came of
    /// it, and the run starts. A turn stopped meanwhile is gone already.
    pub(super) fn on_media_prepared(
        &mut self,
        key: &SessionKey,
        turn_id: &str,
        prepared: &crate::model::PreparedMedia,
    ) {
        let Some(chat) = self.chats.get_mut(key) else { return };
        let Some(mut turn) = chat.active.take_if(|t| t.turn_id == turn_id && t.preparing.is_some())
        else {
            return;
        };
        let (effort, resume) = turn.preparing.take().unwrap_or_default();
        if let Some(media) = &turn.input.media {
            turn.input.prompt = super::media_prompt(&key.transport, media, Some(prepared));
        }
        self.launch(key, &turn, &effort, resume);
        self.chats.entry(key.clone()).or_default().active = Some(turn);
    }

    /// Ends a turn stopped or interrupted while its file was being
    /// prepared: there is no run to signal.
    fn end_preparing(&mut self, key: &SessionKey) {
        let Some(turn) = self.chats.get(key).and_then(|c| c.active.as_ref()) else { return };
        if turn.preparing.is_none() {
            return;
        }
        let verdict = match turn.stop {
            Some(StopReason::Stop) => ("stopped", "⏹ Stopped."),
            Some(StopReason::Interrupt) => {
                ("interrupted", "⏸ Interrupted before the turn started.")
            }
            None => return,
        };
        self.end_turn(key, Err((verdict.0.to_owned(), verdict.1.to_owned())));
    }

    /// Provider, model and effort of this turn: one-turn overrides first.
    fn turn_target(&mut self, key: &SessionKey, input: &TurnInput) -> (String, String, String) {
        let record = self.record_mut(key).clone();
        match (&input.provider, &input.model) {
            (Some(provider), model) if *provider != record.provider => {
                let model = model.clone().unwrap_or_else(|| self.default_model(provider));
                (provider.clone(), model, String::new())
            }
            (_, Some(model)) => (record.provider, model.clone(), record.effort),
            _ => (record.provider, record.model, record.effort),
        }
    }

    fn launch(&mut self, key: &SessionKey, turn: &Turn, effort: &str, resume: String) {
        let append_system_prompt = if resume.is_empty() {
            self.env.read_memory(key.agent()).unwrap_or_default()
        } else {
            String::new()
        };
        let kind = match &turn.input.origin {
            Origin::User => "chat".to_owned(),
            Origin::Inject { options, .. } if !options.kind.is_empty() => options.kind.clone(),
            Origin::Inject { .. } => "inject".to_owned(),
        };
        let request = RunRequest {
            run_id: turn.run_id.clone(),
            provider: turn.provider.clone(),
            model: turn.model.clone(),
            effort: effort.to_owned(),
            prompt: match turn.input.origin {
                Origin::User => self.with_memory_check(key, &turn.provider, &turn.input.prompt),
                Origin::Inject { .. } => turn.input.prompt.clone(),
            },
            resume_session_id: resume,
            append_system_prompt,
            labels: vec![
                ("transport".into(), key.transport.clone()),
                ("chat_id".into(), key.chat_id.clone()),
                ("topic_id".into(), key.topic_id.clone()),
                ("kind".into(), kind),
                ("agent".into(), key.agent().to_owned()),
                ("session_key".into(), key.storage_key()),
                // Trace ids: the gateway's event and core's turn, in runner logs too.
                ("turn_id".into(), turn.turn_id.clone()),
                ("event_id".into(), turn.input.event_id.clone()),
            ],
            extra_env: vec![
                ("DUCTOR_TRANSPORT".into(), key.transport.clone()),
                ("DUCTOR_CHAT_ID".into(), key.chat_id.clone()),
                ("DUCTOR_TOPIC_ID".into(), key.topic_id.clone()),
                ("DUCTOR_AGENT_NAME".into(), key.agent().to_owned()),
            ],
            total_timeout_ms: self.cfg.turn_timeout_ms,
            idle_timeout_ms: self.cfg.idle_timeout_ms,
            permission: self.chat_permission(key),
            interactive: turn.interactive,
            agent: key.agent().to_owned(),
        };
        self.runs.insert(turn.run_id.clone(), key.clone());
        self.out.push(Effect::StartRun(request));
    }

    pub(super) fn on_run_event(&mut self, run_id: &str, event: RunEvent) {
        let Some(key) = self.runs.get(run_id).cloned() else { return };
        let Some(turn) = self.chats.get_mut(&key).and_then(|c| c.active.as_mut()) else { return };
        if turn.run_id != run_id {
            return;
        }
        let output = matches!(
            event,
            RunEvent::Text(_)
                | RunEvent::ToolStarted { .. }
                | RunEvent::ToolFinished { .. }
                | RunEvent::ApprovalRequested(_)
                | RunEvent::Result(_)
        );
        if output && turn.awaiting_segment {
            self.next_segment(&key);
        }
        let Some(turn) = self.chats.get_mut(&key).and_then(|c| c.active.as_mut()) else { return };
        let (turn_id, reply_to, silent) =
            (turn.turn_id.clone(), turn.input.event_id.clone(), turn.silent());
        let (provider, steers) = (turn.provider.clone(), turn.steers);
        let kind = match event {
            RunEvent::ApprovalRequested(request) => {
                self.on_approval_request(&key, run_id, &provider, silent, request);
                None
            }
            RunEvent::Steered(_) => {
                self.on_steered(&key);
                None
            }
            RunEvent::Result(result) if steers > 0 && !result.is_error => {
                self.segment_result(&key, result);
                None
            }
            RunEvent::Started => None,
            RunEvent::Session(id) => {
                let (provider, discard) = (turn.provider.clone(), turn.discard);
                if !discard && !id.is_empty() {
                    self.record_mut(&key).bucket_mut(&provider).session_id = Some(id);
                    self.save(&key);
                }
                None
            }
            RunEvent::Text(text) => {
                let shown = turn.stream.push(&text);
                (!shown.is_empty()).then_some(OutKind::Delta(shown))
            }
            RunEvent::ToolStarted { name, summary } => {
                Some(OutKind::Tool { name, summary, finished: false, ok: false })
            }
            RunEvent::ToolFinished { name, ok } => {
                Some(OutKind::Tool { name, summary: String::new(), finished: true, ok })
            }
            RunEvent::Status { status, detail } => {
                turn.compacted |= status == "compacted";
                Some(OutKind::Status { status, detail })
            }
            RunEvent::Result(result) => {
                let answer_now = !result.is_error && turn.answered.is_none();
                turn.result = Some(result.clone());
                if answer_now {
                    self.answer_early(&key, result);
                }
                None
            }
            RunEvent::Error(error) => {
                if !error.recoverable && turn.error.is_none() {
                    turn.error = Some(error);
                }
                None
            }
            RunEvent::Exited(outcome) => {
                self.runs.remove(run_id);
                self.close_approvals(run_id);
                self.finish(&key, outcome);
                None
            }
        };
        if let Some(kind) = kind
            && !silent
        {
            self.send(&key, &turn_id, &reply_to, kind);
        }
    }

    pub(super) fn on_run_lost(&mut self, run_id: &str, reason: &str) {
        let Some(key) = self.runs.remove(run_id) else { return };
        self.close_approvals(run_id);
        let Some(turn) = self.chats.get_mut(&key).and_then(|c| c.active.as_mut()) else { return };
        if turn.run_id != run_id {
            return;
        }
        self.runner_up = false;
        self.out.push(Effect::Probe);
        let message = format!(
            "⚠️ The connection to the runner was lost mid-turn ({reason}), so this turn was \
             interrupted. It was not re-run; send your message again to retry. The session is kept."
        );
        self.end_turn(&key, Err(("interrupted".to_owned(), message)));
    }

    /// A successful result line is the answer: it goes out at once, before
    /// the CLI has exited (completion is the result line, never the exit).
    fn answer_early(&mut self, key: &SessionKey, result: RunResult) {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.take()) else { return };
        self.context_lost_notice(key, &turn);
        let outcome = self.deliver_result(key, &turn, result);
        if let Some(turn) = self.chats.get_mut(key).map(|c| c.active.insert(turn)) {
            turn.answered = Some(outcome);
        }
    }

    /// Says, before the reply, that an unknown resume id made this a fresh session.
    fn context_lost_notice(&mut self, key: &SessionKey, turn: &Turn) {
        if turn.context_lost {
            let text = format!(
                "⚠️ Your previous {} session could not be resumed, so its context is lost. \
                 This turn ran in a fresh session.",
                turn.provider
            );
            let (turn_id, reply_to) = (&turn.turn_id, &turn.input.event_id);
            self.send(key, turn_id, reply_to, OutKind::Notice { text, notify: false });
        }
    }

    /// The run exited: decide the reply, or retry once on an unknown session.
    fn finish(&mut self, key: &SessionKey, outcome: RunOutcome) {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) else { return };
        let unknown_session =
            turn.error.as_ref().is_some_and(|e| e.kind == RunErrorKind::SessionNotFound);
        if unknown_session && turn.resumed && !turn.retried && turn.stop.is_none() {
            return self.retry_fresh(key);
        }
        let verdict = verdict(turn, outcome, self.cfg.turn_timeout_ms);
        self.end_turn(key, verdict);
    }

    /// Drops the unknown resume id and runs the same prompt once, fresh.
    fn retry_fresh(&mut self, key: &SessionKey) {
        let Some(mut turn) = self.chats.get_mut(key).and_then(|c| c.active.take()) else { return };
        tracing::warn!(session = %key, provider = turn.provider, "resume id unknown, retrying fresh");
        self.record_mut(key).bucket_mut(&turn.provider).reset();
        self.record_mut(key).bucket_mut(&turn.provider).last_active = Some(self.now);
        self.save(key);
        turn.run_id = format!("{}-fresh", turn.turn_id);
        turn.retried = true;
        turn.resumed = false;
        turn.context_lost = true;
        turn.error = None;
        turn.result = None;
        turn.stream = markup::StreamFilter::default();
        let effort = self.sessions.get(key).map(|r| r.effort.clone()).unwrap_or_default();
        self.launch(key, &turn, &effort, String::new());
        self.chats.entry(key.clone()).or_default().active = Some(turn);
    }

    /// Sends the reply or error, updates the bucket, and starts the next turn.
    fn end_turn(&mut self, key: &SessionKey, verdict: Result<RunResult, (String, String)>) {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.take()) else { return };
        let (turn_id, reply_to) = (turn.turn_id.clone(), turn.input.event_id.clone());
        if turn.answered.is_none() {
            self.context_lost_notice(key, &turn);
        }
        let outcome = match (verdict, turn.answered.clone()) {
            (_, Some(answered)) => answered,
            (Ok(result), None) => self.deliver_result(key, &turn, result),
            (Err((kind, message)), None) => {
                self.record_error(format!("{key}: {kind}: {message}"));
                let error = OutKind::Error { message: message.clone(), kind: kind.clone() };
                self.send(key, &turn_id, &reply_to, error);
                TurnOutcome::failed(&kind, &message)
            }
        };
        self.journal(key, &reply_to, InboundState::Done, &turn_id);
        for event_id in &turn.steered_events {
            self.journal(key, event_id, InboundState::Done, &turn_id);
        }
        // Steers the runner never confirmed run next, in order.
        if let Some(chat) = self.chats.get_mut(key) {
            for input in turn.steer_waiting.iter().rev() {
                let entry_id = format!("steer-{}", input.event_id);
                chat.queue.push_front(super::Queued { entry_id, input: input.clone() });
            }
        }
        if turn.compacted && outcome.ok {
            self.flush_after_compaction(key);
        }
        if let Origin::Inject { id, .. } = turn.input.origin {
            self.out.push(Effect::InjectDone { inject_id: id, outcome });
        }
        self.advance(key);
    }

    pub(super) fn deliver_result(
        &mut self,
        key: &SessionKey,
        turn: &Turn,
        result: RunResult,
    ) -> TurnOutcome {
        let now = self.now;
        if !turn.discard {
            let bucket = self.record_mut(key).bucket_mut(&turn.provider);
            if !result.session_id.is_empty() {
                bucket.session_id = Some(result.session_id.clone());
            }
            bucket.message_count += 1;
            // The CLI's running totals, when reported, are the session's; else add this run.
            match result.session_tokens {
                Some((input, output)) => {
                    bucket.input_tokens = input;
                    bucket.output_tokens = output;
                }
                None => {
                    bucket.input_tokens += result.input_tokens;
                    bucket.output_tokens += result.output_tokens;
                }
            }
            match result.session_cost_usd {
                Some(total) => bucket.cost_usd = total,
                None => bucket.cost_usd += result.cost_usd.unwrap_or(0.0),
            }
            bucket.last_active = Some(now);
            self.save(key);
        }
        let extracted = markup::extract(&result.text);
        let mut files = Vec::new();
        let mut refused = Vec::new();
        for path in &extracted.files {
            match self.env.resolve_file(key.agent(), path) {
                Ok(file) => files.push(file),
                Err(reason) => refused.push(format!("{path}: {reason}")),
            }
        }
        let mut text = extracted.text;
        if text.is_empty() && files.is_empty() {
            text = "✅ Done (the agent finished without a text reply).".to_owned();
        }
        let quiet = matches!(&turn.input.origin,
            Origin::Inject { options, .. } if options.hidden || options.quiet_token.as_deref().is_some_and(|t| t == text.trim()));
        let outcome = TurnOutcome { ok: true, text: text.clone(), error_kind: String::new() };
        if quiet {
            return outcome;
        }
        let footer = footer(turn, &result, now);
        let reply = FinalReply { text, buttons: extracted.buttons, files, footer, notify: true };
        self.send(key, &turn.turn_id, &turn.input.event_id, OutKind::Final(reply));
        if !refused.is_empty() {
            let text = format!(
                "Some files were not sent because they are outside the allowed folders \
                 ([agent].file_access):\n{}",
                refused.join("\n")
            );
            self.send(
                key,
                &turn.turn_id,
                &turn.input.event_id,
                OutKind::Notice { text, notify: false },
            );
        }
        outcome
    }

    /// Starts the next queued message, if any.
    fn advance(&mut self, key: &SessionKey) {
        let Some(next) = self.chats.get_mut(key).and_then(|c| c.queue.pop_front()) else {
            return;
        };
        let clear = OutKind::QueueClear { entry_id: next.entry_id, reason: "started".into() };
        self.send(key, "", &next.input.event_id, clear);
        self.start_turn(key, next.input);
    }

    /// Signals the active turn of `key`; `false` when nothing runs.
    pub(super) fn signal_active(&mut self, key: &SessionKey, reason: StopReason) -> bool {
        let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) else {
            return false;
        };
        let kind = match reason {
            StopReason::Stop => SignalKind::Stop,
            StopReason::Interrupt => SignalKind::Interrupt,
        };
        if turn.stop != Some(StopReason::Stop) {
            turn.stop = Some(reason);
        }
        if turn.preparing.is_some() {
            // No run yet: a stop ends it once the queue is dropped (`stop_chat`).
            if reason == StopReason::Interrupt {
                self.end_preparing(key);
            }
            return true;
        }
        let run_id = turn.run_id.clone();
        self.out.push(Effect::Signal { run_id, kind });
        true
    }
}

/// Tells the user why this turn starts a new session.
fn fresh_status(reason: Stale) -> OutKind {
    let detail = match reason {
        Stale::Idle => "the last session was idle too long",
        Stale::DailyReset => "the daily reset hour passed",
        Stale::MessageCap => "the last session reached the message cap",
    };
    OutKind::Status { status: "fresh_session".into(), detail: detail.into() }
}

/// Decides a finished run's reply: the result, or `(kind, message)`.
fn verdict(
    turn: &Turn,
    outcome: RunOutcome,
    timeout_ms: u64,
) -> Result<RunResult, (String, String)> {
    if let Some(result) = &turn.result
        && !result.is_error
    {
        return Ok(result.clone());
    }
    let error_kind = turn.error.as_ref().map(|e| e.kind);
    if turn.stop == Some(StopReason::Stop) || outcome == RunOutcome::Stopped {
        return Err(("stopped".into(), "⏹ Stopped.".into()));
    }
    if turn.stop == Some(StopReason::Interrupt) || outcome == RunOutcome::Interrupted {
        return Err((
            "interrupted".into(),
            "⏸ Interrupted. The session is kept; send a message to continue.".into(),
        ));
    }
    if let Some(result) = &turn.result {
        let kind = turn.error.as_ref().map_or("model_api", |e| e.kind.as_str());
        let text =
            if result.text.is_empty() { "the model returned an error" } else { &result.text };
        return Err((kind.to_owned(), format!("⚠️ {text}")));
    }
    if outcome == RunOutcome::TimedOut
        || matches!(error_kind, Some(RunErrorKind::Timeout | RunErrorKind::IdleTimeout))
    {
        let idle = error_kind == Some(RunErrorKind::IdleTimeout);
        let what = if idle {
            "produced no output for too long".to_owned()
        } else {
            format!("ran longer than {}s", timeout_ms / 1000)
        };
        return Err((
            "timeout".into(),
            format!(
                "⏱ The turn {what} and was stopped. The session is kept; send a message to continue."
            ),
        ));
    }
    let (kind, message, tail) = match &turn.error {
        Some(e) => (e.kind.as_str(), e.message.clone(), e.stderr_tail.clone()),
        None => ("crashed", "the agent CLI exited without an answer".to_owned(), String::new()),
    };
    let mut text = format!("⚠️ The turn failed: {message}");
    let tail = tail.trim();
    if !tail.is_empty() {
        let start = tail.len().saturating_sub(400);
        let start = (start..tail.len()).find(|&i| tail.is_char_boundary(i)).unwrap_or(0);
        text.push_str(&format!("\n\n{}", &tail[start..]));
    }
    Err((kind.to_owned(), text))
}

fn footer(turn: &Turn, result: &RunResult, now: Timestamp) -> String {
    let mut parts = vec![if turn.model.is_empty() {
        turn.provider.clone()
    } else {
        format!("{} {}", turn.provider, turn.model)
    }];
    let tokens = result.input_tokens + result.output_tokens;
    if tokens > 0 {
        parts.push(format!("{} tok", compact(tokens)));
    }
    if let Some(cost) = result.cost_usd {
        parts.push(format!("${cost:.4}"));
    }
    let millis = (now.as_millisecond() - turn.started.as_millisecond()).max(0);
    parts.push(format!("{:.1}s", millis as f64 / 1000.0));
    parts.join(" · ")
}

/// 1234 → "1.2k".
pub(super) fn compact(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1_000.0),
        _ => format!("{:.1}M", n as f64 / 1_000_000.0),
    }
}

impl<E: Env> Machine<E> {
    /// Stops the active turn (if any) for `/stop` and `/new`; returns
    /// `(was_running, dropped_queue)`.
    pub(super) fn stop_chat(&mut self, key: &SessionKey) -> (bool, usize) {
        let running = self.signal_active(key, StopReason::Stop);
        let dropped = self.drain_queue(key);
        self.end_preparing(key);
        (running, dropped)
    }

    /// Marks the active turn so its session id is not saved (`/new`).
    pub(super) fn discard_active(&mut self, key: &SessionKey) {
        if let Some(turn) = self.chats.get_mut(key).and_then(|c| c.active.as_mut()) {
            turn.discard = true;
        }
    }

    /// `(provider, seconds running)` of the active turn.
    pub(super) fn active_summary(&self, key: &SessionKey) -> Option<(String, i64)> {
        let turn = self.chats.get(key)?.active.as_ref()?;
        Some((turn.provider.clone(), (self.now.as_second() - turn.started.as_second()).max(0)))
    }

    /// Keys with a running turn or a queue.
    pub(super) fn busy_keys(&self) -> Vec<SessionKey> {
        self.chats
            .iter()
            .filter(|(_, c)| c.active.is_some() || !c.queue.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }
}
