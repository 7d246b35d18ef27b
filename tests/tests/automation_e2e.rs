//! Issue 7, end to end with the real runner, core and `ductorctl`, the fake
//! claude CLI, and a test gateway speaking `Core.Attach`: a cron job that
//! fires delivers to its chat with a delivery receipt; a result produced while
//! the gateway is away arrives when it attaches again; webhooks in both modes
//! over real HTTP; an agent run manages its own chat's jobs through
//! `ductorctl` and is refused another chat's. Needs `cargo build --bins`.

use std::time::{Duration, Instant};

use ductor_proto::pb;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::{self, TestEnv, text, wait_for};

const TRANSPORT: &str = "testgw";
const CHAT: &str = "room";

/// `ductorctl ARGS` as the operator; asserts success, returns stdout.
async fn ctl(env: &TestEnv, args: &[&str]) -> String {
    let output = env.ductorctl(args).await;
    assert!(output.status.success(), "ductorctl {args:?} failed: {}", text(&output.stderr));
    text(&output.stdout)
}

/// An unscoped test gateway for [`TRANSPORT`].
async fn attach(env: &TestEnv) -> Gateway {
    Gateway::attach(env.channel("core"), gateway::hello(TRANSPORT)).await
}

/// Reads (and acknowledges) actions until a final reply containing `needle`;
/// returns every action read, in order.
async fn actions_until_final(
    gateway: &mut Gateway,
    needle: &str,
    limit: Duration,
) -> Vec<pb::OutboundAction> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let Some(action) = gateway.action_before(deadline).await else {
            panic!("no final reply containing {needle:?} within {limit:?}: {seen:?}")
        };
        let done = matches!(&action.kind,
            Some(pb::outbound_action::Kind::FinalReply(reply)) if reply.text.contains(needle));
        seen.push(action);
        if done {
            return seen;
        }
    }
}

/// Reads (and acknowledges) actions until a final reply containing `needle`, within `limit`.
async fn final_containing(gateway: &mut Gateway, needle: &str, limit: Duration) -> String {
    text_containing(gateway, needle, limit, false).await
}

/// Like [`final_containing`], also matching notices when `notices`.
async fn text_containing(
    gateway: &mut Gateway,
    needle: &str,
    limit: Duration,
    notices: bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let Some(action) = gateway.action_before(deadline).await else {
            panic!("no final reply containing {needle:?} within {limit:?}")
        };
        let text = match action.kind {
            Some(pb::outbound_action::Kind::FinalReply(reply)) => reply.text,
            Some(pb::outbound_action::Kind::Notice(notice)) if notices => notice.text,
            _ => continue,
        };
        if text.contains(needle) {
            return text;
        }
    }
}

