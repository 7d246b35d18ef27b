//! `ductorctl cron …`: manage cron jobs through core's `Automation` service.
//!
//! Outside a sandbox the operator's admin token (`$DUCTOR_HOME/secrets/admin.token`)
//! authorises the call. Inside an agent run the credential core issued for
//! that run's chat (`DUCTOR_AGENT_TOKEN` with `DUCTOR_TRANSPORT`,
//! `DUCTOR_CHAT_ID`, `DUCTOR_TOPIC_ID`) wins: jobs are then created for that
//! chat, and other chats' jobs are refused.

use std::process::ExitCode;

use anyhow::Context as _;
use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::automation_client::AutomationClient;

/// `ductorctl cron`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List jobs with their schedule, next run and last result.
    List,
    /// Add a job. It runs as a fresh one-shot run in workspace/cron_tasks/<NAME>/.
    Add(AddArgs),
    /// Change a job; options not given stay as they are.
    Edit(EditArgs),
    /// Remove a job and its history (its task folder is kept).
    Remove(NameArg),
    /// Pause a job (it keeps its place; `resume` continues it).
    Pause(NameArg),
    /// Resume a paused job.
    Resume(NameArg),
    /// Run a job now; its result goes to its chat.
    Run(NameArg),
    /// Show the run history (start, end, status, delivery) of a job, or of all.
    History(HistoryArgs),
}

/// A job name.
#[derive(Debug, clap::Args)]
pub struct NameArg {
    /// The job name.
    pub name: String,
}

/// `cron history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The job (all jobs and webhooks when omitted).
    pub name: Option<String>,
    /// Show at most this many runs.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

/// Where results go.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Deliver to this transport's chat (default: the agent's own chat, or all chats).
    #[arg(long, requires = "chat")]
    pub transport: Option<String>,
    /// The chat id for --transport.
    #[arg(long, requires = "transport")]
    pub chat: Option<String>,
    /// The topic id within --chat.
    #[arg(long, requires = "chat")]
    pub topic: Option<String>,
}

impl TargetArgs {
    pub(crate) fn to_pb(&self) -> Option<pb::AutomationTarget> {
        Some(pb::AutomationTarget {
            transport: self.transport.clone()?,
            chat: Some(pb::ChatRef {
                chat_id: self.chat.clone()?,
                topic_id: self.topic.clone().unwrap_or_default(),
            }),
        })
    }
}

