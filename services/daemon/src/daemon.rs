//! The common `main` of every service binary, so each `main.rs` is a few lines:
//!
//! 1. resolve `$DUCTOR_HOME` (or `--home PATH`);
//! 2. load and validate `config.toml` before any I/O; a bad config prints the
//!    key at fault and exits 64;
//! 3. set up tracing from `DUCTOR_LOG` / `DUCTOR_LOG_FORMAT`;
//! 4. watch `config.toml` for changes ([`crate::reload`]; SIGHUP checks at once);
//! 5. run the service until SIGTERM/SIGINT, then map the outcome to an exit
//!    code (0, 1, or 42 for "restart me on purpose").
//!
//! [`oneshot`] does 1–3 the same way for a command of a service binary that
//! does one thing and exits (`ductor-runner probe`).

use std::future::Future;
use std::process::ExitCode;

use ductor_proto::health::HealthService;
use tokio_util::sync::CancellationToken;

use crate::{Config, DuctorHome, ServiceName, exit, logging, notify, reload, shutdown};

/// What a running service is given.
pub struct ServiceContext {
    /// Which service this is.
    pub service: ServiceName,
    /// Resolved paths.
    pub home: DuctorHome,
    /// The validated configuration at start.
    pub config: Config,
    /// Each valid change of `config.toml` that holds a key this service
    /// applies live ([`crate::reload`]); the other keys of it wait for a restart.
    pub config_updates: tokio::sync::watch::Receiver<std::sync::Arc<Config>>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// This process's Health service (add it to the server).
    pub health: HealthService,
    /// Asks for an exit with status 42 ("restart me"), e.g. on core's request.
    pub restart: RestartSwitch,
}

/// Lets any part of a service ask to be restarted: shutdown begins, and the
/// process exits with status 42, which every supervisor (`ductorctl up`,
/// systemd's `RestartForceExitStatus`, compose's restart policy) answers with
/// a fresh start that is not counted as a crash.
#[derive(Debug, Clone)]
pub struct RestartSwitch {
    asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    shutdown: CancellationToken,
}

impl RestartSwitch {
    /// A switch that cancels `shutdown` when flipped.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self { asked: Default::default(), shutdown }
    }

    /// Begins shutdown for a restart; `reason` goes to the log (once).
    pub fn ask(&self, reason: &str) {
        if !self.asked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tracing::info!(reason, "shutting down for a restart");
        }
        self.shutdown.cancel();
    }

    /// Whether a restart was asked for.
    pub fn asked(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Returned (as an error) by a service that wants the launcher to restart it.
#[derive(Debug, thiserror::Error)]
#[error("restart requested")]
pub struct RestartRequested;

/// A one-shot command of a service binary, such as `ductor-runner probe`:
/// it does one thing with the service's config and exits, serving nothing.
#[derive(Debug, Clone, Copy)]
pub struct Oneshot {
    /// The command's name: the binary's first argument.
    pub name: &'static str,
    /// What it does, for `--help`.
    pub about: &'static str,
}

/// The `--help` text of the service itself.
fn service_help(service: ServiceName, version: &str) -> String {
    let binary = service.binary();
    format!(
        "{binary} {version}: the ductor {service} service.\n\nUsage: {binary} [--home PATH]\n\n\
         Reads $DUCTOR_HOME/config.toml (DUCTOR_HOME defaults to ~/.ductor).\n\
         Environment: DUCTOR_LOG (filter, default info), DUCTOR_LOG_FORMAT (plain|json).\n\
         Usually started by `ductorctl up`, a systemd unit or docker compose."
    )
}

/// The `--help` text of a one-shot command.
fn oneshot_help(service: ServiceName, version: &str, command: Oneshot) -> String {
    let (binary, name) = (service.binary(), command.name);
    format!(
        "{binary} {name} ({version}): {}\n\nUsage: {binary} {name} [--home PATH]\n\n\
         Reads $DUCTOR_HOME/config.toml (DUCTOR_HOME defaults to ~/.ductor); logs to stderr.",
        command.about
    )
}

/// Parses `--home PATH`, `--version` and `--help` (printing `help`) from
/// `args`; anything else is an error.
fn parse_args(
    service: ServiceName,
    version: &str,
    help: &str,
    mut args: impl Iterator<Item = String>,
) -> Result<Option<DuctorHome>, ExitCode> {
    let mut home = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--home" => match args.next() {
                Some(path) => home = Some(DuctorHome::at(path)),
                None => {
                    eprintln!("{}: --home needs a path", service.binary());
                    return Err(ExitCode::from(exit::CONFIG as u8));
                }
            },
            "--version" | "-V" => {
                println!("{} {version}", service.binary());
                return Err(ExitCode::SUCCESS);
            }
            "--help" | "-h" => {
                println!("{help}");
                return Err(ExitCode::SUCCESS);
            }
            other => {
                eprintln!("{}: unexpected argument {other:?} (try --help)", service.binary());
                return Err(ExitCode::from(exit::CONFIG as u8));
            }
        }
    }
    Ok(home)
}

/// The home (`--home`, else `$DUCTOR_HOME`), its validated config, and
/// tracing set up; or the exit code after saying what is wrong.
fn prepare(
    service: ServiceName,
    version: &str,
    help: &str,
    args: impl Iterator<Item = String>,
) -> Result<(DuctorHome, Config), ExitCode> {
    let home = parse_args(service, version, help, args)?.unwrap_or_else(DuctorHome::from_env);
    let config = Config::load_for_service(&home.config_file(), service).map_err(|error| {
        eprintln!("{}: invalid configuration: {error}", service.binary());
        ExitCode::from(exit::CONFIG as u8)
    })?;
    let (home, config) = focus(service, home, config)?;
    match (logging::format_from_env(), logging::filter_from_env()) {
        (Ok(format), Ok(filter)) => logging::init(&home.instance_name(service), format, filter),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("{}: invalid environment: {error}", service.binary());
            return Err(ExitCode::from(exit::CONFIG as u8));
        }
    }
    Ok((home, config))
}

