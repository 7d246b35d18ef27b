//! The parts of an import that live in core's state: cron jobs and webhooks
//! (through the `Automation` service, as the operator adds them), chat
//! sessions and named sessions (through the operator-only `Import`
//! service). A resume id goes in only after the runner found its transcript
//! and copied it into the chat's CLI home (`Runner.ImportTranscript`): an id
//! whose transcript is missing would not resume, so it is left out.
//!
//! Every step asks what is there first: what is already imported is
//! `unchanged`, something different is a conflict and stays as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::automation_client::AutomationClient;
use ductor_proto::pb::import_client::ImportClient;
use ductor_proto::pb::runner_client::RunnerClient;

use super::mapping::{self, ChatKey, SessionBucket};
use super::report::{Section, Status};
use super::source::PythonHome;

/// Clients of a running ductor, as the operator.
pub struct Services {
    automation: AutomationClient<ductor_proto::Channel>,
    import: ImportClient<ductor_proto::Channel>,
    runner: RunnerClient<ductor_proto::Channel>,
    auth: pb::AutomationAuth,
}

async fn serving(home: &DuctorHome, service: ServiceName) -> bool {
    let channel = ductor_proto::transport::connect(home.socket(service));
    ductor_proto::health::check(channel, Duration::from_secs(2))
        .await
        .is_some_and(|a| a.status == pb::ServingStatus::Serving as i32)
}

/// The running core and runner, or which of them does not answer.
pub async fn connect(home: &DuctorHome) -> Result<Services, String> {
    for service in [ServiceName::Core, ServiceName::Runner] {
        if !serving(home, service).await {
            return Err(format!("{} is not running", service.as_str()));
        }
    }
    let path = home.secrets_dir().join("admin.token");
    let admin_token = std::fs::read_to_string(&path)
        .map_err(|e| format!("read the admin token {}: {e}", path.display()))?
        .trim()
        .to_owned();
    let core = ductor_proto::transport::connect(home.socket(ServiceName::Core));
    let runner = ductor_proto::transport::connect(home.socket(ServiceName::Runner));
    Ok(Services {
        automation: AutomationClient::new(core.clone()),
        import: ImportClient::new(core),
        runner: RunnerClient::new(runner),
        auth: pb::AutomationAuth { admin_token, ..Default::default() },
    })
}

fn joined(notes: &[String]) -> String {
    notes.join("; ")
}

/// How a thing that will be imported is shown.
fn would(services: Option<&Services>, notes: &[String]) -> String {
    let mut notes = notes.to_vec();
    if services.is_none() {
        notes.insert(0, "not checked against a running ductor".into());
    }
    joined(&notes)
}

/// Cron jobs (`cron_jobs.json`), and the task folders of the jobs added.
pub async fn cron(
    py: &PythonHome,
    mut services: Option<&mut Services>,
    apply: bool,
) -> (Section, Vec<String>) {
    let mut section = Section::new("Cron jobs");
    let mut added = Vec::new();
    let mut existing = BTreeMap::new();
    if let Some(s) = services.as_deref_mut() {
        let request = pb::ListCronJobsRequest { auth: Some(s.auth.clone()) };
        if let Ok(list) = s.automation.list_cron_jobs(request).await {
            existing = list
                .into_inner()
                .jobs
                .into_iter()
                .filter_map(|j| j.spec)
                .map(|s| (s.id.clone(), s))
                .collect();
        }
    }
    for job in &py.cron {
        let subject = format!("{} ({})", job.id, job.schedule);
        let (spec, notes) = match mapping::cron_job(job) {
            Ok(mapped) => mapped,
            Err(why) => {
                section.push(Status::NotImported, subject, why);
                continue;
            }
        };
        match (existing.get(&spec.id), services.as_deref_mut()) {
            (Some(have), _) if mapping::same_job(have, &spec) => {
                section.push(Status::Unchanged, subject, "")
            }
            (Some(_), _) => {
                section.push(Status::Conflict, subject, "a job with this id exists and differs")
            }
            (None, Some(s)) if apply => {
                let id = spec.id.clone();
                let request =
                    pb::AddCronJobRequest { auth: Some(s.auth.clone()), spec: Some(spec) };
                match s.automation.add_cron_job(request).await {
                    Ok(_) => {
                        added.push(id);
                        section.push(Status::Import, subject, joined(&notes))
                    }
                    Err(status) => section.push(Status::NotImported, subject, status.message()),
                }
            }
            (None, s) => section.push(Status::Import, subject, would(s.as_deref(), &notes)),
        }
    }
    (section, added)
}

