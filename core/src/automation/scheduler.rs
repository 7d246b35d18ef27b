//! The cron scheduler: one task holding every enabled job's next fire time in
//! an ordered set, sleeping on the [`Clock`] until the earliest one. Cost is
//! O(log n) per fire and nothing while idle, so 10 000 jobs are as cheap as ten.
//!
//! A due job passes the quiet-hours gate, then the overlap gate (a job still
//! running or queued is not started twice), then the [`DependencyQueue`]: jobs
//! sharing a dependency key run one after another in firing order, others in
//! parallel. What happens to a fire is always reported to the [`JobHandler`],
//! including skips, so nothing is dropped silently.
//!
//! Missed runs: a job registered with [`Registration::Startup`] looks at its
//! last fire time; fires that fell into the downtime are either run once now or
//! skipped, per job, and the handler is told which (it tells the user).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use ductor_daemon::sync::Locked as _;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::clock::SharedClock;
use super::quiet::QuietHours;
use super::schedule::Schedule;

/// A boxed, owned future (the handler's work).
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What to do with fires missed while ductor was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedPolicy {
    /// Run once on start (however many fires were missed).
    #[default]
    RunOnce,
    /// Skip them; the next regular fire runs as usual.
    Skip,
}

impl MissedPolicy {
    /// The stored / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunOnce => "run_once",
            Self::Skip => "skip",
        }
    }

    /// Parses the stored / CLI spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "run_once" => Some(Self::RunOnce),
            "skip" => Some(Self::Skip),
            _ => None,
        }
    }
}

/// What the scheduler needs to know about one job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Unique job id.
    pub id: String,
    /// When it fires.
    pub schedule: Schedule,
    /// Paused jobs are kept (for "run now") but never fire on their own.
    pub enabled: bool,
    /// Fires inside this window are skipped.
    pub quiet: Option<QuietHours>,
    /// Jobs with the same key run one after another.
    pub dependency: Option<String>,
    /// Missed-run policy.
    pub missed: MissedPolicy,
    /// The last fire the scheduler handed out (run or skipped); `None` = never.
    pub last_fire_at: Option<Timestamp>,
    /// When the job was created (the reference for missed runs of a new job).
    pub created_at: Timestamp,
}

/// Why a job fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Its schedule came due.
    Scheduled,
    /// Someone asked ("run now").
    Manual,
    /// Catch-up for fires missed while ductor was down.
    CatchUp {
        /// How many fires were missed.
        missed: u32,
        /// The most recent missed fire.
        last_missed_at: Timestamp,
    },
}

/// One run to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// The job.
    pub job_id: String,
    /// The fire time this run stands for.
    pub scheduled_at: Timestamp,
    /// Why it runs.
    pub trigger: Trigger,
}

/// Why a fire did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Inside the job's quiet hours.
    QuietHours,
    /// The previous run of this job had not finished.
    StillRunning,
    /// Missed while ductor was down, and the job's policy is `skip`.
    Missed {
        /// How many fires were missed.
        missed: u32,
    },
}

impl SkipReason {
    /// The status recorded in the run history.
    pub fn status(&self) -> &'static str {
        match self {
            Self::QuietHours => "skipped:quiet_hours",
            Self::StillRunning => "skipped:still_running",
            Self::Missed { .. } => "skipped:missed",
        }
    }
}

/// A fire that was not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The job.
    pub job_id: String,
    /// The fire time that was skipped.
    pub scheduled_at: Timestamp,
    /// Why.
    pub reason: SkipReason,
}

/// Runs jobs and records what happened (core implements this).
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one fire to completion (run, deliver, record). Called in
    /// dependency order; the returned future is awaited before the next job
    /// with the same key starts.
    fn run(&self, fire: Fire) -> BoxFuture;
    /// A fire was skipped: record it (and tell the user for missed runs).
    fn skipped(&self, skip: Skip);
}

/// How a job enters the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Loaded at startup: fires missed since `last_fire_at` are caught up or skipped.
    Startup,
    /// Created or edited now: only future fires count.
    Live,
}

enum Command {
    Upsert(Box<JobSpec>, Registration),
    Remove(String),
    RunNow(String, tokio::sync::oneshot::Sender<bool>),
    Submit(Fire, Option<String>),
}

/// Cheap handle to the scheduler task.
#[derive(Clone)]
pub struct Scheduler {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

/// The scheduler task stopped (shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the scheduler is not running")]
pub struct SchedulerStopped;

impl Scheduler {
    /// Starts the scheduler task; it stops when `shutdown` is cancelled.
    pub fn spawn(
        clock: SharedClock,
        handler: Arc<dyn JobHandler>,
        shutdown: CancellationToken,
    ) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let state = State::new(clock, handler);
        tokio::spawn(state.run(receiver, shutdown));
        Self { commands }
    }

