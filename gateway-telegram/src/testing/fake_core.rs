//! A scripted, in-process Core service: records what the gateway sends over
//! `Core.Attach` (hello, inbound events, acks), accepts every event, and
//! sends whatever actions the test pushes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ductor_proto::pb;
use ductor_proto::pb::core_server::{Core, CoreServer};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

type Outgoing = mpsc::UnboundedSender<Result<pb::CoreMessage, tonic::Status>>;

struct Recorded {
    hellos: Vec<pb::Hello>,
    events: Vec<pb::InboundEvent>,
    /// Inbound events as received, duplicates included.
    received: usize,
    /// Whether events are confirmed with `InboundAccepted`.
    accepting: bool,
    acks: Vec<pb::OutboundAck>,
    current: Option<Outgoing>,
}

impl Default for Recorded {
    fn default() -> Self {
        Self {
            hellos: Vec::new(),
            events: Vec::new(),
            received: 0,
            accepting: true,
            acks: Vec::new(),
            current: None,
        }
    }
}

/// The fake core; clone it freely (all clones share state).
#[derive(Clone, Default)]
pub struct FakeCore {
    recorded: Arc<Mutex<Recorded>>,
}

impl FakeCore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("fake core lock is never poisoned")
    }

    /// The gRPC service to serve.
    pub fn server(&self) -> CoreServer<Self> {
        CoreServer::new(self.clone())
    }

    /// A channel to this fake over an in-memory pair.
    pub async fn channel(&self) -> ductor_proto::Channel {
        let router = tonic::transport::Server::builder().add_service(self.server());
        ductor_proto::testing::pair(router).await
    }

    /// Inbound events received so far.
    pub fn events(&self) -> Vec<pb::InboundEvent> {
        self.lock().events.clone()
    }

    /// Acks received so far.
    pub fn acks(&self) -> Vec<pb::OutboundAck> {
        self.lock().acks.clone()
    }

    /// Inbound events received, counting re-sent duplicates.
    pub fn received(&self) -> usize {
        self.lock().received
    }

    /// Stops (or resumes) confirming inbound events.
    pub fn set_accepting(&self, accepting: bool) {
        self.lock().accepting = accepting;
    }

    /// Ends the current Attach stream, as a core restart would.
    pub fn disconnect(&self) {
        self.lock().current = None;
    }

    /// Waits until `count` hellos (connections) have arrived.
    pub async fn wait_hellos(&self, count: usize, timeout: Duration) -> bool {
        self.wait(timeout, |recorded| recorded.hellos.len() >= count).await
    }

    /// Waits until `count` raw inbound events have arrived.
    pub async fn wait_received(&self, count: usize, timeout: Duration) -> bool {
        self.wait(timeout, |recorded| recorded.received >= count).await
    }

    /// Hellos received so far (one per connection).
    pub fn hellos(&self) -> Vec<pb::Hello> {
        self.lock().hellos.clone()
    }

    /// Sends an action to the attached gateway; false when none is attached.
    pub fn send(&self, action: pb::OutboundAction) -> bool {
        let message = pb::CoreMessage { msg: Some(pb::core_message::Msg::Action(action)) };
        self.lock().current.as_ref().is_some_and(|out| out.send(Ok(message)).is_ok())
    }

    /// Waits until a gateway is attached.
    pub async fn wait_attached(&self, timeout: Duration) -> bool {
        self.wait(timeout, |recorded| recorded.current.is_some()).await
    }

    /// Waits until `count` events have arrived.
    pub async fn wait_events(&self, count: usize, timeout: Duration) -> Vec<pb::InboundEvent> {
        self.wait(timeout, |recorded| recorded.events.len() >= count).await;
        self.events()
    }

    /// Waits until the action `action_id` is acknowledged; returns the ack.
    pub async fn wait_ack(&self, action_id: u64, timeout: Duration) -> Option<pb::OutboundAck> {
        self.wait(timeout, |recorded| recorded.acks.iter().any(|ack| ack.action_id == action_id))
            .await;
        self.acks().into_iter().find(|ack| ack.action_id == action_id)
    }

    async fn wait(&self, timeout: Duration, check: impl Fn(&Recorded) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.lock()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
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
        let welcome = pb::Welcome { core_version: "fake".to_owned(), pending: 0 };
        let _ =
            out.send(Ok(pb::CoreMessage { msg: Some(pb::core_message::Msg::Welcome(welcome)) }));
        // Only `current` holds the sender strongly: dropping it ends the stream.
        let weak = out.downgrade();
        self.lock().current = Some(out);
        let core = self.clone();
        tokio::spawn(async move {
            use pb::gateway_message::Msg;
            while let Some(Ok(message)) = incoming.next().await {
                match message.msg {
                    Some(Msg::Hello(hello)) => core.lock().hellos.push(hello),
                    Some(Msg::Inbound(event)) => {
                        let accepted = pb::InboundAccepted { event_id: event.event_id.clone() };
                        let mut recorded = core.lock();
                        recorded.received += 1;
                        if !recorded.events.iter().any(|seen| seen.event_id == event.event_id) {
                            recorded.events.push(event);
                        }
                        if recorded.accepting
                            && let Some(out) = weak.upgrade()
                        {
                            let accepted = pb::core_message::Msg::Accepted(accepted);
                            let _ = out.send(Ok(pb::CoreMessage { msg: Some(accepted) }));
                        }
                    }
                    Some(Msg::Ack(ack)) => core.lock().acks.push(ack),
                    None => {}
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
