//! The one link every gateway keeps to core: the `Core.Attach` stream.
//!
//! Telegram, Matrix and any later gateway speak the same contract, so they
//! share one implementation of it instead of each growing its own:
//!
//! - **Inbound, never lost.** An event is kept until core confirms it with
//!   `InboundAccepted` and re-sent after every reconnect (core drops
//!   duplicates by `event_id`). The number of unconfirmed events is bounded;
//!   when core stops confirming, [`InboundSender::send`] waits (back-pressure
//!   reaches the platform poller, which then leaves updates on the platform's
//!   side) and the wait is logged and shown in [`LinkStatus::detail`]. Nothing
//!   is ever dropped to make room. A [`Receipt`] tells the caller when core has
//!   the event, so a poller can confirm updates to its platform only then.
//! - **Outbound, delivered once.** Actions go to the gateway's delivery through
//!   a bounded channel; when delivery falls behind, the link stops reading
//!   core's stream (gRPC flow control pushes back on core, whose durable
//!   actions wait in its outbox). An action core re-sends after a reconnect is
//!   acknowledged again from memory when it was delivered, and left alone
//!   while its delivery is still running.
//! - **One reconnect policy.** Any end of the stream redials with the
//!   transport's [`Backoff`], reset by core's `Welcome`.
//!
//! [`testing`] (feature `testing`) is the scripted fake core the gateways'
//! tests and benches run against, in memory or on a real socket.

mod link;
mod outcomes;

#[cfg(feature = "testing")]
pub mod testing;

pub use link::{
    AckSender, Attached, InboundSender, LinkClosed, LinkOptions, LinkStatus, Receipt, spawn,
};

use ductor_proto::pb;

/// A gateway's `Hello`: its transport name, capabilities and version, with a
/// fresh instance id (core tells restarts apart by it).
pub fn hello(transport: &str, capabilities: pb::Capabilities, version: &str) -> pb::Hello {
    pb::Hello {
        transport: transport.to_owned(),
        capabilities: Some(capabilities),
        version: version.to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        scope: Vec::new(),
        agent: String::new(),
    }
}
