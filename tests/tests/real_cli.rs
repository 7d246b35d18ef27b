//! The real claude, codex and gemini CLIs through the real `ductor-runner` over its
//! socket, against the fake model API on loopback: a new turn, a resume, a shell tool
//! call, a model error, an interrupt and a stop mid-stream, model/effort/system-prompt/permission
//! options, and a SIGKILLed runner (nothing of the run may survive), for each CLI.
//!
//! Needs the pinned CLIs (`tests/setup/install-clis.sh`) and the runner binary
//! (`cargo build --bins`). Without them a test prints SKIP, or fails when
//! `DUCTOR_REQUIRE_REAL=1`.

#[path = "real_cli/support.rs"]
mod support;

use ductor_proto::pb;
use ductor_proto::pb::run_event::Kind;
use std::time::Duration;

use ductor_tests::fake_model::{ERROR_MESSAGE, Scenario, SlowPace, TOOL_DONE_TEXT};
use support::{Cli, Rig, Transcript, patience};

/// What the fake answers a plain prompt with.
fn echo(prompt: &str) -> String {
    format!("You said: {prompt}")
}

fn assert_completed(t: &Transcript) {
    assert_eq!(t.outcome(), pb::RunOutcome::Completed, "{}", t.dump());
}

async fn new_turn(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "new_turn").await else {
        return;
    };
    let (info, sandbox) = rig.probe().await;
    assert!(info.installed, "{info:?}");
    assert_eq!(info.version, cli.pinned_version(), "{info:?}");
    if cli == Cli::Codex {
        // The key variable is named by `model_providers.fake.env_key` in config.toml:
        // "unknown" (can't tell) or "api_key", never "unauthenticated" (it works).
        assert!(["api_key", "unknown"].contains(&info.auth_hint.as_str()), "{info:?}");
    } else {
        assert_eq!(info.auth_hint, "api_key", "{info:?}");
    }

    let prompt = "say hello to the banana";
    let spec = rig.spec(prompt);
    let t = rig.run(spec).await;

    let started = t.started();
    assert!(started.pid > 0, "{}", t.dump());
    assert_eq!(started.sandbox, sandbox, "runs get the probed sandbox");
    assert_eq!(started.binary, info.path);
    assert_eq!(started.cli_version, cli.pinned_version());
    let session = t.session().expect("a session started event").to_owned();
    assert!(!session.is_empty());
    let result = t.result().unwrap_or_else(|| panic!("no result\n{}", t.dump()));
    assert!(!result.is_error, "{}", t.dump());
    assert_eq!(result.session_id, session);
    assert!(result.text.contains(&echo(prompt)), "{}", t.dump());
    assert!(t.text().contains(&echo(prompt)), "{}", t.dump());
    let min_deltas = if cli.streams_text() { 3 } else { 1 };
    assert!(t.text_deltas() >= min_deltas, "{}", t.dump());
    assert!(t.errors().is_empty(), "{}", t.dump());
    assert_completed(&t);

    let turns = rig.fake.generations();
    assert_eq!(turns.len(), 1, "one model call: {turns:?}");
    assert_eq!(turns[0].prompt.as_deref(), Some(prompt));
    rig.assert_no_processes_left().await;
}

