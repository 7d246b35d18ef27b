//! The ductor Matrix gateway: a matrix-sdk bot (E2EE, one device for life)
//! that turns room events into core's `InboundEvent`s and core's outbound
//! actions into room messages, reactions, edits and uploads.
//!
//! Code map: [`session`] (login once, restore after), [`access`] (allowlists,
//! mentions), [`inbound`] (events in) with [`media`] (downloads) and
//! [`buttons`] (reactions as button presses), [`outbound`] (per-chat delivery and streaming) with [`send`],
//! [`render`] (Markdown to Matrix HTML) and [`typing`], and [`gateway`]
//! (the wiring, including the shared `ductor-gateway-link` to core). Health is
//! served on the gateway's own socket.
// matrix-sdk's futures are deeply nested; spawning them needs a higher limit.
#![recursion_limit = "256"]

pub mod access;
pub mod buttons;
pub mod error;
pub mod gateway;
pub mod inbound;
pub mod media;
pub mod outbound;
pub mod render;
pub mod send;
pub mod session;
pub mod typing;

use ductor_daemon::daemon::{ServiceContext, serve};

/// Runs the service until shutdown: Health on the gateway's socket from the
/// start, the bot once logged in and synced.
pub async fn run(context: ServiceContext) -> anyhow::Result<()> {
    anyhow::ensure!(
        context.config.matrix.enabled,
        "the Matrix gateway is not enabled (set matrix.enabled = true in config.toml)"
    );
    let status = gateway::Status::default();
    let detail = status.clone();
    let health = context.health.clone().with_detail(move || detail.detail());
    let router = tonic::transport::Server::builder().add_service(health.into_server());
    let bot = gateway::run(
        &context.home,
        context.config.matrix.clone(),
        context.config_updates.clone(),
        context.shutdown.clone(),
        status,
        context.restart.clone(),
    );
    let bot = async {
        let result = bot.await;
        if result.is_err() {
            // Stop serving Health too: the process is about to exit.
            context.shutdown.cancel();
        }
        result
    };
    let served = async {
        let result = serve(&context, router).await;
        // Serving only ends early on failure (socket in use): stop the bot too.
        context.shutdown.cancel();
        result
    };
    let (served, ran) = tokio::join!(served, bot);
    ran?;
    served
}
