//! A test gateway: one `Core.Attach` stream opened with a `Hello`, inbound
//! events sent on it, and core's messages read (and actions acknowledged)
//! from it. The black-box tests, core's in-process service tests and core's
//! benchmark all play a gateway this way; what they check stays with them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use ductor_proto::pb::core_message::Msg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::harness::patience;

/// Numbers inbound events across every gateway of the process, so a
/// reattached gateway never repeats an event id core has already journaled.
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// A `Hello` for `transport`: unscoped, 4096-character messages, no other
/// capability. Change fields with struct update syntax.
pub fn hello(transport: &str) -> pb::Hello {
    pb::Hello {
        transport: transport.into(),
        capabilities: Some(pb::Capabilities { max_message_len: 4096, ..Default::default() }),
        version: "test".into(),
        instance_id: format!("test-{}", std::process::id()),
        scope: Vec::new(),
        agent: String::new(),
    }
}

/// One attached test gateway.
pub struct Gateway {
    tx: mpsc::Sender<pb::GatewayMessage>,
    rx: tonic::Streaming<pb::CoreMessage>,
    transport: String,
    /// Core's answer to the `Hello`.
    pub welcome: pb::Welcome,
}

impl Gateway {
    /// Attaches over `channel` with `hello` and reads the `Welcome`; core's
    /// refusal is the error.
    pub async fn try_attach(
        channel: ductor_proto::Channel,
        hello: pb::Hello,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(1024);
        let transport = hello.transport.clone();
        let message = pb::GatewayMessage { msg: Some(pb::gateway_message::Msg::Hello(hello)) };
        tx.send(message).await.expect("queue the hello");
        let mut rx = CoreClient::new(channel).attach(ReceiverStream::new(rx)).await?.into_inner();
        let welcome = match rx.message().await? {
            Some(pb::CoreMessage { msg: Some(Msg::Welcome(welcome)) }) => welcome,
            other => panic!("expected a welcome, got {other:?}"),
        };
        Ok(Self { tx, rx, transport, welcome })
    }

    /// [`Gateway::try_attach`], which must succeed.
    pub async fn attach(channel: ductor_proto::Channel, hello: pb::Hello) -> Self {
        Self::try_attach(channel, hello).await.expect("core accepts the attach")
    }

    async fn push(&self, msg: pb::gateway_message::Msg) {
        let message = pb::GatewayMessage { msg: Some(msg) };
        self.tx.send(message).await.expect("the attach stream takes messages");
    }

    /// Sends an inbound event with this id, from user `u1` in `chat`.
    pub async fn send_as(&self, event_id: &str, chat: &str, kind: pb::inbound_event::Kind) {
        let event = pb::InboundEvent {
            event_id: event_id.into(),
            chat: Some(pb::ChatRef { chat_id: chat.into(), topic_id: String::new() }),
            sender_id: "u1".into(),
            sender_name: "User".into(),
            kind: Some(kind),
        };
        self.push(pb::gateway_message::Msg::Inbound(event)).await;
    }

    /// Sends an inbound event with a fresh id; returns the id.
    pub async fn send(&self, chat: &str, kind: pb::inbound_event::Kind) -> String {
        let n = EVENTS.fetch_add(1, Ordering::Relaxed);
        let event_id = format!("{}:{}:{n}", self.transport, std::process::id());
        self.send_as(&event_id, chat, kind).await;
        event_id
    }

    /// Sends `text` as a message in `chat`; returns the event id.
    pub async fn say(&self, chat: &str, text: &str) -> String {
        self.send(chat, message(text)).await
    }

    /// Sends `text` as a message in `chat` under `event_id`.
    pub async fn say_as(&self, event_id: &str, chat: &str, text: &str) {
        self.send_as(event_id, chat, message(text)).await;
    }

    /// Presses the button `button_id` in `chat`; returns the event id.
    pub async fn press(&self, chat: &str, button_id: &str) -> String {
        let press = pb::ButtonPress { button_id: button_id.into(), message_ref: String::new() };
        self.send(chat, pb::inbound_event::Kind::Button(press)).await
    }

    /// Acknowledges an action as delivered.
    pub async fn ack(&self, action_id: u64) {
        let ack = pb::OutboundAck { action_id, error: String::new() };
        // Core may already have ended the stream; an ack then has no one to reach.
        let message = pb::GatewayMessage { msg: Some(pb::gateway_message::Msg::Ack(ack)) };
        let _ = self.tx.send(message).await;
    }

