//! Memory upkeep inside a chat (`[memory]`): the flush turn that lets the
//! agent save what matters into `MAINMEMORY.md` before its session's context
//! is compacted or reset, and the memory-check hint every few messages.
//!
//! - Before `/compact` (a CLI command, passed through) the flush runs first,
//!   as the next turn in the chat's own session.
//! - After a turn in which the CLI compacted by itself (the runner reports
//!   status `compacted`) the flush runs next, before queued messages.
//! - Before a reset (`/new`, `/reset`, an idle, daily or length reset) the old
//!   session is flushed by a one-shot run resuming it
//!   ([`Effect::MemoryFlush`]): the chat moves on at once, nothing waits.
//!
//! A flush is hidden: nothing of it reaches the chat. At most one per chat
//! within `flush_dedup_seconds`.

use jiff::{SignedDuration, Timestamp};

use super::{Effect, Env, InjectOptions, Machine, Origin, TurnInput};
use crate::model::SessionKey;

/// The flush agent's answer when there was nothing to save.
pub const FLUSH_TOKEN: &str = "FLUSH_NOOP";

/// The flush turn's prompt (shared with the one-shot flush of a reset).
pub const FLUSH_PROMPT: &str = "\
## MEMORY FLUSH (from ductor, not from the user)

This session's context is about to be compacted or reset, and what is only in
the conversation will be lost. Look back over it for facts worth keeping across
sessions (about the user, their projects and preferences, decisions made) that
are not in memory_system/MAINMEMORY.md yet, and add them there now, briefly.
Never store secrets. Do not answer the user. When you are done, or when there is
nothing to add, reply with exactly: FLUSH_NOOP";

/// Appended to every `check_every_messages`-th prompt of a session.
const MEMORY_CHECK: &str = "\n\n## MEMORY CHECK (from ductor)\n\
If this conversation taught you something worth keeping across sessions, update \
memory_system/MAINMEMORY.md quietly. Do not mention this note.";

/// The `Origin::Inject` id of upkeep turns: nobody waits for their outcome.
const UPKEEP: u64 = u64::MAX;

impl<E: Env> Machine<E> {
    /// A flush is due in `key` (enabled, none within the dedup window);
    /// marks it done.
    fn take_flush(&mut self, key: &SessionKey) -> bool {
        if !self.cfg.memory.flush {
            return false;
        }
        let window = SignedDuration::from_secs(self.cfg.memory.flush_dedup_seconds as i64);
        let now = self.now;
        let recent =
            self.flushed.get(key).is_some_and(|at: &Timestamp| now.duration_since(*at) < window);
        if recent {
            return false;
        }
        self.flushed.insert(key.clone(), now);
        true
    }

    fn flush_input() -> TurnInput {
        TurnInput {
            event_id: String::new(),
            prompt: FLUSH_PROMPT.to_owned(),
            media: None,
            provider: None,
            model: None,
            origin: Origin::Inject {
                id: UPKEEP,
                options: InjectOptions {
                    kind: "memory_flush".into(),
                    quiet_token: Some(FLUSH_TOKEN.into()),
                    silent: true,
                    skip_if_busy: false,
                    hidden: true,
                },
            },
        }
    }

    /// Before a user's `/compact`: the flush runs first, in the same session.
    pub(super) fn flush_before_compact(&mut self, key: &SessionKey, input: &TurnInput) {
        let compact = input.prompt.trim_start().strip_prefix("/compact");
        let is_compact =
            compact.is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if !is_compact || !matches!(input.origin, Origin::User) {
            return;
        }
        let has_session = self
            .sessions
            .get(key)
            .is_some_and(|r| r.buckets.get(&r.provider).is_some_and(|b| b.session_id.is_some()));
        if has_session && self.take_flush(key) {
            self.submit(key, Self::flush_input());
        }
    }

    /// After a turn in which the CLI compacted its context: the flush runs
    /// next, before anything queued.
    pub(super) fn flush_after_compaction(&mut self, key: &SessionKey) {
        if self.take_flush(key)
            && let Some(chat) = self.chats.get_mut(key)
        {
            let entry_id = format!("flush-{}", self.now.as_millisecond());
            chat.queue.push_front(super::Queued { entry_id, input: Self::flush_input() });
        }
    }

    /// Before `provider`'s session of `key` is reset: a one-shot run resumes
    /// the old session with the flush prompt.
    pub(super) fn flush_before_reset(&mut self, key: &SessionKey, provider: &str) {
        let Some(record) = self.sessions.get(key) else { return };
        let Some(session_id) = record.buckets.get(provider).and_then(|b| b.session_id.clone())
        else {
            return;
        };
        let model = if record.provider == provider { record.model.clone() } else { String::new() };
        if self.take_flush(key) {
            self.out.push(Effect::MemoryFlush {
                key: key.clone(),
                provider: provider.to_owned(),
                model,
                session_id,
            });
        }
    }

    /// The prompt of a user turn, with the memory-check hint when this is
    /// the session's n-th message.
    pub(super) fn with_memory_check(
        &self,
        key: &SessionKey,
        provider: &str,
        prompt: &str,
    ) -> String {
        let every = self.cfg.memory.check_every_messages;
        let count = self
            .sessions
            .get(key)
            .and_then(|r| r.buckets.get(provider))
            .map_or(0, |b| b.message_count);
        if every == 0 || !(count + 1).is_multiple_of(u64::from(every)) {
            return prompt.to_owned();
        }
        format!("{prompt}{MEMORY_CHECK}")
    }
}
