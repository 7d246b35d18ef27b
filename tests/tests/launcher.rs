//! Issue 2, end to end: `ductorctl` with the real service binaries in a
//! temporary `$DUCTOR_HOME`. Needs `cargo build --bins` first.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ductor_tests::harness::fake_telegram::FakeTelegram;
use ductor_tests::harness::{self, TestEnv, wait_for};
use nix::sys::signal::Signal;

/// Fast restarts, so crash tests take milliseconds.
const FAST_LAUNCHER: &str =
    "[launcher]\nrestart_backoff_ms = 20\nrestart_backoff_max_ms = 200\nstop_grace_ms = 3000\n";

fn telegram_config(api_url: &str) -> String {
    format!(
        "{FAST_LAUNCHER}\n[telegram]\nenabled = true\ntoken = \"123456:TEST-not-a-real-token\"\napi_url = \"{api_url}\"\nallowed_user_ids = [1]\n"
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode()
        & 0o777
}

fn pid_of(row: &serde_json::Value) -> u32 {
    row["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).expect("a running service has a pid")
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn assert_down(env: &TestEnv) {
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success(), "down failed: {}", stderr(&down));
    assert!(env.known_pids().is_empty(), "processes left: {:?}", env.known_pids());
    assert!(env.processes_of_this_home().is_empty(), "orphans: {:?}", env.processes_of_this_home());
    for (service, _) in harness::SERVICES {
        assert!(!env.socket(service).exists(), "{service} socket left behind");
    }
    let status = env.status().await;
    assert_eq!(status["managed_by"], "none");
    for row in status["services"].as_array().expect("services") {
        assert_eq!(row["state"], "stopped", "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_brings_every_configured_service_to_healthy_and_down_leaves_nothing() {
    let telegram = FakeTelegram::start().await;
    let env = TestEnv::with_config(&telegram_config(telegram.url()));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up --detach failed: {}", stderr(&up));

    let status = env.status().await;
    assert_eq!(status["managed_by"], "ductorctl");
    let rows = status["services"].as_array().expect("services");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["service"].as_str()).collect();
    assert_eq!(names, ["runner", "core", "telegram"], "disabled matrix must not start");
    for row in rows {
        assert_eq!(row["state"], "healthy", "{row}");
        assert_eq!(row["restarts"], 0, "{row}");
        let service = row["service"].as_str().expect("name");
        let answer = harness::health(&env.channel(service)).await.expect("Health answers");
        assert_eq!(answer.service, service);
        assert_eq!(answer.pid, pid_of(row), "status and Health agree on the pid");
        assert_eq!(mode(&env.socket(service)), 0o600, "{service} socket mode");
        assert_eq!(row["socket"], env.socket(service).display().to_string());
    }
    assert_eq!(mode(&env.run_dir()), 0o700, "run dir mode");
    assert_eq!(
        std::fs::metadata(env.run_dir()).expect("run dir").uid(),
        nix::unistd::geteuid().as_raw()
    );
    for log in ["runner", "core", "telegram"] {
        let path = env.home().join(format!("logs/{log}.log"));
        assert!(path.is_file(), "{} missing", path.display());
        assert_eq!(mode(&path), 0o600);
    }
    let logs = env.ductorctl(&["logs", "core", "-n", "50"]).await;
    assert!(logs.status.success());
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("listening"),
        "core log shows it listening"
    );

    assert_down(&env).await;
}

/// A home, state database and workspace made world-readable (a loose umask,
/// an older version) are made private on start: 0700, 0600 with its WAL, 0700.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_readable_home_and_state_database_are_made_private_on_start() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_config(FAST_LAUNCHER);
    let open = |path: &Path, bits: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits)).expect("chmod")
    };
    let workspace = env.home().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let db = env.home().join("state.db");
    std::fs::write(&db, b"").expect("an empty database");
    open(env.home(), 0o755);
    open(&workspace, 0o755);
    open(&db, 0o644);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up --detach failed: {}", stderr(&up));
    env.wait_healthy(&["runner", "core"]).await;
    assert_eq!(mode(env.home()), 0o700, "home");
    assert_eq!(mode(&workspace), 0o700, "workspace");
    assert_eq!(mode(&db), 0o600, "state.db");
    let wal = env.home().join("state.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "state.db-wal");
    }
    assert_down(&env).await;
}

