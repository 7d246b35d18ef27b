//! Unit tests of the orchestrator state machine, without sockets: events in,
//! effects out, with a fake [`Env`].

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::*;
use crate::model::{FinalReply, RunError, RunErrorKind, RunOutcome, RunResult, SignalKind};

struct FakeEnv {
    next: u32,
    memory: Option<String>,
    access: ductor_daemon::config::FileAccess,
}

impl Env for FakeEnv {
    fn set_file_access(&mut self, access: ductor_daemon::config::FileAccess) {
        self.access = access;
    }

    fn list_dir(&self, _agent: &str, relative: &str) -> Result<DirListing, String> {
        let path = format!("/ws/{relative}");
        match relative {
            "" => Ok(DirListing {
                path,
                dirs: vec!["output_to_user".into(), "telegram_files".into()],
                files: vec![("notes.md".into(), 2048)],
            }),
            "output_to_user" => {
                Ok(DirListing { path, dirs: Vec::new(), files: vec![("report.png".into(), 10)] })
            }
            "telegram_files" => Ok(DirListing { path, ..DirListing::default() }),
            _ => Err("no such folder".into()),
        }
    }

    fn upgrade_report(&self) -> String {
        "ductor 0.0.0-test is running.".into()
    }

    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("id{}", self.next)
    }

    fn read_memory(&self, _agent: &str) -> Option<String> {
        self.memory.clone()
    }

    fn resolve_file(&self, _agent: &str, path: &str) -> Result<Attachment, String> {
        let all = self.access == ductor_daemon::config::FileAccess::All;
        if path.starts_with("/ws/") || (all && path.starts_with('/')) {
            Ok(Attachment {
                path: path.into(),
                mime_type: "image/png".into(),
                is_image: true,
                file_name: "a.png".into(),
                identity: None,
                size: 1,
            })
        } else {
            Err("outside the allowed folders".into())
        }
    }
}

fn config() -> MachineConfig {
    MachineConfig {
        agents: Default::default(),
        provider: "claude".into(),
        model: String::new(),
        effort: String::new(),
        freshness: Freshness {
            idle_timeout_minutes: 0,
            daily_reset_hour: None,
            timezone: TimeZone::UTC,
            max_session_messages: 0,
        },
        turn_timeout_ms: 600_000,
        idle_timeout_ms: 300_000,
        version: "0.0.0-test".into(),
        summary: vec!["agent: test".into()],
        providers: vec!["claude".into(), "codex".into(), "gemini".into()],
        permission: ductor_daemon::config::PermissionModeSetting::Bypass,
        approval_timeout_ms: 300_000,
        while_busy: ductor_daemon::config::WhileBusy::Queue,
        admin_chats: vec!["testgw:boss".into()],
        file_access: Default::default(),
        // Upkeep is off here; `tests/upkeep.rs` turns it on.
        memory: ductor_daemon::config::MemoryConfig {
            flush: false,
            check_every_messages: 0,
            ..Default::default()
        },
    }
}

struct Harness {
    machine: Machine<FakeEnv>,
    clock: i64,
    events: u32,
}

fn harness() -> Harness {
    harness_with(config())
}

fn harness_with(config: MachineConfig) -> Harness {
    let env = FakeEnv { next: 0, memory: Some("MEMORY".into()), access: Default::default() };
    let mut h =
        Harness { machine: Machine::new(config, env, Vec::new()), clock: 1_700_000_000, events: 0 };
    h.handle(Event::Catalog(vec![
        ProviderInfo {
            name: "claude".into(),
            installed: true,
            models: vec!["sonnet".into(), "opus".into()],
            default_model: "sonnet".into(),
            efforts: vec!["low".into(), "high".into()],
            ..Default::default()
        },
        ProviderInfo {
            name: "codex".into(),
            installed: true,
            models: vec!["gpt-5".into()],
            default_model: "gpt-5".into(),
            ..Default::default()
        },
    ]));
    h.handle(Event::RunnerHealth(true));
    h
}

fn key() -> SessionKey {
    SessionKey::new("tg", "100", "")
}

impl Harness {
    fn handle(&mut self, event: Event) -> Vec<Effect> {
        self.clock += 1;
        let now = Timestamp::from_second(self.clock).expect("test clock is in range");
        self.machine.handle(event, now)
    }

