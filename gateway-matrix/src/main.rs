//! Entry point of the ductor matrix service: all work is in the library.

fn main() -> std::process::ExitCode {
    ductor_daemon::daemon::main(
        ductor_daemon::ServiceName::Matrix,
        env!("CARGO_PKG_VERSION"),
        ductor_gateway_matrix::run,
    )
}
