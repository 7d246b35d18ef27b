//! Where a run may work. Core names the working directory, but a path under
//! the agent-writable workspace can have been swapped for a link by an
//! earlier run (`ln -s ../.. workspace/cron_tasks/x`), and the sandbox grants
//! its working directory read and write. So the directory is resolved here,
//! once, and the resolved path is both what the sandbox grants and where the
//! CLI starts. It must lie in the workspace or in a tree the operator made
//! writable (`[runner].extra_writable_paths`), and never hold `$DUCTOR_HOME`
//! or the run directory nor lie in them outside the workspace.

use std::path::{Path, PathBuf};

use ductor_daemon::DuctorHome;

/// The resolved working directory, or why it is refused.
pub fn confine(
    requested: &Path,
    home: &DuctorHome,
    extra_writable: &[String],
) -> Result<PathBuf, String> {
    let real = requested
        .canonicalize()
        .map_err(|e| format!("working_dir {}: {e}", requested.display()))?;
    if !real.is_dir() {
        return Err(format!("working_dir {} is not a directory", requested.display()));
    }
    let resolve = |p: PathBuf| p.canonicalize().unwrap_or(p);
    let root = resolve(home.root().to_path_buf());
    let workspace = resolve(home.workspace());
    let run_dir = resolve(home.run_dir().to_path_buf());
    let refused = |what: &str| {
        Err(format!(
            "working_dir {} resolves to {}, {what}; refused",
            requested.display(),
            real.display()
        ))
    };
    if root.starts_with(&real) || run_dir.starts_with(&real) {
        return refused("which holds ductor's home or run directory");
    }
    if real.starts_with(&run_dir) {
        return refused("inside ductor's run directory");
    }
    if real.starts_with(&root) && !real.starts_with(&workspace) {
        return refused("inside ductor's home but outside the workspace");
    }
    let granted = extra_writable.iter().map(|p| resolve(PathBuf::from(p)));
    if !real.starts_with(&workspace) && !granted.into_iter().any(|g| real.starts_with(g)) {
        return refused("outside the workspace and [runner].extra_writable_paths");
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_out_of_the_workspace_are_refused_and_real_folders_resolved() {
        let base = tempfile::tempdir().unwrap();
        let home = DuctorHome::at(base.path().join("home"));
        let tasks = home.workspace().join("cron_tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        std::fs::create_dir_all(home.secrets_dir()).unwrap();
        std::fs::create_dir_all(home.run_dir()).unwrap();
        std::fs::create_dir(tasks.join("real")).unwrap();
        let real = confine(&tasks.join("real"), &home, &[]).unwrap();
        assert_eq!(real, tasks.join("real").canonicalize().unwrap());
        for (name, target) in [
            ("home", home.root().to_path_buf()),
            ("secrets", home.secrets_dir()),
            ("above", base.path().to_path_buf()),
            ("run", home.run_dir().to_path_buf()),
        ] {
            std::os::unix::fs::symlink(&target, tasks.join(name)).unwrap();
            let error = confine(&tasks.join(name), &home, &[]).unwrap_err();
            assert!(error.contains("refused"), "{name}: {error}");
        }
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tasks.join("project")).unwrap();
        let error = confine(&tasks.join("project"), &home, &[]).unwrap_err();
        assert!(error.contains("extra_writable_paths"), "{error}");
        let granted = [outside.path().display().to_string()];
        assert!(confine(outside.path(), &home, &granted).is_ok(), "a granted project directory");
        assert!(confine(&tasks.join("missing"), &home, &[]).is_err());
    }
}
