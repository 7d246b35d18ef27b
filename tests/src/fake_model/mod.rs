//! A fake model API on loopback (Anthropic Messages, OpenAI Responses, Gemini
//! `generateContent`), so the real claude, codex and gemini CLIs can run whole turns
//! offline. Replies are scripted by keywords in the last user prompt (see [`Scenario`]),
//! and every request is recorded so tests can assert on what a CLI sent (for example that
//! a resumed turn carries the first turn's history).

mod anthropic;
mod gemini;
mod openai;
mod script;
mod stream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ductor_daemon::sync::Locked as _;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use script::{
    ERROR_MESSAGE, RISKY_COMMAND, RISKY_FILE, Scenario, TOOL_COMMAND, TOOL_DONE_TEXT,
};

/// Which model API a request was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Anthropic,
    OpenAi,
    Gemini,
    /// Anything else (health probes, unknown paths).
    Other,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub api: Api,
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// The JSON body (`Null` when there was none, a string when it was not JSON).
    pub body: serde_json::Value,
    /// The user prompt the reply was scripted on, when one was found.
    pub prompt: Option<String>,
    pub scenario: Scenario,
}

impl RecordedRequest {
    /// Whether the serialized body contains `needle` anywhere (history, tool results…).
    pub fn body_contains(&self, needle: &str) -> bool {
        match &self.body {
            serde_json::Value::String(raw) => raw.contains(needle),
            body => body.to_string().contains(needle),
        }
    }

    /// Whether this was a model turn (a streamed or unary generation call).
    pub fn is_generation(&self) -> bool {
        self.api != Api::Other && self.scenario != Scenario::Router && self.method == "POST"
    }
}

/// How the `slow` scenario streams: `chunks` text chunks, `delay` apart.
#[derive(Debug, Clone, Copy)]
pub struct SlowPace {
    pub chunks: usize,
    pub delay: Duration,
}

impl Default for SlowPace {
    fn default() -> Self {
        // Ten seconds in total: long enough that an interrupt clearly lands mid-stream on a
        // loaded machine; a test that interrupts never waits for the whole of it.
        SlowPace { chunks: 50, delay: Duration::from_millis(200) }
    }
}

/// What the fake has done so far; tests wait on changes of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Requests received.
    pub requests: usize,
    /// Response chunks written to clients (all streams together).
    pub chunks_sent: usize,
    /// Streams whose client hung up before the last chunk.
    pub streams_aborted: usize,
}

pub(crate) struct State {
    log: Mutex<Vec<RecordedRequest>>,
    progress: watch::Sender<Progress>,
    slow: SlowPace,
}

impl State {
    fn log(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A panic while holding the lock only happens in a failing test; the log is
        // still the best evidence there is, so keep using it.
        self.log.locked()
    }

    fn record(&self, request: RecordedRequest) {
        self.log().push(request);
        self.progress.send_modify(|p| p.requests += 1);
    }

    pub(crate) fn chunk_sent(&self) {
        self.progress.send_modify(|p| p.chunks_sent += 1);
    }

    pub(crate) fn stream_aborted(&self) {
        self.progress.send_modify(|p| p.streams_aborted += 1);
    }

    pub(crate) fn slow(&self) -> SlowPace {
        self.slow
    }
}

/// A running fake model server; stops when dropped.
pub struct FakeModel {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeModel {
    /// Starts a server on 127.0.0.1 with an OS-assigned port.
    pub async fn start() -> std::io::Result<FakeModel> {
        FakeModel::start_on(0, SlowPace::default()).await
    }

