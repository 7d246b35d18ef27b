//! Automation's tables in core's `state.db`: cron jobs, webhooks (with their
//! auth settings, tokens and telemetry) and one run history for both.
//!
//! The schema is a list of migrations numbered from 100 ([`MIGRATIONS`]), run
//! by core's migration runner together with core's own. Functions take a
//! connection so they run inside core's `Store::call` on the blocking pool.
//! Secrets (tokens, HMAC secrets) live here; `state.db` is private to the user.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::Migration;

use super::model::{ChatTarget, CronJob, DeliveryStatus, RunKind, RunOverrides, RunRecord};
use super::scheduler::MissedPolicy;
use super::webhook::{
    HmacAlgorithm, HmacSettings, HookAuth, HookMode, SignatureEncoding, SignedPayload, Webhook,
};

/// Automation's migrations (versions 100+), run by core's migration runner.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 100,
        name: "automation: cron jobs, webhooks, run history, delivery receipts",
        sql: "
    CREATE TABLE cron_jobs (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        schedule TEXT NOT NULL,
        timezone TEXT NOT NULL,
        instruction TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        effort TEXT NOT NULL,
        quiet_start INTEGER,
        quiet_end INTEGER,
        dependency TEXT,
        target_transport TEXT,
        target_chat TEXT,
        target_topic TEXT,
        silent_on_success INTEGER NOT NULL,
        missed_policy TEXT NOT NULL,
        owner_transport TEXT,
        owner_chat TEXT,
        owner_topic TEXT,
        created_ms INTEGER NOT NULL,
        last_fire_ms INTEGER
    );
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        mode TEXT NOT NULL,
        prompt_template TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        task_folder TEXT NOT NULL,
        auth_mode TEXT NOT NULL,
        token TEXT NOT NULL,
        hmac_secret TEXT NOT NULL,
        hmac_header TEXT NOT NULL,
        hmac_algorithm TEXT NOT NULL,
        hmac_encoding TEXT NOT NULL,
        hmac_sig_prefix TEXT NOT NULL,
        hmac_sig_regex TEXT NOT NULL,
        hmac_signed_payload TEXT NOT NULL,
        hmac_max_age_s INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        effort TEXT NOT NULL,
        quiet_start INTEGER,
        quiet_end INTEGER,
        dependency TEXT,
        target_transport TEXT,
        target_chat TEXT,
        target_topic TEXT,
        owner_transport TEXT,
        owner_chat TEXT,
        owner_topic TEXT,
        created_ms INTEGER NOT NULL,
        trigger_count INTEGER NOT NULL DEFAULT 0,
        last_triggered_ms INTEGER,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE automation_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        source_id TEXT NOT NULL,
        trigger TEXT NOT NULL,
        scheduled_ms INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        status TEXT NOT NULL,
        delivery TEXT NOT NULL,
        delivery_error TEXT NOT NULL DEFAULT '',
        result_text TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX automation_runs_by_source ON automation_runs (kind, source_id, id);
    CREATE TABLE automation_receipts (
        transport TEXT NOT NULL,
        action_id INTEGER NOT NULL,
        run_id INTEGER NOT NULL REFERENCES automation_runs(id) ON DELETE CASCADE,
        PRIMARY KEY (transport, action_id)
    );
    CREATE INDEX automation_receipts_by_run ON automation_receipts (run_id);
    ",
    },
    Migration {
        version: 101,
        name: "automation: journal of accepted webhook requests not yet handled",
        sql: "
    CREATE TABLE webhook_inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hook_id TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        prompt TEXT NOT NULL
    );
    ",
    },
    Migration {
        version: 102,
        name: "automation: a webhook's payload prefix regex (hooks imported from Python ductor)",
        sql: "ALTER TABLE webhooks ADD COLUMN hmac_payload_prefix_regex TEXT NOT NULL DEFAULT '';",
    },
];

