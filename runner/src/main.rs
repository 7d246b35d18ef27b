//! Entry point of the ductor runner service: all work is in the library.

fn main() -> std::process::ExitCode {
    ductor_daemon::daemon::main(
        ductor_daemon::ServiceName::Runner,
        env!("CARGO_PKG_VERSION"),
        ductor_runner::run,
    )
}
