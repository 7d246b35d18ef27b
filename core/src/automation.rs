//! Automation: what the agent does when nobody is typing.
//!
//! Cron jobs and webhooks are stored in core's SQLite ([`store`]), scheduled by
//! a heap of next-fire times driven by a [`clock::Clock`] ([`scheduler`]), and
//! run as one-shot runs in their own task folder ([`task_folder`]); webhooks
//! arrive over HTTP ([`webhook`]). [`heartbeat`] and [`cleanup`] are periodic
//! logic with no chat of their own. [`credential`] scopes what an agent run
//! may manage to the chat it was started for.
//!
//! These modules need nothing from the orchestrator: they talk to it through
//! the small traits in [`sink`], which core implements on top of its runs,
//! sessions and durable outbox.

pub mod cleanup;
pub mod clock;
pub mod credential;
pub mod heartbeat;
pub mod model;
pub mod quiet;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod task_folder;
pub mod webhook;
