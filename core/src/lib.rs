//! ductor-core: the orchestrator and the only owner of state.
//!
//! Gateways attach over `Core.Attach` and bring inbound events; the runner
//! executes turns; core decides everything in between. Layers, from the edge
//! inwards:
//!
//! - [`service`]: the gRPC `Core` service (Attach stream, Describe);
//! - [`outbox`]: numbered outbound actions per transport, durable ones kept in
//!   SQLite until acknowledged and re-sent on reconnect;
//! - [`driver`]: the async loop executing the machine's effects (runner calls,
//!   store writes, outbox sends), and [`driver::CoreHandle`] for automation;
//! - [`machine`]: the sans-I/O orchestrator (sessions, queue, commands, turns);
//! - [`store`], [`session`], [`markup`], [`commands`], [`workspace`], [`wire`];
//! - [`memory`]: the periodic compaction of the main memory;
//! - [`install`]: how this ductor was installed, for `/upgrade`;
//! - [`reload`]: the keys core applies from a reloaded `config.toml`;
//! - [`restart`]: `/restart` of ductor or one service, and the "back" notices;
//! - [`rules`]: the rule files of the workspace and task folders kept in sync;
//! - [`import`]: the `Import` service, state brought from Python ductor (`ductorctl import`).

pub mod agents;
pub mod automation;
pub mod background;
pub mod commands;
pub mod driver;
pub mod import;
pub mod install;
pub mod machine;
pub mod markup;
pub mod memory;
pub mod model;
pub mod outbox;
pub mod reload;
pub mod restart;
pub mod rules;
pub mod runner;
pub mod service;
pub mod session;
pub mod store;
pub mod wire;
pub mod workspace;

mod app;

pub use app::{machine_config, run};
