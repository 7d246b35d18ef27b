//! Process exit codes with a meaning shared by the services and the launcher.

/// The configuration is invalid (`EX_USAGE`); the offending key was printed.
pub const CONFIG: i32 = 64;

/// "Restart me on purpose": the launcher restarts without counting a crash.
pub const RESTART: i32 = 42;

/// A runtime failure after startup.
pub const FAILURE: i32 = 1;
