//! The machine's side of approvals and steering, for the edges a real CLI
//! does not produce on demand: typed answers, timers firing late or twice,
//! a run ending with a request open, an unattended turn asking, and a steer
//! the runner refuses.

use super::*;
use crate::model::{ApprovalRequest, RunResponse};
use ductor_daemon::config::{PermissionModeSetting, WhileBusy};

fn controlled(while_busy: WhileBusy) -> Harness {
    let mut cfg = config();
    cfg.permission = PermissionModeSetting::Ask;
    cfg.while_busy = while_busy;
    let mut h = harness_with(cfg);
    h.handle(Event::Catalog(vec![ProviderInfo {
        name: "claude".into(),
        installed: true,
        models: vec!["sonnet".into()],
        default_model: "sonnet".into(),
        can_approve: true,
        can_steer: true,
        ..Default::default()
    }]));
    h
}

fn asked(tool: &str, input: &str) -> RunEvent {
    RunEvent::ApprovalRequested(ApprovalRequest {
        request_id: "req-1".into(),
        tool: tool.into(),
        input_json: input.into(),
        description: String::new(),
    })
}

fn responses(effects: &[Effect]) -> Vec<&RunResponse> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Respond { response, .. } => Some(response),
            _ => None,
        })
        .collect()
}

fn audits(effects: &[Effect]) -> Vec<(&str, &str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Audit(record) => Some((record.decision.as_str(), record.how.as_str())),
            _ => None,
        })
        .collect()
}

fn timer(effects: &[Effect]) -> String {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::ApprovalTimer { approval_id, .. } => Some(approval_id.clone()),
            _ => None,
        })
        .expect("an approval timer")
}

/// Starts a turn and returns its run id.
fn turn(h: &mut Harness, text: &str) -> String {
    let effects = h.say(text);
    starts(&effects).first().expect("a run").run_id.clone()
}

