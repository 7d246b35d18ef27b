//! The ductor runner: the only process that spawns agent CLIs.
//!
//! Core asks it (gRPC `ductor.v1.Runner` on `run/runner.sock`) to run a turn;
//! the runner starts the provider's official CLI headless, confined and
//! supervised, and streams its output back as one provider-neutral event
//! model. Code map:
//!
//! - [`service`]: the gRPC service, the table of live runs, session locks;
//! - [`spec`]: `RunSpec` validated from the wire;
//! - [`provider`]: per-CLI argv/env and stdout parsers (claude, codex, gemini);
//! - [`supervise`]: one run from spawn to reaping (timeouts, signals, events);
//! - [`sandbox`]: environment allowlist, Landlock, rlimits, and the one spawn site;
//! - [`homes`]: the CLIs' own state in ductor-owned homes per chat, never the operator's;
//! - [`skills`]: `workspace/skills` synced into every CLI home (and from the operator's);
//! - [`namespace`]: the socket fence (a user + mount namespace per run) and
//!   the killing of every process of a run at its end;
//! - [`lines`]: bounded line reading; [`registry`]: pid records swept at start;
//! - [`event`]: the event model; [`probe`]: installed CLIs and versions;
//! - [`media`]: received files made ready before a turn (transcription, image resizing);
//! - [`transcripts`]: sessions brought from Python ductor made resumable in a chat's home.

pub mod error;
pub mod event;
pub mod homes;
pub mod lines;
pub mod media;
pub mod namespace;
pub mod probe;
pub mod provider;
pub mod registry;
pub mod sandbox;
pub mod service;
pub mod skills;
pub mod spec;
pub mod supervise;
pub mod transcripts;
pub mod workdir;

use anyhow::Context as _;
use ductor_daemon::daemon::{ServiceContext, serve};

pub use service::{Runner, RunnerService};

/// Runs the service until shutdown; stops every run before returning.
pub async fn run(context: ServiceContext) -> anyhow::Result<()> {
    let mut support = sandbox::detect(context.config.runner.sandbox)
        .map_err(anyhow::Error::msg)
        .context("set up the sandbox")?;
    sandbox::harden_self();
    // After hardening: the probe's child must meet the same non-dumpable parent as runs.
    let fencing = namespace::detect(context.config.runner.sandbox);
    if !fencing.available {
        tracing::warn!(detail = %fencing.detail, "runs are not fenced off same-uid sockets");
    }
    support.detail = format!("{}; {}", support.detail, fencing.detail);
    tracing::info!(sandbox = support.mode(), detail = %support.detail, "sandbox");
    if namespace::members::become_subreaper() {
        tokio::spawn(namespace::members::reap_forever());
    } else {
        tracing::warn!("cannot adopt the orphans of runs (no /proc/<pid>/task/<tid>/children)");
    }
    let media = std::sync::Arc::new(media_preparer(&context, &support));
    let skills = skills::Skills::new(
        &context.config.skills,
        &context.home,
        &context.config.providers,
        &sandbox::parent_env(),
    )
    .map(std::sync::Arc::new);
    let runner = Runner::new(
        context.config.runner.clone(),
        context.config.providers.clone(),
        context.home.clone(),
        support,
        fencing,
        skills.clone(),
    )
    .context("start the spawner thread")?;
    runner.set_agents(agent_workspaces(&context));
    tokio::spawn(follow_providers(context.config_updates.clone(), runner.clone()));
    let killed = runner.sweep();
    if killed > 0 {
        tracing::warn!(killed, "killed CLI process groups left by a previous runner");
    }
    // Warm the version cache so `RunStarted.cli_version` is known from the first run.
    {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner.probe().await;
        });
    }
    // Runs hold their streams open; stop them when shutdown begins so serving can end.
    let stopper = {
        let runner = runner.clone();
        let shutdown = context.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            runner.shutdown().await;
        })
    };
    let ticker = skills.clone().map(|skills| {
        let shutdown = context.shutdown.clone();
        tokio::spawn(skills::sync::run(skills, shutdown))
    });
    if let Some(skills) = &skills {
        // The first pass before serving: the first runs see every skill.
        let skills = skills.clone();
        let _ = tokio::task::spawn_blocking(move || skills.pass()).await;
    }
    let router = tonic::transport::Server::builder()
        .add_service(context.health.clone().into_server())
        .add_service(
            RunnerService::new(runner.clone())
                .with_media(media)
                .with_restart(context.restart.clone())
                .into_server(),
        );
    let served = serve(&context, router).await;
    runner.shutdown().await;
    stopper.abort();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(skills) = skills {
        let removed = tokio::task::spawn_blocking(move || skills.unexport()).await.unwrap_or(0);
        tracing::info!(removed, "removed ductor's skill links from the operator's folders");
    }
    served
}

/// The media preparer of this runner's config: tools confined like runs
/// (refused where runs are), never found in a tree agents can write.
fn media_preparer(context: &ServiceContext, support: &sandbox::Support) -> media::Media {
    let home = &context.home;
    let config = &context.config;
    let fence = probe::Fence::of(home, &config.runner, support.landlock);
    let tools = media::ToolFence {
        landlock: support.landlock,
        excluded: fence.excluded,
        agent_writable: fence.writable,
        extra_readable: config.runner.extra_readable_paths.clone(),
        path: std::env::var("PATH").ok(),
        refused: support.refused.clone(),
    };
    media::Media::new(
        media::Transcriber::new(config.transcription.clone(), home.root()),
        config.image.clone(),
        home.workspace(),
        home.root().join("tmp"),
        tools,
    )
    .with_workspaces(agent_workspaces(context).into_values())
}

/// Sub-agents' workspaces (`[[agents]]`), whose runs this runner takes.
fn agent_workspaces(
    context: &ServiceContext,
) -> std::collections::HashMap<String, std::path::PathBuf> {
    let config = &context.config;
    config
        .agents
        .iter()
        .map(|a| (a.name.clone(), config.workspace_of(&context.home, &a.name)))
        .collect()
}

/// Hands every reloaded `[providers.*]` to the runner (`ductor_daemon::reload`):
/// runs started after it use the new binary, args, env and home state, and
/// the next `Probe` reports the new models (core's `/model` list follows).
async fn follow_providers(
    mut updates: tokio::sync::watch::Receiver<std::sync::Arc<ductor_daemon::Config>>,
    runner: std::sync::Arc<Runner>,
) {
    while updates.changed().await.is_ok() {
        let providers = updates.borrow_and_update().providers.clone();
        runner.set_providers(providers);
    }
}
