//! The gRPC `Core` service: `Attach` (one stream per gateway, or per
//! terminal client) and `Describe`.
//!
//! An Attach stream starts with `Hello`; core answers `Welcome` and re-sends
//! unacknowledged durable actions. Each inbound event is journaled in SQLite
//! (deduplicated by event id) *before* it is acknowledged with
//! `InboundAccepted` and handed to the orchestrator, so a gateway may forget
//! an event once it sees the acceptance.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ductor_proto::{ProtocolError, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::automation::engine::Automation;
use crate::driver::{CoreGone, CoreHandle, Stats};
use crate::machine::Event;
use crate::model::{Inbound, InboundKind};
use crate::outbox::{ConnId, StreamItem};
use crate::store::{self, Store, StoreError};
use crate::wire::{HelloInfo, inbound_from_pb};

/// Why a `Core` request failed. [`Status`] is made from it in one place
/// (`From` below), which also logs what the caller is not told.
#[derive(Debug, thiserror::Error)]
pub enum CoreServiceError {
    /// The connection did not present the local token.
    #[error("this connection has no local token: agents may only use the Automation service")]
    NotPrivileged,
    /// No `Hello` in time.
    #[error("no hello within {} s", HELLO_TIMEOUT.as_secs())]
    NoHello,
    /// The stream did not start with `Hello`.
    #[error("the first message must be `hello`")]
    NotHello,
    /// A message broke the contract.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The database failed.
    #[error("failed to {action}")]
    Store {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The orchestrator has stopped.
    #[error("core is shutting down")]
    ShuttingDown,
    /// The `Hello` names an agent that is not in `[[agents]]`.
    #[error("no agent {0:?} in config.toml ([[agents]]); restart core after adding it")]
    UnknownAgent(String),
    /// The gateway's request stream failed before its `Hello`.
    #[error("the attach stream failed: {0}")]
    Stream(#[from] Status),
}

impl CoreServiceError {
    fn store(action: &'static str) -> impl FnOnce(StoreError) -> Self {
        move |source| Self::Store { action, source }
    }
}

impl From<CoreGone> for CoreServiceError {
    fn from(_: CoreGone) -> Self {
        Self::ShuttingDown
    }
}

impl From<CoreServiceError> for Status {
    fn from(error: CoreServiceError) -> Self {
        let message = error.to_string();
        match error {
            CoreServiceError::NotPrivileged => Status::permission_denied(message),
            CoreServiceError::NoHello => Status::deadline_exceeded(message),
            CoreServiceError::NotHello => Status::invalid_argument(message),
            CoreServiceError::Protocol(error) => error.into(),
            CoreServiceError::Store { action, source } => {
                tracing::error!("failed to {action}: {source}");
                Status::internal(message)
            }
            CoreServiceError::ShuttingDown => Status::unavailable(message),
            CoreServiceError::UnknownAgent(_) => Status::failed_precondition(message),
            CoreServiceError::Stream(status) => status,
        }
    }
}

/// How long a new stream may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Core` service.
#[derive(Clone)]
pub struct CoreService {
    handle: CoreHandle,
    store: Store,
    version: &'static str,
    stats: Arc<Stats>,
    automation: Option<Automation>,
    /// The agents a `Hello` may name (without it: `main` only).
    agents: Option<crate::agents::Directory>,
}

impl CoreService {
    /// A service over the orchestrator behind `handle`.
    pub fn new(handle: CoreHandle, store: Store, version: &'static str, stats: Arc<Stats>) -> Self {
        Self { handle, store, version, stats, automation: None, agents: None }
    }

    /// Gateways may serve the agents of `directory`.
    pub fn with_agents(mut self, directory: crate::agents::Directory) -> Self {
        self.agents = Some(directory);
        self
    }

    /// Routes delivery receipts to automation.
    pub fn with_automation(mut self, automation: Automation) -> Self {
        self.automation = Some(automation);
        self
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::core_server::CoreServer<Self> {
        pb::core_server::CoreServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::core_server::Core for CoreService {
    type AttachStream = UnboundedReceiverStream<StreamItem>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::GatewayMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        require_privileged(&request)?;
        let mut stream = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, stream.message())
            .await
            .map_err(|_| CoreServiceError::NoHello)?
            .map_err(CoreServiceError::Stream)?;
        let hello = match first.and_then(|m| m.msg) {
            Some(pb::gateway_message::Msg::Hello(hello)) => {
                HelloInfo::try_from(hello).map_err(CoreServiceError::from)?
            }
            _ => return Err(CoreServiceError::NotHello.into()),
        };
        let agent = crate::model::agent_of(&hello.transport);
        let known = match &self.agents {
            Some(directory) => directory.get(agent).is_some(),
            None => agent == ductor_daemon::config::MAIN_AGENT,
        };
        if !known {
            tracing::warn!(transport = hello.transport, "refused a gateway of an unknown agent");
            return Err(CoreServiceError::UnknownAgent(agent.to_owned()).into());
        }
        tracing::info!(
            transport = hello.transport,
            version = hello.version,
            scoped = !hello.scope.is_empty(),
            "gateway attached"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = (self.handle.outbox().attach(&hello, self.version, tx.clone()).await)
            .map_err(CoreServiceError::store("read the outbox"))?;
        let event = Event::Gateway { transport: hello.transport.clone(), caps: hello.caps };
        self.handle.event(event).map_err(CoreServiceError::from)?;
        let reader = Reader {
            handle: self.handle.clone(),
            store: self.store.clone(),
            tx,
            conn,
            automation: self.automation.clone(),
        };
        tokio::spawn(reader.run(hello.transport, stream));
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        require_privileged(&request)?;
        let outbox = self.handle.outbox();
        let pending =
            outbox.pending().await.map_err(CoreServiceError::store("count the outbox"))?;
        Ok(Response::new(pb::DescribeResponse {
            version: self.version.to_owned(),
            connected_transports: outbox.connected().await,
            active_turns: u32::try_from(self.stats.active_turns.load(Ordering::Relaxed))
                .unwrap_or(u32::MAX),
            queued_messages: u32::try_from(self.stats.queued.load(Ordering::Relaxed))
                .unwrap_or(u32::MAX),
            outbox_pending: pending,
            runner_reachable: self.stats.runner_up.load(Ordering::Relaxed),
        }))
    }
}

/// Gateways and the operator's `ductorctl` hold the local socket token; an
/// agent CLI calling from inside the sandbox does not, and may only use the
/// Automation service (which scopes it to its own chat).
fn require_privileged<T>(request: &Request<T>) -> Result<(), CoreServiceError> {
    if ductor_proto::transport::PeerInfo::is_privileged(request) {
        Ok(())
    } else {
        Err(CoreServiceError::NotPrivileged)
    }
}

/// Reads one Attach stream until it ends.
struct Reader {
    handle: CoreHandle,
    store: Store,
    tx: mpsc::UnboundedSender<StreamItem>,
    conn: ConnId,
    automation: Option<Automation>,
}

impl Reader {
    async fn run(self, transport: String, mut stream: Streaming<pb::GatewayMessage>) {
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(transport, error = status.message(), "attach stream ended");
                    break;
                }
            };
            match message.msg {
                Some(pb::gateway_message::Msg::Inbound(event)) => {
                    if let Err(error) = self.accept(&transport, event).await {
                        let _ = self.tx.send(Err(error.into()));
                        break;
                    }
                }
                Some(pb::gateway_message::Msg::Ack(ack)) => {
                    if !ack.error.is_empty() {
                        tracing::warn!(
                            transport,
                            action_id = ack.action_id,
                            error = ack.error,
                            "gateway could not deliver an action"
                        );
                    }
                    if let Err(error) = self.handle.outbox().ack(&transport, ack.action_id).await {
                        tracing::error!("failed to record an acknowledgement: {error}");
                    }
                    if let Some(automation) = &self.automation {
                        automation.on_ack(&transport, ack.action_id, &ack.error).await;
                    }
                }
                Some(pb::gateway_message::Msg::Hello(_)) | None => {
                    tracing::warn!(transport, "ignored a repeated hello or an empty message");
                }
            }
        }
        self.handle.outbox().detach(&transport, self.conn).await;
        tracing::info!(transport, "gateway detached");
    }

    /// Journals, acknowledges and forwards one inbound event.
    async fn accept(
        &self,
        transport: &str,
        event: pb::InboundEvent,
    ) -> Result<(), CoreServiceError> {
        let inbound = inbound_from_pb(transport, event)?;
        let preview = preview(&inbound);
        let (event_id, key) = (inbound.event_id.clone(), inbound.key.clone());
        let fresh = self
            .store
            .call(move |c| store::accept_inbound(c, &event_id, &key, &preview))
            .await
            .map_err(CoreServiceError::store("journal an inbound event"))?;
        tracing::debug!(
            transport,
            event_id = inbound.event_id,
            fresh,
            "journaled an inbound event"
        );
        let accepted = pb::InboundAccepted { event_id: inbound.event_id.clone() };
        let _ = self
            .tx
            .send(Ok(pb::CoreMessage { msg: Some(pb::core_message::Msg::Accepted(accepted)) }));
        if fresh {
            self.handle.event(Event::Inbound(inbound))?;
        } else {
            tracing::debug!(transport, event_id = inbound.event_id, "dropped a duplicate event");
        }
        Ok(())
    }
}

/// The start of an event's text, kept in the journal for recovery notices.
fn preview(inbound: &Inbound) -> String {
    let text = match &inbound.kind {
        InboundKind::Message { text, .. } => text.as_str(),
        InboundKind::Button { button_id } => button_id.as_str(),
        InboundKind::Media(media) => {
            if media.caption.is_empty() {
                media.original_filename.as_str()
            } else {
                media.caption.as_str()
            }
        }
    };
    text.chars().take(120).collect()
}