/// Python's global bearer token, unless it is the example's placeholder.
fn global_token(py: &PythonHome) -> String {
    let token = py.config.get("webhooks").and_then(|w| w.get("token")).and_then(|t| t.as_str());
    token.filter(|t| !t.starts_with("YOUR_")).unwrap_or_default().to_owned()
}

/// Webhooks (`webhooks.json`), keeping ids and secrets, and the task folders
/// of the `cron_task` hooks added.
pub async fn webhooks(
    py: &PythonHome,
    mut services: Option<&mut Services>,
    apply: bool,
) -> (Section, Vec<String>) {
    let mut section = Section::new("Webhooks");
    let mut added = Vec::new();
    let mut existing = BTreeMap::new();
    if let Some(s) = services.as_deref_mut() {
        let request = pb::ListWebhooksRequest { auth: Some(s.auth.clone()) };
        if let Ok(list) = s.automation.list_webhooks(request).await {
            existing = list
                .into_inner()
                .hooks
                .into_iter()
                .filter_map(|h| h.spec)
                .map(|s| (s.id.clone(), s))
                .collect();
        }
    }
    let global = global_token(py);
    let users: Vec<i64> = py
        .config
        .get("allowed_user_ids")
        .and_then(|ids| ids.as_array())
        .map(|ids| ids.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    for hook in &py.hooks {
        let subject = format!(
            "{} ({}, {})",
            hook.id,
            hook.mode,
            if hook.auth_mode == "hmac" { "hmac" } else { "bearer" }
        );
        let (spec, notes) = match mapping::webhook(hook, &global, &users) {
            Ok(mapped) => mapped,
            Err(why) => {
                section.push(Status::NotImported, subject, why);
                continue;
            }
        };
        match (existing.get(&spec.id), services.as_deref_mut()) {
            (Some(have), _) if mapping::same_hook(have, &spec) => {
                section.push(Status::Unchanged, subject, "")
            }
            (Some(_), _) => {
                section.push(Status::Conflict, subject, "a webhook with this id exists and differs")
            }
            (None, Some(s)) if apply => {
                let folder = match spec.task_folder.as_str() {
                    "" => spec.id.clone(),
                    folder => folder.to_owned(),
                };
                let cron_task = spec.mode == "cron_task";
                let request =
                    pb::AddWebhookRequest { auth: Some(s.auth.clone()), spec: Some(spec) };
                match s.automation.add_webhook(request).await {
                    Ok(_) => {
                        if cron_task {
                            added.push(folder);
                        }
                        section.push(Status::Import, subject, joined(&notes))
                    }
                    Err(status) => section.push(Status::NotImported, subject, status.message()),
                }
            }
            (None, s) => section.push(Status::Import, subject, would(s.as_deref(), &notes)),
        }
    }
    (section, added)
}

/// Where a resumed session runs: the chat, its provider session, and the
/// Python and ductor working directories.
struct Resume<'a> {
    chat: &'a ChatKey,
    provider: &'a str,
    session_id: &'a str,
    source_cwd: &'a Path,
    working_dir: PathBuf,
}

/// Has the runner make the transcript resumable; `Err(why)` when it is not found.
async fn transcript(s: &mut Services, resume: &Resume<'_>, apply: bool) -> Result<(), String> {
    let request = pb::ImportTranscriptRequest {
        provider: resume.provider.to_owned(),
        labels: [("session_key".to_owned(), resume.chat.storage_key())].into(),
        session_id: resume.session_id.to_owned(),
        source_cwd: resume.source_cwd.display().to_string(),
        working_dir: resume.working_dir.display().to_string(),
        dry_run: !apply,
    };
    match s.runner.import_transcript(request).await {
        Ok(answer) if answer.get_ref().found => Ok(()),
        Ok(answer) => Err(format!("not resumable: {}", answer.into_inner().reason)),
        Err(status) => Err(format!("the runner could not look: {}", status.message())),
    }
}

fn outcome(answer: Result<tonic::Response<pb::ImportResponse>, tonic::Status>) -> (Status, String) {
    match answer {
        Ok(answer) => {
            let answer = answer.into_inner();
            match answer.outcome.as_str() {
                "imported" => (Status::Import, String::new()),
                "unchanged" => (Status::Unchanged, String::new()),
                _ => (Status::Conflict, answer.message),
            }
        }
        Err(status) => (Status::NotImported, status.message().to_owned()),
    }
}

