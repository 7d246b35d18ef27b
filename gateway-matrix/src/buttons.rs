//! Reactions as buttons: which bot message carries which button ids, so a
//! keycap reaction on it (or the option's number typed in the room) becomes a
//! `ButtonPress` for core. Kept in `matrix/buttons.json`, so a menu sent
//! before a restart still works after it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId};
use serde::{Deserialize, Serialize};

use crate::render;

/// How many button messages are remembered (oldest forgotten first).
const CAPACITY: usize = 512;

/// Button ids per bot message, and the newest button message per room.
#[derive(Debug, Default)]
pub struct ButtonTracker {
    by_event: HashMap<OwnedEventId, Vec<String>>,
    order: VecDeque<(OwnedRoomId, OwnedEventId)>,
    latest: HashMap<OwnedRoomId, OwnedEventId>,
    file: Option<PathBuf>,
}

/// One remembered button message, as saved.
#[derive(Serialize, Deserialize)]
struct Saved {
    room: OwnedRoomId,
    event: OwnedEventId,
    ids: Vec<String>,
}

impl ButtonTracker {
    /// Loads the tracker saved at `file` (empty when missing or unreadable)
    /// and keeps saving there.
    pub fn load(file: PathBuf) -> Self {
        let saved: Vec<Saved> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut tracker = Self::default();
        for entry in saved {
            tracker.insert(&entry.room, entry.event, entry.ids);
        }
        tracker.file = Some(file);
        tracker
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let saved: Vec<Saved> = self
            .order
            .iter()
            .filter_map(|(room, event)| {
                let ids = self.by_event.get(event)?.clone();
                Some(Saved { room: room.clone(), event: event.clone(), ids })
            })
            .collect();
        let json = serde_json::to_vec(&saved).expect("button entries always serialize");
        if let Err(error) = ductor_daemon::paths::write_private(file, &json) {
            tracing::warn!(%error, file = %file.display(), "save the reaction buttons");
        }
    }

    /// Remembers the buttons of a message the bot sent.
    pub fn register(&mut self, room: &RoomId, event: OwnedEventId, button_ids: Vec<String>) {
        self.insert(room, event, button_ids);
        self.save();
    }

    fn insert(&mut self, room: &RoomId, event: OwnedEventId, button_ids: Vec<String>) {
        if self.order.len() >= CAPACITY
            && let Some((_, old)) = self.order.pop_front()
        {
            self.by_event.remove(&old);
            self.latest.retain(|_, latest| *latest != old);
        }
        self.order.push_back((room.to_owned(), event.clone()));
        self.latest.insert(room.to_owned(), event.clone());
        self.by_event.insert(event, button_ids);
    }

    /// Forgets a message (it was redacted or replaced).
    pub fn forget(&mut self, event: &EventId) {
        self.by_event.remove(event);
        self.order.retain(|(_, e)| e != event);
        self.latest.retain(|_, latest| latest != event);
        self.save();
    }

    /// The button a reaction key on `event` stands for.
    pub fn by_reaction(&self, event: &EventId, key: &str) -> Option<String> {
        let index = render::keycap_index(key)?;
        self.by_event.get(event)?.get(index).cloned()
    }

    /// The button a typed number stands for, on the room's newest button message.
    pub fn by_typed(&self, room: &RoomId, text: &str) -> Option<(String, OwnedEventId)> {
        let event = self.latest.get(room)?;
        let ids = self.by_event.get(event)?;
        let index = render::typed_option(text, ids.len())?;
        Some((ids[index].clone(), event.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::{event_id, room_id};

    #[test]
    fn reactions_and_typed_numbers_map_to_button_ids() {
        let mut tracker = ButtonTracker::default();
        let room = room_id!("!r:localhost");
        tracker.register(room, event_id!("$menu1").to_owned(), vec!["ms:a".into(), "ms:b".into()]);
        tracker.register(room, event_id!("$menu2").to_owned(), vec!["q:cancel".into()]);
        assert_eq!(
            tracker.by_reaction(event_id!("$menu1"), "2\u{fe0f}\u{20e3}").as_deref(),
            Some("ms:b")
        );
        assert_eq!(tracker.by_reaction(event_id!("$menu1"), "3\u{fe0f}\u{20e3}"), None);
        assert_eq!(tracker.by_reaction(event_id!("$other"), "1\u{fe0f}\u{20e3}"), None);
        let (id, event) = tracker.by_typed(room, "1").expect("newest menu has one option");
        assert_eq!((id.as_str(), event.as_str()), ("q:cancel", "$menu2"));
        assert_eq!(tracker.by_typed(room, "2"), None, "numbers refer to the newest menu only");
        tracker.forget(event_id!("$menu2"));
        assert_eq!(tracker.by_typed(room, "1"), None);
        assert!(tracker.by_reaction(event_id!("$menu1"), "1\u{fe0f}\u{20e3}").is_some());
    }

    #[test]
    fn buttons_survive_a_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("buttons.json");
        let room = room_id!("!r:localhost");
        let mut tracker = ButtonTracker::load(file.clone());
        tracker.register(room, event_id!("$menu").to_owned(), vec!["ms:a".into(), "ms:b".into()]);
        let reloaded = ButtonTracker::load(file);
        assert_eq!(
            reloaded.by_reaction(event_id!("$menu"), "2\u{fe0f}\u{20e3}").as_deref(),
            Some("ms:b")
        );
        assert_eq!(reloaded.by_typed(room, "1").map(|(id, _)| id).as_deref(), Some("ms:a"));
    }
}
