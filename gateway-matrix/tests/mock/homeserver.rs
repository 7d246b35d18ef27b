//! matrix-sdk's `MatrixMockServer` set up as the bot's homeserver for
//! `tests/mock.rs`: password login, a `/sync` fed from a queue of room updates
//! (built with matrix-sdk-test's builders), and recording responders for
//! everything the gateway does to rooms (messages, reactions, edits,
//! redactions, typing, joins, leaves), with a bounded wait on that record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use matrix_sdk::ruma::{OwnedEventId, UserId, device_id};
use matrix_sdk::test_utils::mocks::{AnyRoomBuilder, LoginResponseTemplate200, MatrixMockServer};
use matrix_sdk_test::SyncResponseBuilder;
use serde_json::{Value, json};
use tokio::sync::Notify;
use wiremock::matchers::{any, method, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

/// The access token the mock server's prebuilt endpoints expect.
const ACCESS_TOKEN: &str = "1234";
/// How long a `/sync` with nothing new is held before it answers (a
/// long-poll in miniature: the gateway's sync loop does not spin).
const IDLE_SYNC: Duration = Duration::from_millis(100);

/// A request of the gateway that acts on a room.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `PUT` or `POST`.
    pub method: String,
    /// The path segments after `/_matrix/client/v3/`, percent-decoded:
    /// `["rooms", room, "send", type, txn]`, `["rooms", room, "join"]`, …
    pub path: Vec<String>,
    /// The JSON body (`Null` when there is none).
    pub body: Value,
    /// The event id the server answered with (sends and redactions).
    pub event_id: Option<OwnedEventId>,
}

impl Hit {
    /// The room the request is about.
    pub fn room(&self) -> &str {
        self.path.get(1).map_or("", String::as_str)
    }

    /// What it does to the room: `send`, `redact`, `typing`, `join`, `leave`.
    pub fn action(&self) -> &str {
        self.path.get(2).map_or("", String::as_str)
    }

    /// The event type of a send (`m.room.message`, `m.reaction`), else "".
    pub fn event_type(&self) -> &str {
        if self.action() == "send" { self.path.get(3).map_or("", String::as_str) } else { "" }
    }

    /// A string field of the body (`""` when absent).
    pub fn str(&self, field: &str) -> &str {
        self.body[field].as_str().unwrap_or("")
    }

    /// `m.relates_to` of a sent event (`Null` when absent).
    pub fn relates_to(&self) -> &Value {
        &self.body["m.relates_to"]
    }

    /// The event id the gateway got for this send (panics for other requests).
    pub fn id(&self) -> OwnedEventId {
        self.event_id.clone().expect("a send or redaction has an event id")
    }
}

/// What the recording responders saw, and the sends they refuse.
#[derive(Default)]
struct Log {
    hits: Mutex<Vec<Hit>>,
    changed: Notify,
    next_event: AtomicU64,
    /// Message bodies whose send is answered with `M_FORBIDDEN`.
    refused: Mutex<Vec<String>>,
}

/// What a recording responder answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `{"event_id": …}` with a fresh id.
    EventId,
    /// `{"room_id": …}` with the room of the path.
    RoomId,
    /// `{}`.
    Empty,
}

struct Recorder {
    log: Arc<Log>,
    answer: Answer,
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().trim_start_matches("/_matrix/client/v3/");
        let path: Vec<String> = path.split('/').map(percent_decode).collect();
        let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut hit = Hit { method: request.method.to_string(), path, body, event_id: None };
        let refused = hit.action() == "send"
            && self.log.refused.locked().iter().any(|b| b == hit.str("body"));
        let response = if refused {
            let error = json!({ "errcode": "M_FORBIDDEN", "error": "refused by the test" });
            ResponseTemplate::new(403).set_body_json(error)
        } else {
            let body = match self.answer {
                Answer::EventId => {
                    let n = self.log.next_event.fetch_add(1, Ordering::Relaxed);
                    let id = OwnedEventId::try_from(format!("$bot{n}")).expect("a valid event id");
                    hit.event_id = Some(id.clone());
                    json!({ "event_id": id })
                }
                Answer::RoomId => json!({ "room_id": hit.room() }),
                Answer::Empty => json!({}),
            };
            ResponseTemplate::new(200).set_body_json(body)
        };
        self.log.hits.locked().push(hit);
        self.log.changed.notify_waiters();
        response
    }
}

