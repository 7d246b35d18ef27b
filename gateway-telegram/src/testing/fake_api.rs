//! The fake Bot API server: axum on 127.0.0.1, one shared state.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use ductor_daemon::sync::Locked as _;
use serde_json::{Value, json};

/// The bot the fake pretends to be.
pub const BOT_ID: i64 = 42;
/// Its username.
pub const BOT_USERNAME: &str = "ductor_test_bot";

/// One recorded Bot API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method name, lower-case (`sendmessage`, `editmessagetext`, …).
    pub method: String,
    /// `chat_id` of the call, when it has one.
    pub chat_id: Option<i64>,
    /// All parameters (multipart text fields as JSON where they parse).
    pub params: Value,
    /// When the fake received it.
    pub at: Instant,
    /// Whether the fake answered with success.
    pub ok: bool,
    /// The id of the message a successful send created.
    pub message_id: Option<i64>,
}

impl Call {
    /// A string parameter.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }

    /// An integer parameter.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.params
            .get(key)
            .and_then(|value| value.as_i64().or_else(|| value.as_str()?.parse().ok()))
    }

    /// `disable_notification` as sent (false when absent).
    pub fn silent(&self) -> bool {
        self.params
            .get("disable_notification")
            .is_some_and(|value| value == &json!(true) || value == &json!("true"))
    }
}

/// How an injected failure answers.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// 429 Too Many Requests with `retry_after` seconds.
    RetryAfter(u32),
    /// 400 "can't parse entities" (only for calls with `parse_mode` HTML).
    BadEntities,
    /// 400 "message is not modified".
    NotModified,
}

/// A failure answered to the next `times` matching calls.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Lower-case method name.
    pub method: String,
    /// Only calls for this chat, or any chat.
    pub chat_id: Option<i64>,
    pub kind: FaultKind,
    pub times: u32,
}

#[derive(Default)]
struct Inner {
    pending: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    calls: Vec<Call>,
    texts: HashMap<(i64, i64), String>,
    faults: Vec<Fault>,
    /// file_id → (file_path, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    updates: tokio::sync::Notify,
}

/// A running fake Bot API. Dropping it stops the server.
pub struct FakeBotApi {
    /// Base URL for `[telegram].api_url`.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeBotApi {
    /// Starts the fake on a free loopback port, accepting `token`.
    pub async fn start(token: &str) -> Self {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            inner: Mutex::new(Inner {
                next_update_id: 1,
                next_message_id: 1000,
                ..Inner::default()
            }),
            updates: tokio::sync::Notify::new(),
        });
        let router = Router::new()
            .route("/file/{bot}/{*path}", get(file))
            .route("/{bot}/{method}", any(method))
            .with_state(shared.clone());
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound listener has an address");
        // Like Telegram's servers, answer without Nagle delays.
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                let _ = tcp.set_nodelay(true);
            });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url: format!("http://{address}"), shared, server }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.locked()
    }

    /// Queues an update for getUpdates; returns its `update_id`.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut inner = self.inner();
            let id = inner.next_update_id;
            inner.next_update_id += 1;
            update["update_id"] = json!(id);
            inner.pending.push_back(update);
            id
        };
        self.shared.updates.notify_waiters();
        id
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// Calls of one method (lower-case name).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.inner().calls.iter().filter(|call| call.method == method).cloned().collect()
    }

    /// The current text of a message the fake sent.
    pub fn text_of(&self, chat_id: i64, message_id: i64) -> Option<String> {
        self.inner().texts.get(&(chat_id, message_id)).cloned()
    }

    /// Makes the next matching calls fail.
    pub fn inject(&self, fault: Fault) {
        self.inner().faults.push(fault);
    }

    /// Registers a downloadable file.
    pub fn add_file(&self, file_id: &str, file_path: &str, bytes: Vec<u8>) {
        self.inner().files.insert(file_id.to_owned(), (file_path.to_owned(), bytes));
    }

    /// Waits until `check` holds on the recorded calls; false on timeout.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&[Call]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.inner().calls) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({ "ok": true, "result": result }))).into_response()
}

fn error(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(body))
        .into_response()
}

