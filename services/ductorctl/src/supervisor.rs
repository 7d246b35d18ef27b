//! The one place `ductorctl` spawns processes ([`command`]), and the
//! supervision of one service: start it with its output appended to
//! `logs/<service>.log`, wait for Health, watch it, and when it exits decide
//! between restarting at once (exit 42 or `ductorctl restart`), restarting
//! after an exponential backoff (a crash), and giving up (too many crashes in
//! the window, or exit 64: an invalid config does not fix itself).
//!
//! Each supervised instance (a service serving one agent: `telegram`,
//! `telegram@researcher`, see [`crate::instance`]) is one task owning its child process; the launcher
//! talks to it through [`ServiceHandle`]. Every state change goes through
//! [`Shared`], which rewrites the state file that `status` reads.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ductor_daemon::config::LauncherConfig;
use ductor_daemon::{Config, DuctorHome, ServiceName, exit};
use ductor_proto::health;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::bins::BinDir;
use crate::instance::Instance;
use crate::procs;
use crate::state::{LauncherState, ServiceRecord, ServiceState, now_ms};

/// How often a healthy service's Health is asked again.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Log lines quoted when a service is given up.
const TAIL_LINES: usize = 12;

/// The one sanctioned way to build a child process in `ductorctl`: stdin is
/// closed and the child is never killed by dropping its handle (services
/// outlive a crashed launcher; `down` finds them through pid files).
#[allow(clippy::disallowed_methods)]
pub fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.stdin(Stdio::null()).kill_on_drop(false);
    command
}

/// Opens (creating 0600) a log file for appending, creating its directory.
pub fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// The last `lines` lines of a file (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> Vec<String> {
    let Ok(text) = std::fs::read(path) else { return Vec::new() };
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| (*l).to_owned()).collect()
}

/// "exit status 1", "killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned());
            format!("killed by signal {signal} ({name})")
        }
        None => "exited".to_owned(),
    }
}

/// The launcher's state, shared by the service tasks and mirrored to the state file.
pub struct Shared {
    state: watch::Sender<LauncherState>,
    path: PathBuf,
}

impl Shared {
    /// Starts from `state`, written to `path` on every change.
    pub fn new(state: LauncherState, path: PathBuf) -> Arc<Self> {
        let shared = Arc::new(Self { state: watch::Sender::new(state), path });
        shared.update(|_| {});
        shared
    }

    /// Applies `change` and rewrites the state file.
    pub fn update(&self, change: impl FnOnce(&mut LauncherState)) {
        self.state.send_modify(change);
        let snapshot = self.state.borrow().clone();
        if let Err(error) = snapshot.write(&self.path) {
            tracing::warn!(%error, path = %self.path.display(), "failed to write the state file");
        }
    }

    /// Applies `change` to one service's row.
    pub fn update_service(&self, instance: &Instance, change: impl FnOnce(&mut ServiceRecord)) {
        let name = instance.name();
        self.update(|state| {
            if let Some(record) = state.get_mut(&name) {
                change(record);
            }
        });
    }

    /// Adds a row for `instance` at the end unless it has one (an agent
    /// started after `up` began).
    pub fn ensure_row(&self, home: &DuctorHome, instance: &Instance) {
        let name = instance.name();
        self.update(|state| {
            if state.get(&name).is_none() {
                state.services.push(ServiceRecord::of(home, instance));
            }
        });
    }

    /// A receiver of every change.
    pub fn subscribe(&self) -> watch::Receiver<LauncherState> {
        self.state.subscribe()
    }

    /// The current state.
    pub fn snapshot(&self) -> LauncherState {
        self.state.borrow().clone()
    }