#[test]
fn ask_runs_are_asked_with_the_command_shown_and_a_typed_yes_answers() {
    let mut h = controlled(WhileBusy::Queue);
    let effects = h.say("do it");
    let request = starts(&effects)[0].clone();
    assert_eq!(request.permission, None, "the configured ask mode applies");
    let run = request.run_id;
    let effects = h.run(&run, asked("Bash", r#"{"command":"rm -rf build"}"#));
    let Some(OutKind::Selector { text, buttons, .. }) = sent(&effects).first().copied() else {
        panic!("a selector: {effects:?}");
    };
    assert!(text.contains("$ rm -rf build"), "{text}");
    assert_eq!(buttons.iter().flatten().count(), 3);
    timer(&effects);
    let effects = h.say("yes");
    assert!(starts(&effects).is_empty(), "a typed yes is an answer, not a prompt");
    assert!(matches!(responses(&effects)[..], [RunResponse::Approval { allow: true, .. }]));
    assert_eq!(audits(&effects), [("allowed", "typed")]);
}

#[test]
fn a_timer_denies_once_and_a_late_press_changes_nothing() {
    let mut h = controlled(WhileBusy::Queue);
    let run = turn(&mut h, "do it");
    let id = timer(&h.run(&run, asked("Bash", r#"{"command":"make"}"#)));
    let effects = h.handle(Event::ApprovalTimeout { approval_id: id.clone() });
    let [RunResponse::Approval { allow: false, message, .. }] = responses(&effects)[..] else {
        panic!("a denial: {effects:?}");
    };
    assert!(message.contains("within 300s"), "{message}");
    assert_eq!(audits(&effects), [("timed_out", "timeout")]);
    assert!(h.handle(Event::ApprovalTimeout { approval_id: id.clone() }).is_empty());
    let effects = h.press(&format!("ap:{id}:y"));
    assert!(responses(&effects).is_empty(), "no approval after the timeout");
    assert!(notices(&effects).iter().any(|n| n.contains("no longer waiting")));
}

#[test]
fn a_request_open_when_its_run_ends_is_closed_never_approved() {
    let mut h = controlled(WhileBusy::Queue);
    let run = turn(&mut h, "do it");
    let id = timer(&h.run(&run, asked("Bash", r#"{"command":"make"}"#)));
    let effects = h.run(&run, RunEvent::Exited(RunOutcome::Stopped));
    assert!(responses(&effects).is_empty());
    assert_eq!(audits(&effects), [("cancelled", "turn_ended")]);
    let effects = h.press(&format!("ap:{id}:y"));
    assert!(responses(&effects).is_empty());
}

#[test]
fn an_unattended_turn_is_denied_without_asking() {
    let mut h = controlled(WhileBusy::Queue);
    let options = InjectOptions { kind: "heartbeat".into(), silent: true, ..Default::default() };
    let effects =
        h.handle(Event::Inject { inject_id: 1, key: key(), prompt: "check".into(), options });
    let run = starts(&effects)[0].run_id.clone();
    let effects = h.run(&run, asked("Bash", r#"{"command":"make"}"#));
    assert!(sent(&effects).is_empty(), "nothing reaches the chat");
    assert!(matches!(responses(&effects)[..], [RunResponse::Approval { allow: false, .. }]));
    assert_eq!(audits(&effects), [("denied", "unattended")]);
}

#[test]
fn allow_for_this_session_lasts_until_new() {
    let mut h = controlled(WhileBusy::Queue);
    let run = turn(&mut h, "do it");
    let id = timer(&h.run(&run, asked("Edit", r#"{"file_path":"a.rs"}"#)));
    h.press(&format!("ap:{id}:s"));
    let effects = h.run(&run, asked("Edit", r#"{"file_path":"b.rs"}"#));
    assert_eq!(audits(&effects), [("allowed", "session_rule")]);
    h.complete(&run, "s1", "done");
    h.say("/new");
    let run = turn(&mut h, "again");
    let effects = h.run(&run, asked("Edit", r#"{"file_path":"c.rs"}"#));
    assert!(responses(&effects).is_empty(), "asked again after /new");
    timer(&effects);
}

#[test]
fn a_steer_the_runner_refuses_is_queued_and_a_confirmed_one_gets_its_own_reply() {
    let mut h = controlled(WhileBusy::Steer);
    let effects = h.say("tell a story");
    let request = starts(&effects)[0].clone();
    assert!(request.interactive, "steer mode keeps the CLI's input open");
    let run = request.run_id;
    let effects = h.say("and bananas");
    assert!(matches!(responses(&effects)[..], [RunResponse::Steer(text)] if text == "and bananas"));
    // The runner confirms: a note, and the next result is the story's own reply.
    let effects = h.run(&run, RunEvent::Steered("and bananas".into()));
    assert!(notices(&effects).iter().any(|n| n.contains("Sent into the running turn")));
    let result = |text: &str| RunResult { text: text.into(), ..Default::default() };
    let effects = h.run(&run, RunEvent::Result(result("the story")));
    assert_eq!(finals(&effects).len(), 1);
    let effects = h.run(&run, RunEvent::Text("bana".into()));
    assert!(matches!(sent(&effects)[..], [OutKind::TurnStarted { .. }, OutKind::Delta(_)]));
    let effects = h.run(&run, RunEvent::Result(result("bananas!")));
    assert_eq!(finals(&effects)[0].text, "bananas!");
    h.run(&run, RunEvent::Exited(RunOutcome::Completed));

    // A CLI that folds the steer into the reply it was giving ends after one result.
    let run = turn(&mut h, "a poem");
    h.say("shorter please");
    h.run(&run, RunEvent::Steered("shorter please".into()));
    let effects = h.run(&run, RunEvent::Result(result("a short poem")));
    assert_eq!(finals(&effects).len(), 1);
    let effects = h.run(&run, RunEvent::Exited(RunOutcome::Completed));
    assert!(errors(&effects).is_empty(), "the turn ends on the reply given: {effects:?}");
    assert!(sent(&effects).iter().all(|k| !matches!(k, OutKind::TurnStarted { .. })));

    // A refused steer waits for the next turn like any queued message.
    let run = turn(&mut h, "another story");
    let effects = h.say("late words");
    assert_eq!(responses(&effects).len(), 1);
    let event_id = format!("e{}", h.events);
    let effects = h.handle(Event::SteerRefused { key: key(), event_id });
    assert!(sent(&effects).iter().any(|k| matches!(k, OutKind::Queued { .. })));
    let effects = h.complete(&run, "s2", "done");
    let next = starts(&effects);
    assert_eq!(next.len(), 1, "the refused steer runs next");
    assert_eq!(next[0].prompt, "late words");
}

#[test]
fn commands_are_shown_whole_and_long_inputs_are_cut() {
    let mut h = controlled(WhileBusy::Queue);
    let run = turn(&mut h, "do it");
    let long = "x".repeat(3000);
    let effects = h.run(&run, asked("Bash", &serde_json::json!({"command": long}).to_string()));
    let Some(OutKind::Selector { text, .. }) = sent(&effects).first().copied() else {
        panic!("a selector");
    };
    assert!(text.contains(&long) && !text.contains("more bytes"), "a command is whole");
    let huge = "y".repeat(5000);
    let input = serde_json::json!({"file_path": "a.rs", "content": huge}).to_string();
    let effects = h.run(&run, asked("Write", &input));
    let Some(OutKind::Selector { text, .. }) = sent(&effects).first().copied() else {
        panic!("a selector");
    };
    assert!(
        text.contains("a.rs") && text.contains("more bytes") && text.len() < 2000,
        "{}",
        text.len()
    );
}

#[test]
fn a_steer_never_confirmed_runs_as_the_next_turn() {
    let mut h = controlled(WhileBusy::Steer);
    let run = turn(&mut h, "tell a story");
    let effects = h.say("and bananas");
    assert_eq!(responses(&effects).len(), 1, "handed to the runner");
    // The CLI refused it as its turn ended (codex): no Steered came.
    let effects = h.complete(&run, "s1", "the story");
    let next = starts(&effects);
    assert_eq!(next.len(), 1, "the message is not lost: {effects:?}");
    assert_eq!(next[0].prompt, "and bananas");
}