/// Runs kept per job/hook; older ones are pruned.
pub const RUNS_KEPT_PER_SOURCE: i64 = 200;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum AutomationStoreError {
    /// SQLite said no.
    #[error("automation store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// An id that must be new already exists.
    #[error("{kind} {id:?} already exists")]
    Exists {
        /// "cron job" or "webhook".
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// An id that must exist does not.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// "cron job" or "webhook".
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// A row holds a value this version cannot read.
    #[error("automation store: corrupt value in {0}")]
    Corrupt(&'static str),
}

type Result<T> = std::result::Result<T, AutomationStoreError>;

fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

fn from_ms(value: i64) -> Timestamp {
    Timestamp::from_millisecond(value).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn chat(
    transport: Option<String>,
    chat: Option<String>,
    topic: Option<String>,
) -> Option<ChatTarget> {
    Some(ChatTarget { transport: transport?, chat_id: chat?, topic_id: topic.unwrap_or_default() })
}

fn chat_cols(target: &Option<ChatTarget>) -> (Option<&str>, Option<&str>, Option<&str>) {
    match target {
        Some(t) => (Some(&t.transport), Some(&t.chat_id), Some(&t.topic_id)),
        None => (None, None, None),
    }
}

// ---------------------------------------------------------------- cron jobs

const JOB_COLUMNS: &str = "id, title, description, schedule, timezone, instruction, enabled, provider, model, \
    effort, quiet_start, quiet_end, dependency, target_transport, target_chat, target_topic, silent_on_success, \
    missed_policy, owner_transport, owner_chat, owner_topic, created_ms, last_fire_ms";

fn job_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<std::result::Result<CronJob, AutomationStoreError>> {
    let missed: String = row.get(17)?;
    let Some(missed) = MissedPolicy::parse(&missed) else {
        return Ok(Err(AutomationStoreError::Corrupt("cron_jobs.missed_policy")));
    };
    Ok(Ok(CronJob {
        id: row.get(0)?,
        title: row.get(1)?,
        description: row.get(2)?,
        schedule: row.get(3)?,
        timezone: row.get(4)?,
        instruction: row.get(5)?,
        enabled: row.get(6)?,
        overrides: RunOverrides { provider: row.get(7)?, model: row.get(8)?, effort: row.get(9)? },
        quiet_start: row.get(10)?,
        quiet_end: row.get(11)?,
        dependency: row.get(12)?,
        target: chat(row.get(13)?, row.get(14)?, row.get(15)?),
        silent_on_success: row.get(16)?,
        missed,
        owner: chat(row.get(18)?, row.get(19)?, row.get(20)?),
        created_at: from_ms(row.get(21)?),
        last_fire_at: row.get::<_, Option<i64>>(22)?.map(from_ms),
    }))
}

fn write_job(conn: &Connection, verb: &str, job: &CronJob) -> rusqlite::Result<usize> {
    let (tt, tc, tp) = chat_cols(&job.target);
    let (ot, oc, op) = chat_cols(&job.owner);
    conn.execute(
        &format!(
            "{verb} INTO cron_jobs ({JOB_COLUMNS}) VALUES \
             (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23)"
        ),
        params![
            job.id,
            job.title,
            job.description,
            job.schedule,
            job.timezone,
            job.instruction,
            job.enabled,
            job.overrides.provider,
            job.overrides.model,
            job.overrides.effort,
            job.quiet_start,
            job.quiet_end,
            job.dependency,
            tt,
            tc,
            tp,
            job.silent_on_success,
            job.missed.as_str(),
            ot,
            oc,
            op,
            ms(job.created_at),
            job.last_fire_at.map(ms),
        ],
    )
}

/// Adds a new job; fails when the id is taken.
pub fn insert_job(conn: &Connection, job: &CronJob) -> Result<()> {
    if get_job(conn, &job.id)?.is_some() {
        return Err(AutomationStoreError::Exists { kind: "cron job", id: job.id.clone() });
    }
    write_job(conn, "INSERT", job)?;
    Ok(())
}

/// Replaces an existing job.
pub fn update_job(conn: &Connection, job: &CronJob) -> Result<()> {
    if get_job(conn, &job.id)?.is_none() {
        return Err(AutomationStoreError::NotFound { kind: "cron job", id: job.id.clone() });
    }
    write_job(conn, "REPLACE", job)?;
    Ok(())
}

/// One job.
pub fn get_job(conn: &Connection, id: &str) -> Result<Option<CronJob>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM cron_jobs WHERE id = ?1");
    conn.query_row(&sql, [id], job_from_row).optional()?.transpose()
}

/// All jobs, by id.
pub fn list_jobs(conn: &Connection) -> Result<Vec<CronJob>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM cron_jobs ORDER BY id");
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([], job_from_row)?;
    rows.map(|row| row?).collect()
}

/// Deletes a job and its history; false when it did not exist.
pub fn delete_job(conn: &Connection, id: &str) -> Result<bool> {
    conn.execute("DELETE FROM automation_runs WHERE kind = 'cron' AND source_id = ?1", [id])?;
    Ok(conn.execute("DELETE FROM cron_jobs WHERE id = ?1", [id])? > 0)
}

/// Pauses or resumes a job; false when it does not exist.
pub fn set_job_enabled(conn: &Connection, id: &str, enabled: bool) -> Result<bool> {
    Ok(conn.execute("UPDATE cron_jobs SET enabled = ?2 WHERE id = ?1", params![id, enabled])? > 0)
}

/// Remembers the last fire handed out (the reference for missed runs).
pub fn set_last_fire(conn: &Connection, id: &str, at: Timestamp) -> Result<()> {
    conn.execute("UPDATE cron_jobs SET last_fire_ms = ?2 WHERE id = ?1", params![id, ms(at)])?;
    Ok(())
}

// ----------------------------------------------------------------- webhooks

const HOOK_COLUMNS: &str = "id, title, description, mode, prompt_template, enabled, task_folder, auth_mode, \
    token, hmac_secret, hmac_header, hmac_algorithm, hmac_encoding, hmac_sig_prefix, hmac_sig_regex, \
    hmac_signed_payload, hmac_max_age_s, provider, model, effort, quiet_start, quiet_end, dependency, \
    target_transport, target_chat, target_topic, owner_transport, owner_chat, owner_topic, created_ms, \
    trigger_count, last_triggered_ms, last_error, hmac_payload_prefix_regex";

fn hook_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<std::result::Result<Webhook, AutomationStoreError>> {
    let corrupt = |what| Ok(Err(AutomationStoreError::Corrupt(what)));
    let Some(mode) = HookMode::parse(&row.get::<_, String>(3)?) else {
        return corrupt("webhooks.mode");
    };
    let auth = match row.get::<_, String>(7)?.as_str() {
        "bearer" => HookAuth::Bearer { token: row.get(8)? },
        "hmac" => {
            let (Some(algorithm), Some(encoding), Some(signed_payload)) = (
                HmacAlgorithm::parse(&row.get::<_, String>(11)?),
                SignatureEncoding::parse(&row.get::<_, String>(12)?),
                SignedPayload::parse(&row.get::<_, String>(15)?),
            ) else {
                return corrupt("webhooks.hmac_*");
            };
            HookAuth::Hmac(HmacSettings {
                secret: row.get(9)?,
                header: row.get(10)?,
                algorithm,
                encoding,
                signature_prefix: row.get(13)?,
                signature_regex: row.get(14)?,
                signed_payload,
                max_age_seconds: row.get(16)?,
                payload_prefix_regex: row.get(33)?,
            })
        }
        _ => return corrupt("webhooks.auth_mode"),
    };
    Ok(Ok(Webhook {
        id: row.get(0)?,
        title: row.get(1)?,
        description: row.get(2)?,
        mode,
        prompt_template: row.get(4)?,
        enabled: row.get(5)?,
        task_folder: row.get(6)?,
        auth,
        overrides: RunOverrides {
            provider: row.get(17)?,
            model: row.get(18)?,
            effort: row.get(19)?,
        },
        quiet_start: row.get(20)?,
        quiet_end: row.get(21)?,
        dependency: row.get(22)?,
        target: chat(row.get(23)?, row.get(24)?, row.get(25)?),
        owner: chat(row.get(26)?, row.get(27)?, row.get(28)?),
        created_at: from_ms(row.get(29)?),
        trigger_count: row.get::<_, i64>(30)?.try_into().unwrap_or(0),
        last_triggered_at: row.get::<_, Option<i64>>(31)?.map(from_ms),
        last_error: row.get(32)?,
    }))
}

fn write_hook(conn: &Connection, verb: &str, hook: &Webhook) -> rusqlite::Result<usize> {
    let (tt, tc, tp) = chat_cols(&hook.target);
    let (ot, oc, op) = chat_cols(&hook.owner);
    let default_hmac = HmacSettings::github("");
    let (token, hmac) = match &hook.auth {
        HookAuth::Bearer { token } => (token.as_str(), &default_hmac),
        HookAuth::Hmac(settings) => ("", settings),
    };
    conn.execute(
        &format!(
            "{verb} INTO webhooks ({HOOK_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,\
             ?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31,?32,?33,?34)"
        ),
        params![
            hook.id,
            hook.title,
            hook.description,
            hook.mode.as_str(),
            hook.prompt_template,
            hook.enabled,
            hook.task_folder,
            hook.auth.mode(),
            token,
            hmac.secret,
            hmac.header,
            hmac.algorithm.as_str(),
            hmac.encoding.as_str(),
            hmac.signature_prefix,
            hmac.signature_regex,
            hmac.signed_payload.as_str(),
            hmac.max_age_seconds,
            hook.overrides.provider,
            hook.overrides.model,
            hook.overrides.effort,
            hook.quiet_start,
            hook.quiet_end,
            hook.dependency,
            tt,
            tc,
            tp,
            ot,
            oc,
            op,
            ms(hook.created_at),
            i64::try_from(hook.trigger_count).unwrap_or(i64::MAX),
            hook.last_triggered_at.map(ms),
            hook.last_error,
            hmac.payload_prefix_regex,
        ],
    )
}

/// Adds a new hook; fails when the id is taken.
pub fn insert_hook(conn: &Connection, hook: &Webhook) -> Result<()> {
    if get_hook(conn, &hook.id)?.is_some() {
        return Err(AutomationStoreError::Exists { kind: "webhook", id: hook.id.clone() });
    }
    write_hook(conn, "INSERT", hook)?;
    Ok(())
}

/// Replaces an existing hook (telemetry included).
pub fn update_hook(conn: &Connection, hook: &Webhook) -> Result<()> {
    if get_hook(conn, &hook.id)?.is_none() {
        return Err(AutomationStoreError::NotFound { kind: "webhook", id: hook.id.clone() });
    }
    write_hook(conn, "REPLACE", hook)?;
    Ok(())
}

/// One hook.
pub fn get_hook(conn: &Connection, id: &str) -> Result<Option<Webhook>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ?1");
    conn.query_row(&sql, [id], hook_from_row).optional()?.transpose()
}

