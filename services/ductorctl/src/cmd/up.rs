//! `ductorctl up`: start runner → core → main's enabled gateways → each
//! enabled sub-agent's gateways (`telegram@<name>`), each waited on through
//! Health, then supervise (and take control requests, [`crate::requests`])
//! until SIGTERM/SIGINT, and stop everything in reverse order. `--detach` re-executes this command in a new session
//! with output to `logs/ductorctl.log`, and returns once all are healthy.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ductor_daemon::control;
use ductor_daemon::{Config, DuctorHome};
use tokio::signal::unix::{SignalKind, signal};

use crate::bins::BinDir;
use crate::cmd::load_config;
use crate::instance::{self, Instance};
use crate::lock;
use crate::requests::Supervised;
use crate::state::{LauncherState, Phase, ServiceRecord, ServiceState};
use crate::supervisor::{self, Context, Shared};

/// `ductorctl up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background (output to logs/ductorctl.log); return once every
    /// service is healthy.
    #[arg(long, short = 'd')]
    pub detach: bool,

    /// The background half of `--detach` (internal).
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// Runs `up`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(home)?;
    let services = instance::enabled(&config);
    let bins = BinDir::locate().context("find the directory of ductorctl")?;
    for instance in &services {
        bins.service(instance.service)?;
    }
    prepare_dirs(home)?;
    if args.detach {
        return detach(home, &config).await;
    }
    let (format, filter) = match (
        ductor_daemon::logging::format_from_env(),
        ductor_daemon::logging::filter_from_env(),
    ) {
        (Ok(format), Ok(filter)) => (format, filter),
        (Err(error), _) | (_, Err(error)) => anyhow::bail!("invalid environment: {error}"),
    };
    ductor_daemon::logging::init("ductorctl", format, filter);
    let _lock = lock::acquire(home)?;
    // The launcher applies nothing live; its record lets `config check` say so.
    let launcher = ductor_daemon::reload::Reader::Launcher;
    if let Err(error) = ductor_daemon::reload::Applied::record_start(home, launcher) {
        tracing::warn!(%error, "could not record the launcher's configuration");
    }
    let context = Arc::new(Context {
        home: home.clone(),
        bins,
        policy: config.launcher.clone(),
        shared: Shared::new(
            LauncherState {
                launcher_pid: std::process::id(),
                phase: Phase::Starting,
                services: services.iter().map(|s| ServiceRecord::of(home, s)).collect(),
            },
            LauncherState::path(home),
        ),
    });
    let outcome = launch(&context, &services).await;
    context.shared.remove_file();
    outcome
}

/// Creates (or tightens) `$DUCTOR_HOME` and `logs/` (0700) and the private run directory.
pub fn prepare_dirs(home: &DuctorHome) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in [home.root().to_path_buf(), home.logs_dir()] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("create {}", dir.display()))?;
        // An existing home made with a looser umask is tightened on every start.
        ductor_daemon::paths::tighten(&dir, 0o700)
            .with_context(|| format!("make {} private", dir.display()))?;
    }
    ductor_proto::transport::prepare_socket_dir(home.run_dir())
        .context("prepare the run directory")?;
    Ok(())
}

/// SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal went away): stop everything.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install the SIGHUP handler")?,
        })
    }

    /// Resolves on SIGTERM, SIGINT or SIGHUP.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

