//! The webhook port's connections, bounded before HTTP sees them: at most
//! `max_connections` open at once and `max_connections_per_address` from one
//! address (more are closed on accept), and each connection closed when the
//! client sends nothing for `idle` (headers, body or keep-alive alike) or
//! when it has lived `lifetime`. So a slow or flooding client holds a few
//! sockets for a bounded time and cannot exhaust core's file descriptors
//! (core is also the gRPC server and the database).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections from one address.
    pub per_address: usize,
    /// Longest silence from the client.
    pub idle: Duration,
    /// Longest life of a connection.
    pub lifetime: Duration,
}

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A TCP listener that hands out only connections within the limits.
pub struct BoundedListener {
    inner: TcpListener,
    limits: ConnectionLimits,
    open: Arc<Semaphore>,
    per_address: Counts,
    refused: u64,
}

impl BoundedListener {
    /// Bounds `inner` by `limits`.
    pub fn new(inner: TcpListener, limits: ConnectionLimits) -> Self {
        let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        Self { inner, limits, open, per_address: Counts::default(), refused: 0 }
    }

    fn admit(&self, ip: IpAddr) -> Option<(OwnedSemaphorePermit, AddressSlot)> {
        let permit = self.open.clone().try_acquire_owned().ok()?;
        let slot = AddressSlot::take(&self.per_address, ip, self.limits.per_address)?;
        Some((permit, slot))
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        loop {
            let (stream, address) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.admit(address.ip()) {
                Some((permit, slot)) => {
                    return (Bounded::new(stream, self.limits, permit, slot), address);
                }
                None => {
                    self.refused += 1;
                    if self.refused.is_power_of_two() {
                        tracing::warn!(
                            %address,
                            refused = self.refused,
                            "webhook connection refused: too many open connections"
                        );
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One address's share of the open connections, given back on drop.
pub struct AddressSlot {
    counts: Counts,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(counts: &Counts, ip: IpAddr, limit: usize) -> Option<Self> {
        let mut map = counts.locked();
        let count = map.entry(ip).or_default();
        if *count >= limit.max(1) {
            return None;
        }
        *count += 1;
        Some(Self { counts: counts.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.counts.locked();
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// An admitted connection: closed after `idle` without client bytes or at
/// the end of its lifetime; its place is given back when it is dropped.
pub struct Bounded {
    stream: TcpStream,
    idle: Duration,
    silence: Pin<Box<Sleep>>,
    end_of_life: Instant,
    _permit: OwnedSemaphorePermit,
    _slot: AddressSlot,
}

impl Bounded {
    fn new(
        stream: TcpStream,
        limits: ConnectionLimits,
        permit: OwnedSemaphorePermit,
        slot: AddressSlot,
    ) -> Self {
        let now = Instant::now();
        Self {
            stream,
            idle: limits.idle,
            silence: Box::pin(tokio::time::sleep_until(now + limits.idle.min(limits.lifetime))),
            end_of_life: now + limits.lifetime,
            _permit: permit,
            _slot: slot,
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "webhook client too slow")
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if Instant::now() >= self.end_of_life {
            return Poll::Ready(Err(Self::timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = (Instant::now() + self.idle).min(self.end_of_life);
                    self.silence.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.silence.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Self::timed_out())),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for Bounded {
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
