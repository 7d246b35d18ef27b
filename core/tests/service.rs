//! The `Core` gRPC service in-process: a real driver, store, outbox and
//! service over in-memory gRPC pairs, with a scripted fake runner service
//! (no sockets, no processes). The fake is used only for what a real runner
//! cannot be made to do on cue: an unknown resume id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductor_core::driver::{CoreHandle, Driver, DriverParts, Stats};
use ductor_core::machine::{InjectOptions, Machine};
use ductor_core::model::{OutKind, SessionKey};
use ductor_core::outbox::Outbox;
use ductor_core::runner::{OneshotSpec, RunnerLink, health_loop};
use ductor_core::service::CoreService;
use ductor_core::store::Store;
use ductor_core::workspace::{self, WorkspaceEnv};
use ductor_daemon::Config;
use ductor_daemon::config::FileAccess;
use ductor_daemon::sync::Locked as _;
use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use ductor_proto::pb::runner_server::{Runner, RunnerServer};
use ductor_tests::gateway::{self, Gateway};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

type Events = mpsc::Sender<Result<pb::RunEvent, Status>>;

/// A runner that scripts runs by prompt: `wait` runs until signalled,
/// a resumed `forget` answers SESSION_NOT_FOUND, anything else echoes.
#[derive(Clone, Default)]
struct FakeRunner {
    specs: Arc<Mutex<Vec<pb::RunSpec>>>,
    signals: Arc<Mutex<HashMap<String, mpsc::Sender<i32>>>>,
}

fn event(run_id: &str, seq: u64, kind: pb::run_event::Kind) -> Result<pb::RunEvent, Status> {
    Ok(pb::RunEvent { run_id: run_id.into(), seq, at_ms: 0, kind: Some(kind) })
}

async fn script(spec: pb::RunSpec, tx: Events, mut signals: mpsc::Receiver<i32>) {
    use pb::run_event::Kind;
    let id = spec.run_id.clone();
    let session = if spec.resume_session_id.is_empty() {
        format!("sess-{id}")
    } else {
        spec.resume_session_id.clone()
    };
    let _ = tx.send(event(&id, 1, Kind::Started(pb::RunStarted::default()))).await;
    if spec.prompt.contains("forget") && !spec.resume_session_id.is_empty() {
        let error = pb::RunError {
            kind: pb::ErrorKind::SessionNotFound as i32,
            message: "No conversation found".into(),
            ..Default::default()
        };
        let _ = tx.send(event(&id, 2, Kind::Error(error))).await;
        let exited = pb::RunExited { outcome: pb::RunOutcome::Failed as i32, ..Default::default() };
        let _ = tx.send(event(&id, 3, Kind::Exited(exited))).await;
        return;
    }
    let _ = tx
        .send(event(&id, 2, Kind::Session(pb::SessionStarted { session_id: session.clone() })))
        .await;
    if spec.prompt.contains("wait") {
        let signal = signals.recv().await.unwrap_or(pb::SignalKind::Kill as i32);
        let outcome = if signal == pb::SignalKind::Interrupt as i32 {
            pb::RunOutcome::Interrupted
        } else {
            pb::RunOutcome::Stopped
        };
        let exited = pb::RunExited { outcome: outcome as i32, ..Default::default() };
        let _ = tx.send(event(&id, 3, Kind::Exited(exited))).await;
        return;
    }
    let text = format!("echo: {}", spec.prompt);
    let _ = tx.send(event(&id, 3, Kind::Text(pb::TextDelta { text: text.clone() }))).await;
    let result = pb::RunResult { text, session_id: session, ..Default::default() };
    let _ = tx.send(event(&id, 4, Kind::Result(result))).await;
    let exited = pb::RunExited { outcome: pb::RunOutcome::Completed as i32, ..Default::default() };
    let _ = tx.send(event(&id, 5, Kind::Exited(exited))).await;
}

#[tonic::async_trait]
impl Runner for FakeRunner {
    type StartRunStream = ReceiverStream<Result<pb::RunEvent, Status>>;