    /// Starts a server on 127.0.0.1:`port` (0 = any free port) with a custom slow pace.
    pub async fn start_on(port: u16, slow: SlowPace) -> std::io::Result<FakeModel> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            log: Mutex::new(Vec::new()),
            progress: watch::Sender::new(Progress::default()),
            slow,
        });
        let app = Router::new().fallback(handle).with_state(Arc::clone(&state));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("fake model server stopped with an error: {err}");
            }
        });
        Ok(FakeModel { addr, state, shutdown: Some(shutdown), task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a path: the value for `ANTHROPIC_BASE_URL` and
    /// `GOOGLE_GEMINI_BASE_URL`. Codex wants `{base_url}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log().clone()
    }

    /// Model-turn requests only (no router calls, probes or unknown paths).
    pub fn generations(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(RecordedRequest::is_generation).collect()
    }

    pub fn progress(&self) -> Progress {
        *self.state.progress.borrow()
    }

    /// Waits until `done(progress)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Progress) -> bool,
    ) -> bool {
        let mut rx = self.state.progress.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| done(p)))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// A receiver that changes whenever a request arrives or a chunk is sent.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.state.progress.subscribe()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Graceful shutdown waits for open streams; a dropped fake must not linger.
        self.task.abort();
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let path_and_query =
        uri.path_and_query().map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let json = parse_body(&body);
    let mut record = RecordedRequest {
        api: Api::Other,
        method: method.to_string(),
        path: path_and_query,
        body: json.clone(),
        prompt: None,
        scenario: Scenario::Text,
    };

    route(&state, &mut record, &method, &path, &headers, &body, &json)
}

/// Where a request goes, decided before anything is answered.
enum Route {
    WebSocketUpgrade,
    Hello,
    NotFound,
    AnthropicCountTokens,
    Anthropic(script::Turn),
    OpenAi(script::Turn),
    Gemini { model: String, action: String, turn: script::Turn },
}

/// Picks the API by path and scripts the reply; the request is recorded before any chunk
/// of the reply is written, so a test that saw a chunk also sees the request.
fn route(
    state: &Arc<State>,
    record: &mut RecordedRequest,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    json: &serde_json::Value,
) -> Response {
    let route = classify(method, path, headers, json);
    match &route {
        Route::WebSocketUpgrade => record.api = Api::OpenAi,
        Route::Hello | Route::NotFound => {}
        Route::AnthropicCountTokens => {
            (record.api, record.scenario) = (Api::Anthropic, Scenario::Router);
        }
        Route::Anthropic(turn) | Route::OpenAi(turn) => {
            record.api = match route {
                Route::Anthropic(_) => Api::Anthropic,
                _ => Api::OpenAi,
            };
            (record.prompt, record.scenario) = (turn.prompt.clone(), turn.scenario);
        }
        Route::Gemini { action, turn, .. } => {
            record.api = Api::Gemini;
            record.prompt = turn.prompt.clone();
            record.scenario = gemini::scenario(action, json, turn);
        }
    }
    state.record(record.clone());
    match route {
        // Codex tries a WebSocket first with the built-in provider; 426 makes it fall back
        // to plain HTTPS POSTs.
        Route::WebSocketUpgrade => {
            (StatusCode::UPGRADE_REQUIRED, "websocket not supported").into_response()
        }
        Route::Hello => StatusCode::OK.into_response(),
        Route::NotFound => not_found(path),
        Route::AnthropicCountTokens => anthropic::count_tokens(body),
        Route::Anthropic(turn) => anthropic::respond(state, json, &turn),
        Route::OpenAi(turn) => openai::respond(state, json, &turn),
        Route::Gemini { model, action, turn } => {
            gemini::respond(state, &model, &action, json, &turn)
        }
    }
}

fn classify(method: &Method, path: &str, headers: &HeaderMap, json: &serde_json::Value) -> Route {
    if path == "/v1/responses" && is_websocket_upgrade(headers) {
        Route::WebSocketUpgrade
    } else if path == "/api/hello" {
        Route::Hello
    } else if method != Method::POST {
        Route::NotFound
    } else if path == "/v1/messages/count_tokens" {
        Route::AnthropicCountTokens
    } else if path == "/v1/messages" {
        Route::Anthropic(script::anthropic_turn(json))
    } else if path == "/v1/responses" {
        Route::OpenAi(script::openai_turn(json))
    } else if let Some((model, action)) = gemini::split_path(path) {
        Route::Gemini {
            model: model.to_owned(),
            action: action.to_owned(),
            turn: script::gemini_turn(json),
        }
    } else {
        Route::NotFound
    }
}

fn parse_body(body: &Bytes) -> serde_json::Value {
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn not_found(path: &str) -> Response {
    let body =
        serde_json::json!({"error": {"message": format!("fake model: no route for {path}")}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
