//! A fake OpenAI-compatible transcription API on loopback
//! (`POST /v1/audio/transcriptions`, multipart), so the runner's endpoint
//! backend is exercised over real HTTP without a model download. It checks
//! the bearer key, records what it was sent (file name, size, leading
//! bytes, model, language) and the time it spent, and answers with a fixed
//! transcript, or a scripted failure.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ductor_daemon::sync::Locked as _;

/// One request the fake received.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The `Authorization` header.
    pub authorization: String,
    /// The `file` part's file name.
    pub file_name: String,
    /// The `file` part's content type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: usize,
    /// Its first bytes (`RIFF` for a WAV, `OggS` for an Ogg file).
    pub magic: Vec<u8>,
    /// The `model` field.
    pub model: String,
    /// The `language` field.
    pub language: String,
    /// Time from the request's arrival to the answer.
    pub spent: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    uploads: Vec<Upload>,
    transcript: String,
    fail: Option<u16>,
    key: String,
}

/// The running fake.
#[derive(Debug, Clone)]
pub struct FakeTranscriber {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FakeTranscriber {
    /// Serves on a free loopback port; answers `transcript` to requests
    /// carrying `Bearer {key}` (401 otherwise).
    pub async fn start(transcript: &str, key: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            transcript: transcript.to_owned(),
            key: key.to_owned(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared })
    }

    /// `http://127.0.0.1:<port>/v1`, the `[transcription].endpoint`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far.
    pub fn uploads(&self) -> Vec<Upload> {
        self.shared.locked().uploads.clone()
    }

    /// Answers every later request with `status` and an error body.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.locked().fail = status;
    }
}

async fn transcribe(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let arrived = Instant::now();
    let mut upload = Upload {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        ..Upload::default()
    };
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            upload.file_name = field.file_name().unwrap_or("").to_owned();
            upload.content_type = field.content_type().unwrap_or("").to_owned();
            let bytes = field.bytes().await.unwrap_or_default();
            upload.size = bytes.len();
            upload.magic = bytes.iter().take(4).copied().collect();
        } else {
            let text = field.text().await.unwrap_or_default();
            match name.as_str() {
                "model" => upload.model = text,
                "language" => upload.language = text,
                _ => {}
            }
        }
    }
    let mut shared = shared.locked();
    let expected = format!("Bearer {}", shared.key);
    let answer = if upload.authorization != expected {
        (StatusCode::UNAUTHORIZED, r#"{"detail":"bad key"}"#.to_owned())
    } else if let Some(code) = shared.fail {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, r#"{"detail":"scripted failure"}"#.to_owned())
    } else if upload.size == 0 {
        (StatusCode::BAD_REQUEST, r#"{"detail":"no file"}"#.to_owned())
    } else {
        (StatusCode::OK, serde_json::json!({ "text": shared.transcript }).to_string())
    };
    upload.spent = arrived.elapsed();
    shared.uploads.push(upload);
    (answer.0, [("content-type", "application/json")], answer.1).into_response()
}
