//! A scripted stand-in for ductor-core that every gateway's tests and benches
//! run against: it serves `Core.Attach` in memory ([`FakeCore::channel`]) or
//! on the real core socket of a `$DUCTOR_HOME` ([`FakeCore::serve`]), records
//! what the gateway sends (hellos, inbound events, acks), confirms events
//! (unless told not to), answers each event with what a [`Script`] returns,
//! and sends whatever actions a test pushes with [`FakeCore::send`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::core_server::{Core, CoreServer};
use ductor_proto::pb::outbound_action::Kind;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

/// Maps an inbound event to the actions core answers it with.
pub type Script = Arc<dyn Fn(&pb::InboundEvent) -> Vec<Kind> + Send + Sync>;

type Outgoing = mpsc::UnboundedSender<Result<pb::CoreMessage, tonic::Status>>;

/// Everything the fake core saw.
#[derive(Debug)]
pub struct Recorded {
    /// One per connection.
    pub hellos: Vec<pb::Hello>,
    /// Inbound events, first copy of each event id.
    pub events: Vec<pb::InboundEvent>,
    /// Inbound events as received, re-sent duplicates included.
    pub received: usize,
    /// Actions sent to the gateway (scripted or pushed), in order.
    pub actions: Vec<pb::OutboundAction>,
    /// Acknowledgements, in order.
    pub acks: Vec<pb::OutboundAck>,
    accepting: bool,
    current: Option<Outgoing>,
    commands: Vec<pb::CommandInfo>,
}

