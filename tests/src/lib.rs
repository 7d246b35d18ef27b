//! Black-box test support for ductor: the process harness (`harness`) and
//! fakes of the outside world. Each module is one line here.

pub mod fake_model;
pub mod harness;
