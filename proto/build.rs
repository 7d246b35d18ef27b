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
    // `ductor-runner probe` prints a ProbeResponse as JSON and `ductorctl
    // doctor` reads it back, so its JSON form is part of the wire contract.
    let json = "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]";
    tonic_prost_build::configure()
        .type_attribute(".ductor.v1.ProbeResponse", json)
        .type_attribute(".ductor.v1.ProviderInfo", json)
        .type_attribute(".ductor.v1.SkillConflict", json)
        .compile_protos(&files, &["proto"])?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
