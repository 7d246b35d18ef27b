//! Entry point of the ductor core service: all work is in the library.

fn main() -> std::process::ExitCode {
    ductor_daemon::daemon::main(
        ductor_daemon::ServiceName::Core,
        env!("CARGO_PKG_VERSION"),
        ductor_core::run,
    )
}
