//! The shared fake core (`ductor_gateway_link::testing`) served on the real
//! core socket of a temporary `$DUCTOR_HOME`, as the Matrix tests use it
//! (start, stop, start again) in `tests/synapse.rs` and `tests/mock.rs`, and
//! the scripts that answer the bot's users.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use ductor_daemon::DuctorHome;
use ductor_gateway_link::testing::{self, Serving};
use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;

pub use ductor_gateway_link::testing::{Script, final_reply};

/// A fake core serving on a home's socket; derefs to the shared fake.
pub struct FakeCore {
    core: testing::FakeCore,
    serving: Option<Serving>,
}

impl FakeCore {
    /// Serves on `home`'s core socket until stopped or dropped.
    pub async fn start(home: &DuctorHome, script: Script) -> Self {
        Self::start_paced(home, script, Duration::ZERO).await
    }

    /// Like [`FakeCore::start`], sending a turn's actions `pace` apart (a
    /// model that streams slowly).
    pub async fn start_paced(home: &DuctorHome, script: Script, pace: Duration) -> Self {
        let core = testing::FakeCore::paced(script, pace);
        let serving = Some(core.serve(home).await);
        Self { core, serving }
    }

    /// A placeholder that serves nothing (to be replaced by [`FakeCore::start`]).
    pub fn start_later() -> Self {
        Self { core: testing::FakeCore::default(), serving: None }
    }

    /// Stops serving and waits until the socket is closed (a core going down).
    pub async fn stop(mut self) {
        if let Some(serving) = self.serving.take() {
            serving.stop().await;
        }
    }
}

impl Deref for FakeCore {
    type Target = testing::FakeCore;

    fn deref(&self) -> &testing::FakeCore {
        &self.core
    }
}

/// The default script: `/model` opens a selector, `stream` plays a streamed
/// turn with a tool call, a button press is confirmed, a file is described,
/// anything else is echoed.
pub fn default_script() -> Script {
    Arc::new(|event| match &event.kind {
        Some(pb::inbound_event::Kind::Message(m)) if m.text == "/model" => {
            vec![Kind::Selector(pb::SelectorMenu {
                selector_id: "model".into(),
                text: "Pick a **model**".into(),
                buttons: vec![
                    pb::ButtonRow {
                        buttons: vec![pb::Button { id: "ms:opus".into(), label: "opus".into() }],
                    },
                    pb::ButtonRow {
                        buttons: vec![pb::Button {
                            id: "ms:sonnet".into(),
                            label: "sonnet".into(),
                        }],
                    },
                ],
            })]
        }
        Some(pb::inbound_event::Kind::Message(m)) if m.text == "stream" => vec![
            Kind::TurnStarted(pb::TurnStarted { provider: "claude".into(), model: "opus".into() }),
            Kind::TextDelta(pb::TextDeltaAction { text: "Looking ".into() }),
            Kind::TextDelta(pb::TextDeltaAction { text: "around.".into() }),
            Kind::Tool(pb::ToolActivity {
                name: "Bash".into(),
                summary: "ls".into(),
                finished: false,
                ok: false,
            }),
            Kind::Tool(pb::ToolActivity {
                name: "Bash".into(),
                summary: "ls".into(),
                finished: true,
                ok: true,
            }),
            Kind::TextDelta(pb::TextDeltaAction { text: "All **done**.".into() }),
            Kind::FinalReply(pb::FinalReply {
                text: "All **done**.".into(),
                footer: "opus".into(),
                notify: true,
                ..Default::default()
            }),
        ],
        Some(pb::inbound_event::Kind::Message(m)) => {
            vec![final_reply(&format!("echo: {}", m.text))]
        }
        Some(pb::inbound_event::Kind::Button(b)) => {
            vec![final_reply(&format!("pressed {}", b.button_id))]
        }
        Some(pb::inbound_event::Kind::Media(media)) => {
            vec![final_reply(&format!(
                "got {} ({} bytes)",
                media.original_filename, media.size_bytes
            ))]
        }
        None => Vec::new(),
    })
}