    /// Removes the state file (the launcher is leaving).
    pub fn remove_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What every service task needs.
pub struct Context {
    /// Paths.
    pub home: DuctorHome,
    /// Where the service binaries are.
    pub bins: BinDir,
    /// `[launcher]`: timeouts, backoff, crash policy.
    pub policy: LauncherConfig,
    /// The shared state.
    pub shared: Arc<Shared>,
}

enum Request {
    Restart,
    Stop(oneshot::Sender<()>),
}

/// The launcher's handle on one supervised service.
pub struct ServiceHandle {
    instance: Instance,
    requests: mpsc::UnboundedSender<Request>,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// Starts supervising `instance` (spawns it at once).
    pub fn spawn(context: Arc<Context>, instance: Instance) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(supervise(context, instance.clone(), receiver));
        Self { instance, requests, task }
    }

    /// Which instance this is.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Restarts the service now (a failed service is started again with a
    /// clean crash history). Not counted as a crash.
    pub fn restart(&self) {
        let _ = self.requests.send(Request::Restart);
    }

    /// Stops the service (SIGTERM, grace, SIGKILL) and ends its supervision.
    pub async fn stop(self) {
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
        let _ = self.task.await;
    }
}

/// How one run of a service process ended.
enum Ended {
    /// The launcher asked it to stop.
    Stop(oneshot::Sender<()>),
    /// It ended otherwise; supervision goes on.
    Outcome(Outcome),
}

/// A run that ended without a stop request.
enum Outcome {
    /// The launcher asked for a restart.
    Restart,
    /// It exited by itself.
    Exited(ExitStatus),
    /// It did not answer Health in time (it was stopped).
    HealthTimeout,
    /// It stopped answering Health while running, for this many seconds.
    Unresponsive(u64),
    /// It could not be started at all.
    SpawnFailed(String),
}

/// What to do after a run ended.
enum Verdict {
    RestartNow(String),
    RestartAfter(Duration, String),
    GiveUp(String),
}

/// What the supervision loop does next.
enum Next {
    Start,
    StartAfresh,
    Stop(oneshot::Sender<()>),
    Quit,
}

async fn supervise(
    context: Arc<Context>,
    instance: Instance,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    loop {
        let verdict = match run_once(&context, &instance, &mut requests).await {
            Ended::Stop(done) => return stopped(&context, &instance, done),
            Ended::Outcome(outcome) => judge(&context.policy, &mut crashes, outcome),
        };
        let next = match verdict {
            Verdict::RestartNow(why) => {
                tracing::info!(service = %instance, "{why}; restarting");
                context.shared.update_service(&instance, |r| {
                    r.restarts += 1;
                    r.state = ServiceState::Restarting;
                    r.pid = None;
                    r.last_exit = Some(why);
                });
                Next::Start
            }
            Verdict::RestartAfter(delay, why) => {
                back_off(&context, &instance, &mut requests, delay, why, crashes.len()).await
            }
            Verdict::GiveUp(why) => {
                give_up(&context, &instance, &why);
                // Wait for someone to fix things and ask again, or to stop us.
                match requests.recv().await {
                    Some(Request::Stop(done)) => Next::Stop(done),
                    Some(Request::Restart) => Next::StartAfresh,
                    None => Next::Quit,
                }
            }
        };
        match next {
            Next::Start => {}
            Next::StartAfresh => {
                crashes.clear();
                context.shared.update_service(&instance, |r| {
                    r.restarts += 1;
                    r.state = ServiceState::Restarting;
                });
            }
            Next::Stop(done) => return stopped(&context, &instance, done),
            Next::Quit => return,
        }
    }
}

/// Maps how a run ended (just now) to what to do about it.
fn judge(policy: &LauncherConfig, crashes: &mut VecDeque<Instant>, outcome: Outcome) -> Verdict {
    let now = Instant::now();
    match outcome {
        Outcome::Restart => Verdict::RestartNow("restart requested".to_owned()),
        Outcome::Exited(status) if status.code() == Some(exit::RESTART) => {
            Verdict::RestartNow("asked to be restarted (exit status 42)".to_owned())
        }
        Outcome::Exited(status) if status.code() == Some(exit::CONFIG) => {
            Verdict::GiveUp("invalid configuration (exit status 64)".to_owned())
        }
        Outcome::SpawnFailed(error) => Verdict::GiveUp(format!("could not be started: {error}")),
        Outcome::Exited(status) => crash_verdict(policy, crashes, now, describe_exit(status)),
        Outcome::HealthTimeout => crash_verdict(
            policy,
            crashes,
            now,
            format!("did not answer Health within {} ms", policy.health_timeout_ms),
        ),
        Outcome::Unresponsive(seconds) => crash_verdict(
            policy,
            crashes,
            now,
            format!("unresponsive: failed every Health check for {seconds} s"),
        ),
    }
}

