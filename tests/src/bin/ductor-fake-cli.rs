//! `ductor-fake-cli`: a stand-in for `claude` that speaks Claude Code's
//! `stream-json` dialect, so runner, core and gateway tests exercise real
//! processes without a model. Point a test at it with
//! `[providers.claude] binary = "<target>/debug/ductor-fake-cli"`.
//!
//! Argv is claude's: `-p [PROMPT] --output-format stream-json --verbose
//! --include-partial-messages [--model M] [--effort E] [--permission-mode P]
//! [--append-system-prompt T | --append-system-prompt-file F] [--resume ID]
//! [-- PROMPT]`; without a prompt argument the prompt is read from stdin
//! (as the runner passes it); `--version` prints
//! `9.9.9 (Fake CLI)`. Sessions persist in `$DUCTOR_FAKE_CLI_STATE` (else
//! `$HOME/.fake-cli`) — note the runner passes only allowlisted variables,
//! so set it through `[providers.claude].env`. A session is also known when
//! its transcript lies where claude keeps it (`$CLAUDE_CONFIG_DIR/projects/
//! <cwd slug>/<id>.jsonl`). Resuming an unknown id prints
//! claude's `No conversation found with session ID: …` error result, exit 1.
//! Each run also writes its argv to `<state>/last-argv.json`, and its prompt
//! and system prompt addition to `<state>/last-input.json`.
//!
//! The prompt scripts the behaviour. Default: reply `echo: <prompt>`
//! streamed as several `text_delta`s, an `assistant` line and a `result`
//! line (`num_turns` = turns so far in the session). Keywords (anywhere in
//! the prompt, separated by whitespace):
//!
//! | keyword | behaviour |
//! |---|---|
//! | `hang` | after `system/init`, print nothing and sleep forever |
//! | `ignore-sigterm` | ignore SIGTERM, then hang (only SIGKILL ends it) |
//! | `fork-grandchildren` | start `sh` with two background `sleep 600`, print their pids in a `system/status` (`grandchildren <pid> <pid>`), reply, exit 0 leaving them behind |
//! | `leave-member` | start `sleep 600` in its own process group (no parent-death signal, like the native codex under its npm wrapper), print `member <pid>` in a `system/status`, then hang |
//! | `no-duration` | the reply's `result` line has no `duration_ms` and no `num_turns` |
//! | `garbage` | print non-JSON lines and a JSON array before the reply |
//! | `huge-line` | print one 20 MiB line before the reply |
//! | `crash-mid-stream` | two deltas, then abort (SIGABRT) |
//! | `no-result` | deltas and `assistant`, exit 0 without a `result` line |
//! | `slow:<n>` | the reply as n deltas 100 ms apart (SIGINT: claude's interrupted result, exit 0) |
//! | `stamp:<n>` | n deltas 10 ms apart, each the send time in ns since the epoch (benchmarks) |
//! | `tool` | a `Bash` `tool_use` (`echo hi`) and its `tool_result` before the reply |
//! | `error` | claude's model-API error: synthetic assistant + `is_error` result, exit 1 |
//! | `sh:<command…>` | everything after `sh:` runs in `sh -c`; the reply is its stdout+stderr |
//!
//! SIGINT during a reply prints claude's `error_during_execution` result and
//! exits 0, as claude does.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigHandler, Signal};
use serde_json::{Value, json};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: std::ffi::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn set_handler(signal: Signal, handler: SigHandler) {
    // SAFETY: the only handler stores to an atomic (async-signal-safe).
    if let Err(error) = unsafe { nix::sys::signal::signal(signal, handler) } {
        eprintln!("fake-cli: cannot set a handler for {signal}: {error}");
    }
}

#[derive(Debug, Default)]
struct Args {
    prompt: String,
    model: String,
    resume: Option<String>,
    permission_mode: String,
    system_prompt: String,
    version: bool,
    raw: Vec<String>,
}

