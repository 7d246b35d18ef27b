//! A scripted stand-in for ductor-core, served over the real Unix socket in a
//! temporary `$DUCTOR_HOME`: records the gateway's hello, inbound events and
//! acks, accepts every event, and answers each one with the actions a script
//! returns for it (recorded too). Used by `tests/synapse.rs` and `tests/mock.rs`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Maps an inbound event to the actions core answers with.
pub type Script = Arc<dyn Fn(&pb::InboundEvent) -> Vec<Kind> + Send + Sync>;

/// Everything the fake core saw.
#[derive(Default)]
pub struct Recorded {
    pub hellos: Vec<pb::Hello>,
    pub inbound: Vec<pb::InboundEvent>,
    /// The actions sent to the gateway, in order.
    pub actions: Vec<pb::OutboundAction>,
    pub acks: Vec<pb::OutboundAck>,
}

/// A running fake core.
pub struct FakeCore {
    pub recorded: Arc<Mutex<Recorded>>,
    changed: Arc<Notify>,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

struct Service {
    script: Script,
    pace: Duration,
    recorded: Arc<Mutex<Recorded>>,
    changed: Arc<Notify>,
    next_action: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl FakeCore {
    /// Serves on `home`'s core socket until dropped.
    pub async fn start(home: &DuctorHome, script: Script) -> Self {
        Self::start_paced(home, script, Duration::ZERO).await
    }

    /// Like [`FakeCore::start`], sending a turn's actions `pace` apart (a
    /// model that streams slowly).
    pub async fn start_paced(home: &DuctorHome, script: Script, pace: Duration) -> Self {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let changed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let service = Service {
            script,
            pace,
            recorded: recorded.clone(),
            changed: changed.clone(),
            // Action ids keep increasing across fake-core restarts, as a real
            // core's outbox ids do (the gateway skips ids it already delivered).
            next_action: Arc::new(AtomicU64::new(first_action_id())),
            stop: stop.clone(),
        };
        ductor_proto::transport::prepare_socket_dir(home.run_dir()).expect("prepare the run dir");
        let incoming = ductor_proto::transport::bind(&home.socket(ServiceName::Core))
            .await
            .expect("bind the fake core socket");
        let router = tonic::transport::Server::builder()
            .add_service(pb::core_server::CoreServer::new(service));
        let token = stop.clone();
        let server = tokio::spawn(async move {
            let _ = router.serve_with_incoming_shutdown(incoming, token.cancelled_owned()).await;
        });
        Self { recorded, changed, stop, server: Some(server) }
    }

    /// A placeholder that serves nothing (to be replaced by [`FakeCore::start`]).
    pub fn start_later() -> Self {
        let stop = CancellationToken::new();
        stop.cancel();
        Self { recorded: Arc::default(), changed: Arc::default(), stop, server: None }
    }

    /// Stops serving and waits until the socket is gone (a core going down).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Waits until `check` holds for the recording (panics after `timeout`).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Recorded) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = check(&self.recorded.lock().expect("not poisoned")) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fake core: timed out waiting for {what}");
            }
        }
    }

    /// Inbound user messages' texts, in order.
    pub fn texts(&self) -> Vec<String> {
        let recorded = self.recorded.lock().expect("not poisoned");
        recorded
            .inbound
            .iter()
            .filter_map(|e| match &e.kind {
                Some(pb::inbound_event::Kind::Message(m)) => Some(m.text.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for FakeCore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn first_action_id() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map(|d| d.as_micros() as u64).unwrap_or(1)
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::CoreMessage, tonic::Status>> + Send>>;

fn core_message(msg: pb::core_message::Msg) -> Result<pb::CoreMessage, tonic::Status> {
    Ok(pb::CoreMessage { msg: Some(msg) })
}

#[tonic::async_trait]
impl pb::core_server::Core for Service {
    type AttachStream = AttachStream;

    async fn attach(
        &self,
        request: tonic::Request<tonic::Streaming<pb::GatewayMessage>>,
    ) -> Result<tonic::Response<AttachStream>, tonic::Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let script = self.script.clone();
        let pace = self.pace;
        let recorded = self.recorded.clone();
        let changed = self.changed.clone();
        let next_action = self.next_action.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => break,
                    message = incoming.message() => message,
                };
                let Ok(Some(message)) = message else { break };
                match message.msg {
                    Some(pb::gateway_message::Msg::Hello(hello)) => {
                        recorded.lock().expect("not poisoned").hellos.push(hello);
                        let welcome = pb::Welcome { core_version: "fake".into(), pending: 0 };
                        let _ =
                            tx.send(core_message(pb::core_message::Msg::Welcome(welcome))).await;
                    }
                    Some(pb::gateway_message::Msg::Inbound(event)) => {
                        recorded.lock().expect("not poisoned").inbound.push(event.clone());
                        let accepted = pb::InboundAccepted { event_id: event.event_id.clone() };
                        let _ =
                            tx.send(core_message(pb::core_message::Msg::Accepted(accepted))).await;
                        for (i, kind) in script(&event).into_iter().enumerate() {
                            if i > 0 && !pace.is_zero() {
                                tokio::time::sleep(pace).await;
                            }
                            let action = pb::OutboundAction {
                                action_id: next_action.fetch_add(1, Ordering::Relaxed),
                                chat: event.chat.clone(),
                                turn_id: event.event_id.clone(),
                                durable: true,
                                reply_to_event: event.event_id.clone(),
                                kind: Some(kind),
                            };
                            recorded.lock().expect("not poisoned").actions.push(action.clone());
                            let _ =
                                tx.send(core_message(pb::core_message::Msg::Action(action))).await;
                        }
                    }
                    Some(pb::gateway_message::Msg::Ack(ack)) => {
                        recorded.lock().expect("not poisoned").acks.push(ack);
                    }
                    None => {}
                }
                changed.notify_waiters();
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn describe(
        &self,
        _request: tonic::Request<pb::DescribeRequest>,
    ) -> Result<tonic::Response<pb::DescribeResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::DescribeResponse::default()))
    }
}

