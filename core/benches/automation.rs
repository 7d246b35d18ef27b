//! Automation budgets, printed (not asserted): webhook accept (202) latency on
//! loopback, a sustained 1 000 requests/s without loss or memory growth, and
//! the scheduler's CPU cost with 10 000 registered jobs.
//!
//! Run: `cargo bench -p ductor-core --bench automation`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ductor_core::automation::clock::{ManualClock, SystemClock};
use ductor_core::automation::schedule::Schedule;
use ductor_core::automation::scheduler::{
    BoxFuture, Fire, JobHandler, JobSpec, MissedPolicy, Registration, Scheduler, Skip,
};
use ductor_core::automation::store as db;
use ductor_core::automation::webhook::server::{HookRegistry, ServerSettings, router, serve};
use ductor_core::automation::webhook::{HookAuth, HookMode, Webhook};
use ductor_core::store::Store;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn hook() -> Webhook {
    let auth = HookAuth::Bearer { token: TOKEN.into() };
    Webhook::new("bench", HookMode::CronTask, "Build {{status}} on {{branch}}", auth)
}

/// Resident memory in KiB (Linux), 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU time of this process (user + system), from /proc (Linux).
fn cpu_time() -> Duration {
    let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok() else { return Duration::ZERO };
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name; 100 ticks/s.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

struct Listener {
    url: String,
    accepted: Arc<AtomicU64>,
    _stop: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

async fn listener(rate_limit_per_minute: u32) -> Listener {
    let hooks = Arc::new(HookRegistry::default());
    hooks.upsert(hook()).expect("valid hook");
    // As configured by default, with room for the bench's concurrent clients.
    let mut settings = ServerSettings::from_config(&Default::default());
    settings.rate_limit_per_minute = rate_limit_per_minute;
    settings.connections.max_connections = 1024;
    settings.connections.per_address = 1024;
    // The journal on disk, as in core: every 202 is one WAL commit.
    let dir = tempfile::tempdir().expect("temporary directory");
    let journal =
        Store::open(&dir.path().join("state.db"), db::MIGRATIONS).expect("open the journal");
    let (router, mut events) = router(&settings, hooks, Arc::new(SystemClock), journal.clone());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}/hooks/bench", tcp.local_addr().expect("address"));
    let stop = CancellationToken::new();
    tokio::spawn(serve(tcp, settings.connections, router, stop.clone()));
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    // The consumer stands in for the engine: it takes events as fast as they
    // come and, like a run entering the history, clears their journal rows.
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Some(id) = event.inbox {
                let _ = journal.call(move |c| Ok(db::drop_event(c, id))).await;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    Listener { url, accepted, _stop: stop.drop_guard(), _dir: dir }
}

async fn post(client: &reqwest::Client, url: &str) -> u16 {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(r#"{"status":"failed","branch":"main","sha":"0123456789abcdef"}"#)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn accept_latency() {
    let l = listener(1_000_000).await;
    let client = reqwest::Client::new();
    for _ in 0..200 {
        post(&client, &l.url).await;
    }
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let start = Instant::now();
        assert_eq!(post(&client, &l.url).await, 202);
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "webhook accept (202), loopback, keep-alive, 5000 sequential: p50 {:?}  p90 {:?}  p99 {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99)
    );
}

async fn sustained(rate: u64, seconds: u64) {
    let l = listener(u32::MAX).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client");
    let rss_before = rss_kib();
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut rss_peak = rss_before;
    for i in 0..rate * seconds {
        tick.tick().await;
        let (client, url, ok, other) = (client.clone(), l.url.clone(), ok.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            if post(&client, &url).await == 202 {
                ok.fetch_add(1, Ordering::Relaxed);
            } else {
                other.fetch_add(1, Ordering::Relaxed);
            }
        }));
        if i % rate == 0 {
            rss_peak = rss_peak.max(rss_kib());
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = rate * seconds;
    println!(
        "sustained {rate} req/s for {seconds} s: sent {sent} in {:.2?} ({:.0} req/s), 202 {}, other {}, \
         handled by the consumer {} (lost {}), RSS {} KiB → peak {} KiB → end {} KiB",
        elapsed,
        sent as f64 / elapsed.as_secs_f64(),
        ok.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        l.accepted.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed).saturating_sub(l.accepted.load(Ordering::Relaxed)),
        rss_before,
        rss_peak,
        rss_kib()
    );
}

struct Counter(AtomicU64);

impl JobHandler for Counter {
    fn run(&self, _fire: Fire) -> BoxFuture {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async {})
    }
    fn skipped(&self, _skip: Skip) {}
}

