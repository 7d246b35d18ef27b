//! Writes a response body chunk by chunk with pauses in between, the way a model API
//! streams server-sent events, and notices when the client hangs up mid-stream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::State;

/// One piece of a streamed body, sent after `delay`.
pub(crate) struct Chunk {
    pub delay: Duration,
    pub bytes: String,
}

impl Chunk {
    pub(crate) fn now(bytes: String) -> Chunk {
        Chunk { delay: Duration::ZERO, bytes }
    }
}

/// `event: NAME` + `data: JSON` (Anthropic and OpenAI style).
pub(crate) fn named_event(name: &str, data: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// `data: JSON` with CRLF line ends (Gemini style).
pub(crate) fn data_event(data: &serde_json::Value) -> String {
    format!("data: {data}\r\n\r\n")
}

/// A 200 `text/event-stream` response that writes `chunks` in the background.
pub(crate) fn sse(state: &Arc<State>, chunks: Vec<Chunk>) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let state = Arc::clone(state);
    tokio::spawn(async move {
        for chunk in chunks {
            if !chunk.delay.is_zero() {
                tokio::time::sleep(chunk.delay).await;
            }
            if tx.send(Ok(Bytes::from(chunk.bytes))).await.is_err() {
                state.stream_aborted();
                return;
            }
            state.chunk_sent();
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}
