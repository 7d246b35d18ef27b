//! Issue 14's budgets, measured through the real processes (`ductor-runner`,
//! `ductor-core`, the fake claude CLI, a gateway client on the Attach
//! stream). Prints:
//!
//! - a foreground turn's round trip (message in → final reply at the
//!   gateway), p50/p90, with no background work and then with 5 named
//!   sessions of the same chat streaming at once (`slow:<n>` turns);
//! - core's RSS holding 100 chats × 5 named sessions (every one has run a
//!   turn and is idle), against its idle RSS.
//!
//! Run: `cargo build --release --bins -p ductor-runner -p ductor-core -p ductor-tests`
//! then `cargo bench -p ductor-core --bench background` (binaries from
//! `DUCTOR_BIN_DIR`, else the bench executable's target directory).

use std::path::Path;
use std::time::{Duration, Instant};

use ductor_proto::pb;
use ductor_proto::pb::outbound_action::Kind;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::{bin_dir, rss_mib};

const TURNS: usize = 40;
const BACKGROUND: usize = 5;
const CHATS: usize = 100;

/// The bench's one spawn site.
#[allow(clippy::disallowed_methods)]
fn spawn(binary: &Path, home: &Path) -> tokio::process::Child {
    tokio::process::Command::new(binary)
        .arg("--home")
        .arg(home)
        .env("DUCTOR_LOG", "warn")
        .env_remove("DUCTOR_RUN_DIR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()))
}

async fn wait_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = ductor_proto::transport::connect(path);
    while ductor_proto::health::check(channel.clone(), Duration::from_millis(500)).await.is_none() {
        assert!(Instant::now() < deadline, "{} never answered Health", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Text of a final reply or notice, with its chat.
fn text_of(action: &pb::OutboundAction) -> Option<(String, &str)> {
    let chat = action.chat.as_ref().map(|c| c.chat_id.clone()).unwrap_or_default();
    match action.kind.as_ref()? {
        Kind::FinalReply(reply) => Some((chat, reply.text.as_str())),
        Kind::Notice(notice) => Some((chat, notice.text.as_str())),
        _ => None,
    }
}

/// Reads actions until `count` texts satisfy `pick`.
async fn wait_texts(gw: &mut Gateway, count: usize, pick: impl Fn(&str, &str) -> bool) {
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < count {
        let action = gw.action_before(deadline).await.expect("core keeps answering");
        if text_of(&action).is_some_and(|(chat, text)| pick(&chat, text)) {
            seen += 1;
        }
    }
}

/// Round trips of `TURNS` foreground echo turns in `chat`, in ms, sorted.
async fn foreground(gw: &mut Gateway, chat: &str, tag: &str) -> Vec<f64> {
    let mut trips = Vec::new();
    for i in 0..TURNS {
        let needle = format!("echo: {tag}-{i}");
        let sent = Instant::now();
        gw.say(chat, &format!("{tag}-{i}")).await;
        wait_texts(gw, 1, |c, text| c == chat && text.starts_with(&needle)).await;
        trips.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    trips.sort_by(f64::total_cmp);
    trips
}

fn print_trips(label: &str, trips: &[f64]) {
    let at = |p: f64| trips[((trips.len() as f64 - 1.0) * p).round() as usize];
    println!("{label}: n={} p50={:.1} ms p90={:.1} ms", trips.len(), at(0.5), at(0.9));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bins = bin_dir();
    let home = tempfile::Builder::new().prefix("dbgbench").tempdir_in("/tmp").expect("temp home");
    let state = home.path().join("fake-state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[runner]\nmax_concurrent_runs = 128\nextra_writable_paths = [\"{s}\"]\n\n\
             [providers.claude]\nbinary = \"{b}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{s}\" }}\n",
            s = state.display(),
            b = bins.join("ductor-fake-cli").display()
        ),
    )
    .expect("write config");
    let run = home.path().join("run");
    let _runner = spawn(&bins.join("ductor-runner"), home.path());
    wait_socket(&run.join("runner.sock")).await;
    let core = spawn(&bins.join("ductor-core"), home.path());
    let core_pid = core.id().expect("core runs");
    wait_socket(&run.join("core.sock")).await;
    let channel = ductor_proto::transport::connect(run.join("core.sock"));
    let mut gw = Gateway::attach(channel, gateway::hello("bench")).await;

    foreground(&mut gw, "fg", "warm").await;
    let alone = foreground(&mut gw, "fg", "alone").await;
    print_trips("foreground turn, no background work", &alone);
    // Five named sessions of the same chat, each streaming 100 deltas/10 s.
    for i in 0..BACKGROUND {
        gw.say("fg", &format!("/session slow:300 background-{i}")).await;
    }
    wait_texts(&mut gw, BACKGROUND, |c, text| c == "fg" && text.contains("Started **")).await;
    let beside = foreground(&mut gw, "fg", "beside").await;
    print_trips(&format!("foreground turn, {BACKGROUND} named sessions streaming"), &beside);
    gw.say("fg", "/stop_all").await;
    wait_texts(&mut gw, 1, |_, text| text.contains("Background: stopped")).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_mib(core_pid);
    let started = Instant::now();
    for batch in (0..CHATS).collect::<Vec<_>>().chunks(10) {
        for chat in batch {
            for i in 0..BACKGROUND {
                gw.say(&format!("chat-{chat}"), &format!("/session hold-{i}")).await;
            }
        }
        let answers = batch.len() * BACKGROUND;
        wait_texts(&mut gw, answers, |_, text| text.starts_with("💬 **")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "core RSS: {before:.1} MiB before, {:.1} MiB holding {CHATS} chats x {BACKGROUND} named \
         sessions (all ran a turn, now idle; set up in {:.1} s)",
        rss_mib(core_pid),
        started.elapsed().as_secs_f64()
    );
    drop(core);
}
