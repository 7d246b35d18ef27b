//! The `ductor.v1.Automation` gRPC service: proto messages are validated into
//! domain types here, the caller is authenticated from `auth`, and one error
//! type maps to `tonic::Status`.

use ductor_proto::pb;
use jiff::Timestamp;
use tonic::{Request, Response, Status};

use super::credential::{Caller, Presented};
use super::engine::manage::JobView;
use super::engine::{Automation, AutomationError};
use super::model::{ChatTarget, CronJob, RunKind, RunOverrides, RunRecord};
use super::scheduler::MissedPolicy;
use super::store::AutomationStoreError;
use super::webhook::{
    HmacAlgorithm, HmacSettings, HookAuth, HookMode, SignatureEncoding, SignedPayload, Webhook,
};

/// The service.
#[derive(Debug, Clone)]
pub struct AutomationService {
    automation: Automation,
}

impl AutomationService {
    /// A service over `automation`.
    pub fn new(automation: Automation) -> Self {
        Self { automation }
    }

    /// The tonic server.
    pub fn into_server(self) -> pb::automation_server::AutomationServer<Self> {
        pb::automation_server::AutomationServer::new(self)
    }

    fn caller(&self, auth: Option<pb::AutomationAuth>) -> Result<Caller, AutomationError> {
        let presented = Presented::from_pb(auth);
        match self.automation.authorize(&presented)? {
            Caller::Agent(chat) | Caller::Chat(chat) if chat.is_bus() => {
                Err(AutomationError::Forbidden(
                    "an answer to another agent has no chat: it can ask agents, not manage \
                     automation"
                        .into(),
                ))
            }
            caller => Ok(caller),
        }
    }
}

