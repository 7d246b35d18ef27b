//! OpenAI Responses API (`POST /v1/responses`, what Codex calls): `response.created` …
//! `response.completed` server-sent events with a message or an `exec_command` call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::script::{ERROR_MESSAGE, Reply, Turn, rough_tokens};
use super::stream::{self, Chunk, named_event};

fn next_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}_fake{:012x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn respond(state: &Arc<State>, body: &Value, turn: &Turn) -> Response {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("gpt-fake");
    match turn.reply(state.slow()) {
        Reply::Error => stream::json(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": ERROR_MESSAGE, "type": "invalid_request_error",
                             "param": null, "code": "fake_bad_request"}}),
        ),
        reply => stream::sse(state, events(model, &reply, rough_tokens(body))),
    }
}

/// Numbers the events (`sequence_number`) as they are built.
struct Events {
    out: Vec<Chunk>,
    seq: u64,
}

impl Events {
    fn push(&mut self, delay: std::time::Duration, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out.push(Chunk { delay, bytes: named_event(kind, &data) });
    }

    fn now(&mut self, kind: &str, data: Value) {
        self.push(std::time::Duration::ZERO, kind, data);
    }
}

fn events(model: &str, reply: &Reply, input_tokens: u64) -> Vec<Chunk> {
    let response_id = next_id("resp");
    let shell = |status: &str, output: Value| {
        json!({"id": response_id, "object": "response", "created_at": 1_795_000_000,
               "status": status, "model": model, "output": output})
    };
    let mut ev = Events { out: Vec::new(), seq: 0 };
    ev.now("response.created", json!({"response": shell("in_progress", json!([]))}));
    ev.now("response.in_progress", json!({"response": shell("in_progress", json!([]))}));
    let item = match reply {
        Reply::Text { chunks, delay } => message_item(&mut ev, chunks, *delay),
        _ => function_call_item(&mut ev, reply.command()),
    };
    let mut done = shell("completed", json!([item]));
    done["usage"] = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 16, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + 16});
    ev.now("response.completed", json!({"response": done}));
    ev.out
}

fn message_item(ev: &mut Events, chunks: &[String], delay: std::time::Duration) -> Value {
    let id = next_id("msg");
    let text = chunks.concat();
    ev.now(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"id": id, "type": "message", "status": "in_progress",
                                           "role": "assistant", "content": []}}),
    );
    ev.now(
        "response.content_part.added",
        json!({"item_id": id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for chunk in chunks {
        ev.push(
            delay,
            "response.output_text.delta",
            json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": chunk}),
        );
    }
    ev.now(
        "response.output_text.done",
        json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text}),
    );
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    ev.now(
        "response.content_part.done",
        json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part}),
    );
    let item = json!({"id": id, "type": "message", "status": "completed", "role": "assistant",
                      "content": [part]});
    ev.now("response.output_item.done", json!({"output_index": 0, "item": item}));
    item
}

fn function_call_item(ev: &mut Events, command: &str) -> Value {
    let id = next_id("fc");
    let call_id = next_id("call");
    let arguments = json!({"cmd": command}).to_string();
    ev.now(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"id": id, "type": "function_call", "status": "in_progress",
                                           "call_id": call_id, "name": "exec_command", "arguments": ""}}),
    );
    ev.now(
        "response.function_call_arguments.delta",
        json!({"item_id": id, "output_index": 0, "delta": arguments}),
    );
    ev.now(
        "response.function_call_arguments.done",
        json!({"item_id": id, "output_index": 0, "arguments": arguments}),
    );
    let item = json!({"id": id, "type": "function_call", "status": "completed",
                      "call_id": call_id, "name": "exec_command", "arguments": arguments});
    ev.now("response.output_item.done", json!({"output_index": 0, "item": item}));
    item
}