impl Recorded {
    /// The texts of inbound user messages, in order.
    pub fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|event| match &event.kind {
                Some(pb::inbound_event::Kind::Message(message)) => Some(message.text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The ack of `action_id`, if it came.
    pub fn ack(&self, action_id: u64) -> Option<&pb::OutboundAck> {
        self.acks.iter().find(|ack| ack.action_id == action_id)
    }
}

struct Shared {
    recorded: Mutex<Recorded>,
    changed: Notify,
    script: Option<Script>,
    pace: Duration,
    next_action: AtomicU64,
}

/// The fake core; clones share one state.
#[derive(Clone)]
pub struct FakeCore {
    shared: Arc<Shared>,
}

impl Default for FakeCore {
    fn default() -> Self {
        Self::build(None, Duration::ZERO)
    }
}

impl FakeCore {
    /// A fake that answers every event with `script`'s actions.
    pub fn scripted(script: Script) -> Self {
        Self::build(Some(script), Duration::ZERO)
    }

    /// Like [`FakeCore::scripted`], sending a turn's actions `pace` apart (a
    /// model that streams slowly).
    pub fn paced(script: Script, pace: Duration) -> Self {
        Self::build(Some(script), pace)
    }

    fn build(script: Option<Script>, pace: Duration) -> Self {
        let recorded = Recorded {
            hellos: Vec::new(),
            events: Vec::new(),
            received: 0,
            actions: Vec::new(),
            acks: Vec::new(),
            accepting: true,
            current: None,
            commands: Vec::new(),
        };
        let shared = Shared {
            recorded: Mutex::new(recorded),
            changed: Notify::new(),
            script,
            pace,
            // Ids keep increasing across fakes, as a real core's outbox ids
            // do across restarts (a gateway skips ids it already delivered).
            next_action: AtomicU64::new(first_action_id()),
        };
        Self { shared: Arc::new(shared) }
    }

    /// The recording (a poisoned lock is taken over, as everywhere in ductor).
    pub fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.shared.recorded.locked()
    }

    /// The gRPC service.
    pub fn server(&self) -> CoreServer<Self> {
        CoreServer::new(self.clone())
    }

    /// A channel to this fake over an in-memory pair.
    pub async fn channel(&self) -> ductor_proto::Channel {
        let router = tonic::transport::Server::builder().add_service(self.server());
        ductor_proto::testing::pair(router).await
    }

    /// Serves on `home`'s core socket until [`Serving::stop`] or drop.
    pub async fn serve(&self, home: &DuctorHome) -> Serving {
        ductor_proto::transport::prepare_socket_dir(home.run_dir()).expect("prepare the run dir");
        let incoming = ductor_proto::transport::bind(&home.socket(ServiceName::Core))
            .await
            .expect("bind the fake core socket");
        let router = tonic::transport::Server::builder().add_service(self.server());
        let token = CancellationToken::new();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            let _ = router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await;
        });
        Serving { core: self.clone(), token, task: Some(task) }
    }

    /// A fresh action id (increasing).
    pub fn next_action_id(&self) -> u64 {
        self.shared.next_action.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends an action to the attached gateway; false when none is attached.
    pub fn send(&self, action: pb::OutboundAction) -> bool {
        let mut recorded = self.recorded();
        recorded.actions.push(action.clone());
        let message = pb::CoreMessage { msg: Some(pb::core_message::Msg::Action(action)) };
        recorded.current.as_ref().is_some_and(|out| out.send(Ok(message)).is_ok())
    }

    /// Asks the attached gateway to restart, as an admin's `/restart` does;
    /// false when none is attached.
    pub fn restart(&self, reason: &str) -> bool {
        let restart = pb::RestartGateway { reason: reason.to_owned() };
        let message = pb::CoreMessage { msg: Some(pb::core_message::Msg::Restart(restart)) };
        self.recorded().current.as_ref().is_some_and(|out| out.send(Ok(message)).is_ok())
    }

    /// Ends the current Attach stream, as a core restart would.
    pub fn disconnect(&self) {
        self.recorded().current = None;
        self.shared.changed.notify_waiters();
    }

    /// The command list the next `Welcome`s offer: `(name, description)`.
    pub fn set_commands(&self, commands: &[(&str, &str)]) {
        self.recorded().commands = commands
            .iter()
            .map(|(name, description)| pb::CommandInfo {
                name: (*name).to_owned(),
                description: (*description).to_owned(),
            })
            .collect();
    }

    /// Stops (or resumes) confirming inbound events.
    pub fn set_accepting(&self, accepting: bool) {
        self.recorded().accepting = accepting;
    }

    /// Inbound events so far (first copy of each).
    pub fn events(&self) -> Vec<pb::InboundEvent> {
        self.recorded().events.clone()
    }

    /// Acks so far.
    pub fn acks(&self) -> Vec<pb::OutboundAck> {
        self.recorded().acks.clone()
    }

    /// Hellos so far (one per connection).
    pub fn hellos(&self) -> Vec<pb::Hello> {
        self.recorded().hellos.clone()
    }

    /// Inbound events received, re-sent duplicates included.
    pub fn received(&self) -> usize {
        self.recorded().received
    }

    /// Inbound user messages' texts, in order.
    pub fn texts(&self) -> Vec<String> {
        self.recorded().texts()
    }

    /// Waits until `check` holds; false after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&Recorded) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if check(&self.recorded()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(&self.recorded());
            }
        }
    }

    /// Waits until `check` finds something; panics naming `what` after `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Recorded) -> Option<T>,
    ) -> T {
        if !self.wait_until(timeout, |recorded| check(recorded).is_some()).await {
            panic!("fake core: timed out waiting for {what}");
        }
        check(&self.recorded()).expect("the check held a moment ago and the recording only grows")
    }

    /// Waits until `count` hellos (connections) have arrived.
    pub async fn wait_hellos(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |r| r.hellos.len() >= count).await
    }

    /// Waits until `count` raw inbound events have arrived.
    pub async fn wait_received(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |r| r.received >= count).await
    }

    /// Waits until a gateway is attached.
    pub async fn wait_attached(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |r| r.current.is_some()).await
    }

    /// Waits until `count` distinct events have arrived; returns them all.
    pub async fn wait_events(&self, count: usize, timeout: Duration) -> Vec<pb::InboundEvent> {
        self.wait_until(timeout, |r| r.events.len() >= count).await;
        self.events()
    }

    /// Waits until `action_id` is acknowledged; returns the ack.
    pub async fn wait_ack(&self, action_id: u64, timeout: Duration) -> Option<pb::OutboundAck> {
        self.wait_until(timeout, |r| r.ack(action_id).is_some()).await;
        self.recorded().ack(action_id).cloned()
    }

    /// Records one message from the gateway; returns the script's answer to
    /// an inbound event (empty for anything else).
    fn record(&self, message: pb::GatewayMessage, out: &Outgoing) -> Vec<pb::OutboundAction> {
        use pb::gateway_message::Msg;
        let mut recorded = self.recorded();
        let answer = match message.msg {
            Some(Msg::Hello(hello)) => {
                recorded.hellos.push(hello);
                let commands = recorded.commands.clone();
                let welcome = pb::Welcome { core_version: "fake".to_owned(), pending: 0, commands };
                let _ = out.send(core_message(pb::core_message::Msg::Welcome(welcome)));
                Vec::new()
            }
            Some(Msg::Inbound(event)) => {
                recorded.received += 1;
                if recorded.accepting {
                    let accepted = pb::InboundAccepted { event_id: event.event_id.clone() };
                    let _ = out.send(core_message(pb::core_message::Msg::Accepted(accepted)));
                }
                if recorded.events.iter().any(|seen| seen.event_id == event.event_id) {
                    Vec::new()
                } else {
                    let answer = self.answer(&event);
                    recorded.events.push(event);
                    answer
                }
            }
            Some(Msg::Ack(ack)) => {
                recorded.acks.push(ack);
                Vec::new()
            }
            None => Vec::new(),
        };
        drop(recorded);
        self.shared.changed.notify_waiters();
        answer
    }

    fn answer(&self, event: &pb::InboundEvent) -> Vec<pb::OutboundAction> {
        let Some(script) = &self.shared.script else { return Vec::new() };
        script(event)
            .into_iter()
            .map(|kind| pb::OutboundAction {
                action_id: self.next_action_id(),
                chat: event.chat.clone(),
                turn_id: event.event_id.clone(),
                durable: true,
                reply_to_event: event.event_id.clone(),
                kind: Some(kind),
            })
            .collect()
    }
}

