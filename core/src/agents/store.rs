//! Each (recipient, asker) pair's provider session in `state.db`
//! (migration 50: table `agent_sessions`), so an agent asked again by the
//! same agent continues the conversation, across restarts.

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::store::{Migration, StoreError};

/// The bus's schema (a core migration: the bus is part of core's state).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 50,
    name: "agents: the session each agent keeps with each agent that asks it",
    sql: "
    CREATE TABLE agent_sessions (
        recipient TEXT NOT NULL,
        asker TEXT NOT NULL,
        provider TEXT NOT NULL,
        session_id TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (recipient, asker)
    );
    ",
}];

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { action, source }
}

/// The `(provider, session id)` `recipient` keeps with `asker`.
pub fn load(
    conn: &mut Connection,
    recipient: &str,
    asker: &str,
) -> Result<Option<(String, String)>, StoreError> {
    conn.query_row(
        "SELECT provider, session_id FROM agent_sessions WHERE recipient = ?1 AND asker = ?2",
        params![recipient, asker],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map_err(sql("read an agent session"))
}

/// Saves (or, with an empty `session_id`, forgets) the pair's session.
pub fn save(
    conn: &mut Connection,
    recipient: &str,
    asker: &str,
    provider: &str,
    session_id: &str,
) -> Result<(), StoreError> {
    if session_id.is_empty() {
        conn.execute(
            "DELETE FROM agent_sessions WHERE recipient = ?1 AND asker = ?2",
            params![recipient, asker],
        )
        .map_err(sql("forget an agent session"))?;
        return Ok(());
    }
    let now = jiff::Timestamp::now().as_millisecond();
    conn.execute(
        "INSERT INTO agent_sessions (recipient, asker, provider, session_id, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(recipient, asker) DO UPDATE SET provider = ?3, session_id = ?4, updated_ms = ?5",
        params![recipient, asker, provider, session_id, now],
    )
    .map_err(sql("save an agent session"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_pair_keeps_one_session() {
        let store = Store::open_in_memory(MIGRATIONS).unwrap();
        store
            .call_sync(|c| {
                assert_eq!(load(c, "researcher", "main")?, None);
                save(c, "researcher", "main", "claude", "s1")?;
                save(c, "researcher", "main", "claude", "s2")?;
                save(c, "researcher", "writer", "codex", "w1")?;
                assert_eq!(load(c, "researcher", "main")?, Some(("claude".into(), "s2".into())));
                save(c, "researcher", "main", "claude", "")?;
                assert_eq!(load(c, "researcher", "main")?, None);
                assert_eq!(load(c, "researcher", "writer")?, Some(("codex".into(), "w1".into())));
                Ok(())
            })
            .unwrap();
    }
}
