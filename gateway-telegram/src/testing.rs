//! Test support (feature `testing`): a fake Telegram Bot API over loopback
//! HTTP ([`FakeBotApi`]) and builders for the updates a user would cause
//! ([`updates`]), and a harness that runs a whole gateway against it and the
//! shared fake core ([`FakeCore`], from `ductor-gateway-link`) ([`Harness`]).
//!
//! The fake speaks the real wire format, so the gateway under test runs its
//! real teloxide client against it. It records every call, keeps the text
//! of every message it "sent", serves files for download, and can be told
//! to fail the next calls the way Telegram does (429 with `retry_after`,
//! "can't parse entities", "message is not modified").

mod fake_api;
pub mod harness;
pub mod updates;

pub use ductor_gateway_link::testing::FakeCore;
pub use fake_api::{BOT_ID, BOT_USERNAME, Call, FakeBotApi, Fault, FaultKind};
pub use harness::{Harness, Options};
