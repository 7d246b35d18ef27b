//! Core's SQLite state (`$DUCTOR_HOME/state.db`): sessions and their provider
//! buckets, the inbound journal (deduplication and the inflight record), and
//! the durable outbox.
//!
//! - WAL mode, `synchronous=NORMAL`: a committed write survives a process
//!   crash (SIGKILL); a power loss may lose the last few.
//! - Versioned migrations in one `schema_migrations` table. Core owns versions
//!   1–99; automation registers its own (100+) through [`Store::open`].
//! - Every write runs in a transaction. The connection sits behind a mutex and
//!   all work goes through [`Store::call`], which runs it on the blocking pool
//!   so async workers never wait on disk.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ductor_daemon::sync::Locked as _;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::SessionKey;
use crate::session::{Bucket, SessionRecord};

/// One schema step. Versions are unique and applied in ascending order.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number: core 1–99, automation 100+.
    pub version: u32,
    /// Short name, stored for `ductorctl doctor`.
    pub name: &'static str,
    /// SQL run in one transaction.
    pub sql: &'static str,
}

/// Core's own migrations.
pub const CORE_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core: sessions, inbound journal, outbox",
        sql: "
        CREATE TABLE sessions (
            skey TEXT PRIMARY KEY,
            transport TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            topic_id TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            effort TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        );
        CREATE TABLE session_buckets (
            skey TEXT NOT NULL REFERENCES sessions(skey) ON DELETE CASCADE,
            provider TEXT NOT NULL,
            session_id TEXT,
            message_count INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            last_active_ms INTEGER,
            PRIMARY KEY (skey, provider)
        );
        CREATE TABLE inbound (
            transport TEXT NOT NULL,
            event_id TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            topic_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done')),
            turn_id TEXT NOT NULL DEFAULT '',
            preview TEXT NOT NULL,
            accepted_ms INTEGER NOT NULL,
            PRIMARY KEY (transport, event_id)
        );
        CREATE INDEX inbound_open ON inbound(state) WHERE state != 'done';
        CREATE TABLE outbox (
            transport TEXT NOT NULL,
            action_id INTEGER NOT NULL,
            chat_id TEXT NOT NULL,
            topic_id TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_ms INTEGER NOT NULL,
            PRIMARY KEY (transport, action_id)
        );
        CREATE TABLE outbox_seq (
            transport TEXT PRIMARY KEY,
            reserved_until INTEGER NOT NULL
        );
    ",
    },
    Migration {
        version: 2,
        name: "core: a chat's permission mode, the approvals audit log",
        sql: "
        ALTER TABLE sessions ADD COLUMN permission TEXT NOT NULL DEFAULT '';
        CREATE TABLE approvals (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            skey TEXT NOT NULL,
            run_id TEXT NOT NULL,
            provider TEXT NOT NULL,
            tool TEXT NOT NULL,
            input TEXT NOT NULL,
            decision TEXT NOT NULL,
            how TEXT NOT NULL
        );
        CREATE INDEX approvals_by_chat ON approvals(skey, at_ms);
    ",
    },
];

/// One approval decision, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// When it was decided.
    pub at: Timestamp,
    /// The chat.
    pub key: SessionKey,
    /// The run that asked.
    pub run_id: String,
    /// Its provider.
    pub provider: String,
    /// The tool.
    pub tool: String,
    /// The tool input as the CLI gave it (truncated).
    pub input: String,
    /// "allowed", "allowed_for_session", "denied", "timed_out", "cancelled".
    pub decision: String,
    /// How: "button", "typed", "session_rule", "timeout", "turn_ended".
    pub how: String,
}

/// Appends `record` to the approvals audit log.
pub fn record_approval(conn: &mut Connection, record: &ApprovalRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO approvals (at_ms, skey, run_id, provider, tool, input, decision, how)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            record.at.as_millisecond(),
            record.key.storage_key(),
            record.run_id,
            record.provider,
            record.tool,
            record.input,
            record.decision,
            record.how
        ],
    )
    .map_err(sql("record an approval"))?;
    Ok(())
}

