//! The one way automation reaches the rest of core: a narrow port with the
//! four things it needs (a one-shot run, a durable delivery to a chat, a
//! prompt injected into a chat's session, and which chats have a session),
//! so automation never touches core's tables or the driver's internals.
//! [`CoreAccess`] is the port over the real driver and store.

use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;

use crate::driver::{CoreGone, CoreHandle};
use crate::machine::{InjectOptions, TurnOutcome};
use crate::model::{OutKind, SessionKey};
use crate::runner::{OneshotResult, OneshotSpec};
use crate::store::{self, Store, StoreError};

/// A boxed future of the port.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A chat that has talked to ductor, as automation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSession {
    /// The chat.
    pub key: SessionKey,
    /// Its active provider's bucket holds a provider session.
    pub has_session: bool,
    /// When that bucket was last used.
    pub last_active: Option<Timestamp>,
}

/// What automation needs from core.
pub trait CorePort: Send + Sync + std::fmt::Debug {
    /// Runs a one-shot prompt (no chat session) and returns its outcome.
    fn run_oneshot(&self, spec: OneshotSpec) -> PortFuture<'_, OneshotResult>;
    /// Sends a durable action to a chat; returns its outbox id.
    fn deliver(&self, key: SessionKey, kind: OutKind) -> PortFuture<'_, Result<u64, StoreError>>;
    /// Runs `prompt` in the chat's session under its lock; waits for the turn.
    fn inject(
        &self,
        key: SessionKey,
        prompt: String,
        options: InjectOptions,
    ) -> PortFuture<'_, Result<TurnOutcome, CoreGone>>;
    /// The chats of every transport but the terminal client's.
    fn chats(&self) -> PortFuture<'_, Result<Vec<ChatSession>, StoreError>>;
}

/// [`CorePort`] over the driver's handle and core's store.
#[derive(Debug, Clone)]
pub struct CoreAccess {
    handle: CoreHandle,
    store: Store,
}

impl CoreAccess {
    /// The port over `handle` and `store`.
    pub fn new(handle: CoreHandle, store: Store) -> Self {
        Self { handle, store }
    }
}

impl CorePort for CoreAccess {
    fn run_oneshot(&self, spec: OneshotSpec) -> PortFuture<'_, OneshotResult> {
        Box::pin(self.handle.run_oneshot(spec))
    }

    fn deliver(&self, key: SessionKey, kind: OutKind) -> PortFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.handle.deliver(key, kind))
    }

    fn inject(
        &self,
        key: SessionKey,
        prompt: String,
        options: InjectOptions,
    ) -> PortFuture<'_, Result<TurnOutcome, CoreGone>> {
        Box::pin(self.handle.inject(key, prompt, options))
    }

    fn chats(&self) -> PortFuture<'_, Result<Vec<ChatSession>, StoreError>> {
        Box::pin(async move {
            let rows = self.store.call(store::chat_activity).await?;
            Ok(rows
                .into_iter()
                .map(|row| ChatSession {
                    key: row.key,
                    has_session: row.session_id.is_some_and(|s| !s.is_empty()),
                    last_active: row
                        .last_active_ms
                        .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
                })
                .collect())
        })
    }
}