fn core_message(msg: pb::core_message::Msg) -> Result<pb::CoreMessage, tonic::Status> {
    Ok(pb::CoreMessage { msg: Some(msg) })
}

fn first_action_id() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map(|d| d.as_micros() as u64).unwrap_or(1)
}

#[tonic::async_trait]
impl Core for FakeCore {
    type AttachStream = UnboundedReceiverStream<Result<pb::CoreMessage, tonic::Status>>;

    async fn attach(
        &self,
        request: tonic::Request<tonic::Streaming<pb::GatewayMessage>>,
    ) -> Result<tonic::Response<Self::AttachStream>, tonic::Status> {
        let mut incoming = request.into_inner();
        let (out, receiver) = mpsc::unbounded_channel();
        // Only `current` holds the sender strongly: dropping it ends the stream.
        let weak = out.downgrade();
        self.recorded().current = Some(out);
        self.shared.changed.notify_waiters();
        let core = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = incoming.message().await {
                let Some(out) = weak.upgrade() else { break };
                let answer = core.record(message, &out);
                for (i, action) in answer.into_iter().enumerate() {
                    if i > 0 && !core.shared.pace.is_zero() {
                        tokio::time::sleep(core.shared.pace).await;
                    }
                    core.recorded().actions.push(action.clone());
                    let _ = out.send(core_message(pb::core_message::Msg::Action(action)));
                }
            }
        });
        Ok(tonic::Response::new(UnboundedReceiverStream::new(receiver)))
    }

    async fn describe(
        &self,
        _request: tonic::Request<pb::DescribeRequest>,
    ) -> Result<tonic::Response<pb::DescribeResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::DescribeResponse {
            version: "fake".to_owned(),
            ..Default::default()
        }))
    }
}

/// The fake core on a real socket; serving ends on [`Serving::stop`] or drop.
pub struct Serving {
    core: FakeCore,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// The fake being served.
    pub fn core(&self) -> &FakeCore {
        &self.core
    }

    /// Ends the stream, stops serving and waits until the socket is closed
    /// (a core going down).
    pub async fn stop(mut self) {
        self.core.disconnect();
        self.token.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.core.disconnect();
        self.token.cancel();
    }
}

/// A final answer that notifies.
pub fn final_reply(text: &str) -> Kind {
    Kind::FinalReply(pb::FinalReply { text: text.to_owned(), notify: true, ..Default::default() })
}
