//! Sub-agents in the machine: a chat of `telegram@researcher` is the
//! researcher's (its defaults, its workspace's memory and files, its name in
//! `/status`), and `/agents` and `/agent_*` are for admin chats only.

use super::*;
use crate::machine::{AgentCommand, AgentDefaults};

fn with_researcher() -> Harness {
    let mut config = config();
    let defaults =
        AgentDefaults { provider: "codex".into(), model: "gpt-5".into(), effort: String::new() };
    config.agents.insert("researcher".into(), defaults);
    harness_with(config)
}

fn say_in(h: &mut Harness, key: &SessionKey, text: &str) -> Vec<Effect> {
    h.events += 1;
    h.handle(Event::Inbound(Inbound {
        event_id: format!("e{}", h.events),
        key: key.clone(),
        sender_id: "u".into(),
        kind: InboundKind::Message { text: text.into(), reply_quote: String::new() },
    }))
}

#[test]
fn a_sub_agents_chat_runs_with_its_defaults_and_names_it() {
    let mut h = with_researcher();
    let theirs = SessionKey::new("tg@researcher", "100", "");
    let effects = say_in(&mut h, &theirs, "hello");
    let run = starts(&effects)[0].clone();
    assert_eq!((run.provider.as_str(), run.model.as_str()), ("codex", "gpt-5"));
    assert_eq!(run.agent, "researcher");
    let env: Vec<_> = run.extra_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert!(env.contains(&"DUCTOR_TRANSPORT=tg@researcher".to_owned()), "{env:?}");
    assert!(env.contains(&"DUCTOR_AGENT_NAME=researcher".to_owned()), "{env:?}");
    // The same chat id on the main agent's bot is another conversation, with main's defaults.
    let mine = say_in(&mut h, &key(), "hello");
    let run = starts(&mine)[0].clone();
    assert_eq!((run.provider.as_str(), run.agent.as_str()), ("claude", "main"));
    let status = say_in(&mut h, &theirs, "/status");
    let named = status.iter().any(|e| {
        matches!(e, Effect::Automation { request: AutomationRequest::Status(text), .. }
            if text.starts_with("Agent: researcher\nProvider: codex"))
    });
    assert!(named, "{status:?}");
}

#[test]
fn agent_commands_are_for_admin_chats() {
    let mut h = with_researcher();
    let boss = SessionKey::new("testgw", "boss", "");
    let listed = say_in(&mut h, &boss, "/agents");
    assert!(
        listed.iter().any(|e| matches!(e, Effect::Agents { command: AgentCommand::List, .. })),
        "{listed:?}"
    );
    let stop = say_in(&mut h, &boss, "/agent_stop researcher");
    let asked = stop.iter().any(|e| {
        matches!(e, Effect::Agents { command: AgentCommand::Stop(name), .. } if name == "researcher")
    });
    assert!(asked, "{stop:?}");
    let visitor = SessionKey::new("testgw", "visitor", "");
    let refused = say_in(&mut h, &visitor, "/agent_restart researcher");
    assert!(!refused.iter().any(|e| matches!(e, Effect::Agents { .. })), "{refused:?}");
    assert!(notices(&refused).iter().any(|n| n.contains("Only admin chats")), "{refused:?}");
    let unnamed = say_in(&mut h, &boss, "/agent_start");
    assert!(notices(&unnamed).iter().any(|n| n.contains("Name the agent")), "{unnamed:?}");
}