/// Marks the service restarting and waits out the backoff (a restart request cuts it short).
async fn back_off(
    context: &Context,
    instance: &Instance,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    delay: Duration,
    why: String,
    crashes: usize,
) -> Next {
    tracing::warn!(
        service = %instance,
        "{why}; restarting in {} ms (crash {crashes} of {} within {} s)",
        delay.as_millis(),
        context.policy.max_crashes,
        context.policy.crash_window_seconds
    );
    context.shared.update_service(instance, |r| {
        r.state = ServiceState::Restarting;
        r.pid = None;
        r.last_exit = Some(why);
    });
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        request = requests.recv() => match request {
            Some(Request::Stop(done)) => return Next::Stop(done),
            Some(Request::Restart) => {}
            None => return Next::Quit,
        },
    }
    context.shared.update_service(instance, |r| r.restarts += 1);
    Next::Start
}

fn stopped(context: &Context, instance: &Instance, done: oneshot::Sender<()>) {
    context.shared.update_service(instance, |r| {
        r.state = ServiceState::Stopped;
        r.pid = None;
        r.started_at_ms = None;
    });
    let _ = done.send(());
}

/// Records a crash at `now` and decides between a backoff restart and giving
/// up. `now` is passed in so tests can place crashes in time without a clock.
fn crash_verdict(
    policy: &LauncherConfig,
    crashes: &mut VecDeque<Instant>,
    now: Instant,
    why: String,
) -> Verdict {
    let window = Duration::from_secs(policy.crash_window_seconds);
    crashes.push_back(now);
    while crashes.front().is_some_and(|t| now.duration_since(*t) > window) {
        crashes.pop_front();
    }
    let count = u32::try_from(crashes.len()).unwrap_or(u32::MAX);
    if count >= policy.max_crashes {
        return Verdict::GiveUp(format!(
            "{why}; crashed {count} times within {} s",
            policy.crash_window_seconds
        ));
    }
    Verdict::RestartAfter(backoff(policy, count), why)
}

/// `restart_backoff_ms` doubled per crash in the window, capped.
fn backoff(policy: &LauncherConfig, crashes: u32) -> Duration {
    let factor = 1u64 << crashes.saturating_sub(1).min(20);
    Duration::from_millis(
        policy.restart_backoff_ms.saturating_mul(factor).min(policy.restart_backoff_max_ms),
    )
}

fn give_up(context: &Context, instance: &Instance, why: &str) {
    let log = instance.log_path(&context.home);
    let tail = tail(&log, TAIL_LINES);
    tracing::error!(
        service = %instance,
        "giving up on {instance}: {why}. Last lines of {}:\n{}",
        log.display(),
        tail.join("\n")
    );
    context.shared.update_service(instance, |r| {
        r.state = ServiceState::Failed;
        r.pid = None;
        r.started_at_ms = None;
        r.last_exit = Some(why.to_owned());
    });
}

/// `logs/<service>.log` (of the main agent's instance).
pub fn log_path(home: &DuctorHome, service: ServiceName) -> PathBuf {
    Instance::main(service).log_path(home)
}