    fn say(&mut self, text: &str) -> Vec<Effect> {
        self.events += 1;
        self.handle(Event::Inbound(Inbound {
            event_id: format!("e{}", self.events),
            key: key(),
            sender_id: "u".into(),
            kind: InboundKind::Message { text: text.into(), reply_quote: String::new() },
        }))
    }

    fn press(&mut self, id: &str) -> Vec<Effect> {
        self.events += 1;
        self.handle(Event::Inbound(Inbound {
            event_id: format!("e{}", self.events),
            key: key(),
            sender_id: "u".into(),
            kind: InboundKind::Button { button_id: id.into() },
        }))
    }

    fn run(&mut self, run_id: &str, event: RunEvent) -> Vec<Effect> {
        self.handle(Event::Run { run_id: run_id.into(), event })
    }

    /// Completes a run with a result.
    fn complete(&mut self, run_id: &str, session: &str, text: &str) -> Vec<Effect> {
        let mut effects = self.run(run_id, RunEvent::Session(session.into()));
        effects.extend(self.run(run_id, RunEvent::Text(text.into())));
        effects.extend(self.run(
            run_id,
            RunEvent::Result(RunResult {
                text: text.into(),
                session_id: session.into(),
                input_tokens: 100,
                output_tokens: 20,
                cost_usd: Some(0.01),
                ..Default::default()
            }),
        ));
        effects.extend(self.run(run_id, RunEvent::Exited(RunOutcome::Completed)));
        effects
    }
}

fn starts(effects: &[Effect]) -> Vec<&RunRequest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartRun(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn sent(effects: &[Effect]) -> Vec<&OutKind> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(o) => Some(&o.kind),
            _ => None,
        })
        .collect()
}

fn finals(effects: &[Effect]) -> Vec<&FinalReply> {
    sent(effects)
        .into_iter()
        .filter_map(|k| match k {
            OutKind::Final(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn errors(effects: &[Effect]) -> Vec<(&str, &str)> {
    sent(effects)
        .into_iter()
        .filter_map(|k| match k {
            OutKind::Error { kind, message } => Some((kind.as_str(), message.as_str())),
            _ => None,
        })
        .collect()
}

fn notices(effects: &[Effect]) -> Vec<&str> {
    sent(effects)
        .into_iter()
        .filter_map(|k| match k {
            OutKind::Notice { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn automation_requests(effects: &[Effect]) -> Vec<&AutomationRequest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Automation { request, .. } => Some(request),
            _ => None,
        })
        .collect()
}

fn signals(effects: &[Effect]) -> Vec<(&str, SignalKind)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Signal { run_id, kind } => Some((run_id.as_str(), *kind)),
            _ => None,
        })
        .collect()
}

fn saved_bucket(effects: &[Effect], provider: &str) -> Option<crate::session::Bucket> {
    effects.iter().rev().find_map(|e| match e {
        Effect::SaveSession(r) => r.bucket(provider).cloned(),
        _ => None,
    })
}

#[test]
fn a_message_runs_a_turn_and_its_result_becomes_a_final_reply() {
    let mut h = harness();
    let effects = h.say("hello");
    let [run] = starts(&effects)[..] else { panic!("one run expected: {effects:?}") };
    assert_eq!(run.provider, "claude");
    assert_eq!(run.prompt, "hello");
    assert_eq!(run.resume_session_id, "");
    assert_eq!(run.append_system_prompt, "MEMORY", "a new session gets MAINMEMORY");
    assert!(run.labels.contains(&("kind".into(), "chat".into())));
    assert!(run.extra_env.contains(&("DUCTOR_CHAT_ID".into(), "100".into())));
    assert!(matches!(sent(&effects)[0], OutKind::TurnStarted { .. }));
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Journal { state: InboundState::Running, .. }))
    );

    let run_id = run.run_id.clone();
    let effects = h.complete(&run_id, "sess-1", "Hi there");
    assert!(sent(&effects).contains(&&OutKind::Delta("Hi there".into())));
    let [reply] = finals(&effects)[..] else { panic!("one final reply: {effects:?}") };
    assert_eq!(reply.text, "Hi there");
    assert!(
        reply.footer.contains("claude") && reply.footer.contains("120 tok"),
        "{}",
        reply.footer
    );
    let bucket = saved_bucket(&effects, "claude").expect("bucket saved");
    assert_eq!(bucket.session_id.as_deref(), Some("sess-1"));
    assert_eq!(bucket.message_count, 1);
    assert!(effects.iter().any(|e| matches!(e, Effect::Journal { state: InboundState::Done, .. })));
    assert_eq!(h.machine.active_turns(), 0);
}

