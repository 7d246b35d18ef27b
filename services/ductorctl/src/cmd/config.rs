//! `ductorctl config check|docs`: validate `config.toml` (exit 64 naming the
//! key at fault) and print the config reference (`docs/config.md`).

use std::process::ExitCode;

use ductor_daemon::DuctorHome;

use crate::cmd::load_config;

/// `ductorctl config`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate config.toml: exit 0 when valid, 64 naming the offending key otherwise.
    Check,
    /// Print the reference of every key and its default, as Markdown (docs/config.md).
    Docs,
    /// Print the path of config.toml.
    Path,
}

/// Runs `config`.
pub fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    let path = home.config_file();
    match command {
        Command::Check => {
            load_config(home)?;
            if path.exists() {
                println!("{}: valid", path.display());
            } else {
                println!("{}: no such file; all defaults apply (valid)", path.display());
            }
        }
        Command::Docs => print!("{}", crate::docs::config_markdown()),
        Command::Path => println!("{}", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}