/// A gateway started with `DUCTOR_AGENT=<name>` serves that sub-agent: its
/// home and config are focused on it ([`Config::focus`]); an unknown name is
/// a configuration error. Core and the runner serve every agent.
fn focus(
    service: ServiceName,
    home: DuctorHome,
    config: Config,
) -> Result<(DuctorHome, Config), ExitCode> {
    let agent = std::env::var("DUCTOR_AGENT").unwrap_or_default();
    let gateway = matches!(service, ServiceName::Telegram | ServiceName::Matrix);
    if !gateway || agent.is_empty() || agent == crate::config::MAIN_AGENT {
        return Ok((home, config));
    }
    if config.agent_entry(&agent).is_none() {
        eprintln!(
            "{}: invalid configuration: DUCTOR_AGENT={agent:?} names no [[agents]] entry",
            service.binary()
        );
        return Err(ExitCode::from(exit::CONFIG as u8));
    }
    let workspace = config.workspace_of(&home, &agent);
    Ok((home.focused(&agent, workspace), config.focus(&agent)))
}

/// Raises the soft open-files limit to the hard one: a service holds a
/// descriptor per client, run pipe and file, and the default 1024 is low
/// for a busy core (review L2). Agent runs get their own limits.
fn raise_open_files() {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE);
    if let Ok((soft, hard)) = limit
        && soft < hard
        && let Err(error) =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(%error, soft, hard, "could not raise the open-files limit");
    }
}

/// Runs a service binary from start to exit code.
pub fn main<F, Fut>(service: ServiceName, version: &'static str, run: F) -> ExitCode
where
    F: FnOnce(ServiceContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let help = service_help(service, version);
    let (home, config) = match prepare(service, version, &help, std::env::args().skip(1)) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "failed to start the async runtime");
                return ExitCode::from(exit::FAILURE as u8);
            }
        };
    let outcome = runtime.block_on(async move {
        let shutdown = shutdown::on_signal();
        let config_updates = reload::start(service, &home, config.clone(), shutdown.clone());
        let restart = RestartSwitch::new(shutdown.clone());
        let context = ServiceContext {
            service,
            home,
            config,
            config_updates,
            shutdown,
            health: HealthService::new(service.as_str(), version),
            restart: restart.clone(),
        };
        let instance = context.home.instance_name(service);
        tracing::info!(service = instance, version, pid = std::process::id(), "starting");
        raise_open_files();
        match run(context).await {
            Ok(()) if restart.asked() => Err(RestartRequested.into()),
            outcome => outcome,
        }
    });
    // Leave in-flight blocking work a moment, never forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) if error.is::<RestartRequested>() => {
            tracing::info!("exiting for a restart");
            ExitCode::from(exit::RESTART as u8)
        }
        Err(error) => {
            tracing::error!("failed to {error:#}");
            eprintln!("{}: {error:#}", service.binary());
            ExitCode::from(exit::FAILURE as u8)
        }
    }
}

/// Runs a one-shot command of a service binary: `args` (those after the
/// command's name) are parsed, the config validated (exit 64) and tracing set
/// up (stderr) as for the service itself; then `run` gets the home and config
/// on a current-thread runtime, with no socket, signal handling or readiness
/// notification. An error from `run` is printed and exits 1.
pub fn oneshot<F, Fut>(
    service: ServiceName,
    version: &'static str,
    command: Oneshot,
    args: impl Iterator<Item = String>,
    run: F,
) -> ExitCode
where
    F: FnOnce(DuctorHome, Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let help = oneshot_help(service, version, command);
    let (home, config) = match prepare(service, version, &help, args) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(home, config)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{} {}: {error:#}", service.binary(), command.name);
            ExitCode::from(exit::FAILURE as u8)
        }
    }
}

/// Binds this service's socket and serves `router` until shutdown.
///
/// Health answers NOT_SERVING once shutdown begins; the socket file is
/// removed when serving ends. `READY=1` goes to systemd once the socket is
/// bound and the server is accepting.
pub async fn serve(
    context: &ServiceContext,
    router: tonic::transport::server::Router,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let path = context.home.socket(context.service);
    ductor_proto::transport::prepare_socket_dir(context.home.run_dir())
        .context("prepare the socket directory")?;
    // Core alone admits tokenless clients (agents running `ductorctl cron add`
    // from the sandbox); its services check `PeerInfo` before doing anything.
    let options = ductor_proto::transport::BindOptions {
        allow_unprivileged: context.service == ServiceName::Core,
    };
    let incoming = ductor_proto::transport::bind_with(&path, options)
        .await
        .context("bind the service socket")?;
    tracing::info!(socket = %path.display(), "listening");
    notify::ready();
    let shutdown = context.shutdown.clone();
    let health = context.health.clone();
    let served = router.serve_with_incoming_shutdown(incoming, async move {
        shutdown.cancelled().await;
        health.set_serving(false);
        notify::stopping();
    });
    // Long-lived streams (a gateway's Attach) may outlast the shutdown: they
    // get a bounded drain, then the service stops anyway.
    let shutdown = context.shutdown.clone();
    tokio::select! {
        served = served => served.context("serve gRPC"),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!(?DRAIN, "streams still open after the drain; stopping anyway");
            Ok(())
        }
    }
}

/// How long open streams may run on after shutdown began.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);
