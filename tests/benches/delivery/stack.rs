//! The delivery bench's two sides: the CLI alone (spawned directly, the
//! baseline) and the whole stack behind the fake Bot API, with the figures
//! each yields.

use std::path::Path;
use std::time::{Duration, Instant};

use ductor_gateway_telegram::testing::{Call, FakeBotApi, updates};
use ductor_tests::fake_model::FakeModel;
use ductor_tests::harness::TestEnv;
use ductor_tests::real_cli::{Cli, provider_files, provider_section};
use tokio::io::AsyncBufReadExt;

use super::{ms, p50};

const TOKEN: &str = "123456:BENCH-delivery-token";

/// When the CLI alone printed its first and last text delta and its result line.
#[derive(Debug, Default)]
pub struct Alone {
    first: Vec<Duration>,
    last: Vec<Duration>,
    result: Vec<Duration>,
}

impl Alone {
    pub fn push(&mut self, (first, last, result): (Duration, Duration, Duration)) {
        self.first.push(first);
        self.last.push(last);
        self.result.push(result);
    }

    pub fn firsts(&self) -> Vec<Duration> {
        self.first.clone()
    }

    pub fn results(&self) -> Vec<Duration> {
        self.result.clone()
    }

    pub fn first_p50(&self) -> Duration {
        p50(&self.first)
    }

    pub fn last_p50(&self) -> Duration {
        p50(&self.last)
    }

    pub fn result_p50(&self) -> Duration {
        p50(&self.result)
    }

    /// The slowest result (for runs started together).
    pub fn result_max(&self) -> Duration {
        self.result.iter().max().copied().unwrap_or_default()
    }
}

/// One line's meaning for the timings: a text delta, the result, or neither.
fn line_kind(line: &str) -> Option<&'static str> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    match value["type"].as_str()? {
        "result" => Some("result"),
        "stream_event" if value["event"]["delta"]["type"] == "text_delta" => Some("text"),
        _ => None,
    }
}

/// Where the CLI alone runs: in the stack's workspace with its main memory
/// appended to the system prompt, as the runner starts a new session.
pub struct Baseline<'a> {
    pub claude: &'a Path,
    pub workspace: std::path::PathBuf,
    pub memory: String,
    pub env: Vec<(&'static str, String)>,
}

