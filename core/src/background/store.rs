//! Background work's tables in core's `state.db` (migrations 200+): named
//! sessions and delegated tasks, written whenever one changes state, read
//! once at startup (where a running one becomes "interrupted").

use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::model::{NamedSession, NamedState, Priority, Task, TaskStatus};
use crate::model::SessionKey;
use crate::store::{Migration, StoreError};

/// Background work's migrations (versions 200+).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 200,
    name: "background: named sessions and delegated tasks",
    sql: "
    CREATE TABLE named_sessions (
        skey TEXT NOT NULL,
        transport TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        topic_id TEXT NOT NULL,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        effort TEXT NOT NULL,
        session_id TEXT NOT NULL,
        state TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_active_ms INTEGER NOT NULL,
        turns INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (skey, name)
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        skey TEXT NOT NULL,
        transport TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        topic_id TEXT NOT NULL,
        prompt TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        effort TEXT NOT NULL,
        priority TEXT NOT NULL,
        status TEXT NOT NULL,
        session_id TEXT NOT NULL,
        question TEXT NOT NULL,
        result TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        cost_usd REAL NOT NULL
    );
    CREATE INDEX tasks_by_chat ON tasks (skey, created_ms);
    ",
}];

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { action, source }
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Writes (inserts or replaces) a named session.
pub fn save_named(conn: &mut Connection, s: &NamedSession) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO named_sessions (skey, transport, chat_id, topic_id, name, provider,
             model, effort, session_id, state, created_ms, last_active_ms, turns, cost_usd)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            s.key.storage_key(),
            s.key.transport,
            s.key.chat_id,
            s.key.topic_id,
            s.name,
            s.provider,
            s.model,
            s.effort,
            s.session_id,
            s.state.as_str(),
            s.created_at.as_millisecond(),
            s.last_active.as_millisecond(),
            s.turns,
            s.cost_usd,
        ],
    )
    .map_err(sql("save a named session"))?;
    Ok(())
}

/// Removes a chat's ended sessions beyond the newest `keep`.
pub fn prune_ended(conn: &mut Connection, key: &SessionKey, keep: usize) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM named_sessions WHERE skey = ?1 AND state = 'ended' AND name NOT IN (
             SELECT name FROM named_sessions WHERE skey = ?1 AND state = 'ended'
             ORDER BY last_active_ms DESC LIMIT ?2)",
        params![key.storage_key(), i64::try_from(keep).unwrap_or(i64::MAX)],
    )
    .map_err(sql("prune ended named sessions"))?;
    Ok(())
}

fn named_of(row: &Row<'_>) -> rusqlite::Result<NamedSession> {
    Ok(NamedSession {
        key: SessionKey::new(
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
        ),
        name: row.get(3)?,
        provider: row.get(4)?,
        model: row.get(5)?,
        effort: row.get(6)?,
        session_id: row.get(7)?,
        state: NamedState::parse(&row.get::<_, String>(8)?),
        created_at: ts(row.get(9)?),
        last_active: ts(row.get(10)?),
        turns: row.get(11)?,
        cost_usd: row.get(12)?,
    })
}

/// Every named session.
pub fn load_named(conn: &mut Connection) -> Result<Vec<NamedSession>, StoreError> {
    let mut statement = conn
        .prepare(
            "SELECT transport, chat_id, topic_id, name, provider, model, effort, session_id,
                    state, created_ms, last_active_ms, turns, cost_usd
             FROM named_sessions ORDER BY created_ms",
        )
        .map_err(sql("read named sessions"))?;
    let rows = statement.query_map([], named_of).map_err(sql("read named sessions"))?;
    rows.collect::<Result<_, _>>().map_err(sql("read named sessions"))
}

/// Writes (inserts or replaces) a task.
pub fn save_task(conn: &mut Connection, t: &Task) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO tasks (id, name, skey, transport, chat_id, topic_id, prompt,
             provider, model, effort, priority, status, session_id, question, result,
             created_ms, finished_ms, cost_usd)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            t.id,
            t.name,
            t.parent.storage_key(),
            t.parent.transport,
            t.parent.chat_id,
            t.parent.topic_id,
            t.prompt,
            t.provider,
            t.model,
            t.effort,
            t.priority.as_str(),
            t.status.as_str(),
            t.session_id,
            t.question,
            t.result,
            t.created_at.as_millisecond(),
            t.finished_at.map(Timestamp::as_millisecond),
            t.cost_usd,
        ],
    )
    .map_err(sql("save a task"))?;
    Ok(())
}