/// All hooks, by id.
pub fn list_hooks(conn: &Connection) -> Result<Vec<Webhook>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM webhooks ORDER BY id");
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([], hook_from_row)?;
    rows.map(|row| row?).collect()
}

/// Deletes a hook and its history; false when it did not exist.
pub fn delete_hook(conn: &Connection, id: &str) -> Result<bool> {
    conn.execute("DELETE FROM automation_runs WHERE kind = 'webhook' AND source_id = ?1", [id])?;
    Ok(conn.execute("DELETE FROM webhooks WHERE id = ?1", [id])? > 0)
}

/// Counts an accepted request.
pub fn record_trigger(conn: &Connection, id: &str, at: Timestamp) -> Result<()> {
    conn.execute(
        "UPDATE webhooks SET trigger_count = trigger_count + 1, last_triggered_ms = ?2 WHERE id = ?1",
        params![id, ms(at)],
    )?;
    Ok(())
}

/// Sets (or clears, with "") a hook's last error.
pub fn set_hook_error(conn: &Connection, id: &str, error: &str) -> Result<()> {
    conn.execute("UPDATE webhooks SET last_error = ?2 WHERE id = ?1", params![id, error])?;
    Ok(())
}

// ------------------------------------------------------------- run history

const RUN_COLUMNS: &str = "id, kind, source_id, trigger, scheduled_ms, started_ms, finished_ms, status, delivery, \
    delivery_error, result_text";

