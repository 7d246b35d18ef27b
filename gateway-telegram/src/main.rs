//! Entry point of the ductor telegram service: all work is in the library.

fn main() -> std::process::ExitCode {
    ductor_daemon::daemon::main(
        ductor_daemon::ServiceName::Telegram,
        env!("CARGO_PKG_VERSION"),
        ductor_gateway_telegram::run,
    )
}
