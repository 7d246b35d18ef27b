//! `ductorctl service install|uninstall|status`: the systemd user units.
//!
//! `install` renders the units from `deploy/systemd/` with the real binary
//! directory and home into `~/.config/systemd/user/`, enables runner, core,
//! the enabled gateways (a sub-agent's as an instance of the template,
//! `ductor-telegram@<name>.service`) and `ductor.target`, and starts the target.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ductor_daemon::{DuctorHome, ServiceName};

use crate::bins::BinDir;
use crate::cmd::load_config;
use crate::instance;
use crate::units::{self, RenderOptions, UNITS};

/// `ductorctl service`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Install, enable and start the units (ductor.target).
    Install {
        /// Write the units into this directory instead, and do not call systemctl.
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
    },
    /// Stop, disable and remove the units.
    Uninstall,
    /// Show `systemctl --user status` of the units.
    Status,
}

/// Runs `service`.
pub async fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Install { unit_dir } => install(home, unit_dir).await,
        Command::Uninstall => uninstall(home).await,
        Command::Status => {
            let names = unit_names(home);
            let mut args = vec!["status", "--no-pager"];
            args.extend(names.iter().map(String::as_str));
            // `systemctl status` exits non-zero when a unit is inactive; show it anyway.
            match units::systemctl(&args).await {
                Ok(text) => print!("{text}"),
                Err(error) => println!("{error:#}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn unit_dir() -> anyhow::Result<PathBuf> {
    units::user_unit_dir().context("neither XDG_CONFIG_HOME nor HOME is set")
}

async fn install(home: &DuctorHome, target_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load_config(home)?;
    let bins = BinDir::locate().context("find the directory of ductorctl")?;
    let services = instance::enabled(&config);
    for instance in &services {
        bins.service(instance.service)?;
    }
    let bin_dir = std::path::absolute(bins.dir()).context("resolve the binary directory")?;
    let options = RenderOptions {
        bin_dir,
        home: home.clone(),
        xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
    };
    let dry_run = target_dir.is_some();
    let dir = match target_dir {
        Some(dir) => dir,
        None => unit_dir()?,
    };
    for path in units::write_units(&dir, &options)? {
        println!("wrote {}", path.display());
    }
    if dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(units::systemctl_available(), "systemctl is not on PATH; units written only");
    units::systemctl(&["daemon-reload"]).await?;
    let mut enable: Vec<String> = services.iter().map(units::instance_unit).collect();
    enable.push("ductor.target".to_owned());
    let mut args = vec!["enable"];
    args.extend(enable.iter().map(String::as_str));
    units::systemctl(&args).await?;
    units::systemctl(&["start", "ductor.target"]).await?;
    println!("enabled and started: {}", enable.join(", "));
    println!("logs: journalctl --user -u 'ductor-*'   status: ductorctl status");
    Ok(ExitCode::SUCCESS)
}

/// Every unit name that may be enabled: main's units and the target, and an
/// instance of the templates for every `[[agents]]` entry.
fn unit_names(home: &DuctorHome) -> Vec<String> {
    let config = crate::cmd::config_or_default(home);
    let mut names: Vec<String> =
        UNITS.iter().filter(|u| !u.per_agent).map(|u| u.name.to_owned()).collect();
    for entry in &config.agents {
        names.extend(instance::possible_gateways(&entry.name).iter().map(units::instance_unit));
    }
    names
}

async fn uninstall(home: &DuctorHome) -> anyhow::Result<ExitCode> {
    let dir = unit_dir()?;
    if units::systemctl_available() {
        let _ = units::systemctl(&["stop", "ductor.target"]).await;
        let names = unit_names(home);
        let mut args = vec!["disable"];
        args.extend(names.iter().map(String::as_str));
        if let Err(error) = units::systemctl(&args).await {
            eprintln!("{error:#}");
        }
    }
    for unit in UNITS {
        let path = dir.join(unit.name);
        match std::fs::remove_file(&path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("remove {}", path.display())),
        }
    }
    if units::systemctl_available() {
        units::systemctl(&["daemon-reload"]).await?;
    }
    let _ = ServiceName::ALL;
    Ok(ExitCode::SUCCESS)
}