fn run_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<std::result::Result<RunRecord, AutomationStoreError>> {
    let (Some(kind), Some(delivery)) = (
        RunKind::parse(&row.get::<_, String>(1)?),
        DeliveryStatus::parse(&row.get::<_, String>(8)?),
    ) else {
        return Ok(Err(AutomationStoreError::Corrupt("automation_runs")));
    };
    Ok(Ok(RunRecord {
        id: row.get(0)?,
        kind,
        source_id: row.get(2)?,
        trigger: row.get(3)?,
        scheduled_at: from_ms(row.get(4)?),
        started_at: from_ms(row.get(5)?),
        finished_at: row.get::<_, Option<i64>>(6)?.map(from_ms),
        status: row.get(7)?,
        delivery,
        delivery_error: row.get(9)?,
        result_text: row.get(10)?,
    }))
}

/// Opens a history entry in state `status` ("running", or a final "skipped:…").
/// Old entries of the same source beyond [`RUNS_KEPT_PER_SOURCE`] are pruned.
pub fn start_run(
    conn: &Connection,
    kind: RunKind,
    source_id: &str,
    trigger: &str,
    scheduled_at: Timestamp,
    started_at: Timestamp,
    status: &str,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO automation_runs (kind, source_id, trigger, scheduled_ms, started_ms, status, delivery) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
        params![kind.as_str(), source_id, trigger, ms(scheduled_at), ms(started_at), status],
    )?;
    let id = conn.last_insert_rowid();
    conn.execute(
        "DELETE FROM automation_runs WHERE kind = ?1 AND source_id = ?2 AND id NOT IN \
         (SELECT id FROM automation_runs WHERE kind = ?1 AND source_id = ?2 ORDER BY id DESC LIMIT ?3)",
        params![kind.as_str(), source_id, RUNS_KEPT_PER_SOURCE],
    )?;
    Ok(id)
}

