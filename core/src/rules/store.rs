//! The rule-sync records in `state.db` (migration 300: table `rule_sync`),
//! one row per directory (its path relative to the workspace, `""` for the
//! root). Kept outside the agent-writable workspace, so an agent cannot make
//! ductor believe a file was never edited.

use rusqlite::{Connection, params};

use super::{BlockState, Hash, Record};
use crate::store::{Migration, StoreError};

/// The rule sync's schema (versions 300+).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 300,
    name: "rules: what each directory's rule files held at the last sync",
    sql: "
    CREATE TABLE rule_sync (
        dir TEXT PRIMARY KEY,
        synced BLOB NOT NULL,
        block TEXT NOT NULL,
        framework BLOB NOT NULL
    );
    ",
}];

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { action, source }
}

fn digest(bytes: Vec<u8>) -> Hash {
    let mut out = [0; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(&bytes);
    }
    out
}

/// Every record, by directory.
pub fn load(conn: &mut Connection) -> Result<Vec<(String, Record)>, StoreError> {
    let mut statement = conn
        .prepare("SELECT dir, synced, block, framework FROM rule_sync")
        .map_err(sql("read the rule-sync records"))?;
    let rows = statement
        .query_map([], |row| {
            let block: String = row.get(2)?;
            Ok((
                row.get::<_, String>(0)?,
                Record {
                    synced: digest(row.get(1)?),
                    block: BlockState::parse(&block),
                    framework: digest(row.get(3)?),
                },
            ))
        })
        .map_err(sql("read the rule-sync records"))?;
    rows.collect::<Result<_, _>>().map_err(sql("read the rule-sync records"))
}

/// Saves `changed` and forgets `gone`, in one transaction.
pub fn save(
    conn: &mut Connection,
    changed: &[(String, Record)],
    gone: &[String],
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql("begin saving rule-sync records"))?;
    for (dir, record) in changed {
        tx.execute(
            "INSERT INTO rule_sync (dir, synced, block, framework) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(dir) DO UPDATE SET synced = ?2, block = ?3, framework = ?4",
            params![dir, &record.synced[..], record.block.as_str(), &record.framework[..]],
        )
        .map_err(sql("save a rule-sync record"))?;
    }
    for dir in gone {
        tx.execute("DELETE FROM rule_sync WHERE dir = ?1", params![dir])
            .map_err(sql("forget a rule-sync record"))?;
    }
    tx.commit().map_err(sql("commit rule-sync records"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn records_round_trip_and_are_forgotten() {
        let store = Store::open_in_memory(MIGRATIONS).unwrap();
        let record = Record { synced: [1; 32], block: BlockState::Edited, framework: [2; 32] };
        let removed = Record { block: BlockState::Removed, ..record };
        store
            .call_sync(|c| save(c, &[(String::new(), record), ("tasks/a".into(), removed)], &[]))
            .unwrap();
        let mut all = store.call_sync(load).unwrap();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all, vec![(String::new(), record), ("tasks/a".into(), removed)]);
        let managed = Record { block: BlockState::Managed, ..record };
        store.call_sync(|c| save(c, &[(String::new(), managed)], &["tasks/a".into()])).unwrap();
        assert_eq!(store.call_sync(load).unwrap(), vec![(String::new(), managed)]);
    }
}