async fn resume(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "resume").await else {
        return;
    };
    let first_prompt = "remember the word papaya";
    let spec = rig.spec(first_prompt);
    let first = rig.run(spec).await;
    assert_completed(&first);
    let session = first.session().expect("a session id").to_owned();

    let mut spec = rig.spec("which word was it");
    spec.resume_session_id = session.clone();
    let second = rig.run(spec).await;
    assert_completed(&second);
    let result = second.result().expect("a result");
    assert!(!result.is_error, "{}", second.dump());
    assert_eq!(result.session_id, session, "resumed in the same session");
    assert!(result.text.contains(&echo("which word was it")));
    assert!(result.duration_ms > 0 && result.num_turns >= 1, "{result:?}");
    // `usage`/`cost_usd` are this run's; `session_*` are the CLI's running totals.
    let earlier = first.result().expect("a first result");
    match cli {
        Cli::Claude => {
            let (cost, total) =
                (result.cost_usd.expect("cost"), result.session_cost_usd.expect("total"));
            assert!(total > cost && cost > 0.0, "{result:?}");
            let (run, session) =
                (result.usage.expect("usage"), result.session_usage.expect("totals"));
            assert!(session.input_tokens > run.input_tokens, "{result:?}");
        }
        Cli::Codex => {
            assert_eq!(result.usage, None, "codex reports thread totals only: {result:?}");
            let before = earlier.session_usage.expect("thread totals").input_tokens;
            assert!(result.session_usage.expect("thread totals").input_tokens > before);
        }
        Cli::Gemini => {
            assert!(result.usage.is_some_and(|u| u.input_tokens > 0), "{result:?}");
            assert_eq!((result.session_usage, result.session_cost_usd), (None, None));
        }
    }

    let turns = rig.fake.generations();
    let last = turns.last().expect("model calls");
    assert_eq!(last.prompt.as_deref(), Some("which word was it"));
    assert!(
        last.body_contains(first_prompt),
        "the resumed request carries the first prompt: {}",
        last.body
    );
    assert!(
        last.body_contains("papaya")
            && last.body_contains("Hello")
            && last.body_contains(" model."),
        "the resumed request carries the first reply: {}",
        last.body
    );
    rig.assert_no_processes_left().await;
}

async fn tool_call(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "tool_call").await else {
        return;
    };
    let mut spec = rig.spec("please use a tool");
    spec.permission_mode = pb::PermissionMode::Bypass as i32;
    let t = rig.run(spec).await;
    assert_completed(&t);

    let started = t.tools_started();
    let shell = started
        .iter()
        .find(|s| s.summary.contains("echo hi"))
        .unwrap_or_else(|| panic!("a tool started with `echo hi`\n{}", t.dump()));
    let finished = t.tools_finished();
    let done = finished
        .iter()
        .find(|f| f.tool_id == shell.tool_id)
        .unwrap_or_else(|| panic!("the tool finished\n{}", t.dump()));
    assert!(done.ok, "{}", t.dump());
    assert!(done.output.contains("hi"), "{}", t.dump());
    let result = t.result().expect("a result");
    assert!(!result.is_error);
    assert!(result.text.contains(TOOL_DONE_TEXT), "{}", t.dump());

    let follow_up = rig
        .fake
        .generations()
        .into_iter()
        .find(|r| r.scenario == Scenario::ToolResult)
        .expect("the CLI sent the tool result back to the model");
    assert!(follow_up.body_contains("hi"));
    rig.assert_no_processes_left().await;
}

async fn model_error(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "model_error").await else {
        return;
    };
    let spec = rig.spec("answer with an error");
    let t = rig.run(spec).await;

    let errors = t.errors();
    for error in &errors {
        assert_eq!(
            pb::ErrorKind::try_from(error.kind),
            Ok(pb::ErrorKind::ModelApi),
            "{}",
            t.dump()
        );
    }
    let result_is_error = t.result().is_some_and(|r| r.is_error);
    assert!(result_is_error || !errors.is_empty(), "a model error is reported\n{}", t.dump());
    let says_why = t.result().is_some_and(|r| r.text.contains(ERROR_MESSAGE))
        || errors.iter().any(|e| e.message.contains(ERROR_MESSAGE));
    assert!(says_why, "the API's message reaches the client\n{}", t.dump());
    assert!(
        matches!(t.outcome(), pb::RunOutcome::Completed | pb::RunOutcome::Failed),
        "{}",
        t.dump()
    );
    assert!(rig.fake.generations().iter().all(|r| r.scenario == Scenario::Error));
    rig.assert_no_processes_left().await;
}

