//! The control channel of a run (issue 15), with the real CLIs through the
//! real `ductor-runner` against the fake model: in `ask` mode a tool use that
//! needs permission becomes an approval request, answered allow or deny; an
//! interactive run takes a steering message mid-turn and is interrupted
//! through its input, not a signal (claude's stream-json input, codex
//! `app-server`, gemini `--acp`); gemini, which cannot steer, says so in
//! `Probe` and refuses a steer.
//!
//! Needs the pinned CLIs and `cargo build --bins` (see `real_cli.rs`).

#[path = "real_cli/support.rs"]
#[allow(dead_code)] // shared with real_cli.rs, which uses all of it
mod support;

use ductor_proto::pb;
use ductor_proto::pb::run_event::Kind;

use ductor_tests::fake_model::{RISKY_COMMAND, RISKY_FILE, Scenario};
use support::{Cli, Rig, Transcript, patience};

async fn respond(rig: &mut Rig, run_id: &str, what: pb::respond_request::What) -> bool {
    let request = pb::RespondRequest { run_id: run_id.to_owned(), what: Some(what) };
    rig.client.respond(request).await.expect("Respond").into_inner().delivered
}

fn answer(request_id: &str, allow: bool, message: &str) -> pb::respond_request::What {
    pb::respond_request::What::Approval(pb::ApprovalAnswer {
        request_id: request_id.to_owned(),
        allow,
        message: message.to_owned(),
    })
}

/// Starts a slow interactive run (`ask` too: gemini takes input only then)
/// and returns once its text streams.
async fn slow_interactive(rig: &mut Rig) -> (String, tonic::Streaming<pb::RunEvent>, Transcript) {
    let mut spec = rig.spec("go slow please");
    spec.interactive = true;
    spec.permission_mode = pb::PermissionMode::Ask as i32;
    let run_id = spec.run_id.clone();
    let mut stream = rig.start_run(spec).await;
    let mut t = Transcript::default();
    let delta = rig.read_until(&mut stream, &mut t, |k| matches!(k, Kind::Text(_))).await;
    assert!(delta.is_some(), "text before the end\n{}", t.dump());
    (run_id, stream, t)
}

/// Starts a risky run in `ask` mode and returns at its approval request.
async fn risky_until_asked(
    rig: &mut Rig,
) -> (String, tonic::Streaming<pb::RunEvent>, Transcript, pb::ApprovalRequested) {
    let mut spec = rig.spec("please do something risky");
    spec.permission_mode = pb::PermissionMode::Ask as i32;
    let run_id = spec.run_id.clone();
    let mut stream = rig.start_run(spec).await;
    let mut t = Transcript::default();
    let asked = rig.read_until(&mut stream, &mut t, |k| matches!(k, Kind::ApprovalRequested(_)));
    let Some(Kind::ApprovalRequested(asked)) = asked.await else {
        panic!("an approval request\n{}", t.dump());
    };
    let tool = if rig.cli == Cli::Claude { "Bash" } else { "shell" };
    assert_eq!(asked.tool, tool, "{asked:?}");
    assert!(asked.input_json.contains(RISKY_COMMAND), "the command is shown: {asked:?}");
    assert!(!rig.work.join(RISKY_FILE).exists(), "nothing ran before the answer");
    (run_id, stream, t, asked)
}

async fn an_allowed_tool_runs(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "approve").await else { return };
    let (run_id, mut stream, mut t, asked) = risky_until_asked(&mut rig).await;
    assert!(respond(&mut rig, &run_id, answer(&asked.request_id, true, "")).await);
    assert!(
        !respond(&mut rig, &run_id, answer(&asked.request_id, true, "")).await,
        "a request is answered once"
    );
    rig.read_to_end(&mut stream, &mut t).await;
    assert_eq!(t.outcome(), pb::RunOutcome::Completed, "{}", t.dump());
    assert!(rig.work.join(RISKY_FILE).exists(), "the allowed command ran\n{}", t.dump());
    rig.assert_no_processes_left().await;
}

async fn a_denied_tool_does_not_run(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "deny").await else { return };
    let (run_id, mut stream, mut t, asked) = risky_until_asked(&mut rig).await;
    let why = "Denied from the chat: not on a Friday.";
    assert!(respond(&mut rig, &run_id, answer(&asked.request_id, false, why)).await);
    rig.read_to_end(&mut stream, &mut t).await;
    assert_eq!(t.outcome(), pb::RunOutcome::Completed, "the turn goes on\n{}", t.dump());
    assert!(!rig.work.join(RISKY_FILE).exists(), "the denied command did not run");
    let told = rig.fake.generations().into_iter().find(|r| r.scenario == Scenario::ToolResult);
    let told = told.expect("the model hears of the denial");
    if cli == Cli::Claude {
        // Codex's decline and gemini's reject carry no message of ours.
        assert!(told.body_contains(why), "the model hears why");
    }
    rig.assert_no_processes_left().await;
}

