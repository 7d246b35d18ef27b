//! Every transition of named sessions and tasks, allowed and refused.

use jiff::Timestamp;

use super::*;

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

fn session(state: NamedState) -> NamedSession {
    NamedSession {
        key: SessionKey::new("tg", "1", ""),
        name: "redowl".into(),
        provider: "claude".into(),
        model: String::new(),
        effort: String::new(),
        session_id: String::new(),
        state,
        created_at: now(),
        last_active: now(),
        turns: 0,
        cost_usd: 0.0,
    }
}

fn task(status: TaskStatus) -> Task {
    Task {
        id: "3f2a9c01".into(),
        name: "tests".into(),
        parent: SessionKey::new("tg", "1", ""),
        prompt: "fix the tests".into(),
        provider: "claude".into(),
        model: String::new(),
        effort: String::new(),
        priority: Priority::Background,
        status,
        session_id: String::new(),
        question: String::new(),
        result: String::new(),
        created_at: now(),
        finished_at: None,
        cost_usd: 0.0,
    }
}

#[test]
fn a_named_session_runs_idles_and_ends() {
    let mut s = session(NamedState::Running);
    assert!(s.start_turn(now()).is_err(), "one turn at a time");
    s.finish_turn("sess-1", 0.5, now());
    assert_eq!((s.state, s.session_id.as_str(), s.turns), (NamedState::Idle, "sess-1", 1));
    s.start_turn(now()).expect("an idle session takes a follow-up");
    assert_eq!(s.state, NamedState::Running);
    s.finish_turn("", 0.25, now());
    assert_eq!(s.session_id, "sess-1", "an empty id keeps the session");
    assert!((s.cost_usd - 0.75).abs() < 1e-9);
    s.end().expect("ends");
    assert_eq!(s.state, NamedState::Ended);
    assert!(s.end().is_err(), "ends once");
    let refused = s.start_turn(now()).unwrap_err();
    assert!(refused.text.contains("has ended"), "{refused}");
}

#[test]
fn a_turn_ending_after_the_session_ended_keeps_it_ended() {
    let mut s = session(NamedState::Running);
    s.end().unwrap();
    s.finish_turn("sess-2", 0.0, now());
    assert_eq!(s.state, NamedState::Ended);
}

#[test]
fn a_restart_turns_a_running_session_idle_and_says_it_was_lost() {
    let mut running = session(NamedState::Running);
    assert!(running.recover());
    assert_eq!(running.state, NamedState::Idle);
    let mut idle = session(NamedState::Idle);
    assert!(!idle.recover());
    let mut ended = session(NamedState::Ended);
    assert!(!ended.recover());
    assert_eq!(ended.state, NamedState::Ended);
}

#[test]
fn a_task_asks_waits_is_answered_and_finishes() {
    let mut t = task(TaskStatus::Running);
    assert!(t.ask("  ").is_err(), "no empty question");
    t.ask("Which branch?").unwrap();
    assert_eq!((t.status, t.question.as_str()), (TaskStatus::Waiting, "Which branch?"));
    assert!(t.ask("again?").is_err(), "one question at a time");
    // A run that ends while the task waits does not finish it.
    t.finish_run(true, "asked", "s1", now());
    assert_eq!(t.status, TaskStatus::Waiting);
    assert_eq!(t.session_id, "s1");
    assert_eq!(t.answer().unwrap(), "Which branch?");
    assert_eq!(t.status, TaskStatus::Running);
    assert!(t.answer().is_err(), "only a waiting task takes an answer");
    t.finish_run(true, "All green.", "", now());
    assert_eq!((t.status, t.result.as_str()), (TaskStatus::Done, "All green."));
    assert!(t.finished_at.is_some());
    t.deletable().unwrap();
}

#[test]
fn a_failed_run_fails_the_task() {
    let mut t = task(TaskStatus::Running);
    t.finish_run(false, "timeout", "", now());
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(t.cancel(now()).is_err(), "a finished task cannot be cancelled");
}

