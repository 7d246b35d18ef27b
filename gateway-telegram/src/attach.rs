//! The gateway's one link to core: the `Core.Attach` stream.
//!
//! The link says hello with Telegram's capabilities, forwards inbound events,
//! hands outbound actions to delivery and sends their acks. It survives core
//! restarts: on any stream end it redials with [`Backoff`] and re-sends every
//! inbound event core has not confirmed (`InboundAccepted`) — core drops
//! duplicates by `event_id`, so nothing is lost and nothing runs twice.
//! Actions core re-sends after a reconnect that were already delivered are
//! acknowledged again without being delivered twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use ductor_proto::pb::gateway_message::Msg;
use ductor_proto::transport::Backoff;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

/// How many delivered action ids are remembered for re-send detection.
const DELIVERED_MEMORY: usize = 4096;

/// The channels between the link and the rest of the gateway.
pub struct Link {
    /// Inbound events to send to core (from the update handler).
    pub events: mpsc::UnboundedReceiver<pb::InboundEvent>,
    /// Acks of handled actions (from delivery).
    pub acks: mpsc::UnboundedReceiver<pb::OutboundAck>,
    /// Actions from core (to delivery).
    pub actions: mpsc::UnboundedSender<pb::OutboundAction>,
    /// True while the stream is up.
    pub connected: Arc<AtomicBool>,
}

/// Telegram's hello.
pub fn hello(version: &str) -> pb::Hello {
    pb::Hello {
        transport: "telegram".to_owned(),
        capabilities: Some(pb::Capabilities {
            max_message_len: crate::split::TELEGRAM_LIMIT as u32,
            can_edit: true,
            buttons: pb::ButtonStyle::Keyboard as i32,
            topics: true,
            file_upload: true,
        }),
        version: version.to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        scope: Vec::new(),
    }
}

/// State kept across reconnects.
struct Session {
    hello: pb::Hello,
    /// Sent but not yet accepted by core, oldest first.
    unaccepted: VecDeque<pb::InboundEvent>,
    delivered: HashSet<u64>,
    delivered_order: VecDeque<u64>,
    /// Actions handed to delivery whose ack has not been sent yet.
    in_delivery: HashSet<u64>,
}

/// Why one stream ended.
enum End {
    Shutdown,
    Lost(String),
}

/// Runs the link until shutdown.
pub async fn run(
    channel: ductor_proto::Channel,
    hello: pb::Hello,
    mut link: Link,
    shutdown: CancellationToken,
) {
    let mut session = Session {
        hello,
        unaccepted: VecDeque::new(),
        delivered: HashSet::new(),
        delivered_order: VecDeque::new(),
        in_delivery: HashSet::new(),
    };
    let mut backoff = Backoff::default();
    loop {
        let end = session.attach_once(channel.clone(), &mut link, &shutdown, &mut backoff).await;
        link.connected.store(false, Ordering::Relaxed);
        match end {
            End::Shutdown => return,
            End::Lost(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "lost the link to core");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

impl Session {
    async fn attach_once(
        &mut self,
        channel: ductor_proto::Channel,
        link: &mut Link,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> End {
        let (out, out_receiver) = mpsc::unbounded_channel::<pb::GatewayMessage>();
        let send = |msg: Msg| out.send(pb::GatewayMessage { msg: Some(msg) }).is_ok();
        send(Msg::Hello(self.hello.clone()));
        for event in &self.unaccepted {
            send(Msg::Inbound(event.clone()));
        }
        let mut client = CoreClient::new(channel);
        let call = client.attach(UnboundedReceiverStream::new(out_receiver));
        let mut stream = tokio::select! {
            () = shutdown.cancelled() => return End::Shutdown,
            response = call => match response {
                Ok(response) => response.into_inner(),
                Err(status) => return End::Lost(format!("attach: {}", status.message())),
            },
        };
        link.connected.store(true, Ordering::Relaxed);
        tracing::info!(resent = self.unaccepted.len(), "attached to core");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return End::Shutdown,
                event = link.events.recv() => {
                    let Some(event) = event else { return End::Shutdown };
                    self.unaccepted.push_back(event.clone());
                    send(Msg::Inbound(event));
                }
                ack = link.acks.recv() => {
                    let Some(ack) = ack else { return End::Shutdown };
                    self.in_delivery.remove(&ack.action_id);
                    self.remember(ack.action_id);
                    send(Msg::Ack(ack));
                }
                message = stream.message() => match message {
                    Ok(Some(message)) => {
                        backoff.reset();
                        self.on_core_message(message, link, &send);
                    }
                    Ok(None) => return End::Lost("core closed the stream".to_owned()),
                    Err(status) => return End::Lost(status.message().to_owned()),
                },
            }
        }
    }

    fn on_core_message(
        &mut self,
        message: pb::CoreMessage,
        link: &Link,
        send: &impl Fn(Msg) -> bool,
    ) {
        use pb::core_message::Msg as CoreMsg;
        match message.msg {
            Some(CoreMsg::Welcome(welcome)) => {
                tracing::info!(core_version = %welcome.core_version, pending = welcome.pending, "core welcomed the gateway");
            }
            Some(CoreMsg::Accepted(accepted)) => {
                self.unaccepted.retain(|event| event.event_id != accepted.event_id);
            }
            Some(CoreMsg::Action(action)) => {
                let id = action.action_id;
                if self.delivered.contains(&id) {
                    send(Msg::Ack(pb::OutboundAck { action_id: id, error: String::new() }));
                } else if self.in_delivery.insert(id) && link.actions.send(action).is_err() {
                    tracing::error!(action_id = id, "delivery has stopped; an action is dropped");
                }
            }
            None => {}
        }
    }

    fn remember(&mut self, action_id: u64) {
        if self.delivered.insert(action_id) {
            self.delivered_order.push_back(action_id);
            if self.delivered_order.len() > DELIVERED_MEMORY
                && let Some(old) = self.delivered_order.pop_front()
            {
                self.delivered.remove(&old);
            }
        }
    }
}
