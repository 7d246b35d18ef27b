//! The top-level command line: global options and the subcommand.
//!
//! Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::Parser;
use ductor_daemon::DuctorHome;

/// Start, stop and inspect ductor: chat-driven coding agents (claude, codex,
/// gemini) behind Telegram and Matrix.
#[derive(Debug, Parser)]
#[command(name = "ductorctl", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The ductor home directory holding config.toml, state, logs and the workspace.
    #[arg(long, global = true, env = "DUCTOR_HOME", value_name = "PATH")]
    pub home: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: crate::cmd::Command,
}

impl Cli {
    /// The resolved home: `--home`/`DUCTOR_HOME`, `DUCTOR_RUN_DIR`, `XDG_RUNTIME_DIR`, `HOME`.
    pub fn ductor_home(&self) -> DuctorHome {
        DuctorHome::resolve(
            self.home.clone(),
            std::env::var_os("DUCTOR_RUN_DIR").map(PathBuf::from),
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }
}
