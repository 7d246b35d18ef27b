//! Structure checks of `deploy/`: the compose file and Dockerfile refer only
//! to things that exist, and the rendered systemd units pass
//! `systemd-analyze verify` where it is installed. Docker is not needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ductorctl::units::{self, RenderOptions};
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn compose() -> Value {
    let mut value: Value =
        serde_yaml::from_str(&read("deploy/compose/docker-compose.yml")).expect("compose is YAML");
    value.apply_merge().expect("merge keys resolve");
    value
}

/// Binary names of the workspace: packages with a `src/main.rs`.
fn workspace_binaries() -> BTreeSet<String> {
    let root: toml::Table = toml::from_str(&read("Cargo.toml")).expect("root Cargo.toml");
    let members = root["workspace"]["members"].as_array().expect("members");
    let mut binaries = BTreeSet::new();
    for member in members.iter().filter_map(|m| m.as_str()) {
        let dir = repo().join(member);
        if !dir.join("src/main.rs").is_file() {
            continue;
        }
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest"))
                .expect("member Cargo.toml");
        binaries.insert(manifest["package"]["name"].as_str().expect("name").to_owned());
    }
    binaries
}

/// Stage names (`FROM ... AS name`) and the binaries copied out of the build.
fn dockerfile() -> (BTreeSet<String>, BTreeSet<String>, String) {
    let text = read("deploy/docker/Dockerfile");
    let stages = text
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split_whitespace().collect::<Vec<_>>().get(3).map(|s| (*s).to_owned()))
        .collect();
    let copied = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    (stages, copied, text)
}

fn services(compose: &Value) -> Vec<(String, Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_owned(), v.clone()))
        .collect()
}

#[test]
fn dockerfile_builds_and_ships_every_workspace_binary() {
    let (stages, copied, text) = dockerfile();
    let binaries = workspace_binaries();
    assert!(binaries.contains("ductorctl") && binaries.contains("ductor-gateway-matrix"));
    assert_eq!(copied, binaries, "the runtime image holds exactly the workspace binaries");
    assert!(text.contains("FROM rust:1.95"), "builder pinned to the workspace toolchain");
    // Built the way `deploy/run.sh` builds: every binary's package, from the lock file.
    assert!(text.contains("deploy/build.sh"), "the image builds with deploy/build.sh");
    let build = read("deploy/build.sh");
    assert!(build.contains("--locked"));
    for binary in &binaries {
        assert!(build.contains(&format!("-p {binary}")), "deploy/build.sh misses {binary}");
    }
    for stage in ["builder", "runtime", "runner"] {
        assert!(stages.contains(stage), "stage {stage} missing: {stages:?}");
    }
    assert!(repo().join("deploy/docker/Dockerfile.dockerignore").is_file());
}

#[test]
fn compose_services_refer_only_to_things_that_exist() {
    let compose = compose();
    let (stages, copied, _) = dockerfile();
    let services = services(&compose);
    let names: BTreeSet<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["runner", "core", "telegram", "matrix"]));
    let compose_dir = repo().join("deploy/compose");
    for (name, service) in &services {
        assert!(
            service["image"].is_string() || service["build"].is_mapping(),
            "{name}: image/build"
        );
        let build = &service["build"];
        let context = compose_dir.join(build["context"].as_str().expect("build.context"));
        assert!(context.join("Cargo.toml").is_file(), "{name}: context is the repo root");
        let dockerfile = context.join(build["dockerfile"].as_str().expect("build.dockerfile"));
        assert!(dockerfile.is_file(), "{name}: {} missing", dockerfile.display());
        let target = build["target"].as_str().expect("build.target");
        assert!(stages.contains(target), "{name}: no Dockerfile stage {target}");

        let command = service["command"].as_sequence().expect("command is a list");
        let binary = command[0].as_str().expect("command[0]");
        assert!(copied.contains(binary), "{name}: command {binary} is not in the image");
        let expected = match name.as_str() {
            "telegram" | "matrix" => format!("ductor-gateway-{name}"),
            other => format!("ductor-{other}"),
        };
        assert_eq!(binary, expected, "{name} runs its own binary");
        let check = service["healthcheck"]["test"].as_sequence().expect("healthcheck");
        assert_eq!(check[1].as_str(), Some("ductorctl"));
        assert_eq!(check[3].as_str(), Some(name.as_str()), "{name} checks itself");
        if let Some(deps) = service["depends_on"].as_mapping() {
            for dep in deps.keys() {
                assert!(names.contains(dep.as_str().expect("dep")), "{name}: unknown dependency");
            }
        }
    }
}