/// Closes a run: final status, and the result text when it failed.
pub fn finish_run(
    conn: &Connection,
    run_id: i64,
    finished_at: Timestamp,
    status: &str,
    failure_text: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE automation_runs SET finished_ms = ?2, status = ?3, result_text = ?4 WHERE id = ?1",
        params![run_id, ms(finished_at), status, failure_text],
    )?;
    Ok(())
}

/// Sets a run's delivery state (`error` explains a failure).
pub fn set_delivery(
    conn: &Connection,
    run_id: i64,
    delivery: DeliveryStatus,
    error: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE automation_runs SET delivery = ?2, delivery_error = ?3 WHERE id = ?1",
        params![run_id, delivery.as_str(), error],
    )?;
    Ok(())
}

/// The most recent runs, newest first; optionally of one kind and source.
pub fn list_runs(
    conn: &Connection,
    filter: Option<(RunKind, &str)>,
    limit: u32,
) -> Result<Vec<RunRecord>> {
    let records = match filter {
        Some((kind, source)) => {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM automation_runs WHERE kind = ?1 AND source_id = ?2 ORDER BY id DESC LIMIT ?3"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![kind.as_str(), source, limit], run_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let sql =
                format!("SELECT {RUN_COLUMNS} FROM automation_runs ORDER BY id DESC LIMIT ?1");
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![limit], run_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    records.into_iter().collect()
}

/// The latest run of each source whose run or delivery failed (for `/status`).
pub fn latest_failures(conn: &Connection) -> Result<Vec<RunRecord>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM automation_runs WHERE id IN \
         (SELECT MAX(id) FROM automation_runs WHERE status NOT LIKE 'skipped%' GROUP BY kind, source_id) \
         AND (status LIKE 'error%' OR delivery = 'failed') ORDER BY id DESC"
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([], run_from_row)?;
    rows.map(|row| row?).collect()
}

/// Remembers that outbox action (`transport`, `action_id`) carries run `run_id`'s result.
pub fn add_receipt(conn: &Connection, transport: &str, action_id: u64, run_id: i64) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO automation_receipts (transport, action_id, run_id) VALUES (?1, ?2, ?3)",
        params![transport, i64::try_from(action_id).unwrap_or(i64::MAX), run_id],
    )?;
    Ok(())
}