/// Starts a `slow` run and returns once the CLI is mid-stream (reading the slow reply,
/// and showing it where it streams text).
async fn start_slow_run(rig: &mut Rig) -> (String, tonic::Streaming<pb::RunEvent>, Transcript) {
    let cli = rig.cli;
    let spec = rig.spec("go slow please");
    let run_id = spec.run_id.clone();
    let mut stream = rig.start_run(spec).await;
    let mut t = Transcript::default();

    // Mid-stream: the CLI is reading the slow reply (and showing it, where it streams).
    if cli.streams_text() {
        let delta = rig.read_until(&mut stream, &mut t, |k| matches!(k, Kind::Text(_))).await;
        assert!(delta.is_some(), "text before the end\n{}", t.dump());
    } else {
        rig.read_until(&mut stream, &mut t, |k| matches!(k, Kind::Session(_)))
            .await
            .expect("a session before the end");
    }
    assert!(
        rig.fake.wait_until(patience(), |p| p.chunks_sent >= 3).await,
        "the slow reply is streaming"
    );
    (run_id, stream, t)
}

async fn signal(rig: &mut Rig, run_id: &str, kind: pb::SignalKind) {
    let request = pb::SignalRequest { run_id: run_id.to_owned(), kind: kind as i32 };
    let found = rig.client.signal(request).await.expect("Signal").into_inner().found;
    assert!(found, "the run is live when signalled");
}

async fn interrupt(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "interrupt").await else {
        return;
    };
    let (run_id, mut stream, mut t) = start_slow_run(&mut rig).await;
    let listed =
        rig.client.list_runs(pb::ListRunsRequest::default()).await.expect("ListRuns").into_inner();
    assert!(listed.runs.iter().any(|r| r.run_id == run_id && r.pid > 0));

    signal(&mut rig, &run_id, pb::SignalKind::Interrupt).await;
    rig.read_to_end(&mut stream, &mut t).await;

    assert_eq!(t.outcome(), pb::RunOutcome::Interrupted, "{}", t.dump());
    assert!(!t.text().contains("chunk49"), "the reply was cut\n{}", t.dump());
    if let Some(result) = t.result() {
        // Claude prints a result after SIGINT: its text is the partial reply, not a diagnostic.
        assert!(!result.text.contains("ede_diagnostic"), "{}", t.dump());
        assert!(t.text().starts_with(&result.text), "{}", t.dump());
    }
    assert!(
        rig.fake.wait_until(patience(), |p| p.streams_aborted >= 1).await,
        "the CLI hung up on the model stream: {:?}",
        rig.fake.progress()
    );
    rig.assert_no_processes_left().await;
    let listed =
        rig.client.list_runs(pb::ListRunsRequest::default()).await.expect("ListRuns").into_inner();
    assert!(listed.runs.iter().all(|r| r.run_id != run_id), "run still listed");

    // The interrupted session goes on: the next turn resumes it.
    let session = t.session().expect("a session id").to_owned();
    let mut spec = rig.spec("are you still there");
    spec.resume_session_id = session.clone();
    let next = rig.run(spec).await;
    assert_completed(&next);
    let result = next.result().expect("a result");
    assert!(!result.is_error, "{}", next.dump());
    assert_eq!(result.session_id, session);
    let last = rig.fake.generations().pop().expect("model calls");
    assert!(
        last.body_contains("go slow please"),
        "the interrupted prompt is in the resumed history: {}",
        last.body
    );
}

/// Stop mid-stream: SIGTERM to the group (SIGKILL after the grace); whatever the CLI
/// does with SIGTERM (claude exits 143, codex dies of it, gemini exits 0 without a
/// result), the run ends as stopped and nothing of it is left.
async fn stop(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "stop").await else {
        return;
    };
    let (run_id, mut stream, mut t) = start_slow_run(&mut rig).await;
    signal(&mut rig, &run_id, pb::SignalKind::Stop).await;
    rig.read_to_end(&mut stream, &mut t).await;
    assert_eq!(t.outcome(), pb::RunOutcome::Stopped, "{}", t.dump());
    assert!(t.result().is_none_or(|r| r.is_error), "{}", t.dump());
    assert!(
        rig.fake.wait_until(patience(), |p| p.streams_aborted >= 1).await,
        "the CLI hung up on the model stream: {:?}",
        rig.fake.progress()
    );
    rig.assert_no_processes_left().await;
}

