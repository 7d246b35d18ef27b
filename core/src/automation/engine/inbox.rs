//! Webhook requests an earlier core process accepted but never started.
//!
//! The listener journals every request before it answers 202, and the
//! journal row goes in the same transaction that writes the request's run
//! into the history. So at startup the journal holds exactly the requests a
//! crash (or a stop) caught between those two points; they are handled now,
//! marked `…:replayed` in the history. A request whose hook was removed in
//! the meantime cannot run: it becomes a failed run in the history, listed
//! with the automation failures after `/status`, instead of vanishing.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Automation, AutomationError, WEBHOOK_CONCURRENCY};
use crate::automation::model::{DeliveryStatus, RunKind};
use crate::automation::store::{self as db, InboxEntry};
use crate::automation::webhook::server::WebhookEvent;

/// Status of a journaled request whose hook no longer exists.
const HOOK_REMOVED: &str = "error:hook_removed";

impl Automation {
    /// Handles the journaled requests in the background; returns how many.
    pub(super) async fn replay_journal(&self) -> Result<usize, AutomationError> {
        let pending = self.db(db::pending_events).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        tracing::warn!(
            count = pending.len(),
            "handling webhook requests accepted before core restarted"
        );
        let mut events = Vec::with_capacity(pending.len());
        for entry in &pending {
            match self.inner.hooks.hook(&entry.hook_id) {
                Some(hook) => events.push(WebhookEvent {
                    hook,
                    prompt: entry.prompt.clone(),
                    received_at: entry.received_at,
                    inbox: Some(entry.id),
                    replayed: true,
                }),
                None => self.record_orphan(entry.clone()).await?,
            }
        }
        // In the background: a `wake` turn can take minutes, startup must not wait.
        let this = self.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(WEBHOOK_CONCURRENCY));
            for event in events {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let one = this.clone();
                tokio::spawn(async move {
                    one.handle_webhook(event).await;
                    drop(permit);
                });
            }
        });
        Ok(pending.len())
    }

    /// A journaled request for a hook that is gone: a failed run in the history.
    async fn record_orphan(&self, entry: InboxEntry) -> Result<(), AutomationError> {
        tracing::error!(
            hook = entry.hook_id,
            "a webhook request was accepted for a hook removed since"
        );
        let now = self.inner.clock.now();
        self.db(move |c| {
            db::claiming(c, Some(entry.id), |c| {
                let why = "the hook was removed before the request was handled";
                let run = db::start_run(
                    c,
                    RunKind::Webhook,
                    &entry.hook_id,
                    "webhook:replayed",
                    entry.received_at,
                    now,
                    "running",
                )?;
                db::finish_run(c, run, now, HOOK_REMOVED, why)?;
                db::set_delivery(c, run, DeliveryStatus::Failed, why)
            })
        })
        .await
    }
}
