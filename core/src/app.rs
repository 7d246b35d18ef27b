//! Assembly: from a `ServiceContext` to a serving core. Seeds the workspace,
//! opens `state.db`, syncs the rule files (then every few seconds), reports turns the previous process left unfinished,
//! starts the driver and the runner health loop, and serves `Core` + `Health`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use ductor_daemon::ServiceName;
use ductor_daemon::config::{AgentConfig, Config, MAIN_AGENT};
use ductor_daemon::daemon::{ServiceContext, serve};
use jiff::tz::TimeZone;
use tokio::sync::Notify;

use crate::agents::bus::{Bus, Limits};
use crate::agents::control::AgentsControl;
use crate::agents::grpc::AgentsService;
use crate::agents::{self, Directory};
use crate::automation::{
    self, clock::SystemClock, credential::Credentials, engine::Automation, grpc::AutomationService,
};
use crate::background::{self, engine::Background, grpc::TasksService};
use crate::driver::{Driver, DriverParts, Stats};
use crate::machine::Event;
use crate::machine::{Machine, MachineConfig};
use crate::model::{OutKind, Outbound};
use crate::outbox::Outbox;
use crate::rules::{self, RuleSync};
use crate::runner::{RunnerLink, health_loop};
use crate::service::CoreService;
use crate::session::Freshness;
use crate::store::{self, Store, Unfinished};
use crate::workspace::{self, WorkspaceEnv};

