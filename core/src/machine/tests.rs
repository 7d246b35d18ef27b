//! Unit tests of the orchestrator state machine, without sockets.
