//! Entry point of `ductorctl`: all work is in the library.

fn main() -> std::process::ExitCode {
    ductorctl::main()
}
