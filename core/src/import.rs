//! The `ductor.v1.Import` gRPC service: what `ductorctl import --apply`
//! brings from a Python ductor home that has no other door into core (a
//! chat's resume ids, named sessions). Cron jobs and webhooks come through
//! the Automation service like any the operator adds.
//!
//! Only the operator: a privileged connection (the local socket token) that
//! also presents the admin token. An agent in the sandbox has neither.
//! Resume ids arrive only after the runner made their transcripts resumable
//! (`Runner.ImportTranscript`, called by `ductorctl`): core stays blind to
//! where a provider keeps anything.

use ductor_proto::pb;
use jiff::Timestamp;
use tonic::{Request, Response, Status};

use crate::automation::credential::{Caller, Credentials, Presented};
use crate::background::engine::Background;
use crate::background::model::{NamedSession, NamedState};
use crate::driver::CoreHandle;
use crate::machine::{ImportOutcome, SessionImport};
use crate::model::SessionKey;
use crate::session::Bucket;

/// The service.
#[derive(Debug, Clone)]
pub struct ImportService {
    core: CoreHandle,
    background: Background,
    credentials: Credentials,
}

impl ImportService {
    /// A service importing into `core` and `background`.
    pub fn new(core: CoreHandle, background: Background, credentials: Credentials) -> Self {
        Self { core, background, credentials }
    }

    /// The tonic server.
    pub fn into_server(self) -> pb::import_server::ImportServer<Self> {
        pb::import_server::ImportServer::new(self)
    }

    fn operator<T>(
        &self,
        request: &Request<T>,
        auth: Option<&pb::AutomationAuth>,
    ) -> Result<(), Status> {
        if !ductor_proto::transport::PeerInfo::is_privileged(request) {
            return Err(Status::permission_denied("import is for the operator's ductorctl only"));
        }
        let presented = Presented {
            admin_token: auth.map(|a| a.admin_token.clone()).unwrap_or_default(),
            ..Presented::default()
        };
        match self.credentials.authorize(&presented) {
            Ok(Caller::Admin) => Ok(()),
            _ => Err(Status::unauthenticated("import needs the admin token")),
        }
    }
}

fn key(transport: String, chat: Option<pb::ChatRef>) -> Result<SessionKey, Status> {
    let chat = chat.unwrap_or_default();
    if transport.is_empty() || chat.chat_id.is_empty() {
        return Err(Status::invalid_argument("transport and chat are required"));
    }
    Ok(SessionKey::new(transport, chat.chat_id, chat.topic_id))
}

fn time(ms: i64) -> Option<Timestamp> {
    (ms > 0).then(|| Timestamp::from_millisecond(ms).ok()).flatten()
}

fn answer(outcome: ImportOutcome) -> Response<pb::ImportResponse> {
    let (outcome, message) = match outcome {
        ImportOutcome::Imported => ("imported", String::new()),
        ImportOutcome::Unchanged => ("unchanged", String::new()),
        ImportOutcome::Conflict(why) => ("conflict", why),
    };
    Response::new(pb::ImportResponse { outcome: outcome.into(), message })
}

#[tonic::async_trait]
impl pb::import_server::Import for ImportService {
    async fn import_session(
        &self,
        request: Request<pb::ImportSessionRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        self.operator(&request, request.get_ref().auth.as_ref())?;
        let request = request.into_inner();
        let buckets = request
            .buckets
            .into_iter()
            .filter(|b| !b.provider.is_empty() && !b.session_id.is_empty())
            .map(|b| {
                let bucket = Bucket {
                    session_id: Some(b.session_id),
                    message_count: b.message_count,
                    cost_usd: b.cost_usd,
                    last_active: time(b.last_active_ms),
                    ..Bucket::default()
                };
                (b.provider, bucket)
            })
            .collect();
        let import = SessionImport {
            key: key(request.transport, request.chat)?,
            provider: request.provider,
            model: request.model,
            effort: request.effort,
            buckets,
            dry_run: request.dry_run,
        };
        let outcome = self
            .core
            .import_session(import)
            .await
            .map_err(|_| Status::unavailable("core is shutting down"))?;
        Ok(answer(outcome))
    }

    async fn import_named_session(
        &self,
        request: Request<pb::ImportNamedSessionRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        self.operator(&request, request.get_ref().auth.as_ref())?;
        let request = request.into_inner();
        if request.provider.is_empty() || request.session_id.is_empty() {
            return Err(Status::invalid_argument("provider and session_id are required"));
        }
        let now = Timestamp::now();
        let session = NamedSession {
            key: key(request.transport, request.chat)?,
            name: request.name,
            provider: request.provider,
            model: request.model,
            effort: request.effort,
            session_id: request.session_id,
            state: NamedState::Idle,
            created_at: time(request.created_ms).unwrap_or(now),
            last_active: now,
            turns: request.turns,
            cost_usd: 0.0,
        };
        Ok(answer(self.background.import_named(session, request.dry_run).await))
    }
}