/// A gateway acknowledged an action: settles the run's delivery. A failed
/// delivery marks the run failed at once; success marks it ok when no other
/// receipt of that run is outstanding. Returns the run, if the action was one of ours.
pub fn settle_receipt(
    conn: &Connection,
    transport: &str,
    action_id: u64,
    error: &str,
) -> Result<Option<i64>> {
    let action_id = i64::try_from(action_id).unwrap_or(i64::MAX);
    let run_id: Option<i64> = conn
        .query_row(
            "SELECT run_id FROM automation_receipts WHERE transport = ?1 AND action_id = ?2",
            params![transport, action_id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(run_id) = run_id else { return Ok(None) };
    conn.execute(
        "DELETE FROM automation_receipts WHERE transport = ?1 AND action_id = ?2",
        params![transport, action_id],
    )?;
    if !error.is_empty() {
        let message = format!("{transport}: {error}");
        conn.execute(
            "UPDATE automation_runs SET delivery = 'failed', delivery_error = ?2 WHERE id = ?1",
            params![run_id, message],
        )?;
        return Ok(Some(run_id));
    }
    let outstanding: i64 = conn.query_row(
        "SELECT COUNT(*) FROM automation_receipts WHERE run_id = ?1",
        [run_id],
        |row| row.get(0),
    )?;
    if outstanding == 0 {
        conn.execute(
            "UPDATE automation_runs SET delivery = 'ok' WHERE id = ?1 AND delivery = 'pending'",
            [run_id],
        )?;
    }
    Ok(Some(run_id))
}

/// An accepted webhook request in the journal: written before the sender is
/// answered 202, removed when its run enters the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Journal row.
    pub id: i64,
    /// The hook it was sent to.
    pub hook_id: String,
    /// When it was accepted.
    pub received_at: Timestamp,
    /// The rendered, fenced prompt.
    pub prompt: String,
}

/// Journals an accepted webhook request; returns its row.
pub fn journal_event(
    conn: &Connection,
    hook_id: &str,
    received_at: Timestamp,
    prompt: &str,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO webhook_inbox (hook_id, received_ms, prompt) VALUES (?1, ?2, ?3)",
        params![hook_id, ms(received_at), prompt],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Removes a journaled request: handled (its run is in the history) or refused.
pub fn drop_event(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM webhook_inbox WHERE id = ?1", [id])?;
    Ok(())
}

/// Journaled requests not yet handled, oldest first (startup).
pub fn pending_events(conn: &Connection) -> Result<Vec<InboxEntry>> {
    let mut statement =
        conn.prepare("SELECT id, hook_id, received_ms, prompt FROM webhook_inbox ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok(InboxEntry {
            id: row.get(0)?,
            hook_id: row.get(1)?,
            received_at: from_ms(row.get(2)?),
            prompt: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Runs `work` (which writes the request's history entry) and removes the
/// journal row `inbox` in one transaction, so a crash leaves the request
/// either still journaled (handled again at startup) or in the history
/// (closed as interrupted at startup), never neither or both.
pub fn claiming<T>(
    conn: &Connection,
    inbox: Option<i64>,
    work: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let Some(inbox) = inbox else { return work(conn) };
    let tx = conn.unchecked_transaction()?;
    let value = work(&tx)?;
    drop_event(&tx, inbox)?;
    tx.commit()?;
    Ok(value)
}

/// Marks runs left "running" by a previous process as interrupted (startup).
pub fn interrupt_unfinished(conn: &Connection, now: Timestamp) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE automation_runs SET status = 'error:interrupted', finished_ms = ?1, \
         delivery = CASE WHEN delivery = 'pending' AND id NOT IN (SELECT run_id FROM automation_receipts) \
         THEN 'skipped' ELSE delivery END WHERE status = 'running'",
        [ms(now)],
    )?)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
