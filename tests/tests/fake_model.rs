//! The fake model API on its own, in process, over real HTTP: each API's wire shape,
//! the scripted scenarios, the request log, and a client hanging up mid-stream.

use std::time::Duration;

use ductor_tests::fake_model::{Api, FakeModel, Scenario, SlowPace};
use serde_json::{Value, json};

async fn post(fake: &FakeModel, path: &str, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .json(&body)
        .send()
        .await
        .expect("the fake is up on loopback");
    let status = response.status().as_u16();
    (status, response.text().await.expect("read the whole body"))
}

/// The `data:` payloads of an SSE body, parsed.
fn sse_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.trim_end_matches('\r').strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("every data line is JSON"))
        .collect()
}

fn anthropic(prompt: &str) -> Value {
    json!({"model": "claude-test", "stream": true, "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>ignore me: error</system-reminder>"},
            {"type": "text", "text": prompt}]}]})
}

#[tokio::test]
async fn anthropic_text_tool_and_error() {
    let fake = FakeModel::start().await.expect("start fake");
    let (status, body) = post(&fake, "/v1/messages?beta=true", anthropic("say hello")).await;
    assert_eq!(status, 200);
    let events = sse_data(&body);
    let text: String = events.iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
    assert!(text.contains("You said: say hello"), "{text}");
    assert!(events.iter().filter(|e| e["type"] == "content_block_delta").count() > 3);
    assert_eq!(events.last().expect("events")["type"], "message_stop");

    let (_, body) = post(&fake, "/v1/messages", anthropic("use a tool")).await;
    let events = sse_data(&body);
    let start = events.iter().find(|e| e["type"] == "content_block_start").expect("a block");
    assert_eq!(start["content_block"]["name"], "Bash");
    let input =
        events.iter().find_map(|e| e["delta"]["partial_json"].as_str()).expect("tool input");
    assert_eq!(serde_json::from_str::<Value>(input).expect("json")["command"], "echo hi");
    assert!(body.contains("\"stop_reason\":\"tool_use\""));

    let (status, body) = post(&fake, "/v1/messages", anthropic("an error please")).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["error"]["type"],
        "invalid_request_error"
    );

    let log = fake.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].path, "/v1/messages?beta=true");
    assert_eq!(log[0].api, Api::Anthropic);
    assert_eq!(log[0].prompt.as_deref(), Some("say hello"));
    let scenarios: Vec<_> = log.iter().map(|r| r.scenario).collect();
    assert_eq!(scenarios, [Scenario::Text, Scenario::Tool, Scenario::Error]);
}

#[tokio::test]
async fn openai_responses_tool_round_trip_and_websocket_refusal() {
    let fake = FakeModel::start().await.expect("start fake");
    let user = |text: &str| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]});
    let (status, body) = post(
        &fake,
        "/v1/responses",
        json!({"model": "gpt-5.5", "stream": true, "input": [user("<environment_context/>"), user("please use a tool")]}),
    )
    .await;
    assert_eq!(status, 200);
    let events = sse_data(&body);
    let call = events.iter().find(|e| e["type"] == "response.output_item.done").expect("an item");
    assert_eq!(call["item"]["name"], "exec_command");
    let args: Value =
        serde_json::from_str(call["item"]["arguments"].as_str().expect("arguments")).expect("json");
    assert_eq!(args["cmd"], "echo hi");
    assert_eq!(events.last().expect("events")["type"], "response.completed");

    let follow_up = json!({"model": "gpt-5.5", "stream": true, "input": [
        user("please use a tool"), call["item"].clone(),
        {"type": "function_call_output", "call_id": call["item"]["call_id"], "output": "hi"}]});
    let (_, body) = post(&fake, "/v1/responses", follow_up).await;
    let done: String = sse_data(&body).iter().filter_map(|e| e["delta"].as_str()).collect();
    assert!(done.contains("command ran"), "{done}");

    let (status, body) = post(&fake, "/v1/responses", json!({"input": "error"})).await;
    assert_eq!(status, 400);
    assert!(body.contains("fake_bad_request"));

    let upgrade = reqwest::Client::new()
        .get(format!("{}/v1/responses", fake.base_url()))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .expect("send");
    assert_eq!(upgrade.status().as_u16(), 426);
    let log = fake.requests();
    assert_eq!(log[1].scenario, Scenario::ToolResult);
    assert!(log[1].body_contains("function_call_output"));
}

#[tokio::test]
async fn gemini_stream_router_and_error() {
    let fake = FakeModel::start().await.expect("start fake");
    let contents = |text: &str| {
        json!({"contents": [
        {"role": "user", "parts": [{"text": "<session_context>tool</session_context>"}]},
        {"role": "user", "parts": [{"text": text}]}]})
    };
    let (status, body) = post(
        &fake,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        contents("hello gemini"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\r\n\r\n"), "gemini SSE uses CRLF");
    let chunks = sse_data(&body);
    assert!(chunks.len() > 3);
    assert_eq!(chunks.last().expect("chunks")["candidates"][0]["finishReason"], "STOP");
    assert!(chunks[0]["candidates"][0].get("finishReason").is_none());

    let (_, body) = post(
        &fake,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        contents("use a tool"),
    )
    .await;
    assert!(body.contains("\"run_shell_command\""));

    let mut router = contents("hello gemini");
    router["generationConfig"] = json!({"responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"complexity_score": {"type": "integer"}}}});
    let (_, body) =
        post(&fake, "/v1beta/models/gemini-3.5-flash-lite:generateContent", router).await;
    let reply: Value = serde_json::from_str(&body).expect("json");
    let text = reply["candidates"][0]["content"]["parts"][0]["text"].as_str().expect("text");
    assert_eq!(serde_json::from_str::<Value>(text).expect("json text")["complexity_score"], 1);

    let (status, body) =
        post(&fake, "/v1beta/models/x:streamGenerateContent?alt=sse", contents("error")).await;
    assert_eq!(status, 400);
    assert!(body.contains("INVALID_ARGUMENT"));
    assert_eq!(fake.generations().len(), 3, "the router call is not a turn");
}

#[tokio::test]
async fn slow_stream_notices_a_client_hanging_up() {
    let fake = FakeModel::start_on(0, SlowPace { chunks: 200, delay: Duration::from_millis(20) })
        .await
        .expect("start fake");
    let mut response = reqwest::Client::new()
        .post(format!("{}/v1/messages", fake.base_url()))
        .json(&anthropic("go slow"))
        .send()
        .await
        .expect("send");
    let first = response.chunk().await.expect("read").expect("a chunk");
    assert!(!first.is_empty());
    assert!(fake.wait_until(Duration::from_secs(10), |p| p.chunks_sent >= 5).await);
    drop(response);
    assert!(
        fake.wait_until(Duration::from_secs(10), |p| p.streams_aborted == 1).await,
        "the fake sees the hang-up: {:?}",
        fake.progress()
    );
    assert!(fake.progress().chunks_sent < 200);
}
