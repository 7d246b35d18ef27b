//! Who and where the bot listens, failing closed: only `allowed_users` reach
//! core, only in `allowed_rooms` when that list is set; invites are accepted
//! only where messages would be accepted; with `group_mention_only`, rooms
//! that are not DMs need a mention (pill or plain text) or a reply to the bot.
//! A reload of `config.toml` replaces the lists ([`Access::set`]); the next
//! event is judged by the new ones.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use ductor_daemon::sync::LockedRw as _;
use matrix_sdk::Room;
use matrix_sdk::ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::{Client, RoomMemberships};

/// The allowlists, replaceable while the gateway runs.
#[derive(Debug)]
pub struct Access {
    lists: RwLock<Arc<Lists>>,
}

impl Access {
    /// Builds the allowlists; entries that do not parse allow nothing.
    pub fn new(users: &[String], rooms: &[String], group_mention_only: bool) -> Self {
        Self { lists: RwLock::new(Arc::new(Lists::new(users, rooms, group_mention_only))) }
    }

    fn lists(&self) -> Arc<Lists> {
        self.lists.read_locked().clone()
    }

    /// Replaces the lists and resolves their aliases (reload of `config.toml`).
    pub async fn set(&self, client: &Client, users: &[String], rooms: &[String], mention: bool) {
        let lists = Lists::new(users, rooms, mention);
        lists.resolve_aliases(client).await;
        *self.lists.write_locked() = Arc::new(lists);
    }

    /// Resolves configured aliases through the homeserver (best effort: an
    /// alias that does not resolve still matches a room's canonical alias).
    pub async fn resolve_aliases(&self, client: &Client) {
        self.lists().resolve_aliases(client).await;
    }

    /// Whether messages from `user` may reach core.
    pub fn user_allowed(&self, user: &UserId) -> bool {
        self.lists().user_allowed(user)
    }

    /// Whether the room is one the bot works in (any room when unrestricted).
    pub fn room_allowed(&self, room: &Room) -> bool {
        self.lists().room_allowed(room)
    }

    /// Whether an invite is accepted: the room must be allowed, and when rooms
    /// are not restricted the inviter must be an allowed user.
    pub fn invite_accepted(&self, inviter: &UserId, room: &Room) -> bool {
        self.lists().invite_accepted(inviter, room)
    }

    /// Whether `group_mention_only` applies at all.
    pub fn mention_only(&self) -> bool {
        self.lists().group_mention_only
    }
}

/// The allowlists, with room aliases resolved to room ids where possible.
#[derive(Debug)]
struct Lists {
    users: HashSet<OwnedUserId>,
    room_ids: RwLock<HashSet<OwnedRoomId>>,
    aliases: Vec<OwnedRoomAliasId>,
    /// True when `allowed_rooms` is set (then only those rooms).
    rooms_restricted: bool,
    group_mention_only: bool,
}

impl Lists {
    fn new(users: &[String], rooms: &[String], group_mention_only: bool) -> Self {
        let users = users.iter().filter_map(|u| UserId::parse(u.as_str()).ok()).collect();
        let mut room_ids = HashSet::new();
        let mut aliases = Vec::new();
        for room in rooms {
            if let Ok(id) = RoomId::parse(room.as_str()) {
                room_ids.insert(id);
            } else if let Ok(alias) = OwnedRoomAliasId::try_from(room.as_str()) {
                aliases.push(alias);
            } else {
                tracing::warn!(room = %room, "matrix.allowed_rooms entry is neither a room id nor an alias; ignored");
            }
        }
        Self {
            users,
            room_ids: RwLock::new(room_ids),
            aliases,
            rooms_restricted: !rooms.is_empty(),
            group_mention_only,
        }
    }

    async fn resolve_aliases(&self, client: &Client) {
        for alias in &self.aliases {
            match client.resolve_room_alias(alias).await {
                Ok(response) => {
                    self.room_ids.write_locked().insert(response.room_id);
                }
                Err(error) => tracing::warn!(%alias, %error, "resolve an allowed room alias"),
            }
        }
    }

    fn user_allowed(&self, user: &UserId) -> bool {
        self.users.contains(user)
    }

    fn room_allowed(&self, room: &Room) -> bool {
        if !self.rooms_restricted {
            return true;
        }
        if self.room_ids.read_locked().contains(room.room_id()) {
            return true;
        }
        let canonical = room.canonical_alias();
        let matched =
            canonical.iter().chain(room.alt_aliases().iter()).any(|a| self.aliases.contains(a));
        if matched {
            self.room_ids.write_locked().insert(room.room_id().to_owned());
        }
        matched
    }

    fn invite_accepted(&self, inviter: &UserId, room: &Room) -> bool {
        if self.rooms_restricted { self.room_allowed(room) } else { self.user_allowed(inviter) }
    }
}

/// A room counts as a DM when marked direct or when at most two people are in it.
pub async fn is_direct(room: &Room) -> bool {
    if room.is_direct().await.unwrap_or(false) {
        return true;
    }
    match room.members_no_sync(RoomMemberships::JOIN | RoomMemberships::INVITE).await {
        Ok(members) => members.len() <= 2,
        Err(_) => false,
    }
}

/// Whether a message mentions the bot: intentional mentions, a pill in the
/// HTML, or the user id, localpart or display name in the plain text.
pub fn mentions_bot(
    bot: &UserId,
    display_name: Option<&str>,
    body: &str,
    html: Option<&str>,
    mentioned_ids: &[OwnedUserId],
) -> bool {
    if mentioned_ids.iter().any(|id| id == bot) {
        return true;
    }
    if html.is_some_and(|html| {
        html.contains(&format!("matrix.to/#/{bot}"))
            || html.contains(&format!(
                "matrix.to/#/{}",
                bot.as_str().replace('@', "%40").replace(':', "%3A")
            ))
    }) {
        return true;
    }
    let lower = body.to_lowercase();
    if lower.contains(&bot.as_str().to_lowercase()) {
        return true;
    }
    let names = [Some(bot.localpart()), display_name];
    names.into_iter().flatten().filter(|name| !name.is_empty()).any(|name| {
        let name = name.to_lowercase();
        lower.match_indices(&name).any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            let after = lower[at + name.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> OwnedUserId {
        UserId::parse(id).expect("valid test user id")
    }

    #[test]
    fn only_listed_users_are_allowed() {
        let access =
            Access::new(&["@alice:localhost".to_owned(), "not a user".to_owned()], &[], false);
        assert!(access.user_allowed(&user("@alice:localhost")));
        assert!(!access.user_allowed(&user("@mallory:localhost")));
        let nobody = Access::new(&[], &[], false);
        assert!(!nobody.user_allowed(&user("@alice:localhost")), "an empty list allows no one");
    }

    #[test]
    fn mentions_are_found_as_pills_ids_and_names() {
        let bot = user("@ductor:localhost");
        assert!(mentions_bot(&bot, None, "hey", None, std::slice::from_ref(&bot)));
        assert!(mentions_bot(
            &bot,
            None,
            "hey",
            Some(r#"<a href="https://matrix.to/#/@ductor:localhost">d</a>"#),
            &[]
        ));
        assert!(mentions_bot(&bot, None, "@ductor:localhost hi", None, &[]));
        assert!(mentions_bot(&bot, None, "ductor: do it", None, &[]));
        assert!(mentions_bot(&bot, Some("Robo Helper"), "robo helper, do it", None, &[]));
        assert!(!mentions_bot(&bot, None, "productor things", None, &[]));
        assert!(!mentions_bot(&bot, None, "hello all", None, &[user("@alice:localhost")]));
    }
}
