//! How this ductor was installed, for `/upgrade`: the running version, and
//! for a build from a source checkout (the binary under `<repo>/target/`)
//! the version checked out there and what to run. There is no network
//! check: ductor makes no connection the operator did not configure.

use std::path::{Path, PathBuf};

/// The `/upgrade` answer for a core binary at `exe` of version `running`.
pub fn report(exe: &Path, running: &str) -> String {
    let mut text = format!("ductor {running} is running ({}).", exe.display());
    match checkout_of(exe) {
        Some(repo) => {
            let checked_out = workspace_version(&repo);
            let root = repo.display();
            match checked_out.as_deref() {
                Some(v) if v != running => text.push_str(&format!(
                    "\nThe checkout at {root} holds {v}: rebuild and restart with `{root}/deploy/run.sh` \
                     (or `{root}/deploy/build.sh`, then /restart)."
                )),
                _ => text.push_str(&format!(
                    "\nIt runs from the source checkout at {root}. To upgrade: \
                     `git -C {root} pull && {root}/deploy/run.sh` (or `deploy/build.sh`, then /restart)."
                )),
            }
        }
        None => text.push_str(
            "\nThis is not a build from a source checkout: upgrade it the way it was installed \
             (a new release binary or container image), then /restart.",
        ),
    }
    text
}

/// The checkout whose `target/<profile>/` holds `exe`, if any.
fn checkout_of(exe: &Path) -> Option<PathBuf> {
    let target = exe.parent()?.parent()?;
    if target.file_name()? != "target" {
        return None;
    }
    let repo = target.parent()?;
    (repo.join("Cargo.toml").is_file() && repo.join(".git").exists()).then(|| repo.to_path_buf())
}

/// `[workspace.package] version` of the checkout's `Cargo.toml`.
fn workspace_version(repo: &Path) -> Option<String> {
    let text = std::fs::read_to_string(repo.join("Cargo.toml")).ok()?;
    let manifest: toml::Table = text.parse().ok()?;
    let version = manifest.get("workspace")?.get("package")?.get("version")?.as_str()?;
    Some(version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(version: &str) -> tempfile::TempDir {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join(".git")).unwrap();
        std::fs::create_dir_all(repo.path().join("target/release")).unwrap();
        std::fs::write(
            repo.path().join("Cargo.toml"),
            format!("[workspace]\nmembers = []\n[workspace.package]\nversion = \"{version}\"\n"),
        )
        .unwrap();
        repo
    }

    #[test]
    fn a_source_build_says_what_to_run_and_names_a_newer_checkout() {
        let repo = checkout("0.1.0");
        let exe = repo.path().join("target/release/ductor-core");
        let same = report(&exe, "0.1.0");
        assert!(same.contains("git -C") && same.contains("deploy/run.sh"), "{same}");
        let newer = report(&exe, "0.0.9");
        assert!(newer.contains("holds 0.1.0: rebuild"), "{newer}");
    }

    #[test]
    fn other_installs_are_told_to_upgrade_the_way_they_came() {
        let text = report(Path::new("/usr/local/bin/ductor-core"), "0.1.0");
        assert!(text.contains("not a build from a source checkout"), "{text}");
    }
}