#[test]
fn the_result_line_answers_at_once_and_the_exit_closes_the_turn() {
    let mut h = harness();
    let run = starts(&h.say("first"))[0].run_id.clone();
    h.say("second");
    let result = RunResult { text: "done".into(), session_id: "s1".into(), ..Default::default() };
    let effects = h.run(&run, RunEvent::Result(result));
    assert_eq!(finals(&effects).len(), 1, "the reply goes out with the result line");
    assert!(starts(&effects).is_empty(), "the queued message waits for the CLI to exit");
    assert_eq!(h.machine.active_turns(), 1);
    let effects = h.run(&run, RunEvent::Exited(RunOutcome::Completed));
    assert!(finals(&effects).is_empty(), "no second reply at the exit");
    assert!(errors(&effects).is_empty());
    assert_eq!(starts(&effects)[0].prompt, "second");
    assert!(effects.iter().any(|e| matches!(e, Effect::Journal { state: InboundState::Done, .. })));
}

#[test]
fn streamed_text_reaches_gateways_without_the_agents_markup() {
    let mut h = harness();
    let run = starts(&h.say("ask me"))[0].run_id.clone();
    let mut shown = String::new();
    for piece in ["Continue?\n[but", "ton:Yes] [button:N", "o]\nSee <file:/w/a.p", "ng> ok"] {
        for kind in sent(&h.run(&run, RunEvent::Text(piece.into()))) {
            if let OutKind::Delta(text) = kind {
                assert!(!text.contains('[') && !text.contains('<'), "{text:?}");
                shown.push_str(text);
            }
        }
    }
    assert_eq!(shown, "Continue?\nSee  ok");
}

#[test]
fn the_second_message_resumes_the_session_without_memory() {
    let mut h = harness();
    let first = starts(&h.say("one"))[0].run_id.clone();
    h.complete(&first, "sess-1", "ok");
    let effects = h.say("two");
    let run = starts(&effects)[0];
    assert_eq!(run.resume_session_id, "sess-1");
    assert_eq!(run.append_system_prompt, "");
}

#[test]
fn messages_queue_behind_a_running_turn_and_can_be_cancelled() {
    let mut h = harness();
    let first = starts(&h.say("one"))[0].run_id.clone();
    let queued = h.say("two");
    assert!(starts(&queued).is_empty());
    let Some(OutKind::Queued { entry_id, buttons, .. }) = sent(&queued).first().copied() else {
        panic!("queue notice expected: {queued:?}")
    };
    assert_eq!(buttons[0][0].id, format!("mq:{entry_id}"));
    let cancel_id = buttons[0][0].id.clone();
    let _third = h.say("three");
    assert_eq!(h.machine.queued(), 2);

    let cancelled = h.press(&cancel_id);
    assert!(
        sent(&cancelled)
            .iter()
            .any(|k| matches!(k, OutKind::QueueClear { reason, .. } if reason == "cancelled"))
    );
    assert_eq!(h.machine.queued(), 1);

    let effects = h.complete(&first, "s", "done");
    assert!(
        sent(&effects)
            .iter()
            .any(|k| matches!(k, OutKind::QueueClear { reason, .. } if reason == "started"))
    );
    let [next] = starts(&effects)[..] else { panic!("the next queued message runs") };
    assert_eq!(next.prompt, "three");
}

#[test]
fn stop_signals_the_run_and_drains_the_queue() {
    let mut h = harness();
    let run = starts(&h.say("long task"))[0].run_id.clone();
    h.say("queued");
    let effects = h.say("/stop");
    assert_eq!(signals(&effects), [(run.as_str(), SignalKind::Stop)]);
    assert!(
        sent(&effects)
            .iter()
            .any(|k| matches!(k, OutKind::QueueClear { reason, .. } if reason == "dropped"))
    );
    assert_eq!(h.machine.queued(), 0);
    let effects = h.run(&run, RunEvent::Exited(RunOutcome::Stopped));
    assert_eq!(errors(&effects)[0].0, "stopped");
    assert!(starts(&effects).is_empty(), "nothing runs after a stop");
}