/// The chat's latest `limit` approval decisions, newest first.
pub fn recent_approvals(
    conn: &mut Connection,
    key: &SessionKey,
    limit: u32,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT at_ms, run_id, provider, tool, input, decision, how FROM approvals
             WHERE skey = ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )
        .map_err(sql("read approvals"))?;
    let rows = stmt
        .query_map(params![key.storage_key(), limit], |row| {
            Ok(ApprovalRecord {
                at: ts(row.get(0)?),
                key: key.clone(),
                run_id: row.get(1)?,
                provider: row.get(2)?,
                tool: row.get(3)?,
                input: row.get(4)?,
                decision: row.get(5)?,
                how: row.get(6)?,
            })
        })
        .map_err(sql("read approvals"))?;
    rows.collect::<Result<_, _>>().map_err(sql("read an approval"))
}

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("{action}: {source}")]
    Sqlite {
        /// Verb phrase.
        action: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Two migrations share a version, or the database is newer than us.
    #[error("migrations: {0}")]
    Migration(String),
    /// The blocking task died (a panic inside a store call).
    #[error("the database task failed: {0}")]
    Task(String),
    /// The database file could not be made private.
    #[error("make the state database private: {0}")]
    Io(String),
}

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { action, source }
}

/// State of an inbound event in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundState {
    /// Accepted, waiting (queued) for its turn.
    Pending,
    /// Its turn runs: the inflight record.
    Running,
    /// Answered, cancelled or reported.
    Done,
}

impl InboundState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
        }
    }
}

/// An inbound event that was not finished when core last stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The event.
    pub event_id: String,
    /// Its chat.
    pub key: SessionKey,
    /// It was running (else queued).
    pub was_running: bool,
    /// Start of its text, for the notice.
    pub preview: String,
}

/// The shared handle to `state.db`.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// `state.db` holds transcripts, webhook tokens and HMAC secrets: it is
/// created 0600 (SQLite's own default follows the umask, usually 0644) and
/// an older world-readable one, with its `-wal`/`-shm`, is made 0600.
fn private_database(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path);
    match created {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        ductor_daemon::paths::tighten(Path::new(&name), 0o600)?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating) the database and applies core's migrations plus `extra`.
    pub fn open(path: &Path, extra: &[Migration]) -> Result<Self, StoreError> {
        private_database(path).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        let conn = Connection::open(path).map_err(sql("open the state database"))?;
        Self::setup(conn, extra)
    }

    /// An in-memory database (tests, benches).
    pub fn open_in_memory(extra: &[Migration]) -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(sql("open an in-memory database"))?;
        Self::setup(conn, extra)
    }

    fn setup(mut conn: Connection, extra: &[Migration]) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql("enable foreign keys"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql("set busy timeout"))?;
        let mut all: Vec<Migration> = CORE_MIGRATIONS.iter().chain(extra).copied().collect();
        all.sort_by_key(|m| m.version);
        if all.windows(2).any(|w| w[0].version == w[1].version) {
            return Err(StoreError::Migration("two migrations share a version".into()));
        }
        migrate(&mut conn, &all)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `work` on the blocking pool with the connection.
    pub async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.locked();
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `work` on the calling thread (startup, before the runtime is busy).
    pub fn call_sync<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.locked();
        work(&mut guard)
    }
}