/// `/sync`: the next queued update at once, else nothing new after a pause.
struct Syncs {
    builder: Mutex<SyncResponseBuilder>,
    queue: Arc<Mutex<VecDeque<Vec<AnyRoomBuilder>>>>,
}

impl Respond for Syncs {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let next = self.queue.locked().pop_front();
        let idle = next.is_none();
        let mut builder = self.builder.locked();
        for room in next.into_iter().flatten() {
            match room {
                AnyRoomBuilder::Joined(room) => builder.add_joined_room(room),
                AnyRoomBuilder::Invited(room) => builder.add_invited_room(room),
                AnyRoomBuilder::Left(room) => builder.add_left_room(room),
                AnyRoomBuilder::Knocked(room) => builder.add_knocked_room(room),
            };
        }
        let response = ResponseTemplate::new(200).set_body_json(builder.build_json_sync_response());
        if idle { response.set_delay(IDLE_SYNC) } else { response }
    }
}

/// The mock homeserver of one test.
pub struct Homeserver {
    /// matrix-sdk's mock server (for test-specific mocks).
    pub server: MatrixMockServer,
    syncs: Arc<Mutex<VecDeque<Vec<AnyRoomBuilder>>>>,
    log: Arc<Log>,
}

impl Homeserver {
    /// Starts a server on which `bot` logs in with any password.
    pub async fn start(bot: &UserId) -> Self {
        let server = MatrixMockServer::new().await;
        let log = Arc::new(Log::default());
        let syncs = Arc::new(Mutex::new(VecDeque::new()));
        let login = LoginResponseTemplate200::new(ACCESS_TOKEN, device_id!("MOCKBOT"), bot);
        server.mock_login().ok_with(login).mount().await;
        server.mock_versions().ok().mount().await;
        server.mock_upload_keys().ok().mount().await;
        server.mock_query_keys().ok().mount().await;
        server.mock_room_state_encryption().plain().mount().await;
        let sync = Syncs { builder: Mutex::default(), queue: syncs.clone() };
        server.mock_sync().expect_default_access_token().respond_with(sync).mount().await;
        let record = |answer| Recorder { log: log.clone(), answer };
        server.mock_room_send().respond_with(record(Answer::EventId)).mount().await;
        server.mock_room_redact().respond_with(record(Answer::EventId)).mount().await;
        server.mock_room_leave().respond_with(record(Answer::Empty)).mount().await;
        for (verb, path, answer) in [
            ("POST", r"^/_matrix/client/v3/rooms/[^/]+/join$", Answer::RoomId),
            ("PUT", r"^/_matrix/client/v3/rooms/[^/]+/typing/[^/]+$", Answer::Empty),
        ] {
            Mock::given(method(verb))
                .and(path_regex(path))
                .respond_with(record(answer))
                .mount(server.server())
                .await;
        }
        // Anything else is a Matrix "not found" (wiremock's default 404 has no
        // JSON body, which matrix-sdk logs as an error).
        let not_found = json!({ "errcode": "M_NOT_FOUND", "error": "not mocked" });
        Mock::given(any())
            .respond_with(ResponseTemplate::new(404).set_body_json(not_found))
            .with_priority(u8::MAX)
            .mount(server.server())
            .await;
        Self { server, syncs, log }
    }

    /// The base URL for `matrix.homeserver`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Queues one sync response carrying these room updates.
    pub fn sync(&self, rooms: impl IntoIterator<Item = AnyRoomBuilder>) {
        self.syncs.locked().push_back(rooms.into_iter().collect());
    }

    /// From now on, sending a message with exactly this body fails (403).
    pub fn refuse(&self, body: &str) {
        self.log.refused.locked().push(body.to_owned());
    }

    /// Everything recorded so far that `pick` accepts, in order.
    pub fn hits<T>(&self, pick: impl Fn(&Hit) -> Option<T>) -> Vec<T> {
        self.log.hits.locked().iter().filter_map(pick).collect()
    }

    /// Waits until `check` finds something in the record (panics after `timeout`).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Hit]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.log.changed.notified();
            if let Some(found) = check(&self.log.hits.locked()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let hits = self.log.hits.locked().clone();
                panic!("mock homeserver: timed out waiting for {what}; saw {hits:#?}");
            }
        }
    }
}

/// Decodes `%XX` escapes of a path segment.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if bytes[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
