//! In-memory gRPC pairs for tests: a server on one end of a
//! `tokio::io::duplex`, a client channel on the other. No sockets, no ports.

use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint};

/// Serves `router` in the background and returns a channel connected to it.
///
/// Each (re)connection of the channel opens a fresh duplex pair served by the
/// same router, so clients may reconnect like they would over a socket.
pub async fn pair(router: Router) -> Channel {
    let (sender, receiver) =
        tokio::sync::mpsc::unbounded_channel::<std::io::Result<tokio::io::DuplexStream>>();
    let incoming = tokio_stream::wrappers::UnboundedReceiverStream::new(receiver);
    tokio::spawn(async move {
        if let Err(error) = router.serve_with_incoming(incoming).await {
            tracing::warn!(%error, "in-memory server ended");
        }
    });
    Endpoint::from_static("http://in-memory.ductor")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let sent = sender.send(Ok(server));
            async move {
                sent.map_err(|_| std::io::Error::other("in-memory server is gone"))?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
            }
        }))
        .await
        .expect("an in-memory connector cannot fail to connect")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::health::{HealthService, check};
    use crate::pb;

    #[tokio::test]
    async fn health_over_in_memory_pair() {
        let router = tonic::transport::Server::builder().add_service(
            HealthService::new("core", "9.9.9").with_detail(|| "ok".to_owned()).into_server(),
        );
        let channel = super::pair(router).await;
        let answer = check(channel, Duration::from_secs(5)).await.expect("health answers");
        assert_eq!(answer.service, "core");
        assert_eq!(answer.version, "9.9.9");
        assert_eq!(answer.detail, "ok");
        assert_eq!(answer.status, pb::ServingStatus::Serving as i32);
        assert_eq!(answer.pid, std::process::id());
    }
}