fn migrate(conn: &mut Connection, all: &[Migration]) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)",
    )
    .map_err(sql("create the migrations table"))?;
    for migration in all {
        let tx = conn.transaction().map_err(sql("begin a migration"))?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [migration.version],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql("read the migrations table"))?;
        if done.is_none() {
            tx.execute_batch(migration.sql).map_err(sql("apply a migration"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
                params![migration.version, migration.name, now_ms()],
            )
            .map_err(sql("record a migration"))?;
            tracing::info!(version = migration.version, name = migration.name, "migrated");
        }
        tx.commit().map_err(sql("commit a migration"))?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

// === sessions ===

/// All session records.
pub fn load_sessions(conn: &mut Connection) -> Result<Vec<SessionRecord>, StoreError> {
    let mut records = Vec::new();
    let mut stmt = conn
        .prepare(
            "SELECT skey, transport, chat_id, topic_id, provider, model, effort, created_ms,
                    permission
             FROM sessions",
        )
        .map_err(sql("read sessions"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                SessionRecord {
                    key: SessionKey::new(
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ),
                    provider: row.get(4)?,
                    model: row.get(5)?,
                    effort: row.get(6)?,
                    buckets: Default::default(),
                    created_at: ts(row.get(7)?),
                    permission: row.get(8)?,
                },
            ))
        })
        .map_err(sql("read sessions"))?;
    let mut by_key = std::collections::HashMap::new();
    for row in rows {
        let (skey, record) = row.map_err(sql("read a session"))?;
        by_key.insert(skey, records.len());
        records.push(record);
    }
    let mut stmt = conn
        .prepare(
            "SELECT skey, provider, session_id, message_count, input_tokens, output_tokens,
                    cost_usd, last_active_ms FROM session_buckets",
        )
        .map_err(sql("read session buckets"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                Bucket {
                    session_id: row.get(2)?,
                    message_count: row.get::<_, i64>(3)?.max(0).unsigned_abs(),
                    input_tokens: row.get::<_, i64>(4)?.max(0).unsigned_abs(),
                    output_tokens: row.get::<_, i64>(5)?.max(0).unsigned_abs(),
                    cost_usd: row.get(6)?,
                    last_active: row.get::<_, Option<i64>>(7)?.map(ts),
                },
            ))
        })
        .map_err(sql("read session buckets"))?;
    for row in rows {
        let (skey, provider, bucket) = row.map_err(sql("read a session bucket"))?;
        if let Some(&index) = by_key.get(&skey) {
            records[index].buckets.insert(provider, bucket);
        }
    }
    Ok(records)
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A chat's session and when its active provider's bucket was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatActivityRow {
    /// The chat.
    pub key: SessionKey,
    /// The active provider's session id, if it has one.
    pub session_id: Option<String>,
    /// The active provider's bucket's last use.
    pub last_active_ms: Option<i64>,
}

/// Every chat with a session record, terminal clients (`cli`, `cli@<agent>`) left out.
pub fn chat_activity(conn: &mut Connection) -> Result<Vec<ChatActivityRow>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT s.transport, s.chat_id, s.topic_id, b.session_id, b.last_active_ms
             FROM sessions s
             LEFT JOIN session_buckets b ON b.skey = s.skey AND b.provider = s.provider
             WHERE s.transport != 'cli' AND s.transport NOT LIKE 'cli@%'",
        )
        .map_err(sql("read chat activity"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok(ChatActivityRow {
                key: SessionKey::new(
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ),
                session_id: row.get(3)?,
                last_active_ms: row.get(4)?,
            })
        })
        .map_err(sql("read chat activity"))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql("read chat activity"))
}

/// Writes one session record and all its buckets, in one transaction.
pub fn save_session(conn: &mut Connection, record: &SessionRecord) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql("begin saving a session"))?;
    let skey = record.key.storage_key();
    tx.execute(
        "INSERT INTO sessions (skey, transport, chat_id, topic_id, provider, model, effort,
             created_ms, permission)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(skey) DO UPDATE SET provider = ?5, model = ?6, effort = ?7, permission = ?9",
        params![
            skey,
            record.key.transport,
            record.key.chat_id,
            record.key.topic_id,
            record.provider,
            record.model,
            record.effort,
            record.created_at.as_millisecond(),
            record.permission
        ],
    )
    .map_err(sql("save a session"))?;
    for (provider, bucket) in &record.buckets {
        tx.execute(
            "INSERT INTO session_buckets (skey, provider, session_id, message_count, input_tokens,
                 output_tokens, cost_usd, last_active_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(skey, provider) DO UPDATE SET session_id = ?3, message_count = ?4,
                 input_tokens = ?5, output_tokens = ?6, cost_usd = ?7, last_active_ms = ?8",
            params![
                skey,
                provider,
                bucket.session_id,
                clamp(bucket.message_count),
                clamp(bucket.input_tokens),
                clamp(bucket.output_tokens),
                bucket.cost_usd,
                bucket.last_active.map(|t| t.as_millisecond())
            ],
        )
        .map_err(sql("save a session bucket"))?;
    }
    tx.commit().map_err(sql("commit a session"))
}