/// Spawns the service binary with its output appended to its log file, in
/// its own process group (so Ctrl-C reaches only the launcher, which stops
/// the services in order).
fn spawn_service(context: &Context, instance: &Instance) -> anyhow::Result<Child> {
    use anyhow::Context as _;
    use std::io::Write;
    let binary = context.bins.service(instance.service)?;
    let log_path = instance.log_path(&context.home);
    let mut log = open_log(&log_path).with_context(|| format!("open {}", log_path.display()))?;
    let _ =
        writeln!(log, "--- ductorctl: starting {} at {} (unix ms) ---", binary.display(), now_ms());
    let stderr = log.try_clone().context("duplicate the log file handle")?;
    let mut command = instance_command(&binary, &context.home, instance);
    command.current_dir(context.home.root()).stdout(log).stderr(stderr).process_group(0);
    command.spawn().with_context(|| format!("spawn {}", binary.display()))
}

/// A command for `service`'s binary with the environment `up` gives it: its
/// home and run directory, none of the secrets it must not see, no systemd
/// notify socket. (A supervised service also gets its own process group and
/// its log; a one-shot such as `ductor-runner probe` shares the caller's.)
pub fn service_command(
    binary: &Path,
    home: &DuctorHome,
    service: ServiceName,
) -> tokio::process::Command {
    let mut command = command(binary);
    command
        .env("DUCTOR_HOME", home.root())
        .env("DUCTOR_RUN_DIR", home.run_dir())
        // Readiness to systemd is the launcher's business, not its children's.
        .env_remove("NOTIFY_SOCKET");
    for name in withheld_secrets(service, std::env::vars_os().map(|(name, _)| name)) {
        command.env_remove(name);
    }
    // The main agent's services: whatever agent the launcher's own
    // environment names is not theirs.
    command.env_remove("DUCTOR_AGENT");
    command
}

/// [`service_command`] for an instance: a sub-agent's gateway gets
/// `DUCTOR_AGENT=<name>` and, as its only secret, its own agent's resolved
/// token or password (read from `config.toml` now, so a restart picks up an
/// edited token file); the launcher's `DUCTOR_TELEGRAM_TOKEN` /
/// `DUCTOR_MATRIX_PASSWORD` are the main agent's and are withheld. When the
/// file does not load, the gateway gets no secret and reports the bad key
/// itself (exit 64).
pub fn instance_command(
    binary: &Path,
    home: &DuctorHome,
    instance: &Instance,
) -> tokio::process::Command {
    let mut command = service_command(binary, home, instance.service);
    if !instance.is_sub_agent() {
        return command;
    }
    command.env("DUCTOR_AGENT", &instance.agent);
    if let Some(own) = own_secret(instance.service) {
        command.env_remove(own);
    }
    let config = Config::load_from_env(&home.config_file());
    if let Some((name, value)) =
        config.ok().and_then(|config| crate::instance::own_secret(&config, instance))
    {
        command.env(name, value);
    }
    command
}

/// The secret variable a service itself needs (a gateway's credential).
fn own_secret(service: ServiceName) -> Option<&'static str> {
    match service {
        ServiceName::Telegram => Some("DUCTOR_TELEGRAM_TOKEN"),
        ServiceName::Matrix => Some("DUCTOR_MATRIX_PASSWORD"),
        ServiceName::Runner | ServiceName::Core => None,
    }
}

/// Variables of the launcher's environment that `service` must not inherit:
/// every `DUCTOR_*_TOKEN`, `DUCTOR_*_PASSWORD` and `DUCTOR_*_SECRET` except
/// the service's own. Only the gateway that uses a secret gets it; the runner
/// (whose children are agent CLIs) and core get none.
fn withheld_secrets(
    service: ServiceName,
    names: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let own = own_secret(service);
    names
        .filter(|name| {
            let Some(name) = name.to_str() else { return false };
            name.starts_with("DUCTOR_")
                && ["_TOKEN", "_PASSWORD", "_SECRET"].iter().any(|s| name.ends_with(s))
                && Some(name) != own
        })
        .collect()
}