fn parse_args() -> Args {
    const WITH_VALUE: &[&str] = &[
        "--output-format",
        "--input-format",
        "--model",
        "--resume",
        "--permission-mode",
        "--effort",
        "--append-system-prompt",
        "--append-system-prompt-file",
        "--session-id",
        "--max-turns",
        "--allowedTools",
        "--disallowedTools",
        "--system-prompt",
    ];
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args { raw: raw.clone(), permission_mode: "default".into(), ..Args::default() };
    let mut positional = Vec::new();
    let mut iter = raw.into_iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--" => positional.extend(iter.by_ref()),
            "--version" | "-v" => args.version = true,
            flag if WITH_VALUE.contains(&flag) => {
                let value = iter.next().unwrap_or_default();
                match flag {
                    "--model" => args.model = value,
                    "--resume" => args.resume = Some(value),
                    "--permission-mode" => args.permission_mode = value,
                    "--append-system-prompt" => args.system_prompt = value,
                    "--append-system-prompt-file" => {
                        args.system_prompt = std::fs::read_to_string(value).unwrap_or_default();
                    }
                    _ => {}
                }
            }
            flag if flag.starts_with('-') => {}
            _ => positional.push(arg),
        }
    }
    args.prompt = positional.join(" ");
    if args.prompt.is_empty() && !args.version {
        use std::io::Read as _;
        let _ = std::io::stdin().read_to_string(&mut args.prompt);
    }
    args
}

fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DUCTOR_FAKE_CLI_STATE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".fake-cli")
}

fn new_session_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| format!("fake-{}-{}", std::process::id(), now_ns()))
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

struct Turn {
    session: String,
    model: String,
    started: Instant,
    turns: usize,
}