// === inbound journal ===

/// Records an inbound event; `false` when it was seen before (a duplicate).
pub fn accept_inbound(
    conn: &mut Connection,
    event_id: &str,
    key: &SessionKey,
    preview: &str,
) -> Result<bool, StoreError> {
    let tx = conn.transaction().map_err(sql("begin accepting an event"))?;
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO inbound
                 (transport, event_id, chat_id, topic_id, state, preview, accepted_ms)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
            params![key.transport, event_id, key.chat_id, key.topic_id, preview, now_ms()],
        )
        .map_err(sql("record an inbound event"))?;
    tx.commit().map_err(sql("commit an inbound event"))?;
    Ok(inserted == 1)
}

/// Moves an inbound event to `state`.
pub fn set_inbound_state(
    conn: &mut Connection,
    transport: &str,
    event_id: &str,
    state: InboundState,
    turn_id: &str,
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql("begin updating an event"))?;
    tx.execute(
        "UPDATE inbound SET state = ?3, turn_id = ?4 WHERE transport = ?1 AND event_id = ?2",
        params![transport, event_id, state.as_str(), turn_id],
    )
    .map_err(sql("update an inbound event"))?;
    tx.commit().map_err(sql("commit an inbound event update"))
}

/// Events left pending or running by the previous process; marks them done
/// (they are reported, never re-run) and prunes old finished ones.
pub fn take_unfinished(conn: &mut Connection) -> Result<Vec<Unfinished>, StoreError> {
    let tx = conn.transaction().map_err(sql("begin recovery"))?;
    let unfinished = {
        let mut stmt = tx
            .prepare(
                "SELECT event_id, transport, chat_id, topic_id, state, preview FROM inbound
                 WHERE state != 'done' ORDER BY accepted_ms, rowid",
            )
            .map_err(sql("read unfinished events"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(Unfinished {
                    event_id: row.get(0)?,
                    key: SessionKey::new(
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ),
                    was_running: row.get::<_, String>(4)? == "running",
                    preview: row.get(5)?,
                })
            })
            .map_err(sql("read unfinished events"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql("read an unfinished event"))?
    };
    tx.execute("UPDATE inbound SET state = 'done' WHERE state != 'done'", [])
        .map_err(sql("close unfinished events"))?;
    // The dedup window: a week is far longer than any gateway retries.
    tx.execute(
        "DELETE FROM inbound WHERE state = 'done' AND accepted_ms < ?1",
        [now_ms() - 7 * 24 * 3600 * 1000],
    )
    .map_err(sql("prune the inbound journal"))?;
    tx.commit().map_err(sql("commit recovery"))?;
    Ok(unfinished)
}

// === outbox ===

/// Reserves `block` action ids for `transport`; returns the first one.
///
/// Ids are handed out from memory and only the reservation is written, so
/// best-effort actions cost no disk write and ids still grow across restarts.
pub fn reserve_action_ids(
    conn: &mut Connection,
    transport: &str,
    block: u64,
) -> Result<u64, StoreError> {
    let tx = conn.transaction().map_err(sql("begin reserving ids"))?;
    let current: i64 = tx
        .query_row(
            "SELECT reserved_until FROM outbox_seq WHERE transport = ?1",
            [transport],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql("read the action id reservation"))?
        .unwrap_or(0);
    let stored_max: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(action_id), 0) FROM outbox WHERE transport = ?1",
            [transport],
            |row| row.get(0),
        )
        .map_err(sql("read the highest stored action id"))?;
    let first = current.max(stored_max) + 1;
    tx.execute(
        "INSERT INTO outbox_seq (transport, reserved_until) VALUES (?1, ?2)
         ON CONFLICT(transport) DO UPDATE SET reserved_until = ?2",
        params![transport, first + clamp(block) - 1],
    )
    .map_err(sql("write the action id reservation"))?;
    tx.commit().map_err(sql("commit the action id reservation"))?;
    Ok(first.max(1).unsigned_abs())
}

