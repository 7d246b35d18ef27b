//! Received files wait for the runner's preparation (transcript, resized
//! image) before their turn starts: the prompt says what came of it, the
//! chat's order holds, and /stop or /interrupt end a turn that has no run yet.

use super::*;

fn voice(h: &mut Harness, event_id: &str) -> Vec<Effect> {
    h.events += 1;
    h.handle(Event::Inbound(Inbound {
        event_id: event_id.into(),
        key: key(),
        sender_id: "u".into(),
        kind: InboundKind::Media(Media {
            path: "/ws/telegram_files/v.oga".into(),
            mime_type: "audio/ogg".into(),
            media_kind: "voice".into(),
            ..Media::default()
        }),
    }))
}

/// The turn id of the one `PrepareMedia` in `effects`.
pub(super) fn preparing(effects: &[Effect]) -> String {
    let ids: Vec<&String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::PrepareMedia { turn_id, .. } => Some(turn_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1, "one PrepareMedia: {effects:?}");
    ids[0].clone()
}

fn transcribed(turn_id: &str, text: &str) -> Event {
    Event::MediaPrepared {
        key: key(),
        turn_id: turn_id.into(),
        prepared: PreparedMedia {
            path: "/ws/telegram_files/v.oga".into(),
            mime_type: "audio/ogg".into(),
            transcript: text.into(),
            transcribed_by: "endpoint".into(),
            ..PreparedMedia::default()
        },
    }
}

#[test]
fn a_transcript_becomes_the_prompt_and_the_file_stays_named() {
    let mut h = harness();
    let turn = preparing(&voice(&mut h, "v1"));
    let effects = h.handle(transcribed(&turn, "book a table\nfor two"));
    let prompt = &starts(&effects)[0].prompt;
    assert!(prompt.contains("> book a table\n> for two\n"), "{prompt}");
    assert!(prompt.contains("Path: /ws/telegram_files/v.oga"), "{prompt}");
    assert!(!prompt.contains("transcribe or inspect"), "{prompt}");
}

#[test]
fn a_resized_image_is_what_the_agent_reads_and_notes_are_passed_on() {
    let mut h = harness();
    h.events += 1;
    let effects = h.handle(Event::Inbound(Inbound {
        event_id: "p".into(),
        key: key(),
        sender_id: "u".into(),
        kind: InboundKind::Media(Media {
            path: "/ws/telegram_files/p.jpg".into(),
            mime_type: "image/jpeg".into(),
            media_kind: "photo".into(),
            ..Media::default()
        }),
    }));
    let turn = preparing(&effects);
    let effects = h.handle(Event::MediaPrepared {
        key: key(),
        turn_id: turn,
        prepared: PreparedMedia {
            path: "/ws/telegram_files/p.resized.webp".into(),
            mime_type: "image/webp".into(),
            original: (4000, 3000),
            size: (2000, 1500),
            notes: vec!["something went sideways".into()],
            ..PreparedMedia::default()
        },
    });
    let prompt = &starts(&effects)[0].prompt;
    assert!(
        prompt.contains("Path: /ws/telegram_files/p.resized.webp\nType: image/webp"),
        "{prompt}"
    );
    assert!(
        prompt.contains("from 4000x3000 to 2000x1500; the original is at /ws/telegram_files/p.jpg")
    );
    assert!(prompt.contains("Note: something went sideways"), "{prompt}");
}

#[test]
fn messages_after_a_voice_note_wait_for_it() {
    let mut h = harness();
    let turn = preparing(&voice(&mut h, "v1"));
    let effects = h.say("and then this");
    assert!(starts(&effects).is_empty(), "queued behind the voice note: {effects:?}");
    let effects = h.handle(transcribed(&turn, "first"));
    let run = starts(&effects)[0].run_id.clone();
    assert!(starts(&effects)[0].prompt.contains("> first"));
    let effects = h.complete(&run, "s1", "ok");
    assert_eq!(starts(&effects)[0].prompt, "and then this");
}

#[test]
fn stop_while_preparing_ends_the_turn_and_a_late_answer_changes_nothing() {
    let mut h = harness();
    let turn = preparing(&voice(&mut h, "v1"));
    h.say("queued");
    let effects = h.say("/stop");
    assert!(signals(&effects).is_empty(), "no run to signal: {effects:?}");
    assert!(errors(&effects).iter().any(|(kind, _)| *kind == "stopped"), "{effects:?}");
    assert!(starts(&effects).is_empty(), "the queue was dropped: {effects:?}");
    let late = h.handle(transcribed(&turn, "too late"));
    assert!(starts(&late).is_empty(), "{late:?}");
    assert!(!starts(&h.say("next")).is_empty(), "the chat is free again");
}

#[test]
fn interrupt_while_preparing_ends_the_turn_and_runs_the_queue() {
    let mut h = harness();
    let turn = preparing(&voice(&mut h, "v1"));
    h.say("queued");
    let effects = h.say("/interrupt");
    assert!(errors(&effects).iter().any(|(kind, _)| *kind == "interrupted"), "{effects:?}");
    assert_eq!(starts(&effects)[0].prompt, "queued");
    assert!(starts(&h.handle(transcribed(&turn, "late"))).is_empty());
}
