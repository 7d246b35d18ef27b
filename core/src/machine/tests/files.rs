//! `/showfiles`: admin chats browse the workspace with buttons and get the
//! file they press; other chats are refused.

use super::*;

fn in_chat(h: &mut Harness, chat: &str, kind: InboundKind) -> Vec<Effect> {
    h.events += 1;
    h.handle(Event::Inbound(Inbound {
        event_id: format!("e{}", h.events),
        key: SessionKey::new("testgw", chat, ""),
        sender_id: "u".into(),
        kind,
    }))
}

fn text(t: &str) -> InboundKind {
    InboundKind::Message { text: t.into(), reply_quote: String::new() }
}

fn press(id: &str) -> InboundKind {
    InboundKind::Button { button_id: id.into() }
}

fn menu(effects: &[Effect]) -> (String, Vec<(String, String)>) {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Send(Outbound {
                kind: OutKind::Selector { selector_id, text, buttons },
                ..
            }) if selector_id == "showfiles" => {
                let flat =
                    buttons.iter().flatten().map(|b| (b.id.clone(), b.label.clone())).collect();
                Some((text.clone(), flat))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no listing: {effects:?}"))
}

fn id_of(buttons: &[(String, String)], label: &str) -> String {
    buttons.iter().find(|(_, l)| l.contains(label)).map(|(id, _)| id.clone()).expect(label)
}

#[test]
fn an_admin_chat_walks_the_workspace_and_gets_the_file_it_presses() {
    let mut h = harness();
    let (text_0, buttons) = menu(&in_chat(&mut h, "boss", text("/showfiles")));
    assert!(text_0.contains("2 folders, 1 files"), "{text_0}");
    assert!(buttons[0].1.contains("output_to_user"), "{buttons:?}");
    assert!(buttons.iter().any(|(_, l)| l == "📄 notes.md (2.0 KB)"), "{buttons:?}");

    let (_, inside) = menu(&in_chat(&mut h, "boss", press(&id_of(&buttons, "output_to_user"))));
    assert_eq!(inside[0].0, "sf:up");
    let effects = in_chat(&mut h, "boss", press(&id_of(&inside, "report.png")));
    let sent = finals(&effects);
    assert_eq!(sent[0].files[0].path, "/ws/output_to_user/report.png", "{effects:?}");

    let (back, _) = menu(&in_chat(&mut h, "boss", press("sf:up")));
    assert!(back.starts_with("📂 workspace/\n"), "{back}");
}

#[test]
fn other_chats_are_refused_and_stale_buttons_do_nothing() {
    let mut h = harness();
    let effects = in_chat(&mut h, "visitor", text("/showfiles"));
    assert!(notices(&effects)[0].contains("Only admin chats"), "{effects:?}");
    let effects = in_chat(&mut h, "visitor", press("sf:f0"));
    assert!(finals(&effects).is_empty());
    let effects = in_chat(&mut h, "boss", press("sf:f0"));
    assert!(notices(&effects)[0].contains("/showfiles again"), "{effects:?}");
    let effects = in_chat(&mut h, "boss", text("/showfiles nowhere"));
    assert!(notices(&effects)[0].contains("Cannot open /nowhere"), "{effects:?}");
}