/// The latest history line of job `name` once `pick` accepts it.
async fn history_until(
    env: &TestEnv,
    args: &[&str],
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> String {
    wait_for(what, async || {
        let output = env.ductorctl(args).await;
        let out = text(&output.stdout);
        let first = out.lines().next().unwrap_or("").to_owned();
        pick(&first).then_some(first)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fires_delivers_to_its_chat_with_a_receipt() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let mut gateway = attach(&env).await;
    let added = ctl(
        &env,
        &[
            "cron",
            "add",
            "tick",
            "--schedule",
            "* * * * *",
            "--title",
            "Tick",
            "--description",
            "say tick",
            "--instruction",
            "tick-job-says-hi",
            "--transport",
            TRANSPORT,
            "--chat",
            CHAT,
        ],
    )
    .await;
    assert!(added.contains("tick") && added.contains("next"), "{added}");
    assert!(env.home().join("workspace/cron_tasks/tick/TASK_DESCRIPTION.md").is_file());
    // The schedule fires at the next minute boundary.
    let reply = final_containing(&mut gateway, "tick-job-says-hi", Duration::from_secs(100)).await;
    assert!(reply.contains("Tick"), "titled: {reply}");
    assert!(reply.contains("tick_MEMORY.md"), "the instruction is enriched: {reply}");
    let line = history_until(&env, &["cron", "history", "tick"], "delivery ok", |l| {
        l.contains("delivery ok")
    })
    .await;
    assert!(line.contains("scheduled") && line.contains("success"), "{line}");
    ctl(&env, &["cron", "remove", "tick"]).await;
    assert!(env.ductorctl(&["down"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_made_while_the_gateway_is_away_arrive_when_it_returns() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    // Never fires on its own; run by hand.
    ctl(
        &env,
        &[
            "cron",
            "add",
            "report",
            "--schedule",
            "0 0 1 1 *",
            "--description",
            "d",
            "--instruction",
            "report-while-away",
            "--transport",
            TRANSPORT,
            "--chat",
            CHAT,
        ],
    )
    .await;
    ctl(
        &env,
        &[
            "cron",
            "add",
            "broken",
            "--schedule",
            "0 0 1 1 *",
            "--description",
            "d",
            "--instruction",
            "error",
            "--transport",
            TRANSPORT,
            "--chat",
            CHAT,
        ],
    )
    .await;
    ctl(&env, &["cron", "run", "report"]).await;
    ctl(&env, &["cron", "run", "broken"]).await;
    let line = history_until(&env, &["cron", "history", "report"], "a finished run", |l| {
        l.contains("success")
    })
    .await;
    assert!(line.contains("delivery pending"), "no gateway yet: {line}");
    let failed = history_until(&env, &["cron", "history", "broken"], "a failed run", |l| {
        l.contains("error")
    })
    .await;
    assert!(failed.contains("manual"), "{failed}");

    let mut gateway = attach(&env).await;
    assert!(gateway.welcome.pending >= 2, "both results wait in the outbox: {:?}", gateway.welcome);
    final_containing(&mut gateway, "report-while-away", harness::patience()).await;
    history_until(&env, &["cron", "history", "report"], "delivery ok", |l| {
        l.contains("delivery ok")
    })
    .await;
    // The failure follows /status in the chat…
    gateway.say(CHAT, "/status").await;
    let status =
        text_containing(&mut gateway, "Automation failures", harness::patience(), true).await;
    assert!(status.contains("broken") && !status.contains("report"), "{status}");
    // …and is visible in /cron.
    let cron = env.ductorctl(&["ask", "--chat", "ops", "/cron"]).await;
    let listing = text(&cron.stdout);
    assert!(listing.contains("broken") && listing.contains("error"), "{listing}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn bearer(added: &str) -> String {
    added
        .lines()
        .find_map(|l| l.trim().strip_prefix("Authorization: Bearer "))
        .unwrap_or_else(|| panic!("no token printed: {added}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_in_both_modes() {
    let port = free_port();
    let env = TestEnv::with_fake_claude(&format!("[webhooks]\nenabled = true\nport = {port}\n"));
    env.up().await;
    let mut gateway = attach(&env).await;
    gateway.say(CHAT, "hello").await;
    final_containing(&mut gateway, "echo: hello", harness::patience()).await;

    let task = ctl(
        &env,
        &[
            "webhook",
            "add",
            "ci",
            "--mode",
            "cron_task",
            "--prompt-template",
            "CI {{status}} on {{branch}}",
            "--transport",
            TRANSPORT,
            "--chat",
            CHAT,
        ],
    )
    .await;
    let nudge = |secret: &'static str, value: String| {
        [
            "webhook",
            "add",
            "nudge",
            "--mode",
            "wake",
            "--prompt-template",
            "nudge {{n}}",
            "--transport",
            TRANSPORT,
            "--chat",
            CHAT,
            secret,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([value])
        .collect::<Vec<_>>()
    };
    // A secret on argv is refused (every local user can read it); a file is not.
    let on_argv = nudge("--token", "chosen-token-on-argv-0123456789".into());
    let on_argv = env.ductorctl(&on_argv.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!on_argv.status.success());
    assert!(text(&on_argv.stderr).contains("--token-file"), "{}", text(&on_argv.stderr));
    let token_file = env.home().join("nudge.token");
    std::fs::write(&token_file, "chosen-token-from-a-file-0123456789\n").expect("token file");
    let args = nudge("--token-file", token_file.display().to_string());
    let wake = ctl(&env, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(bearer(&wake), "chosen-token-from-a-file-0123456789");
    let client = reqwest::Client::new();
    let url = |id: &str| format!("http://127.0.0.1:{port}/hooks/{id}");
    let post = |id: &str, token: String, body: &'static str| {
        client
            .post(url(id))
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body)
            .send()
    };
    let health =
        client.get(format!("http://127.0.0.1:{port}/health")).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let refused = post("ci", "wrong-token-wrong-token".into(), "{}").await.expect("post");
    assert_eq!(refused.status().as_u16(), 401);
    // More junk than the per-minute limit (30), and probes for hook names:
    // none of it counts, and an unknown hook answers like a wrong token.
    for i in 0..40 {
        let id = if i % 2 == 0 { "nope" } else { "ci" };
        let junk = post(id, format!("junk-token-{i:020}"), "{}").await.expect("post");
        assert_eq!(junk.status().as_u16(), 401, "{id}");
    }

    let accepted =
        post("ci", bearer(&task), r#"{"status":"failed","branch":"main"}"#).await.expect("post");
    assert_eq!(accepted.status().as_u16(), 202);
    let reply = final_containing(&mut gateway, "CI failed on main", harness::patience()).await;
    assert!(reply.contains("untrusted"), "the payload is fenced: {reply}");

    let accepted = post("nudge", bearer(&wake), r#"{"n":7}"#).await.expect("post");
    assert_eq!(accepted.status().as_u16(), 202);
    final_containing(&mut gateway, "nudge 7", harness::patience()).await;

    let listing = ctl(&env, &["webhook", "list"]).await;
    assert!(listing.contains("ci") && listing.contains("triggers 1"), "{listing}");
    history_until(&env, &["webhook", "history", "ci"], "a delivered run", |l| {
        l.contains("delivery ok")
    })
    .await;
    history_until(&env, &["webhook", "history", "nudge"], "a woken session", |l| {
        l.contains("success")
    })
    .await;
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// A 202 is a promise: a request accepted just before core is killed is
/// handled by the next core. The request waits in its dependency lane behind
/// a run that hangs, so it is accepted (journaled) but not yet started when
/// core gets SIGKILL; the restarted core runs and delivers it, marked replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_accepted_before_core_is_killed_is_handled_after_the_restart() {
    let port = free_port();
    // The chat administers ductor: the failure of a hook removed meanwhile
    // belongs to no chat any more, and only admins (and `ductorctl`) see it.
    let env = TestEnv::with_fake_claude(&format!(
        "[webhooks]\nenabled = true\nport = {port}\n\n[agent]\nadmin_chats = [\"{TRANSPORT}:{CHAT}\"]\n"
    ));
    env.up().await;
    let hook = |name: &'static str, template: &'static str| {
        let env = &env;
        async move {
            let args = [
                "webhook",
                "add",
                name,
                "--mode",
                "cron_task",
                "--prompt-template",
                template,
                "--dependency",
                "lane",
                "--transport",
                TRANSPORT,
                "--chat",
                CHAT,
            ];
            bearer(&ctl(env, &args).await)
        }
    };
    let blocker = hook("blocker", "hang {{x}}").await;
    let ci = hook("ci", "after-crash {{status}}").await;
    let gone = hook("gone", "never-runs {{x}}").await;
    let client = reqwest::Client::new();
    let post = |id: &str, token: &str, body: &'static str| {
        client
            .post(format!("http://127.0.0.1:{port}/hooks/{id}"))
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body)
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(post("blocker", &blocker, r#"{"x":1}"#).await.map(status).expect("post"), 202);
    history_until(&env, &["webhook", "history", "blocker"], "the blocker running", |l| {
        l.contains("running")
    })
    .await;
    assert_eq!(post("ci", &ci, r#"{"status":"red"}"#).await.map(status).expect("post"), 202);
    let waiting = ctl(&env, &["webhook", "history", "ci"]).await;
    assert!(waiting.contains("No runs yet"), "queued behind the blocker: {waiting}");
    // Accepted, then its hook removed: after the restart it cannot run, and says so.
    assert_eq!(post("gone", &gone, r#"{"x":2}"#).await.map(status).expect("post"), 202);
    ctl(&env, &["webhook", "remove", "gone"]).await;

    let core = env.service_status("core").await.expect("core row");
    let old_pid = core["pid"].as_u64().expect("core pid") as u32;
    harness::signal(old_pid, nix::sys::signal::Signal::SIGKILL);
    wait_for("core restarted", async || {
        let row = env.service_status("core").await?;
        (row["state"] == "healthy" && row["pid"].as_u64() != Some(u64::from(old_pid))).then_some(())
    })
    .await;

    let mut gateway = attach(&env).await;
    let reply = final_containing(&mut gateway, "after-crash red", harness::patience()).await;
    assert!(reply.contains("untrusted"), "the same fenced prompt: {reply}");
    let line = history_until(&env, &["webhook", "history", "ci"], "the replayed run", |l| {
        l.contains("delivery ok")
    })
    .await;
    assert!(line.contains("replayed") && line.contains("success"), "{line}");
    // The run core was killed in is closed honestly, not replayed.
    let blocked = ctl(&env, &["webhook", "history", "blocker"]).await;
    assert!(blocked.contains("interrupted") && !blocked.contains("replayed"), "{blocked}");
    assert_eq!(blocked.lines().count(), 1, "{blocked}");
    gateway.say(CHAT, "/status").await;
    let status =
        text_containing(&mut gateway, "Automation failures", harness::patience(), true).await;
    assert!(status.contains("gone") && status.contains("hook_removed"), "{status}");
    assert!(!status.contains("never-runs"), "{status}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// The heartbeat with the real binaries: one tick after start it checks in
/// the idle chat (reply delivered), runs the ACK chat's check-in without
/// delivering the ACK reply, and skips the chat whose turn is running without
/// queuing behind it. One tick is a minute: this test takes about 70 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_checks_in_idle_chats_quietly_and_skips_busy_ones() {
    let marker_dir = tempfile::tempdir().expect("marker dir");
    let marker = marker_dir.path().join("quiet-check-in-ran");
    let env = TestEnv::with_fake_claude(&format!(
        "[heartbeat]\nenabled = true\ninterval_minutes = 1\ncooldown_minutes = 0\n\
         quiet_start = 0\nquiet_end = 0\nprompt = \"heartbeat-ping\"\n\n\
         [[heartbeat.targets]]\ntransport = \"{TRANSPORT}\"\nchat_id = \"quiet\"\n\
         prompt = \"sh:touch {marker} && echo all-quiet\"\nack_token = \"all-quiet\"\n",
        marker = marker.display(),
    ));
    // The marker lives outside the workspace: let the sandboxed fake CLI write it.
    let config = std::fs::read_to_string(env.home().join("config.toml")).expect("config");
    env.write_config(&config.replacen(
        "extra_writable_paths = [",
        &format!("extra_writable_paths = [\"{}\", ", marker_dir.path().display()),
        1,
    ));
    env.up().await;
    let mut gateway = attach(&env).await;
    // Three chats with sessions; "busy" then starts a turn that never ends.
    for chat in [CHAT, "quiet", "busy"] {
        gateway.say(chat, &format!("hello-{chat}")).await;
        final_containing(&mut gateway, &format!("echo: hello-{chat}"), harness::patience()).await;
    }
    gateway.say("busy", "hang").await;
    let seen =
        actions_until_final(&mut gateway, "echo: heartbeat-ping", Duration::from_secs(150)).await;
    let ping = seen.last().expect("the ping");
    assert_eq!(ping.chat.as_ref().map(|c| c.chat_id.as_str()), Some(CHAT), "{ping:?}");
    wait_for("the quiet chat's check-in", async || marker.exists().then_some(())).await;
    // Let the quiet check-in's reply reach the outbox, if it (wrongly) would.
    gateway.say("quiet", "after-check-in").await;
    let later =
        actions_until_final(&mut gateway, "echo: after-check-in", harness::patience()).await;
    let of_chat = |chat: &str| {
        seen.iter()
            .chain(&later)
            .filter(|a| a.chat.as_ref().is_some_and(|c| c.chat_id == chat))
            .map(|a| format!("{:?}", a.kind))
            .collect::<Vec<_>>()
    };
    let quiet = of_chat("quiet");
    assert!(!quiet.iter().any(|k| k.contains("all-quiet")), "the ACK reply is kept: {quiet:?}");
    let busy = of_chat("busy");
    assert!(!busy.iter().any(|k| k.contains("QueueNotice")), "queued behind the turn: {busy:?}");
    assert!(!busy.iter().any(|k| k.contains("heartbeat-ping")), "{busy:?}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// What the fake CLI prints for `sh:<ductorctl ARGS>` run inside an agent turn of `chat`.
async fn as_agent(env: &TestEnv, chat: &str, args: &str) -> String {
    let ductorctl = harness::binary("ductorctl");
    shell_as_agent(env, chat, &format!("{} {args}", ductorctl.display())).await
}

/// What the fake CLI prints for `sh:<command>` run inside an agent turn of `chat`.
async fn shell_as_agent(env: &TestEnv, chat: &str, command: &str) -> String {
    let output = env.ductorctl(&["ask", "--chat", chat, &format!("sh:{command}")]).await;
    text(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_manages_only_its_own_chats_jobs() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let added =
        as_agent(&env, "c1", "cron add mine --schedule '0 9 * * *' --description 'from the agent'")
            .await;
    assert!(
        added.contains("added") && added.contains("cli:c1"),
        "the job reports to the agent's chat: {added}"
    );
    let other =
        as_agent(&env, "c2", "cron add theirs --schedule '0 10 * * *' --description 'other chat'")
            .await;
    assert!(other.contains("added"), "{other}");

    let seen = as_agent(&env, "c1", "cron list").await;
    assert!(
        seen.contains("mine") && !seen.contains("theirs"),
        "an agent sees its own jobs only: {seen}"
    );
    let refused = as_agent(&env, "c1", "cron pause theirs").await;
    assert!(refused.contains("belongs to another chat"), "{refused}");
    let refused = as_agent(&env, "c1", "cron remove theirs").await;
    assert!(refused.contains("belongs to another chat"), "{refused}");
    let redirected = as_agent(&env, "c1", "cron edit mine --transport cli --chat c2").await;
    assert!(redirected.contains("its own chat"), "{redirected}");
    let forged = as_agent(&env, "c1", "cron list").await;
    assert!(!forged.contains("theirs"));

    // The sandbox keeps the operator's token out of the agent's reach.
    let admin =
        std::fs::read_to_string(env.home().join("secrets/admin.token")).expect("admin token");
    let home = shell_as_agent(&env, "c1", "echo \"home=$DUCTOR_HOME\"").await;
    assert!(home.contains(&format!("home={}", env.home().display())), "{home}");
    let peek = shell_as_agent(&env, "c1", "cat \"$DUCTOR_HOME/secrets/admin.token\"").await;
    assert!(!peek.contains(admin.trim()), "the agent read the admin token: {peek}");
    assert!(peek.contains("ermission denied"), "refused by the sandbox: {peek}");

    // The operator sees both, untouched.
    let all = ctl(&env, &["cron", "list"]).await;
    assert!(all.contains("mine") && all.contains("theirs"), "{all}");
    assert!(all.lines().any(|l| l.contains("theirs") && l.starts_with('▶')), "not paused: {all}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// What an agent may set up on its own is bounded (`[automation]`): no
/// every-minute schedules, a cap on jobs, hooks that wait for the operator
/// before the internet reaches the chat, and cron runs without the chat's
/// credential (so a payload cannot make them create more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_flood_schedules_or_open_a_door_without_the_operator() {
    let port = free_port();
    let env = TestEnv::with_fake_claude(&format!(
        "[webhooks]\nenabled = true\nport = {port}\n\n[automation]\nmax_jobs_per_chat = 3\n"
    ));
    env.up().await;
    let every_minute =
        as_agent(&env, "c1", "cron add spam --schedule '* * * * *' --description d").await;
    assert!(every_minute.contains("min_agent_interval_minutes"), "{every_minute}");
    let long = "x".repeat(5000);
    let wordy = as_agent(
        &env,
        "c1",
        &format!("cron add wordy --schedule '0 9 * * *' --description {long}"),
    )
    .await;
    assert!(wordy.contains("max_text_chars"), "{wordy}");
    for i in 0..3 {
        let added = as_agent(
            &env,
            "c1",
            &format!("cron add job{i} --schedule '0 9 * * *' --description d"),
        )
        .await;
        assert!(added.contains("added"), "{added}");
    }
    let fourth = as_agent(&env, "c1", "cron add job3 --schedule '0 9 * * *' --description d").await;
    assert!(fourth.contains("max_jobs_per_chat"), "{fourth}");
    // The operator is not limited.
    ctl(
        &env,
        &[
            "cron",
            "add",
            "ops",
            "--schedule",
            "* * * * *",
            "--description",
            "d",
            "--transport",
            "cli",
            "--chat",
            "c1",
        ],
    )
    .await;

    // A hook an agent opens starts closed; only the operator opens it.
    let added =
        as_agent(&env, "c1", "webhook add door --mode wake --prompt-template 'sh:{{cmd}}'").await;
    assert!(added.contains("created disabled"), "{added}");
    let token = bearer(&added);
    let client = reqwest::Client::new();
    let knock = || {
        client
            .post(format!("http://127.0.0.1:{port}/hooks/door"))
            .header("content-type", "application/json")
            .bearer_auth(&token)
            .body(r#"{"cmd":"id"}"#)
            .send()
    };
    assert_eq!(knock().await.expect("post").status().as_u16(), 401, "closed until approved");
    let self_approved = as_agent(&env, "c1", "webhook enable door").await;
    assert!(self_approved.contains("operator"), "{self_approved}");
    assert_eq!(knock().await.expect("post").status().as_u16(), 401);
    ctl(&env, &["webhook", "enable", "door"]).await;
    assert_eq!(knock().await.expect("post").status().as_u16(), 202, "open once approved");

    // A cron run has no credential: it cannot add a job (nor fall back to the admin token).
    let ductorctl = harness::binary("ductorctl");
    let instruction = format!("sh:{} cron add chained --schedule '0 9 * * *'", ductorctl.display());
    ctl(
        &env,
        &[
            "cron",
            "add",
            "isolated",
            "--schedule",
            "0 9 * * *",
            "--instruction",
            &instruction,
            "--transport",
            TRANSPORT,
            "--chat",
            CHAT,
        ],
    )
    .await;
    let mut gateway = attach(&env).await;
    ctl(&env, &["cron", "run", "isolated"]).await;
    let reply = final_containing(&mut gateway, "no agent credential", harness::patience()).await;
    assert!(!reply.contains("added"), "{reply}");
    let all = ctl(&env, &["cron", "list"]).await;
    assert!(!all.contains("chained"), "{all}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// A task folder belongs to one owner: an agent can neither overwrite the
/// operator's job description by adding a job of the same name, nor run a
/// hook in that job's folder to read its memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_take_over_another_owners_task_folder() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    ctl(
        &env,
        &["cron", "add", "daily", "--schedule", "0 9 * * *", "--description", "operator task"],
    )
    .await;
    let folder = env.home().join("workspace/cron_tasks/daily");
    std::fs::write(folder.join("daily_MEMORY.md"), "operator notes").expect("memory");
    let clash =
        as_agent(&env, "c1", "cron add daily --schedule '0 9 * * *' --description EVIL-FROM-C1")
            .await;
    assert!(clash.contains("already exists"), "{clash}");
    let description =
        std::fs::read_to_string(folder.join("TASK_DESCRIPTION.md")).expect("description");
    assert!(!description.contains("EVIL"), "the refused job wrote the folder: {description}");
    let peek = as_agent(
        &env,
        "c1",
        "webhook add peek --mode cron_task --task-folder daily --prompt-template 'sh:cat daily_MEMORY.md'",
    )
    .await;
    assert!(peek.contains("belongs to another"), "{peek}");
    let hooks = ctl(&env, &["webhook", "list"]).await;
    assert!(!hooks.contains("peek"), "{hooks}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// Seconds into the current minute (wall clock).
fn second_of_minute() -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    now.as_secs() % 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_runs_follow_each_jobs_policy_across_a_restart() {
    let env = TestEnv::with_fake_claude("");
    env.up().await;
    let target = ["--transport", TRANSPORT, "--chat", CHAT];
    for (name, policy) in [("catchup", "run_once"), ("skipper", "skip")] {
        let mut args = vec![
            "cron",
            "add",
            name,
            "--schedule",
            "* * * * *",
            "--description",
            "d",
            "--instruction",
            name,
            "--missed",
            policy,
        ];
        args.extend_from_slice(&target);
        ctl(&env, &args).await;
    }
    assert!(env.ductorctl(&["down"]).await.status.success());
    // Stay down across a minute boundary: both jobs miss at least one fire.
    tokio::time::sleep(Duration::from_secs(60 - second_of_minute() + 2)).await;
    env.up().await;
    let mut gateway = attach(&env).await;
    // Both arrive, in either order (among the jobs' regular fires).
    let (mut caught, mut skipped) = (None, None);
    while caught.is_none() || skipped.is_none() {
        let text = final_containing(&mut gateway, "", Duration::from_secs(60)).await;
        if text.contains("Catch-up") {
            caught = Some(text);
        } else if text.contains("missed-run policy: skip") {
            skipped = Some(text);
        }
    }
    let (caught, skipped) = (caught.unwrap_or_default(), skipped.unwrap_or_default());
    assert!(caught.contains("catchup") && caught.contains("ran once now"), "{caught}");
    assert!(skipped.contains("skipper"), "{skipped}");
    let history = ctl(&env, &["cron", "history", "skipper"]).await;
    assert!(history.contains("skipped:missed"), "{history}");
    assert!(env.ductorctl(&["down"]).await.status.success());
}
