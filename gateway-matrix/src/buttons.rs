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
    by_event: HashMap<OwnedEventId, Entry>,
    order: VecDeque<(OwnedRoomId, OwnedEventId)>,
    latest: HashMap<OwnedRoomId, OwnedEventId>,
    file: Option<PathBuf>,
}

/// A button message's ids and the topic (thread root) it was sent in.
#[derive(Debug, Clone)]
struct Entry {
    ids: Vec<String>,
    topic: String,
}

/// A pressed button: its id and the topic its message belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pressed {
    /// The `Button.id`.
    pub button_id: String,
    /// The message carrying the button.
    pub message: OwnedEventId,
    /// Thread root of that message, empty outside threads.
    pub topic: String,
}

/// One remembered button message, as saved.
#[derive(Serialize, Deserialize)]
struct Saved {
    room: OwnedRoomId,
    event: OwnedEventId,
    ids: Vec<String>,
    #[serde(default)]
    topic: String,
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
        for saved in saved {
            tracker.insert(&saved.room, saved.event, Entry { ids: saved.ids, topic: saved.topic });
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
                let entry = self.by_event.get(event)?.clone();
                Some(Saved {
                    room: room.clone(),
                    event: event.clone(),
                    ids: entry.ids,
                    topic: entry.topic,
                })
            })
            .collect();
        let json = serde_json::to_vec(&saved).expect("button entries always serialize");
        if let Err(error) = ductor_daemon::paths::write_private(file, &json) {
            tracing::warn!(%error, file = %file.display(), "save the reaction buttons");
        }
    }

    /// Remembers the buttons of a message the bot sent (in `topic`, or "").
    pub fn register(
        &mut self,
        room: &RoomId,
        event: OwnedEventId,
        ids: Vec<String>,
        topic: String,
    ) {
        self.insert(room, event, Entry { ids, topic });
        self.save();
    }

    fn insert(&mut self, room: &RoomId, event: OwnedEventId, entry: Entry) {
        if self.order.len() >= CAPACITY
            && let Some((_, old)) = self.order.pop_front()
        {
            self.by_event.remove(&old);
            self.latest.retain(|_, latest| *latest != old);
        }
        self.order.push_back((room.to_owned(), event.clone()));
        self.latest.insert(room.to_owned(), event.clone());
        self.by_event.insert(event, entry);
    }

    /// Forgets a message (it was redacted or replaced).
    pub fn forget(&mut self, event: &EventId) {
        self.by_event.remove(event);
        self.order.retain(|(_, e)| e != event);
        self.latest.retain(|_, latest| latest != event);
        self.save();
    }

    /// The button a reaction key on `event` stands for.
    pub fn by_reaction(&self, event: &EventId, key: &str) -> Option<Pressed> {
        let index = render::keycap_index(key)?;
        let entry = self.by_event.get(event)?;
        let button_id = entry.ids.get(index)?.clone();
        Some(Pressed { button_id, message: event.to_owned(), topic: entry.topic.clone() })
    }

    /// The button a typed number stands for, on the room's newest button message.
    pub fn by_typed(&self, room: &RoomId, text: &str) -> Option<Pressed> {
        let event = self.latest.get(room)?;
        let entry = self.by_event.get(event)?;
        let index = render::typed_option(text, entry.ids.len())?;
        let button_id = entry.ids[index].clone();
        Some(Pressed { button_id, message: event.clone(), topic: entry.topic.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::{event_id, room_id};

    const TWO: &str = "2\u{fe0f}\u{20e3}";

    #[test]
    fn reactions_and_typed_numbers_map_to_button_ids() {
        let mut tracker = ButtonTracker::default();
        let room = room_id!("!r:localhost");
        let ab = vec!["ms:a".into(), "ms:b".into()];
        tracker.register(room, event_id!("$menu1").to_owned(), ab, String::new());
        tracker.register(room, event_id!("$menu2").to_owned(), vec!["q:x".into()], "$root".into());
        let pressed = tracker.by_reaction(event_id!("$menu1"), TWO).expect("a button");
        assert_eq!((pressed.button_id.as_str(), pressed.topic.as_str()), ("ms:b", ""));
        assert_eq!(tracker.by_reaction(event_id!("$menu1"), "3\u{fe0f}\u{20e3}"), None);
        assert_eq!(tracker.by_reaction(event_id!("$other"), "1\u{fe0f}\u{20e3}"), None);
        let pressed = tracker.by_typed(room, "1").expect("newest menu has one option");
        assert_eq!(
            (pressed.button_id.as_str(), pressed.message.as_str(), pressed.topic.as_str()),
            ("q:x", "$menu2", "$root")
        );
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
        let ab = vec!["ms:a".into(), "ms:b".into()];
        tracker.register(room, event_id!("$menu").to_owned(), ab, "$t".into());
        let reloaded = ButtonTracker::load(file);
        let pressed = reloaded.by_reaction(event_id!("$menu"), TWO).expect("kept");
        assert_eq!((pressed.button_id.as_str(), pressed.topic.as_str()), ("ms:b", "$t"));
        assert_eq!(reloaded.by_typed(room, "1").map(|p| p.button_id).as_deref(), Some("ms:a"));
    }
}
