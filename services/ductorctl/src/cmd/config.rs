//! `ductorctl config check|docs`: validate `config.toml` (exit 64 naming the
//! key at fault), name the changed keys the running services have not
//! applied (those that need a restart), and print the config reference
//! (`docs/config.md`).

use std::process::ExitCode;

use ductor_daemon::DuctorHome;
use ductor_daemon::reload::{Applied, Reader};

use crate::cmd::load_config;

/// `ductorctl config`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate config.toml: exit 0 when valid, 64 naming the offending key otherwise;
    /// then list, per running service, the changed keys that wait for a restart.
    Check,
    /// Print the reference of every key and its default, as Markdown (docs/config.md).
    Docs,
    /// Print the path of config.toml.
    Path,
}

/// Runs `config`.
pub async fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    let path = home.config_file();
    match command {
        Command::Check => {
            load_config(home)?;
            if path.exists() {
                println!("{}: valid", path.display());
            } else {
                println!("{}: no such file; all defaults apply (valid)", path.display());
            }
            print_pending(home).await?;
        }
        Command::Docs => print!("{}", crate::docs::config_markdown()),
        Command::Path => println!("{}", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// For each running service, the keys of the file it does not run with yet.
async fn print_pending(home: &DuctorHome) -> anyhow::Result<()> {
    let file = crate::cmd::reload::file_table(home)?;
    for running in crate::cmd::reload::running_services(home).await {
        let (service, name) = (running.service, &running.name);
        let Some(applied) =
            Applied::read(&running.home, Reader::Service(service)).filter(|a| a.pid == running.pid)
        else {
            continue;
        };
        let reader = Reader::Service(service);
        let (live, restart) = applied.pending(reader, &file);
        if !restart.is_empty() {
            println!(
                "{name}: needs a restart (`{}`) for: {}",
                reader.restart_hint(),
                restart.join(", ")
            );
        }
        if !live.is_empty() {
            println!("{name}: not applied yet (`ductorctl reload`): {}", live.join(", "));
        }
    }
    crate::cmd::reload::print_launcher(home, &file);
    Ok(())
}
