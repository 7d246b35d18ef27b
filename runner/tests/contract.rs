//! Contract tests: real CLI output (copied from the shared fixtures into
//! `tests/fixtures/`, see `index.jsonl` for each file's argv and exit code)
//! parses into the expected events, and every event type in them is known.

use std::path::Path;

use ductor_runner::event::{ErrorKind, Event, RunResult};
use ductor_runner::provider::{self, ExitInfo, Parser};
use ductor_runner::spec::Provider;

fn parse(provider: Provider, name: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut parser = Parser::new(provider);
    let mut events = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).expect("fixture lines are JSON");
        if let Err(unknown) = parser.parse(&value, &mut events) {
            panic!("{name}: unknown event type {:?}", unknown.0);
        }
    }
    events
}

fn text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| if let Event::Text(t) = e { Some(t.as_str()) } else { None })
        .collect()
}

fn result(events: &[Event]) -> RunResult {
    let results: Vec<&RunResult> = events
        .iter()
        .filter_map(|e| if let Event::Result(r) = e { Some(r) } else { None })
        .collect();
    assert_eq!(results.len(), 1, "exactly one result: {events:?}");
    results[0].clone()
}

fn error_kinds(events: &[Event]) -> Vec<ErrorKind> {
    events
        .iter()
        .filter_map(|e| if let Event::Error(e) = e { Some(e.kind) } else { None })
        .collect()
}

fn session(events: &[Event]) -> String {
    let sessions: Vec<&String> = events
        .iter()
        .filter_map(|e| if let Event::Session(s) = e { Some(s) } else { None })
        .collect();
    assert_eq!(sessions.len(), 1, "one session event: {events:?}");
    sessions[0].clone()
}

