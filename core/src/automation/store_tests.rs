//! Store round trips on an in-memory database with the real migrations.

use super::*;

fn db() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    for migration in MIGRATIONS {
        conn.execute_batch(migration.sql).unwrap();
    }
    conn
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn chat(id: &str) -> ChatTarget {
    ChatTarget { transport: "telegram".into(), chat_id: id.into(), topic_id: String::new() }
}

pub(crate) fn sample_job(id: &str) -> CronJob {
    CronJob {
        id: id.into(),
        title: "Daily digest".into(),
        description: "Summarise Hacker News".into(),
        schedule: "0 8 * * *".into(),
        timezone: "Europe/Berlin".into(),
        instruction: String::new(),
        enabled: true,
        overrides: RunOverrides {
            provider: "codex".into(),
            model: "gpt-5".into(),
            effort: "high".into(),
        },
        quiet_start: Some(22),
        quiet_end: Some(6),
        dependency: Some("net".into()),
        target: Some(ChatTarget { topic_id: "7".into(), ..chat("42") }),
        silent_on_success: true,
        missed: MissedPolicy::Skip,
        owner: Some(chat("42")),
        created_at: ts("2026-05-01T10:00:00Z"),
        last_fire_at: None,
    }
}

fn sample_hook(id: &str, auth: HookAuth) -> Webhook {
    Webhook {
        title: "CI".into(),
        description: "CI failures".into(),
        task_folder: "ci-triage".into(),
        created_at: ts("2026-05-01T10:00:00Z"),
        ..Webhook::new(id, HookMode::CronTask, "CI failed on {{branch}}", auth)
    }
}

#[test]
fn jobs_round_trip() {
    let conn = db();
    let job = sample_job("digest");
    insert_job(&conn, &job).unwrap();
    assert_eq!(get_job(&conn, "digest").unwrap(), Some(job.clone()));
    assert!(matches!(insert_job(&conn, &job), Err(AutomationStoreError::Exists { .. })));

    let mut edited = job.clone();
    edited.target = None;
    edited.owner = None;
    edited.quiet_start = None;
    edited.quiet_end = None;
    edited.dependency = None;
    update_job(&conn, &edited).unwrap();
    assert_eq!(get_job(&conn, "digest").unwrap(), Some(edited));

    assert!(set_job_enabled(&conn, "digest", false).unwrap());
    set_last_fire(&conn, "digest", ts("2026-05-02T06:00:00Z")).unwrap();
    let stored = get_job(&conn, "digest").unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.last_fire_at, Some(ts("2026-05-02T06:00:00Z")));

    insert_job(&conn, &sample_job("another")).unwrap();
    let ids: Vec<_> = list_jobs(&conn).unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(ids, ["another", "digest"]);
    assert!(delete_job(&conn, "digest").unwrap());
    assert!(!delete_job(&conn, "digest").unwrap());
    assert!(matches!(update_job(&conn, &job), Err(AutomationStoreError::NotFound { .. })));
}

#[test]
fn hooks_round_trip_with_auth_and_telemetry() {
    let conn = db();
    let bearer = sample_hook("ci", HookAuth::Bearer { token: "t".repeat(32) });
    let hmac = sample_hook("gh", HookAuth::Hmac(HmacSettings::stripe("whsec")));
    insert_hook(&conn, &bearer).unwrap();
    insert_hook(&conn, &hmac).unwrap();
    assert_eq!(get_hook(&conn, "ci").unwrap(), Some(bearer.clone()));
    assert_eq!(get_hook(&conn, "gh").unwrap(), Some(hmac));
    record_trigger(&conn, "ci", ts("2026-05-03T00:00:00Z")).unwrap();
    record_trigger(&conn, "ci", ts("2026-05-04T00:00:00Z")).unwrap();
    set_hook_error(&conn, "ci", "error:timeout").unwrap();
    let stored = get_hook(&conn, "ci").unwrap().unwrap();
    assert_eq!(stored.trigger_count, 2);
    assert_eq!(stored.last_triggered_at, Some(ts("2026-05-04T00:00:00Z")));
    assert_eq!(stored.last_error, "error:timeout");
    let rotated = Webhook { auth: HookAuth::Bearer { token: "n".repeat(32) }, ..stored };
    update_hook(&conn, &rotated).unwrap();
    assert_eq!(get_hook(&conn, "ci").unwrap().unwrap().auth, rotated.auth);
    assert_eq!(list_hooks(&conn).unwrap().len(), 2);
    assert!(delete_hook(&conn, "ci").unwrap());
}