async fn params_of(request: Request) -> Value {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/"));
    if is_multipart {
        let mut fields = serde_json::Map::new();
        if let Ok(mut multipart) = Multipart::from_request(request, &()).await {
            while let Ok(Some(field)) = multipart.next_field().await {
                let name = field.name().unwrap_or("").to_owned();
                let file_name = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.unwrap_or_default();
                let value = match file_name {
                    Some(file_name) => json!({ "file_name": file_name, "size": bytes.len() }),
                    None => {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    }
                };
                fields.insert(name, value);
            }
        }
        // `"document": "attach://<part>"` names the part holding the file.
        let attached: Vec<(String, Value)> = fields
            .iter()
            .filter_map(|(key, value)| {
                let part = value.as_str()?.strip_prefix("attach://")?;
                Some((key.clone(), fields.get(part)?.clone()))
            })
            .collect();
        for (key, value) in attached {
            fields.insert(key, value);
        }
        return Value::Object(fields);
    }
    let bytes = axum::body::to_bytes(request.into_body(), 64 << 20).await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}))
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if bot != format!("bot{}", shared.token) {
        return error(401, "Unauthorized", None);
    }
    let method = method.to_lowercase();
    let params = params_of(request).await;
    if method == "getupdates" {
        return get_updates(&shared, &params).await;
    }
    let chat_id = params
        .get("chat_id")
        .and_then(|value| value.as_i64().or_else(|| value.as_str()?.parse().ok()));
    let mut inner = shared.inner.locked();
    let before = inner.next_message_id;
    let fault = take_fault(&mut inner, &method, chat_id, &params);
    let response = match fault {
        Some(FaultKind::RetryAfter(seconds)) => error(
            429,
            &format!("Too Many Requests: retry after {seconds}"),
            Some(json!({ "retry_after": seconds })),
        ),
        Some(FaultKind::BadEntities) => error(
            400,
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"",
            None,
        ),
        Some(FaultKind::NotModified) => error(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
            None,
        ),
        None => answer(&mut inner, &method, chat_id, &params),
    };
    let ok = response.status().is_success();
    let message_id = (inner.next_message_id != before).then_some(inner.next_message_id);
    inner.calls.push(Call { method, chat_id, params, at: Instant::now(), ok, message_id });
    response
}

fn take_fault(
    inner: &mut Inner,
    method: &str,
    chat_id: Option<i64>,
    params: &Value,
) -> Option<FaultKind> {
    let html = params.get("parse_mode").and_then(Value::as_str) == Some("HTML");
    let index = inner.faults.iter().position(|fault| {
        fault.method == method
            && fault.times > 0
            && (fault.chat_id.is_none() || fault.chat_id == chat_id)
            && (fault.kind != FaultKind::BadEntities || html)
    })?;
    let fault = &mut inner.faults[index];
    fault.times -= 1;
    let kind = fault.kind.clone();
    if fault.times == 0 {
        inner.faults.remove(index);
    }
    Some(kind)
}

fn bot_user() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "Ductor", "username": BOT_USERNAME })
}

fn sent_message(chat_id: i64, message_id: i64, params: &Value) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": 1_700_000_000,
        "chat": super::updates::chat(chat_id),
        "from": bot_user(),
    });
    if let Some(text) = params.get("text") {
        message["text"] = text.clone();
    }
    if let Some(thread) = params.get("message_thread_id") {
        message["message_thread_id"] = thread.clone();
        message["is_topic_message"] = json!(true);
    }
    message
}

fn answer(inner: &mut Inner, method: &str, chat_id: Option<i64>, params: &Value) -> Response {
    match method {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Ductor", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false,
        })),
        "getwebhookinfo" => {
            ok(json!({ "url": "", "has_custom_certificate": false, "pending_update_count": 0 }))
        }
        "deletewebhook"
        | "setmycommands"
        | "deletemycommands"
        | "sendchataction"
        | "answercallbackquery"
        | "leavechat"
        | "deletemessage" => ok(json!(true)),
        "sendmessage" | "sendphoto" | "senddocument" => {
            let Some(chat_id) = chat_id else {
                return error(400, "Bad Request: chat_id is empty", None);
            };
            inner.next_message_id += 1;
            let id = inner.next_message_id;
            let text = params.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
            inner.texts.insert((chat_id, id), text);
            ok(sent_message(chat_id, id, params))
        }
        "editmessagetext" => {
            let (Some(chat_id), Some(id)) =
                (chat_id, params.get("message_id").and_then(Value::as_i64))
            else {
                return error(400, "Bad Request: message to edit not found", None);
            };
            let text = params.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
            match inner.texts.get_mut(&(chat_id, id)) {
                None => error(400, "Bad Request: message to edit not found", None),
                Some(current) if *current == text && params.get("reply_markup").is_none() => error(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                    None,
                ),
                Some(current) => {
                    *current = text;
                    ok(sent_message(chat_id, id, params))
                }
            }
        }
        "getfile" => {
            let file_id = params.get("file_id").and_then(Value::as_str).unwrap_or("");
            match inner.files.get(file_id) {
                Some((path, bytes)) => ok(json!({
                    "file_id": file_id, "file_unique_id": format!("u{file_id}"),
                    "file_size": bytes.len(), "file_path": path,
                })),
                None => error(400, "Bad Request: invalid file_id", None),
            }
        }
        _ => error(404, "Not Found", None),
    }
}

async fn get_updates(shared: &Shared, params: &Value) -> Response {
    let offset = params.get("offset").and_then(Value::as_i64).unwrap_or(0);
    let timeout = params.get("timeout").and_then(Value::as_u64).unwrap_or(0).min(30);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = shared.updates.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = shared.inner.locked();
            inner.pending.retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
            inner.calls.push(Call {
                method: "getupdates".to_owned(),
                chat_id: None,
                params: params.clone(),
                at: Instant::now(),
                ok: true,
                message_id: None,
            });
            if !inner.pending.is_empty() {
                let updates: Vec<Value> = inner.pending.iter().cloned().collect();
                return ok(Value::Array(updates));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

async fn file(
    State(shared): State<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != format!("bot{}", shared.token) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let inner = shared.inner.locked();
    match inner.files.values().find(|(file_path, _)| *file_path == path) {
        Some((_, bytes)) => (StatusCode::OK, bytes.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}
