//! The listener over real HTTP on loopback: every answer in the check order,
//! real signatures verified and forged, an oversize body, a flood.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::automation::clock::SystemClock;
use crate::automation::store as db;
use crate::automation::webhook::auth::{mac, sign};
use crate::automation::webhook::listener::ConnectionLimits;
use crate::automation::webhook::{HmacAlgorithm, HmacSettings, HookAuth, HookMode};

struct Listener {
    base: String,
    events: mpsc::Receiver<WebhookEvent>,
    hooks: Arc<HookRegistry>,
    journal: Store,
    client: reqwest::Client,
    _stop: tokio_util::sync::DropGuard,
}

fn hook(id: &str, auth: HookAuth) -> Webhook {
    Webhook {
        title: format!("{id} hook"),
        ..Webhook::new(id, HookMode::Wake, "Build {{status}} on {{branch}}", auth)
    }
}

const TOKEN: &str = "a-long-enough-bearer-token-0123456789";

async fn start(settings: ServerSettings) -> Listener {
    let hooks = Arc::new(HookRegistry::default());
    hooks.upsert(hook("ci", HookAuth::Bearer { token: TOKEN.into() })).unwrap();
    let mut off = hook("off", HookAuth::Bearer { token: TOKEN.into() });
    off.enabled = false;
    hooks.upsert(off).unwrap();
    hooks.upsert(hook("github", HookAuth::Hmac(HmacSettings::github("gh-secret")))).unwrap();
    hooks.upsert(hook("stripe", HookAuth::Hmac(HmacSettings::stripe("whsec_abc")))).unwrap();
    let journal = Store::open_in_memory(db::MIGRATIONS).unwrap();
    let (router, events) = router(&settings, hooks.clone(), Arc::new(SystemClock), journal.clone());
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, settings.connections, router, stop.clone()));
    Listener {
        base,
        events,
        hooks,
        journal,
        client: reqwest::Client::new(),
        _stop: stop.drop_guard(),
    }
}

fn settings() -> ServerSettings {
    ServerSettings {
        max_body_bytes: 1024,
        rate_limit_per_minute: 1000,
        queue_capacity: 16,
        replay_window: Duration::from_secs(600),
        connections: ConnectionLimits {
            max_connections: 64,
            per_address: 64,
            idle: Duration::from_secs(10),
            lifetime: Duration::from_secs(60),
        },
    }
}

impl Listener {
    async fn journaled(&self) -> Vec<db::InboxEntry> {
        self.journal.call(|c| Ok(db::pending_events(c))).await.unwrap().unwrap()
    }