/// Persists a durable action until it is acknowledged.
pub fn outbox_put(
    conn: &mut Connection,
    transport: &str,
    action_id: u64,
    key: &SessionKey,
    payload: &[u8],
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql("begin storing an action"))?;
    tx.execute(
        "INSERT OR REPLACE INTO outbox (transport, action_id, chat_id, topic_id, payload, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![transport, clamp(action_id), key.chat_id, key.topic_id, payload, now_ms()],
    )
    .map_err(sql("store an outbound action"))?;
    tx.commit().map_err(sql("commit an outbound action"))
}

/// Forgets an acknowledged action.
pub fn outbox_ack(
    conn: &mut Connection,
    transport: &str,
    action_id: u64,
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql("begin an acknowledgement"))?;
    tx.execute(
        "DELETE FROM outbox WHERE transport = ?1 AND action_id = ?2",
        params![transport, clamp(action_id)],
    )
    .map_err(sql("delete an acknowledged action"))?;
    tx.commit().map_err(sql("commit an acknowledgement"))
}

/// Unacknowledged actions of `transport` in id order: `(id, chat, payload)`.
pub fn outbox_pending(
    conn: &mut Connection,
    transport: &str,
) -> Result<Vec<(u64, SessionKey, Vec<u8>)>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT action_id, chat_id, topic_id, payload FROM outbox
             WHERE transport = ?1 ORDER BY action_id",
        )
        .map_err(sql("read pending actions"))?;
    let rows = stmt
        .query_map([transport], |row| {
            Ok((
                row.get::<_, i64>(0)?.max(0).unsigned_abs(),
                SessionKey::new(transport, row.get::<_, String>(1)?, row.get::<_, String>(2)?),
                row.get::<_, Vec<u8>>(3)?,
            ))
        })
        .map_err(sql("read pending actions"))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql("read a pending action"))
}