impl From<AutomationError> for Status {
    fn from(error: AutomationError) -> Self {
        let message = error.to_string();
        match error {
            AutomationError::Invalid(_) | AutomationError::BadRequest(_) => {
                Status::invalid_argument(message)
            }
            AutomationError::Unauthenticated(_) => Status::unauthenticated(message),
            AutomationError::Store(AutomationStoreError::Exists { .. }) => {
                Status::already_exists(message)
            }
            AutomationError::Store(AutomationStoreError::NotFound { .. })
            | AutomationError::NotFound(_) => Status::not_found(message),
            AutomationError::Forbidden(_) => Status::permission_denied(message),
            AutomationError::Limit(_) => Status::resource_exhausted(message),
            AutomationError::Stopped => Status::unavailable(message),
            AutomationError::Store(_)
            | AutomationError::Database(_)
            | AutomationError::Folder(_) => {
                tracing::error!(%error, "automation request failed");
                Status::internal(message)
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> AutomationError {
    AutomationError::BadRequest(message.into())
}

fn hour(value: Option<u32>, field: &str) -> Result<Option<u8>, AutomationError> {
    value
        .map(|h| {
            u8::try_from(h)
                .ok()
                .filter(|h| *h < 24)
                .ok_or_else(|| invalid(format!("{field}: expected an hour 0–23")))
        })
        .transpose()
}

fn target_from(target: Option<pb::AutomationTarget>) -> Option<ChatTarget> {
    let target = target?;
    if target.transport.is_empty() {
        return None;
    }
    let chat = target.chat.unwrap_or_default();
    Some(ChatTarget { transport: target.transport, chat_id: chat.chat_id, topic_id: chat.topic_id })
}

fn target_to(target: &Option<ChatTarget>) -> Option<pb::AutomationTarget> {
    target.as_ref().map(|t| pb::AutomationTarget {
        transport: t.transport.clone(),
        chat: Some(pb::ChatRef { chat_id: t.chat_id.clone(), topic_id: t.topic_id.clone() }),
    })
}

fn dependency(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn missed(text: &str) -> Result<MissedPolicy, AutomationError> {
    if text.is_empty() {
        return Ok(MissedPolicy::default());
    }
    MissedPolicy::parse(text)
        .ok_or_else(|| invalid(format!("missed_policy: expected run_once or skip, got {text:?}")))
}

impl TryFrom<pb::CronJobSpec> for CronJob {
    type Error = AutomationError;
    fn try_from(spec: pb::CronJobSpec) -> Result<Self, AutomationError> {
        Ok(CronJob {
            id: spec.id,
            title: spec.title,
            description: spec.description,
            schedule: spec.schedule,
            timezone: spec.timezone,
            instruction: spec.instruction,
            enabled: spec.enabled,
            overrides: RunOverrides {
                provider: spec.provider,
                model: spec.model,
                effort: spec.effort,
            },
            quiet_start: hour(spec.quiet_start, "quiet_start")?,
            quiet_end: hour(spec.quiet_end, "quiet_end")?,
            dependency: dependency(spec.dependency),
            target: target_from(spec.target),
            silent_on_success: spec.silent_on_success,
            missed: missed(&spec.missed_policy)?,
            owner: None,
            created_at: Timestamp::UNIX_EPOCH,
            last_fire_at: None,
        })
    }
}

fn job_spec(job: &CronJob) -> pb::CronJobSpec {
    pb::CronJobSpec {
        id: job.id.clone(),
        title: job.title.clone(),
        description: job.description.clone(),
        schedule: job.schedule.clone(),
        timezone: job.timezone.clone(),
        instruction: job.instruction.clone(),
        enabled: job.enabled,
        provider: job.overrides.provider.clone(),
        model: job.overrides.model.clone(),
        effort: job.overrides.effort.clone(),
        quiet_start: job.quiet_start.map(u32::from),
        quiet_end: job.quiet_end.map(u32::from),
        dependency: job.dependency.clone().unwrap_or_default(),
        target: target_to(&job.target),
        silent_on_success: job.silent_on_success,
        missed_policy: job.missed.as_str().to_owned(),
    }
}

fn run_to(run: &RunRecord) -> pb::AutomationRun {
    pb::AutomationRun {
        id: run.id,
        kind: run.kind.as_str().to_owned(),
        source_id: run.source_id.clone(),
        trigger: run.trigger.clone(),
        scheduled_ms: run.scheduled_at.as_millisecond(),
        started_ms: run.started_at.as_millisecond(),
        finished_ms: run.finished_at.map_or(0, |t| t.as_millisecond()),
        status: run.status.clone(),
        delivery: run.delivery.as_str().to_owned(),
        delivery_error: run.delivery_error.clone(),
        result_text: run.result_text.clone(),
    }
}

fn job_info(
    job: &CronJob,
    next_fire: Option<Timestamp>,
    last_run: Option<&RunRecord>,
) -> pb::CronJobInfo {
    pb::CronJobInfo {
        spec: Some(job_spec(job)),
        owner: job.owner.as_ref().map(ChatTarget::key).unwrap_or_default(),
        created_ms: job.created_at.as_millisecond(),
        next_fire_ms: next_fire.map_or(0, |t| t.as_millisecond()),
        last_run: last_run.map(run_to),
    }
}

fn view_info(view: &JobView) -> pb::CronJobInfo {
    job_info(&view.job, view.next_fire, view.last_run.as_ref())
}

fn apply_patch(job: &mut CronJob, patch: pb::CronJobPatch) -> Result<(), AutomationError> {
    let set = |slot: &mut String, value: Option<String>| {
        if let Some(value) = value {
            *slot = value;
        }
    };
    set(&mut job.title, patch.title);
    set(&mut job.description, patch.description);
    set(&mut job.schedule, patch.schedule);
    set(&mut job.timezone, patch.timezone);
    set(&mut job.instruction, patch.instruction);
    set(&mut job.overrides.provider, patch.provider);
    set(&mut job.overrides.model, patch.model);
    set(&mut job.overrides.effort, patch.effort);
    if patch.clear_quiet_hours {
        job.quiet_start = None;
        job.quiet_end = None;
    }
    if let Some(start) = hour(patch.quiet_start, "quiet_start")? {
        job.quiet_start = Some(start);
    }
    if let Some(end) = hour(patch.quiet_end, "quiet_end")? {
        job.quiet_end = Some(end);
    }
    if let Some(key) = patch.dependency {
        job.dependency = dependency(key);
    }
    if patch.clear_target {
        job.target = None;
    }
    if let Some(target) = target_from(patch.target) {
        job.target = Some(target);
    }
    if let Some(silent) = patch.silent_on_success {
        job.silent_on_success = silent;
    }
    if let Some(policy) = patch.missed_policy {
        job.missed = missed(&policy)?;
    }
    Ok(())
}

fn parse_or<T>(
    text: &str,
    default: T,
    parse: fn(&str) -> Option<T>,
    field: &str,
) -> Result<T, AutomationError> {
    if text.is_empty() {
        Ok(default)
    } else {
        parse(text).ok_or_else(|| invalid(format!("{field}: unknown value {text:?}")))
    }
}

impl TryFrom<pb::WebhookSpec> for Webhook {
    type Error = AutomationError;
    fn try_from(spec: pb::WebhookSpec) -> Result<Self, AutomationError> {
        let mode = parse_or(&spec.mode, HookMode::CronTask, HookMode::parse, "mode")?;
        let auth = match spec.auth_mode.as_str() {
            "" | "bearer" => HookAuth::Bearer { token: spec.token },
            "hmac" => {
                let signed = parse_or(
                    &spec.hmac_signed_payload,
                    SignedPayload::Body,
                    SignedPayload::parse,
                    "hmac_signed_payload",
                )?;
                let base = match signed {
                    SignedPayload::Body => HmacSettings::github(spec.hmac_secret),
                    SignedPayload::Stripe => HmacSettings::stripe(spec.hmac_secret),
                    SignedPayload::Slack => HmacSettings::slack(spec.hmac_secret),
                };
                HmacSettings {
                    header: if spec.hmac_header.is_empty() {
                        base.header.clone()
                    } else {
                        spec.hmac_header
                    },
                    algorithm: parse_or(
                        &spec.hmac_algorithm,
                        base.algorithm,
                        HmacAlgorithm::parse,
                        "hmac_algorithm",
                    )?,
                    encoding: parse_or(
                        &spec.hmac_encoding,
                        base.encoding,
                        SignatureEncoding::parse,
                        "hmac_encoding",
                    )?,
                    signature_prefix: spec
                        .hmac_sig_prefix
                        .unwrap_or_else(|| base.signature_prefix.clone()),
                    signature_regex: spec.hmac_sig_regex,
                    max_age_seconds: spec.hmac_max_age_seconds.unwrap_or(base.max_age_seconds),
                    payload_prefix_regex: spec.hmac_payload_prefix_regex,
                    ..base
                }
                .into()
            }
            other => {
                return Err(invalid(format!("auth_mode: expected bearer or hmac, got {other:?}")));
            }
        };
        Ok(Webhook {
            task_folder: spec.task_folder,
            title: spec.title,
            description: spec.description,
            enabled: spec.enabled,
            overrides: RunOverrides {
                provider: spec.provider,
                model: spec.model,
                effort: spec.effort,
            },
            quiet_start: hour(spec.quiet_start, "quiet_start")?,
            quiet_end: hour(spec.quiet_end, "quiet_end")?,
            dependency: dependency(spec.dependency),
            target: target_from(spec.target),
            ..Webhook::new(&spec.id, mode, &spec.prompt_template, auth)
        })
    }
}

impl From<HmacSettings> for HookAuth {
    fn from(settings: HmacSettings) -> Self {
        HookAuth::Hmac(settings)
    }
}

fn hook_info(hook: &Webhook) -> pb::WebhookInfo {
    let (token, hmac) = match &hook.auth {
        HookAuth::Bearer { token } => (token.clone(), None),
        HookAuth::Hmac(settings) => (String::new(), Some(settings)),
    };
    let spec = pb::WebhookSpec {
        id: hook.id.clone(),
        title: hook.title.clone(),
        description: hook.description.clone(),
        mode: hook.mode.as_str().to_owned(),
        prompt_template: hook.prompt_template.clone(),
        enabled: hook.enabled,
        task_folder: hook.task_folder.clone(),
        auth_mode: hook.auth.mode().to_owned(),
        token,
        hmac_secret: hmac.map(|h| h.secret.clone()).unwrap_or_default(),
        hmac_header: hmac.map(|h| h.header.clone()).unwrap_or_default(),
        hmac_algorithm: hmac.map(|h| h.algorithm.as_str().to_owned()).unwrap_or_default(),
        hmac_encoding: hmac.map(|h| h.encoding.as_str().to_owned()).unwrap_or_default(),
        hmac_sig_prefix: hmac.map(|h| h.signature_prefix.clone()),
        hmac_sig_regex: hmac.map(|h| h.signature_regex.clone()).unwrap_or_default(),
        hmac_signed_payload: hmac.map(|h| h.signed_payload.as_str().to_owned()).unwrap_or_default(),
        hmac_max_age_seconds: hmac.map(|h| h.max_age_seconds),
        hmac_payload_prefix_regex: hmac.map(|h| h.payload_prefix_regex.clone()).unwrap_or_default(),
        provider: hook.overrides.provider.clone(),
        model: hook.overrides.model.clone(),
        effort: hook.overrides.effort.clone(),
        quiet_start: hook.quiet_start.map(u32::from),
        quiet_end: hook.quiet_end.map(u32::from),
        dependency: hook.dependency.clone().unwrap_or_default(),
        target: target_to(&hook.target),
    };
    pb::WebhookInfo {
        spec: Some(spec),
        owner: hook.owner.as_ref().map(ChatTarget::key).unwrap_or_default(),
        created_ms: hook.created_at.as_millisecond(),
        trigger_count: hook.trigger_count,
        last_triggered_ms: hook.last_triggered_at.map_or(0, |t| t.as_millisecond()),
        last_error: hook.last_error.clone(),
        path: format!("/hooks/{}", hook.id),
    }
}

fn ack(message: impl Into<String>) -> Response<pb::AutomationAck> {
    Response::new(pb::AutomationAck { message: message.into() })
}

#[tonic::async_trait]
impl pb::automation_server::Automation for AutomationService {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.caller(request.into_inner().auth)?;
        Ok(Response::new(match caller {
            Caller::Admin => pb::WhoAmIResponse { admin: true, ..Default::default() },
            Caller::Agent(chat) | Caller::Chat(chat) => pb::WhoAmIResponse {
                admin: false,
                transport: chat.transport,
                chat: Some(pb::ChatRef { chat_id: chat.chat_id, topic_id: chat.topic_id }),
            },
        }))
    }

    async fn list_cron_jobs(
        &self,
        request: Request<pb::ListCronJobsRequest>,
    ) -> Result<Response<pb::ListCronJobsResponse>, Status> {
        let caller = self.caller(request.into_inner().auth)?;
        let views = self.automation.list_jobs(&caller).await?;
        Ok(Response::new(pb::ListCronJobsResponse { jobs: views.iter().map(view_info).collect() }))
    }

    async fn add_cron_job(
        &self,
        request: Request<pb::AddCronJobRequest>,
    ) -> Result<Response<pb::CronJobInfo>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let job = CronJob::try_from(request.spec.ok_or_else(|| invalid("spec is required"))?)?;
        let job = self.automation.add_job(&caller, job).await?;
        let next = super::schedule::Schedule::parse(
            &job.schedule,
            job.zone_or(&self.automation.default_zone()),
        )
        .ok()
        .and_then(|s| s.next_after(Timestamp::now()));
        Ok(Response::new(job_info(&job, next.filter(|_| job.enabled), None)))
    }

    async fn edit_cron_job(
        &self,
        request: Request<pb::EditCronJobRequest>,
    ) -> Result<Response<pb::CronJobInfo>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let patch = request.patch.unwrap_or_default();
        // Validate the patch's shape before touching the job.
        let mut probe =
            CronJob::try_from(pb::CronJobSpec { id: request.id.clone(), ..Default::default() })?;
        apply_patch(&mut probe, patch.clone())?;
        let job = self
            .automation
            .edit_job(&caller, &request.id, move |job| {
                let _ = apply_patch(job, patch);
            })
            .await?;
        Ok(Response::new(job_info(&job, None, None)))
    }

    async fn remove_cron_job(
        &self,
        request: Request<pb::CronJobRequest>,
    ) -> Result<Response<pb::AutomationAck>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        self.automation.remove_job(&caller, &request.id).await?;
        Ok(ack(format!("removed cron job {}", request.id)))
    }

    async fn set_cron_job_enabled(
        &self,
        request: Request<pb::SetCronJobEnabledRequest>,
    ) -> Result<Response<pb::CronJobInfo>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let job = self.automation.set_job_enabled(&caller, &request.id, request.enabled).await?;
        Ok(Response::new(job_info(&job, None, None)))
    }

