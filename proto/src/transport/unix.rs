//! Unix-socket side of the transport: private directory, 0600 socket file,
//! `SO_PEERCRED` uid check, a local-token preamble, stale-socket cleanup,
//! removal on shutdown.
//!
//! Why a token on top of the uid check: agent CLIs run under the same uid as
//! ductor. Inside the runner's sandbox they cannot read the runtime directory,
//! but Landlock does not govern `connect(2)` on a pathname socket, so the uid
//! check alone would let an agent dial core or the runner and act as a
//! gateway. Every client therefore opens with one preamble line:
//! `DUCTOR1 L <token>` when it can read `<socket dir>/.local-token` (a ductor
//! process or the operator's `ductorctl`), `DUCTOR1 A` otherwise (an agent).
//! A listener accepts `A` connections only when bound with
//! [`BindOptions::allow_unprivileged`], and marks every connection with a
//! [`PeerInfo`] that services read from the request extensions.

use std::future::Future as _;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{BindOptions, PeerInfo, TransportError};

/// The token file, inside the socket directory.
const TOKEN_FILE: &str = ".local-token";
/// Longest accepted preamble line.
const MAX_PREAMBLE: usize = 128;
/// A client that sends no preamble within this time is dropped.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections still being admitted (preamble not read) at once; more are
/// dropped at accept, so a flood cannot use up the service's descriptors
/// (review L2).
const MAX_PENDING: usize = 256;
/// Live tokenless (agent) connections at once; privileged ones are not capped.
const MAX_UNPRIVILEGED: usize = 64;
/// Longest life of a tokenless connection: an agent's `ductorctl` call is
/// short, and a connection held open for good is a descriptor taken.
const UNPRIVILEGED_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Creates `dir` (and parents) as 0700, or checks an existing one: it must be
/// ours and not reachable by group or others (a wrong mode on our own
/// directory is tightened, a foreign owner is refused). Also creates the
/// local token (0600) when there is none.
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
    ensure_token(dir).map(|_| ())
}

/// Reads the directory's local token, creating it (0600, exclusively, so two
/// services starting at once agree) when missing.
fn ensure_token(dir: &Path) -> Result<String, TransportError> {
    let path = dir.join(TOKEN_FILE);
    if let Ok(token) = read_token(&path) {
        return Ok(token);
    }
    let token = random_token().map_err(|e| TransportError::io("read /dev/urandom", e))?;
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
    match created {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(token.as_bytes())
                .map_err(|e| TransportError::io(format!("write {}", path.display()), e))?;
            Ok(token)
        }
        // Another process won the race: use its token.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            read_token(&path).map_err(|e| TransportError::io(format!("read {}", path.display()), e))
        }
        Err(error) => Err(TransportError::io(format!("create {}", path.display()), error)),
    }
}

fn read_token(path: &Path) -> io::Result<String> {
    let token = std::fs::read_to_string(path)?;
    let token = token.trim().to_owned();
    if token.len() < 32 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "local token is too short"));
    }
    Ok(token)
}

fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Constant-time equality, so the token cannot be guessed byte by byte.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds a listening socket at `path` (its directory must exist and be
/// private, see [`prepare_socket_dir`]) accepting only token-holding clients.
pub async fn bind(path: &Path) -> Result<Incoming, TransportError> {
    bind_with(path, BindOptions::default()).await
}

/// Like [`bind`], with options. A stale socket file left by a dead process is
/// replaced; a live one is refused with [`TransportError::InUse`].
pub async fn bind_with(path: &Path, options: BindOptions) -> Result<Incoming, TransportError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let token = ensure_token(dir)?;
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
    let (sender, receiver) = mpsc::channel(64);
    let acceptor = Acceptor {
        uid: nix::unistd::geteuid().as_raw(),
        token: Arc::from(token.into_bytes()),
        options,
        socket: Arc::from(path.display().to_string()),
        pending: Arc::new(Semaphore::new(MAX_PENDING)),
        unprivileged: Arc::new(Semaphore::new(MAX_UNPRIVILEGED)),
    };
    let task = tokio::spawn(acceptor.run(listener, sender));
    Ok(Incoming { receiver, path: path.to_path_buf(), task })
}

/// Dials the socket at `path` and sends the preamble.
pub async fn connect_io(path: &Path) -> io::Result<Connection> {
    let token_path = path.parent().unwrap_or(Path::new(".")).join(TOKEN_FILE);
    let preamble = match read_token(&token_path) {
        Ok(token) => format!("DUCTOR1 L {token}\n"),
        Err(_) => "DUCTOR1 A\n".to_owned(),
    };
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(preamble.as_bytes()).await?;
    Ok(Connection { stream, peer: PeerInfo::default(), limit: None })
}

