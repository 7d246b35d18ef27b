//! The machine's side of background work: `/session`, `@name`, `/sessions`,
//! `/tasks`, `/stop @name`, `/stop_all` and the menus' buttons become
//! `Effect::Background` requests at once (never queued behind the chat's
//! turn, never a run of the chat's own session).

use super::*;
use crate::background::{BackgroundRequest, LiveNames};

fn background(effects: &[Effect]) -> Vec<&BackgroundRequest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Background { request, .. } => Some(request),
            _ => None,
        })
        .collect()
}

fn with_session(h: &mut Harness, names: &[&str]) {
    let names = names.iter().map(|n| (*n).to_owned()).collect();
    assert!(h.handle(Event::LiveNames(LiveNames { key: key(), names })).is_empty());
}

#[test]
fn session_starts_a_named_session_with_the_chats_provider_or_the_one_asked_for() {
    let mut h = harness();
    let effects = h.say("/session fix the tests");
    assert!(starts(&effects).is_empty(), "no run of the chat's session: {effects:?}");
    assert_eq!(
        background(&effects),
        [&BackgroundRequest::NewSession {
            provider: "claude".into(),
            model: String::new(),
            effort: String::new(),
            prompt: "fix the tests".into(),
        }]
    );
    let effects = h.say("/session @codex fix the tests");
    let [BackgroundRequest::NewSession { provider, prompt, .. }] = background(&effects)[..] else {
        panic!("a new session: {effects:?}")
    };
    assert_eq!((provider.as_str(), prompt.as_str()), ("codex", "fix the tests"));
    let effects = h.say("/session @opus think hard");
    let [BackgroundRequest::NewSession { provider, model, .. }] = background(&effects)[..] else {
        panic!("a new session: {effects:?}")
    };
    assert_eq!((provider.as_str(), model.as_str()), ("claude", "opus"));
}

#[test]
fn session_with_an_unknown_directive_is_refused_with_the_providers() {
    let mut h = harness();
    let effects = h.say("/session @nobody hello");
    assert!(background(&effects).is_empty());
    assert!(starts(&effects).is_empty());
    let [notice] = notices(&effects)[..] else { panic!("one notice: {effects:?}") };
    assert!(notice.contains("@nobody") && notice.contains("codex"), "{notice}");
}

#[test]
fn at_name_follows_up_a_live_session_even_while_the_chat_runs_a_turn() {
    let mut h = harness();
    let run = starts(&h.say("foreground work"))[0].run_id.clone();
    with_session(&mut h, &["redowl"]);
    let effects = h.say("@redowl and now the docs");
    assert_eq!(
        background(&effects),
        [&BackgroundRequest::FollowUp { name: "redowl".into(), text: "and now the docs".into() }]
    );
    assert!(starts(&effects).is_empty());
    assert_eq!(h.machine.queued(), 0, "a follow-up is not queued behind the chat's turn");
    let effects = h.say("/session @redowl one more");
    assert_eq!(
        background(&effects),
        [&BackgroundRequest::FollowUp { name: "redowl".into(), text: "one more".into() }]
    );
    // The foreground turn is untouched and answers as usual.
    let effects = h.complete(&run, "s", "done");
    assert_eq!(finals(&effects)[0].text, "done");
}

#[test]
fn at_name_of_no_live_session_is_an_ordinary_message() {
    let mut h = harness();
    with_session(&mut h, &["redowl"]);
    with_session(&mut h, &[]);
    let effects = h.say("@redowl hello");
    assert!(background(&effects).is_empty(), "an ended session gets nothing: {effects:?}");
    let [run] = starts(&effects)[..] else { panic!("the agent gets it: {effects:?}") };
    assert_eq!(run.prompt, "@redowl hello");
}

#[test]
fn stop_stops_the_foreground_only_and_stop_at_name_the_named_session_only() {
    let mut h = harness();
    let run = starts(&h.say("foreground work"))[0].run_id.clone();
    with_session(&mut h, &["redowl"]);
    let effects = h.say("/stop");
    assert_eq!(signals(&effects), [(run.as_str(), SignalKind::Stop)]);
    assert!(background(&effects).is_empty(), "/stop leaves background work alone");

    let mut h = harness();
    let run = starts(&h.say("foreground work"))[0].run_id.clone();
    with_session(&mut h, &["redowl"]);
    let effects = h.say("/stop @redowl");
    assert!(signals(&effects).is_empty(), "the chat's turn goes on: {effects:?}");
    assert_eq!(background(&effects), [&BackgroundRequest::StopSession("redowl".into())]);
    let effects = h.say("/stop @nobody");
    assert!(signals(&effects).is_empty() && background(&effects).is_empty());
    assert!(notices(&effects)[0].contains("@nobody"));
    assert_eq!(finals(&h.complete(&run, "s", "still here"))[0].text, "still here");
}

#[test]
fn stop_all_stops_every_turn_and_all_background_work() {
    let mut h = harness();
    let run = starts(&h.say("foreground work"))[0].run_id.clone();
    let effects = h.say("/stop_all");
    assert_eq!(signals(&effects), [(run.as_str(), SignalKind::Stop)]);
    assert_eq!(background(&effects), [&BackgroundRequest::StopEverything]);
}

#[test]
fn sessions_and_tasks_are_answered_by_the_background_engine() {
    let mut h = harness();
    let run = starts(&h.say("hello"))[0].run_id.clone();
    h.complete(&run, "s", "hi");
    let effects = h.say("/sessions");
    let [BackgroundRequest::ListSessions(text)] = background(&effects)[..] else {
        panic!("the listing goes to the engine: {effects:?}")
    };
    assert!(text.contains("claude: 1 msgs"), "the machine's own session lines come along: {text}");
    assert_eq!(background(&h.say("/tasks")), [&BackgroundRequest::ListTasks]);
}

#[test]
fn the_menus_buttons_become_requests() {
    let mut h = harness();
    let cases = [
        ("ns:end:redowl", BackgroundRequest::EndSession("redowl".into())),
        ("ns:endall", BackgroundRequest::EndAll),
        ("tk:cancel:3f2a", BackgroundRequest::CancelTask("3f2a".into())),
        ("tk:del:3f2a", BackgroundRequest::DeleteTask("3f2a".into())),
        ("tk:refresh", BackgroundRequest::ListTasks),
    ];
    for (button, request) in cases {
        let effects = h.press(button);
        assert_eq!(background(&effects), [&request], "{button}");
        assert!(starts(&effects).is_empty(), "{button}");
    }
}

#[test]
fn the_answer_goes_to_the_event_that_asked() {
    let mut h = harness();
    let effects = h.say("/tasks");
    let Some(Effect::Background { key: asked, reply_to, .. }) =
        effects.iter().find(|e| matches!(e, Effect::Background { .. }))
    else {
        panic!("{effects:?}")
    };
    assert_eq!((asked, reply_to.as_str()), (&key(), "e1"));
}
