//! The gateway's one connection to core: the `Core.Attach` stream, redialled
//! with a [`Backoff`] whenever it ends. Inbound events are kept until core
//! accepts them and re-sent after a reconnect (core drops duplicates);
//! outbound actions go to the [`Dispatcher`], and each is acknowledged once
//! delivered. An action core re-sends after a reconnect is delivered once:
//! a finished one is acknowledged again, one in progress is left to finish.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use ductor_proto::transport::Backoff;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::outbound::Dispatcher;

/// Inbound events not yet accepted by core, at most this many (oldest dropped).
const MAX_PENDING: usize = 1000;
/// Delivery outcomes remembered for re-sent actions.
const MAX_OUTCOMES: usize = 4096;

/// Where the link reports whether core is attached (for Health).
pub type Connected = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// The link's inputs.
pub struct Link {
    /// Channel to core's socket (lazy, redials).
    pub channel: tonic::transport::Channel,
    /// Sent first on every connection.
    pub hello: pb::Hello,
    /// Inbound events from the Matrix side.
    pub inbound: mpsc::Receiver<pb::InboundEvent>,
    /// Acknowledgements from the chat workers.
    pub acks: mpsc::Receiver<pb::OutboundAck>,
    /// Delivers outbound actions.
    pub dispatcher: Dispatcher,
    /// Set while attached.
    pub connected: Connected,
}

/// What happened to an action core sent.
enum Outcome {
    InProgress,
    Done(String),
}

impl Link {
    /// Runs until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut pending: VecDeque<pb::InboundEvent> = VecDeque::new();
        let mut outcomes = Outcomes::default();
        while !shutdown.is_cancelled() {
            match self.attach_once(&mut pending, &mut outcomes, &mut backoff, &shutdown).await {
                Ok(()) => tracing::info!("core closed the attach stream; reconnecting"),
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "attach to core")
                }
            }
            self.connected.store(false, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn attach_once(
        &mut self,
        pending: &mut VecDeque<pb::InboundEvent>,
        outcomes: &mut Outcomes,
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> Result<(), tonic::Status> {
        let (tx, rx) = mpsc::channel::<pb::GatewayMessage>(256);
        let send = |msg| pb::GatewayMessage { msg: Some(msg) };
        // The buffer holds the hello and a full pending queue only if small; send
        // them from a task so a slow core cannot block this loop before attach.
        let mut first = vec![send(pb::gateway_message::Msg::Hello(self.hello.clone()))];
        first.extend(pending.iter().cloned().map(|e| send(pb::gateway_message::Msg::Inbound(e))));
        let preload = tx.clone();
        tokio::spawn(async move {
            for msg in first {
                if preload.send(msg).await.is_err() {
                    return;
                }
            }
        });
        let mut client = CoreClient::new(self.channel.clone());
        let mut stream = client.attach(ReceiverStream::new(rx)).await?.into_inner();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                Some(event) = self.inbound.recv() => {
                    if pending.len() >= MAX_PENDING {
                        pending.pop_front();
                    }
                    pending.push_back(event.clone());
                    if tx.send(send(pb::gateway_message::Msg::Inbound(event))).await.is_err() {
                        return Ok(());
                    }
                }
                Some(ack) = self.acks.recv() => {
                    outcomes.done(ack.action_id, ack.error.clone());
                    if tx.send(send(pb::gateway_message::Msg::Ack(ack))).await.is_err() {
                        return Ok(());
                    }
                }
                message = stream.message() => {
                    let Some(message) = message? else { return Ok(()) };
                    match message.msg {
                        Some(pb::core_message::Msg::Welcome(welcome)) => {
                            backoff.reset();
                            self.connected.store(true, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(core_version = %welcome.core_version, pending = welcome.pending, "attached to core");
                        }
                        Some(pb::core_message::Msg::Accepted(accepted)) => {
                            pending.retain(|e| e.event_id != accepted.event_id);
                        }
                        Some(pb::core_message::Msg::Action(action)) => {
                            match outcomes.get(action.action_id) {
                                Some(Outcome::Done(error)) => {
                                    let ack = pb::OutboundAck { action_id: action.action_id, error: error.clone() };
                                    if tx.send(send(pb::gateway_message::Msg::Ack(ack))).await.is_err() {
                                        return Ok(());
                                    }
                                }
                                Some(Outcome::InProgress) => {}
                                None => {
                                    outcomes.start(action.action_id);
                                    self.dispatcher.dispatch(action);
                                }
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

/// Outcomes of recent actions, oldest forgotten first.
#[derive(Default)]
struct Outcomes {
    map: HashMap<u64, Outcome>,
    order: VecDeque<u64>,
}

impl Outcomes {
    fn get(&self, id: u64) -> Option<&Outcome> {
        self.map.get(&id)
    }

    fn start(&mut self, id: u64) {
        if self.order.len() >= MAX_OUTCOMES
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(id);
        self.map.insert(id, Outcome::InProgress);
    }

    fn done(&mut self, id: u64, error: String) {
        if let Some(outcome) = self.map.get_mut(&id) {
            *outcome = Outcome::Done(error);
        }
    }
}