fn daily_jobs(n: usize) -> Vec<JobSpec> {
    (0..n)
        .map(|i| JobSpec {
            id: format!("job{i:05}"),
            schedule: Schedule::parse(
                &format!("{} {} * * *", i % 60, (i / 60) % 24),
                "Europe/Berlin",
            )
            .expect("valid"),
            enabled: true,
            quiet: None,
            dependency: (i % 10 == 0).then(|| format!("key{}", i % 7)),
            missed: MissedPolicy::RunOnce,
            last_fire_at: None,
            created_at: Timestamp::UNIX_EPOCH,
        })
        .collect()
}

/// A simulated day of 10 000 daily jobs on the manual clock: the scheduler's
/// whole work for a day (all fires, dependency queue, rescheduling).
async fn scheduler_day() {
    let start: Timestamp = "2026-05-01T00:00:30Z".parse().expect("timestamp");
    let clock = ManualClock::new(start);
    let counter = Arc::new(Counter(AtomicU64::new(0)));
    let stop = CancellationToken::new();
    let scheduler = Scheduler::spawn(Arc::new(clock.clone()), counter.clone(), stop.clone());
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    for job in daily_jobs(10_000) {
        scheduler.upsert(job, Registration::Live).expect("running");
    }
    let _ = scheduler.run_now("sync").await;
    let register_cpu = cpu_time() - cpu0;
    let register_wall = t0.elapsed();
    let cpu1 = cpu_time();
    for minute in 1..=1440 {
        clock.set(start + SignedDuration::from_mins(minute));
        let _ = scheduler.run_now("sync").await;
    }
    while counter.0.load(Ordering::Relaxed) < 10_000 {
        tokio::task::yield_now().await;
    }
    let day_cpu = cpu_time() - cpu1;
    println!(
        "scheduler, 10 000 jobs: register {:?} wall / {:?} CPU; a simulated day (10 000 fires, 1 440 wake-ups) \
         {:?} CPU = {:.5} % of one core over 24 h",
        register_wall,
        register_cpu,
        day_cpu,
        day_cpu.as_secs_f64() / 86_400.0 * 100.0
    );
    stop.cancel();
}

/// 10 000 jobs on the real clock, idle between fires: CPU over 20 s of wall time.
async fn scheduler_idle() {
    let counter = Arc::new(Counter(AtomicU64::new(0)));
    let stop = CancellationToken::new();
    let scheduler = Scheduler::spawn(Arc::new(SystemClock), counter.clone(), stop.clone());
    for job in daily_jobs(10_000) {
        scheduler.upsert(job, Registration::Live).expect("running");
    }
    let _ = scheduler.run_now("sync").await;
    let cpu0 = cpu_time();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cpu = cpu_time() - cpu0;
    println!(
        "scheduler, 10 000 jobs, real clock, 20 s idle: {:?} CPU = {:.3} % of one core ({} fires)",
        cpu,
        cpu.as_secs_f64() / 20.0 * 100.0,
        counter.0.load(Ordering::Relaxed)
    );
    stop.cancel();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        accept_latency().await;
        sustained(1000, 10).await;
        scheduler_day().await;
        scheduler_idle().await;
    });
}
