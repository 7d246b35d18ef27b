//! Budget figures of the runner (filled in below).

fn main() {}