/// Model, reasoning effort, system-prompt addition and permission mode become flags the
/// CLI accepts, and reach the model API.
async fn options(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "options").await else {
        return;
    };
    let (model, effort) = match cli {
        Cli::Claude => ("claude-opus-5-5", "low"),
        Cli::Codex => ("gpt-5.5", "high"),
        // Gemini CLI has no effort setting; the runner ignores it.
        Cli::Gemini => ("gemini-2.5-flash", "high"),
    };
    let mut spec = rig.spec("hello with options");
    spec.model = model.to_owned();
    spec.reasoning_effort = effort.to_owned();
    spec.append_system_prompt = "Answer tersely. Marker kiwi-7.".to_owned();
    spec.permission_mode = pb::PermissionMode::AcceptEdits as i32;
    let t = rig.run(spec).await;
    assert_completed(&t);
    assert!(!t.result().expect("a result").is_error, "{}", t.dump());

    let turns = rig.fake.generations();
    assert_eq!(turns.len(), 1, "{turns:?}");
    let request = &turns[0];
    assert!(request.body_contains("Marker kiwi-7"), "system prompt addition: {}", request.body);
    match cli {
        Cli::Claude => {
            assert_eq!(request.body["model"], model);
            assert_eq!(request.body["output_config"]["effort"], effort, "{}", request.body);
        }
        Cli::Codex => {
            assert_eq!(request.body["model"], model);
            assert_eq!(request.body["reasoning"]["effort"], effort, "{}", request.body);
        }
        Cli::Gemini => {
            assert!(request.path.contains(&format!("/models/{model}:")), "{}", request.path);
            assert_eq!(rig.fake.requests().len(), 1, "no model router call with a fixed model");
        }
    }
    rig.assert_no_processes_left().await;
}

/// A SIGKILLed runner leaves no CLI behind: the parent-death signal ends the CLI, and
/// the next runner start sweeps whatever of its process group survived.
async fn runner_killed(cli: Cli) {
    // A reply that outlasts the test, so a surviving CLI cannot end on its own.
    let pace = SlowPace { chunks: 3000, delay: Duration::from_millis(100) };
    let Some(mut rig) = Rig::start_paced(cli, "runner_killed", pace).await else {
        return;
    };
    let spec = rig.spec("go slow please");
    let mut stream = rig.start_run(spec).await;
    let mut t = Transcript::default();
    rig.read_until(&mut stream, &mut t, |k| matches!(k, Kind::Session(_)))
        .await
        .expect("a session before the end");
    assert!(
        rig.fake.wait_until(patience(), |p| p.chunks_sent >= 3).await,
        "the slow reply is streaming"
    );
    assert!(!rig.leftovers().is_empty(), "the CLI is running");

    rig.kill_runner().await;
    rig.restart_runner().await;
    rig.assert_no_processes_left().await;
}

/// The scenarios for one CLI, as a module of tests named after it.
macro_rules! real_cli_tests {
    ($module:ident, $cli:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn new_turn() {
                super::new_turn($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn resume() {
                super::resume($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tool_call() {
                super::tool_call($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn model_error() {
                super::model_error($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn interrupt() {
                super::interrupt($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stop() {
                super::stop($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn options() {
                super::options($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn runner_killed() {
                super::runner_killed($cli).await;
            }
        }
    };
}

real_cli_tests!(claude, Cli::Claude);
real_cli_tests!(codex, Cli::Codex);
real_cli_tests!(gemini, Cli::Gemini);