/// `cron add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The job name (also its folder): lowercase letters, digits, '-', '_'.
    pub name: String,
    /// 5-field cron expression, e.g. "0 9 * * 1-5".
    #[arg(long)]
    pub schedule: String,
    /// Short title shown in chat.
    #[arg(long, default_value = "")]
    pub title: String,
    /// What the job should do (written to TASK_DESCRIPTION.md).
    #[arg(long, default_value = "")]
    pub description: String,
    /// The instruction given to the agent (default: carry out TASK_DESCRIPTION.md).
    #[arg(long, default_value = "")]
    pub instruction: String,
    /// IANA time zone of the schedule (default: [agent].timezone).
    #[arg(long, default_value = "")]
    pub timezone: String,
    /// Provider for this job's runs.
    #[arg(long, default_value = "")]
    pub provider: String,
    /// Model for this job's runs.
    #[arg(long, default_value = "")]
    pub model: String,
    /// Reasoning effort for this job's runs.
    #[arg(long, default_value = "")]
    pub effort: String,
    /// First quiet hour (0–23); fires inside quiet hours are skipped.
    #[arg(long, requires = "quiet_end")]
    pub quiet_start: Option<u32>,
    /// First hour after the quiet hours.
    #[arg(long, requires = "quiet_start")]
    pub quiet_end: Option<u32>,
    /// Jobs with the same key run one after another.
    #[arg(long, default_value = "")]
    pub dependency: String,
    /// Send nothing when the run succeeds (failures are always sent).
    #[arg(long)]
    pub silent_on_success: bool,
    /// Fires missed while ductor was down: run once on start, or skip.
    #[arg(long, default_value = "run_once", value_parser = ["run_once", "skip"])]
    pub missed: String,
    /// Create the job paused.
    #[arg(long)]
    pub paused: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `cron edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The job name.
    pub name: String,
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub instruction: Option<String>,
    #[arg(long)]
    pub timezone: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub effort: Option<String>,
    #[arg(long)]
    pub quiet_start: Option<u32>,
    #[arg(long)]
    pub quiet_end: Option<u32>,
    /// Remove the quiet hours.
    #[arg(long)]
    pub clear_quiet_hours: bool,
    /// New dependency key ("" removes it).
    #[arg(long)]
    pub dependency: Option<String>,
    #[arg(long)]
    pub silent_on_success: Option<bool>,
    #[arg(long, value_parser = ["run_once", "skip"])]
    pub missed: Option<String>,
    /// Deliver to all chats instead of one.
    #[arg(long)]
    pub clear_target: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// A connected, authenticated client.
pub(crate) struct Session {
    pub(crate) client: AutomationClient<ductor_proto::Channel>,
    pub(crate) auth: pb::AutomationAuth,
}

/// Credentials from the agent environment, else the admin token file.
pub(crate) fn auth(home: &DuctorHome) -> anyhow::Result<pb::AutomationAuth> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    // Set but empty: a run core gave no credential (a cron or webhook run);
    // it must not fall back to the operator's token.
    if std::env::var_os("DUCTOR_AGENT_TOKEN").is_some_and(|v| v.is_empty()) {
        anyhow::bail!(
            "this run has no agent credential: cron and webhook runs cannot manage automation \
             or tasks unless the operator sets [automation].automation_runs_get_credential"
        );
    }
    if let Some(agent_token) = env("DUCTOR_AGENT_TOKEN") {
        let (transport, chat_id) = env("DUCTOR_TRANSPORT")
            .zip(env("DUCTOR_CHAT_ID"))
            .context("DUCTOR_AGENT_TOKEN is set but DUCTOR_TRANSPORT / DUCTOR_CHAT_ID are not")?;
        return Ok(pb::AutomationAuth {
            agent_token,
            transport,
            chat: Some(pb::ChatRef {
                chat_id,
                topic_id: env("DUCTOR_TOPIC_ID").unwrap_or_default(),
            }),
            ..Default::default()
        });
    }
    let path = home.secrets_dir().join("admin.token");
    let admin_token = std::fs::read_to_string(&path)
        .with_context(|| {
            format!("read the admin token {} (is core started with this home?)", path.display())
        })?
        .trim()
        .to_owned();
    Ok(pb::AutomationAuth { admin_token, ..Default::default() })
}

pub(crate) fn connect(home: &DuctorHome) -> anyhow::Result<Session> {
    let auth = auth(home)?;
    let channel = ductor_proto::transport::connect(home.socket(ServiceName::Core));
    Ok(Session { client: AutomationClient::new(channel), auth })
}

/// A gRPC error as a one-line message.
pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unavailable => " (is ductor running? try `ductorctl status`)",
        _ => "",
    };
    anyhow::anyhow!("{}{hint}", status.message())
}

pub(crate) fn when(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn print_run(run: &pb::AutomationRun) {
    println!(
        "{:>6}  {:<7} {:<20} {}  {:<10} {:<22} delivery {}{}",
        run.id,
        run.kind,
        run.source_id,
        when(run.started_ms),
        run.trigger,
        run.status,
        run.delivery,
        if run.delivery_error.is_empty() {
            String::new()
        } else {
            format!(" ({})", run.delivery_error)
        }
    );
    if !run.result_text.is_empty() {
        let preview: String = run.result_text.chars().take(300).collect();
        println!("        {}", preview.replace('\n', "\n        "));
    }
}

fn print_job(info: &pb::CronJobInfo) {
    let Some(spec) = &info.spec else { return };
    let target = match &spec.target {
        Some(t) => {
            format!("{}:{}", t.transport, t.chat.as_ref().map(|c| c.chat_id.as_str()).unwrap_or(""))
        }
        None => "all chats".into(),
    };
    println!(
        "{} {}  \"{}\" {}  next {}  → {}{}",
        if spec.enabled { "▶" } else { "⏸" },
        spec.id,
        spec.schedule,
        if spec.timezone.is_empty() { "(default zone)" } else { &spec.timezone },
        when(info.next_fire_ms),
        target,
        if spec.silent_on_success { " (silent on success)" } else { "" }
    );
    match &info.last_run {
        Some(run) => println!(
            "    last: {} {}  delivery {}{}",
            when(run.started_ms),
            run.status,
            run.delivery,
            if run.delivery_error.is_empty() {
                String::new()
            } else {
                format!(" ({})", run.delivery_error)
            }
        ),
        None => println!("    never ran"),
    }
}

/// Runs `ductorctl cron …`.
pub async fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    let Session { mut client, auth } = connect(home)?;
    let auth = Some(auth);
    match command {
        Command::List => {
            let jobs = client
                .list_cron_jobs(pb::ListCronJobsRequest { auth })
                .await
                .map_err(status_error)?
                .into_inner()
                .jobs;
            if jobs.is_empty() {
                println!("No cron jobs.");
            }
            jobs.iter().for_each(print_job);
        }
        Command::Add(args) => {
            let spec = pb::CronJobSpec {
                id: args.name,
                title: args.title,
                description: args.description,
                schedule: args.schedule,
                timezone: args.timezone,
                instruction: args.instruction,
                enabled: !args.paused,
                provider: args.provider,
                model: args.model,
                effort: args.effort,
                quiet_start: args.quiet_start,
                quiet_end: args.quiet_end,
                dependency: args.dependency,
                target: args.target.to_pb(),
                silent_on_success: args.silent_on_success,
                missed_policy: args.missed,
            };
            let info = client
                .add_cron_job(pb::AddCronJobRequest { auth, spec: Some(spec) })
                .await
                .map_err(status_error)?
                .into_inner();
            print!("added: ");
            print_job(&info);
        }
        Command::Edit(args) => {
            let patch = pb::CronJobPatch {
                title: args.title,
                description: args.description,
                schedule: args.schedule,
                timezone: args.timezone,
                instruction: args.instruction,
                provider: args.provider,
                model: args.model,
                effort: args.effort,
                quiet_start: args.quiet_start,
                quiet_end: args.quiet_end,
                clear_quiet_hours: args.clear_quiet_hours,
                dependency: args.dependency,
                target: args.target.to_pb(),
                clear_target: args.clear_target,
                silent_on_success: args.silent_on_success,
                missed_policy: args.missed,
            };
            let request = pb::EditCronJobRequest { auth, id: args.name, patch: Some(patch) };
            let info = client.edit_cron_job(request).await.map_err(status_error)?.into_inner();
            print!("updated: ");
            print_job(&info);
        }
        Command::Remove(NameArg { name }) => {
            let ack = client
                .remove_cron_job(pb::CronJobRequest { auth, id: name })
                .await
                .map_err(status_error)?;
            println!("{}", ack.into_inner().message);
        }
        Command::Pause(NameArg { name }) => set_enabled(&mut client, auth, name, false).await?,
        Command::Resume(NameArg { name }) => set_enabled(&mut client, auth, name, true).await?,
        Command::Run(NameArg { name }) => {
            let ack = client
                .run_cron_job(pb::CronJobRequest { auth, id: name })
                .await
                .map_err(status_error)?;
            println!("{}", ack.into_inner().message);
        }
        Command::History(args) => {
            let request = pb::AutomationHistoryRequest {
                auth,
                kind: if args.name.is_some() { "cron".into() } else { String::new() },
                id: args.name.unwrap_or_default(),
                limit: args.limit,
            };
            let runs =
                client.automation_history(request).await.map_err(status_error)?.into_inner().runs;
            if runs.is_empty() {
                println!("No runs yet.");
            }
            runs.iter().for_each(print_run);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(
    client: &mut AutomationClient<ductor_proto::Channel>,
    auth: Option<pb::AutomationAuth>,
    id: String,
    enabled: bool,
) -> anyhow::Result<()> {
    let info = client
        .set_cron_job_enabled(pb::SetCronJobEnabledRequest { auth, id, enabled })
        .await
        .map_err(status_error)?
        .into_inner();
    print_job(&info);
    Ok(())
}
