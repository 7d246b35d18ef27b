//! Who administers ductor from a chat: `/cron` and `/status` reach
//! automation with `admin` set only for `[agent].admin_chats` and the
//! operator's own terminal; every other chat manages only its own jobs.
//! `/where` lists a transport's chats to admins only.

use super::*;

fn admin_flags(effects: &[Effect]) -> Vec<bool> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Automation { admin, .. } => Some(*admin),
            _ => None,
        })
        .collect()
}

fn say_in(h: &mut Harness, transport: &str, chat: &str, text: &str) -> Vec<Effect> {
    h.events += 1;
    h.handle(Event::Inbound(Inbound {
        event_id: format!("e{}", h.events),
        key: SessionKey::new(transport, chat, ""),
        sender_id: "u".into(),
        kind: InboundKind::Message { text: text.into(), reply_quote: String::new() },
    }))
}

#[test]
fn only_listed_chats_and_the_operators_terminal_are_admins() {
    let mut h = harness();
    assert_eq!(admin_flags(&say_in(&mut h, "testgw", "boss", "/cron")), [true]);
    assert_eq!(admin_flags(&say_in(&mut h, "testgw", "boss", "/status")), [true]);
    assert_eq!(admin_flags(&say_in(&mut h, "testgw", "visitor", "/cron")), [false]);
    assert_eq!(admin_flags(&say_in(&mut h, "other", "boss", "/cron")), [false], "transport counts");
    let operator = Capabilities { operator: true, ..Capabilities::default() };
    h.handle(Event::Gateway { transport: "cli".into(), caps: operator });
    assert_eq!(admin_flags(&say_in(&mut h, "cli", "ops", "/cron")), [true]);
}

#[test]
fn where_lists_this_transports_chats_for_admins_only() {
    let mut h = harness();
    say_in(&mut h, "testgw", "alice", "hello");
    say_in(&mut h, "other", "elsewhere", "hello");
    let effects = say_in(&mut h, "testgw", "boss", "/where");
    let text = notices(&effects)[0];
    assert!(text.contains("alice") && !text.contains("elsewhere"), "{text}");
    let effects = say_in(&mut h, "testgw", "visitor", "/where");
    assert!(notices(&effects)[0].starts_with("Only admin chats"), "{effects:?}");
}

#[test]
fn leave_sends_the_gateway_to_leave_a_chat_for_admins_only() {
    let mut h = harness();
    let effects = say_in(&mut h, "testgw", "boss", "/leave -100500");
    let left: Vec<&SessionKey> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(Outbound { key, kind: OutKind::LeaveChat, .. }) => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(left, [&SessionKey::new("testgw", "-100500", "")], "{effects:?}");
    let effects = say_in(&mut h, "testgw", "visitor", "/leave");
    assert!(
        effects
            .iter()
            .all(|e| !matches!(e, Effect::Send(Outbound { kind: OutKind::LeaveChat, .. })))
    );
    assert!(notices(&effects)[0].starts_with("Only admin chats"), "{effects:?}");
}
