//! gRPC over local sockets: Unix sockets on Unix, named pipes on Windows.
//!
//! Servers call [`bind`] and hand the returned [`Incoming`] stream to
//! `tonic::transport::Server::serve_with_incoming_shutdown`. Clients call
//! [`connect`], which returns a lazy [`Channel`]: it dials on first use and
//! dials again after the peer restarts, so a service restart costs callers a
//! pause, not a manual step. Long-lived streams re-establish themselves with a
//! [`Backoff`].
//!
//! Access control on Unix is fourfold: the socket directory is 0700, the
//! socket file 0600, every accepted connection's peer credentials
//! (`SO_PEERCRED`) must carry our own uid, and the client must open with the
//! local token kept in the socket directory (see `transport/unix.rs` for why);
//! services learn who called from the [`PeerInfo`] in the request extensions.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{Connection, Incoming, bind, bind_with, connect_io, prepare_socket_dir};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{Connection, Incoming, bind, bind_with, connect_io, prepare_socket_dir};

/// Errors binding or preparing a local socket.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Another live process already serves this socket.
    #[error("{0} is already served by a running process")]
    InUse(String),
    /// The socket directory has unsafe ownership or permissions.
    #[error("socket directory {path}: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error, with what was being done.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, as a verb phrase.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { action: action.into(), source }
    }
}

/// Options for [`bind_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BindOptions {
    /// Admit clients that cannot present the local token (agent CLIs calling
    /// `ductorctl` from inside the sandbox). Their [`PeerInfo::privileged`]
    /// is false, and services must only let them do what an agent may.
    pub allow_unprivileged: bool,
}

/// Who is on the other end of a server-side connection; tonic puts it in
/// every request's extensions (`request.extensions().get::<PeerInfo>()`).
/// In-memory test connections carry none: treat absence as privileged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's uid (always ours: others are refused).
    pub uid: u32,
    /// The peer's pid, when the kernel reports it.
    pub pid: Option<i32>,
    /// The peer presented the local token: a ductor process or the operator.
    pub privileged: bool,
}

impl PeerInfo {
    /// True unless the request came over a local socket without the token.
    pub fn is_privileged<T>(request: &tonic::Request<T>) -> bool {
        request.extensions().get::<PeerInfo>().is_none_or(|peer| peer.privileged)
    }
}

/// A lazy channel to the service listening at `path`.
///
/// Nothing is dialled until the first call; a broken connection is dialled
/// again on the next call.
pub fn connect(path: impl AsRef<std::path::Path>) -> Channel {
    let path = path.as_ref().to_path_buf();
    // The URI is a placeholder: the connector ignores it.
    Endpoint::from_static("http://ductor.local")
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { connect_io(&path).await.map(hyper_util::rt::TokioIo::new) }
        }))
}

/// Capped exponential backoff for reconnect loops.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, current: min }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

impl Default for Backoff {
    /// 50 ms doubling to 2 s: a restarted peer is found within ~2 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 35, 35]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }
}