    async fn start_run(
        &self,
        request: Request<pb::RunSpec>,
    ) -> Result<Response<Self::StartRunStream>, Status> {
        let spec = request.into_inner();
        self.specs.locked().push(spec.clone());
        let (tx, rx) = mpsc::channel(16);
        let (signal_tx, signal_rx) = mpsc::channel(4);
        self.signals.locked().insert(spec.run_id.clone(), signal_tx);
        tokio::spawn(script(spec, tx, signal_rx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn signal(
        &self,
        request: Request<pb::SignalRequest>,
    ) -> Result<Response<pb::SignalResponse>, Status> {
        let request = request.into_inner();
        let sender = self.signals.locked().get(&request.run_id).cloned();
        let found = match sender {
            Some(sender) => sender.send(request.kind).await.is_ok(),
            None => false,
        };
        Ok(Response::new(pb::SignalResponse { found }))
    }

    async fn list_runs(
        &self,
        _request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        Ok(Response::new(pb::ListRunsResponse::default()))
    }

    async fn respond(
        &self,
        _request: Request<pb::RespondRequest>,
    ) -> Result<Response<pb::RespondResponse>, Status> {
        Ok(Response::new(pb::RespondResponse { delivered: false }))
    }

    async fn restart(
        &self,
        _request: Request<pb::RestartRequest>,
    ) -> Result<Response<pb::RestartResponse>, Status> {
        Err(Status::unimplemented("the fake runner does not restart"))
    }

    async fn prepare_media(
        &self,
        _request: Request<pb::PrepareMediaRequest>,
    ) -> Result<Response<pb::PrepareMediaResponse>, Status> {
        Err(Status::unimplemented("the fake runner prepares no media"))
    }

    async fn import_transcript(
        &self,
        _request: Request<pb::ImportTranscriptRequest>,
    ) -> Result<Response<pb::ImportTranscriptResponse>, Status> {
        Err(Status::unimplemented("the fake runner imports no transcripts"))
    }

    async fn probe(
        &self,
        _request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        let claude = pb::ProviderInfo {
            name: "claude".into(),
            installed: true,
            version: "1.0".into(),
            auth_hint: "authenticated".into(),
            models: vec!["sonnet".into(), "opus".into()],
            default_model: "sonnet".into(),
            ..Default::default()
        };
        Ok(Response::new(pb::ProbeResponse { providers: vec![claude], ..Default::default() }))
    }
}

struct Core {
    client: CoreClient<ductor_proto::Channel>,
    channel: ductor_proto::Channel,
    handle: CoreHandle,
    runner: FakeRunner,
    _dir: tempfile::TempDir,
}

async fn start_core() -> Core {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("workspace");
    workspace::seed(&ws).expect("seed");
    let store = Store::open(&dir.path().join("state.db"), &[]).expect("open store");
    let fake = FakeRunner::default();
    let runner_channel = ductor_proto::testing::pair(
        tonic::transport::Server::builder().add_service(RunnerServer::new(fake.clone())),
    )
    .await;
    let runner = RunnerLink::new(
        runner_channel,
        ws.to_string_lossy().into_owned(),
        pb::PermissionMode::Bypass,
    );
    let env = WorkspaceEnv::new(ws, FileAccess::Workspace, None, &[]);
    let machine = Machine::new(ductor_core::machine_config(&Config::default()), env, Vec::new());
    let stats = Arc::new(Stats::default());
    let probe = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (driver, inputs, handle) = Driver::new(DriverParts {
        machine,
        store: store.clone(),
        outbox: Arc::new(Outbox::new(store.clone())),
        runner: runner.clone(),
        probe: probe.clone(),
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        defaults: ductor_core::driver::OneshotDefaults {
            provider: "claude".into(),
            model: String::new(),
            timeout_ms: 60_000,
            agents: Default::default(),
        },
        restart: None,
    });
    tokio::spawn(health_loop(runner, driver.sink(), probe, shutdown));
    tokio::spawn(driver.run(inputs));
    let service = CoreService::new(handle.clone(), store, "test", stats);
    let channel = ductor_proto::testing::pair(
        tonic::transport::Server::builder().add_service(service.into_server()),
    )
    .await;
    Core { client: CoreClient::new(channel.clone()), channel, handle, runner: fake, _dir: dir }
}

/// A test gateway for transport `tg`, seeing only `scope` when not empty.
async fn attach(core: &Core, scope: Vec<pb::ChatRef>) -> Gateway {
    Gateway::attach(core.channel.clone(), pb::Hello { scope, ..gateway::hello("tg") }).await
}

fn chat(id: &str) -> pb::ChatRef {
    pb::ChatRef { chat_id: id.into(), topic_id: String::new() }
}

fn final_text(actions: &[pb::OutboundAction]) -> Option<&str> {
    actions.iter().find_map(|a| match &a.kind {
        Some(pb::outbound_action::Kind::FinalReply(r)) => Some(r.text.as_str()),
        _ => None,
    })
}

#[tokio::test]
async fn a_message_streams_to_a_final_reply_and_duplicates_are_dropped() {
    let core = start_core().await;
    let mut gw = attach(&core, Vec::new()).await;
    gw.say_as("e1", "42", "hello").await;
    assert!(
        matches!(gw.next_message(true).await, pb::core_message::Msg::Accepted(a) if a.event_id == "e1")
    );
    let actions = gw.turn("e1", true).await;
    assert!(matches!(actions[0].kind, Some(pb::outbound_action::Kind::TurnStarted(_))));
    assert!(actions.iter().any(|a| matches!(&a.kind, Some(pb::outbound_action::Kind::TextDelta(d)) if d.text == "echo: hello")));
    assert_eq!(final_text(&actions), Some("echo: hello"));
    let ids: Vec<u64> = actions.iter().map(|a| a.action_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "action ids increase: {ids:?}");
    let spec = core.runner.specs.locked()[0].clone();
    assert!(spec.append_system_prompt.contains("Main memory"), "MAINMEMORY on a new session");
    assert_eq!(spec.labels.get("chat_id").map(String::as_str), Some("42"));
    assert_eq!(spec.extra_env.get("DUCTOR_TRANSPORT").map(String::as_str), Some("tg"));

    // The same event id again: accepted, not run.
    gw.say_as("e1", "42", "hello").await;
    assert!(matches!(gw.next_message(true).await, pb::core_message::Msg::Accepted(_)));
    gw.say_as("e2", "42", "second").await;
    let actions = gw.turn("e2", true).await;
    assert_eq!(final_text(&actions), Some("echo: second"));
    let specs = core.runner.specs.locked().clone();
    assert_eq!(specs.len(), 2, "the duplicate did not run");
    assert_eq!(specs[1].resume_session_id, format!("sess-{}", specs[0].run_id));

    // Acknowledgements travel on the Attach stream and counters are updated
    // after the turn's last effect: poll until both settled.
    let mut described = pb::DescribeResponse::default();
    for _ in 0..100 {
        described =
            core.client.clone().describe(pb::DescribeRequest {}).await.unwrap().into_inner();
        if described.outbox_pending == 0 && described.active_turns == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(described.outbox_pending, 0, "everything was acknowledged");
    assert_eq!(described.connected_transports, ["tg"]);
    assert_eq!((described.active_turns, described.queued_messages), (0, 0));
}

#[tokio::test]
async fn an_unknown_session_is_retried_fresh_and_reported() {
    let core = start_core().await;
    let mut gw = attach(&core, Vec::new()).await;
    gw.say_as("e1", "1", "start").await;
    gw.turn("e1", true).await;
    gw.say_as("e2", "1", "forget me").await;
    let actions = gw.turn("e2", true).await;
    assert!(actions.iter().any(|a| matches!(&a.kind, Some(pb::outbound_action::Kind::Notice(n)) if n.text.contains("context is lost"))));
    assert_eq!(final_text(&actions), Some("echo: forget me"));
    let specs = core.runner.specs.locked().clone();
    assert_eq!(specs.len(), 3);
    assert!(specs[2].resume_session_id.is_empty() && !specs[2].append_system_prompt.is_empty());
}

#[tokio::test]
async fn unacknowledged_replies_are_resent_and_scoped_clients_see_only_their_chat() {
    let core = start_core().await;
    let mut gw = attach(&core, Vec::new()).await;
    gw.say_as("e1", "1", "unacked").await;
    let actions = gw.turn("e1", false).await;
    let final_id = actions.last().unwrap().action_id;
    drop(gw);
    let mut gw = attach(&core, Vec::new()).await;
    assert!(gw.welcome.pending >= 1);
    let replayed = gw.turn("e1", true).await;
    assert_eq!(replayed.last().unwrap().action_id, final_id, "same id on replay");
    assert!(replayed.iter().all(|a| a.durable), "only durable actions are replayed");

    let mut scoped = attach(&core, vec![chat("7")]).await;
    scoped.say_as("s1", "7", "mine").await;
    let mine = scoped.turn("s1", true).await;
    assert_eq!(final_text(&mine), Some("echo: mine"));
    gw.say_as("e2", "1", "theirs").await;
    let theirs = gw.turn("e2", true).await;
    assert!(theirs.iter().all(|a| a.chat.as_ref().unwrap().chat_id == "1"));
}

#[tokio::test]
async fn the_first_message_must_be_hello() {
    let core = start_core().await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::GatewayMessage {
        msg: Some(pb::gateway_message::Msg::Ack(pb::OutboundAck {
            action_id: 1,
            error: String::new(),
        })),
    })
    .await
    .unwrap();
    let status = core.client.clone().attach(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let nameless = Gateway::try_attach(core.channel.clone(), gateway::hello("")).await;
    let status = nameless.err().expect("a hello without a transport is refused");
    assert!(status.message().contains("transport"), "{status:?}");
}

#[tokio::test]
async fn core_handle_runs_oneshots_delivers_and_injects_under_the_lock() {
    let core = start_core().await;
    let mut gw = attach(&core, Vec::new()).await;
    let result = core
        .handle
        .run_oneshot(OneshotSpec { prompt: "cron job".into(), ..Default::default() })
        .await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.text, "echo: cron job");

    let key = SessionKey::new("tg", "5", "");
    core.handle
        .deliver(key.clone(), OutKind::Notice { text: "from cron".into(), notify: true })
        .await
        .unwrap();
    let msg = gw.next_message(true).await;
    assert!(
        matches!(&msg, pb::core_message::Msg::Action(a) if a.durable && matches!(&a.kind, Some(pb::outbound_action::Kind::Notice(n)) if n.text == "from cron"))
    );

    // A user turn is running; the injected prompt waits for it.
    gw.say_as("w", "5", "wait here").await;
    loop {
        if let pb::core_message::Msg::Action(a) = gw.next_message(true).await
            && matches!(a.kind, Some(pb::outbound_action::Kind::TurnStarted(_)))
        {
            break;
        }
    }
    let handle = core.handle.clone();
    let inject_key = key.clone();
    let injected = tokio::spawn(async move {
        handle.inject(inject_key, "heartbeat check".into(), InjectOptions::default()).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(core.runner.specs.locked().len(), 2, "inject queued behind the turn");
    gw.say_as("s", "5", "/stop").await;
    let outcome =
        tokio::time::timeout(Duration::from_secs(10), injected).await.unwrap().unwrap().unwrap();
    assert!(!outcome.ok, "/stop drops the queued inject too: {outcome:?}");

    let outcome =
        core.handle.inject(key, "hello again".into(), InjectOptions::default()).await.unwrap();
    assert!(outcome.ok);
    assert_eq!(outcome.text, "echo: hello again");
}
