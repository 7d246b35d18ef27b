//! Links the gateway binary with packed relative relocations (DT_RELR), so
//! its relocation table does not stay resident: see `services/build/relr.rs`.

#[path = "../services/build/relr.rs"]
mod relr;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../services/build/relr.rs");
    relr::link_packed_relocations();
}