/// Starts the service once and runs it until it exits or a request ends it.
async fn run_once(
    context: &Context,
    instance: &Instance,
    requests: &mut mpsc::UnboundedReceiver<Request>,
) -> Ended {
    let started = Instant::now();
    let mut child = match spawn_service(context, instance) {
        Ok(child) => child,
        Err(error) => return Ended::Outcome(Outcome::SpawnFailed(format!("{error:#}"))),
    };
    let pid = child.id().unwrap_or(0);
    let pid_file = instance.pid_file(&context.home);
    if let Err(error) =
        ductor_daemon::paths::write_private(&pid_file, format!("{pid}\n").as_bytes())
    {
        tracing::warn!(%error, "failed to write {}", pid_file.display());
    }
    context.shared.update_service(instance, |r| {
        r.state = ServiceState::Starting;
        r.pid = Some(pid);
        r.started_at_ms = Some(now_ms());
    });
    let ended = watch_child(context, instance, &mut child, requests, started).await;
    let _ = std::fs::remove_file(&pid_file);
    ended
}

async fn watch_child(
    context: &Context,
    instance: &Instance,
    child: &mut Child,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    started: Instant,
) -> Ended {
    let grace = Duration::from_millis(context.policy.stop_grace_ms);
    let channel = ductor_proto::transport::connect(instance.socket(&context.home));
    let timeout = Duration::from_millis(context.policy.health_timeout_ms);
    tokio::select! {
        answer = health::wait_serving(channel.clone(), timeout) => match answer {
            Some(_) => {
                tracing::info!(
                    service = %instance,
                    pid = child.id(),
                    "{instance} healthy after {} ms",
                    started.elapsed().as_millis()
                );
                context.shared.update_service(instance, |r| r.state = ServiceState::Healthy);
            }
            None => {
                stop_child(child, grace).await;
                return Ended::Outcome(Outcome::HealthTimeout);
            }
        },
        status = child.wait() => return exited(status),
        request = requests.recv() => return on_request(child, request, grace).await,
    }
    let mut ticks = tokio::time::interval(HEALTH_INTERVAL);
    ticks.tick().await;
    let mut healthy = true;
    let mut unhealthy_since = Instant::now();
    let patience = Duration::from_secs(context.policy.unhealthy_restart_seconds);
    loop {
        tokio::select! {
            status = child.wait() => return exited(status),
            request = requests.recv() => return on_request(child, request, grace).await,
            _ = ticks.tick() => {
                let answer = health::check(channel.clone(), Duration::from_secs(1)).await;
                let now_healthy = answer
                    .is_some_and(|a| a.status == ductor_proto::pb::ServingStatus::Serving as i32);
                if now_healthy != healthy {
                    healthy = now_healthy;
                    unhealthy_since = Instant::now();
                    let state = if healthy { ServiceState::Healthy } else { ServiceState::Unhealthy };
                    tracing::warn!(service = %instance, "{instance} is {state}");
                    context.shared.update_service(instance, |r| r.state = state);
                } else if !healthy && !patience.is_zero() && unhealthy_since.elapsed() >= patience {
                    // Alive but silent (hung, or SIGSTOP'd by a run): SIGKILL works on a
                    // stopped process where SIGTERM would wait for a SIGCONT.
                    let _ = child.kill().await;
                    return Ended::Outcome(Outcome::Unresponsive(patience.as_secs()));
                }
            }
        }
    }
}

fn exited(status: std::io::Result<ExitStatus>) -> Ended {
    match status {
        Ok(status) => Ended::Outcome(Outcome::Exited(status)),
        // Waiting failed: we can no longer tell; treat as a crash of unknown cause.
        Err(error) => {
            Ended::Outcome(Outcome::SpawnFailed(format!("wait for the process: {error}")))
        }
    }
}

