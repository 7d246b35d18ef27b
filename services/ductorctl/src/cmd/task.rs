//! `ductorctl task …`: delegated background tasks through core's `Tasks`
//! service, mostly called by the agent itself (the rule files tell it how).
//!
//! Credentials as for `ductorctl cron`: inside an agent run, the run's chat
//! credential (tasks are created for that chat and only its tasks are seen);
//! outside, the operator's admin token. A task's own run also has
//! `DUCTOR_TASK_ID`, so `ductorctl task ask "…"` needs no id there.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::tasks_client::TasksClient;

use super::cron::{auth, status_error, when};

/// `ductorctl task`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start a task: it runs in the background in workspace/tasks/<id>/, and
    /// its result is posted to the chat and handed to the agent.
    Create(CreateArgs),
    /// List the chat's tasks (every chat's with the admin token).
    List,
    /// Show one task, with its question or result.
    Show(IdArg),
    /// Cancel a running or waiting task.
    Cancel(IdArg),
    /// Delete a finished task and its folder.
    Delete(IdArg),
    /// From a task's run: ask the agent that started it, then end the turn;
    /// the task is resumed with the answer.
    Ask(AskArgs),
    /// Answer a task's question; it continues with the answer.
    Answer(AnswerArgs),
    /// Continue a finished, failed, cancelled or interrupted task with a new
    /// instruction (same session and folder).
    Resume(AnswerArgs),
}

/// `task create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// What the task must do ("-" reads it from stdin).
    pub prompt: String,
    /// A short name (lowercase letters, digits, '-', '_'); "task" when omitted.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Provider for the task (default: [agent].provider).
    #[arg(long, default_value = "")]
    pub provider: String,
    /// Model for the task.
    #[arg(long, default_value = "")]
    pub model: String,
    /// Reasoning effort for the task.
    #[arg(long, default_value = "")]
    pub effort: String,
    /// "background" (default; counts against the chat's running limit),
    /// "interactive" (starts even at the limit) or "batch".
    #[arg(long, default_value = "background",
          value_parser = ["interactive", "background", "batch"])]
    pub priority: String,
}

/// A task id.
#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// The task id (as `task list` shows it).
    pub id: String,
}

/// `task ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question ("-" reads it from stdin).
    pub question: String,
    /// The asking task (default: $DUCTOR_TASK_ID, set in a task's run).
    #[arg(long)]
    pub task: Option<String>,
}

/// `task answer` and `task resume`.
#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    /// The task.
    pub id: String,
    /// The answer or the new instruction ("-" reads it from stdin).
    pub answer: String,
}

/// `text`, or stdin when it is "-".
fn text_arg(text: String) -> anyhow::Result<String> {
    if text != "-" {
        return Ok(text);
    }
    let mut read = String::new();
    std::io::stdin().read_to_string(&mut read).context("read stdin")?;
    Ok(read)
}

fn print_task(task: &pb::TaskInfo) {
    let chat = task.chat.as_ref().map_or("", |c| c.chat_id.as_str());
    println!(
        "{}  {:<11} {:<20} {} {}  started {}{}",
        task.id,
        task.status,
        task.name,
        task.transport,
        chat,
        when(task.created_ms),
        if task.finished_ms == 0 {
            String::new()
        } else {
            format!("  ended {}", when(task.finished_ms))
        }
    );
    if !task.question.is_empty() {
        println!("    asks: {}", task.question);
    }
}

fn print_details(task: &pb::TaskInfo) {
    print_task(task);
    println!("    folder: {}", task.folder);
    if !task.result.is_empty() {
        println!("    {}", task.result.replace('\n', "\n    "));
    }
}

/// Runs `ductorctl task …`.
pub async fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    let auth = Some(auth(home)?);
    let channel = ductor_proto::transport::connect(home.socket(ServiceName::Core));
    let mut client = TasksClient::new(channel);
    match command {
        Command::Create(args) => {
            let spec = pb::TaskSpec {
                name: args.name,
                prompt: text_arg(args.prompt)?,
                provider: args.provider,
                model: args.model,
                effort: args.effort,
                priority: args.priority,
            };
            let request = pb::CreateTaskRequest { auth, spec: Some(spec) };
            let task = client.create_task(request).await.map_err(status_error)?.into_inner();
            println!(
                "task {} ({}) started; its result comes to the chat and to you when it ends",
                task.id, task.name
            );
        }
        Command::List => {
            let tasks = client
                .list_tasks(pb::ListTasksRequest { auth })
                .await
                .map_err(status_error)?
                .into_inner()
                .tasks;
            if tasks.is_empty() {
                println!("No tasks.");
            }
            tasks.iter().for_each(print_task);
        }
        Command::Show(IdArg { id }) => {
            let tasks = client
                .list_tasks(pb::ListTasksRequest { auth })
                .await
                .map_err(status_error)?
                .into_inner()
                .tasks;
            let task =
                tasks.iter().find(|t| t.id == id).with_context(|| format!("no task {id}"))?;
            print_details(task);
        }
        Command::Cancel(IdArg { id }) => {
            let task = client
                .cancel_task(pb::TaskRequest { auth, id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_task(&task);
        }
        Command::Delete(IdArg { id }) => {
            let ack =
                client.delete_task(pb::TaskRequest { auth, id }).await.map_err(status_error)?;
            println!("{}", ack.into_inner().message);
        }
        Command::Ask(args) => {
            let task_id = match args.task {
                Some(id) => id,
                None => std::env::var("DUCTOR_TASK_ID")
                    .ok()
                    .filter(|id| !id.is_empty())
                    .context("not in a task's run: pass --task <id>")?,
            };
            let question = text_arg(args.question)?;
            let request = pb::AskParentRequest { auth, task_id, question };
            let ack = client.ask_parent(request).await.map_err(status_error)?;
            println!("{}", ack.into_inner().message);
        }
        Command::Answer(args) => {
            let request =
                pb::AnswerTaskRequest { auth, id: args.id, answer: text_arg(args.answer)? };
            let task = client.answer_task(request).await.map_err(status_error)?.into_inner();
            print_task(&task);
        }
        Command::Resume(args) => {
            let request =
                pb::AnswerTaskRequest { auth, id: args.id, answer: text_arg(args.answer)? };
            let task = client.resume_task(request).await.map_err(status_error)?.into_inner();
            print_task(&task);
        }
    }
    Ok(ExitCode::SUCCESS)
}
