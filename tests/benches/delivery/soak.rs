//! The delivery soak: 50 chats streaming turns of the fake CLI (deltas 100
//! ms apart with tool lines) through the real binaries for a while, 429s
//! injected now and then; afterwards every recorded call is checked against
//! Telegram's limits (per chat: a burst of 3, then one a second; the bot: 30
//! in any second), every 429's `retry_after` against the chat's next call,
//! and every turn for its final answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ductor_gateway_telegram::testing::{Call, FakeBotApi, Fault, FaultKind, updates};
use ductor_tests::harness::{TestEnv, binary};

const TOKEN: &str = "123456:BENCH-soak-token";
const CHATS: i64 = 50;
/// Telegram's per-chat pace and burst as ductor keeps to them (the defaults).
const INTERVAL: Duration = Duration::from_secs(1);
const BURST: usize = 3;
/// Arrival times carry scheduling noise; a window is this much wider.
const JITTER: Duration = Duration::from_millis(20);

pub async fn run(length: Duration) {
    let api = FakeBotApi::start(TOKEN).await;
    let state = tempfile::tempdir().expect("fake CLI state");
    let users: Vec<String> = (1..=CHATS).map(|id| id.to_string()).collect();
    let config = format!(
        "[telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\nallowed_user_ids = [{}]\n\n\
         [runner]\nextra_writable_paths = [\"{state}\"]\n\n\
         [providers.claude]\nbinary = \"{fake}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n",
        api.url,
        users.join(", "),
        state = state.path().display(),
        fake = binary("ductor-fake-cli").display(),
    );
    let env = TestEnv::with_config(&config);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    env.wait_healthy(&["runner", "core", "telegram"]).await;

    let started = Instant::now();
    let mut turns: HashMap<i64, u32> = HashMap::new();
    let mut finals_seen: HashMap<i64, usize> = HashMap::new();
    let mut next_message = 1;
    let mut next_fault = started + Duration::from_secs(15);
    while started.elapsed() < length {
        for chat in 1..=CHATS {
            let finals = finals_of(&api.calls(), chat);
            let sent = turns.get(&chat).copied().unwrap_or(0) as usize;
            if finals >= sent {
                finals_seen.insert(chat, finals);
                let prompt = format!("slow:40 tool soak round {sent}");
                api.push_update(updates::text(chat, chat, next_message, &prompt));
                next_message += 1;
                *turns.entry(chat).or_default() += 1;
            }
        }
        if Instant::now() >= next_fault {
            let chat = 1 + (next_message % CHATS);
            let fault = FaultKind::RetryAfter(2);
            let fault = Fault {
                method: "editmessagetext".into(),
                chat_id: Some(chat),
                kind: fault,
                times: 1,
            };
            api.inject(fault);
            next_fault += Duration::from_secs(15);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The turns in flight end (a turn is about 4 s).
    let all_done = api
        .wait_until(Duration::from_secs(60), |calls| {
            (1..=CHATS).all(|chat| {
                finals_of(calls, chat) >= turns.get(&chat).copied().unwrap_or(0) as usize
            })
        })
        .await;
    let _ = env.ductorctl(&["down"]).await;
    report(&api.calls(), &turns, all_done);
}

/// The notifying messages of `chat`: one final answer per turn.
fn finals_of(calls: &[Call], chat: i64) -> usize {
    calls
        .iter()
        .filter(|c| c.chat_id == Some(chat) && c.ok && c.method == "sendmessage" && !c.silent())
        .count()
}

fn counted(call: &Call) -> bool {
    call.method == "sendmessage" || call.method == "editmessagetext"
}

fn report(calls: &[Call], turns: &HashMap<i64, u32>, all_done: bool) {
    let sent: u32 = turns.values().sum();
    let finals: usize = (1..=CHATS).map(|chat| finals_of(calls, chat)).sum();
    let paced: Vec<&Call> = calls.iter().filter(|c| counted(c)).collect();
    let mut over_chat = 0;
    for chat in 1..=CHATS {
        let mine: Vec<&Call> = paced.iter().copied().filter(|c| c.chat_id == Some(chat)).collect();
        over_chat += over_bucket(&mine);
    }
    let over_bot = over_window(&paced, Duration::from_secs(1), 30);
    let busiest = busiest_second(&paced);
    let (honoured, broken) = retry_afters(calls);
    println!(
        "{sent} turns, {finals} finals delivered ({}), {} calls; per-chat pace exceeded {over_chat} times; \
         bot's 30/s exceeded {over_bot} times (busiest second: {busiest} calls); 429s honoured {honoured}, broken {broken}",
        if all_done && finals as u32 == sent { "all" } else { "NOT ALL" },
        paced.len(),
    );
}

/// How many calls went beyond a burst of `BURST` and one per `INTERVAL`.
fn over_bucket(calls: &[&Call]) -> usize {
    let mut over = 0;
    for (i, first) in calls.iter().enumerate() {
        let beyond = calls[i..].iter().enumerate().any(|(k, last)| {
            let window = last.at.duration_since(first.at) + JITTER;
            k >= BURST + (window.as_millis() / INTERVAL.as_millis()) as usize
        });
        over += usize::from(beyond);
    }
    over
}

/// How many windows of `width` held more than `limit` calls.
fn over_window(calls: &[&Call], width: Duration, limit: usize) -> usize {
    let mut times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    times.sort();
    times.windows(limit + 1).filter(|w| w[limit].duration_since(w[0]) + JITTER < width).count()
}

/// The most calls that arrived within any one second.
fn busiest_second(calls: &[&Call]) -> usize {
    let mut times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    times.sort();
    let mut start = 0;
    let mut most = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// 429s whose chat waited `retry_after` before its next call, and those that did not.
fn retry_afters(calls: &[Call]) -> (usize, usize) {
    let (mut honoured, mut broken) = (0, 0);
    for (i, call) in calls.iter().enumerate() {
        if call.ok || !counted(call) {
            continue;
        }
        let next = calls[i + 1..].iter().find(|c| c.chat_id == call.chat_id && counted(c));
        match next {
            Some(next) if next.at.duration_since(call.at) + JITTER < Duration::from_secs(2) => {
                broken += 1
            }
            Some(_) => honoured += 1,
            None => {}
        }
    }
    (honoured, broken)
}
