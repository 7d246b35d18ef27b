//! Named-pipe side of the transport (Windows), through `interprocess`.
//!
//! A socket path such as `C:\Users\me\.ductor\run\core.sock` maps to the pipe
//! `\\.\pipe\ductor-<file stem>-<hash of the path>`, so two ductor homes never
//! share a pipe. Pipes are created for the current user only by
//! `interprocess`'s default security descriptor. Not compiled on the Linux
//! build machines: keep it small and boring.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use interprocess::local_socket::tokio::{Listener, Stream as PipeStream, prelude::*};
use interprocess::local_socket::{GenericNamespaced, ListenerOptions, Name, ToNsName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::{BindOptions, PeerInfo, TransportError};

fn pipe_name(path: &Path) -> io::Result<Name<'static>> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("ductor");
    format!("ductor-{stem}-{:016x}", hasher.finish())
        .to_ns_name::<GenericNamespaced>()
        .map(|n| n.into_owned())
}

/// Directories need no special mode on Windows; create them.
pub fn prepare_socket_dir(dir: &Path) -> Result<(), TransportError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| TransportError::io(format!("create {}", dir.display()), e))
}

/// Creates the named pipe listener for `path`.
pub async fn bind(path: &Path) -> Result<Incoming, TransportError> {
    bind_with(path, BindOptions::default()).await
}

/// Like [`bind`]. Pipes are private to the current user, and Windows runs get
/// no agent sandbox, so every client is privileged and the options are moot.
pub async fn bind_with(path: &Path, _options: BindOptions) -> Result<Incoming, TransportError> {
    let name = pipe_name(path).map_err(|e| TransportError::io("name pipe", e))?;
    let listener: Listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .map_err(|e| TransportError::io(format!("create pipe for {}", path.display()), e))?;
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await.map(Connection);
            if sender.send(accepted).await.is_err() {
                break;
            }
        }
    });
    Ok(Incoming { receiver, path: path.to_path_buf() })
}

/// Dials the pipe for `path`.
pub async fn connect_io(path: &Path) -> io::Result<Connection> {
    PipeStream::connect(pipe_name(path)?).await.map(Connection)
}

/// Accepted pipe connections.
pub struct Incoming {
    receiver: mpsc::Receiver<io::Result<Connection>>,
    path: PathBuf,
}

impl Incoming {
    /// The socket path this pipe stands for.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// A pipe connection that tonic can serve.
pub struct Connection(PipeStream);

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        PeerInfo { uid: 0, pid: None, privileged: true }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
