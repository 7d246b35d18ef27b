//! Unix-socket side of the transport: private directory, 0600 socket file,
//! `SO_PEERCRED` uid check, stale-socket cleanup, removal on shutdown.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};

use super::TransportError;

/// Creates `dir` (and parents) as 0700, or checks an existing one: it must be
/// ours and not reachable by group or others (a wrong mode on our own
/// directory is tightened, a foreign owner is refused).
pub fn prepare_socket_dir(dir: &Path) -> Result<(), TransportError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| TransportError::io(format!("create {}", dir.display()), e))?;
    let meta = std::fs::metadata(dir)
        .map_err(|e| TransportError::io(format!("stat {}", dir.display()), e))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(TransportError::UnsafeDirectory {
            path: dir.display().to_string(),
            reason: format!("owned by uid {}, not {uid}", meta.uid()),
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| TransportError::io(format!("chmod 0700 {}", dir.display()), e))?;
    }
    Ok(())
}

/// Binds a listening socket at `path` (its directory must exist and be
/// private, see [`prepare_socket_dir`]). A stale socket file left by a dead
/// process is replaced; a live one is refused with [`TransportError::InUse`].
pub async fn bind(path: &Path) -> Result<Incoming, TransportError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(TransportError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(|e| {
            TransportError::io(format!("remove stale socket {}", path.display()), e)
        })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| TransportError::io(format!("bind {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| TransportError::io(format!("chmod 0600 {}", path.display()), e))?;
    Ok(Incoming { listener, path: path.to_path_buf(), uid: nix::unistd::geteuid().as_raw() })
}

/// Dials the socket at `path`.
pub async fn connect_io(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path).await
}

/// Accepted connections whose peer runs under our uid. Removes the socket
/// file when dropped, so a stopped service leaves nothing behind.
pub struct Incoming {
    listener: UnixListener,
    path: PathBuf,
    uid: u32,
}

impl Incoming {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Stream for Incoming {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let (stream, _) = match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    // Transient accept errors (EMFILE, ECONNABORTED) must not end the server.
                    tracing::warn!(%error, socket = %self.path.display(), "accept failed");
                    continue;
                }
                Poll::Ready(Ok(accepted)) => accepted,
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.uid => return Poll::Ready(Some(Ok(stream))),
                Ok(cred) => {
                    tracing::warn!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), socket = %self.path.display(),
                        "refused connection from another uid");
                }
                Err(error) => tracing::warn!(%error, "refused connection without peer credentials"),
            }
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn socket_is_0600_in_0700_dir_and_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        prepare_socket_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let path = dir.join("x.sock");
        let mut incoming = bind(&path).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let client = tokio::spawn({
            let path = path.clone();
            async move { connect_io(&path).await.unwrap() }
        });
        let accepted = incoming.next().await.unwrap();
        assert!(accepted.is_ok(), "own uid must be accepted");
        client.await.unwrap();
        drop(incoming);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn second_bind_on_live_socket_is_refused_and_stale_one_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("y.sock");
        let live = bind(&path).await.unwrap();
        assert!(matches!(bind(&path).await, Err(TransportError::InUse(_))));
        // A stale file: the listener is gone but the file stays.
        std::mem::forget(live);
        let stale = std::os::unix::net::UnixListener::bind(tmp.path().join("z.sock")).unwrap();
        drop(stale);
        assert!(tmp.path().join("z.sock").exists());
        assert!(bind(&tmp.path().join("z.sock")).await.is_ok());
    }

    #[test]
    fn loose_dir_mode_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("loose");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_socket_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }
}