async fn a_steering_message_goes_into_the_running_turn(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "steer").await else { return };
    let (run_id, mut stream, mut t) = slow_interactive(&mut rig).await;
    let steer = pb::respond_request::What::Steer(pb::SteerInput { text: "and bananas".into() });
    assert!(respond(&mut rig, &run_id, steer).await, "the CLI takes the message");
    rig.read_to_end(&mut stream, &mut t).await;
    assert_eq!(t.outcome(), pb::RunOutcome::Completed, "{}", t.dump());
    assert!(t.kinds().any(|k| matches!(k, Kind::Steered(s) if s.text == "and bananas")));
    if cli == Cli::Claude {
        // Claude answers the steer after its answer; codex cuts the answer and takes the steer.
        assert!(t.text().contains("chunk49"), "the first answer is whole\n{}", t.dump());
    }
    assert!(t.text().contains("You said: and bananas"), "the steer is answered\n{}", t.dump());
    let steered = rig
        .fake
        .generations()
        .into_iter()
        .rfind(|r| r.prompt.as_deref() == Some("and bananas"))
        .expect("the steer reached the model");
    assert!(steered.body_contains("go slow please"), "in the same conversation");
    rig.assert_no_processes_left().await;
}

async fn interrupted_through_its_input_not_a_signal(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "interrupt_input").await else { return };
    let (run_id, mut stream, mut t) = slow_interactive(&mut rig).await;
    let request = pb::SignalRequest { run_id, kind: pb::SignalKind::Interrupt as i32 };
    assert!(rig.client.signal(request).await.expect("Signal").into_inner().found);
    rig.read_to_end(&mut stream, &mut t).await;
    assert_eq!(t.outcome(), pb::RunOutcome::Interrupted, "{}", t.dump());
    assert_eq!(t.exited().signal, None, "no signal killed it: {:?}", t.exited());
    let log = rig.runner_log();
    assert!(log.contains("interrupting through the CLI's input"), "{log}");
    assert!(!t.text().contains("chunk49"), "the reply was cut\n{}", t.dump());
    assert!(
        rig.fake.wait_until(patience(), |p| p.streams_aborted >= 1).await,
        "the CLI hung up on the model stream"
    );
    rig.assert_no_processes_left().await;
}

/// Gemini (ACP) cannot add a message to a running prompt: `Probe` says so,
/// and a steer is refused while the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_asks_but_cannot_steer() {
    let Some(mut rig) = Rig::start(Cli::Gemini, "no_steer").await else { return };
    let (info, _) = rig.probe().await;
    assert!(info.can_approve && !info.can_steer, "{info:?}");
    let (run_id, mut stream, mut t) = slow_interactive(&mut rig).await;
    let steer = pb::respond_request::What::Steer(pb::SteerInput { text: "hello?".into() });
    assert!(!respond(&mut rig, &run_id, steer).await, "ACP cannot take it");
    rig.read_to_end(&mut stream, &mut t).await;
    assert_eq!(t.outcome(), pb::RunOutcome::Completed, "{}", t.dump());
    assert!(t.text().contains("chunk49"), "{}", t.dump());
    rig.assert_no_processes_left().await;
}

async fn says_it_can_steer_and_ask(cli: Cli) {
    let Some(mut rig) = Rig::start(cli, "caps").await else { return };
    let (info, _) = rig.probe().await;
    assert!(info.can_approve && info.can_steer, "{info:?}");
}

