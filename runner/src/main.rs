//! Entry point of the ductor runner service: all work is in the library.
//! `ductor-runner probe [--home PATH]` prints the `Probe` answer as JSON and
//! exits instead of serving (`ductorctl doctor` uses it when no runner runs).

use ductor_daemon::ServiceName;
use ductor_runner::probe;

fn main() -> std::process::ExitCode {
    let version = env!("CARGO_PKG_VERSION");
    let mut args = std::env::args().skip(1).peekable();
    if args.next_if(|arg| arg == probe::COMMAND.name).is_some() {
        return ductor_daemon::daemon::oneshot(
            ServiceName::Runner,
            version,
            probe::COMMAND,
            args,
            probe::oneshot,
        );
    }
    ductor_daemon::daemon::main(ServiceName::Runner, version, ductor_runner::run)
}
