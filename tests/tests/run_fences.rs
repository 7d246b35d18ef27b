//! Issue 13, classes 2 and 3, through the real binaries: what a sandboxed
//! agent (the fake CLI's `sh:`) must not reach beyond files: ductor's
//! processes by signal and abstract Unix sockets outside the run (review H4,
//! M4), other programs' shared memory under `/dev` (L4), and the prompts of
//! runs on `/proc/<pid>/cmdline` (M8). Needs `cargo build --bins`.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixListener};

use ductor_tests::harness::{self, TestEnv, text};

async fn pid_of(env: &TestEnv, service: &str) -> u64 {
    let row = env.service_status(service).await.expect("the service is listed");
    row["pid"].as_u64().expect("a running service has a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cannot_signal_ductor_or_reach_an_abstract_socket_outside_it() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let name = format!("ductor-fence-{}", std::process::id());
    let listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).expect("abstract name"))
            .expect("bind an abstract socket");
    for service in ["core", "runner"] {
        let pid = pid_of(&env, service).await;
        let probe = format!("kill -0 {pid} && echo SIGNALLED || echo DENIED");
        let out = env.agent("c1", &probe).await;
        assert!(out.contains("DENIED"), "the run could signal {service}: {out}");
    }
    let connect = format!(
        "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); \
         s.connect(\"\\0{name}\"); print(\"CONNECTED\")'"
    );
    let out = env.agent("c1", &connect).await;
    assert!(!out.contains("CONNECTED"), "the run reached an abstract socket outside it: {out}");
    // Control: the same command from outside the sandbox does connect.
    let outside = harness::command("sh").args(["-c", &connect]).output().await.expect("sh");
    assert!(text(&outside.stdout).contains("CONNECTED"), "{}", text(&outside.stderr));
    drop(listener);
    // Inside the run, its own processes are still its to signal.
    let own = env.agent("c1", "sleep 30 & kill $! && echo OWN-KILLED").await;
    assert!(own.contains("OWN-KILLED"), "{own}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reaches_only_the_harmless_devices() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let shm = std::path::Path::new("/dev/shm").join(format!("ductor-fence-{}", std::process::id()));
    std::fs::write(&shm, "SHARED-SECRET").expect("write /dev/shm");
    let out = env.agent(
        "c1",
        &format!(
            "cat {s}; echo tampered > {s}; head -c 4 /dev/urandom | wc -c; echo ok > /dev/null && echo NULL-OK",
            s = shm.display()
        ),
    )
    .await;
    let left = std::fs::read_to_string(&shm).expect("read /dev/shm");
    let _ = std::fs::remove_file(&shm);
    assert!(!out.contains("SHARED-SECRET"), "the run read another program's shared memory: {out}");
    assert_eq!(left, "SHARED-SECRET", "the run changed another program's shared memory");
    assert!(out.contains("NULL-OK") && out.contains('4'), "/dev/null and /dev/urandom work: {out}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_memory_never_appear_on_a_command_line() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let memory = env.home().join("workspace/memory_system/MAINMEMORY.md");
    std::fs::create_dir_all(memory.parent().expect("parent")).expect("mkdir");
    std::fs::write(&memory, "# Memory\n\nMEMORY-MARKER-31\n").expect("write memory");
    // The agent prints its own CLI's command line; the prompt carries a marker.
    let out = env.agent("c2", "tr '\\0' ' ' < /proc/$PPID/cmdline; echo; : PROMPT-MARKER-17").await;
    assert!(out.contains("--output-format"), "the CLI's argv was printed: {out}");
    assert!(!out.contains("PROMPT-MARKER-17"), "the prompt is on argv: {out}");
    assert!(!out.contains("MEMORY-MARKER-31"), "the memory is on argv: {out}");
    // The CLI still got both: the prompt on stdin, the memory in the system prompt file.
    let input = std::fs::read_to_string(env.home().join("fake-state/last-input.json"))
        .expect("the fake CLI records its input");
    assert!(input.contains("PROMPT-MARKER-17"), "{input}");
    assert!(input.contains("MEMORY-MARKER-31"), "{input}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