#[test]
fn interrupt_keeps_the_queue() {
    let mut h = harness();
    let run = starts(&h.say("long task"))[0].run_id.clone();
    h.say("queued");
    let effects = h.say("/interrupt");
    assert_eq!(signals(&effects), [(run.as_str(), SignalKind::Interrupt)]);
    assert_eq!(h.machine.queued(), 1);
    // claude answers SIGINT with an error result; it is still "interrupted".
    let aborted =
        RunResult { is_error: true, text: "error_during_execution".into(), ..Default::default() };
    h.run(&run, RunEvent::Result(aborted));
    let effects = h.run(&run, RunEvent::Exited(RunOutcome::Interrupted));
    assert_eq!(errors(&effects)[0].0, "interrupted");
    assert_eq!(starts(&effects)[0].prompt, "queued");
}

#[test]
fn quick_commands_answer_mid_turn() {
    let mut h = harness();
    let run = starts(&h.say("long task"))[0].run_id.clone();
    h.run(&run, RunEvent::Session("abcdef123456".into()));
    let effects = h.say("/status");
    // The machine's part of /status is ready at once; the driver appends
    // automation's failures before sending it.
    let [AutomationRequest::Status(status)] = automation_requests(&effects)[..] else {
        panic!("status answers at once: {effects:?}")
    };
    assert!(notices(&effects).is_empty(), "one answer, sent by the driver");
    assert!(status.contains("abcdef12…"), "{status}");
    assert!(status.contains("Running"), "{status}");
    assert!(status.contains("Runner: reachable"), "{status}");
    assert!(signals(&effects).is_empty());
    assert_eq!(h.machine.active_turns(), 1);
}

#[test]
fn cron_goes_to_automation_with_its_arguments_and_closes_the_event() {
    let mut h = harness();
    let effects = h.say("/cron history daily");
    assert_eq!(automation_requests(&effects), [&AutomationRequest::Cron("history daily".into())]);
    assert!(effects.iter().any(|e| matches!(e, Effect::Journal { state: InboundState::Done, .. })));
    assert!(starts(&effects).is_empty(), "/cron is not a prompt");
}

#[test]
fn switching_provider_keeps_the_other_bucket() {
    let mut h = harness();
    let run = starts(&h.say("hi"))[0].run_id.clone();
    h.complete(&run, "claude-sess", "ok");
    let effects = h.say("/model codex");
    assert!(notices(&effects)[0].contains("codex / gpt-5"), "{effects:?}");
    let run = starts(&h.say("hi codex"))[0].clone();
    assert_eq!((run.provider.as_str(), run.model.as_str()), ("codex", "gpt-5"));
    assert_eq!(run.resume_session_id, "");
    h.complete(&run.run_id, "codex-sess", "ok");
    h.say("/model claude");
    let back = starts(&h.say("back"))[0].clone();
    assert_eq!(back.provider, "claude");
    assert_eq!(back.resume_session_id, "claude-sess");
}

#[test]
fn model_names_resolve_to_their_provider_and_the_selector_walks_provider_then_model() {
    let mut h = harness();
    let effects = h.say("/model");
    let Some(OutKind::Selector { buttons, .. }) = sent(&effects).first().copied() else {
        panic!("selector expected")
    };
    assert_eq!(
        buttons[0].iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["ms:p:claude", "ms:p:codex"]
    );
    let effects = h.press("ms:p:claude");
    let Some(OutKind::Selector { buttons, .. }) = sent(&effects).first().copied() else {
        panic!("model list expected")
    };
    assert_eq!(buttons[0][1].label, "opus");
    let effects = h.press(&buttons[0][1].id.clone());
    assert!(
        matches!(sent(&effects)[0], OutKind::Selector { text, buttons, .. } if text.contains("claude / opus") && buttons.is_empty())
    );
    assert_eq!(starts(&h.say("x"))[0].model, "opus");
    h.say("/model gpt-5");
    assert_eq!(starts(&h.say("/model nonsense"))[..], [] as [&RunRequest; 0]);
}

#[test]
fn leading_directives_override_one_turn_only() {
    let mut h = harness();
    let run = starts(&h.say("@codex fix the bug"))[0].clone();
    assert_eq!((run.provider.as_str(), run.prompt.as_str()), ("codex", "fix the bug"));
    h.complete(&run.run_id, "x", "ok");
    let run = starts(&h.say("email @opus about it"))[0].clone();
    assert_eq!(run.provider, "claude");
    assert_eq!(run.prompt, "email @opus about it");
    h.complete(&run.run_id, "y", "ok");
    let run = starts(&h.say("@opus think"))[0].clone();
    assert_eq!((run.provider.as_str(), run.model.as_str()), ("claude", "opus"));
}

