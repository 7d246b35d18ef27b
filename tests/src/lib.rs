//! Black-box test support for ductor: the process harness (`harness`), a
//! test gateway on core's Attach stream (`gateway`) and fakes of the outside
//! world. Each module is one line here. Core's tests and benchmarks use it as
//! a dev-dependency, so it must never depend on a process crate.

pub mod fake_model;
pub mod fake_transcriber;
pub mod gateway;
pub mod harness;
pub mod real_cli;