#[test]
fn run_history_records_delivery_and_failures() {
    let conn = db();
    let at = ts("2026-05-01T08:00:00Z");
    let ok = start_run(&conn, RunKind::Cron, "digest", "scheduled", at, at, "running").unwrap();
    finish_run(&conn, ok, at, "success", "").unwrap();
    add_receipt(&conn, "telegram", 17, ok).unwrap();
    assert_eq!(settle_receipt(&conn, "telegram", 17, "").unwrap(), Some(ok));

    let bad = start_run(&conn, RunKind::Cron, "digest", "manual", at, at, "running").unwrap();
    finish_run(&conn, bad, at, "error:timeout", "partial output").unwrap();
    set_delivery(&conn, bad, DeliveryStatus::Failed, "chat not found").unwrap();
    start_run(&conn, RunKind::Webhook, "ci", "webhook", at, at, "skipped:quiet_hours").unwrap();

    let history = list_runs(&conn, Some((RunKind::Cron, "digest")), 10).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].status, "error:timeout");
    assert_eq!(history[0].result_text, "partial output");
    assert_eq!(history[0].delivery, DeliveryStatus::Failed);
    assert_eq!(history[0].delivery_error, "chat not found");
    assert!(history[0].failed());
    assert_eq!(history[1].delivery, DeliveryStatus::Ok);
    assert!(!history[1].failed());
    assert_eq!(list_runs(&conn, None, 10).unwrap().len(), 3);

    let failures = latest_failures(&conn).unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].source_id, "digest");
    // A later success clears the job from the failure list.
    let again = start_run(&conn, RunKind::Cron, "digest", "scheduled", at, at, "running").unwrap();
    finish_run(&conn, again, at, "success", "").unwrap();
    assert!(latest_failures(&conn).unwrap().is_empty());
}

#[test]
fn interrupted_runs_are_closed_on_startup() {
    let conn = db();
    let at = ts("2026-05-01T08:00:00Z");
    let id = start_run(&conn, RunKind::Cron, "digest", "scheduled", at, at, "running").unwrap();
    assert_eq!(interrupt_unfinished(&conn, at).unwrap(), 1);
    let run = &list_runs(&conn, None, 1).unwrap()[0];
    assert_eq!(
        (run.id, run.status.as_str(), run.delivery),
        (id, "error:interrupted", DeliveryStatus::Skipped)
    );
}

#[test]
fn history_is_pruned_per_source() {
    let conn = db();
    let at = ts("2026-05-01T08:00:00Z");
    for _ in 0..(RUNS_KEPT_PER_SOURCE + 25) {
        start_run(&conn, RunKind::Cron, "busy", "scheduled", at, at, "success").unwrap();
    }
    start_run(&conn, RunKind::Cron, "quiet", "scheduled", at, at, "success").unwrap();
    let busy = list_runs(&conn, Some((RunKind::Cron, "busy")), 1000).unwrap();
    assert_eq!(busy.len() as i64, RUNS_KEPT_PER_SOURCE);
    assert_eq!(list_runs(&conn, Some((RunKind::Cron, "quiet")), 10).unwrap().len(), 1);
}

#[test]
fn receipts_settle_delivery() {
    let conn = db();
    let at = ts("2026-05-01T08:00:00Z");
    let run = start_run(&conn, RunKind::Cron, "digest", "scheduled", at, at, "success").unwrap();
    add_receipt(&conn, "telegram", 10, run).unwrap();
    add_receipt(&conn, "matrix", 10, run).unwrap();
    assert_eq!(settle_receipt(&conn, "telegram", 99, "").unwrap(), None, "not ours");
    assert_eq!(settle_receipt(&conn, "telegram", 10, "").unwrap(), Some(run));
    assert_eq!(
        list_runs(&conn, None, 1).unwrap()[0].delivery,
        DeliveryStatus::Pending,
        "one still out"
    );
    assert_eq!(settle_receipt(&conn, "matrix", 10, "").unwrap(), Some(run));
    assert_eq!(list_runs(&conn, None, 1).unwrap()[0].delivery, DeliveryStatus::Ok);

    let other = start_run(&conn, RunKind::Cron, "digest", "scheduled", at, at, "success").unwrap();
    add_receipt(&conn, "telegram", 11, other).unwrap();
    settle_receipt(&conn, "telegram", 11, "chat not found").unwrap();
    let record = &list_runs(&conn, None, 1).unwrap()[0];
    assert_eq!(
        (record.delivery, record.delivery_error.as_str()),
        (DeliveryStatus::Failed, "telegram: chat not found")
    );
}

#[test]
fn a_journaled_request_leaves_the_journal_only_with_its_run() {
    let conn = db();
    let at = ts("2026-03-01T08:00:00Z");
    let first = journal_event(&conn, "ci", at, "prompt one").unwrap();
    let second = journal_event(&conn, "ci", at, "prompt two").unwrap();
    // A failing history write keeps the request journaled (it is retried at startup).
    let failed: Result<()> = claiming(&conn, Some(first), |c| {
        start_run(c, RunKind::Webhook, "ci", "webhook", at, at, "running")?;
        Err(AutomationStoreError::Sql(rusqlite::Error::InvalidQuery))
    });
    assert!(failed.is_err());
    assert_eq!(pending_events(&conn).unwrap().len(), 2);
    assert!(list_runs(&conn, None, 10).unwrap().is_empty(), "rolled back with it");
    // A written run removes exactly its own request.
    let run = claiming(&conn, Some(first), |c| {
        start_run(c, RunKind::Webhook, "ci", "webhook", at, at, "running")
    })
    .unwrap();
    let left = pending_events(&conn).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].id, left[0].prompt.as_str(), left[0].received_at),
        (second, "prompt two", at)
    );
    assert_eq!(list_runs(&conn, None, 10).unwrap()[0].id, run);
}