#[test]
fn an_unknown_session_is_retried_once_fresh_and_the_user_is_told() {
    let mut h = harness();
    let run = starts(&h.say("one"))[0].run_id.clone();
    h.complete(&run, "old", "ok");
    let run = starts(&h.say("two"))[0].clone();
    assert_eq!(run.resume_session_id, "old");
    h.run(
        &run.run_id,
        RunEvent::Error(RunError {
            kind: RunErrorKind::SessionNotFound,
            message: "no conversation found".into(),
            stderr_tail: String::new(),
            recoverable: false,
        }),
    );
    let effects = h.run(&run.run_id, RunEvent::Exited(RunOutcome::Failed));
    let [retry] = starts(&effects)[..] else { panic!("one retry: {effects:?}") };
    assert_eq!(retry.resume_session_id, "");
    assert_eq!(retry.append_system_prompt, "MEMORY");
    assert_eq!(retry.prompt, "two");
    assert_ne!(retry.run_id, run.run_id);
    assert!(errors(&effects).is_empty());
    let retry_id = retry.run_id.clone();
    let effects = h.complete(&retry_id, "new", "answer");
    assert!(notices(&effects)[0].contains("context is lost"));
    assert_eq!(finals(&effects)[0].text, "answer");
    assert_eq!(saved_bucket(&effects, "claude").unwrap().session_id.as_deref(), Some("new"));
}

#[test]
fn a_timeout_keeps_the_session() {
    let mut h = harness();
    let run = starts(&h.say("one"))[0].run_id.clone();
    h.complete(&run, "keep-me", "ok");
    let run = starts(&h.say("slow"))[0].run_id.clone();
    h.run(
        &run,
        RunEvent::Error(RunError {
            kind: RunErrorKind::Timeout,
            message: "timed out".into(),
            stderr_tail: String::new(),
            recoverable: false,
        }),
    );
    let effects = h.run(&run, RunEvent::Exited(RunOutcome::TimedOut));
    assert_eq!(errors(&effects)[0].0, "timeout");
    assert_eq!(starts(&h.say("again"))[0].resume_session_id, "keep-me");
}

#[test]
fn a_lost_runner_stream_reports_interrupted_and_moves_on() {
    let mut h = harness();
    let run = starts(&h.say("one"))[0].run_id.clone();
    h.say("two");
    let effects = h.handle(Event::RunLost { run_id: run, reason: "runner restarted".into() });
    assert_eq!(errors(&effects)[0].0, "interrupted");
    assert!(effects.contains(&Effect::Probe));
    assert_eq!(starts(&effects)[0].prompt, "two");
}

#[test]
fn buttons_and_files_in_the_final_text() {
    let mut h = harness();
    let run = starts(&h.say("make a chart"))[0].run_id.clone();
    let text = "Here <file:/ws/out/a.png> <file:/etc/shadow>\n[button:More] [button:Done]";
    let effects = h.complete(&run, "s", text);
    let reply = finals(&effects)[0];
    assert_eq!(reply.text, "Here");
    assert_eq!(reply.files.len(), 1);
    assert_eq!(reply.buttons[0].len(), 2);
    assert!(notices(&effects)[0].contains("/etc/shadow"));
    let effects = h.press("b:More");
    assert_eq!(starts(&effects)[0].prompt, "More");
}

#[test]
fn a_reloaded_file_access_reaches_the_file_check() {
    let mut h = harness();
    let run = starts(&h.say("one"))[0].run_id.clone();
    let effects = h.complete(&run, "s", "See <file:/etc/motd>");
    assert!(finals(&effects)[0].files.is_empty(), "outside the workspace by default");
    let mut cfg = config();
    cfg.file_access = ductor_daemon::config::FileAccess::All;
    h.handle(Event::Reconfigure(Box::new(cfg)));
    let run = starts(&h.say("two"))[0].run_id.clone();
    let effects = h.complete(&run, "s", "See <file:/etc/motd>");
    assert_eq!(finals(&effects)[0].files.len(), 1, "the reloaded access lets it through");
}