async fn on_request(child: &mut Child, request: Option<Request>, grace: Duration) -> Ended {
    stop_child(child, grace).await;
    match request {
        Some(Request::Restart) => Ended::Outcome(Outcome::Restart),
        Some(Request::Stop(done)) => Ended::Stop(done),
        // The launcher dropped us: stop quietly.
        None => Ended::Stop(oneshot::channel().0),
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps.
pub async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = procs::signal(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(pid, "did not stop within {} ms; killing", grace.as_millis());
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateway_that_uses_a_secret_inherits_it() {
        let names = || {
            [
                "DUCTOR_TELEGRAM_TOKEN",
                "DUCTOR_MATRIX_PASSWORD",
                "DUCTOR_AGENT_TOKEN",
                "DUCTOR_HOME",
                "PATH",
                "ANTHROPIC_API_KEY",
            ]
            .into_iter()
            .map(std::ffi::OsString::from)
        };
        let withheld = |service| -> Vec<String> {
            withheld_secrets(service, names())
                .into_iter()
                .filter_map(|n| n.into_string().ok())
                .collect()
        };
        let all = ["DUCTOR_TELEGRAM_TOKEN", "DUCTOR_MATRIX_PASSWORD", "DUCTOR_AGENT_TOKEN"];
        assert_eq!(withheld(ServiceName::Runner), all);
        assert_eq!(withheld(ServiceName::Core), all);
        assert_eq!(
            withheld(ServiceName::Telegram),
            ["DUCTOR_MATRIX_PASSWORD", "DUCTOR_AGENT_TOKEN"]
        );
        assert_eq!(withheld(ServiceName::Matrix), ["DUCTOR_TELEGRAM_TOKEN", "DUCTOR_AGENT_TOKEN"]);
    }

    fn policy() -> LauncherConfig {
        LauncherConfig {
            restart_backoff_ms: 100,
            restart_backoff_max_ms: 1000,
            max_crashes: 4,
            crash_window_seconds: 60,
            ..LauncherConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_per_crash_and_caps() {
        let policy = policy();
        let delays: Vec<u128> = (1..=6).map(|n| backoff(&policy, n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn gives_up_after_max_crashes_in_the_window() {
        let policy = policy();
        let now = Instant::now();
        let mut crashes = VecDeque::new();
        for n in 1..4 {
            match crash_verdict(&policy, &mut crashes, now, "exit status 1".into()) {
                Verdict::RestartAfter(delay, why) => {
                    assert_eq!(delay, backoff(&policy, n));
                    assert_eq!(why, "exit status 1");
                }
                _ => panic!("crash {n} must be restarted"),
            }
        }
        match crash_verdict(&policy, &mut crashes, now, "exit status 1".into()) {
            Verdict::GiveUp(why) => assert!(why.contains("crashed 4 times within 60 s"), "{why}"),
            _ => panic!("the 4th crash must give up"),
        }
    }

    // Crash times are built forwards from one `Instant::now()`: an instant
    // before it may not exist on a host up for less than the window.

    #[test]
    fn old_crashes_leave_the_window() {
        let policy = policy();
        let start = Instant::now();
        let mut crashes: VecDeque<Instant> = std::iter::repeat_n(start, 10).collect();
        let later = start + Duration::from_secs(120);
        assert!(matches!(
            crash_verdict(&policy, &mut crashes, later, "x".into()),
            Verdict::RestartAfter(d, _) if d == Duration::from_millis(100)
        ));
        assert_eq!(crashes, [later], "only the new crash is left in the window");
    }

    #[test]
    fn a_crash_exactly_one_window_old_still_counts() {
        let policy = policy();
        let start = Instant::now();
        let earlier = [start, start + Duration::from_secs(1), start + Duration::from_secs(2)];
        let mut crashes = VecDeque::from(earlier);
        let at_the_edge = start + Duration::from_secs(60);
        assert!(matches!(
            crash_verdict(&policy, &mut crashes, at_the_edge, "x".into()),
            Verdict::GiveUp(_)
        ));
        let mut crashes = VecDeque::from(earlier);
        let past_the_edge = start + Duration::from_millis(60_001);
        assert!(matches!(
            crash_verdict(&policy, &mut crashes, past_the_edge, "x".into()),
            Verdict::RestartAfter(d, _) if d == Duration::from_millis(400)
        ));
        assert_eq!(crashes.len(), 3, "the first crash left the window");
    }

    #[test]
    fn exits_are_described_with_signal_names() {
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by signal 9 (SIGKILL)");
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
    }
}