struct Acceptor {
    uid: u32,
    token: Arc<[u8]>,
    options: BindOptions,
    socket: Arc<str>,
    pending: Arc<Semaphore>,
    unprivileged: Arc<Semaphore>,
}

impl Acceptor {
    async fn run(self, listener: UnixListener, sender: mpsc::Sender<io::Result<Connection>>) {
        let this = Arc::new(self);
        let mut refused = 0u64;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Transient accept errors (EMFILE, ECONNABORTED) must not end the server.
                    tracing::warn!(%error, socket = %this.socket, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if sender.is_closed() {
                break;
            }
            let Ok(pending) = Arc::clone(&this.pending).try_acquire_owned() else {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(socket = %this.socket, refused, "too many connections being admitted; dropping");
                }
                continue;
            };
            let admitter = Arc::clone(&this);
            let admitted = sender.clone();
            tokio::spawn(async move {
                let connection = admitter.admit(stream).await;
                drop(pending);
                if let Some(connection) = connection {
                    let _ = admitted.send(Ok(connection)).await;
                }
            });
        }
    }

    /// Checks peer credentials and the preamble; `None` drops the connection.
    async fn admit(&self, mut stream: UnixStream) -> Option<Connection> {
        let cred = match stream.peer_cred() {
            Ok(cred) if cred.uid() == self.uid => cred,
            Ok(cred) => {
                tracing::warn!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), socket = %self.socket,
                    "refused connection from another uid");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, socket = %self.socket, "refused connection without peer credentials");
                return None;
            }
        };
        let line = match tokio::time::timeout(PREAMBLE_TIMEOUT, read_line(&mut stream)).await {
            Ok(Ok(line)) => line,
            _ => {
                tracing::warn!(peer_pid = ?cred.pid(), socket = %self.socket, "refused connection without a preamble");
                return None;
            }
        };
        let privileged = match line.strip_prefix("DUCTOR1 ") {
            Some(rest) if let Some(token) = rest.strip_prefix("L ") => {
                same_token(token.as_bytes(), &self.token)
            }
            Some("A") => false,
            _ => {
                tracing::warn!(peer_pid = ?cred.pid(), socket = %self.socket, "refused connection with a bad preamble");
                return None;
            }
        };
        if !privileged && !self.options.allow_unprivileged {
            tracing::warn!(peer_pid = ?cred.pid(), socket = %self.socket,
                "refused connection without the local token (an agent, or a wrong token)");
            return None;
        }
        let limit = if privileged {
            None
        } else {
            let Ok(permit) = Arc::clone(&self.unprivileged).try_acquire_owned() else {
                tracing::warn!(peer_pid = ?cred.pid(), socket = %self.socket,
                    "refused a tokenless connection: {MAX_UNPRIVILEGED} are open");
                return None;
            };
            Some(Limit {
                _permit: permit,
                deadline: Box::pin(tokio::time::sleep(UNPRIVILEGED_LIFETIME)),
            })
        };
        let peer = PeerInfo { uid: cred.uid(), pid: cred.pid(), privileged };
        Some(Connection { stream, peer, limit })
    }
}

/// Reads one `\n`-terminated line byte by byte (no read-ahead: what follows
/// is HTTP/2 and belongs to the server).
async fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::with_capacity(MAX_PREAMBLE);
    loop {
        let byte = stream.read_u8().await?;
        if byte == b'\n' {
            return String::from_utf8(line)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "preamble"));
        }
        if line.len() >= MAX_PREAMBLE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "preamble too long"));
        }
        line.push(byte);
    }
}

/// Admitted connections. Removes the socket file when dropped, so a stopped
/// service leaves nothing behind.
pub struct Incoming {
    receiver: mpsc::Receiver<io::Result<Connection>>,
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Incoming {
    /// The socket path.
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

impl Drop for Incoming {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One local-socket connection, carrying who is on the other end.
pub struct Connection {
    stream: UnixStream,
    peer: PeerInfo,
    /// For a tokenless peer: its place among the capped ones, and when the
    /// connection ends at the latest.
    limit: Option<Limit>,
}

struct Limit {
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Connection {
    /// An error once a tokenless connection has lived its lifetime.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let limit = self.limit.as_mut()?;
        limit.deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(io::ErrorKind::TimedOut, "tokenless connection lifetime reached")
        })
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