impl Turn {
    fn delta(&self, text: &str) {
        emit(&json!({"type":"stream_event","session_id":self.session,"parent_tool_use_id":null,
            "event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}}}));
    }

    fn assistant(&self, content: Value) {
        emit(&json!({"type":"assistant","session_id":self.session,"parent_tool_use_id":null,
            "message":{"id":"msg_fake","type":"message","role":"assistant","model":self.model,
                "content":[content],"stop_reason":null}}));
    }

    fn result(&self, text: &str, is_error: bool, extra: Value) {
        let mut line = json!({"type":"result","subtype":"success","is_error":is_error,"result":text,
            "session_id":self.session,"num_turns":self.turns,
            "duration_ms":self.started.elapsed().as_millis() as u64,"total_cost_usd":0.0,
            "usage":{"input_tokens":10,"output_tokens":text.len(),"cache_read_input_tokens":0}});
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        emit(&line);
    }

    /// Claude's output after SIGINT; exits 0.
    fn interrupted(&self, partial: &str) -> ! {
        self.assistant(json!({"type":"text","text":partial}));
        emit(&json!({"type":"user","session_id":self.session,
            "message":{"role":"user","content":[{"type":"text","text":"[Request interrupted by user]"}]}}));
        emit(&json!({"type":"result","subtype":"error_during_execution","is_error":true,
            "session_id":self.session,"num_turns":self.turns,"terminal_reason":"aborted_streaming",
            "errors":["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null"],"duration_ms":self.started.elapsed().as_millis() as u64,
            "usage":{"input_tokens":0,"output_tokens":0}}));
        std::process::exit(0)
    }

    /// Streams `text` as `n` deltas `gap` apart.
    fn stream(&self, text: &str, n: usize, gap: Duration) {
        let chars: Vec<char> = text.chars().collect();
        let size = chars.len().div_ceil(n.max(1)).max(1);
        let mut sent = String::new();
        for chunk in chars.chunks(size) {
            if INTERRUPTED.load(Ordering::SeqCst) {
                self.interrupted(&sent);
            }
            let piece: String = chunk.iter().collect();
            self.delta(&piece);
            sent.push_str(&piece);
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            self.interrupted(&sent);
        }
    }
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[allow(clippy::disallowed_methods)]
fn shell(command: &str) -> std::io::Result<std::process::Output> {
    std::process::Command::new("sh").arg("-c").arg(command).output()
}

#[allow(clippy::disallowed_methods)]
fn fork_grandchildren(state: &std::path::Path) -> Vec<String> {
    let file = state.join(format!("grandchildren-{}.pids", std::process::id()));
    let script =
        format!("sleep 600 & echo $! >> '{0}'; sleep 600 & echo $! >> '{0}'; wait", file.display());
    let spawned = std::process::Command::new("sh").arg("-c").arg(script).spawn();
    if spawned.is_err() {
        return Vec::new();
    }
    for _ in 0..200 {
        let pids: Vec<String> =
            std::fs::read_to_string(&file).unwrap_or_default().lines().map(str::to_owned).collect();
        if pids.len() >= 2 {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Vec::new()
}

/// A `sleep 600` in our process group. Forked children do not inherit the
/// parent-death signal: it outlives us when the runner (and so we) are SIGKILLed.
#[allow(clippy::disallowed_methods)]
fn spawn_member() -> Option<u32> {
    std::process::Command::new("sleep").arg("600").spawn().ok().map(|m| m.id())
}

fn keyword_value<'a>(prompt: &'a str, key: &str) -> Option<&'a str> {
    prompt.split_whitespace().find_map(|w| w.strip_prefix(key))
}

fn has(prompt: &str, word: &str) -> bool {
    prompt.split_whitespace().any(|w| w == word)
}

fn main() {
    let args = parse_args();
    if args.version {
        println!("9.9.9 (Fake CLI)");
        return;
    }
    set_handler(Signal::SIGINT, SigHandler::Handler(on_sigint));
    if has(&args.prompt, "ignore-sigterm") {
        // Before `system/init`: callers send SIGTERM as soon as they see the session.
        set_handler(Signal::SIGTERM, SigHandler::SigIgn);
    }
    let state = state_dir();
    let _ = std::fs::create_dir_all(state.join("sessions"));
    let _ = std::fs::write(state.join("last-argv.json"), json!(args.raw).to_string());
    let input = json!({"prompt": args.prompt, "system_prompt": args.system_prompt});
    let _ = std::fs::write(state.join("last-input.json"), input.to_string());
    let session = match &args.resume {
        Some(id) => {
            if !state.join("sessions").join(format!("{id}.jsonl")).is_file() && !imported(id) {
                emit(&json!({"type":"result","subtype":"error_during_execution","is_error":true,
                    "session_id":new_session_id(),"num_turns":0,"duration_ms":0,
                    "errors":[format!("No conversation found with session ID: {id}")]}));
                std::process::exit(1);
            }
            id.clone()
        }
        None => new_session_id(),
    };
    let history = state.join("sessions").join(format!("{session}.jsonl"));
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&history).ok();
    if let Some(file) = file.as_mut() {
        let _ = writeln!(file, "{}", json!({"prompt": args.prompt}));
    }
    let turns = std::fs::read_to_string(&history).map(|t| t.lines().count()).unwrap_or(1);
    let model = if args.model.is_empty() { "fake-model".to_owned() } else { args.model.clone() };
    let turn = Turn { session, model, started: Instant::now(), turns };
    emit(&json!({"type":"system","subtype":"init","session_id":turn.session,"model":turn.model,
        "permissionMode":args.permission_mode,"cwd":std::env::current_dir().unwrap_or_default(),
        "claude_code_version":"9.9.9"}));
    script(&args.prompt, &turn, &state);
}

/// A session found where the real claude keeps transcripts,
/// `$CLAUDE_CONFIG_DIR/projects/<cwd slug>/<id>.jsonl` (one `ductorctl
/// import` brought along), is resumed too.
fn imported(id: &str) -> bool {
    let (Some(home), Ok(cwd)) = (std::env::var_os("CLAUDE_CONFIG_DIR"), std::env::current_dir())
    else {
        return false;
    };
    let slug: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::path::Path::new(&home).join("projects").join(slug).join(format!("{id}.jsonl")).is_file()
}

fn script(prompt: &str, turn: &Turn, state: &std::path::Path) {
    if has(prompt, "ignore-sigterm") {
        set_handler(Signal::SIGTERM, SigHandler::SigIgn);
        hang();
    }
    if has(prompt, "leave-member") {
        let pid = spawn_member().map(|p| p.to_string()).unwrap_or_default();
        emit(&json!({"type":"system","subtype":"status","status":format!("member {pid}"),
            "session_id":turn.session}));
        hang();
    }
    if has(prompt, "hang") {
        hang();
    }
    emit(
        &json!({"type":"system","subtype":"status","status":"requesting","session_id":turn.session}),
    );
    if has(prompt, "garbage") {
        println!("this is not json {{{{");
        println!("[1,2,3]");
        println!("{{\"truncated\": ");
    }
    if has(prompt, "huge-line") {
        let mut out = std::io::stdout().lock();
        let block = vec![b'x'; 1 << 20];
        let _ = out.write_all(b"{\"type\":\"huge\",\"data\":\"");
        for _ in 0..20 {
            let _ = out.write_all(&block);
        }
        let _ = out.write_all(b"\"}\n");
        let _ = out.flush();
    }
    if has(prompt, "fork-grandchildren") {
        let pids = fork_grandchildren(state);
        emit(
            &json!({"type":"system","subtype":"status","status":format!("grandchildren {}", pids.join(" ")),
            "session_id":turn.session}),
        );
    }
    if has(prompt, "error") {
        let text = "API Error: 400 fake_cli: bad request requested by prompt";
        emit(&json!({"type":"assistant","session_id":turn.session,"is_api_error_message":true,
            "message":{"id":"msg_err","model":"<synthetic>","role":"assistant",
                "content":[{"type":"text","text":text}]}}));
        turn.result(text, true, json!({"api_error_status":400,"terminal_reason":"api_error"}));
        std::process::exit(1);
    }
    if has(prompt, "tool") {
        turn.assistant(json!({"type":"tool_use","id":"toolu_fake1","name":"Bash",
            "input":{"command":"echo hi","description":"Print hi"}}));
        emit(&json!({"type":"user","session_id":turn.session,"message":{"role":"user",
            "content":[{"tool_use_id":"toolu_fake1","type":"tool_result","content":"hi","is_error":false}]}}));
    }
    reply(prompt, turn);
}

fn reply(prompt: &str, turn: &Turn) {
    if let Some(n) = keyword_value(prompt, "stamp:").and_then(|n| n.parse::<usize>().ok()) {
        for _ in 0..n {
            turn.delta(&now_ns().to_string());
            std::thread::sleep(Duration::from_millis(10));
        }
        turn.result("stamped", false, json!({}));
        return;
    }
    let text = match prompt.find("sh:") {
        Some(at) => match shell(&prompt[at + 3..]) {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(error) => format!("sh failed: {error}"),
        },
        None => format!("echo: {prompt}"),
    };
    let (n, gap) = match keyword_value(prompt, "slow:").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => (n, Duration::from_millis(100)),
        None => (4, Duration::ZERO),
    };
    if has(prompt, "crash-mid-stream") {
        turn.stream(&text, 4, Duration::ZERO);
        std::process::abort();
    }
    turn.stream(&text, n, gap);
    turn.assistant(json!({"type":"text","text":text}));
    if has(prompt, "no-result") {
        return;
    }
    if has(prompt, "no-duration") {
        // Like codex and gemini without stats: the runner's clock must fill it.
        turn.result(&text, false, json!({"duration_ms": null, "num_turns": null}));
        return;
    }
    turn.result(&text, false, json!({}));
}
