//! Gemini API (`POST /v1beta/models/<model>:streamGenerateContent?alt=sse`, what Gemini CLI
//! calls per model turn), plus the unary `:generateContent` it uses for its model router and
//! other JSON side calls, and `:countTokens`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::State;
use super::script::{ERROR_MESSAGE, Reply, Scenario, Turn, rough_tokens};
use super::stream::{self, Chunk, data_event};

/// `/v1beta/models/gemini-2.5-flash:streamGenerateContent` → (`gemini-2.5-flash`,
/// `streamGenerateContent`).
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = ["/v1beta/models/", "/v1/models/", "/v1alpha/models/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    rest.rsplit_once(':')
}

/// The scenario a request really is: side calls are [`Scenario::Router`].
pub(crate) fn scenario(action: &str, body: &Value, turn: &Turn) -> Scenario {
    match action {
        "generateContent" if wants_json(body) => Scenario::Router,
        "generateContent" | "streamGenerateContent" => turn.scenario,
        _ => Scenario::Router,
    }
}

pub(crate) fn respond(
    state: &Arc<State>,
    model: &str,
    action: &str,
    body: &Value,
    turn: &Turn,
) -> Response {
    let tokens = rough_tokens(body);
    match action {
        "countTokens" => stream::json(StatusCode::OK, json!({"totalTokens": tokens})),
        "generateContent" if wants_json(body) => {
            stream::json(StatusCode::OK, json_side_call(model, body, tokens))
        }
        "generateContent" | "streamGenerateContent" => match turn.reply(state.slow()) {
            Reply::Error => error_response(),
            reply if action == "generateContent" => {
                stream::json(StatusCode::OK, whole_reply(model, &reply, tokens))
            }
            reply => stream::sse(state, chunks(model, &reply, tokens)),
        },
        _ => stream::json(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": 404, "message": format!("fake model: unknown action {action}"), "status": "NOT_FOUND"}}),
        ),
    }
}

fn error_response() -> Response {
    stream::json(
        StatusCode::BAD_REQUEST,
        json!({"error": {"code": 400, "message": ERROR_MESSAGE, "status": "INVALID_ARGUMENT"}}),
    )
}

fn generation_config(body: &Value) -> &Value {
    body.get("generationConfig").or_else(|| body.get("config")).unwrap_or(&Value::Null)
}

fn wants_json(body: &Value) -> bool {
    let config = generation_config(body);
    config.get("responseJsonSchema").is_some()
        || config.get("responseSchema").is_some()
        || config.get("responseMimeType").and_then(Value::as_str) == Some("application/json")
}

fn candidate(parts: Value, finish: bool) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    candidate
}

fn envelope(model: &str, candidate: Value, tokens: u64) -> Value {
    json!({
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": tokens, "candidatesTokenCount": 8,
                          "totalTokenCount": tokens + 8},
        "modelVersion": model,
        "responseId": "fake-response",
    })
}

fn tool_part(command: &str) -> Value {
    json!([{"functionCall": {"name": "run_shell_command",
                             "args": {"command": command, "description": "Run a shell command"}}}])
}

fn whole_reply(model: &str, reply: &Reply, tokens: u64) -> Value {
    let parts = match reply {
        Reply::Text { chunks, .. } => json!([{"text": chunks.concat()}]),
        _ => tool_part(reply.command()),
    };
    envelope(model, candidate(parts, true), tokens)
}

fn chunks(model: &str, reply: &Reply, tokens: u64) -> Vec<Chunk> {
    match reply {
        Reply::Text { chunks, delay } => chunks
            .iter()
            .enumerate()
            .map(|(i, text)| Chunk {
                delay: *delay,
                bytes: data_event(&envelope(
                    model,
                    candidate(json!([{"text": text}]), i + 1 == chunks.len()),
                    tokens,
                )),
            })
            .collect(),
        _ => vec![Chunk::now(data_event(&envelope(
            model,
            candidate(tool_part(reply.command()), true),
            tokens,
        )))],
    }
}

/// A JSON answer shaped by the request's schema (the model router asks for
/// `complexity_reasoning`/`complexity_score`; the next-speaker check for `next_speaker`).
fn json_side_call(model: &str, body: &Value, tokens: u64) -> Value {
    let config = generation_config(body);
    let schema = config
        .get("responseJsonSchema")
        .or_else(|| config.get("responseSchema"))
        .unwrap_or(&Value::Null);
    let text = fill_schema("", schema).to_string();
    envelope(model, candidate(json!([{"text": text}]), true), tokens)
}

fn fill_schema(name: &str, schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        if name == "next_speaker" {
            return json!("user");
        }
        return first.clone();
    }
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("object").to_ascii_lowercase();
    match kind.as_str() {
        "string" if name == "next_speaker" => json!("user"),
        "string" => json!("fake"),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        "array" => json!([]),
        _ => {
            let mut object = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in properties {
                    object.insert(key.clone(), fill_schema(key, sub));
                }
            }
            Value::Object(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_model_and_action() {
        assert_eq!(
            split_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some(("gemini-2.5-flash", "streamGenerateContent"))
        );
        assert_eq!(split_path("/v1/messages"), None);
    }

    #[test]
    fn router_schema_is_filled() {
        let schema = json!({"type": "object", "properties": {
            "complexity_reasoning": {"type": "string"},
            "complexity_score": {"type": "integer"},
            "next_speaker": {"type": "string", "enum": ["model", "user"]}}});
        let filled = fill_schema("", &schema);
        assert_eq!(filled["complexity_score"], json!(1));
        assert_eq!(filled["complexity_reasoning"], json!("fake"));
        assert_eq!(filled["next_speaker"], json!("user"));
    }
}