/// The scenarios for a CLI that can be asked and steered.
macro_rules! control_tests {
    ($module:ident, $cli:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_allowed_tool_runs() {
                super::an_allowed_tool_runs($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_denied_tool_does_not_run() {
                super::a_denied_tool_does_not_run($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_steering_message_goes_into_the_running_turn() {
                super::a_steering_message_goes_into_the_running_turn($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn interrupted_through_its_input_not_a_signal() {
                super::interrupted_through_its_input_not_a_signal($cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn says_it_can_steer_and_ask() {
                super::says_it_can_steer_and_ask($cli).await;
            }
        }
    };
}

control_tests!(claude, Cli::Claude);
control_tests!(codex, Cli::Codex);

/// Gemini: approvals and interrupt through ACP.
mod gemini {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allowed_tool_runs() {
        super::an_allowed_tool_runs(Cli::Gemini).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_denied_tool_does_not_run() {
        super::a_denied_tool_does_not_run(Cli::Gemini).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupted_through_its_input_not_a_signal() {
        super::interrupted_through_its_input_not_a_signal(Cli::Gemini).await;
    }
}

/// Codex `app-server` resumes a thread by id, and an unknown id ends the run
/// with SESSION_NOT_FOUND (core then starts fresh) instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_app_server_resumes_and_refuses_an_unknown_thread() {
    let Some(mut rig) = Rig::start(Cli::Codex, "app_resume").await else { return };
    let mut spec = rig.spec("remember the word pineapple");
    spec.interactive = true;
    let first = rig.run(spec).await;
    assert_eq!(first.outcome(), pb::RunOutcome::Completed, "{}", first.dump());
    let thread = first.session().expect("a thread id").to_owned();
    let mut spec = rig.spec("what was the word");
    spec.interactive = true;
    spec.resume_session_id = thread.clone();
    let second = rig.run(spec).await;
    assert_eq!(second.outcome(), pb::RunOutcome::Completed, "{}", second.dump());
    assert_eq!(second.result().map(|r| r.session_id.as_str()), Some(thread.as_str()));
    let last = rig.fake.generations().pop().expect("model calls");
    assert!(last.body_contains("pineapple"), "the thread's history was sent");

    let mut spec = rig.spec("hello again");
    spec.interactive = true;
    spec.resume_session_id = "01a00000-0000-7000-8000-000000000000".into();
    let unknown = rig.run(spec).await;
    let kinds: Vec<_> = unknown.errors().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&(pb::ErrorKind::SessionNotFound as i32)), "{}", unknown.dump());
    rig.assert_no_processes_left().await;
}

/// Gemini 0.61's ACP cannot load a session by id, so a resumed `ask` turn
/// runs with `-p --resume` (gemini's own headless rules) and keeps the
/// conversation; only a new session's turn can ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_resumed_in_ask_mode_keeps_its_conversation() {
    let Some(mut rig) = Rig::start(Cli::Gemini, "acp_resume").await else { return };
    let mut spec = rig.spec("remember the word pineapple");
    spec.permission_mode = pb::PermissionMode::Ask as i32;
    let first = rig.run(spec).await;
    assert_eq!(first.outcome(), pb::RunOutcome::Completed, "{}", first.dump());
    let session = first.session().expect("a session id").to_owned();
    let mut spec = rig.spec("what was the word");
    spec.permission_mode = pb::PermissionMode::Ask as i32;
    spec.resume_session_id = session.clone();
    let second = rig.run(spec).await;
    assert_eq!(second.outcome(), pb::RunOutcome::Completed, "{}", second.dump());
    assert_eq!(second.session(), Some(session.as_str()));
    let last = rig.fake.generations().pop().expect("model calls");
    assert!(last.body_contains("pineapple"), "the session's history was sent");
    rig.assert_no_processes_left().await;
}

/// Claude in plan mode asks to leave it (`ExitPlanMode`, with the plan):
/// approving lets the turn go on, "keep planning" keeps it in the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_asks_to_approve_its_plan() {
    let Some(mut rig) = Rig::start(Cli::Claude, "plan").await else { return };
    for allow in [true, false] {
        let mut spec = rig.spec("make a plan please");
        spec.permission_mode = pb::PermissionMode::Plan as i32;
        let run_id = spec.run_id.clone();
        let mut stream = rig.start_run(spec).await;
        let mut t = Transcript::default();
        let asked =
            rig.read_until(&mut stream, &mut t, |k| matches!(k, Kind::ApprovalRequested(_))).await;
        let Some(Kind::ApprovalRequested(asked)) = asked else {
            panic!("the plan is put to the user\n{}", t.dump());
        };
        // Claude 2.1.330 keeps the plan in a file; the request itself carries no input.
        assert_eq!(asked.tool, "ExitPlanMode", "{asked:?}");
        assert!(
            respond(&mut rig, &run_id, answer(&asked.request_id, allow, "Keep planning.")).await
        );
        rig.read_to_end(&mut stream, &mut t).await;
        assert_eq!(t.outcome(), pb::RunOutcome::Completed, "{}", t.dump());
    }
    rig.assert_no_processes_left().await;
}
