//! Scheduler tests on a [`ManualClock`]: days pass in milliseconds.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use ductor_daemon::sync::Locked as _;
use tokio::sync::Semaphore;

use super::*;
use crate::automation::clock::ManualClock;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Started(Fire),
    Finished(String),
    Skipped(Skip),
}

/// Records everything; a job whose id is in `gated` blocks until released.
struct Recorder {
    events: mpsc::UnboundedSender<Event>,
    gates: StdMutex<HashMap<String, Arc<Semaphore>>>,
}

impl Recorder {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        let (events, receiver) = mpsc::unbounded_channel();
        (Arc::new(Self { events, gates: StdMutex::default() }), receiver)
    }

    fn gate(&self, job: &str) -> Arc<Semaphore> {
        self.gates
            .locked()
            .entry(job.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(0)))
            .clone()
    }
}

impl JobHandler for Recorder {
    fn run(&self, fire: Fire) -> BoxFuture {
        let gate = self.gates.locked().get(&fire.job_id).cloned();
        let events = self.events.clone();
        Box::pin(async move {
            let job = fire.job_id.clone();
            let _ = events.send(Event::Started(fire));
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            let _ = events.send(Event::Finished(job));
        })
    }

    fn skipped(&self, skip: Skip) {
        let _ = self.events.send(Event::Skipped(skip));
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn job(id: &str, expr: &str, zone: &str) -> JobSpec {
    JobSpec {
        id: id.to_owned(),
        schedule: Schedule::parse(expr, zone).unwrap(),
        enabled: true,
        quiet: None,
        dependency: None,
        missed: MissedPolicy::RunOnce,
        last_fire_at: None,
        created_at: ts("2026-01-01T00:00:00Z"),
    }
}

struct Harness {
    clock: ManualClock,
    scheduler: Scheduler,
    recorder: Arc<Recorder>,
    events: mpsc::UnboundedReceiver<Event>,
    _shutdown: tokio_util::sync::DropGuard,
}

impl Harness {
    fn new(start: &str) -> Self {
        let clock = ManualClock::new(ts(start));
        let (recorder, events) = Recorder::new();
        let shutdown = CancellationToken::new();
        let scheduler =
            Scheduler::spawn(Arc::new(clock.clone()), recorder.clone(), shutdown.clone());
        Self { clock, scheduler, recorder, events, _shutdown: shutdown.drop_guard() }
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event within 10 s")
            .expect("recorder alive")
    }

    /// Lets the scheduler task process what was sent, then checks nothing happened.
    async fn assert_quiet(&mut self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(self.events.try_recv().ok(), None);
    }

    /// Advances the clock to `to` and waits for the scheduler to settle.
    async fn advance_to(&mut self, to: &str) {
        // A command round-trip guarantees earlier commands were applied.
        let _ = self.scheduler.run_now("__sync__").await;
        self.clock.set(ts(to));
    }

    async fn started(&mut self) -> Fire {
        loop {
            match self.next().await {
                Event::Started(fire) => return fire,
                Event::Finished(_) => continue,
                other => panic!("expected a start, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn fires_at_each_scheduled_time_in_the_job_time_zone() {
    let mut h = Harness::new("2026-05-01T00:00:00Z");
    h.scheduler.upsert(job("tokyo", "0 9 * * *", "Asia/Tokyo"), Registration::Live).unwrap();
    h.advance_to("2026-05-01T23:59:59Z").await;
    h.assert_quiet().await;
    h.advance_to("2026-05-02T00:00:00Z").await;
    let fire = h.started().await;
    assert_eq!(
        fire,
        Fire {
            job_id: "tokyo".into(),
            scheduled_at: ts("2026-05-02T00:00:00Z"),
            trigger: Trigger::Scheduled
        }
    );
    assert_eq!(h.next().await, Event::Finished("tokyo".into()));
    h.advance_to("2026-05-03T00:00:00Z").await;
    assert_eq!(h.started().await.scheduled_at, ts("2026-05-03T00:00:00Z"));
}

#[tokio::test]
async fn keeps_local_time_across_a_dst_change() {
    let mut h = Harness::new("2026-03-27T12:00:00Z");
    h.scheduler.upsert(job("berlin", "0 9 * * *", "Europe/Berlin"), Registration::Live).unwrap();
    let mut fires = Vec::new();
    for day in ["2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z", "2026-03-30T12:00:00Z"] {
        h.advance_to(day).await;
        fires.push(h.started().await.scheduled_at.to_string());
    }
    // 09:00 CET = 08:00 UTC before the change, 09:00 CEST = 07:00 UTC after.
    assert_eq!(fires, ["2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]);
}

#[tokio::test]
async fn a_late_wakeup_fires_once_not_once_per_slot() {
    let mut h = Harness::new("2026-05-01T10:00:30Z");
    h.scheduler.upsert(job("minutely", "* * * * *", "UTC"), Registration::Live).unwrap();
    h.advance_to("2026-05-01T10:30:00Z").await;
    assert_eq!(h.started().await.scheduled_at, ts("2026-05-01T10:01:00Z"));
    assert_eq!(h.next().await, Event::Finished("minutely".into()));
    h.assert_quiet().await;
    h.advance_to("2026-05-01T10:31:00Z").await;
    assert_eq!(h.started().await.scheduled_at, ts("2026-05-01T10:31:00Z"));
}

#[tokio::test]
async fn quiet_hours_skip_fires_inside_the_window() {
    let mut h = Harness::new("2026-05-01T00:30:00Z");
    let mut spec = job("hourly", "0 * * * *", "Europe/Berlin");
    // 21:00–07:59 Berlin (CEST, UTC+2).
    spec.quiet = QuietHours::new(21, 8);
    h.scheduler.upsert(spec, Registration::Live).unwrap();
    // 01:00 UTC = 03:00 Berlin: quiet.
    h.advance_to("2026-05-01T01:00:00Z").await;
    assert_eq!(
        h.next().await,
        Event::Skipped(Skip {
            job_id: "hourly".into(),
            scheduled_at: ts("2026-05-01T01:00:00Z"),
            reason: SkipReason::QuietHours
        })
    );
    // 06:00 UTC = 08:00 Berlin: the window is over.
    h.advance_to("2026-05-01T05:00:00Z").await;
    assert!(matches!(h.next().await, Event::Skipped(_)));
    h.advance_to("2026-05-01T06:00:00Z").await;
    assert_eq!(h.started().await.scheduled_at, ts("2026-05-01T06:00:00Z"));
}

#[tokio::test]
async fn manual_runs_ignore_pause_and_quiet_hours() {
    let mut h = Harness::new("2026-05-01T02:00:00Z");
    let mut spec = job("paused", "0 * * * *", "UTC");
    spec.enabled = false;
    spec.quiet = QuietHours::new(0, 23);
    h.scheduler.upsert(spec, Registration::Live).unwrap();
    h.advance_to("2026-05-01T05:00:00Z").await;
    h.assert_quiet().await;
    assert!(h.scheduler.run_now("paused").await.unwrap());
    assert_eq!(h.started().await.trigger, Trigger::Manual);
    assert!(!h.scheduler.run_now("unknown").await.unwrap());
}

#[tokio::test]
async fn same_dependency_key_runs_in_order_others_in_parallel() {
    let mut h = Harness::new("2026-05-01T08:00:30Z");
    for id in ["a", "b", "c", "free"] {
        let mut spec = job(id, "1 8 * * *", "UTC");
        if id != "free" {
            spec.dependency = Some("shared".into());
        }
        h.recorder.gate(id);
        h.scheduler.upsert(spec, Registration::Live).unwrap();
    }
    h.advance_to("2026-05-01T08:01:00Z").await;
    let mut first = vec![h.started().await.job_id, h.started().await.job_id];
    first.sort();
    assert_eq!(first, ["a", "free"], "a and the independent job start together");
    h.assert_quiet().await;
    // b waits for a, whatever happens to the independent job.
    h.recorder.gate("free").add_permits(1);
    assert_eq!(h.next().await, Event::Finished("free".into()));
    h.assert_quiet().await;
    h.recorder.gate("a").add_permits(1);
    assert_eq!(h.next().await, Event::Finished("a".into()));
    assert_eq!(h.started().await.job_id, "b");
    h.assert_quiet().await;
    h.recorder.gate("b").add_permits(1);
    assert_eq!(h.next().await, Event::Finished("b".into()));
    assert_eq!(h.started().await.job_id, "c");
    h.recorder.gate("c").add_permits(1);
    assert_eq!(h.next().await, Event::Finished("c".into()));
}

#[tokio::test]
async fn a_job_still_running_is_not_started_twice() {
    let mut h = Harness::new("2026-05-01T08:00:30Z");
    h.recorder.gate("slow");
    h.scheduler.upsert(job("slow", "* * * * *", "UTC"), Registration::Live).unwrap();
    h.advance_to("2026-05-01T08:01:00Z").await;
    assert_eq!(h.started().await.job_id, "slow");
    h.advance_to("2026-05-01T08:02:00Z").await;
    assert_eq!(
        h.next().await,
        Event::Skipped(Skip {
            job_id: "slow".into(),
            scheduled_at: ts("2026-05-01T08:02:00Z"),
            reason: SkipReason::StillRunning
        })
    );
    h.recorder.gate("slow").add_permits(1);
    assert_eq!(h.next().await, Event::Finished("slow".into()));
    h.advance_to("2026-05-01T08:03:00Z").await;
    assert_eq!(h.started().await.scheduled_at, ts("2026-05-01T08:03:00Z"));
}

#[tokio::test]
async fn missed_runs_are_run_once_on_startup() {
    let mut h = Harness::new("2026-05-04T12:00:00Z");
    let mut spec = job("daily", "0 9 * * *", "UTC");
    spec.last_fire_at = Some(ts("2026-05-01T09:00:00Z"));
    h.scheduler.upsert(spec, Registration::Startup).unwrap();
    let fire = h.started().await;
    assert_eq!(
        fire.trigger,
        Trigger::CatchUp { missed: 3, last_missed_at: ts("2026-05-04T09:00:00Z") },
        "missed 2nd, 3rd and 4th at 09:00"
    );
    assert_eq!(h.next().await, Event::Finished("daily".into()));
    h.assert_quiet().await;
    // And the schedule continues normally.
    h.advance_to("2026-05-05T09:00:00Z").await;
    assert_eq!(h.started().await.trigger, Trigger::Scheduled);
}

#[tokio::test]
async fn missed_runs_are_skipped_and_reported_under_skip_policy() {
    let mut h = Harness::new("2026-05-04T12:00:00Z");
    let mut spec = job("daily", "0 9 * * *", "UTC");
    spec.last_fire_at = Some(ts("2026-05-03T09:00:00Z"));
    spec.missed = MissedPolicy::Skip;
    h.scheduler.upsert(spec, Registration::Startup).unwrap();
    assert_eq!(
        h.next().await,
        Event::Skipped(Skip {
            job_id: "daily".into(),
            scheduled_at: ts("2026-05-04T09:00:00Z"),
            reason: SkipReason::Missed { missed: 1 }
        })
    );
    h.assert_quiet().await;
}

#[tokio::test]
async fn nothing_missed_means_nothing_reported() {
    let mut h = Harness::new("2026-05-04T12:00:00Z");
    let mut spec = job("daily", "0 9 * * *", "UTC");
    spec.last_fire_at = Some(ts("2026-05-04T09:00:00Z"));
    h.scheduler.upsert(spec.clone(), Registration::Startup).unwrap();
    // A new job (never fired) created after the last slot has missed nothing either.
    let mut fresh = job("fresh", "0 9 * * *", "UTC");
    fresh.created_at = ts("2026-05-04T10:00:00Z");
    h.scheduler.upsert(fresh, Registration::Startup).unwrap();
    // Edits at runtime never catch up.
    spec.id = "edited".into();
    spec.last_fire_at = Some(ts("2026-04-01T09:00:00Z"));
    h.scheduler.upsert(spec, Registration::Live).unwrap();
    h.assert_quiet().await;
}

#[tokio::test]
async fn removed_and_paused_jobs_do_not_fire() {
    let mut h = Harness::new("2026-05-01T08:00:30Z");
    h.scheduler.upsert(job("gone", "* * * * *", "UTC"), Registration::Live).unwrap();
    h.scheduler.remove("gone").unwrap();
    let mut paused = job("paused", "* * * * *", "UTC");
    h.scheduler.upsert(paused.clone(), Registration::Live).unwrap();
    paused.enabled = false;
    h.scheduler.upsert(paused, Registration::Live).unwrap();
    h.advance_to("2026-05-01T08:05:00Z").await;
    h.assert_quiet().await;
}

#[tokio::test]
async fn ten_thousand_jobs_fire_in_time_order() {
    let mut h = Harness::new("2026-05-01T00:00:30Z");
    for i in 0..10_000 {
        let minute = i % 60;
        h.scheduler
            .upsert(
                job(&format!("job{i:05}"), &format!("{minute} * * * *"), "UTC"),
                Registration::Live,
            )
            .unwrap();
    }
    h.advance_to("2026-05-01T00:01:00Z").await;
    let expected = (0..10_000).filter(|i| i % 60 == 1).count();
    let (mut started, mut finished) = (0, 0);
    while started < expected || finished < expected {
        match h.next().await {
            Event::Started(fire) => {
                assert_eq!(fire.scheduled_at, ts("2026-05-01T00:01:00Z"));
                started += 1;
            }
            Event::Finished(_) => finished += 1,
            Event::Skipped(skip) => panic!("unexpected skip {skip:?}"),
        }
    }
    h.assert_quiet().await;
}
