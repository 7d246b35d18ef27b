//! The heartbeat's view of core, over automation's [`CorePort`]: chats with
//! a session (never creating one) and check-ins through
//! [`CorePort::inject`].
//!
//! A chat's "user activity" is its session's last activity. "Busy" is decided
//! where the turns are, atomically: the check-in is injected with
//! `skip_if_busy`, and core's state machine answers `busy` instead of queuing
//! it behind a running or queued turn.

use std::sync::Arc;

use super::core_port::CorePort;
use super::heartbeat::{ChatActivity, HeartbeatPort, PortFuture};
use super::model::ChatTarget;
use crate::machine::InjectOptions;
use crate::model::SessionKey;

/// [`HeartbeatPort`] over core.
#[derive(Debug)]
pub struct HeartbeatCore {
    core: Arc<dyn CorePort>,
}

impl HeartbeatCore {
    /// The heartbeat's port over `core`.
    pub fn new(core: Arc<dyn CorePort>) -> Self {
        Self { core }
    }
}

impl HeartbeatPort for HeartbeatCore {
    fn chats(&self) -> PortFuture<Vec<ChatActivity>> {
        let core = self.core.clone();
        Box::pin(async move {
            match core.chats().await {
                Ok(chats) => chats
                    .into_iter()
                    .map(|chat| ChatActivity {
                        chat: ChatTarget {
                            transport: chat.key.transport,
                            chat_id: chat.key.chat_id,
                            topic_id: chat.key.topic_id,
                        },
                        has_session: chat.has_session,
                        busy: false,
                        last_user_activity: chat.last_active,
                    })
                    .collect(),
                Err(error) => {
                    tracing::error!(%error, "heartbeat: failed to read sessions");
                    Vec::new()
                }
            }
        })
    }

    fn check_in(&self, chat: ChatTarget, prompt: String, ack_token: String) -> PortFuture<()> {
        let core = self.core.clone();
        Box::pin(async move {
            let key = SessionKey::new(&chat.transport, &chat.chat_id, &chat.topic_id);
            let options = InjectOptions {
                kind: "heartbeat".into(),
                quiet_token: Some(ack_token),
                silent: true,
                skip_if_busy: true,
                hidden: false,
            };
            match core.inject(key, prompt, options).await {
                Ok(outcome) if outcome.error_kind == "busy" => {
                    tracing::debug!(chat = %chat, "heartbeat skipped: a turn is running");
                }
                Ok(outcome) if !outcome.ok => {
                    tracing::warn!(chat = %chat, kind = outcome.error_kind, "heartbeat check-in failed");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(chat = %chat, %error, "heartbeat check-in not run"),
            }
        })
    }
}