    /// Core's next message, unacknowledged, or `None` once `deadline` passes.
    pub async fn message(&mut self, deadline: Instant) -> Option<Msg> {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, self.rx.message()).await.ok()?;
        let message = message.expect("the attach stream is healthy").expect("it is open");
        Some(message.msg.expect("a core message has a body"))
    }

    /// Core's next message within [`patience`]; an action is acknowledged when `ack`.
    pub async fn next_message(&mut self, ack: bool) -> Msg {
        let msg = self.message(Instant::now() + patience()).await;
        let msg = msg.unwrap_or_else(|| panic!("no message from core within {:?}", patience()));
        if let (true, Msg::Action(action)) = (ack, &msg) {
            self.ack(action.action_id).await;
        }
        msg
    }

    /// The next action (acknowledged), skipping other messages, or `None`
    /// once `deadline` passes.
    pub async fn action_before(&mut self, deadline: Instant) -> Option<pb::OutboundAction> {
        loop {
            if let Msg::Action(action) = self.message(deadline).await? {
                self.ack(action.action_id).await;
                return Some(action);
            }
        }
    }

    /// The next action (acknowledged) within [`patience`].
    pub async fn next(&mut self) -> pb::OutboundAction {
        let action = self.action_before(Instant::now() + patience()).await;
        action.unwrap_or_else(|| panic!("no action from core within {:?}", patience()))
    }

    /// Reads (and acknowledges) actions until `pick` accepts one; returns what it picked.
    pub async fn until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&pb::OutboundAction) -> Option<T>,
    ) -> T {
        for _ in 0..10_000 {
            let action = self.next().await;
            if let Some(found) = pick(&action) {
                return found;
            }
        }
        panic!("never saw {what}");
    }

    /// The actions up to and including the final reply or error answering
    /// `event`, acknowledged when `ack`.
    pub async fn turn(&mut self, event: &str, ack: bool) -> Vec<pb::OutboundAction> {
        use pb::outbound_action::Kind;
        let mut seen = Vec::new();
        loop {
            let Msg::Action(action) = self.next_message(ack).await else { continue };
            let end = action.reply_to_event == event
                && matches!(action.kind, Some(Kind::FinalReply(_) | Kind::Error(_)));
            seen.push(action);
            if end {
                return seen;
            }
        }
    }
}

fn message(text: &str) -> pb::inbound_event::Kind {
    let message = pb::UserMessage { text: text.into(), reply_quote: String::new() };
    pb::inbound_event::Kind::Message(message)
}

/// One message core sent a chat, reduced to what these tests look at.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The chat id.
    pub chat: String,
    /// "final", "notice", "menu", "error" or "queued".
    pub kind: &'static str,
    /// Its text.
    pub text: String,
    /// Its button ids.
    pub buttons: Vec<String>,
    /// The paths of the files a final reply carries.
    pub files: Vec<String>,
}

/// `action` as a [`Seen`]; `None` for streaming and bookkeeping actions.
pub fn seen(action: &pb::OutboundAction) -> Option<Seen> {
    let chat = action.chat.as_ref().map(|c| c.chat_id.clone()).unwrap_or_default();
    let ids = |grid: &[pb::ButtonRow]| -> Vec<String> {
        grid.iter().flat_map(|row| row.buttons.iter().map(|b| b.id.clone())).collect()
    };
    let mut files = Vec::new();
    let (kind, text, buttons) = match action.kind.as_ref()? {
        pb::outbound_action::Kind::FinalReply(reply) => {
            files = reply.files.iter().map(|f| f.path.clone()).collect();
            ("final", reply.text.clone(), ids(&reply.buttons))
        }
        pb::outbound_action::Kind::Notice(notice) => ("notice", notice.text.clone(), Vec::new()),
        pb::outbound_action::Kind::Selector(menu) => {
            ("menu", menu.text.clone(), ids(&menu.buttons))
        }
        pb::outbound_action::Kind::Error(error) => ("error", error.message.clone(), Vec::new()),
        pb::outbound_action::Kind::QueueNotice(queued) => {
            ("queued", queued.text.clone(), ids(&queued.buttons))
        }
        _ => return None,
    };
    Some(Seen { chat, kind, text, buttons, files })
}

/// A test gateway that remembers what it read, so a test can wait for
/// messages in any order.
pub struct Chat {
    /// The gateway it reads.
    pub gateway: Gateway,
    log: Vec<Seen>,
    /// Everything read so far, in order (for order assertions and failures).
    pub all: Vec<Seen>,
}

impl Chat {
    /// Attaches as `transport` over `channel`.
    pub async fn attach(channel: ductor_proto::Channel, transport: &str) -> Self {
        let gateway = Gateway::attach(channel, hello(transport)).await;
        Self { gateway, log: Vec::new(), all: Vec::new() }
    }

    /// The first unclaimed message of `chat` whose text contains `needle`;
    /// it is claimed. Panics after `limit`.
    pub async fn expect(&mut self, chat: &str, needle: &str, limit: Duration) -> Seen {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.log.iter().position(|s| s.chat == chat && s.text.contains(needle))
            {
                return self.log.remove(i);
            }
            let Some(action) = self.gateway.action_before(deadline).await else {
                panic!(
                    "no message containing {needle:?} in {chat} within {limit:?}: {:#?}",
                    self.all
                )
            };
            if let Some(seen) = seen(&action) {
                self.log.push(seen.clone());
                self.all.push(seen);
            }
        }
    }

    /// [`Chat::expect`] within the harness's patience.
    pub async fn soon(&mut self, chat: &str, needle: &str) -> Seen {
        self.expect(chat, needle, patience()).await
    }

    /// Index in [`Chat::all`] of the first message containing `needle`.
    pub fn position(&self, needle: &str) -> Option<usize> {
        self.all.iter().position(|s| s.text.contains(needle))
    }
}
