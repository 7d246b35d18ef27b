//! Memory upkeep in the machine: flush turns around compaction and resets
//! (hidden from the chat, deduplicated) and the memory-check hint.

use super::*;
use ductor_daemon::config::MemoryConfig;

fn upkeep(check_every: u32) -> Harness {
    let mut cfg = config();
    cfg.memory = MemoryConfig { check_every_messages: check_every, ..MemoryConfig::default() };
    harness_with(cfg)
}

fn flushes(effects: &[Effect]) -> Vec<(&str, &str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::MemoryFlush { provider, session_id, .. } => {
                Some((provider.as_str(), session_id.as_str()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn new_flushes_the_old_session_in_a_one_shot_run_once_within_the_window() {
    let mut h = upkeep(0);
    let run = starts(&h.say("hi"))[0].run_id.clone();
    h.complete(&run, "sess-old", "hello");
    let effects = h.say("/new");
    assert_eq!(flushes(&effects), vec![("claude", "sess-old")], "{effects:?}");
    let run = starts(&h.say("again"))[0].run_id.clone();
    h.complete(&run, "sess-2", "ok");
    assert!(flushes(&h.say("/new")).is_empty(), "deduplicated within flush_dedup_seconds");
    assert!(flushes(&h.say("/new")).is_empty(), "nothing to flush without a session");
}

#[test]
fn a_compaction_in_a_turn_is_followed_by_a_hidden_flush_turn_before_the_queue() {
    let mut h = upkeep(0);
    let run = starts(&h.say("long work"))[0].run_id.clone();
    h.run(&run, RunEvent::Status { status: "compacted".into(), detail: String::new() });
    h.say("queued after");
    let effects = h.complete(&run, "sess-1", "done");
    let flush = starts(&effects);
    assert_eq!(flush.len(), 1, "{effects:?}");
    assert!(flush[0].prompt.contains("MEMORY FLUSH") && flush[0].resume_session_id == "sess-1");
    let effects = h.complete(&flush[0].run_id.clone(), "sess-1", "I saved two facts.");
    assert!(finals(&effects).is_empty(), "a flush's reply never reaches the chat: {effects:?}");
    assert_eq!(starts(&effects)[0].prompt, "queued after");
}

#[test]
fn compact_is_preceded_by_a_flush_in_the_same_session() {
    let mut h = upkeep(0);
    let run = starts(&h.say("hi"))[0].run_id.clone();
    h.complete(&run, "sess-1", "hello");
    let effects = h.say("/compact");
    let first = starts(&effects);
    assert!(first[0].prompt.contains("MEMORY FLUSH"), "{effects:?}");
    let effects = h.complete(&first[0].run_id.clone(), "sess-1", FLUSH_TOKEN);
    assert!(finals(&effects).is_empty());
    assert_eq!(starts(&effects)[0].prompt, "/compact");
    assert!(
        h.say("/compact now")
            .iter()
            .all(|e| !matches!(e, Effect::StartRun(r) if r.prompt.contains("MEMORY FLUSH")))
    );
}

#[test]
fn every_nth_user_message_carries_the_memory_check() {
    let mut h = upkeep(3);
    let mut prompts = Vec::new();
    for i in 0..6 {
        let effects = h.say(&format!("message {i}"));
        let start = starts(&effects)[0].clone();
        prompts.push(start.prompt.clone());
        h.complete(&start.run_id, "sess-1", "ok");
    }
    let hinted: Vec<usize> = (0..6).filter(|&i| prompts[i].contains("MEMORY CHECK")).collect();
    assert_eq!(hinted, vec![2, 5], "{prompts:#?}");
    assert!(prompts[2].starts_with("message 2"));
}
