//! `ductorctl`: the launcher and control CLI of ductor.
//!
//! It starts the services (`up`), supervises and restarts them, stops them
//! (`down`), reports on them (`status`, `logs`, `doctor`), writes and checks
//! the config (`init`, `config check`) and installs systemd user units
//! (`service`). Code map:
//!
//! - [`cli`]: the top-level clap parser; [`cmd`]: one module per subcommand
//!   and the one `Command` enum.
//! - [`supervisor`]: the one place that spawns processes, and the per-service
//!   supervision loop (start, Health, restart with backoff, give up, stop).
//! - [`instance`]: supervised instances, a service serving one agent
//!   (`telegram@researcher`).
//! - [`requests`]: the launcher's side of control requests (start, stop,
//!   restart one instance).
//! - [`state`]: the launcher's state file that `status` reads.
//! - [`lock`]: the single-instance lock per `$DUCTOR_HOME`.
//! - [`procs`]: signalling and probing processes by pid (pid files, `down`).
//! - [`bins`]: where the service binaries are.
//! - [`probe`]: the runner's answer on the provider CLIs (`doctor`).
//! - [`units`]: rendering the systemd user units; [`docs`]: `docs/config.md`.
//! - [`import`]: moving in from Python ductor (`ductorctl import`).

pub mod bins;
pub mod cli;
pub mod cmd;
pub mod docs;
pub mod import;
pub mod instance;
pub mod lock;
pub mod probe;
pub mod procs;
pub mod requests;
pub mod state;
pub mod supervisor;
pub mod units;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line, runs the command on a single-threaded runtime and
/// maps the outcome to an exit code (64 for an invalid configuration).
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ductorctl: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cmd::dispatch(cli));
    // Leave blocking readers (stdin prompts, `logs -f`) behind, never wait on them.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            if let Some(config) = error.downcast_ref::<ductor_daemon::ConfigError>() {
                eprintln!("ductorctl: invalid configuration: {config}");
                return ExitCode::from(ductor_daemon::exit::CONFIG as u8);
            }
            eprintln!("ductorctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
