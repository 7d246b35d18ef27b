//! `ductorctl reload`: have the running services take a changed `config.toml`
//! without a restart, and say what each applied and what waits for one.
//!
//! The file is validated first; a bad file names the key and nothing is
//! signalled. Then every service that answers Health gets SIGHUP (its pid
//! from Health, checked against `/proc/<pid>/exe`, so a recycled pid is never
//! hit; the same thing `systemctl --user reload` does through the units'
//! `ExecReload`), and `reload` waits until each has checked the file again
//! (its record in `<run dir>/applied/`, see `ductor_daemon::reload`).
//! Services also pick changes up by themselves within about a second.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ductor_daemon::reload::{Applied, Reader, diff};
use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::health;
use nix::sys::signal::Signal;

use crate::cmd::load_config;
use crate::procs;

/// `ductorctl reload`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Live (applied at once): [telegram] allowed_user_ids, allowed_group_ids, group_mention_only, \
edit_interval_ms, burst, notify_final, max_download_bytes; [matrix] allowed_users, \
allowed_rooms, group_mention_only, max_edits, max_download_bytes, show_tool_markers; [agent] \
(all of it; new sessions take the new provider and model, a new timezone moves the cron jobs \
that name none); [automation], [heartbeat], [cleanup]; [memory] flush, \
flush_dedup_seconds, check_every_messages; [providers.*] (the next run uses them). Everything \
else (tokens, URLs, [runner], [webhooks], ...) needs `ductorctl restart SERVICE`, and [launcher] a new \
`ductorctl up`; `ductorctl config check` lists what is still waiting. Services also notice a \
changed file by themselves within about a second. Under systemd this is `systemctl --user \
reload ductor-<service>`; under docker compose, `docker compose kill -s HUP`.")]
pub struct Args {
    /// How long to wait for each service to check the file, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// A running service: its pid and its record before the signal.
struct Running {
    service: ServiceName,
    /// The home as the service sees it (a sub-agent's gateway: focused on it).
    home: DuctorHome,
    pid: u32,
    before: Option<Applied>,
}

/// Runs `reload`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    if let Err(error) = load_config(home) {
        eprintln!("ductorctl reload: {error:#}; nothing was reloaded");
        return Ok(ExitCode::from(ductor_daemon::exit::CONFIG as u8));
    }
    let running = snapshot(home).await;
    if running.is_empty() {
        println!("no ductor service is running; the file is valid and will be used at start");
        return Ok(ExitCode::SUCCESS);
    }
    for service in &running {
        procs::signal(service.pid, Signal::SIGHUP)?;
    }
    let file = file_table(home)?;
    let mut failed = false;
    for service in running {
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let after = wait_checked(&service, deadline).await;
        failed |= !print_outcome(&service, after.as_ref(), &file);
    }
    print_launcher(home, &file);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The services answering Health (sub-agents' gateways too), with pids
/// that run the expected binary.
pub(crate) async fn running_services(home: &DuctorHome) -> Vec<RunningService> {
    let config = crate::cmd::config_or_default(home);
    let mut found = Vec::new();
    for instance in crate::instance::known(home, &config) {
        let service = instance.service;
        let channel = ductor_proto::transport::connect(instance.socket(home));
        if let Some(answer) = health::check(channel, Duration::from_millis(500)).await
            && procs::runs(answer.pid, service.binary())
        {
            let own = home.focused(&instance.agent, config.workspace_of(home, &instance.agent));
            found.push(RunningService {
                service,
                name: instance.name(),
                home: own,
                pid: answer.pid,
            });
        }
    }
    found
}

/// One service that answers Health.
pub(crate) struct RunningService {
    pub service: ServiceName,
    /// `telegram`, `telegram@researcher`, ...
    pub name: String,
    /// The home as the service sees it (where its `applied` record is).
    pub home: DuctorHome,
    pub pid: u32,
}

impl From<RunningService> for Running {
    fn from(r: RunningService) -> Self {
        Self { service: r.service, home: r.home, pid: r.pid, before: None }
    }
}

/// The file's effective table with secrets as digests, as the records hold it.
pub(crate) fn file_table(home: &DuctorHome) -> anyhow::Result<toml::Table> {
    let text = match std::fs::read_to_string(home.config_file()) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error.into()),
    };
    let table = diff::effective(&text).ok_or_else(|| anyhow::anyhow!("config.toml is not TOML"))?;
    Ok(diff::redacted(&table))
}

/// Waits until the service's record shows a check after `before`.
async fn wait_checked(service: &Running, deadline: Instant) -> Option<Applied> {
    let before = service.before.as_ref().map_or(0, |b| b.attempt);
    loop {
        let now = Applied::read(&service.home, Reader::Service(service.service))
            .filter(|a| a.pid == service.pid);
        if now.as_ref().is_some_and(|a| a.attempt > before) || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints what one service did; `false` when it refused the file or did not answer.
fn print_outcome(service: &Running, after: Option<&Applied>, file: &toml::Table) -> bool {
    let name = service.home.instance_name(service.service);
    let Some(after) = after else {
        println!("{name}: did not record a check of config.toml (an older binary?)");
        return false;
    };
    if after.attempt <= service.before.as_ref().map_or(0, |b| b.attempt) {
        println!("{name}: did not check config.toml in time");
        return false;
    }
    if !after.rejected.is_empty() {
        println!(
            "{name}: refused config.toml, keeping its running configuration: {}",
            after.rejected
        );
        return false;
    }
    let reader = Reader::Service(service.service);
    let since_start = diff::changed_keys(&after.started, file);
    let (live, restart) = ductor_daemon::reload::keys::split_for(reader, &since_start);
    let (not_applied, _) = after.pending(reader, file);
    let applied: Vec<&String> = live.iter().filter(|k| !not_applied.contains(k)).collect();
    if applied.is_empty() && restart.is_empty() {
        println!("{name}: reloaded, nothing it reads changed");
    }
    if !applied.is_empty() {
        let keys: Vec<&str> = applied.iter().map(|k| k.as_str()).collect();
        println!("{name}: applied live: {}", keys.join(", "));
    }
    if !restart.is_empty() {
        println!("{name}: needs `{}` for: {}", reader.restart_hint(), restart.join(", "));
    }
    true
}

/// The launcher's keys that changed since it started (it applies none live).
pub(crate) fn print_launcher(home: &DuctorHome, file: &toml::Table) {
    let Some(pid) = crate::lock::holder(home) else { return };
    let Some(applied) = Applied::read(home, Reader::Launcher).filter(|a| a.pid == pid) else {
        return;
    };
    let (_, restart) = applied.pending(Reader::Launcher, file);
    if !restart.is_empty() {
        let hint = Reader::Launcher.restart_hint();
        println!("launcher: needs `{hint}` for: {}", restart.join(", "));
    }
}

/// The running services with their records now (before the signal).
async fn snapshot(home: &DuctorHome) -> Vec<Running> {
    running_services(home)
        .await
        .into_iter()
        .map(|r| {
            let before =
                Applied::read(&r.home, Reader::Service(r.service)).filter(|a| a.pid == r.pid);
            Running { before, ..Running::from(r) }
        })
        .collect()
}
