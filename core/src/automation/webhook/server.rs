//! The webhook HTTP listener (`[webhooks]`): `GET /health` and
//! `POST /hooks/{id}`, checked in exactly this order, first failure answers:
//!
//! | check | answer |
//! |---|---|
//! | global rate limit | 429 `rate_limited` |
//! | `Content-Type: application/json` | 415 `content_type_must_be_json` |
//! | body within `max_body_bytes` | 413 `payload_too_large` |
//! | body is JSON | 400 `invalid_json` |
//! | body is a JSON object | 400 `body_must_be_object` |
//! | hook exists | 404 `hook_not_found` |
//! | hook enabled | 403 `hook_disabled` |
//! | auth | 401 `unauthorized` |
//! | journaled and queued | 202 `{"accepted":true,"hook_id":…}` |
//!
//! An accepted request is first written to the journal (`webhook_inbox` in
//! core's database), then put in a bounded queue and handled asynchronously;
//! the journal row goes when its run enters the history, in the same
//! transaction. A core that dies in between handles the request again at its
//! next start, so a 202 is never lost without a trace. When the journal
//! cannot be written or the queue is full the request is **not** accepted: it
//! gets 503 (`journal_unavailable`, `queue_full`) with `Retry-After`, so a
//! sender (GitHub, Stripe, … all retry on 5xx) never sees 202 for work that
//! is then dropped. Memory is bounded by the queue capacity times
//! `max_body_bytes` plus the rate-limit window.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ductor_daemon::sync::LockedRw as _;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::Verifier;
use super::ratelimit::SlidingWindow;
use super::{Webhook, template};
use crate::automation::clock::SharedClock;
use crate::automation::model::InvalidDefinition;
use crate::automation::store as db;
use crate::store::Store;

/// An accepted request, waiting to be handled.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    /// The hook as it was when the request was accepted.
    pub hook: Arc<Webhook>,
    /// The rendered, fenced prompt.
    pub prompt: String,
    /// When it was accepted.
    pub received_at: Timestamp,
    /// Its journal row, removed when its run enters the history (`None`:
    /// not journaled, e.g. `ductorctl webhook test`).
    pub inbox: Option<i64>,
    /// Accepted by an earlier core process and handled after a restart.
    pub replayed: bool,
}

impl WebhookEvent {
    /// Its trigger in the run history: `base`, marked when it was replayed.
    pub fn trigger(&self, base: &str) -> String {
        if self.replayed { format!("{base}:replayed") } else { base.to_owned() }
    }
}

struct LoadedHook {
    hook: Arc<Webhook>,
    verifier: Verifier,
}

/// The hooks the listener knows, swapped in whole or per hook when the store changes.
#[derive(Default)]
pub struct HookRegistry {
    hooks: RwLock<HashMap<String, Arc<LoadedHook>>>,
}

impl std::fmt::Debug for HookRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRegistry").finish_non_exhaustive()
    }
}

impl HookRegistry {
    /// Adds or replaces a hook.
    pub fn upsert(&self, hook: Webhook) -> Result<(), InvalidDefinition> {
        let loaded =
            Arc::new(LoadedHook { verifier: Verifier::new(&hook.auth)?, hook: Arc::new(hook) });
        self.write().insert(loaded.hook.id.clone(), loaded);
        Ok(())
    }

    /// Forgets a hook.
    pub fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    /// Replaces everything; hooks that fail to load are returned (and skipped).
    pub fn replace_all(&self, hooks: Vec<Webhook>) -> Vec<(String, InvalidDefinition)> {
        let mut map = HashMap::new();
        let mut failed = Vec::new();
        for hook in hooks {
            match Verifier::new(&hook.auth) {
                Ok(verifier) => {
                    map.insert(
                        hook.id.clone(),
                        Arc::new(LoadedHook { verifier, hook: Arc::new(hook) }),
                    );
                }
                Err(error) => failed.push((hook.id, error)),
            }
        }
        *self.write() = map;
        failed
    }

    /// The hook `id` as currently loaded.
    pub fn hook(&self, id: &str) -> Option<Arc<Webhook>> {
        self.get(id).map(|loaded| loaded.hook.clone())
    }

    fn get(&self, id: &str) -> Option<Arc<LoadedHook>> {
        self.hooks.read_locked().get(id).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<LoadedHook>>> {
        self.hooks.write_locked()
    }
}

/// Listener settings (from `[webhooks]`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Global limit.
    pub rate_limit_per_minute: u32,
    /// Accepted requests waiting to be handled.
    pub queue_capacity: usize,
}