#[test]
fn compose_volumes_are_declared_and_socket_dir_is_shared() {
    let compose = compose();
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .expect("top-level volumes")
        .keys()
        .map(|k| k.as_str().expect("volume name").to_owned())
        .collect();
    let mut used = BTreeSet::new();
    for (name, service) in services(&compose) {
        let env = &service["environment"];
        let home = env["DUCTOR_HOME"].as_str().expect("DUCTOR_HOME");
        let run = env["DUCTOR_RUN_DIR"].as_str().expect("DUCTOR_RUN_DIR");
        let mut mounts = Vec::new();
        for volume in service["volumes"].as_sequence().expect("volumes") {
            let (source, target) =
                volume.as_str().expect("short syntax").split_once(':').expect("source:target");
            if !source.starts_with('/') && !source.starts_with('.') {
                assert!(declared.contains(source), "{name}: volume {source} not declared");
                used.insert(source.to_owned());
            }
            mounts.push((source.to_owned(), target.to_owned()));
        }
        let mount_of = |path: &str| mounts.iter().find(|(_, t)| t == path).map(|(s, _)| s.clone());
        assert_eq!(mount_of(home).as_deref(), Some("ductor-home"), "{name}: DUCTOR_HOME volume");
        assert_eq!(mount_of(run).as_deref(), Some("ductor-run"), "{name}: DUCTOR_RUN_DIR volume");
        assert_eq!((home, run), ("/data", "/run/ductor"), "{name}: same paths in every container");
    }
    assert_eq!(used, declared, "every declared volume is used");
}

fn fake_bin_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("bin dir");
    for binary in
        ["ductor-runner", "ductor-core", "ductor-gateway-telegram", "ductor-gateway-matrix"]
    {
        let path = dir.join(binary);
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[tokio::test]
async fn rendered_units_pass_systemd_analyze_verify() {
    let Some(analyze) = units::find_on_path("systemd-analyze") else {
        eprintln!("SKIP: systemd-analyze is not installed; unit files not verified");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin_dir = tmp.path().join("bin");
    fake_bin_dir(&bin_dir);
    let options = RenderOptions {
        bin_dir,
        home: ductor_daemon::DuctorHome::at(tmp.path().join("home")),
        xdg_runtime_dir: None,
    };
    let written = units::write_units(&tmp.path().join("units"), &options).expect("render");
    let output = ductorctl::supervisor::command(analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&written)
        .output()
        .await
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Lines about our units are real problems (unknown keys, bad values, paths);
    // lines about the manager itself (no user manager, no bus in a container) are not.
    let problems: Vec<&str> = stderr.lines().filter(|l| l.contains("ductor")).collect();
    assert!(problems.is_empty(), "systemd-analyze verify:\n{stderr}");
    if !output.status.success() {
        assert!(
            stderr.contains("manager")
                || stderr.contains("bus")
                || stderr.contains("No such device"),
            "systemd-analyze failed for a reason other than the missing manager:\n{stderr}"
        );
        eprintln!("SKIP (partly): systemd-analyze could not start a manager here:\n{stderr}");
    }
}

#[tokio::test]
async fn systemd_analyze_check_can_fail() {
    // The verify test above is only worth something if a broken unit is caught.
    let Some(analyze) = units::find_on_path("systemd-analyze") else {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = tmp.path().join("ductor-broken.service");
    std::fs::write(&unit, "[Service]\nType=notifyy\nExecStart=/bin/true\n").expect("write");
    let output = ductorctl::supervisor::command(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .await
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().any(|l| l.contains("ductor")), "a bad Type= is reported: {stderr}");
}
