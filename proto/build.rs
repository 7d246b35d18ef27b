//! Generates the `ductor.v1` gRPC code into `OUT_DIR` with a vendored `protoc`,
//! so building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: a build script is single-threaded; nothing else reads the
        // environment concurrently.
        #[allow(clippy::disallowed_methods)]
        unsafe {
            std::env::set_var("PROTOC", protoc)
        };
    }
    let files = [
        "proto/ductor/v1/health.proto",
        "proto/ductor/v1/runner.proto",
        "proto/ductor/v1/core.proto",
    ];
    tonic_prost_build::configure().compile_protos(&files, &["proto"])?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