    /// Adds or replaces a job.
    pub fn upsert(&self, job: JobSpec, how: Registration) -> Result<(), SchedulerStopped> {
        self.commands.send(Command::Upsert(Box::new(job), how)).map_err(|_| SchedulerStopped)
    }

    /// Forgets a job (a run in progress finishes).
    pub fn remove(&self, job_id: &str) -> Result<(), SchedulerStopped> {
        self.commands.send(Command::Remove(job_id.to_owned())).map_err(|_| SchedulerStopped)
    }

    /// Queues a fire that is not a registered job (a webhook `cron_task`),
    /// so it shares the dependency keys of cron jobs.
    pub fn submit(&self, fire: Fire, dependency: Option<String>) -> Result<(), SchedulerStopped> {
        self.commands.send(Command::Submit(fire, dependency)).map_err(|_| SchedulerStopped)
    }

    /// Runs a job now (even when paused or in quiet hours). False when the
    /// job is unknown or still running.
    pub async fn run_now(&self, job_id: &str) -> Result<bool, SchedulerStopped> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::RunNow(job_id.to_owned(), reply))
            .map_err(|_| SchedulerStopped)?;
        answer.await.map_err(|_| SchedulerStopped)
    }
}

struct State {
    clock: SharedClock,
    jobs: HashMap<String, JobSpec>,
    /// (next fire, job id) of every enabled job.
    due: BTreeSet<(Timestamp, String)>,
    /// Next fire per job id, to find its entry in `due`.
    next_of: HashMap<String, Timestamp>,
    queue: DependencyQueue,
}

impl State {
    fn new(clock: SharedClock, handler: Arc<dyn JobHandler>) -> Self {
        Self {
            clock,
            jobs: HashMap::new(),
            due: BTreeSet::new(),
            next_of: HashMap::new(),
            queue: DependencyQueue::new(handler),
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        loop {
            let sleep = self.due.first().map(|(at, _)| self.clock.sleep_until(*at));
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.apply(command),
                    None => break,
                },
                () = async { if let Some(sleep) = sleep { sleep.await } else { std::future::pending().await } } => {
                    self.fire_due();
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Upsert(job, how) => self.upsert(*job, how),
            Command::Remove(id) => {
                self.unschedule(&id);
                self.jobs.remove(&id);
            }
            Command::Submit(fire, key) => {
                self.queue.dispatch(fire, key.as_deref());
            }
            Command::RunNow(id, reply) => {
                let started = self.jobs.get(&id).cloned().is_some_and(|job| {
                    let fire = Fire {
                        job_id: id.clone(),
                        scheduled_at: self.clock.now(),
                        trigger: Trigger::Manual,
                    };
                    self.queue.dispatch(fire, job.dependency.as_deref())
                });
                let _ = reply.send(started);
            }
        }
    }

    fn upsert(&mut self, job: JobSpec, how: Registration) {
        let now = self.clock.now();
        self.unschedule(&job.id);
        if job.enabled && how == Registration::Startup {
            self.catch_up(&job, now);
        }
        if job.enabled
            && let Some(next) = job.schedule.next_after(now)
        {
            self.due.insert((next, job.id.clone()));
            self.next_of.insert(job.id.clone(), next);
        }
        self.jobs.insert(job.id.clone(), job);
    }

    /// Handles fires in (last fire, now] of a job loaded at startup.
    fn catch_up(&mut self, job: &JobSpec, now: Timestamp) {
        let reference = job.last_fire_at.unwrap_or(job.created_at);
        let (missed, last_missed_at) = count_fires_between(&job.schedule, reference, now);
        let Some(last_missed_at) = last_missed_at else { return };
        match job.missed {
            MissedPolicy::Skip => self.queue.handler.skipped(Skip {
                job_id: job.id.clone(),
                scheduled_at: last_missed_at,
                reason: SkipReason::Missed { missed },
            }),
            MissedPolicy::RunOnce => {
                let fire = Fire {
                    job_id: job.id.clone(),
                    scheduled_at: last_missed_at,
                    trigger: Trigger::CatchUp { missed, last_missed_at },
                };
                self.gate_and_dispatch(job, fire, now);
            }
        }
    }

    fn unschedule(&mut self, id: &str) {
        if let Some(at) = self.next_of.remove(id) {
            self.due.remove(&(at, id.to_owned()));
        }
    }

    fn fire_due(&mut self) {
        let now = self.clock.now();
        while let Some((at, id)) = self.due.first().cloned() {
            if at > now {
                break;
            }
            self.due.pop_first();
            self.next_of.remove(&id);
            let Some(job) = self.jobs.get(&id).cloned() else { continue };
            // A late wake-up (suspend, busy machine) fires once, not once per missed slot.
            if let Some(next) = job.schedule.next_after(at.max(now)) {
                self.due.insert((next, id.clone()));
                self.next_of.insert(id.clone(), next);
            }
            let fire = Fire { job_id: id, scheduled_at: at, trigger: Trigger::Scheduled };
            self.gate_and_dispatch(&job, fire, now);
        }
    }

    fn gate_and_dispatch(&mut self, job: &JobSpec, fire: Fire, now: Timestamp) {
        if let Some(jobs) = self.jobs.get_mut(&job.id) {
            jobs.last_fire_at = Some(fire.scheduled_at);
        }
        if job.quiet.is_some_and(|q| q.contains(now, job.schedule.zone())) {
            self.queue.handler.skipped(Skip {
                job_id: fire.job_id,
                scheduled_at: fire.scheduled_at,
                reason: SkipReason::QuietHours,
            });
            return;
        }
        let (job_id, scheduled_at) = (fire.job_id.clone(), fire.scheduled_at);
        if !self.queue.dispatch(fire, job.dependency.as_deref()) {
            self.queue.handler.skipped(Skip {
                job_id,
                scheduled_at,
                reason: SkipReason::StillRunning,
            });
        }
    }
}

/// Most fires counted when catching up (the count is only informative).
const MAX_COUNTED_MISSES: u32 = 10_000;

/// Fires in (`after`, `until`]: how many (capped) and the last one.
fn count_fires_between(
    schedule: &Schedule,
    after: Timestamp,
    until: Timestamp,
) -> (u32, Option<Timestamp>) {
    let Some(last) = schedule.previous_at_or_before(until).filter(|last| *last > after) else {
        return (0, None);
    };
    let mut count = 0;
    let mut cursor = after;
    while count < MAX_COUNTED_MISSES {
        match schedule.next_after(cursor) {
            Some(next) if next <= until => {
                count += 1;
                cursor = next;
            }
            _ => break,
        }
    }
    (count, Some(last))
}

/// Runs fires: those sharing a dependency key strictly one after another in
/// dispatch order, the rest at once. A job is never queued twice.
#[derive(Clone)]
pub struct DependencyQueue {
    handler: Arc<dyn JobHandler>,
    inner: Arc<Mutex<QueueState>>,
}

#[derive(Default)]
struct QueueState {
    /// Keys with a worker; the deque holds fires waiting behind the running one.
    waiting: HashMap<String, VecDeque<Fire>>,
    /// Jobs running or waiting.
    in_flight: HashSet<String>,
}

impl DependencyQueue {
    /// A queue that runs fires with `handler`.
    pub fn new(handler: Arc<dyn JobHandler>) -> Self {
        Self { handler, inner: Arc::default() }
    }