/// Deletes a task's row.
pub fn delete_task(conn: &mut Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM tasks WHERE id = ?1", [id]).map_err(sql("delete a task"))?;
    Ok(())
}

fn task_of(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        name: row.get(1)?,
        parent: SessionKey::new(
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
        ),
        prompt: row.get(5)?,
        provider: row.get(6)?,
        model: row.get(7)?,
        effort: row.get(8)?,
        priority: Priority::parse(&row.get::<_, String>(9)?),
        status: TaskStatus::parse(&row.get::<_, String>(10)?),
        session_id: row.get(11)?,
        question: row.get(12)?,
        result: row.get(13)?,
        created_at: ts(row.get(14)?),
        finished_at: row.get::<_, Option<i64>>(15)?.map(ts),
        cost_usd: row.get(16)?,
    })
}

/// Every task, oldest first.
pub fn load_tasks(conn: &mut Connection) -> Result<Vec<Task>, StoreError> {
    let mut statement = conn
        .prepare(
            "SELECT id, name, transport, chat_id, topic_id, prompt, provider, model, effort,
                    priority, status, session_id, question, result, created_ms, finished_ms, cost_usd
             FROM tasks ORDER BY created_ms",
        )
        .map_err(sql("read tasks"))?;
    let rows = statement.query_map([], task_of).map_err(sql("read tasks"))?;
    rows.collect::<Result<_, _>>().map_err(sql("read tasks"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn named_sessions_and_tasks_round_trip() {
        let store = Store::open_in_memory(MIGRATIONS).unwrap();
        let key = SessionKey::new("tg", "1", "7");
        let named = NamedSession {
            key: key.clone(),
            name: "redowl".into(),
            provider: "codex".into(),
            model: "gpt-5".into(),
            effort: "high".into(),
            session_id: "s1".into(),
            state: NamedState::Idle,
            created_at: at(10),
            last_active: at(20),
            turns: 2,
            cost_usd: 0.5,
        };
        let task = Task {
            id: "3f2a9c01".into(),
            name: "tests".into(),
            parent: key.clone(),
            prompt: "fix".into(),
            provider: "claude".into(),
            model: String::new(),
            effort: String::new(),
            priority: Priority::Batch,
            status: TaskStatus::Waiting,
            session_id: "t1".into(),
            question: "which?".into(),
            result: String::new(),
            created_at: at(30),
            finished_at: None,
            cost_usd: 0.0,
        };
        store.call_sync(|c| save_named(c, &named)).unwrap();
        store.call_sync(|c| save_task(c, &task)).unwrap();
        assert_eq!(store.call_sync(load_named).unwrap(), vec![named]);
        assert_eq!(store.call_sync(load_tasks).unwrap(), vec![task]);
        store.call_sync(|c| delete_task(c, "3f2a9c01")).unwrap();
        assert!(store.call_sync(load_tasks).unwrap().is_empty());
    }

    #[test]
    fn pruning_keeps_the_newest_ended_sessions_and_every_live_one() {
        let store = Store::open_in_memory(MIGRATIONS).unwrap();
        let key = SessionKey::new("tg", "1", "");
        for (i, state) in
            [NamedState::Ended, NamedState::Ended, NamedState::Idle, NamedState::Ended]
                .into_iter()
                .enumerate()
        {
            let s = NamedSession {
                key: key.clone(),
                name: format!("s{i}"),
                provider: "claude".into(),
                model: String::new(),
                effort: String::new(),
                session_id: String::new(),
                state,
                created_at: at(1),
                last_active: at(i as i64 + 1),
                turns: 0,
                cost_usd: 0.0,
            };
            store.call_sync(|c| save_named(c, &s)).unwrap();
        }
        store.call_sync(|c| prune_ended(c, &key, 1)).unwrap();
        let names: Vec<String> =
            store.call_sync(load_named).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["s2", "s3"]);
    }
}
