//! The webhook HTTP listener (`[webhooks]`): `GET /health` and
//! `POST /hooks/{id}`, checked in exactly this order, first failure answers:
//!
//! | check | answer |
//! |---|---|
//! | `Content-Type: application/json` | 415 `content_type_must_be_json` |
//! | body within `max_body_bytes` | 413 `payload_too_large` |
//! | body is JSON | 400 `invalid_json` |
//! | body is a JSON object | 400 `body_must_be_object` |
//! | hook exists, is enabled, and auth holds | 401 `unauthorized` (the same answer for all three: no way to learn which hooks exist) |
//! | the hook's rate limit | 429 `rate_limited` + `Retry-After` |
//! | not a replay of a signed delivery | 200 `{"accepted":false,"duplicate":true}` |
//! | journaled and queued | 202 `{"accepted":true,"hook_id":…}` |
//!
//! Nothing is counted before authentication, so junk requests cannot use up
//! a real sender's allowance; connections are bounded before HTTP sees them
//! ([`super::listener`]: per address, in total, idle and lifetime timeouts).
//!
//! An accepted request is first written to the journal (`webhook_inbox` in
//! core's database), then put in a bounded queue and handled asynchronously;
//! the journal row goes when its run enters the history, in the same
//! transaction. A core that dies in between handles the request again at its
//! next start, so a 202 is never lost without a trace. When the journal
//! cannot be written or the queue is full the request is **not** accepted: it
//! gets 503 (`journal_unavailable`, `queue_full`) with `Retry-After`, so a
//! sender (GitHub, Stripe, … all retry on 5xx) never sees 202 for work that
//! is then dropped. Memory is bounded by the connection limit times
//! `max_body_bytes`, the queue, and the per-hook windows.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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
use super::listener::{BoundedListener, ConnectionLimits};
use super::ratelimit::{PerHook, ReplayGuard};
use super::{HookAuth, Webhook, template};
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
    /// Authenticated requests per minute, per hook.
    pub rate_limit_per_minute: u32,
    /// Accepted requests waiting to be handled.
    pub queue_capacity: usize,
    /// How long a signed delivery is remembered against replays.
    pub replay_window: Duration,
    /// The bounds on connections.
    pub connections: ConnectionLimits,
}

impl ServerSettings {
    /// Settings from the config section, with the default queue capacity.
    pub fn from_config(config: &ductor_daemon::config::WebhooksConfig) -> Self {
        let seconds = |s: u32| Duration::from_secs(u64::from(s));
        Self {
            max_body_bytes: config.max_body_bytes,
            rate_limit_per_minute: config.rate_limit_per_minute,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            replay_window: seconds(config.replay_window_seconds),
            connections: ConnectionLimits {
                max_connections: config.max_connections as usize,
                per_address: config.max_connections_per_address as usize,
                idle: seconds(config.idle_timeout_seconds),
                lifetime: seconds(config.connection_lifetime_seconds),
            },
        }
    }
}

/// Default depth of the accepted-request queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

#[derive(Clone)]
struct AppState {
    hooks: Arc<HookRegistry>,
    limits: Arc<PerHook>,
    replays: Arc<ReplayGuard>,
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
        limits: Arc::new(PerHook::new(settings.rate_limit_per_minute)),
        replays: Arc::new(ReplayGuard::new(settings.replay_window)),
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

/// Serves `router` on `listener`, its connections bounded by `limits`, until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(BoundedListener::new(listener, limits), router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
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
    let now = state.clock.now();
    let loaded = match state.hooks.get(&id) {
        Some(loaded) if loaded.hook.enabled => loaded,
        found => {
            let why = if found.is_some() { "disabled" } else { "unknown" };
            tracing::warn!(hook = %id, "webhook request for an {why} hook refused");
            return reject(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    };
    if let Err(failure) = loaded.verifier.verify(&headers, &bytes, now.as_second()) {
        tracing::warn!(hook = %id, reason = %failure, "webhook request refused");
        return reject(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    if !state.limits.allow(&id, Instant::now()) {
        return with_retry_after(reject(StatusCode::TOO_MANY_REQUESTS, "rate_limited"), 60);
    }
    let delivery = delivery_key(&loaded.hook.auth, &headers);
    if let Some(key) = &delivery
        && !state.replays.first(&id, key, Instant::now())
    {
        tracing::warn!(hook = %id, "a replayed webhook delivery was ignored");
        return (StatusCode::OK, axum::Json(json!({"accepted": false, "duplicate": true})))
            .into_response();
    }
    let prompt = template::wrap(
        &loaded.hook.title,
        &template::render(&loaded.hook.prompt_template, &payload),
    );
    drop(payload);
    let Some((inbox, prompt)) = journal(&state.journal, &id, now, prompt).await else {
        if let Some(key) = &delivery {
            state.replays.forget(&id, key);
        }
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
    // Not accepted after all: the sender retries, so neither the journal nor
    // the replay guard may hold it.
    if let Some(key) = &delivery {
        state.replays.forget(&id, key);
    }
    if let Err(error) = on_journal(&state.journal, move |c| db::drop_event(c, inbox)).await {
        tracing::error!(%error, hook = %id, "failed to drop a refused webhook request from the journal");
    }
    refusal
}

/// What identifies one delivery, for replay protection: the sender's
/// delivery id (`X-GitHub-Delivery`, `Idempotency-Key`), else a signed
/// hook's signature header (with Slack's timestamp). Bearer requests without
/// an id have none: a bearer token proves the sender, not the delivery.
fn delivery_key(auth: &HookAuth, headers: &HeaderMap) -> Option<String> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(id) = ["x-github-delivery", "idempotency-key"].iter().find_map(|h| value(h)) {
        return Some(format!("id:{id}"));
    }
    let HookAuth::Hmac(settings) = auth else { return None };
    let signature = value(&settings.header)?;
    let stamp = value(super::auth::SLACK_TIMESTAMP_HEADER).unwrap_or("");
    Some(format!("sig:{stamp}:{signature}"))
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