#[test]
fn cancelling_and_deleting() {
    for status in [TaskStatus::Running, TaskStatus::Waiting] {
        let mut t = task(status);
        assert!(t.deletable().is_err(), "{status:?} must be cancelled before deletion");
        t.cancel(now()).unwrap();
        assert_eq!(t.status, TaskStatus::Cancelled);
        t.finish_run(true, "late result", "", now());
        assert_eq!(t.status, TaskStatus::Cancelled, "a late result does not revive it");
        t.deletable().unwrap();
    }
}

#[test]
fn a_restart_interrupts_running_tasks_and_keeps_waiting_ones() {
    let mut running = task(TaskStatus::Running);
    assert!(running.recover(now()));
    assert_eq!(running.status, TaskStatus::Interrupted);
    assert!(running.status.is_finished());
    let mut waiting = task(TaskStatus::Waiting);
    assert!(!waiting.recover(now()));
    assert_eq!(waiting.status, TaskStatus::Waiting);
    for status in [TaskStatus::Done, TaskStatus::Failed, TaskStatus::Cancelled] {
        let mut t = task(status);
        assert!(!t.recover(now()));
        assert_eq!(t.status, status);
    }
}

#[test]
fn priorities_share_the_slots() {
    assert!(Priority::Interactive.may_start(5, 5));
    assert!(Priority::Background.may_start(4, 5));
    assert!(!Priority::Background.may_start(5, 5));
    assert!(Priority::Batch.may_start(3, 5));
    assert!(!Priority::Batch.may_start(4, 5), "batch leaves the last slot");
    assert_eq!(Priority::parse("whatever"), Priority::Background);
}

#[test]
fn states_round_trip_and_unknown_words_fail_safe() {
    for s in [NamedState::Running, NamedState::Idle, NamedState::Ended] {
        assert_eq!(NamedState::parse(s.as_str()), s);
    }
    assert_eq!(NamedState::parse("??"), NamedState::Ended);
    for s in [
        TaskStatus::Running,
        TaskStatus::Waiting,
        TaskStatus::Done,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Interrupted,
    ] {
        assert_eq!(TaskStatus::parse(s.as_str()), s);
    }
    assert_eq!(TaskStatus::parse("??"), TaskStatus::Failed);
}

#[test]
fn names_are_generated_free_and_validated() {
    let first = generate_name(0, &|_| false);
    assert!(valid_name(&first), "{first}");
    let second = generate_name(0, &|name| name == first);
    assert_ne!(first, second);
    assert!(valid_name("build-2"));
    assert!(!valid_name("2build"), "must start with a letter");
    assert!(!valid_name("Build"));
    assert!(!valid_name(""));
    assert!(!valid_name(&"a".repeat(33)));
}

#[test]
fn a_finished_or_interrupted_task_resumes_in_its_session_a_running_one_does_not() {
    for status in
        [TaskStatus::Done, TaskStatus::Failed, TaskStatus::Cancelled, TaskStatus::Interrupted]
    {
        let mut t = task(status);
        t.session_id = "s-1".into();
        t.result = "old result".into();
        t.finished_at = Some(now());
        t.resume().unwrap_or_else(|e| panic!("{status:?}: {e}"));
        assert_eq!(t.status, TaskStatus::Running, "{status:?}");
        assert_eq!((t.finished_at, t.result.as_str()), (None, ""), "{status:?}");
    }
    let mut no_session = task(TaskStatus::Interrupted);
    no_session.session_id.clear();
    assert!(no_session.resume().unwrap_err().text.contains("no session"));
    assert!(task(TaskStatus::Running).resume().is_err());
    let mut waiting = task(TaskStatus::Running);
    waiting.ask("which?").unwrap();
    waiting.resume().expect("a waiting task takes it as its answer");
    assert_eq!((waiting.status, waiting.question.as_str()), (TaskStatus::Running, ""));
}
