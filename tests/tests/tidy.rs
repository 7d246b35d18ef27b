//! Repository hygiene that review would otherwise have to catch by eye:
//! every Rust file says why it exists (`//!` first), no placeholder macro is
//! left behind, the crate graph keeps its invariants (process crates never
//! depend on one another), and ARCHITECTURE.md names every `ductorctl`
//! subcommand (`ductorctl --help`; needs `cargo build --bins`).

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

const CRATE_DIRS: [&str; 8] = [
    "proto",
    "services/daemon",
    "services/ductorctl",
    "core",
    "runner",
    "gateway-telegram",
    "gateway-matrix",
    "tests",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && name != ".cache" && name != "fixtures" && !name.starts_with('.')
            {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in CRATE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} Rust files: is the walk broken?", files.len());
    files
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let first = text.lines().find(|line| !line.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` doc saying why they exist: {missing:#?}"
    );
}

#[test]
fn nothing_is_left_as_todo() {
    let banned = [concat!("todo", "!("), concat!("unimplemented", "!(")];
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            banned.iter().any(|needle| text.contains(needle))
        })
        .collect();
    assert!(offenders.is_empty(), "files with todo!/unimplemented!: {offenders:#?}");
}

const PROCESS_CRATES: [&str; 5] = [
    "ductor-core",
    "ductor-runner",
    "ductor-gateway-telegram",
    "ductor-gateway-matrix",
    "ductorctl",
];

#[test]
fn process_crates_never_depend_on_each_other() {
    let root = repo_root();
    for dir in [
        "core",
        "runner",
        "gateway-telegram",
        "gateway-matrix",
        "services/ductorctl",
        "services/daemon",
        "proto",
    ] {
        let manifest =
            std::fs::read_to_string(root.join(dir).join("Cargo.toml")).expect("read manifest");
        for line in manifest.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            if PROCESS_CRATES.contains(&key) {
                panic!(
                    "{dir}/Cargo.toml depends on process crate `{key}`: process crates talk only over gRPC"
                );
            }
        }
    }
}

/// Core's tests and benches use this crate as a dev-dependency; a process
/// crate among its own dependencies would make that a cycle (its
/// dev-dependencies, such as the Telegram gateway's fakes, are not inherited).
#[test]
fn this_crate_depends_on_no_process_crate() {
    let manifest =
        std::fs::read_to_string(repo_root().join("tests/Cargo.toml")).expect("read manifest");
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        assert!(
            section == "[dev-dependencies]" || !PROCESS_CRATES.contains(&key),
            "tests/Cargo.toml has process crate `{key}` in {section}: only dev-dependencies may name one"
        );
    }
}

/// The subcommands `ductorctl --help` lists (`help` aside).
async fn ductorctl_subcommands() -> Vec<String> {
    let output = ductor_tests::harness::command(ductor_tests::harness::binary("ductorctl"))
        .arg("--help")
        .output()
        .await
        .expect("run ductorctl --help");
    assert!(output.status.success(), "ductorctl --help failed");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let listed = help.split("Commands:\n").nth(1).expect("--help lists commands");
    listed
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn architecture_lists_every_ductorctl_subcommand() {
    let architecture =
        std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let section = architecture
        .split("### `services/ductorctl/`")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("ARCHITECTURE.md has a services/ductorctl/ section");
    let list = section
        .split("one module per subcommand (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the section lists the subcommands: `one module per subcommand (...)`");
    let mut documented: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    documented.retain(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    let mut real = ductorctl_subcommands().await;
    assert!(real.len() > 5, "found only {real:?} in ductorctl --help: is the parse broken?");
    real.sort();
    documented.sort();
    assert_eq!(documented, real, "ARCHITECTURE.md's ductorctl command list vs `ductorctl --help`");
}
