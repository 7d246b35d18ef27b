//! A tiny manual client of a running `ductor-runner`: start a run and print
//! its events, or print `Probe`. For trying real CLIs by hand:
//!
//! ```text
//! cargo run -p ductor-runner --example runctl -- --socket $DUCTOR_HOME/run/runner.sock \
//!     --provider claude --cwd /tmp/ws "say hello"
//! cargo run -p ductor-runner --example runctl -- --socket … --probe
//! ```

use clap::Parser;
use ductor_proto::pb;
use ductor_proto::pb::runner_client::RunnerClient;

#[derive(Parser, Debug)]
struct Args {
    /// The runner's socket.
    #[arg(long)]
    socket: std::path::PathBuf,
    /// Print Probe and exit.
    #[arg(long)]
    probe: bool,
    #[arg(long, default_value = "claude")]
    provider: String,
    #[arg(long, default_value = "")]
    model: String,
    #[arg(long, default_value = "")]
    effort: String,
    #[arg(long, default_value = "")]
    resume: String,
    #[arg(long, default_value = "/tmp")]
    cwd: String,
    /// 0 unspecified, 1 default, 2 accept edits, 3 bypass, 4 plan.
    #[arg(long, default_value_t = 0)]
    permission: i32,
    #[arg(long, default_value = "")]
    append: String,
    /// Send SIGINT after this many text events (0 = never).
    #[arg(long, default_value_t = 0)]
    interrupt_after: usize,
    prompt: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut client = RunnerClient::new(ductor_proto::transport::connect(&args.socket));
    if args.probe {
        println!("{:#?}", client.probe(pb::ProbeRequest::default()).await?.into_inner());
        return Ok(());
    }
    let run_id = format!("runctl-{}", std::process::id());
    let spec = pb::RunSpec {
        run_id: run_id.clone(),
        provider: args.provider,
        model: args.model,
        reasoning_effort: args.effort,
        prompt: args.prompt.join(" "),
        resume_session_id: args.resume,
        working_dir: args.cwd,
        append_system_prompt: args.append,
        permission_mode: args.permission,
        ..Default::default()
    };
    let mut stream = client.start_run(spec).await?.into_inner();
    let mut texts = 0;
    while let Some(event) = stream.message().await? {
        println!("{:?}", event.kind);
        if matches!(event.kind, Some(pb::run_event::Kind::Text(_))) {
            texts += 1;
            if texts == args.interrupt_after {
                let kind = pb::SignalKind::Interrupt as i32;
                client.signal(pb::SignalRequest { run_id: run_id.clone(), kind }).await?;
            }
        }
    }
    Ok(())
}