fn session_request(
    s: &Services,
    chats: &mapping::ChatSessions,
    buckets: &[&SessionBucket],
    dry_run: bool,
) -> pb::ImportSessionRequest {
    pb::ImportSessionRequest {
        auth: Some(s.auth.clone()),
        transport: chats.chat.transport.clone(),
        chat: Some(chats.chat.chat_ref()),
        provider: chats.provider.clone(),
        model: chats.model.clone(),
        effort: chats.effort.clone(),
        buckets: buckets
            .iter()
            .map(|b| pb::ImportedBucket {
                provider: b.provider.clone(),
                session_id: b.session_id.clone(),
                message_count: b.message_count,
                cost_usd: b.cost_usd,
                last_active_ms: 0,
            })
            .collect(),
        dry_run,
    }
}

/// Chat sessions (`sessions.json`): resume ids per chat, topic and provider.
pub async fn sessions(
    py: &PythonHome,
    home: &DuctorHome,
    mut services: Option<&mut Services>,
    apply: bool,
) -> Section {
    let mut section = Section::new("Sessions");
    for (key, session) in &py.sessions {
        let chats = match mapping::chat_sessions(key, session) {
            Ok(chats) => chats,
            Err(why) => {
                section.push(Status::NotImported, key.clone(), why);
                continue;
            }
        };
        for (provider, why) in &chats.skipped {
            section.push(Status::NotImported, format!("{key} {provider}"), why.clone());
        }
        let Some(s) = services.as_deref_mut() else {
            for b in &chats.buckets {
                let subject =
                    format!("{key} → {} {} {}", chats.chat.storage_key(), b.provider, b.session_id);
                section.push(
                    Status::Import,
                    subject,
                    "not checked against a running ductor (transcript not looked for)",
                );
            }
            continue;
        };
        for bucket in &chats.buckets {
            let subject = format!(
                "{key} → {} {} {}",
                chats.chat.storage_key(),
                bucket.provider,
                bucket.session_id
            );
            let resume = Resume {
                chat: &chats.chat,
                provider: &bucket.provider,
                session_id: &bucket.session_id,
                source_cwd: &py.workspace,
                working_dir: home.workspace(),
            };
            // Found at all? Then: would core take it? Only then copy and import.
            if let Err(why) = transcript(s, &resume, false).await {
                section.push(Status::NotImported, subject, why);
                continue;
            }
            let check = s.import.import_session(session_request(s, &chats, &[bucket], true)).await;
            let (status, detail) = outcome(check);
            if status != Status::Import {
                section.push(status, subject, detail);
                continue;
            }
            if let Err(why) = transcript(s, &resume, apply).await {
                section.push(Status::NotImported, subject, why);
                continue;
            }
            let (status, detail) = if apply {
                outcome(s.import.import_session(session_request(s, &chats, &[bucket], false)).await)
            } else {
                (Status::Import, "transcript found".to_owned())
            };
            section.push(status, subject, detail);
        }
    }
    section
}

/// Named sessions (`named_sessions.json`).
pub async fn named(
    py: &PythonHome,
    home: &DuctorHome,
    mut services: Option<&mut Services>,
    apply: bool,
) -> Section {
    let mut section = Section::new("Named sessions");
    for named in &py.named {
        let subject = format!("{} ({} {})", named.name, named.provider, named.session_id);
        let chat = match mapping::named_chat(named) {
            Ok(chat) => chat,
            Err(why) => {
                section.push(Status::NotImported, subject, why);
                continue;
            }
        };
        let subject = format!("{} {subject}", chat.storage_key());
        let Some(s) = services.as_deref_mut() else {
            section.push(Status::Import, subject, "not checked against a running ductor");
            continue;
        };
        let request = |dry_run: bool| pb::ImportNamedSessionRequest {
            auth: Some(s.auth.clone()),
            transport: chat.transport.clone(),
            chat: Some(chat.chat_ref()),
            name: named.name.clone(),
            provider: named.provider.clone(),
            model: named.model.clone(),
            effort: named.reasoning_effort.clone(),
            session_id: named.session_id.clone(),
            turns: named.message_count,
            created_ms: (named.created_at * 1000.0) as i64,
            dry_run,
        };
        let (dry, live) = (request(true), request(false));
        let resume = Resume {
            chat: &chat,
            provider: &named.provider,
            session_id: &named.session_id,
            source_cwd: &py.workspace,
            working_dir: home.workspace(),
        };
        if let Err(why) = transcript(s, &resume, false).await {
            section.push(Status::NotImported, subject, why);
            continue;
        }
        let (status, detail) = outcome(s.import.import_named_session(dry).await);
        if status != Status::Import {
            section.push(status, subject, detail);
            continue;
        }
        if let Err(why) = transcript(s, &resume, apply).await {
            section.push(Status::NotImported, subject, why);
            continue;
        }
        let (status, detail) = if apply {
            outcome(s.import.import_named_session(live).await)
        } else {
            (Status::Import, "transcript found".to_owned())
        };
        section.push(status, subject, detail);
    }
    section
}