#[test]
fn transports_without_buttons_get_numbered_options() {
    let mut h = harness();
    let caps = Capabilities { buttons: ButtonStyle::None, ..Capabilities::default() };
    h.handle(Event::Gateway { transport: "tg".into(), caps });
    let effects = h.say("/model");
    let Some(OutKind::Selector { text, .. }) = sent(&effects).first().copied() else {
        panic!("selector expected")
    };
    assert!(text.contains("1. claude") && text.contains("2. codex"), "{text}");
    let effects = h.say("2");
    assert!(
        matches!(sent(&effects)[0], OutKind::Selector { text, .. } if text.starts_with("codex"))
    );
}

#[test]
fn new_resets_only_the_current_provider_and_stops_work() {
    let mut h = harness();
    let run = starts(&h.say("one"))[0].run_id.clone();
    h.complete(&run, "claude-1", "ok");
    h.say("/model codex");
    let run = starts(&h.say("two"))[0].run_id.clone();
    h.run(&run, RunEvent::Session("codex-1".into()));
    let effects = h.say("/new");
    assert_eq!(signals(&effects).len(), 1);
    assert_eq!(saved_bucket(&effects, "codex").unwrap().session_id, None);
    assert_eq!(saved_bucket(&effects, "claude").unwrap().session_id.as_deref(), Some("claude-1"));
    // A late session id of the stopped run must not come back.
    let late = h.run(&run, RunEvent::Session("codex-1".into()));
    assert!(saved_bucket(&late, "codex").is_none());
    h.run(&run, RunEvent::Exited(RunOutcome::Stopped));
    assert_eq!(starts(&h.say("three"))[0].resume_session_id, "");
}

#[test]
fn injected_prompts_queue_behind_users_and_report_their_outcome() {
    let mut h = harness();
    let run = starts(&h.say("user turn"))[0].run_id.clone();
    let options = InjectOptions {
        kind: "heartbeat".into(),
        quiet_token: Some("HEARTBEAT_OK".into()),
        silent: true,
        skip_if_busy: false,
        hidden: false,
    };
    let effects =
        h.handle(Event::Inject { inject_id: 7, key: key(), prompt: "check in".into(), options });
    assert!(starts(&effects).is_empty());
    let effects = h.complete(&run, "s", "ok");
    let inject = starts(&effects)[0].clone();
    assert!(inject.labels.contains(&("kind".into(), "heartbeat".into())));
    let effects = h.complete(&inject.run_id, "s", "HEARTBEAT_OK");
    assert!(finals(&effects).is_empty(), "the quiet token is not delivered");
    assert!(sent(&effects).is_empty(), "silent: no deltas either");
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::InjectDone { inject_id: 7, outcome } if outcome.ok))
    );
}

#[test]
fn a_check_in_is_skipped_while_a_turn_runs_or_waits_never_queued() {
    let mut h = harness();
    let options = InjectOptions {
        kind: "heartbeat".into(),
        quiet_token: Some("HEARTBEAT_OK".into()),
        silent: true,
        skip_if_busy: true,
        hidden: false,
    };
    let inject = |h: &mut Harness, id: u64| {
        h.handle(Event::Inject {
            inject_id: id,
            key: key(),
            prompt: "check in".into(),
            options: options.clone(),
        })
    };
    let busy = |effects: &[Effect], id: u64| {
        effects.iter().any(|e| {
            matches!(e, Effect::InjectDone { inject_id, outcome }
                if *inject_id == id && !outcome.ok && outcome.error_kind == "busy")
        })
    };
    let run = starts(&h.say("user turn"))[0].run_id.clone();
    let effects = inject(&mut h, 1);
    assert!(busy(&effects, 1), "{effects:?}");
    assert!(sent(&effects).is_empty(), "no queue notice for a skipped check-in: {effects:?}");
    // A queued user message keeps the chat busy after the turn ends.
    let queued_effects = h.say("second");
    assert!(starts(&queued_effects).is_empty());
    assert!(busy(&inject(&mut h, 2), 2));
    let next = starts(&h.complete(&run, "s", "ok"))[0].run_id.clone();
    h.complete(&next, "s", "ok");
    // Idle again: the check-in runs.
    let effects = inject(&mut h, 3);
    assert_eq!(starts(&effects).len(), 1, "{effects:?}");
    assert!(!busy(&effects, 3));
}