    /// Starts or queues `fire`. False (and nothing happens) when the same job
    /// is already running or waiting.
    pub fn dispatch(&self, fire: Fire, key: Option<&str>) -> bool {
        let mut state = self.inner.locked();
        if !state.in_flight.insert(fire.job_id.clone()) {
            return false;
        }
        let Some(key) = key else {
            drop(state);
            let this = self.clone();
            tokio::spawn(async move {
                let job_id = fire.job_id.clone();
                this.run_contained(fire).await;
                this.finished(&job_id);
            });
            return true;
        };
        if let Some(waiting) = state.waiting.get_mut(key) {
            waiting.push_back(fire);
            return true;
        }
        state.waiting.insert(key.to_owned(), VecDeque::new());
        drop(state);
        tokio::spawn(self.clone().drain(key.to_owned(), fire));
        true
    }

    /// Runs `first`, then everything queued behind it under `key`.
    async fn drain(self, key: String, first: Fire) {
        let mut next = Some(first);
        while let Some(fire) = next {
            let job_id = fire.job_id.clone();
            self.run_contained(fire).await;
            let mut state = self.inner.locked();
            state.in_flight.remove(&job_id);
            next = state.waiting.get_mut(&key).and_then(VecDeque::pop_front);
            if next.is_none() {
                state.waiting.remove(&key);
            }
        }
    }

    /// Runs the handler in its own task so a panic cannot wedge the queue.
    async fn run_contained(&self, fire: Fire) {
        let job_id = fire.job_id.clone();
        if let Err(error) = tokio::spawn(self.handler.run(fire)).await {
            tracing::error!(job = %job_id, %error, "automation job handler panicked");
        }
    }

    fn finished(&self, job_id: &str) {
        self.inner.locked().in_flight.remove(job_id);
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
