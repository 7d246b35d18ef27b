//! Named sessions brought in from Python ductor (`ductorctl import`,
//! `Import.ImportNamedSession`): an idle session with its provider session
//! id, continued with `@name …` like one made here. Its runs use the chat's
//! CLI home, where `ductorctl import` had the runner copy the transcript.
//!
//! Idempotent: the same name with the same id is `Unchanged`; a name taken
//! by another session is a `Conflict` and nothing changes.

use ductor_daemon::sync::Locked as _;
use jiff::Timestamp;

use super::engine::Background;
use super::model::{NamedSession, NamedState, valid_name};
use crate::machine::ImportOutcome;

impl Background {
    /// Adds `session` (its state is made idle) unless its name is taken.
    pub async fn import_named(&self, mut session: NamedSession, dry_run: bool) -> ImportOutcome {
        if !valid_name(&session.name) {
            return ImportOutcome::Conflict(format!(
                "{:?} is not a valid session name",
                session.name
            ));
        }
        session.state = NamedState::Idle;
        let skey = (session.key.storage_key(), session.name.clone());
        {
            let mut state = self.inner.state.locked();
            if let Some(existing) = state.named.get(&skey) {
                return if existing.session_id == session.session_id {
                    ImportOutcome::Unchanged
                } else {
                    ImportOutcome::Conflict(format!(
                        "the chat already has a session named {}",
                        session.name
                    ))
                };
            }
            let live = state
                .named
                .values()
                .filter(|s| s.key == session.key && s.state != NamedState::Ended)
                .count();
            let limit = self.inner.config.max_sessions_per_chat as usize;
            if live >= limit {
                return ImportOutcome::Conflict(format!(
                    "the chat has {limit} named sessions ([background].max_sessions_per_chat)"
                ));
            }
            if dry_run {
                return ImportOutcome::Imported;
            }
            session.last_active = Timestamp::now();
            state.named.insert(skey, session.clone());
        }
        let key = session.key.clone();
        self.save_named(session).await;
        self.publish_names(&key);
        ImportOutcome::Imported
    }
}
