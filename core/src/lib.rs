//! The ductor core service (skeleton: serves Health on its socket).

pub mod automation;

use ductor_daemon::daemon::{ServiceContext, serve};

/// Runs the service until shutdown.
pub async fn run(context: ServiceContext) -> anyhow::Result<()> {
    let router =
        tonic::transport::Server::builder().add_service(context.health.clone().into_server());
    serve(&context, router).await
}
