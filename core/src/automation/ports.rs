//! The heartbeat's view of core: chats with a session (read from the session
//! tables, never creating one) and check-ins through [`CoreHandle::inject`].
//!
//! A chat's "user activity" is its session's last activity. "Busy" is decided
//! where the turns are, atomically: the check-in is injected with
//! `skip_if_busy`, and core's state machine answers `busy` instead of queuing
//! it behind a running or queued turn.
//!
//! [`CoreHandle::inject`]: crate::driver::CoreHandle::inject

use jiff::Timestamp;

use super::engine::Automation;
use super::heartbeat::{ChatActivity, HeartbeatPort, PortFuture};
use super::model::ChatTarget;
use crate::machine::InjectOptions;
use crate::model::SessionKey;

/// [`HeartbeatPort`] over core.
#[derive(Debug)]
pub struct CorePort {
    automation: Automation,
}

impl CorePort {
    /// A port over `automation`'s core.
    pub fn new(automation: Automation) -> Self {
        Self { automation }
    }
}

impl HeartbeatPort for CorePort {
    fn chats(&self) -> PortFuture<Vec<ChatActivity>> {
        let automation = self.automation.clone();
        Box::pin(async move {
            let query = automation.db(|c| {
                let mut statement = c.prepare(
                    "SELECT s.transport, s.chat_id, s.topic_id, b.session_id, b.last_active_ms \
                     FROM sessions s LEFT JOIN session_buckets b ON b.skey = s.skey AND b.provider = s.provider \
                     WHERE s.transport != 'cli'",
                )?;
                let rows = statement.query_map([], |row| {
                    let session: Option<String> = row.get(3)?;
                    let active: Option<i64> = row.get(4)?;
                    Ok(ChatActivity {
                        chat: ChatTarget { transport: row.get(0)?, chat_id: row.get(1)?, topic_id: row.get(2)? },
                        has_session: session.is_some_and(|s| !s.is_empty()),
                        busy: false,
                        last_user_activity: active.and_then(|ms| Timestamp::from_millisecond(ms).ok()),
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            });
            match query.await {
                Ok(chats) => chats,
                Err(error) => {
                    tracing::error!(%error, "heartbeat: failed to read sessions");
                    Vec::new()
                }
            }
        })
    }

    fn check_in(&self, chat: ChatTarget, prompt: String, ack_token: String) -> PortFuture<()> {
        let core = self.automation.inner.core.clone();
        Box::pin(async move {
            let key = SessionKey::new(&chat.transport, &chat.chat_id, &chat.topic_id);
            let options = InjectOptions {
                kind: "heartbeat".into(),
                quiet_token: Some(ack_token),
                silent: true,
                skip_if_busy: true,
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
