//! Fenced spawns through the real spawn site on this kernel. Where the
//! kernel refuses unprivileged user namespaces the tests say so and pass:
//! the runner then runs unfenced, which `detect` reports.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ductor_daemon::config::SandboxMode;

use super::masks::MaskPlan;
use super::members::{self, RunNs};
use super::*;
use crate::sandbox::{self, Limits, Spawn};

fn fencing_works() -> bool {
    let fencing = detect(SandboxMode::Auto);
    if !fencing.available {
        eprintln!("skipped: {}", fencing.detail);
    }
    fencing.available
}

/// Runs `script` in `sh -c` inside a fence applying `plan`; returns its stdout.
async fn fenced(plan: MaskPlan, script: &str) -> Result<String, String> {
    let fence = Arc::new(Fence::new(plan)?);
    let child = spawn(fence.clone(), script).map_err(|e| fence.explain(&e))?;
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr))
}

fn spawn(fence: Arc<Fence>, script: &str) -> io::Result<tokio::process::Child> {
    let args = ["-c".to_owned(), script.to_owned()];
    let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
    let cwd = std::env::temp_dir();
    let spawn = Spawn {
        program: Path::new("/bin/sh"),
        args: &args,
        env: &env,
        cwd: &cwd,
        limits: current_limits(),
        ruleset: None,
        stdin: sandbox::StdinFrom::Null,
    };
    sandbox::command_in(spawn, Some(fence)).spawn()
}

/// The test's own limits (raising them may need a capability it lacks).
fn current_limits() -> Limits {
    let get = |resource| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into `limit`.
        unsafe { libc::getrlimit(resource, &mut limit) };
        limit.rlim_cur
    };
    Limits { max_processes: get(libc::RLIMIT_NPROC), max_file_bytes: get(libc::RLIMIT_FSIZE) }
}

struct Sockets {
    _dir: tempfile::TempDir,
    root: PathBuf,
    _listeners: Vec<UnixListener>,
}

impl Sockets {
    fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let mut listeners = Vec::new();
        for name in names {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            listeners.push(UnixListener::bind(&path).expect("bind"));
        }
        Self { _dir: dir, root, _listeners: listeners }
    }
}

#[tokio::test]
async fn masked_sockets_become_dev_null_and_masked_dirs_empty() {
    if !fencing_works() {
        return;
    }
    // Like the runner: a non-dumpable parent makes the child's /proc/self root-owned.
    sandbox::harden_self();
    let tree = Sockets::new(&[
        "runtime/bus",
        "runtime/systemd/private",
        "fresh/helper.sock",
        "run/core.sock",
    ]);
    let root = &tree.root;
    let plan = MaskPlan {
        tmpfs: vec![root.join("runtime"), root.join("does-not-exist")],
        null: vec![root.join("fresh/helper.sock"), root.join("gone.sock")],
        truncated: false,
    };
    let r = root.display();
    let out = fenced(
        plan,
        &format!(
            "stat -c %F {r}/fresh/helper.sock {r}/run/core.sock; ls -A {r}/runtime | wc -l; \
             stat -c %a {r}/runtime; cat /proc/sys/user/max_user_namespaces; \
             readlink /proc/self/ns/user; cat /proc/self/uid_map"
        ),
    )
    .await
    .expect("a fenced spawn");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "character special file", "{out}");
    assert_eq!(lines[1], "socket", "core.sock stays: {out}");
    assert_eq!(lines[2], "0", "the runtime directory looks empty: {out}");
    assert_eq!(lines[3], "700", "{out}");
    assert_eq!(lines[4], "0", "nested user namespaces are refused: {out}");
    let own = std::fs::read_link("/proc/self/ns/user").expect("own ns");
    assert_ne!(lines[5], own.display().to_string(), "{out}");
    let uid = nix::unistd::geteuid().as_raw();
    let map: Vec<&str> = lines[6].split_whitespace().collect();
    assert_eq!(map, [uid.to_string(), uid.to_string(), "1".into()], "{out}");
    // Outside, nothing changed.
    assert!(std::os::unix::fs::FileTypeExt::is_socket(
        &std::fs::metadata(root.join("fresh/helper.sock")).expect("stat").file_type()
    ));
}

#[tokio::test]
async fn every_process_of_the_namespace_dies_with_the_run() {
    if !fencing_works() {
        return;
    }
    let fence = Arc::new(Fence::new(MaskPlan::default()).expect("fence"));
    let mut child =
        spawn(fence, "setsid sleep 4243 </dev/null >/dev/null 2>&1 & echo $!").expect("spawn");
    let leader = child.id().expect("pid");
    let ns = RunNs::open(leader).expect("the run's namespace");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await.expect("read");
    child.wait().await.expect("the leader exits");
    let pid: u32 = text.trim().parse().expect("the setsid child's pid");
    let mut left = false;
    for _ in 0..200 {
        let stat = crate::registry::proc_stat(pid).expect("the setsid child outlives its leader");
        left = stat.pgid != leader;
        if left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(left, "the child left the leader's group");
    assert_eq!(members::kill_members(&ns), 1);
    assert!(gone(pid).await, "the setsid child survived the run's end");
    assert_eq!(members::kill_members(&ns), 0, "nothing is left");
}

/// True once `pid` is gone or a zombie (waits up to 10 s).
async fn gone(pid: u32) -> bool {
    for _ in 0..200 {
        if crate::registry::proc_stat(pid).is_none_or(|s| s.is_dead()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn a_failed_step_names_the_path() {
    let plan = MaskPlan {
        tmpfs: vec!["/a".into(), "/run/user/1000".into()],
        null: vec!["/tmp/x.sock".into()],
        truncated: false,
    };
    let fence = Fence::new(plan).expect("fence");
    let eperm = io::Error::from_raw_os_error(libc::EPERM);
    assert_eq!(fence.explain(&eperm), eperm.to_string(), "no step reported");
    fence.report.fail(Step::Tmpfs, 1, &eperm);
    let text = fence.explain(&eperm);
    assert!(text.contains("mount a tmpfs over /run/user/1000"), "{text}");
    fence.report.fail(Step::Null, 0, &eperm);
    assert!(fence.explain(&eperm).contains("/dev/null over /tmp/x.sock"));
    fence.report.fail(Step::Unshare, 0, &eperm);
    assert!(fence.explain(&eperm).contains("create a user and mount namespace"));
}

#[test]
fn fd_paths_are_written_without_allocating() {
    let mut buf = [0u8; 32];
    let path = fd_path(1234, &mut buf);
    // SAFETY: `fd_path` NUL-terminates inside `buf`.
    let text = unsafe { CStr::from_ptr(path) };
    assert_eq!(text.to_str(), Ok("/proc/self/fd/1234"));
    let path = fd_path(0, &mut buf);
    // SAFETY: as above.
    assert_eq!(unsafe { CStr::from_ptr(path) }.to_str(), Ok("/proc/self/fd/0"));
}

#[test]
fn sandbox_none_turns_the_fence_off() {
    let fencing = detect(SandboxMode::None);
    assert!(!fencing.available);
    assert!(fencing.detail.contains("socket fence off"));
}