/// The median of `a[i] - b[i]`, in milliseconds.
pub fn pairwise(a: &[Option<Duration>], b: &[Duration]) -> f64 {
    let mut diffs: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(a, b)| Some(a.as_ref()?.as_secs_f64() * 1000.0 - b.as_secs_f64() * 1000.0))
        .collect();
    diffs.sort_by(f64::total_cmp);
    diffs.get(diffs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `count` `claude` at once on echo prompts.
pub async fn cli_alone_together(base: &Baseline<'_>, count: usize) -> Alone {
    let runs = (0..count).map(|i| one_cli(base, format!("echo together {i}")));
    let mut alone = Alone::default();
    for run in futures::future::join_all(runs).await {
        alone.push(run);
    }
    alone
}

/// One `claude` run as the runner starts a new turn
/// (`runner/src/provider/claude.rs`, bypass mode): when it printed its first
/// and last text delta and its result line, from spawn.
#[allow(clippy::disallowed_methods)] // The bench's baseline: the CLI without ductor.
pub async fn one_cli(base: &Baseline<'_>, prompt: String) -> (Duration, Duration, Duration) {
    {
        // As the runner does: a fresh TMPDIR for every run.
        let tmp = tempfile::tempdir().expect("a TMPDIR");
        let started = Instant::now();
        let mut child = tokio::process::Command::new(base.claude)
            .args(["-p", prompt.as_str(), "--output-format", "stream-json", "--verbose"])
            .args(["--include-partial-messages", "--permission-mode", "bypassPermissions"])
            .args(["--append-system-prompt", base.memory.as_str()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("IS_SANDBOX", "1")
            .envs(base.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("TMPDIR", tmp.path())
            .current_dir(&base.workspace)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn claude");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let (mut first, mut last, mut result) = (None, None, Duration::ZERO);
        while let Ok(Some(line)) = lines.next_line().await {
            match line_kind(&line) {
                Some("text") => {
                    first.get_or_insert(started.elapsed());
                    last = Some(started.elapsed());
                }
                Some("result") => {
                    result = started.elapsed();
                    break;
                }
                _ => {}
            }
        }
        let _ = child.wait().await;
        (first.unwrap_or_default(), last.unwrap_or_default(), result)
    }
}

/// ductorctl up with the Telegram gateway on the fake Bot API.
pub struct Stack {
    pub api: FakeBotApi,
    pub env: TestEnv,
    /// The CLI's environment (its home under `_cli_home`).
    pub cli_env: Vec<(&'static str, String)>,
    _cli_home: tempfile::TempDir,
}

/// What one turn looked like at the Bot API, from the user's message.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The first bot message and whether its text was real.
    pub first: Option<(Duration, bool)>,
    /// The first moment the whole answer text was visible.
    pub visible: Option<Duration>,
    /// The final answer's (notifying) message.
    pub final_sent: Option<Duration>,
}

/// The turns of one figure.
#[derive(Debug, Default)]
pub struct Turns {
    seen: Vec<Seen>,
}

impl Turns {
    pub fn push(&mut self, seen: Seen) {
        self.seen.push(seen);
    }

    /// When the whole answer was visible, per turn.
    pub fn visible(&self) -> Vec<Option<Duration>> {
        self.seen.iter().map(|s| s.visible).collect()
    }

    /// When the first real text was visible, per turn.
    pub fn first_texts(&self) -> Vec<Option<Duration>> {
        self.seen.iter().map(|s| s.first.filter(|f| f.1).map(|f| f.0)).collect()
    }

    pub fn visible_p50(&self) -> Duration {
        p50(&self.seen.iter().filter_map(|s| s.visible).collect::<Vec<_>>())
    }

    pub fn print(&self, name: &str) {
        let firsts: Vec<Duration> = self.seen.iter().filter_map(|s| s.first.map(|f| f.0)).collect();
        let placeholders = self.seen.iter().filter(|s| s.first.is_some_and(|f| !f.1)).count();
        let finals: Vec<Duration> = self.seen.iter().filter_map(|s| s.final_sent).collect();
        println!(
            "{name}: first bot message p50 {} ({placeholders} of {} not real text); answer text visible p50 {}; notifying final p50 {} ({} of {})",
            ms(p50(&firsts)),
            self.seen.len(),
            ms(self.visible_p50()),
            ms(p50(&finals)),
            finals.len(),
            self.seen.len()
        );
    }
}

fn config(api_url: &str, claude: &Path, env: &[(&str, String)]) -> String {
    let users: Vec<String> = (1..=5000).map(|id| id.to_string()).collect();
    format!(
        "[telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\n\
         allowed_user_ids = [{users}]\n\n[agent]\nprovider = \"claude\"\n\n\
         [runner]\nsandbox = \"{sandbox}\"\n\n{providers}",
        users = users.join(", "),
        // DUCTOR_BENCH_SANDBOX=none: the runner's cost without Landlock.
        sandbox = std::env::var("DUCTOR_BENCH_SANDBOX").unwrap_or_else(|_| "auto".to_owned()),
        providers = provider_section(Cli::Claude, claude, env),
    )
}

impl Stack {
    /// Everything up and healthy.
    pub async fn up(claude: &Path, model: &FakeModel) -> Stack {
        let api = FakeBotApi::start(TOKEN).await;
        let cli_home = tempfile::tempdir().expect("a CLI home");
        let env = provider_files(Cli::Claude, cli_home.path(), &model.base_url());
        let mut env_test = TestEnv::with_config(&config(&api.url, claude, &env));
        // DUCTOR_BENCH_LOG=<filter>: the services log at that level, and
        // their logs are kept in /tmp/ductor-bench-logs/ after `down`.
        if let Ok(filter) = std::env::var("DUCTOR_BENCH_LOG") {
            env_test.set_env("DUCTOR_LOG", &filter);
        }
        let up = env_test.ductorctl(&["up", "--detach"]).await;
        assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
        env_test.wait_healthy(&["runner", "core", "telegram"]).await;
        Stack { api, env: env_test, cli_env: env, _cli_home: cli_home }
    }

    /// The CLI alone as this stack's runner would start it.
    pub fn baseline<'a>(&self, claude: &'a Path) -> Baseline<'a> {
        let workspace = self.env.home().join("workspace");
        let memory = std::fs::read_to_string(workspace.join("memory_system/MAINMEMORY.md"))
            .unwrap_or_default();
        Baseline { claude, workspace, memory, env: self.cli_env.clone() }
    }

    pub async fn down(&self) {
        let _ = self.env.ductorctl(&["down"]).await;
        if std::env::var_os("DUCTOR_BENCH_LOG").is_some() {
            let kept = Path::new("/tmp/ductor-bench-logs");
            let _ = std::fs::create_dir_all(kept);
            for entry in
                std::fs::read_dir(self.env.home().join("logs")).into_iter().flatten().flatten()
            {
                let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
            }
            println!("logs kept in {}", kept.display());
        }
    }

    /// One turn of `kind` in a new `chat`.
    pub async fn turn(&self, kind: &str, chat: i64) -> Seen {
        let marker = format!("m{chat}x");
        let sent = Instant::now();
        self.api.push_update(updates::text(chat, chat, 1, &format!("{kind} {marker}")));
        self.seen(chat, &marker, kind, sent).await
    }

    /// Waits for the turn in `chat` to end; what was seen when.
    async fn seen(&self, chat: i64, marker: &str, kind: &str, sent: Instant) -> Seen {
        let done = |calls: &[Call]| {
            calls
                .iter()
                .any(|c| c.method == "sendmessage" && !c.silent() && c.chat_id == Some(chat))
        };
        let finished = self.api.wait_until(Duration::from_secs(120), done).await;
        assert!(finished, "chat {chat}: no final answer");
        let calls: Vec<Call> = self
            .api
            .calls()
            .into_iter()
            .filter(|c| c.chat_id == Some(chat) && c.ok && c.at >= sent)
            .filter(|c| c.method == "sendmessage" || c.method == "editmessagetext")
            .collect();
        // The whole answer: the echo quotes the prompt's last word; the slow
        // scenario's last chunk is chunk19.
        let whole = if kind == "slow" { "chunk19".to_owned() } else { marker.to_owned() };
        let text = |c: &Call| c.str("text").unwrap_or_default().to_owned();
        Seen {
            first: calls.first().map(|c| (c.at - sent, !text(c).contains('⏳'))),
            visible: calls.iter().find(|c| text(c).contains(&whole)).map(|c| c.at - sent),
            final_sent: calls
                .iter()
                .find(|c| c.method == "sendmessage" && !c.silent())
                .map(|c| c.at - sent),
        }
    }

    /// Ten chats at once: when all are answered, and the CPU spent;
    /// `alone` is ten CLIs started together without ductor.
    pub async fn ten_at_once(&self, first_chat: i64, alone: &Alone) {
        let before = Cpu::now(&self.pids());
        let sent = Instant::now();
        for chat in first_chat..first_chat + 10 {
            self.api.push_update(updates::text(chat, chat, 1, &format!("echo m{chat}x")));
        }
        let mut last = Duration::ZERO;
        for chat in first_chat..first_chat + 10 {
            let seen = self.seen(chat, &format!("m{chat}x"), "echo", sent).await;
            last = last.max(seen.visible.unwrap_or_default());
        }
        let after = Cpu::now(&self.pids());
        let ductor = after.ductor.saturating_sub(before.ductor);
        let machine = after.machine.saturating_sub(before.machine);
        println!(
            "all ten answered (text visible) after {}; ten CLIs alone, started together, all had their result after {}; ductor's processes used {} of CPU, {:.1} % of the machine's {} busy",
            ms(last),
            ms(alone.result_max()),
            ms(ductor),
            100.0 * ductor.as_secs_f64() / machine.as_secs_f64().max(f64::EPSILON),
            ms(machine),
        );
    }

    /// The pids of runner, core and the gateway.
    fn pids(&self) -> Vec<u32> {
        ["runner", "core", "telegram"]
            .iter()
            .filter_map(|service| {
                let file = self.env.home().join("run").join(format!("{service}.pid"));
                std::fs::read_to_string(file).ok()?.trim().parse().ok()
            })
            .collect()
    }
}

/// CPU time: ductor's own processes and the whole machine's busy time.
struct Cpu {
    ductor: Duration,
    machine: Duration,
}

impl Cpu {
    fn now(pids: &[u32]) -> Cpu {
        let tick = Duration::from_secs(1) / 100; // USER_HZ
        let ductor: u64 = pids
            .iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let busy: u64 = stat
            .lines()
            .next()
            .map(|cpu| {
                let fields: Vec<u64> =
                    cpu.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
                // user nice system (idle iowait skipped) irq softirq steal
                [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum()
            })
            .unwrap_or(0);
        Cpu {
            ductor: tick * u32::try_from(ductor).unwrap_or(u32::MAX),
            machine: tick * u32::try_from(busy).unwrap_or(u32::MAX),
        }
    }
}
