//! Shared daemon plumbing for every ductor process and for `ductorctl`.
//!
//! - [`config`]: the one typed `config.toml` schema (a section per service),
//!   loaded and validated before any I/O; unknown keys are errors.
//! - [`paths`]: where `$DUCTOR_HOME`, sockets, logs, state and the workspace live.
//! - [`logging`]: the one tracing setup (`DUCTOR_LOG`, `DUCTOR_LOG_FORMAT`).
//! - [`shutdown`]: SIGTERM/SIGINT as a `CancellationToken`.
//! - [`notify`]: `READY=1` / `STOPPING=1` for systemd `Type=notify` units.
//! - [`daemon`]: the common `main` of a service binary.
//! - [`reload`]: config hot reload (file watch, SIGHUP, the live/restart key table).
//! - [`sync`]: the one policy for poisoned locks (taken over, never propagated).
//!
//! Process crates depend on this crate and on `ductor-proto`, never on each other.

pub mod config;
pub mod control;
pub mod daemon;
pub mod exit;
pub mod logging;
pub mod notify;
pub mod paths;
pub mod reload;
pub mod safe_fs;
pub mod secret;
pub mod shutdown;
pub mod sync;

pub use config::{Config, ConfigError};
pub use paths::{DuctorHome, ServiceName};
pub use secret::Secret;
