//! `ductorctl import [PATH] [--apply]`: moving in from Python ductor (see
//! [`crate::import`]). A dry run by default; `--apply` writes.
//!
//! `--apply` needs ductor running (`ductorctl up`): cron jobs, webhooks and
//! sessions go into core through its services, and only the runner may put
//! transcripts into the CLI homes. Without it `--apply` refuses before
//! writing anything, so an import is never half done; a dry run still
//! reports, leaving out the checks only the services can make.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ductor_daemon::DuctorHome;

use crate::import::report::Report;
use crate::import::{self, source, state};

/// `ductorctl import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Python ductor home.
    #[arg(default_value = "~/.ductor")]
    pub path: String,
    /// Write: config.toml, secrets, workspace, cron jobs, webhooks, sessions.
    #[arg(long)]
    pub apply: bool,
    /// Replace config keys and secret files you set to something else.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn expand(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ if path == "~" => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default(),
        _ => PathBuf::from(path),
    }
}

/// Runs `ductorctl import`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let path = expand(&args.path);
    let py = source::read(&path)?;
    let mut services = match state::connect(home).await {
        Ok(services) => Some(services),
        Err(why) if args.apply => {
            anyhow::bail!(
                "{why}: --apply imports into a running ductor; run `ductorctl up` first (nothing was written)"
            )
        }
        Err(_) => None,
    };
    let config = import::config(&py, home, args.force)?;
    if args.apply {
        import::write_config(home, &config)?;
    }
    let descriptions = import::files::task_descriptions(&py.workspace);
    let (memory, mut workspace) = import::workspace(&py, home, args.apply)?;
    // Jobs after the workspace: a job's folder (its memory, scripts) is then
    // already there, and core adds only what it lacks.
    let (cron, jobs) = state::cron(&py, services.as_mut(), args.apply).await;
    let (webhooks, hooks) = state::webhooks(&py, services.as_mut(), args.apply).await;
    import::restore_task_descriptions(
        &descriptions,
        home,
        jobs.iter().chain(&hooks),
        &mut workspace,
    );
    let sessions = state::sessions(&py, home, services.as_mut(), args.apply).await;
    let named = state::named(&py, home, services.as_mut(), args.apply).await;
    let report = Report {
        source: path.display().to_string(),
        applied: args.apply,
        sections: vec![
            config.section,
            cron,
            webhooks,
            sessions,
            named,
            config.agents,
            memory,
            workspace,
        ],
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("encode the report")?);
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}
