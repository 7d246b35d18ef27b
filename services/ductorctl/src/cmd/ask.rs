//! `ductorctl ask`: one message to core as transport `cli`, its answer on
//! stdout. Also the terminal client both `ask` and `chat` use: a *scoped*
//! `Core.Attach` stream (only this chat's actions), acknowledging every
//! action, reconnecting with backoff when core restarts.
//!
//! `ask` waits for the answer to its own event (`reply_to_event`): a final
//! reply (exit 0), an error (stderr, exit 1), or for a command the notice or
//! menu it produced (exit 0). Deltas stream to stdout only when stdout is a
//! terminal, so `x=$(ductorctl ask hi)` captures just the final text.
//! Consecutive asks with the same `--chat` continue the same session.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::core_client::CoreClient;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// `ductorctl ask`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The chat id (sessions are per chat and topic).
    #[arg(long, default_value = "default")]
    pub chat: String,

    /// The topic id within the chat.
    #[arg(long, default_value = "")]
    pub topic: String,

    /// Stream deltas to stdout even when it is not a terminal.
    #[arg(long)]
    pub stream: bool,

    /// Talk to this sub-agent (an `[[agents]]` name) instead of the main
    /// agent; core names the chat `cli@NAME:<chat>`.
    #[arg(long, value_name = "NAME", value_parser = parse_agent, default_value = "")]
    pub agent: String,

    /// The message (or a command such as `/new` or `/model codex`).
    #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
    pub prompt: Vec<String>,
}

/// The transport name terminal clients use.
pub const TRANSPORT: &str = "cli";

/// `--agent`: a sub-agent's name; `main` (or nothing) is the main agent.
pub fn parse_agent(text: &str) -> Result<String, String> {
    use ductor_daemon::config::{MAIN_AGENT, valid_agent_name};
    match text {
        "" | MAIN_AGENT => Ok(String::new()),
        name if valid_agent_name(name) => Ok(name.to_owned()),
        name => Err(format!("{name:?} is not an agent name")),
    }
}

/// A scoped connection to core for one chat.
pub struct Client {
    home: DuctorHome,
    agent: String,
    chat: pb::ChatRef,
    outgoing: mpsc::Sender<pb::GatewayMessage>,
    incoming: tonic::Streaming<pb::CoreMessage>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("chat", &self.chat.chat_id).finish()
    }
}

/// What the client reads.
#[derive(Debug)]
pub enum Incoming {
    /// An outbound action (already acknowledged).
    Action(pb::OutboundAction),
    /// Core accepted an inbound event.
    Accepted(String),
}

impl Client {
    /// Connects, retrying with backoff for up to `patience`.
    pub async fn connect(
        home: &DuctorHome,
        agent: &str,
        chat: &str,
        topic: &str,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let chat = pb::ChatRef { chat_id: chat.to_owned(), topic_id: topic.to_owned() };
        let start = std::time::Instant::now();
        let mut backoff = ductor_proto::transport::Backoff::default();
        loop {
            match Self::attach(home, agent, &chat).await {
                Ok(client) => return Ok(client),
                Err(error) if start.elapsed() < patience => {
                    tracing::debug!("failed to attach to core: {error:#}");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(error) => {
                    return Err(error).context(format!(
                        "reach core at {} (is `ductorctl up` running?)",
                        home.socket(ServiceName::Core).display()
                    ));
                }
            }
        }
    }

    async fn attach(home: &DuctorHome, agent: &str, chat: &pb::ChatRef) -> anyhow::Result<Self> {
        let channel = ductor_proto::transport::connect(home.socket(ServiceName::Core));
        let (outgoing, rx) = mpsc::channel(64);
        let hello = pb::Hello {
            transport: TRANSPORT.to_owned(),
            capabilities: Some(pb::Capabilities {
                max_message_len: 0,
                can_edit: false,
                buttons: pb::ButtonStyle::None as i32,
                topics: true,
                file_upload: false,
            }),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id: format!("ductorctl-{}", std::process::id()),
            scope: vec![chat.clone()],
            agent: agent.to_owned(),
        };
        outgoing
            .send(pb::GatewayMessage { msg: Some(pb::gateway_message::Msg::Hello(hello)) })
            .await
            .context("queue the hello")?;
        let response = CoreClient::new(channel)
            .attach(ReceiverStream::new(rx))
            .await
            .context("open the Attach stream")?;
        Ok(Self {
            home: home.clone(),
            agent: agent.to_owned(),
            chat: chat.clone(),
            outgoing,
            incoming: response.into_inner(),
        })
    }

    /// Attaches again after the stream broke (core restarted).
    pub async fn reconnect(&mut self, patience: Duration) -> anyhow::Result<()> {
        let (home, agent, chat) = (&self.home, &self.agent, &self.chat);
        *self = Self::connect(home, agent, &chat.chat_id, &chat.topic_id, patience).await?;
        Ok(())
    }

    /// Sends a text message with `event_id`.
    pub async fn send_text(&self, event_id: &str, text: &str) -> anyhow::Result<()> {
        let event = pb::InboundEvent {
            event_id: event_id.to_owned(),
            chat: Some(self.chat.clone()),
            sender_id: "local".to_owned(),
            sender_name: std::env::var("USER").unwrap_or_default(),
            kind: Some(pb::inbound_event::Kind::Message(pb::UserMessage {
                text: text.to_owned(),
                reply_quote: String::new(),
            })),
        };
        self.outgoing
            .send(pb::GatewayMessage { msg: Some(pb::gateway_message::Msg::Inbound(event)) })
            .await
            .context("send the message to core")
    }

    /// The next action or acceptance; `Ok(None)` when the stream ended.
    /// Actions are acknowledged before they are returned.
    pub async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        loop {
            let Some(message) = self.incoming.message().await? else { return Ok(None) };
            match message.msg {
                Some(pb::core_message::Msg::Action(action)) => {
                    let ack = pb::OutboundAck { action_id: action.action_id, error: String::new() };
                    let _ = self
                        .outgoing
                        .send(pb::GatewayMessage { msg: Some(pb::gateway_message::Msg::Ack(ack)) })
                        .await;
                    return Ok(Some(Incoming::Action(action)));
                }
                Some(pb::core_message::Msg::Accepted(accepted)) => {
                    return Ok(Some(Incoming::Accepted(accepted.event_id)));
                }
                // A restart is for gateways; core never sends one to a scoped client.
                Some(pb::core_message::Msg::Welcome(_) | pb::core_message::Msg::Restart(_))
                | None => {}
            }
        }
    }
}