async fn launch(context: &Arc<Context>, services: &[Instance]) -> anyhow::Result<ExitCode> {
    let mut stop = StopSignals::install()?;
    let mut control = signal(SignalKind::user_defined1()).context("install the SIGUSR1 handler")?;
    let started = Instant::now();
    let mut supervised = Supervised::default();
    for instance in services {
        supervised.spawn(context, instance.clone());
        tokio::select! {
            state = first_outcome(&context.shared, instance) => {
                if state != ServiceState::Failed {
                    continue;
                }
                let why = context.shared.snapshot().get(&instance.name())
                    .and_then(|r| r.last_exit.clone()).unwrap_or_default();
                let log = instance.log_path(&context.home);
                if instance.is_sub_agent() {
                    // One agent's bot must not keep the others down; it stays
                    // failed (shown by `status`) until `ductorctl agents start`.
                    tracing::error!("{instance} could not be started: {why} (see {})", log.display());
                    continue;
                }
                context.shared.update(|s| s.phase = Phase::Failed);
                stop_all(context, supervised).await;
                anyhow::bail!("{instance} could not be started: {why} (see {})", log.display());
            }
            _ = stop.recv() => {
                stop_all(context, supervised).await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    context.shared.update(|s| s.phase = Phase::Running);
    tracing::info!(
        "all services started after {} ms: {}",
        started.elapsed().as_millis(),
        services.iter().map(Instance::name).collect::<Vec<_>>().join(", ")
    );
    // Requests sent while starting wait in the control directory.
    for request in control::take(&context.home) {
        supervised.apply(context, request).await;
    }
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = control.recv() => {
                for request in control::take(&context.home) {
                    supervised.apply(context, request).await;
                }
            }
        }
    }
    tracing::info!("stopping");
    stop_all(context, supervised).await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Waits until `instance` is healthy or failed for the first time.
async fn first_outcome(shared: &Shared, instance: &Instance) -> ServiceState {
    let name = instance.name();
    let mut changes = shared.subscribe();
    loop {
        let state = changes.borrow_and_update().get(&name).map(|r| r.state);
        if let Some(state @ (ServiceState::Healthy | ServiceState::Failed)) = state {
            return state;
        }
        if changes.changed().await.is_err() {
            return ServiceState::Failed;
        }
    }
}

/// Stops every instance in reverse start order.
async fn stop_all(context: &Context, supervised: Supervised) {
    context.shared.update(|s| {
        if s.phase != Phase::Failed {
            s.phase = Phase::Stopping;
        }
    });
    supervised.stop_all().await;
}

/// Re-executes `ductorctl up` in a new session and waits until it reports
/// every service healthy (exit 0), or fails (its exit code, with its log).
async fn detach(home: &DuctorHome, config: &Config) -> anyhow::Result<ExitCode> {
    if let Some(pid) = lock::holder(home) {
        return Err(lock::LockError::Held {
            home: home.root().display().to_string(),
            pid: pid.to_string(),
        }
        .into());
    }
    let log_path = home.logs_dir().join("ductorctl.log");
    let log =
        supervisor::open_log(&log_path).with_context(|| format!("open {}", log_path.display()))?;
    let stderr = log.try_clone().context("duplicate the log file handle")?;
    let exe = std::env::current_exe().context("find the ductorctl executable")?;
    let mut command = supervisor::command(&exe);
    command
        .arg("up")
        .arg("--detached-child")
        .env("DUCTOR_HOME", home.root())
        .env("DUCTOR_RUN_DIR", home.run_dir())
        .stdout(log)
        .stderr(stderr);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = command.spawn().context("start the background launcher")?;
    let pid = child.id().unwrap_or(0);
    let services = instance::enabled(config).len() as u64;
    let patience = Duration::from_millis(
        config.launcher.health_timeout_ms.saturating_mul(services)
            + config.launcher.restart_backoff_max_ms,
    );
    let start = Instant::now();
    let state_path = LauncherState::path(home);
    loop {
        if let Some(status) = child.try_wait().context("check the background launcher")? {
            eprintln!("{}", supervisor::tail(&log_path, 20).join("\n"));
            anyhow::bail!(
                "the background launcher ended ({}); see {}",
                supervisor::describe_exit(status),
                log_path.display()
            );
        }
        if let Some(state) = LauncherState::read(&state_path)
            && state.launcher_pid == pid
            && state.phase == Phase::Running
        {
            println!(
                "ductor is up (launcher pid {pid}): {}",
                state.services.iter().map(|r| r.service.as_str()).collect::<Vec<_>>().join(", ")
            );
            return Ok(ExitCode::SUCCESS);
        }
        if start.elapsed() > patience {
            anyhow::bail!(
                "ductor is still starting after {} s (launcher pid {pid}); see `ductorctl status` and {}",
                patience.as_secs(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