#[test]
fn stale_buckets_start_fresh() {
    let mut h = harness();
    h.machine.cfg.freshness.max_session_messages = 1;
    let run = starts(&h.say("one"))[0].run_id.clone();
    h.complete(&run, "s1", "ok");
    let effects = h.say("two");
    assert_eq!(starts(&effects)[0].resume_session_id, "");
    assert!(
        sent(&effects)
            .iter()
            .any(|k| matches!(k, OutKind::Status { status, .. } if status == "fresh_session")),
        "the user sees why the session started over: {effects:?}"
    );
}

#[test]
fn reply_quotes_and_media_become_prompts() {
    let mut h = harness();
    h.events += 1;
    let effects = h.handle(Event::Inbound(Inbound {
        event_id: "q".into(),
        key: key(),
        sender_id: "u".into(),
        kind: InboundKind::Message { text: "yes".into(), reply_quote: "Deploy now?".into() },
    }));
    let prompt = &starts(&effects)[0].prompt;
    assert!(prompt.contains("> Deploy now?") && prompt.ends_with("yes"), "{prompt}");
    let mut h = harness();
    let effects = h.handle(Event::Inbound(Inbound {
        event_id: "m".into(),
        key: key(),
        sender_id: "u".into(),
        kind: InboundKind::Media(Media {
            path: "/ws/telegram_files/v.ogg".into(),
            mime_type: "audio/ogg".into(),
            caption: "summarise".into(),
            media_kind: "voice".into(),
            ..Media::default()
        }),
    }));
    assert!(starts(&effects).is_empty(), "the file is prepared first: {effects:?}");
    let effects = h.handle(Event::MediaPrepared {
        key: key(),
        turn_id: media::preparing(&effects),
        prepared: PreparedMedia {
            path: "/ws/telegram_files/v.ogg".into(),
            mime_type: "audio/ogg".into(),
            ..PreparedMedia::default()
        },
    });
    let prompt = &starts(&effects)[0].prompt;
    assert!(prompt.starts_with("[INCOMING FILE]"));
    assert!(
        prompt.contains("Path: /ws/telegram_files/v.ogg")
            && prompt.contains("User message: summarise")
            && prompt.contains("transcribe or inspect it"),
        "{prompt}"
    );
}

#[test]
fn diagnose_lists_recent_errors() {
    let mut h = harness();
    let run = starts(&h.say("x"))[0].run_id.clone();
    h.run(&run, RunEvent::Exited(RunOutcome::Failed));
    let effects = h.say("/diagnose");
    let text = notices(&effects)[0];
    assert!(text.contains("0.0.0-test") && text.contains("agent: test"), "{text}");
    assert!(text.contains("crashed"), "{text}");
}

#[test]
fn session_totals_reported_by_the_cli_replace_the_bucket_counters() {
    let mut h = harness();
    let turn = |h: &mut Harness, prompt: &str, result: RunResult| {
        let run_id = starts(&h.say(prompt))[0].run_id.clone();
        h.run(&run_id, RunEvent::Session("sess-1".into()));
        let mut effects = h.run(&run_id, RunEvent::Result(result));
        effects.extend(h.run(&run_id, RunEvent::Exited(RunOutcome::Completed)));
        saved_bucket(&effects, "claude").expect("bucket saved")
    };
    let first = RunResult {
        session_id: "sess-1".into(),
        input_tokens: 100,
        output_tokens: 20,
        cost_usd: Some(0.01),
        session_tokens: Some((100, 20)),
        session_cost_usd: Some(0.01),
        ..Default::default()
    };
    let bucket = turn(&mut h, "one", first);
    assert_eq!((bucket.input_tokens, bucket.output_tokens), (100, 20));
    // Codex-like: no per-run usage, only the thread's running totals.
    let second = RunResult {
        session_id: "sess-1".into(),
        session_tokens: Some((250, 45)),
        session_cost_usd: Some(0.03),
        ..Default::default()
    };
    let bucket = turn(&mut h, "two", second);
    assert_eq!((bucket.input_tokens, bucket.output_tokens), (250, 45), "not 350/65");
    assert!((bucket.cost_usd - 0.03).abs() < 1e-9, "{}", bucket.cost_usd);
    // Per-run figures only (gemini): added to the running total.
    let third = RunResult {
        session_id: "sess-1".into(),
        input_tokens: 10,
        output_tokens: 5,
        ..Default::default()
    };
    let bucket = turn(&mut h, "three", third);
    assert_eq!((bucket.input_tokens, bucket.output_tokens), (260, 50));
}

mod admin;
mod agents;
mod background;
mod control;
mod files;
mod media;
mod upkeep;
