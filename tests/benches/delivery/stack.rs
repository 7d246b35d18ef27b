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

/// When the CLI alone printed its first text delta and its result line.
#[derive(Debug, Default)]
pub struct Alone {
    first: Vec<Duration>,
    result: Vec<Duration>,
}

impl Alone {
    pub fn first_p50(&self) -> Duration {
        p50(&self.first)
    }

    pub fn result_p50(&self) -> Duration {
        p50(&self.result)
    }
}

/// Runs `claude` `rounds` times on a `kind` prompt, as the runner would
/// for a new turn (`runner/src/provider/claude.rs`, bypass mode).
#[allow(clippy::disallowed_methods)] // The bench's baseline: the CLI without ductor.
pub async fn cli_alone(claude: &Path, model: &FakeModel, kind: &str, rounds: usize) -> Alone {
    let dir = tempfile::tempdir().expect("a temporary home");
    let env = provider_files(Cli::Claude, dir.path(), &model.base_url());
    let mut alone = Alone::default();
    for round in 0..rounds {
        let prompt = format!("{kind} alone round{round}");
        let started = Instant::now();
        let mut child = tokio::process::Command::new(claude)
            .args(["-p", &prompt, "--output-format", "stream-json", "--verbose"])
            .args(["--include-partial-messages", "--permission-mode", "bypassPermissions"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("IS_SANDBOX", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn claude");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut first = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if first.is_none() && line.contains("\"text_delta\"") {
                first = Some(started.elapsed());
            }
            if line.starts_with("{\"type\":\"result\"") {
                alone.result.push(started.elapsed());
                break;
            }
        }
        alone.first.push(first.unwrap_or_default());
        let _ = child.wait().await;
    }
    alone
}

/// ductorctl up with the Telegram gateway on the fake Bot API.
pub struct Stack {
    pub api: FakeBotApi,
    pub env: TestEnv,
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
    pub fn visible_p50(&self) -> Duration {
        p50(&self.seen.iter().filter_map(|s| s.visible).collect::<Vec<_>>())
    }

    pub fn first_text_p50(&self) -> Duration {
        let real: Vec<Duration> =
            self.seen.iter().filter_map(|s| s.first.filter(|f| f.1).map(|f| f.0)).collect();
        p50(&real)
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
         allowed_user_ids = [{users}]\n\n[agent]\nprovider = \"claude\"\n\n{providers}",
        users = users.join(", "),
        providers = provider_section(Cli::Claude, claude, env),
    )
}

impl Stack {
    /// Everything up and healthy.
    pub async fn up(claude: &Path, model: &FakeModel) -> Stack {
        let api = FakeBotApi::start(TOKEN).await;
        let cli_home = tempfile::tempdir().expect("a CLI home");
        let env = provider_files(Cli::Claude, cli_home.path(), &model.base_url());
        let env_test = TestEnv::with_config(&config(&api.url, claude, &env));
        let up = env_test.ductorctl(&["up", "--detach"]).await;
        assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
        env_test.wait_healthy(&["runner", "core", "telegram"]).await;
        Stack { api, env: env_test, _cli_home: cli_home }
    }

    pub async fn down(&self) {
        let _ = self.env.ductorctl(&["down"]).await;
    }

    /// `rounds` turns of `kind`, each in a new chat from `first_chat` on.
    pub async fn turns(&self, kind: &str, rounds: usize, first_chat: i64) -> Turns {
        let mut turns = Turns::default();
        for round in 0..rounds {
            let chat = first_chat + i64::try_from(round).expect("few rounds");
            let marker = format!("m{chat}x");
            let sent = Instant::now();
            self.api.push_update(updates::text(chat, chat, 1, &format!("{kind} {marker}")));
            turns.seen.push(self.seen(chat, &marker, kind, sent).await);
        }
        turns
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

    /// Ten chats at once: when all are answered, and the CPU spent.
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
            "all ten answered (text visible) after {}; one CLI alone takes {} to its result; ductor's processes used {} of CPU, {:.1} % of the machine's {} busy",
            ms(last),
            ms(alone.result_p50()),
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