/// A unique event id for a message typed here.
pub fn new_event_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("cli:{}:{nanos}:{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Prints the human form of a final reply's attachments and footer.
pub fn print_extras(out: &mut impl Write, reply: &pb::FinalReply) {
    for file in &reply.files {
        let _ = writeln!(out, "[file: {}]", file.path);
    }
    if !reply.footer.is_empty() {
        let _ = writeln!(out, "— {}", reply.footer);
    }
}

/// How waiting for an answer ended.
enum Answer {
    Done,
    Failed(String),
}

/// `ductorctl ask`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let text = args.prompt.join(" ");
    let stream = args.stream || std::io::stdout().is_terminal();
    let patience = Duration::from_secs(30);
    let mut client = Client::connect(home, &args.agent, &args.chat, &args.topic, patience).await?;
    let event_id = new_event_id();
    client.send_text(&event_id, &text).await?;
    let mut accepted = false;
    let mut streamed = String::new();
    loop {
        let incoming = match client.next().await {
            Ok(Some(incoming)) => incoming,
            Ok(None) | Err(_) => {
                // Core went away: attach again. The event is re-sent until core
                // accepted it (duplicates are dropped by id); afterwards the
                // answer, or the "interrupted" report, comes from the outbox.
                client.reconnect(patience).await?;
                if !accepted {
                    client.send_text(&event_id, &text).await?;
                }
                continue;
            }
        };
        let action = match incoming {
            Incoming::Accepted(id) => {
                accepted |= id == event_id;
                continue;
            }
            Incoming::Action(action) => action,
        };
        if action.reply_to_event != event_id {
            continue;
        }
        match handle(&action, stream, &mut streamed) {
            Some(Answer::Done) => return Ok(ExitCode::SUCCESS),
            Some(Answer::Failed(message)) => {
                eprintln!("{message}");
                return Ok(ExitCode::FAILURE);
            }
            None => {}
        }
    }
}

/// Shows one action of our turn; `Some` when it ends the wait.
fn handle(action: &pb::OutboundAction, stream: bool, streamed: &mut String) -> Option<Answer> {
    use pb::outbound_action::Kind;
    let mut stdout = std::io::stdout().lock();
    match action.kind.as_ref()? {
        Kind::TextDelta(delta) => {
            if stream {
                streamed.push_str(&delta.text);
                let _ = write!(stdout, "{}", delta.text);
                let _ = stdout.flush();
            }
            None
        }
        Kind::Tool(tool) if stream && !tool.finished => {
            eprintln!("[{}] {}", tool.name, tool.summary);
            None
        }
        Kind::FinalReply(reply) => {
            match reply.text.strip_prefix(streamed.as_str()) {
                Some(rest) if !streamed.is_empty() => {
                    let _ = writeln!(stdout, "{rest}");
                }
                _ => {
                    if !streamed.is_empty() {
                        let _ = writeln!(stdout, "\n");
                    }
                    let _ = writeln!(stdout, "{}", reply.text);
                }
            }
            print_extras(&mut stdout, reply);
            Some(Answer::Done)
        }
        Kind::Error(error) => Some(Answer::Failed(format!("{} ({})", error.message, error.kind))),
        Kind::Notice(notice) if action.turn_id.is_empty() => {
            let _ = writeln!(stdout, "{}", notice.text);
            Some(Answer::Done)
        }
        Kind::Notice(notice) => {
            eprintln!("{}", notice.text);
            None
        }
        Kind::Selector(menu) => {
            let _ = writeln!(stdout, "{}", menu.text);
            Some(Answer::Done)
        }
        Kind::QueueNotice(queued) => {
            eprintln!("{}", queued.text);
            None
        }
        Kind::QueueClear(clear) if clear.reason != "started" => {
            Some(Answer::Failed(format!("the queued message was {}", clear.reason)))
        }
        _ => None,
    }
}
