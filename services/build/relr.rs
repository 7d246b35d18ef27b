//! Links a service binary with packed relative relocations (DT_RELR); used
//! by the gateways' `build.rs` (`#[path]` module), not a crate of its own.
//!
//! A position-independent Rust binary carries one 24-byte `R_X86_64_RELATIVE`
//! entry per pointer in its read-only data (vtables, string and dispatch
//! tables): 2.2 MB for the Matrix gateway, 0.8 MB for the Telegram one. The
//! dynamic loader reads all of it at start, so it stays resident for the life
//! of the process. RELR encodes the same relocations in a few kilobytes.
//!
//! Only glibc 2.36 and later can load such a binary (the linker records a
//! need for the `GLIBC_ABI_DT_RELR` version), so the flag is passed only when
//! building for the machine we run on and its C library has that version.

use std::env;

/// Asks cargo to link this package's binaries with `-z pack-relative-relocs`
/// when the result can run here.
pub fn link_packed_relocations() {
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|abi| abi == "gnu");
    if linux_gnu && target == host && libc_knows_relr() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc defines the `GLIBC_ABI_DT_RELR` version.
fn libc_knows_relr() -> bool {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let candidates = [
        format!("/lib/{arch}-linux-gnu/libc.so.6"),
        format!("/usr/lib/{arch}-linux-gnu/libc.so.6"),
        "/lib64/libc.so.6".to_owned(),
        "/usr/lib64/libc.so.6".to_owned(),
        "/usr/lib/libc.so.6".to_owned(),
    ];
    let needle = b"GLIBC_ABI_DT_RELR";
    candidates
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .any(|libc| libc.windows(needle.len()).any(|window| window == needle))
}
