//! The `Core.Attach` client loop and the handles the gateway holds: an
//! [`InboundSender`] for its platform side, a bounded receiver of actions and
//! an [`AckSender`] for its delivery side, and [`LinkStatus`] for Health.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use ductor_proto::pb::gateway_message::Msg;
use ductor_proto::transport::Backoff;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::outcomes::{Outcome, Outcomes};

/// The link has stopped (shutdown): nothing more can be sent through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the link to core has stopped")]
pub struct LinkClosed;

/// Sizes and timing of a link; the defaults suit every gateway.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Inbound events core has not confirmed yet, at most; further sends wait.
    pub max_unaccepted: usize,
    /// Actions read from core but not yet taken by delivery, at most; the
    /// link stops reading core's stream until delivery catches up.
    pub max_undelivered: usize,
    /// First and longest pause between two attach attempts.
    pub backoff: (Duration, Duration),
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            max_unaccepted: 1000,
            max_undelivered: 256,
            backoff: (Duration::from_millis(50), Duration::from_secs(2)),
        }
    }
}

/// What Health shows about the link.
#[derive(Debug, Default)]
pub struct LinkStatus {
    attached: AtomicBool,
    unaccepted: AtomicUsize,
    holding: AtomicBool,
}

impl LinkStatus {
    /// True while core is attached (its `Welcome` arrived on the live stream).
    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// Inbound events waiting for core's confirmation.
    pub fn unaccepted(&self) -> usize {
        self.unaccepted.load(Ordering::Relaxed)
    }

    /// One phrase for a Health detail: "core attached", "core unreachable, 3
    /// events waiting", "… intake held".
    pub fn detail(&self) -> String {
        let mut text =
            if self.attached() { "core attached" } else { "core unreachable" }.to_owned();
        let waiting = self.unaccepted();
        if waiting > 0 {
            text.push_str(&format!(", {waiting} events waiting for core"));
        }
        if self.holding.load(Ordering::Relaxed) {
            text.push_str(", intake held");
        }
        text
    }
}

/// An inbound event on its way to core, with the room it takes in the
/// unconfirmed backlog (released when core accepts it).
struct Pending {
    event: pb::InboundEvent,
    _room: OwnedSemaphorePermit,
    accepted: Option<oneshot::Sender<()>>,
}

/// Resolves when core has durably accepted the event.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<()>);

impl Receipt {
    /// Waits for core's acceptance; `Err` when the link stopped first.
    pub async fn accepted(self) -> Result<(), LinkClosed> {
        self.0.await.map_err(|_| LinkClosed)
    }
}

/// Sends inbound events to core. Clone it for every handler.
#[derive(Clone)]
pub struct InboundSender {
    tx: mpsc::UnboundedSender<Pending>,
    room: Arc<Semaphore>,
    max: usize,
    status: Arc<LinkStatus>,
}

impl InboundSender {
    /// Queues `event` for core. Waits while `max_unaccepted` events are
    /// unconfirmed (core down or slow); the wait is logged once and shown in
    /// Health. The event is never dropped: it is re-sent until core accepts it.
    pub async fn send(&self, event: pb::InboundEvent) -> Result<Receipt, LinkClosed> {
        let room = match self.room.clone().try_acquire_owned() {
            Ok(room) => room,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(LinkClosed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if !self.status.holding.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        waiting = self.max,
                        "core has not accepted the last events; holding intake until it does"
                    );
                }
                self.room.clone().acquire_owned().await.map_err(|_| LinkClosed)?
            }
        };
        let (accepted, receipt) = oneshot::channel();
        let pending = Pending { event, _room: room, accepted: Some(accepted) };
        self.tx.send(pending).map_err(|_| LinkClosed)?;
        Ok(Receipt(receipt))
    }
}

/// Acknowledges actions to core once delivered (or failed for good). Never
/// blocks: acks are bounded by the actions in delivery.
#[derive(Clone, Debug)]
pub struct AckSender(mpsc::UnboundedSender<pb::OutboundAck>);

impl AckSender {
    /// `action_id` was delivered.
    pub fn delivered(&self, action_id: u64) {
        self.send(pb::OutboundAck { action_id, error: String::new() });
    }