    async fn post(
        &self,
        id: &str,
        content_type: Option<&str>,
        body: &[u8],
        headers: &[(String, String)],
    ) -> (u16, Value) {
        let mut request = self.client.post(format!("{}/hooks/{id}", self.base)).body(body.to_vec());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn bearer(&self, id: &str, body: &str) -> (u16, Value) {
        self.post(
            id,
            Some("application/json"),
            body.as_bytes(),
            &[("Authorization".into(), format!("Bearer {TOKEN}"))],
        )
        .await
    }
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn health_answers_ok() {
    let l = start(settings()).await;
    let body: Value =
        l.client.get(format!("{}/health", l.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn every_check_answers_in_order() {
    let mut l = start(settings()).await;
    let auth = [("Authorization".to_string(), format!("Bearer {TOKEN}"))];
    // 415 comes before anything about the body or the hook.
    assert_eq!(
        l.post("nope", Some("text/plain"), b"{", &[]).await,
        (415, json!({"error": "content_type_must_be_json"}))
    );
    assert_eq!(l.post("ci", None, b"{}", &auth).await.0, 415);
    // 400 invalid JSON, before the unknown hook is noticed.
    assert_eq!(
        l.post("nope", JSON, b"{not json", &[]).await,
        (400, json!({"error": "invalid_json"}))
    );
    assert_eq!(
        l.post("nope", JSON, b"[1,2]", &[]).await,
        (400, json!({"error": "body_must_be_object"}))
    );
    // Unknown, disabled and unauthenticated look the same: no way to learn which hooks exist.
    let unauthorized = (401, json!({"error": "unauthorized"}));
    assert_eq!(l.post("nope", JSON, b"{}", &auth).await, unauthorized);
    assert_eq!(l.post("off", JSON, b"{}", &auth).await, unauthorized);
    assert_eq!(l.post("ci", JSON, b"{}", &[]).await, unauthorized);
    let wrong = [("Authorization".to_string(), format!("Bearer {TOKEN}x"))];
    assert_eq!(l.post("ci", JSON, b"{}", &wrong).await.0, 401);
    // Accepted, with a charset parameter on the content type.
    let body = br#"{"status":"failed","branch":"main"}"#;
    assert_eq!(
        l.post("ci", Some("application/json; charset=utf-8"), body, &auth).await,
        (202, json!({"accepted": true, "hook_id": "ci"}))
    );
    let event = l.events.recv().await.unwrap();
    assert_eq!(event.hook.id, "ci");
    assert!(event.prompt.contains("Build failed on main"), "{}", event.prompt);
    assert!(event.prompt.contains(template::BEGIN_MARKER));
    assert!(l.events.try_recv().is_err(), "refused requests must not be queued");
    // The 202 was journaled first, and only it: the refusals left nothing behind.
    let journaled = l.journaled().await;
    assert_eq!(journaled.len(), 1, "{journaled:?}");
    assert_eq!((journaled[0].hook_id.as_str(), Some(journaled[0].id)), ("ci", event.inbox));
    assert_eq!(journaled[0].prompt, event.prompt);
    assert!(!event.replayed);
}

#[tokio::test]
async fn oversize_body_is_refused() {
    let l = start(settings()).await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2000));
    assert_eq!(l.bearer("ci", &big).await, (413, json!({"error": "payload_too_large"})));
    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"{\"x\":\"".to_vec()), Ok(vec![b'a'; 4096]), Ok(b"\"}".to_vec())];
    let response = l
        .client
        .post(format!("{}/hooks/ci", l.base))
        .header("content-type", "application/json")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(reqwest::Body::wrap_stream(futures_util_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

fn futures_util_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn github_signature_verified_and_forged() {
    let mut l = start(settings()).await;
    let body = br#"{"action":"completed","branch":"main"}"#;
    let good = sign(&HookAuth::Hmac(HmacSettings::github("gh-secret")), body, 0);
    assert_eq!(good[0].0, "X-Hub-Signature-256");
    assert_eq!(l.post("github", JSON, body, &good).await.0, 202);
    assert!(l.events.recv().await.is_some());
    // Signed with another secret.
    let forged = format!("sha256={}", hex::encode(mac(HmacAlgorithm::Sha256, b"guess", body)));
    assert_eq!(
        l.post("github", JSON, body, &[("X-Hub-Signature-256".into(), forged)]).await.0,
        401
    );
    // Right signature, tampered body.
    assert_eq!(
        l.post("github", JSON, br#"{"action":"deleted","branch":"main"}"#, &good).await.0,
        401
    );
}

#[tokio::test]
async fn stripe_signature_verified_and_forged() {
    let mut l = start(settings()).await;
    let body = br#"{"type":"invoice.paid"}"#;
    let auth = HookAuth::Hmac(HmacSettings::stripe("whsec_abc"));
    let now = Timestamp::now().as_second();
    assert_eq!(l.post("stripe", JSON, body, &sign(&auth, body, now)).await.0, 202);
    assert!(l.events.recv().await.is_some());
    // A replay of an old, correctly signed request.
    assert_eq!(l.post("stripe", JSON, body, &sign(&auth, body, now - 3600)).await.0, 401);
    // Forged with another secret.
    let forged = sign(&HookAuth::Hmac(HmacSettings::stripe("whsec_guess")), body, now);
    assert_eq!(l.post("stripe", JSON, body, &forged).await.0, 401);
}

#[tokio::test]
async fn only_authenticated_requests_count_and_each_hook_has_its_own_limit() {
    let l = start(ServerSettings { rate_limit_per_minute: 3, ..settings() }).await;
    // A flood of junk: unknown hooks, wrong tokens, bad bodies.
    let wrong = [("Authorization".to_string(), format!("Bearer {TOKEN}x"))];
    for _ in 0..20 {
        assert_eq!(l.post("nope", JSON, b"{}", &[]).await.0, 401);
        assert_eq!(l.post("ci", JSON, b"{}", &wrong).await.0, 401);
        assert_eq!(l.post("ci", Some("text/plain"), b"", &[]).await.0, 415);
    }
    // The real sender still gets its whole allowance.
    for _ in 0..3 {
        assert_eq!(l.bearer("ci", "{}").await.0, 202);
    }
    assert_eq!(l.bearer("ci", "{}").await, (429, json!({"error": "rate_limited"})));
    // Another hook is not starved by a busy one.
    let body = br#"{"status":"ok"}"#;
    let github = HookAuth::Hmac(HmacSettings::github("gh-secret"));
    assert_eq!(l.post("github", JSON, body, &sign(&github, body, 0)).await.0, 202);
}

#[tokio::test]
async fn a_signed_delivery_is_accepted_once() {
    let mut l = start(settings()).await;
    let body = br#"{"status":"ok"}"#;
    let github = HookAuth::Hmac(HmacSettings::github("gh-secret"));
    let mut headers = sign(&github, body, 0);
    headers.push(("X-GitHub-Delivery".into(), "72d3162e-cc78-11e3-81ab-4c9367dc0958".into()));
    assert_eq!(l.post("github", JSON, body, &headers).await.0, 202);
    assert_eq!(
        l.post("github", JSON, body, &headers).await,
        (200, json!({"accepted": false, "duplicate": true}))
    );
    // Without a delivery id, the signature itself identifies the delivery.
    let stripe = HookAuth::Hmac(HmacSettings::stripe("whsec_abc"));
    let now = Timestamp::now().as_second();
    let signed = sign(&stripe, body, now);
    assert_eq!(l.post("stripe", JSON, body, &signed).await.0, 202);
    assert_eq!(l.post("stripe", JSON, body, &signed).await.0, 200);
    let mut queued = 0;
    while l.events.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, 2, "each delivery handled once");
}

#[tokio::test]
async fn connections_are_bounded_per_address_and_silent_ones_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = ConnectionLimits {
        max_connections: 64,
        per_address: 3,
        idle: Duration::from_millis(300),
        lifetime: Duration::from_secs(60),
    };
    let l = start(ServerSettings { connections: limits, ..settings() }).await;
    let address = l.base.trim_start_matches("http://").to_owned();
    // Three slow clients that never finish their headers hold every slot of this address…
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"POST /hooks/ci HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // …so a fourth is closed at once, without an answer.
    let mut fourth = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _ = fourth.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed unanswered: {answer:?}");
    // The silent ones are dropped after the idle timeout, and the slots come back.
    for stream in &mut slow {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "a silent client is disconnected");
    }
    assert_eq!(l.bearer("ci", "{}").await.0, 202, "the address may connect again");
}

#[tokio::test]
async fn flood_is_limited_and_never_loses_an_accepted_request() {
    // Connections are not what this test bounds: room for all 600 at once.
    let connections =
        ConnectionLimits { max_connections: 1024, per_address: 1024, ..settings().connections };
    let mut l = start(ServerSettings {
        rate_limit_per_minute: 200,
        queue_capacity: 64,
        connections,
        ..settings()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..600 {
        let client = l.client.clone();
        let url = format!("{}/hooks/ci", l.base);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("Authorization", format!("Bearer {TOKEN}"))
                .body(format!("{{\"n\":{i}}}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        *counts.entry(task.await.unwrap().unwrap()).or_default() += 1;
    }
    let accepted = counts.get(&202).copied().unwrap_or(0);
    let full = counts.get(&503).copied().unwrap_or(0);
    assert_eq!(counts.get(&429).copied(), Some(400), "{counts:?}");
    assert_eq!(accepted + full, 200, "{counts:?}");
    // Nobody drained the queue: it holds at most its capacity, and every 202 is in it.
    assert!(accepted <= 64, "{counts:?}");
    let mut queued = 0;
    while l.events.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, accepted);
    // Every 202 is journaled; every 503 was taken back out of the journal.
    assert_eq!(l.journaled().await.len(), accepted);
    // The registry is still usable after the flood.
    l.hooks.remove("ci");
}

#[tokio::test]
async fn registry_changes_take_effect_immediately() {
    let l = start(settings()).await;
    assert_eq!(l.bearer("ci", "{}").await.0, 202);
    l.hooks.remove("ci");
    assert_eq!(l.bearer("ci", "{}").await.0, 401);
    let failed = l.hooks.replace_all(vec![hook("ci", HookAuth::Bearer { token: "short".into() })]);
    assert_eq!(failed.len(), 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(l.bearer("github", "{}").await.0, 401, "replace_all dropped the old set");
}
