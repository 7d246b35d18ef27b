//! The `Agents` gRPC service (`ductorctl agents list|ask`): authenticates
//! the caller like automation does (an agent run's credential is bound to its
//! chat, whose endpoint names its agent; the operator's admin token) and
//! hands questions to the [`Bus`].

use std::sync::Arc;
use std::time::Duration;

use ductor_proto::pb;
use tonic::{Request, Response, Status};

use super::bus::{Asker, Bus, BusError, Question};
use crate::automation::credential::{Caller, Credentials, Presented};
use crate::model::SessionKey;
use crate::outbox::Outbox;

/// The service.
#[derive(Clone)]
pub struct AgentsService {
    bus: Bus,
    credentials: Credentials,
    outbox: Arc<Outbox>,
    /// A sync ask's wait when the caller names none.
    default_timeout: Duration,
}

impl AgentsService {
    /// A service over `bus`.
    pub fn new(
        bus: Bus,
        credentials: Credentials,
        outbox: Arc<Outbox>,
        default_timeout: Duration,
    ) -> Self {
        Self { bus, credentials, outbox, default_timeout }
    }

    /// The tonic server.
    pub fn into_server(self) -> pb::agents_server::AgentsServer<Self> {
        pb::agents_server::AgentsServer::new(self)
    }

    fn asker(&self, auth: Option<pb::AutomationAuth>) -> Result<Asker, Status> {
        let presented = Presented::from_pb(auth);
        match self.credentials.authorize(&presented) {
            Ok(Caller::Admin) => Ok(Asker::Operator),
            Ok(Caller::Agent(chat) | Caller::Chat(chat)) => {
                Ok(Asker::of_chat(SessionKey::new(chat.transport, chat.chat_id, chat.topic_id)))
            }
            Err(error) => Err(Status::unauthenticated(error.to_string())),
        }
    }
}

impl From<BusError> for Status {
    fn from(error: BusError) -> Self {
        let message = error.to_string();
        match error {
            BusError::UnknownAgent { .. } => Status::not_found(message),
            BusError::SelfAsk | BusError::NoSessionForBackground => {
                Status::invalid_argument(message)
            }
            BusError::HopLimit { .. } | BusError::FanOut(_) => Status::resource_exhausted(message),
            BusError::Loop { .. } => Status::failed_precondition(message),
            BusError::Timeout { .. } => Status::deadline_exceeded(message),
            BusError::Failed { .. } => Status::unavailable(message),
        }
    }
}

#[tonic::async_trait]
impl pb::agents_server::Agents for AgentsService {
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let asker = self.asker(request.into_inner().auth)?;
        let connected = self.outbox.gateways().await;
        let agents = self
            .bus
            .directory()
            .all()
            .iter()
            .map(|p| pb::AgentInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                provider: p.provider.clone(),
                model: p.model.clone(),
                transports: p.transports.clone(),
                connected: connected
                    .iter()
                    .filter(|t| crate::model::agent_of(t) == p.name)
                    .cloned()
                    .collect(),
                sessions: 0,
                enabled: p.enabled,
            })
            .collect();
        let caller = match &asker {
            Asker::Operator => String::new(),
            other => other.agent().to_owned(),
        };
        Ok(Response::new(pb::ListAgentsResponse { agents, caller }))
    }

    async fn ask_agent(
        &self,
        request: Request<pb::AskAgentRequest>,
    ) -> Result<Response<pb::AskAgentResponse>, Status> {
        let request = request.into_inner();
        let from = self.asker(request.auth)?;
        if request.message.trim().is_empty() {
            return Err(Status::invalid_argument("the message is empty"));
        }
        let timeout = match request.timeout_seconds {
            0 => self.default_timeout,
            seconds => Duration::from_secs(seconds.into()),
        };
        let question = Question {
            from,
            to: request.to,
            message: request.message,
            background: request.background,
            new_session: request.new_session,
            timeout,
        };
        let answer = self.bus.ask(question).await?;
        Ok(Response::new(pb::AskAgentResponse {
            text: answer.text,
            task_id: answer.task_id,
            trace_id: answer.trace,
            cost_usd: answer.cost_usd.unwrap_or(0.0),
        }))
    }
}
