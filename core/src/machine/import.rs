//! A chat's sessions brought in from Python ductor (`ductorctl import`,
//! `Import.ImportSession`): its provider buckets' resume ids merged into the
//! chat's record here, in the machine, because the machine owns the records
//! (a write beside it would be lost at the next save).
//!
//! Nothing is overwritten: an id already there is `Unchanged` (so a second
//! import changes nothing), a different one is a `Conflict` and the record
//! stays as it is.

use jiff::Timestamp;

use super::{Effect, Env, Machine};
use crate::model::SessionKey;
use crate::session::{Bucket, SessionRecord};

/// One chat's imported sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionImport {
    pub key: SessionKey,
    /// For a chat without a record: its provider, model and effort.
    pub provider: String,
    pub model: String,
    pub effort: String,
    /// Per provider, the session to resume (`session_id` set).
    pub buckets: Vec<(String, Bucket)>,
    /// Only say what would happen.
    pub dry_run: bool,
}

/// What an import did (or would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    Imported,
    Unchanged,
    /// Something else is there; nothing changed.
    Conflict(String),
}

/// The record after importing `import` over `existing`, or why not.
pub fn merge(
    existing: Option<&SessionRecord>,
    import: &SessionImport,
    now: Timestamp,
) -> (ImportOutcome, Option<SessionRecord>) {
    let mut record = existing.cloned().unwrap_or_else(|| {
        SessionRecord::new(import.key.clone(), &import.provider, &import.model, &import.effort, now)
    });
    let mut changed = existing.is_none();
    for (provider, bucket) in &import.buckets {
        let Some(id) = bucket.session_id.as_ref().filter(|id| !id.is_empty()) else { continue };
        match record.bucket(provider).and_then(|b| b.session_id.as_ref()) {
            Some(current) if current == id => {}
            Some(current) => {
                let why = format!("the chat already resumes {provider} session {current}");
                return (ImportOutcome::Conflict(why), None);
            }
            None => {
                let mut bucket = bucket.clone();
                bucket.last_active = bucket.last_active.or(Some(now));
                record.buckets.insert(provider.clone(), bucket);
                changed = true;
            }
        }
    }
    if changed { (ImportOutcome::Imported, Some(record)) } else { (ImportOutcome::Unchanged, None) }
}

impl<E: Env> Machine<E> {
    pub(super) fn on_import(&mut self, import_id: u64, import: SessionImport) {
        let (outcome, record) = merge(self.sessions.get(&import.key), &import, self.now);
        if let Some(record) = record.filter(|_| !import.dry_run) {
            self.sessions.insert(import.key.clone(), record.clone());
            self.out.push(Effect::SaveSession(record));
        }
        self.out.push(Effect::ImportDone { import_id, outcome });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey { transport: "telegram".into(), chat_id: "1".into(), topic_id: String::new() }
    }

    fn import(provider: &str, id: &str) -> SessionImport {
        let bucket = Bucket { session_id: Some(id.into()), message_count: 3, ..Bucket::default() };
        SessionImport {
            key: key(),
            provider: "claude".into(),
            model: "sonnet".into(),
            effort: String::new(),
            buckets: vec![(provider.into(), bucket)],
            dry_run: false,
        }
    }

    #[test]
    fn a_new_chat_gets_the_record_and_a_second_import_changes_nothing() {
        let now = Timestamp::from_second(1_000).unwrap();
        let (outcome, record) = merge(None, &import("claude", "c-1"), now);
        assert_eq!(outcome, ImportOutcome::Imported);
        let record = record.unwrap();
        assert_eq!(record.model, "sonnet");
        let bucket = record.bucket("claude").unwrap();
        assert_eq!(bucket.session_id.as_deref(), Some("c-1"));
        assert_eq!(bucket.last_active, Some(now), "unknown activity is the import time");
        let (again, none) = merge(Some(&record), &import("claude", "c-1"), now);
        assert_eq!((again, none), (ImportOutcome::Unchanged, None));
    }

    #[test]
    fn another_session_already_there_is_a_conflict_and_other_providers_are_added() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut record = SessionRecord::new(key(), "codex", "", "", now);
        record.bucket_mut("claude").session_id = Some("mine".into());
        let (outcome, none) = merge(Some(&record), &import("claude", "c-1"), now);
        assert!(matches!(outcome, ImportOutcome::Conflict(ref why) if why.contains("mine")));
        assert!(none.is_none());
        let (outcome, merged) = merge(Some(&record), &import("codex", "x-1"), now);
        assert_eq!(outcome, ImportOutcome::Imported);
        let merged = merged.unwrap();
        assert_eq!(merged.provider, "codex", "the chat's own choice is kept");
        assert_eq!(merged.bucket("claude").unwrap().session_id.as_deref(), Some("mine"));
    }
}