/// Core's version, shown in `/info`, `/diagnose` and `Welcome`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the core service until shutdown.
pub async fn run(context: ServiceContext) -> anyhow::Result<()> {
    let config = &context.config;
    let workspace = context.home.workspace();
    // Nobody else on the machine reads the home (state, secrets) or the
    // workspace (uploads, memory), whatever the umask was when they were made.
    ductor_daemon::paths::tighten(context.home.root(), 0o700).context("make the home private")?;
    workspace::seed(&workspace).context("seed the workspace")?;
    ductor_daemon::paths::tighten(&workspace, 0o700).context("make the workspace private")?;
    let directory = Directory::from_config(config, &context.home);
    seed_agents(&context.home, &directory).context("seed the agents' workspaces")?;
    let migrations = [
        agents::store::MIGRATIONS,
        automation::store::MIGRATIONS,
        background::store::MIGRATIONS,
        rules::store::MIGRATIONS,
    ]
    .concat();
    let store =
        Store::open(&context.home.state_db(), &migrations).context("open the state database")?;
    // Rule files in sync before any run, then every few seconds, off the turn path.
    start_rule_syncs(config, &directory, &workspace, &store, &context.shutdown)?;
    let credentials = Credentials::load_or_create(&context.home.secrets_dir())
        .context("load the automation credentials")?;
    let sessions = store.call_sync(store::load_sessions).context("load sessions")?;
    let unfinished = store.call_sync(store::take_unfinished).context("read unfinished turns")?;
    let outbox = Arc::new(Outbox::new(store.clone()));
    report_unfinished(&outbox, unfinished).await.context("report interrupted turns")?;
    announce_start(&outbox, &config.agent.admin_chats).await.context("announce the start")?;
    let (restart, restart_asked) = tokio::sync::mpsc::unbounded_channel();

    let runner_channel = ductor_proto::transport::connect(context.home.socket(ServiceName::Runner));
    crate::restart::announce(outbox.clone(), &context.home, runner_channel.clone(), VERSION)
        .await
        .context("announce the restart")?;
    let runner = RunnerLink::new(
        runner_channel.clone(),
        workspace.to_string_lossy().into_owned(),
        crate::wire::permission_to_pb(config.agent.permission_mode),
    )
    .with_agent_env(automation::wiring::agent_env(credentials.clone(), &context.home))
    .with_agent_workspaces(directory.workspaces());
    let home_dir = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let denied = [context.home.root().to_path_buf(), context.home.run_dir().to_path_buf()];
    let env = directory.all().iter().skip(1).fold(
        WorkspaceEnv::new(workspace.clone(), config.agent.file_access, home_dir, &denied),
        |env, agent| env.with_agent(&agent.name, agent.workspace.clone()),
    );
    let machine = Machine::new(machine_config(config), env, sessions);
    let stats = Arc::new(Stats::default());
    let probe = Arc::new(Notify::new());
    let (driver, inputs, handle) = Driver::new(DriverParts {
        machine,
        store: store.clone(),
        outbox: outbox.clone(),
        runner: runner.clone(),
        probe: probe.clone(),
        stats: stats.clone(),
        shutdown: context.shutdown.clone(),
        defaults: crate::reload::oneshot_defaults(config),
        restart: Some(restart),
    });
    tokio::spawn(health_loop(runner.clone(), driver.sink(), probe, context.shutdown.clone()));
    tokio::spawn(guard_modes(context.home.clone(), context.shutdown.clone()));
    tokio::spawn(driver.run(inputs));

    let detail_stats = stats.clone();
    let health = context.health.clone().with_detail(move || {
        format!(
            "{} turns running, {} queued, runner {}",
            detail_stats.active_turns.load(Ordering::Relaxed),
            detail_stats.queued.load(Ordering::Relaxed),
            if detail_stats.runner_up.load(Ordering::Relaxed) { "up" } else { "down" }
        )
    });
    tokio::spawn(crate::memory::compaction_loop(
        handle.clone(),
        workspace.clone(),
        config.memory.clone(),
        context.shutdown.clone(),
    ));
    let core_port: Arc<dyn automation::core_port::CorePort> =
        Arc::new(automation::core_port::CoreAccess::new(handle.clone(), store.clone()));
    let automation = Automation::start(automation::engine::Parts {
        store: store.clone(),
        core: core_port.clone(),
        credentials: credentials.clone(),
        clock: Arc::new(SystemClock),
        workspace: workspace.clone(),
        agent_workspaces: agent_paths(&directory),
        config: config.clone(),
        shutdown: context.shutdown.clone(),
    })
    .await
    .context("start automation")?;
    handle.plug_automation(Arc::new(automation.clone()));
    tokio::spawn(crate::reload::follow(
        config.clone(),
        context.config_updates.clone(),
        handle.clone(),
        automation.clone(),
    ));
    let names_handle = handle.clone();
    let background = Background::start(background::engine::Parts {
        store: store.clone(),
        core: core_port,
        workspace: workspace.clone(),
        agent_workspaces: agent_paths(&directory),
        config: config.background.clone(),
        names: Arc::new(move |live| {
            let _ = names_handle.event(Event::LiveNames(live));
        }),
    })
    .await
    .context("start background work")?;
    handle.plug_background(Arc::new(background.clone()));
    let import =
        crate::import::ImportService::new(handle.clone(), background.clone(), credentials.clone());
    handle.plug_agents(Arc::new(AgentsControl::new(
        directory.clone(),
        outbox.clone(),
        context.home.clone(),
    )));
    let bus = Bus::new(directory.clone(), handle.clone(), store.clone(), Limits::default());
    let turn_timeout = std::time::Duration::from_secs(config.agent.turn_timeout_seconds);
    let agents_service = AgentsService::new(bus, credentials.clone(), outbox.clone(), turn_timeout);
    let service = CoreService::new(handle, store, VERSION, stats)
        .with_automation(automation.clone())
        .with_agents(directory);
    let router = tonic::transport::Server::builder()
        .add_service(health.into_server())
        .add_service(service.into_server())
        .add_service(AutomationService::new(automation).into_server())
        .add_service(TasksService::new(background, credentials).into_server())
        .add_service(import.into_server())
        .add_service(agents_service.into_server());
    let restarter = crate::restart::Restarter {
        outbox: outbox.clone(),
        runner: runner.clone(),
        runner_channel: runner_channel.clone(),
        home: context.home.clone(),
        shutdown: context.shutdown.clone(),
    };
    let restart_for = tokio::spawn(restarter.run(restart_asked));
    serve(&context, router).await?;
    if restart_for.is_finished() && matches!(restart_for.await, Ok(true)) {
        return Err(ductor_daemon::daemon::RestartRequested.into());
    }
    Ok(())
}