/// Number of unacknowledged actions over all transports.
pub fn outbox_count(conn: &mut Connection) -> Result<u64, StoreError> {
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get::<_, i64>(0))
        .map(|n| n.max(0).unsigned_abs())
        .map_err(sql("count pending actions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new("tg", "42", "7")
    }

    #[test]
    fn sessions_round_trip_with_buckets() {
        let store = Store::open_in_memory(&[]).unwrap();
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut record = SessionRecord::new(key(), "codex", "gpt-5", "high", now);
        record.bucket_mut("claude").session_id = Some("c-1".into());
        let codex = record.bucket_mut("codex");
        codex.session_id = Some("x-1".into());
        codex.message_count = 3;
        codex.cost_usd = 0.25;
        codex.last_active = Some(now);
        store.call_sync(|c| save_session(c, &record)).unwrap();
        record.bucket_mut("codex").message_count = 4;
        store.call_sync(|c| save_session(c, &record)).unwrap();
        let loaded = store.call_sync(load_sessions).unwrap();
        assert_eq!(loaded, vec![record]);
    }

    #[test]
    fn chat_activity_reads_the_active_bucket_and_skips_terminal_clients() {
        let store = Store::open_in_memory(&[]).unwrap();
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut record = SessionRecord::new(key(), "codex", "", "", now);
        record.bucket_mut("claude").session_id = Some("c-1".into());
        record.bucket_mut("codex").last_active = Some(now);
        let fresh = SessionRecord::new(SessionKey::new("matrix", "!r", ""), "claude", "", "", now);
        let cli = SessionRecord::new(SessionKey::new("cli", "me", ""), "claude", "", "", now);
        for r in [&record, &fresh, &cli] {
            store.call_sync(|c| save_session(c, r)).unwrap();
        }
        let mut rows = store.call_sync(chat_activity).unwrap();
        rows.sort_by(|a, b| a.key.transport.cmp(&b.key.transport));
        let tg = ChatActivityRow {
            key: key(),
            session_id: None,
            last_active_ms: Some(now.as_millisecond()),
        };
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].key, SessionKey::new("matrix", "!r", ""));
        assert_eq!(rows[1], tg, "codex is active: claude's session does not count");
    }

    #[test]
    fn inbound_dedup_and_recovery() {
        let store = Store::open_in_memory(&[]).unwrap();
        assert!(store.call_sync(|c| accept_inbound(c, "e1", &key(), "hello")).unwrap());
        assert!(!store.call_sync(|c| accept_inbound(c, "e1", &key(), "hello")).unwrap());
        store.call_sync(|c| accept_inbound(c, "e2", &key(), "queued")).unwrap();
        store.call_sync(|c| accept_inbound(c, "e3", &key(), "answered")).unwrap();
        store.call_sync(|c| set_inbound_state(c, "tg", "e1", InboundState::Running, "t1")).unwrap();
        store.call_sync(|c| set_inbound_state(c, "tg", "e3", InboundState::Done, "t0")).unwrap();
        let unfinished = store.call_sync(take_unfinished).unwrap();
        let summary: Vec<_> =
            unfinished.iter().map(|u| (u.event_id.as_str(), u.was_running)).collect();
        assert_eq!(summary, [("e1", true), ("e2", false)]);
        assert!(store.call_sync(take_unfinished).unwrap().is_empty());
        // Still deduplicated after recovery.
        assert!(!store.call_sync(|c| accept_inbound(c, "e1", &key(), "hello")).unwrap());
    }

    #[test]
    fn action_ids_grow_across_reservations_and_outbox_round_trips() {
        let store = Store::open_in_memory(&[]).unwrap();
        let first = store.call_sync(|c| reserve_action_ids(c, "tg", 10)).unwrap();
        assert_eq!(first, 1);
        let second = store.call_sync(|c| reserve_action_ids(c, "tg", 10)).unwrap();
        assert_eq!(second, 11);
        assert_eq!(store.call_sync(|c| reserve_action_ids(c, "mx", 10)).unwrap(), 1);
        store.call_sync(|c| outbox_put(c, "tg", 12, &key(), b"b")).unwrap();
        store.call_sync(|c| outbox_put(c, "tg", 11, &key(), b"a")).unwrap();
        let pending = store.call_sync(|c| outbox_pending(c, "tg")).unwrap();
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), [11, 12]);
        store.call_sync(|c| outbox_ack(c, "tg", 11)).unwrap();
        assert_eq!(store.call_sync(outbox_count).unwrap(), 1);
    }

    #[test]
    fn duplicate_migration_versions_are_refused() {
        let extra = [Migration { version: 1, name: "dup", sql: "" }];
        assert!(matches!(Store::open_in_memory(&extra), Err(StoreError::Migration(_))));
    }

    #[test]
    fn reopening_a_file_applies_migrations_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let extra = [Migration { version: 100, name: "x", sql: "CREATE TABLE x (a INTEGER);" }];
        drop(Store::open(&path, &extra).unwrap());
        let store = Store::open(&path, &extra).unwrap();
        let count: i64 = store
            .call_sync(|c| {
                c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
                    .map_err(sql("count"))
            })
            .unwrap();
        assert_eq!(count as usize, CORE_MIGRATIONS.len() + extra.len());
    }
}
