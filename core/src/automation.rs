//! Automation: what the agent does when nobody is typing.
//!
//! Cron jobs and webhooks are stored in core's SQLite ([`store`]), scheduled by
//! a heap of next-fire times driven by a [`clock::Clock`] ([`scheduler`]), and
//! run as one-shot runs in their own task folder ([`task_folder`]); webhooks
//! arrive over HTTP ([`webhook`]). [`heartbeat`] and [`cleanup`] are periodic
//! logic with no chat of their own. [`credential`] scopes what an agent run
//! may manage to the chat it was started for.
//!
//! The logic modules need nothing from the orchestrator. [`engine`] ties them
//! to core through one narrow port ([`core_port`]): one-shot runs, the durable
//! outbox with delivery receipts, injection into live sessions, and which
//! chats have a session; [`engine::manage`] holds the caller-scoped
//! management operations behind the `Automation` gRPC service ([`grpc`]) and
//! the `/cron` command; [`ports`] is the heartbeat's view of that port;
//! [`wiring`] plugs automation's answers and agent credentials into core.

pub mod cleanup;
pub mod clock;
pub mod core_port;
pub mod credential;
pub mod engine;
pub mod grpc;
pub mod heartbeat;
pub mod model;
pub mod ports;
pub mod quiet;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod task_folder;
pub mod webhook;
pub mod wiring;