    /// `action_id` failed for good; `error` says why (kept in core's history).
    pub fn failed(&self, action_id: u64, error: impl Into<String>) {
        self.send(pb::OutboundAck { action_id, error: error.into() });
    }

    /// Sends `ack` as it is (an empty error means delivered).
    pub fn send(&self, ack: pb::OutboundAck) {
        // The link holds a sender itself, so this fails only after it stopped.
        let _ = self.0.send(ack);
    }
}

/// Everything a gateway gets from [`spawn`].
pub struct Attached {
    /// For the platform side: inbound events to core.
    pub inbound: InboundSender,
    /// For delivery: actions from core, in order.
    pub actions: mpsc::Receiver<pb::OutboundAction>,
    /// For delivery: acknowledgements.
    pub acks: AckSender,
    /// For Health.
    pub status: Arc<LinkStatus>,
    /// The latest `Welcome` (core's version and what it offers), `None` until
    /// the first one arrives.
    pub welcome: watch::Receiver<Option<pb::Welcome>>,
    /// Cancelled when core asks this gateway to restart (an admin chat's
    /// `/restart`): the gateway should exit with status 42.
    pub restart: CancellationToken,
    /// The link's task; it ends at shutdown.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the link on `channel` (core's socket), saying `hello` on every
/// connection, until `shutdown`; it reports into `status` (shared with the
/// gateway's Health).
pub fn spawn(
    channel: ductor_proto::Channel,
    hello: pb::Hello,
    options: LinkOptions,
    status: Arc<LinkStatus>,
    shutdown: CancellationToken,
) -> Attached {
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (actions_tx, actions) = mpsc::channel(options.max_undelivered.max(1));
    let (welcome_tx, welcome) = watch::channel(None);
    let restart = CancellationToken::new();
    let room = Arc::new(Semaphore::new(options.max_unaccepted.max(1)));
    let inbound = InboundSender {
        tx: inbound_tx.clone(),
        room: room.clone(),
        max: options.max_unaccepted,
        status: status.clone(),
    };
    let link = Link {
        channel,
        hello,
        backoff: Backoff::new(options.backoff.0, options.backoff.1),
        max_undelivered: options.max_undelivered.max(1),
        inbound: inbound_rx,
        _inbound_keepalive: inbound_tx,
        acks: ack_rx,
        _ack_keepalive: ack_tx.clone(),
        actions: actions_tx,
        welcome: welcome_tx,
        restart: restart.clone(),
        status: status.clone(),
        room,
        unaccepted: VecDeque::new(),
        ready: VecDeque::new(),
        outcomes: Outcomes::default(),
    };
    let task = tokio::spawn(link.run(shutdown));
    Attached { inbound, actions, acks: AckSender(ack_tx), status, welcome, restart, task }
}

/// Why one stream ended.
enum End {
    Shutdown,
    Lost(String),
}

/// The link's state, kept across reconnects.
struct Link {
    channel: ductor_proto::Channel,
    hello: pb::Hello,
    backoff: Backoff,
    max_undelivered: usize,
    inbound: mpsc::UnboundedReceiver<Pending>,
    // The link keeps a sender of each of its inputs, so they never read as
    // closed while it runs; it stops on shutdown only.
    _inbound_keepalive: mpsc::UnboundedSender<Pending>,
    acks: mpsc::UnboundedReceiver<pb::OutboundAck>,
    _ack_keepalive: mpsc::UnboundedSender<pb::OutboundAck>,
    actions: mpsc::Sender<pb::OutboundAction>,
    welcome: watch::Sender<Option<pb::Welcome>>,
    restart: CancellationToken,
    status: Arc<LinkStatus>,
    room: Arc<Semaphore>,
    /// Sent but not yet accepted by core, oldest first.
    unaccepted: VecDeque<Pending>,
    /// Read from core, not yet taken by delivery.
    ready: VecDeque<pb::OutboundAction>,
    outcomes: Outcomes,
}

/// The request stream of one Attach call.
type Out = mpsc::UnboundedSender<pb::GatewayMessage>;

fn send(out: &Out, msg: Msg) {
    // A closed request stream shows up as the response stream ending.
    let _ = out.send(pb::GatewayMessage { msg: Some(msg) });
}

impl Link {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let end = self.attach_once(&shutdown).await;
            self.status.attached.store(false, Ordering::Relaxed);
            let End::Lost(reason) = end else { break };
            let delay = self.backoff.next_delay();
            tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "lost the link to core");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        // Senders waiting for room see the link as closed.
        self.room.close();
    }

    async fn attach_once(&mut self, shutdown: &CancellationToken) -> End {
        let (out, requests) = mpsc::unbounded_channel();
        send(&out, Msg::Hello(self.hello.clone()));
        for pending in &self.unaccepted {
            send(&out, Msg::Inbound(pending.event.clone()));
        }
        let mut client = CoreClient::new(self.channel.clone());
        let call = client.attach(UnboundedReceiverStream::new(requests));
        let mut stream = tokio::select! {
            () = shutdown.cancelled() => return End::Shutdown,
            response = call => match response {
                Ok(response) => response.into_inner(),
                Err(status) => return End::Lost(format!("attach: {}", status.message())),
            },
        };
        tracing::debug!(resent = self.unaccepted.len(), "attach stream open");
        // A permit borrows its sender; a local clone keeps `self` free.
        let actions = self.actions.clone();
        loop {
            let can_read = self.ready.len() < self.max_undelivered;
            tokio::select! {
                () = shutdown.cancelled() => return End::Shutdown,
                Some(pending) = self.inbound.recv() => self.forward(&out, pending),
                Some(ack) = self.acks.recv() => {
                    self.outcomes.finish(ack.action_id, &ack.error);
                    send(&out, Msg::Ack(ack));
                }
                permit = actions.reserve(), if !self.ready.is_empty() => match permit {
                    Ok(permit) => permit.send(self.ready.pop_front().expect("ready is not empty")),
                    Err(_) => return End::Shutdown,
                },
                message = stream.message(), if can_read => match message {
                    Ok(Some(message)) => self.on_core_message(message, &out),
                    Ok(None) => return End::Lost("core closed the stream".to_owned()),
                    Err(status) => return End::Lost(status.message().to_owned()),
                },
            }
        }
    }

    fn forward(&mut self, out: &Out, pending: Pending) {
        send(out, Msg::Inbound(pending.event.clone()));
        self.unaccepted.push_back(pending);
        self.status.unaccepted.store(self.unaccepted.len(), Ordering::Relaxed);
    }

    fn on_core_message(&mut self, message: pb::CoreMessage, out: &Out) {
        use pb::core_message::Msg as CoreMsg;
        match message.msg {
            Some(CoreMsg::Welcome(welcome)) => {
                self.backoff.reset();
                self.status.attached.store(true, Ordering::Relaxed);
                tracing::info!(
                    core_version = %welcome.core_version,
                    pending = welcome.pending,
                    resent = self.unaccepted.len(),
                    "attached to core"
                );
                self.welcome.send_replace(Some(welcome));
            }
            Some(CoreMsg::Accepted(accepted)) => self.accepted(&accepted.event_id),
            Some(CoreMsg::Action(action)) => match self.outcomes.get(action.action_id) {
                Some(Outcome::Done(error)) => {
                    let ack = pb::OutboundAck { action_id: action.action_id, error: error.into() };
                    send(out, Msg::Ack(ack));
                }
                Some(Outcome::InDelivery) => {}
                None => {
                    self.outcomes.start(action.action_id);
                    self.ready.push_back(action);
                }
            },
            Some(CoreMsg::Restart(restart)) => {
                tracing::info!(reason = %restart.reason, "core asks this gateway to restart");
                self.restart.cancel();
            }
            None => {}
        }
    }

    /// Core has the event: forget it, release its room, tell the sender.
    fn accepted(&mut self, event_id: &str) {
        self.unaccepted.retain_mut(|pending| {
            if pending.event.event_id != event_id {
                return true;
            }
            if let Some(accepted) = pending.accepted.take() {
                let _ = accepted.send(());
            }
            false
        });
        self.status.unaccepted.store(self.unaccepted.len(), Ordering::Relaxed);
        if self.room.available_permits() > 0 && self.status.holding.swap(false, Ordering::Relaxed) {
            tracing::info!("core accepts events again; intake resumed");
        }
    }
}
