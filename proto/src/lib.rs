//! The `ductor.v1` wire protocol shared by every ductor process.
//!
//! This crate is used by both clients and servers: keep it slim. It holds the
//! generated gRPC code (`pb`), the one error type for proto-to-domain
//! conversion (`ProtocolError`, mapped to `tonic::Status`), the local-socket
//! transport (Unix sockets, named pipes on Windows) and, behind the `testing`
//! feature, in-memory client/server pairs. It has no runtime setup, no
//! tracing setup and no business logic.

pub mod error;
pub mod health;
pub mod transport;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::ProtocolError;

/// Generated protobuf and gRPC types for package `ductor.v1`.
#[allow(clippy::all, unused_qualifications, rust_2018_idioms, missing_docs)]
pub mod pb {
    tonic::include_proto!("ductor.v1");
}

/// Re-exported so process crates build servers and channels without naming
/// tonic's module layout.
pub use tonic::transport::{Channel, Server};
