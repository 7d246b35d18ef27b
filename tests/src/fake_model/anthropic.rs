//! Anthropic Messages API (`POST /v1/messages`, what Claude Code calls): streamed
//! `message_start` … `message_stop` events, or one JSON message when `stream` is off.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::script::{ERROR_MESSAGE, Reply, Turn, rough_tokens};
use super::stream::{self, Chunk, named_event};

pub(crate) fn respond(state: &Arc<State>, body: &Value, turn: &Turn) -> Response {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("claude-fake");
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let input_tokens = rough_tokens(body);
    match turn.reply(state.slow()) {
        Reply::Error => stream::json(
            StatusCode::BAD_REQUEST,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": ERROR_MESSAGE}}),
        ),
        reply if !streaming => {
            stream::json(StatusCode::OK, whole_message(model, &reply, input_tokens))
        }
        reply => stream::sse(state, events(model, &reply, input_tokens)),
    }
}

pub(crate) fn count_tokens(body: &[u8]) -> Response {
    stream::json(StatusCode::OK, json!({"input_tokens": (body.len() / 4).max(1)}))
}

fn message_id() -> String {
    format!("msg_fake_{}", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The tool and input of a tool-call reply.
fn tool_use(reply: &Reply) -> (&'static str, Value) {
    match reply {
        Reply::PlanCall => ("ExitPlanMode", json!({"plan": super::script::PLAN_TEXT})),
        _ => ("Bash", json!({"command": reply.command(), "description": "Run a shell command"})),
    }
}

fn whole_message(model: &str, reply: &Reply, input_tokens: u64) -> Value {
    let (content, stop_reason) = match reply {
        Reply::Text { chunks, .. } => {
            (json!([{"type": "text", "text": chunks.concat()}]), "end_turn")
        }
        _ => (
            json!([{"type": "tool_use", "id": format!("toolu_fake_{}", uuid_like()), "name": tool_use(reply).0, "input": tool_use(reply).1}]),
            "tool_use",
        ),
    };
    json!({
        "id": message_id(), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 12,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    })
}

fn events(model: &str, reply: &Reply, input_tokens: u64) -> Vec<Chunk> {
    let mut out = vec![
        Chunk::now(named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
        )),
        Chunk::now(named_event("ping", &json!({"type": "ping"}))),
    ];
    let (stop_reason, output_tokens) = match reply {
        Reply::Text { chunks, delay } => {
            out.push(Chunk::now(named_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
            )));
            for text in chunks {
                out.push(Chunk {
                    delay: *delay,
                    bytes: named_event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": text}}),
                    ),
                });
            }
            ("end_turn", chunks.len())
        }
        _ => {
            out.push(Chunk::now(named_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "tool_use", "id": format!("toolu_fake_{}", uuid_like()), "name": tool_use(reply).0, "input": {}}}),
            )));
            out.push(Chunk::now(named_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": tool_use(reply).1.to_string()}}),
            )));
            ("tool_use", 20)
        }
    };
    out.push(Chunk::now(named_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    )));
    out.push(Chunk::now(named_event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
    )));
    out.push(Chunk::now(named_event("message_stop", &json!({"type": "message_stop"}))));
    out
}
