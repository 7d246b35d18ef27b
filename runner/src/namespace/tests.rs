//! Fenced spawns on this kernel (skipped where user namespaces are refused).