fn tools(events: &[Event]) -> Vec<(String, String, Option<bool>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ToolStarted { name, summary, .. } => Some((name.clone(), summary.clone(), None)),
            Event::ToolFinished { name, output, ok, .. } => {
                Some((name.clone(), output.clone(), Some(*ok)))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn claude_simple_and_resume_keep_the_session() {
    let first = parse(Provider::Claude, "claude-simple.jsonl");
    let r = result(&first);
    assert_eq!(session(&first), r.session_id);
    assert!(!r.is_error);
    assert_eq!(text(&first), r.text, "without partial messages the assistant block is the text");
    assert!(r.cost_usd.is_some_and(|c| c > 0.0));
    assert_eq!(r.num_turns, 1);
    assert_eq!(r.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((2563, 14)));
    assert_eq!(r.session_usage, r.usage, "the first turn is the whole session");
    assert_eq!(r.session_cost_usd, r.cost_usd);
    let resumed = parse(Provider::Claude, "claude-resume.jsonl");
    let second = result(&resumed);
    assert_eq!(second.session_id, "35b004d7-0575-47f9-b609-b25c6f670fec");
    // Per run: this turn only; session: the CLI's running totals.
    assert_eq!(second.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((2601, 13)));
    assert!(second.cost_usd.is_some_and(|c| (c - 0.010664).abs() < 1e-9), "{second:?}");
    assert_eq!(
        second.session_usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((2563 + 2601, 14 + 13))
    );
    assert!(second.session_cost_usd.is_some_and(|c| (c - 0.021196).abs() < 1e-9));
}

#[test]
fn claude_partial_messages_stream_text_once() {
    let events = parse(Provider::Claude, "claude-partial.jsonl");
    let deltas = events.iter().filter(|e| matches!(e, Event::Text(_))).count();
    assert!(deltas >= 2, "{events:?}");
    assert_eq!(text(&events), result(&events).text, "deltas are not doubled by the assistant line");
    assert!(
        events.iter().any(|e| matches!(e, Event::Status { status, .. } if status == "requesting"))
    );
}

#[test]
fn claude_tools_and_denials() {
    for name in ["claude-tool.jsonl", "claude-tool-partial.jsonl"] {
        let events = parse(Provider::Claude, name);
        assert_eq!(
            tools(&events),
            vec![("Bash".into(), "echo hi".into(), None), ("Bash".into(), "hi".into(), Some(true))],
            "{name}"
        );
        assert!(!result(&events).is_error);
    }
    let denied = parse(Provider::Claude, "claude-tool-denied.jsonl");
    assert!(denied.iter().any(|e| matches!(e, Event::PermissionDenied { tool, message } if tool == "Bash" && message.contains("needs approval"))));
    assert!(tools(&denied).iter().any(|(_, _, ok)| *ok == Some(false)));
}

#[test]
fn claude_errors_are_classified() {
    let api = parse(Provider::Claude, "claude-error.jsonl");
    assert_eq!(error_kinds(&api), vec![ErrorKind::ModelApi]);
    assert!(result(&api).is_error);
    assert!(text(&api).is_empty(), "the synthetic API-error message is not reply text");
    let refused = parse(Provider::Claude, "claude-conn-refused.jsonl");
    assert_eq!(error_kinds(&refused), vec![ErrorKind::ModelApi]);
    assert!(
        refused.iter().any(|e| matches!(e, Event::Status { status, .. } if status == "retrying"))
    );
    let max_turns = parse(Provider::Claude, "claude-max-turns.jsonl");
    assert!(result(&max_turns).is_error);
    assert!(result(&max_turns).text.contains("maximum number of turns"));
}

#[test]
fn claude_interrupts() {
    let sigint = parse(Provider::Claude, "claude-sigint.jsonl");
    let r = result(&sigint);
    assert!(r.is_error, "SIGINT still prints a result, marked as error");
    assert!(error_kinds(&sigint).is_empty(), "an interrupt is not a model error");
    assert!(text(&sigint).starts_with("chunk00"));
    assert_eq!(r.text, text(&sigint), "an interrupted reply is the partial text seen so far");
    assert_eq!(
        r.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((2563, 11)),
        "the aborted request counts (`usage` itself is zero)"
    );
    assert!(r.cost_usd.is_some_and(|c| (c - 0.010472).abs() < 1e-9));
    assert!(!r.text.contains("ede_diagnostic"), "diagnostics go to the log only: {:?}", r.text);
    let sigterm = parse(Provider::Claude, "claude-sigterm.jsonl");
    assert!(!sigterm.iter().any(|e| matches!(e, Event::Result(_))), "SIGTERM: no result line");
    let error = provider::classify_failure(
        Provider::Claude,
        false,
        ExitInfo { code: Some(143), signal: None },
        "",
        None,
    );
    assert_eq!(error.kind, ErrorKind::Crashed);
}

#[test]
fn codex_turns_tools_and_usage() {
    let simple = parse(Provider::Codex, "codex-simple.jsonl");
    let r = result(&simple);
    assert_eq!(session(&simple), r.session_id);
    assert_eq!(text(&simple), r.text);
    assert!(r.cost_usd.is_none() && r.session_cost_usd.is_none());
    assert_eq!(r.usage, None, "codex reports only thread totals: per-run usage is unknown");
    assert_eq!(r.session_usage.map(|u| (u.input_tokens, u.output_tokens)), Some((6941, 50)));
    let resumed = result(&parse(Provider::Codex, "codex-resume.jsonl"));
    assert!(!resumed.is_error);
    assert_eq!(resumed.usage, None);
    assert_eq!(
        resumed.session_usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((13974, 99)),
        "thread totals keep growing on resume"
    );
    assert_eq!(r.num_turns, 1, "no tools: one model turn");
    let tool = parse(Provider::Codex, "codex-tool.jsonl");
    assert_eq!(result(&tool).num_turns, 2, "one tool round trip + the answer");
    assert_eq!(
        tools(&tool),
        vec![
            ("shell".into(), "/bin/bash -lc 'echo hi'".into(), None),
            ("shell".into(), "hi\n".into(), Some(true))
        ]
    );
    let failed = parse(Provider::Codex, "codex-tool-failed.jsonl");
    assert_eq!(tools(&failed)[1].2, Some(false), "exit code 2 is a failed tool");
    for name in ["codex-tool-sandbox-denied.jsonl", "codex-tool-workspace-write.jsonl"] {
        assert!(!result(&parse(Provider::Codex, name)).is_error, "{name}");
    }
}

#[test]
fn codex_errors_and_signals() {
    let error = parse(Provider::Codex, "codex-error.jsonl");
    assert_eq!(error_kinds(&error), vec![ErrorKind::ModelApi]);
    assert!(result(&error).is_error);
    assert!(result(&error).text.contains("bad request"));
    let refused = parse(Provider::Codex, "codex-conn-refused.jsonl");
    assert!(!refused.iter().any(|e| matches!(e, Event::Result(_))));
    assert!(
        refused
            .iter()
            .filter(|e| matches!(e, Event::Status { status, .. } if status == "retrying"))
            .count()
            >= 2
    );
    for name in ["codex-sigint.jsonl", "codex-sigterm.jsonl"] {
        let events = parse(Provider::Codex, name);
        assert!(!events.iter().any(|e| matches!(e, Event::Result(_))), "{name}");
    }
    let stderr = "Error: thread/resume: thread/resume failed: no rollout found for thread id 01a2 (code -32600)";
    let missing = provider::classify_failure(
        Provider::Codex,
        true,
        ExitInfo { code: Some(1), signal: None },
        stderr,
        None,
    );
    assert_eq!(missing.kind, ErrorKind::SessionNotFound);
}

#[test]
fn gemini_deltas_tools_and_results() {
    for name in ["gemini-simple.jsonl", "gemini-resume.jsonl", "gemini-model.jsonl"] {
        let events = parse(Provider::Gemini, name);
        let r = result(&events);
        assert_eq!(session(&events), r.session_id, "{name}");
        assert_eq!(text(&events), r.text, "{name}");
        assert!(!r.is_error && r.usage.is_some_and(|u| u.input_tokens > 0), "{name}");
        assert_eq!((r.session_usage, r.session_cost_usd), (None, None), "gemini: per run only");
    }
    assert_eq!(result(&parse(Provider::Gemini, "gemini-simple.jsonl")).num_turns, 1);
    let tool = parse(Provider::Gemini, "gemini-tool.jsonl");
    assert_eq!(result(&tool).num_turns, 2, "one tool round trip + the answer");
    assert_eq!(
        tools(&tool),
        vec![
            ("run_shell_command".into(), "echo hi".into(), None),
            ("run_shell_command".into(), "hi".into(), Some(true))
        ]
    );
    assert_eq!(result(&tool).text, "done", "the reply is the text after the last tool");
    assert!(tools(&parse(Provider::Gemini, "gemini-tool-no-yolo.jsonl")).is_empty());
}

#[test]
fn gemini_errors_and_signals() {
    for name in ["gemini-error.jsonl", "gemini-conn-refused.jsonl"] {
        let events = parse(Provider::Gemini, name);
        assert_eq!(error_kinds(&events), vec![ErrorKind::ModelApi], "{name}");
        assert!(result(&events).is_error, "{name}");
    }
    for name in ["gemini-sigint.jsonl", "gemini-sigterm.jsonl"] {
        let events = parse(Provider::Gemini, name);
        assert!(text(&events).starts_with("chunk00"), "{name}");
        assert!(
            !events.iter().any(|e| matches!(e, Event::Result(_))),
            "{name}: interrupted, no result"
        );
    }
    let invalid = "Error resuming session: Invalid session identifier \"x\". Searched for sessions in /t/chats.";
    let exit = ExitInfo { code: Some(42), signal: None };
    assert_eq!(
        provider::classify_failure(Provider::Gemini, true, exit, invalid, None).kind,
        ErrorKind::SessionNotFound
    );
    let auth = ExitInfo { code: Some(41), signal: None };
    assert_eq!(
        provider::classify_failure(
            Provider::Gemini,
            false,
            auth,
            "Invalid auth method selected.",
            None
        )
        .kind,
        ErrorKind::Auth
    );
}