/// Sub-agents' workspaces by name.
fn agent_paths(directory: &Directory) -> std::collections::HashMap<String, std::path::PathBuf> {
    directory.all().iter().skip(1).map(|a| (a.name.clone(), a.workspace.clone())).collect()
}

/// Keeps every agent's rule files in sync: one pass each now, before any
/// run, then one every `[rules].sync_interval_seconds`.
fn start_rule_syncs(
    config: &Config,
    directory: &Directory,
    workspace: &std::path::Path,
    store: &Store,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let max = config.rules.max_file_bytes;
    let interval = std::time::Duration::from_secs(config.rules.sync_interval_seconds);
    let main = RuleSync::new(workspace.to_path_buf(), store.clone(), max)
        .context("load the rule-sync records")?;
    let mut syncs = vec![if directory.has_subs() {
        main.with_agents(&directory.rules_for(MAIN_AGENT), workspace.to_path_buf())
    } else {
        main
    }];
    for agent in directory.all().iter().skip(1) {
        let sync = RuleSync::for_agent(agent.workspace.clone(), store.clone(), max, &agent.name)
            .context("load the rule-sync records")?
            .with_agents(&directory.rules_for(&agent.name), workspace.to_path_buf());
        syncs.push(sync);
    }
    for mut sync in syncs {
        sync.pass();
        tokio::spawn(sync.run(interval, shutdown.clone()));
    }
    Ok(())
}

/// Makes each sub-agent's home (0700) and workspace (seeded like the main one).
fn seed_agents(home: &ductor_daemon::DuctorHome, directory: &Directory) -> anyhow::Result<()> {
    if directory.has_subs() {
        workspace::seed_shared_memory(&home.workspace())?;
    }
    for agent in directory.all().iter().skip(1) {
        let own = home.agent_home(&agent.name);
        std::fs::create_dir_all(&own).with_context(|| format!("create {}", own.display()))?;
        ductor_daemon::paths::tighten(&own, 0o700)?;
        workspace::seed(&agent.workspace)
            .with_context(|| format!("seed {}", agent.workspace.display()))?;
        ductor_daemon::paths::tighten(&agent.workspace, 0o700)?;
    }
    Ok(())
}

/// How often core checks that its private files are still private.
const MODE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Puts back loosened modes of the home, secrets, config and state database
/// (a run can `chmod` them: Landlock does not govern it), once a minute
/// until shutdown, and says so: it means something changed them.
async fn guard_modes(
    home: ductor_daemon::DuctorHome,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(MODE_CHECK_INTERVAL);
    let mut first = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let check = home.clone();
        let repaired =
            tokio::task::spawn_blocking(move || ductor_daemon::paths::repair_modes(&check))
                .await
                .unwrap_or_default();
        for path in repaired {
            // At start a loose mode is the umask's; later, something changed it.
            if first {
                tracing::info!(path = %path.display(), "made private");
            } else {
                tracing::warn!(path = %path.display(), "its mode had been loosened; made private again");
            }
        }
        first = false;
    }
}

/// Tells each chat about the turns the previous process left behind: a
/// running turn was interrupted, a queued message never ran. Neither is re-run.
async fn report_unfinished(outbox: &Outbox, unfinished: Vec<Unfinished>) -> anyhow::Result<()> {
    for item in unfinished {
        let quote: String = item.preview.chars().take(80).collect();
        let kind = if item.was_running {
            tracing::warn!(chat = %item.key, event_id = item.event_id, "reporting an interrupted turn");
            OutKind::Error {
                message: format!(
                    "⚠️ Your request \"{quote}\" was interrupted because ductor restarted while \
                     it ran. It was not re-run; send it again if you still want it. The session \
                     is kept."
                ),
                kind: "interrupted".to_owned(),
            }
        } else {
            OutKind::Error {
                message: format!(
                    "⚠️ Your queued message \"{quote}\" was not run because ductor restarted. \
                     Send it again if you still want it."
                ),
                kind: "dropped".to_owned(),
            }
        };
        outbox
            .send(Outbound { key: item.key, turn_id: String::new(), reply_to: item.event_id, kind })
            .await?;
    }
    Ok(())
}