    async fn run_cron_job(
        &self,
        request: Request<pb::CronJobRequest>,
    ) -> Result<Response<pb::AutomationAck>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        self.automation.run_job_now(&caller, &request.id).await?;
        Ok(ack(format!("cron job {} started; its result goes to its chat", request.id)))
    }

    async fn automation_history(
        &self,
        request: Request<pb::AutomationHistoryRequest>,
    ) -> Result<Response<pb::AutomationHistoryResponse>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let source = match (request.kind.as_str(), request.id.as_str()) {
            (_, "") => None,
            ("" | "cron", id) => Some((RunKind::Cron, id)),
            ("webhook", id) => Some((RunKind::Webhook, id)),
            (other, _) => {
                return Err(
                    invalid(format!("kind: expected cron or webhook, got {other:?}")).into()
                );
            }
        };
        let limit = if request.limit == 0 { 20 } else { request.limit.min(1000) };
        let runs = self.automation.history(&caller, source, limit).await?;
        let runs = runs
            .iter()
            .filter(|r| request.kind.is_empty() || r.kind.as_str() == request.kind)
            .map(run_to)
            .collect();
        Ok(Response::new(pb::AutomationHistoryResponse { runs }))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let caller = self.caller(request.into_inner().auth)?;
        let hooks = self.automation.list_hooks(&caller).await?;
        Ok(Response::new(pb::ListWebhooksResponse { hooks: hooks.iter().map(hook_info).collect() }))
    }

    async fn add_webhook(
        &self,
        request: Request<pb::AddWebhookRequest>,
    ) -> Result<Response<pb::WebhookInfo>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let hook = Webhook::try_from(request.spec.ok_or_else(|| invalid("spec is required"))?)?;
        let hook = self.automation.add_hook(&caller, hook).await?;
        Ok(Response::new(hook_info(&hook)))
    }

    async fn remove_webhook(
        &self,
        request: Request<pb::WebhookRequest>,
    ) -> Result<Response<pb::AutomationAck>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        self.automation.remove_hook(&caller, &request.id).await?;
        Ok(ack(format!("removed webhook {}", request.id)))
    }

    async fn rotate_webhook_token(
        &self,
        request: Request<pb::WebhookRequest>,
    ) -> Result<Response<pb::WebhookInfo>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let hook = self.automation.rotate_hook_token(&caller, &request.id).await?;
        Ok(Response::new(hook_info(&hook)))
    }

    async fn set_webhook_enabled(
        &self,
        request: Request<pb::SetWebhookEnabledRequest>,
    ) -> Result<Response<pb::WebhookInfo>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let hook = self.automation.set_hook_enabled(&caller, &request.id, request.enabled).await?;
        Ok(Response::new(hook_info(&hook)))
    }

    async fn test_webhook(
        &self,
        request: Request<pb::TestWebhookRequest>,
    ) -> Result<Response<pb::AutomationAck>, Status> {
        let request = request.into_inner();
        let caller = self.caller(request.auth)?;
        let text = if request.payload_json.trim().is_empty() {
            "{}"
        } else {
            request.payload_json.as_str()
        };
        let payload = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(invalid("payload_json must be a JSON object").into()),
            Err(error) => return Err(invalid(format!("payload_json: {error}")).into()),
        };
        self.automation.test_hook(&caller, &request.id, payload).await?;
        Ok(ack(format!("webhook {} triggered with a test payload", request.id)))
    }
}