impl ServerSettings {
    /// Settings from the config section, with the default queue capacity.
    pub fn from_config(config: &ductor_daemon::config::WebhooksConfig) -> Self {
        Self {
            max_body_bytes: config.max_body_bytes,
            rate_limit_per_minute: config.rate_limit_per_minute,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// Default depth of the accepted-request queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

#[derive(Clone)]
struct AppState {
    hooks: Arc<HookRegistry>,
    limiter: Arc<SlidingWindow>,
    queue: mpsc::Sender<WebhookEvent>,
    journal: Store,
    clock: SharedClock,
    max_body_bytes: usize,
}

/// The router, and the receiving end of its queue. Accepted requests are
/// journaled in `journal` (core's database, automation's migrations applied).
pub fn router(
    settings: &ServerSettings,
    hooks: Arc<HookRegistry>,
    clock: SharedClock,
    journal: Store,
) -> (Router, mpsc::Receiver<WebhookEvent>) {
    let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
    let state = AppState {
        hooks,
        limiter: Arc::new(SlidingWindow::new(settings.rate_limit_per_minute)),
        queue,
        journal,
        clock,
        max_body_bytes: settings.max_body_bytes,
    };
    let router = Router::new()
        .route("/health", get(health))
        .route("/hooks/{id}", post(receive))
        .with_state(state);
    (router, receiver)
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

fn reject(status: StatusCode, error: &'static str) -> Response {
    (status, axum::Json(json!({"error": error}))).into_response()
}

fn with_retry_after(mut response: Response, seconds: u32) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.limiter.allow(Instant::now()) {
        return with_retry_after(reject(StatusCode::TOO_MANY_REQUESTS, "rate_limited"), 60);
    }
    if !is_json(&headers) {
        return reject(StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type_must_be_json");
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.max_body_bytes) {
        return reject(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    let Ok(bytes) = axum::body::to_bytes(body, state.max_body_bytes).await else {
        return reject(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return reject(StatusCode::BAD_REQUEST, "invalid_json");
    };
    let Value::Object(payload) = value else {
        return reject(StatusCode::BAD_REQUEST, "body_must_be_object");
    };
    let Some(loaded) = state.hooks.get(&id) else {
        return reject(StatusCode::NOT_FOUND, "hook_not_found");
    };
    if !loaded.hook.enabled {
        return reject(StatusCode::FORBIDDEN, "hook_disabled");
    }
    let now = state.clock.now();
    if let Err(failure) = loaded.verifier.verify(&headers, &bytes, now.as_second()) {
        tracing::warn!(hook = %id, reason = %failure, "webhook request refused");
        return reject(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let prompt = template::wrap(
        &loaded.hook.title,
        &template::render(&loaded.hook.prompt_template, &payload),
    );
    drop(payload);
    let Some((inbox, prompt)) = journal(&state.journal, &id, now, prompt).await else {
        return with_retry_after(reject(StatusCode::SERVICE_UNAVAILABLE, "journal_unavailable"), 5);
    };
    let event = WebhookEvent {
        hook: loaded.hook.clone(),
        prompt,
        received_at: now,
        inbox: Some(inbox),
        replayed: false,
    };
    let refusal = match state.queue.try_send(event) {
        Ok(()) => {
            return (StatusCode::ACCEPTED, axum::Json(json!({"accepted": true, "hook_id": id})))
                .into_response();
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(hook = %id, "webhook queue full, asking the sender to retry");
            with_retry_after(reject(StatusCode::SERVICE_UNAVAILABLE, "queue_full"), 5)
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            reject(StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
        }
    };
    // Not accepted after all: the sender retries, so the journal must not replay it.
    if let Err(error) = on_journal(&state.journal, move |c| db::drop_event(c, inbox)).await {
        tracing::error!(%error, hook = %id, "failed to drop a refused webhook request from the journal");
    }
    refusal
}

/// Writes an accepted request to the journal; `None` (logged) when it cannot.
async fn journal(
    store: &Store,
    hook_id: &str,
    received_at: Timestamp,
    prompt: String,
) -> Option<(i64, String)> {
    let hook = hook_id.to_owned();
    on_journal(store, move |c| {
        db::journal_event(c, &hook, received_at, &prompt).map(|id| (id, prompt))
    })
    .await
    .inspect_err(|error| {
        tracing::error!(%error, hook = %hook_id, "failed to journal a webhook request");
    })
    .ok()
}

/// Runs `work` on the journal's connection; either layer's failure as text.
async fn on_journal<T: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, db::AutomationStoreError> + Send + 'static,
) -> Result<T, String> {
    match store.call(move |c| Ok(work(c))).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