/// A final answer that notifies.
pub fn final_reply(text: &str) -> Kind {
    Kind::FinalReply(pb::FinalReply { text: text.to_owned(), notify: true, ..Default::default() })
}

/// The default script: `/model` opens a selector, `stream` plays a streamed
/// turn with a tool call, a button press is confirmed, a file is described,
/// anything else is echoed.
pub fn default_script() -> Script {
    Arc::new(|event| match &event.kind {
        Some(pb::inbound_event::Kind::Message(m)) if m.text == "/model" => {
            vec![Kind::Selector(pb::SelectorMenu {
                selector_id: "model".into(),
                text: "Pick a **model**".into(),
                buttons: vec![
                    pb::ButtonRow {
                        buttons: vec![pb::Button { id: "ms:opus".into(), label: "opus".into() }],
                    },
                    pb::ButtonRow {
                        buttons: vec![pb::Button {
                            id: "ms:sonnet".into(),
                            label: "sonnet".into(),
                        }],
                    },
                ],
            })]
        }
        Some(pb::inbound_event::Kind::Message(m)) if m.text == "stream" => vec![
            Kind::TurnStarted(pb::TurnStarted { provider: "claude".into(), model: "opus".into() }),
            Kind::TextDelta(pb::TextDeltaAction { text: "Looking ".into() }),
            Kind::TextDelta(pb::TextDeltaAction { text: "around.".into() }),
            Kind::Tool(pb::ToolActivity {
                name: "Bash".into(),
                summary: "ls".into(),
                finished: false,
                ok: false,
            }),
            Kind::Tool(pb::ToolActivity {
                name: "Bash".into(),
                summary: "ls".into(),
                finished: true,
                ok: true,
            }),
            Kind::TextDelta(pb::TextDeltaAction { text: "All **done**.".into() }),
            Kind::FinalReply(pb::FinalReply {
                text: "All **done**.".into(),
                footer: "opus".into(),
                notify: true,
                ..Default::default()
            }),
        ],
        Some(pb::inbound_event::Kind::Message(m)) => {
            vec![final_reply(&format!("echo: {}", m.text))]
        }
        Some(pb::inbound_event::Kind::Button(b)) => {
            vec![final_reply(&format!("pressed {}", b.button_id))]
        }
        Some(pb::inbound_event::Kind::Media(media)) => {
            vec![final_reply(&format!(
                "got {} ({} bytes)",
                media.original_filename, media.size_bytes
            ))]
        }
        None => Vec::new(),
    })
}
