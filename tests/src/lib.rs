//! Black-box test support for ductor: the process harness (`harness`) and
//! fakes of the outside world. Each module is one line here.

pub mod harness;
pub mod fake_model;