/// Tells every admin chat (`[agent].admin_chats`) that ductor is up, as a
/// quiet durable notice: it arrives when that chat's gateway attaches.
async fn announce_start(outbox: &Outbox, admin_chats: &[String]) -> anyhow::Result<()> {
    for chat in admin_chats {
        let Some((transport, chat_id)) = chat.split_once(':') else { continue };
        let text = format!("✅ ductor {VERSION} started.");
        let kind = OutKind::Notice { text, notify: false };
        let key = crate::model::SessionKey::new(transport, chat_id, "");
        outbox
            .send(Outbound { key, turn_id: String::new(), reply_to: String::new(), kind })
            .await?;
    }
    Ok(())
}

/// The machine's configuration from `config.toml`.
pub fn machine_config(config: &Config) -> MachineConfig {
    let agent = &config.agent;
    let timezone = if agent.timezone.is_empty() {
        TimeZone::UTC
    } else {
        TimeZone::get(&agent.timezone).unwrap_or_else(|error| {
            tracing::warn!(zone = agent.timezone, %error, "unknown time zone, using UTC");
            TimeZone::UTC
        })
    };
    MachineConfig {
        provider: agent.provider.clone(),
        model: agent.model.clone(),
        effort: agent.reasoning_effort.clone(),
        freshness: Freshness {
            idle_timeout_minutes: agent.idle_timeout_minutes,
            daily_reset_hour: agent.daily_reset_enabled.then_some(agent.daily_reset_hour),
            timezone,
            max_session_messages: agent.max_session_messages,
        },
        turn_timeout_ms: agent.turn_timeout_seconds * 1000,
        idle_timeout_ms: agent.idle_output_timeout_seconds * 1000,
        version: VERSION.to_owned(),
        summary: summary(config, agent),
        providers: vec!["claude".into(), "codex".into(), "gemini".into()],
        permission: agent.permission_mode,
        approval_timeout_ms: agent.approval_timeout_seconds * 1000,
        while_busy: agent.while_busy,
        memory: config.memory.clone(),
        admin_chats: agent.admin_chats.clone(),
        file_access: agent.file_access,
        // Defaults need no paths: any home gives the same.
        agents: Directory::from_config(config, &ductor_daemon::DuctorHome::at("/"))
            .machine_defaults(),
    }
}

/// Effective configuration for `/diagnose`. Never includes secrets.
fn summary(config: &Config, agent: &AgentConfig) -> Vec<String> {
    let or_default = |s: &str| if s.is_empty() { "(default)".to_owned() } else { s.to_owned() };
    vec![
        format!(
            "agent: provider {} · model {} · effort {} · permission {:?} · files {:?}",
            agent.provider,
            or_default(&agent.model),
            or_default(&agent.reasoning_effort),
            agent.permission_mode,
            agent.file_access
        ),
        format!(
            "sessions: idle reset {} min · daily reset {} · message cap {} · timezone {}",
            agent.idle_timeout_minutes,
            if agent.daily_reset_enabled {
                format!("{}:00", agent.daily_reset_hour)
            } else {
                "off".into()
            },
            agent.max_session_messages,
            or_default(&agent.timezone)
        ),
        format!(
            "turns: timeout {} s · output silence {} s",
            agent.turn_timeout_seconds, agent.idle_output_timeout_seconds
        ),
        format!(
            "gateways: telegram {} · matrix {} · webhooks {}",
            on_off(config.telegram.enabled),
            on_off(config.matrix.enabled),
            on_off(config.webhooks.enabled)
        ),
        format!("runner: sandbox {:?}", config.runner.sandbox),
    ]
}

fn on_off(enabled: bool) -> &'static str {
    if enabled { "on" } else { "off" }
}