/// The variables of a running process, or `None` when this user may not read
/// them (the runner is non-dumpable: only a privileged user can).
fn environ(pid: u32) -> Option<Vec<String>> {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(bytes) => Some(
            bytes.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect(),
        ),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(error) => panic!("read /proc/{pid}/environ: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_secrets_reach_only_their_gateway() {
    const TOKEN: &str = "123456:TEST-token-from-the-environment";
    const PASSWORD: &str = "matrix-password-from-the-environment";
    let telegram = FakeTelegram::start().await;
    let config = format!(
        "{FAST_LAUNCHER}\n[telegram]\nenabled = true\napi_url = \"{}\"\nallowed_user_ids = [1]\n",
        telegram.url()
    );
    let mut env = TestEnv::with_config(&config);
    env.set_env("DUCTOR_TELEGRAM_TOKEN", TOKEN);
    env.set_env("DUCTOR_MATRIX_PASSWORD", PASSWORD);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up --detach failed: {}", stderr(&up));
    let status = env.status().await;
    let mut read = 0;
    for row in status["services"].as_array().expect("services") {
        assert_eq!(row["state"], "healthy", "runner and core start without the token: {row}");
        let service = row["service"].as_str().expect("name");
        let Some(vars) = environ(pid_of(row)) else {
            println!("{service}: environment unreadable for this user (non-dumpable)");
            continue;
        };
        read += 1;
        assert!(!vars.iter().any(|v| v.contains(PASSWORD)), "{service} got the Matrix password");
        let has_token = vars.iter().any(|v| v.contains(TOKEN));
        assert_eq!(has_token, service == "telegram", "{service}: token present = {has_token}");
    }
    assert!(read >= 2, "core's and the gateway's environments are readable");
    assert_down(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_each_service_is_restarted_and_clients_reconnect() {
    let telegram = FakeTelegram::start().await;
    let env = TestEnv::with_config(&telegram_config(telegram.url()));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up --detach failed: {}", stderr(&up));

    let gateway = wait_for("telegram attached to core", async || {
        let detail = harness::health(&env.channel("telegram")).await?.detail;
        detail.contains("core attached").then_some(detail)
    })
    .await;
    eprintln!("telegram: {gateway}");
    for service in ["runner", "core", "telegram"] {
        // One long-lived client per service, made before the kill.
        let channel = env.channel(service);
        let before = env.service_status(service).await.expect("listed");
        let old_pid = pid_of(&before);
        let old_restarts = before["restarts"].as_u64().expect("restarts");
        assert_eq!(harness::health(&channel).await.expect("answers").pid, old_pid);

        harness::signal(old_pid, Signal::SIGKILL);

        let after = wait_for(&format!("{service} restarted"), async || {
            let row = env.service_status(service).await?;
            (row["state"] == "healthy" && row["pid"].as_u64() != Some(u64::from(old_pid)))
                .then_some(row)
        })
        .await;
        assert_eq!(after["restarts"].as_u64(), Some(old_restarts + 1), "{after}");
        assert!(after["last_exit"].as_str().unwrap_or("").contains("SIGKILL"), "{after}");
        let answer = wait_for(&format!("{service} answering the old client"), async || {
            harness::health(&channel).await
        })
        .await;
        assert_eq!(answer.pid, pid_of(&after), "the same client reached the new {service}");
        assert!(!harness::alive(old_pid));
        if service == "core" {
            // The gateway is core's client: it must attach to the new core by itself.
            wait_for("telegram attached to the new core", async || {
                let detail = harness::health(&env.channel("telegram")).await?.detail;
                detail.contains("core attached").then_some(())
            })
            .await;
        }
    }
    assert_down(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_up_refuses_and_sigterm_stops_a_foreground_up_cleanly() {
    let env = TestEnv::with_config(FAST_LAUNCHER);
    let mut launcher = env.spawn_ductorctl(&["up"]);
    env.wait_healthy(&["runner", "core"]).await;

    let second = env.ductorctl(&["up"]).await;
    assert!(!second.status.success(), "a second up must fail");
    let message = stderr(&second);
    assert!(message.contains("already running"), "{message}");
    let launcher_pid = launcher.id().expect("running");
    assert!(message.contains(&launcher_pid.to_string()), "names the running launcher: {message}");
    let detached = env.ductorctl(&["up", "--detach"]).await;
    assert!(!detached.status.success(), "a second up --detach must fail too");

    let pids: Vec<u32> = env.known_pids();
    assert_eq!(pids.len(), 3, "launcher, runner, core: {pids:?}");
    harness::signal(launcher_pid, Signal::SIGTERM);
    let status = tokio::time::timeout(harness::patience(), launcher.wait())
        .await
        .expect("the launcher stops")
        .expect("wait");
    assert!(status.success(), "clean stop exits 0: {status}");
    for pid in pids {
        assert!(!harness::alive(pid), "pid {pid} survived the launcher");
    }
    for service in ["runner", "core"] {
        assert!(!env.socket(service).exists(), "{service} socket left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_key_exits_64_naming_the_key() {
    let env = TestEnv::with_config("[telegram]\ntokn = \"123:abc\"\n");
    let check = env.ductorctl(&["config", "check"]).await;
    assert_eq!(check.status.code(), Some(64));
    assert!(stderr(&check).contains("telegram.tokn"), "{}", stderr(&check));

    let up = env.ductorctl(&["up"]).await;
    assert_eq!(up.status.code(), Some(64));
    assert!(stderr(&up).contains("telegram.tokn"));

    for (_, binary) in &harness::SERVICES[..2] {
        let output = env.command(binary).output().await.expect("run the service");
        assert_eq!(output.status.code(), Some(64), "{binary}");
        assert!(stderr(&output).contains("telegram.tokn"), "{binary}: {}", stderr(&output));
    }
    assert!(!env.socket("core").exists(), "nothing was bound");

    env.write_config("[launcher]\nmax_crashes = 3\n");
    let fixed = env.ductorctl(&["config", "check"]).await;
    assert!(fixed.status.success());
}

/// A bin dir with the real binaries, except `ductor-core` replaced by `script`.
fn bin_dir_with_fake_core(script: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("db").tempdir_in("/tmp").expect("temp bin dir");
    for (_, binary) in harness::SERVICES {
        let real = harness::bin_dir().join(binary);
        if binary != "ductor-core" && real.is_file() {
            std::os::unix::fs::symlink(&real, dir.path().join(binary)).expect("link binary");
        }
    }
    let core = dir.path().join("ductor-core");
    std::fs::write(&core, script).expect("write fake core");
    std::fs::set_permissions(&core, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_service_is_given_up_with_its_exit_and_log() {
    let bins = bin_dir_with_fake_core("#!/bin/sh\necho 'core: the disk is on fire' >&2\nexit 3\n");
    let mut env = TestEnv::with_config(
        "[launcher]\nrestart_backoff_ms = 10\nrestart_backoff_max_ms = 40\nmax_crashes = 3\n",
    );
    env.set_bin_dir(bins.path());
    let up = env.ductorctl(&["up"]).await;
    assert_eq!(up.status.code(), Some(1), "up gives up");
    let message = stderr(&up);
    assert!(message.contains("core could not be started"), "{message}");
    assert!(message.contains("exit status 3"), "{message}");
    assert!(message.contains("crashed 3 times"), "{message}");
    assert!(message.contains("the disk is on fire"), "quotes the log: {message}");
    assert!(env.known_pids().is_empty(), "runner was stopped again: {:?}", env.known_pids());
    assert!(!env.socket("runner").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_42_restarts_without_counting_a_crash() {
    let real_core = harness::binary("ductor-core");
    let script = format!(
        "#!/bin/sh\nif [ ! -e \"$DUCTOR_HOME/asked-once\" ]; then touch \"$DUCTOR_HOME/asked-once\"; exit 42; fi\nexec {}\n",
        real_core.display()
    );
    let bins = bin_dir_with_fake_core(&script);
    // One crash would be fatal, so the restart must not count as one.
    let mut env = TestEnv::with_config("[launcher]\nmax_crashes = 1\n");
    env.set_bin_dir(bins.path());
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let core = env.service_status("core").await.expect("core listed");
    assert_eq!(core["state"], "healthy");
    assert_eq!(core["restarts"], 1);
    assert!(core["last_exit"].as_str().unwrap_or("").contains("42"), "{core}");
    assert_down(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_command_restarts_one_service_under_the_launcher() {
    let env = TestEnv::with_config(FAST_LAUNCHER);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let runner_before = env.service_status("runner").await.expect("runner");
    let core_before = env.service_status("core").await.expect("core");

    let restart = env.ductorctl(&["restart", "core"]).await;
    assert!(restart.status.success(), "{}", stderr(&restart));
    let core_after = env.service_status("core").await.expect("core");
    assert_ne!(core_after["pid"], core_before["pid"]);
    assert_eq!(core_after["restarts"], 1);
    assert_eq!(core_after["state"], "healthy");
    let runner_after = env.service_status("runner").await.expect("runner");
    assert_eq!(runner_after["pid"], runner_before["pid"], "only core was restarted");
    assert_eq!(runner_after["restarts"], 0);
    assert_down(&env).await;

    let none = env.ductorctl(&["restart", "core"]).await;
    assert!(!none.status.success(), "restart without a launcher fails");
    assert!(stderr(&none).contains("no `ductorctl up` is running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_a_launcher_asks_health_on_the_sockets() {
    let env = TestEnv::with_config("");
    let mut core = env.command("ductor-core").spawn().expect("start core by hand");
    let row = wait_for("core healthy by socket", async || {
        let row = env.service_status("core").await?;
        (row["state"] == "healthy").then_some(row)
    })
    .await;
    assert_eq!(pid_of(&row), core.id().expect("running"));
    assert!(row["uptime_ms"].as_u64().is_some());
    let runner = env.service_status("runner").await.expect("runner listed");
    assert_eq!(runner["state"], "stopped");
    let only = env.ductorctl(&["status", "runner"]).await;
    assert_eq!(only.status.code(), Some(1), "a single unhealthy service exits non-zero");

    // `down` also stops services it did not start.
    assert_down(&env).await;
    let status = tokio::time::timeout(harness::patience(), core.wait()).await.expect("core exits");
    assert!(status.expect("wait").success(), "core stopped cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_private_default_config_and_never_overwrites() {
    let env = TestEnv::new();
    let token = env.home().join("token");
    std::fs::write(&token, "42:secret\n").expect("write token");
    let init = env
        .ductorctl(&[
            "init",
            "--provider",
            "gemini",
            "--telegram-token-file",
            &token.display().to_string(),
            "--allowed-user-id",
            "7",
        ])
        .await;
    assert!(init.status.success(), "{}", stderr(&init));
    let config = env.home().join("config.toml");
    assert_eq!(mode(&config), 0o600);
    let text = std::fs::read_to_string(&config).expect("read config");
    assert!(text.contains("provider = \"gemini\""));
    assert!(text.contains("allowed_user_ids = [7]"));
    assert!(!text.contains("42:secret"), "the token stays in its file");
    assert!(env.ductorctl(&["config", "check"]).await.status.success());

    let again = env.ductorctl(&["init"]).await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"));
    let forced = env.ductorctl(&["init", "--force"]).await;
    assert!(forced.status.success());
    let text = std::fs::read_to_string(&config).expect("read config");
    assert_eq!(text, std::fs::read_to_string(&config).expect("read"), "stable");
    assert!(text.contains("provider = \"claude\""), "defaults without answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_ok_warn_fail_lines() {
    let env = TestEnv::with_config("[runner]\nsandbox = \"none\"\n");
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = String::from_utf8_lossy(&doctor.stdout);
    assert!(out.contains("OK   config:"), "{out}");
    assert!(out.contains("OK   binaries:"), "{out}");
    assert!(out.contains("landlock:"), "{out}");
    assert!(out.contains("WARN sandbox:"), "sandbox none is a warning: {out}");
    for provider in ["claude", "codex", "gemini"] {
        assert!(out.contains(&format!("provider {provider}:")), "{out}");
    }
    env.write_config("[agent]\nprovder = \"x\"\n");
    let broken = env.ductorctl(&["doctor"]).await;
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stdout).contains("FAIL config:"));
}

/// A config whose runner finds `claude` (the fake CLI) on the PATH it gives
/// CLIs, `path`; ductorctl's own PATH does not have it.
fn runner_path_config(path: &Path) -> String {
    format!(
        "{FAST_LAUNCHER}\n[runner]\nsandbox = \"none\"\n\n\
         [providers.claude]\nenv = {{ PATH = \"{}:/usr/bin:/bin\" }}\n",
        path.display()
    )
}

/// The doctor line of `what` ("provider claude"), without its level tag.
fn doctor_line(out: &str, what: &str) -> String {
    let needle = format!(" {what}: ");
    let line = out.lines().find(|l| l.contains(&needle));
    line.unwrap_or_else(|| panic!("no `{what}` line: {out}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_asks_the_runner_which_clis_it_finds() {
    let clis = tempfile::tempdir().expect("a directory for the fake claude");
    let claude = clis.path().join("claude");
    std::os::unix::fs::symlink(harness::binary("ductor-fake-cli"), &claude).expect("link claude");
    let env = TestEnv::with_config(&runner_path_config(clis.path()));
    let expected =
        format!("OK   provider claude: 9.9.9 ({}); login: unauthenticated", claude.display());

    // No runner yet: a one-shot `ductor-runner probe` answers, and is gone after.
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(doctor.status.success(), "{out}");
    assert_eq!(doctor_line(&out, "provider claude"), expected);
    assert!(doctor_line(&out, "runner").contains("ductor-runner probe"), "{out}");
    assert!(env.processes_of_this_home().is_empty(), "the one-shot probe must exit");

    // A running runner answers itself: once its config no longer puts claude
    // on the PATH, only the runner started with the old one still finds it.
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    env.wait_healthy(&["runner"]).await;
    let elsewhere = tempfile::tempdir().expect("an empty directory");
    env.write_config(&runner_path_config(elsewhere.path()));
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert_eq!(doctor_line(&out, "provider claude"), expected);
    assert!(doctor_line(&out, "runner").contains("running; it checked"), "{out}");
    assert_down(&env).await;

    // Down again, the one-shot reads the new config: no claude there.
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(doctor_line(&out, "provider claude").contains("`claude` not found"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_stops_services_whose_launcher_was_killed() {
    let env = TestEnv::with_config(FAST_LAUNCHER);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let status = env.status().await;
    let launcher = status["launcher_pid"].as_u64().expect("launcher pid") as u32;
    let services: Vec<u32> =
        status["services"].as_array().expect("services").iter().map(pid_of).collect();
    harness::signal(launcher, Signal::SIGKILL);
    wait_for("the launcher gone", async || (!harness::alive(launcher)).then_some(())).await;

    // Orphans keep serving; status finds them through their sockets.
    let status = env.status().await;
    assert_eq!(status["managed_by"], "none");
    assert!(status["launcher_pid"].is_null());
    for row in status["services"].as_array().expect("services") {
        assert_eq!(row["state"], "healthy", "{row}");
    }
    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(String::from_utf8_lossy(&down.stdout).contains("launcher gone"));
    for pid in services {
        assert!(!harness::alive(pid), "orphan {pid} survived down");
    }
    assert_down(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_service_turns_unhealthy_and_back() {
    let env = TestEnv::with_config(FAST_LAUNCHER);
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let runner = env.service_status("runner").await.expect("runner");
    let pid = pid_of(&runner);
    harness::signal(pid, Signal::SIGSTOP);
    let frozen = wait_for("runner unhealthy", async || {
        let row = env.service_status("runner").await?;
        (row["state"] == "unhealthy").then_some(row)
    })
    .await;
    assert_eq!(pid_of(&frozen), pid, "a live but silent process is not restarted");
    harness::signal(pid, Signal::SIGCONT);
    let thawed = wait_for("runner healthy again", async || {
        let row = env.service_status("runner").await?;
        (row["state"] == "healthy").then_some(row)
    })
    .await;
    assert_eq!(pid_of(&thawed), pid);
    assert_eq!(thawed["restarts"], 0);
    assert_down(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stopped_for_good_is_killed_and_restarted() {
    // A run that SIGSTOPs core must not leave the bot hanging until a human looks.
    let env = TestEnv::with_config(&format!("{FAST_LAUNCHER}unhealthy_restart_seconds = 3\n"));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let core = env.service_status("core").await.expect("core");
    let pid = pid_of(&core);
    harness::signal(pid, Signal::SIGSTOP);
    let after = wait_for("core restarted after staying unresponsive", async || {
        let row = env.service_status("core").await?;
        (row["state"] == "healthy" && row["pid"].as_u64() != Some(u64::from(pid))).then_some(row)
    })
    .await;
    assert_eq!(after["restarts"], 1, "{after}");
    assert!(after["last_exit"].as_str().unwrap_or("").contains("unresponsive"), "{after}");
    assert!(!harness::alive(pid), "the stopped process is gone, not left frozen");
    assert_down(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_install_renders_units_with_real_paths() {
    let env = TestEnv::with_config("[telegram]\nenabled = true\ntoken = \"1:x\"\n");
    let units = env.home().join("units");
    let install =
        env.ductorctl(&["service", "install", "--unit-dir", &units.display().to_string()]).await;
    assert!(install.status.success(), "{}", stderr(&install));
    let core = std::fs::read_to_string(units.join("ductor-core.service")).expect("core unit");
    let bin = harness::bin_dir();
    assert!(core.contains(&format!("ExecStart={}/ductor-core\n", bin.display())), "{core}");
    assert!(core.contains(&format!("Environment=DUCTOR_HOME={}\n", env.home().display())));
    assert!(core.contains(&format!("Environment=DUCTOR_RUN_DIR={}\n", env.run_dir().display())));
    assert!(units.join("ductor.target").is_file());
    assert!(units.join("ductor-gateway-telegram.service").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_appended_lines() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let env = TestEnv::new();
    let logs = env.home().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    std::fs::write(logs.join("core.log"), "first line\n").expect("write log");
    let mut follower = env
        .command("ductorctl")
        .args(["logs", "core", "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    let next = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(harness::patience(), lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("not closed")
    };
    assert_eq!(next(&mut lines).await, "first line");
    let mut file =
        std::fs::OpenOptions::new().append(true).open(logs.join("core.log")).expect("open log");
    std::io::Write::write_all(&mut file, b"appended later\n").expect("append");
    assert_eq!(next(&mut lines).await, "appended later");
    follower.kill().await.expect("stop the follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_asks_questions_only_on_a_terminal() {
    let env = TestEnv::new();
    let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal");
    // Answers typed ahead: provider, no Telegram, no Matrix.
    nix::unistd::write(&pty.master, b"codex\nn\nn\n").expect("type the answers");
    let output = env
        .command("ductorctl")
        .arg("init")
        .stdin(std::process::Stdio::from(pty.slave))
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .expect("run init on a terminal");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Default provider"), "asked on a terminal: {stdout}");
    let text = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    assert!(text.contains("provider = \"codex\""), "the answer was applied");
    assert!(text.contains("enabled = false"));

    // Without a terminal (the harness gives /dev/null) nothing is asked.
    let quiet = env.ductorctl(&["init", "--force"]).await;
    assert!(!String::from_utf8_lossy(&quiet.stdout).contains("Default provider"));
}
