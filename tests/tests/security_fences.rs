//! The runner's fences through the real binaries, with the fake CLI's `sh:`
//! playing the agent (security review H4 and M5). Needs `cargo build --bins`.
//!
//! - H4: a same-uid service listening on a Unix socket under `/tmp` (it
//!   stands in for systemd --user, D-Bus, tmux, docker) answers this test
//!   but is unreachable from an agent turn, also through
//!   `/proc/<outside pid>/root`; the runner's own socket is masked too.
//! - M5: a process an agent starts with `setsid` leaves the run's process
//!   group, and must still die when the turn ends, when the runner is killed
//!   and restarted (the sweep), and on `ductorctl down`.
//!
//! Where the kernel refuses unprivileged user namespaces the runner runs
//! unfenced and says so; these tests then skip with that reason.

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ductor_tests::harness::{self, TestEnv, text, wait_for};

const SECRET: &str = "outside-helper-secret-5d1f";
const PYTHON: &str = "/usr/bin/python3";

/// The runner's sandbox detail says whether runs are fenced; `None` = fenced.
/// Under `DUCTOR_REQUIRE_REAL` (CI, whose kernel has user namespaces) an
/// unfenced runner fails the test instead of skipping it.
async fn unfenced_reason(env: &TestEnv) -> Option<String> {
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = text(&doctor.stdout);
    let line = out.lines().find(|l| l.contains("socket fence"))?.to_owned();
    let unfenced = (!line.starts_with("OK")).then_some(line);
    if let Some(reason) = &unfenced {
        assert!(std::env::var("DUCTOR_REQUIRE_REAL").is_err(), "DUCTOR_REQUIRE_REAL=1: {reason}");
    }
    unfenced
}

/// A same-uid service on a Unix socket in a fresh directory under `/tmp`
/// that hands every client the secret; counts its clients.
struct OutsideHelper {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    clients: Arc<AtomicUsize>,
}

impl OutsideHelper {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("outside-").tempdir_in("/tmp").expect("tmp dir");
        let socket = dir.path().join("helper.sock");
        let listener = UnixListener::bind(&socket).expect("bind the helper");
        let clients = Arc::new(AtomicUsize::new(0));
        let counted = clients.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(SECRET.as_bytes());
            }
        });
        Self { _dir: dir, socket, clients }
    }

    /// A client that is not an agent gets the secret.
    fn control(&self) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("the control client connects");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }
}

/// A python client that tries each path and prints what happened.
fn client_script(dir: &Path) -> PathBuf {
    let path = dir.join("try_sockets.py");
    std::fs::write(
        &path,
        "import socket, sys\n\
         for path in sys.argv[1:]:\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   try:\n\
         \x20       s.connect(path)\n\
         \x20       print(path, 'CONNECTED', s.recv(100).decode())\n\
         \x20   except OSError as e:\n\
         \x20       print(path, 'REFUSED', e)\n",
    )
    .expect("write the client script");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_reach_same_uid_unix_sockets_outside() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: no {PYTHON} to play the agent's client");
        return;
    }
    let env = TestEnv::with_fake_claude("");
    let helper = OutsideHelper::start();
    assert_eq!(helper.control(), SECRET, "the helper serves the secret outside");
    env.up().await;
    if let Some(reason) = unfenced_reason(&env).await {
        eprintln!("skipped: {reason}");
        return;
    }
    let script = client_script(&env.home().join("workspace"));
    let through_proc = format!("/proc/{}/root{}", std::process::id(), helper.socket.display());
    let runner = env.socket("runner");
    let core = env.socket("core");
    let out = env
        .agent(
            "c1",
            &format!(
                "{PYTHON} {} {} {through_proc} {} {}",
                script.display(),
                helper.socket.display(),
                runner.display(),
                core.display()
            ),
        )
        .await;
    assert!(!out.contains(SECRET), "the agent read the outside helper's secret: {out}");
    let verdict = |path: &Path| {
        out.lines()
            .find(|l| l.starts_with(&format!("{} ", path.display())))
            .unwrap_or_else(|| panic!("no line for {}: {out}", path.display()))
            .to_owned()
    };
    assert!(verdict(&helper.socket).contains("REFUSED"), "{out}");
    assert!(verdict(Path::new(&through_proc)).contains("REFUSED"), "{out}");
    assert!(verdict(&runner).contains("REFUSED"), "runner.sock is masked: {out}");
    assert!(verdict(&core).contains("CONNECTED"), "core.sock stays reachable: {out}");
    assert_eq!(helper.clients.load(Ordering::SeqCst), 1, "only the control client got in");
    assert_eq!(helper.control(), SECRET, "the helper still serves outside");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// A unique `sleep` duration: its argv marks the process.
fn marker(tag: u32) -> String {
    format!("4242.{}{tag}", std::process::id())
}

/// The pid of the live `sleep <marker>`, if any.
fn sleeper(marker: &str) -> Option<u32> {
    let needle = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (argv == needle.as_bytes() && harness::alive(pid)).then_some(pid)
    })
}

/// `setsid sleep <marker>` detached from the run's group, then `rest`.
fn escape(marker: &str, rest: &str) -> String {
    format!("setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo started; {rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_process_dies_when_its_turn_ends() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let marker = marker(1);
    // The turn waits until the sleeper has left the group, so it surely ran.
    let wait_gone_from_group = format!(
        "for i in $(seq 100); do p=$(pgrep -f '^sleep {marker}$') && \
         [ \"$(ps -o pgid= -p $p | tr -d ' ')\" != \"$(ps -o pgid= -p $$ | tr -d ' ')\" ] && \
         echo left-group && break; sleep 0.05; done"
    );
    let out = env.agent("c1", &escape(&marker, &wait_gone_from_group)).await;
    assert!(out.contains("started") && out.contains("left-group"), "{out}");
    wait_for("the setsid sleeper to die with its turn", async || {
        sleeper(&marker).is_none().then_some(())
    })
    .await;
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_process_dies_when_the_runner_is_killed_and_on_down() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    if let Some(reason) = unfenced_reason(&env).await {
        // Without namespaces nothing identifies it once its runner is gone.
        eprintln!("skipped: {reason}");
        return;
    }
    // A turn that never ends, with a sleeper outside its group.
    let swept = marker(2);
    let mut turn = env.spawn_ductorctl(&[
        "ask",
        "--chat",
        "c1",
        &format!("sh:{}", escape(&swept, "sleep 600")),
    ]);
    let pid = wait_for("the sleeper to start", async || sleeper(&swept)).await;
    let runner = env.service_status("runner").await.expect("runner row")["pid"]
        .as_u64()
        .expect("runner pid") as u32;
    harness::signal(runner, nix::sys::signal::Signal::SIGKILL);
    wait_for("the restarted runner's sweep to kill the sleeper", async || {
        (!harness::alive(pid) || sleeper(&swept).is_none()).then_some(())
    })
    .await;
    let _ = turn.start_kill();
    env.wait_healthy(&["runner", "core"]).await;

    // `down` stops the live turn, and its sleeper with it.
    let downed = marker(3);
    let mut turn = env.spawn_ductorctl(&[
        "ask",
        "--chat",
        "c2",
        &format!("sh:{}", escape(&downed, "sleep 600")),
    ]);
    let pid = wait_for("the second sleeper to start", async || sleeper(&downed)).await;
    assert!(env.ductorctl(&["down"]).await.status.success());
    wait_for("the sleeper to die on down", async || {
        (!harness::alive(pid) || sleeper(&downed).is_none()).then_some(())
    })
    .await;
    let _ = turn.start_kill();
}
