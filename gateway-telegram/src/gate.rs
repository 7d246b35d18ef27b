//! The access gate: who may reach core through this bot. Fail closed.
//!
//! - private chat: the sender is in `allowed_user_ids`;
//! - group or supergroup: the group is in `allowed_group_ids` AND the sender
//!   is in `allowed_user_ids`;
//! - channels and anything else: never;
//! - empty lists allow no one.
//!
//! With `group_mention_only`, an allowed group message is only *addressed*
//! to the bot when it mentions the bot or replies to one of its messages;
//! other messages are dropped silently (they are not for us).
//!
//! The lists are shared by every clone of a [`Gate`], so a reload of
//! `config.toml` ([`Gate::set`]) takes effect for the next update.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use ductor_daemon::sync::LockedRw as _;

/// Kind of chat an update came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Private,
    Group,
    Channel,
}

/// What the gate decides for one message, command or button press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward to core.
    Allow,
    /// Drop silently (unknown user, or not addressed to the bot).
    Drop,
    /// An unlisted group or channel: post a short notice and leave it.
    LeaveChat,
}

/// The allowlists, from `[telegram]`; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    rules: Arc<RwLock<Rules>>,
}

#[derive(Debug, Default, PartialEq)]
struct Rules {
    users: HashSet<i64>,
    groups: HashSet<i64>,
    mention_only: bool,
}

impl Rules {
    fn new(users: &[i64], groups: &[i64], mention_only: bool) -> Self {
        Self {
            users: users.iter().copied().collect(),
            groups: groups.iter().copied().collect(),
            mention_only,
        }
    }
}

impl Gate {
    /// Builds the gate from the configured lists.
    pub fn new(users: &[i64], groups: &[i64], mention_only: bool) -> Self {
        Self { rules: Arc::new(RwLock::new(Rules::new(users, groups, mention_only))) }
    }

    /// Replaces the lists for this gate and all its clones; `true` when
    /// they changed.
    pub fn set(&self, users: &[i64], groups: &[i64], mention_only: bool) -> bool {
        let rules = Rules::new(users, groups, mention_only);
        let mut current = self.rules.write_locked();
        let changed = *current != rules;
        *current = rules;
        changed
    }

    /// Decides for a sender in a chat. `addressed` says whether the message
    /// mentions or replies to the bot (button presses are always addressed).
    pub fn check(
        &self,
        kind: ChatKind,
        chat_id: i64,
        sender: Option<i64>,
        addressed: bool,
    ) -> Verdict {
        let rules = self.rules.read_locked();
        let user_ok = sender.is_some_and(|id| rules.users.contains(&id));
        match kind {
            ChatKind::Private if user_ok => Verdict::Allow,
            ChatKind::Private => Verdict::Drop,
            ChatKind::Group | ChatKind::Channel if !rules.groups.contains(&chat_id) => {
                Verdict::LeaveChat
            }
            ChatKind::Channel => Verdict::Drop,
            ChatKind::Group if !user_ok => Verdict::Drop,
            ChatKind::Group if rules.mention_only && !addressed => Verdict::Drop,
            ChatKind::Group => Verdict::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_allow_no_one() {
        let gate = Gate::default();
        assert_eq!(gate.check(ChatKind::Private, 1, Some(1), true), Verdict::Drop);
        assert_eq!(gate.check(ChatKind::Group, -5, Some(1), true), Verdict::LeaveChat);
    }

    #[test]
    fn private_needs_listed_user() {
        let gate = Gate::new(&[7], &[], false);
        assert_eq!(gate.check(ChatKind::Private, 7, Some(7), false), Verdict::Allow);
        assert_eq!(gate.check(ChatKind::Private, 8, Some(8), false), Verdict::Drop);
        assert_eq!(gate.check(ChatKind::Private, 7, None, false), Verdict::Drop);
    }

    #[test]
    fn groups_need_both_lists_and_mentions_when_asked() {
        let gate = Gate::new(&[7], &[-100], true);
        assert_eq!(gate.check(ChatKind::Group, -100, Some(7), true), Verdict::Allow);
        assert_eq!(gate.check(ChatKind::Group, -100, Some(7), false), Verdict::Drop);
        assert_eq!(gate.check(ChatKind::Group, -100, Some(8), true), Verdict::Drop);
        assert_eq!(gate.check(ChatKind::Group, -200, Some(7), true), Verdict::LeaveChat);
        assert_eq!(gate.check(ChatKind::Channel, -300, None, true), Verdict::LeaveChat);
        let open = Gate::new(&[7], &[-100], false);
        assert_eq!(open.check(ChatKind::Group, -100, Some(7), false), Verdict::Allow);
    }

    #[test]
    fn a_new_list_reaches_every_clone() {
        let gate = Gate::new(&[7], &[], false);
        let inbound = gate.clone();
        assert!(gate.set(&[8], &[], false));
        assert_eq!(inbound.check(ChatKind::Private, 8, Some(8), false), Verdict::Allow);
        assert_eq!(inbound.check(ChatKind::Private, 7, Some(7), false), Verdict::Drop);
        assert!(!gate.set(&[8], &[], false), "the same lists are no change");
    }
}
