//! The `ductor.v1.Tasks` gRPC service (`ductorctl task …`): the caller is
//! authenticated from `auth` like the Automation service's (an agent run acts
//! for its own chat only, the operator for every chat), requests are
//! validated into [`TaskRequest`]s, and one error type maps to `Status`.

use ductor_proto::pb;
use tonic::{Request, Response, Status};

use super::engine::Background;
use super::model::{Refusal, RefusalKind, Task};
use super::tasks::TaskRequest;
use crate::automation::credential::{Caller, Credentials, Presented};
use crate::model::SessionKey;

/// Why a Tasks request failed; converted to `Status` in one place.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// No valid credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A field is missing or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The operator must say for which chat.
    #[error("{0}")]
    NeedsChat(String),
    /// The state does not allow it (not found, not waiting, limits).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl From<TasksError> for Status {
    fn from(error: TasksError) -> Self {
        let message = error.to_string();
        match error {
            TasksError::Unauthenticated(_) => Status::unauthenticated(message),
            TasksError::BadRequest(_) | TasksError::NeedsChat(_) => {
                Status::invalid_argument(message)
            }
            TasksError::Refused(refusal) => match refusal.kind {
                RefusalKind::NotFound => Status::not_found(message),
                RefusalKind::Limit => Status::resource_exhausted(message),
                RefusalKind::Refused => Status::failed_precondition(message),
            },
        }
    }
}

/// The service.
#[derive(Debug, Clone)]
pub struct TasksService {
    background: Background,
    credentials: Credentials,
}

impl TasksService {
    /// A service over `background`, authenticating with `credentials`.
    pub fn new(background: Background, credentials: Credentials) -> Self {
        Self { background, credentials }
    }

    /// The tonic server.
    pub fn into_server(self) -> pb::tasks_server::TasksServer<Self> {
        pb::tasks_server::TasksServer::new(self)
    }

    /// The caller's chat (`None` for the operator, who sees every chat).
    fn scope(&self, auth: Option<pb::AutomationAuth>) -> Result<Option<SessionKey>, TasksError> {
        let presented = Presented::from_pb(auth);
        match self.credentials.authorize(&presented) {
            Ok(Caller::Admin) => Ok(None),
            Ok(Caller::Agent(chat) | Caller::Chat(chat)) if chat.is_bus() => {
                Err(TasksError::Unauthenticated(BUS_REFUSED.to_owned()))
            }
            Ok(Caller::Agent(chat) | Caller::Chat(chat)) => {
                Ok(Some(SessionKey::new(chat.transport, chat.chat_id, chat.topic_id)))
            }
            Err(error) => Err(TasksError::Unauthenticated(error.to_string())),
        }
    }
}

/// Why an inter-agent run cannot use this service.
const BUS_REFUSED: &str =
    "an answer to another agent has no chat: it can ask agents, not manage tasks";

fn task_info(task: &Task, background: &Background) -> pb::TaskInfo {
    pb::TaskInfo {
        id: task.id.clone(),
        name: task.name.clone(),
        status: task.status.as_str().to_owned(),
        priority: task.priority.as_str().to_owned(),
        provider: task.provider.clone(),
        model: task.model.clone(),
        transport: task.parent.transport.clone(),
        chat: Some(pb::ChatRef {
            chat_id: task.parent.chat_id.clone(),
            topic_id: task.parent.topic_id.clone(),
        }),
        created_ms: task.created_at.as_millisecond(),
        finished_ms: task.finished_at.map_or(0, |t| t.as_millisecond()),
        question: task.question.clone(),
        result: task.result.clone(),
        folder: background.task_folder(&task.parent, &task.id).display().to_string(),
    }
}

fn ack(message: impl Into<String>) -> Response<pb::AutomationAck> {
    Response::new(pb::AutomationAck { message: message.into() })
}

#[tonic::async_trait]
impl pb::tasks_server::Tasks for TasksService {
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let request = request.into_inner();
        let parent = self.scope(request.auth)?.ok_or_else(|| {
            TasksError::NeedsChat(
                "a task belongs to a chat: create it from an agent run of that chat".into(),
            )
        })?;
        let spec = request.spec.ok_or_else(|| TasksError::BadRequest("spec is required".into()))?;
        let task = TaskRequest {
            name: spec.name,
            prompt: spec.prompt,
            provider: spec.provider,
            model: spec.model,
            effort: spec.effort,
            priority: spec.priority,
        };
        let task = self.background.create_task(&parent, task).await.map_err(TasksError::from)?;
        Ok(Response::new(task_info(&task, &self.background)))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let scope = self.scope(request.into_inner().auth)?;
        let tasks = self.background.list_tasks(scope.as_ref());
        let tasks = tasks.iter().map(|t| task_info(t, &self.background)).collect();
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::TaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let request = request.into_inner();
        let scope = self.scope(request.auth)?;
        let task = self
            .background
            .cancel_task(scope.as_ref(), &request.id)
            .await
            .map_err(TasksError::from)?;
        Ok(Response::new(task_info(&task, &self.background)))
    }

    async fn delete_task(
        &self,
        request: Request<pb::TaskRequest>,
    ) -> Result<Response<pb::AutomationAck>, Status> {
        let request = request.into_inner();
        let scope = self.scope(request.auth)?;
        let task = self
            .background
            .delete_task(scope.as_ref(), &request.id)
            .await
            .map_err(TasksError::from)?;
        Ok(ack(format!("deleted task {} ({})", task.name, task.id)))
    }

    async fn ask_parent(
        &self,
        request: Request<pb::AskParentRequest>,
    ) -> Result<Response<pb::AutomationAck>, Status> {
        let request = request.into_inner();
        let scope = self.scope(request.auth)?;
        self.background
            .ask_parent(scope.as_ref(), &request.task_id, &request.question)
            .await
            .map_err(TasksError::from)?;
        Ok(ack("question sent; end your turn now: you are resumed with the answer"))
    }

    async fn answer_task(
        &self,
        request: Request<pb::AnswerTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let request = request.into_inner();
        if request.answer.trim().is_empty() {
            return Err(TasksError::BadRequest("the answer is empty".into()).into());
        }
        let scope = self.scope(request.auth)?;
        let task = self
            .background
            .answer_task(scope.as_ref(), &request.id, &request.answer)
            .await
            .map_err(TasksError::from)?;
        Ok(Response::new(task_info(&task, &self.background)))
    }

    async fn resume_task(
        &self,
        request: Request<pb::AnswerTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let request = request.into_inner();
        if request.answer.trim().is_empty() {
            return Err(TasksError::BadRequest("the instruction is empty".into()).into());
        }
        let scope = self.scope(request.auth)?;
        let task = self
            .background
            .resume_task(scope.as_ref(), &request.id, &request.answer)
            .await
            .map_err(TasksError::from)?;
        Ok(Response::new(task_info(&task, &self.background)))
    }
}
